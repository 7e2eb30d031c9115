//! Hostile files given to the delta and split-bundle commands: index files that are not what they
//! claim, and a part that is a symlink out of the bundle's directory. Each is refused with its
//! exit code and a message naming the file, or (repair) handled without writing outside.

use crate::common::{EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_TRUST, Env, fixture_str};

/// A ustar file of `entries` (name, bytes), as a hostile index file.
pub(crate) fn tar_of(env: &Env, out: &str, entries: &[(&str, &[u8])]) {
    let mut b = tar::Builder::new(std::fs::File::create(env.path(out)).unwrap());
    for (name, bytes) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_size(bytes.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *bytes).unwrap();
    }
    b.finish().unwrap();
}

/// The signed index and its signature, as `airlock index` wrote them to `file`.
pub(crate) fn entries(env: &Env, file: &str) -> (Vec<u8>, Vec<u8>) {
    use std::io::Read;
    let mut ar = tar::Archive::new(std::fs::File::open(env.path(file)).unwrap());
    let mut out = ar.entries().unwrap().map(|e| {
        let mut bytes = Vec::new();
        e.unwrap().read_to_end(&mut bytes).unwrap();
        bytes
    });
    (out.next().unwrap(), out.next().unwrap())
}

fn layout_source() -> String {
    format!("oci:{}:registry.example/team/app:1.4", fixture_str("oci-layout"))
}

#[test]
fn index_files_that_are_not_what_they_claim_are_refused_with_their_exit_code() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    env.run(&["index", "-o", "b.idx", "b.tar"]).ok();
    let (index, sig) = entries(&env, "b.idx");
    let bytes = std::fs::read(env.path("b.idx")).unwrap();
    std::fs::write(env.path("cut.idx"), &bytes[..700]).unwrap();
    let other = String::from_utf8(index.clone()).unwrap().replacen("\"tool\"", "\"tool\" ", 1);
    tar_of(&env, "other.idx", &[("airlock.json", other.as_bytes()), ("airlock.json.minisig", &sig)]);
    tar_of(&env, "swapped.idx", &[("airlock.json.minisig", &sig), ("airlock.json", &index)]);
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    tar_of(&env, "deep.idx", &[("airlock.json", deep.as_bytes()), ("airlock.json.minisig", &sig)]);
    let blob = format!("blobs/sha256/{}", "0".repeat(64));
    tar_of(&env, "extra.idx", &[("airlock.json", &index), ("airlock.json.minisig", &sig), (&blob, b"hello")]);

    let create = |base: &str| env.run(&["create", "-k", "ops.key", "-o", "d.tar", "--base", base, &layout_source()]);
    create("cut.idx").fails(EXIT_INTEGRITY, &["cut.idx", "truncated"]);
    create("swapped.idx").fails(EXIT_INTEGRITY, &["swapped.idx", "airlock.json.minisig"]);
    create("other.idx").fails(EXIT_TRUST, &["other.idx", "signature"]);
    create("deep.idx").fails(EXIT_TRUST, &["deep.idx"]);
    assert!(!env.path("d.tar").exists(), "no bundle is left behind");

    env.run(&["diff", "cut.idx", "b.tar"]).fails(EXIT_INTEGRITY, &["cut.idx", "truncated"]);
    env.run(&["diff", "b.tar", "deep.idx"]).fails(EXIT_BAD_INPUT, &["deep.idx", "nesting deeper than"]);

    // Only the signed index of a base is read; its blobs are another matter: an index file given
    // where a base's blobs are needed is refused, and so is one that smuggles an entry.
    create("b.idx").ok();
    env.run(&["verify", "-p", "ops.pub", "--base", "b.idx", "d.tar"])
        .fails(EXIT_INTEGRITY, &["b.idx", "only a signed index"]);
    let extra = env.run(&["verify", "-p", "ops.pub", "--base", "extra.idx", "d.tar"]);
    extra.fails(EXIT_INTEGRITY, &["extra.idx", "not listed in the signed index"]);
}

#[test]
fn repair_replaces_a_damaged_part_that_links_outside_and_leaves_the_target_alone() {
    use std::os::unix::fs::FileExt;
    let env = Env::new();
    env.keygen("ops");
    std::fs::create_dir(env.path("stick")).unwrap();
    let args = ["create", "-k", "ops.key", "-o", "stick/b.tar", "--volume-size", "300K", "--parity", "1"];
    let sources = [
        format!("docker-archive:{}", fixture_str("legacy-save.tar")),
        format!("oci-archive:{}", fixture_str("multiarch.oci.tar")),
    ];
    env.run(&[&args[..], &sources.iter().map(String::as_str).collect::<Vec<_>>()].concat()).ok();
    std::fs::rename(env.path("stick/b.tar.002"), env.path("outside")).unwrap();
    std::os::unix::fs::symlink(env.path("outside"), env.path("stick/b.tar.002")).unwrap();
    env.run(&["verify", "-p", "ops.pub", "stick/b.tar.001"]).ok();
    let f = std::fs::OpenOptions::new().write(true).open(env.path("outside")).unwrap();
    f.write_all_at(b"damaged", 100).unwrap();
    let damaged = std::fs::read(env.path("outside")).unwrap();

    let run = env.run(&["repair", "-p", "ops.pub", "stick/b.tar.001"]).ok();
    assert!(run.stdout.contains("b.tar.002: has sha256"), "{}", run.stdout);
    assert_eq!(std::fs::read(env.path("outside")).unwrap(), damaged, "repair wrote through the link");
    assert!(std::fs::symlink_metadata(env.path("stick/b.tar.002")).unwrap().file_type().is_file());
    env.run(&["verify", "-p", "ops.pub", "stick/b.tar.001"]).ok();
}
