//! A disk that fills up, or a file-size limit (EFBIG, as on FAT32), during `create` is an I/O error
//! naming the path (exit 6) with nothing left behind, never a panic inside the compressor.

use crate::common::{EXIT_IO, Env};

/// Runs `airlock ARGS` under a file-size limit of `kib` KiB with SIGXFSZ ignored, so a write past
/// the limit fails with EFBIG instead of killing the process.
fn run_with_file_limit(env: &Env, kib: u64, args: &[&str]) -> crate::common::Run {
    let script = format!("ulimit -f {}; trap '' XFSZ; exec \"$0\" \"$@\"", kib * 2);
    let bin = env!("CARGO_BIN_EXE_airlock");
    let mut cmd = std::process::Command::new("bash");
    cmd.current_dir(env.dir.path()).env_remove("SOURCE_DATE_EPOCH").args(["-c", &script, bin]).args(args);
    // bash counts ulimit -f in 1024-byte blocks; `kib * 2` KiB is still under what create writes.
    crate::common::Run::from_output(cmd.output().unwrap())
}

#[test]
fn a_file_size_limit_during_a_legacy_create_is_an_io_error_and_leaves_nothing() {
    let env = Env::new();
    env.keygen("ops");
    crate::big_save::legacy_save(&env.path("save.tar"), 16 << 20);
    let before = env.listing();
    for compression in ["gzip", "zstd", "none"] {
        let run = run_with_file_limit(
            &env,
            2048,
            &["create", "-k", "ops.key", "-o", "b.tar", "--compression", compression, "docker-archive:save.tar"],
        );
        run.fails(EXIT_IO, &["error: ", "File too large"]);
        assert_eq!(env.listing(), before, "{compression}: partial output left behind");
    }
}
