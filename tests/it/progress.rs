//! What a person sees of a long operation when stderr is not a terminal (a CI log, a pipe): plain
//! lines that say what is moving and how much, with no bar drawing, cursor moves or colours.

use crate::common::{Env, Run, big_layout};

/// Every line of stderr is plain text: no escape sequence, no carriage return.
fn plain(run: &Run) {
    assert!(!run.stderr.contains('\x1b') && !run.stderr.contains('\r'), "not plain:\n{:?}", run.stderr);
}

fn has_line(run: &Run, start: &str) {
    assert!(run.stderr.lines().any(|l| l.starts_with(start)), "no line starting {start:?}:\n{}", run.stderr);
}

/// `b.tar`, signed by `ops`, of one image with a 12 MiB layer, and the run of `create` that made it.
fn bundle_of_12_mib() -> (Env, Run) {
    let env = Env::new();
    env.keygen("ops");
    big_layout(&env.path("big"), 1, 12 << 20);
    let src = format!("oci:{}", env.path("big").display());
    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    (env, run)
}

#[test]
fn off_a_terminal_create_and_verify_log_each_phase_in_plain_lines() {
    let (env, run) = bundle_of_12_mib();
    plain(&run);
    has_line(&run, "writing b.tar (12.0 MiB)");
    has_line(&run, "wrote b.tar: 12.0 MiB in ");

    let run = env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    plain(&run);
    has_line(&run, "verifying b.tar (12.0 MiB)");
    has_line(&run, "hashed b.tar: 12.0 MiB in ");

    let run = env.run_with_stdin_file(&["verify", "-p", "ops.pub", "-"], "b.tar").ok();
    plain(&run);
    has_line(&run, "verifying <stdin>");
    has_line(&run, "hashed <stdin>: ");
}

/// A damaged bundle read from a pipe: the line that ends the reading phase never says "verified"
/// before the error that names the damaged entry.
#[test]
fn off_a_terminal_a_damaged_bundle_is_never_called_verified() {
    let (env, _) = bundle_of_12_mib();
    crate::common::tamper(&env.path("b.tar"));
    for args in [&["verify", "-p", "ops.pub", "b.tar"][..], &["verify", "-p", "ops.pub", "-"][..]] {
        let run = if args[3] == "-" { env.run_with_stdin_file(args, "b.tar") } else { env.run(args) };
        let run = run.fails(crate::common::EXIT_INTEGRITY, &["digest mismatch"]);
        plain(&run);
        assert!(!run.stderr.contains("verified"), "{args:?}: a damaged bundle called verified:\n{}", run.stderr);
    }
}

/// The bar frames `script` recorded of a run on a pseudo-terminal, escape sequences removed.
fn frames(typescript: &str) -> Vec<String> {
    let mut clean = String::new();
    let mut chars = typescript.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters, a final letter.
            for n in chars.by_ref() {
                if n.is_ascii_alphabetic() && n != '[' {
                    break;
                }
            }
        } else {
            clean.push(if c == '\r' { '\n' } else { c });
        }
    }
    clean.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_owned).collect()
}

#[test]
fn on_a_terminal_compression_shows_a_moving_bar_whose_first_rate_and_eta_are_sensible() {
    if !std::path::Path::new("/usr/bin/script").is_file() {
        eprintln!("skipped: needs script (util-linux) to run airlock on a pseudo-terminal");
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    crate::big_save::legacy_save(&env.path("save.tar"), 48 << 20);
    let command = format!("{} create -k ops.key -o b.tar docker-archive:save.tar", env!("CARGO_BIN_EXE_airlock"));
    let log = env.path("typescript");
    let mut cmd = std::process::Command::new("/usr/bin/script");
    cmd.args(["-qec", &command, log.to_str().unwrap()]).current_dir(env.dir.path());
    cmd.env("XDG_STATE_HOME", env.state.path()).env_remove("AIRLOCK_KEY_PASSWORD");
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    let frames = frames(&std::fs::read_to_string(&log).unwrap());
    let compressing: Vec<&String> =
        frames.iter().filter(|f| f.starts_with("compressing ") && f.contains("layer.tar [")).collect();
    assert!(compressing.len() >= 2, "no moving compression bar:\n{frames:#?}");
    let first_rate = compressing.iter().find(|f| f.contains("/s")).unwrap_or_else(|| panic!("no rate:\n{frames:#?}"));
    // A rate in bytes per second (or KiB) and an ETA in hours mean the first reading was nonsense.
    assert!(first_rate.contains("MiB/s") || first_rate.contains("GiB/s"), "first rate: {first_rate}");
    let eta = first_rate.rsplit("ETA ").next().unwrap();
    assert!(!eta.contains('h') && !eta.contains('w') && !eta.contains('d'), "first ETA: {first_rate}");
}
