//! Hostile inputs to `airlock create`: archives that lie about their paths, links, sizes, names,
//! digests or JSON, built from the committed fixtures by `tests/hostile.py`. Each must be refused
//! with the right exit code and a message that names both the problem and where it is, without a
//! panic, and without leaving a bundle, a temporary file or a staging directory behind.

use std::process::Command;

use serde_json::Value;

use crate::common::{EXIT_BAD_INPUT, EXIT_INTEGRITY, EXIT_IO, Env, Peer, Run, fixture_str, skip_without};

const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/hostile.py");

/// Writes the hostile file `case` of tests/hostile.py to `out` in the test directory (`input`: a
/// bundle there to tamper with); returns the JSON the script prints about what it did.
pub fn make(env: &Env, case: &str, out: &str, input: Option<&str>) -> Value {
    let mut cmd = Command::new("python3");
    cmd.arg(SCRIPT).arg(case).arg(env.path(out));
    if let Some(i) = input {
        cmd.arg(env.path(i));
    }
    let o = cmd.output().expect("python3 is needed to build the hostile inputs");
    assert!(o.status.success(), "hostile.py {case} failed:\n{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("hostile.py prints JSON")
}

/// A string field of the script's JSON.
pub fn field<'a>(info: &'a Value, key: &str) -> &'a str {
    info[key].as_str().unwrap_or_else(|| panic!("hostile.py printed no {key}: {info}"))
}

/// Runs `create` from `source` and checks that it failed with `code`, that stderr holds every
/// needle and no panic, that nothing exists at `-o` and that the directory is as it was.
fn refused(env: &Env, source: &str, code: i32, needles: &[&str]) -> Run {
    if !env.path("ops.key").exists() {
        env.keygen("ops");
    }
    let before = env.listing();
    let run = env.run(&["create", "-k", "ops.key", "-o", "out.tar", source]).fails(code, needles);
    assert!(!env.path("out.tar").exists(), "a bundle was left at -o");
    assert_eq!(env.listing(), before, "create left files behind (temporary bundle or staging directory)");
    run
}

/// Builds `case` as `evil.tar` and expects `create` from it to be refused.
fn refuse_case(case: &str, transport: &str, code: i32, needles: impl FnOnce(&Value) -> Vec<String>) -> Run {
    let env = Env::new();
    let info = make(&env, case, "evil.tar", None);
    let needles = needles(&info);
    let needles: Vec<&str> = needles.iter().map(String::as_str).collect();
    refused(&env, &format!("{transport}:evil.tar"), code, &needles)
}

fn hex(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

#[test]
fn create_refuses_an_absolute_path_entry_and_leaves_no_output() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("absolute-path", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), format!("entry `{}`", field(i, "entry")), "absolute path".into()]
    });
}

#[test]
fn create_refuses_an_entry_with_dotdot_and_leaves_no_output() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("dotdot-path", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), format!("entry `{}`", field(i, "entry")), "`..`".into()]
    });
}

#[test]
fn create_refuses_a_symlink_pointing_outside_the_archive() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    for case in ["symlink-outside", "symlink-absolute"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            vec![
                "evil.tar".into(),
                format!("entry `{}`", field(i, "entry")),
                field(i, "target").into(),
                "outside the archive".into(),
            ]
        });
    }
}

#[test]
fn create_refuses_a_link_to_a_directory_or_a_directory_where_a_file_is_expected() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // docker-archive whose manifest.json is a symlink to one of its directories.
    refuse_case("manifest-json-links-to-dir", "docker-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), "manifest.json".into(), field(i, "target").into(), "directory".into()]
    });
    // OCI archive whose layer blob is a directory entry.
    refuse_case("layer-is-dir", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), field(i, "entry").into(), "directory where a file is expected".into()]
    });
}

#[test]
fn create_refuses_duplicate_entries_even_when_spelled_differently() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    for case in ["duplicate-entry", "duplicate-dot-entry"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            vec!["evil.tar".into(), format!("entry `{}`", field(i, "entry")), "duplicate entry".into()]
        });
    }
}

#[test]
fn create_refuses_a_pax_size_record_that_conflicts_with_the_header_size() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("pax-size-conflict", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec![
            "evil.tar".into(),
            format!("entry `{}`", field(i, "entry")),
            format!("PAX size 10 conflicts with header size {}", i["header"]),
        ]
    });
}

#[test]
fn create_refuses_a_pax_global_header() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("pax-global-header", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), format!("entry `{}`", field(i, "entry")), "PAX global header".into()]
    });
}

#[test]
fn create_reads_a_gnu_long_name_and_refuses_the_dotdot_it_hides() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // The ustar header says `innocent.txt`; the GNU long name before it says `../../../etc/…`.
    refuse_case("gnu-longname-dotdot", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), format!("entry `{}`", field(i, "entry")), "`..`".into()]
    });
}

#[test]
fn create_refuses_an_entry_whose_gnu_long_name_and_pax_path_disagree() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // One entry, two names: tar-rs and Go's archive/tar use the GNU long name, Python's tarfile
    // the PAX path (the record that comes last). Like a PAX size that disagrees with the header,
    // that is a parser-differential trick and should be refused.
    refuse_case("gnu-longname-vs-pax-path", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), field(i, "gnu").into(), field(i, "pax").into()]
    });
}

#[test]
fn create_refuses_a_directory_or_link_entry_that_carries_data() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // Its data hides a second index.json that GNU tar, Go and Python would read.
    for case in ["dir-with-data", "symlink-with-data", "hardlink-with-data"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            vec![
                "evil.tar".into(),
                format!("entry `{}`", field(i, "entry")),
                format!("carries {} bytes of data", i["size"]),
            ]
        });
    }
    refuse_case("regular-named-like-a-dir", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec![format!("entry `{}`", field(i, "entry")), "ends in `/`".into()]
    });
}

#[test]
fn create_refuses_a_repeated_pax_key_and_pax_sparse_records() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("pax-repeated-key", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec![format!("entry `{}`", field(i, "entry")), "PAX key `size` is given twice".into()]
    });
    refuse_case("pax-sparse", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec![format!("entry `{}`", field(i, "entry")), "GNU.sparse.major".into(), "sparse files".into()]
    });
}

#[test]
fn create_refuses_a_name_that_is_not_utf8() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("non-utf8-name", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), field(i, "entry").into(), "is not UTF-8".into()]
    });
}

#[test]
fn create_refuses_huge_extension_headers_before_reading_them() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    for (case, what, cap) in
        [("huge-pax-header", "PAX extension header", 65536), ("huge-gnu-longname", "GNU long-name header", 4097)]
    {
        let env = Env::new();
        env.keygen("ops");
        let info = make(&env, case, "evil.tar", None);
        let needles = [format!("{what} of {} bytes (at most {cap} are accepted)", info["size"])];
        let (code, rss_kib, stderr) =
            peak_rss(&env, &["create", "-k", "ops.key", "-o", "out.tar", "oci-archive:evil.tar"]);
        assert_eq!(code, EXIT_BAD_INPUT as i64, "{stderr}");
        assert!(stderr.contains(&needles[0]), "stderr lacks {:?}:\n{stderr}", needles[0]);
        assert!(rss_kib < 64 * 1024, "refusing a {case} took {rss_kib} KiB");
    }
}

#[test]
fn a_long_hostile_entry_name_is_shown_escaped_and_cut_in_messages() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let run = refuse_case("long-hostile-name", "oci-archive", EXIT_BAD_INPUT, |_| {
        vec!["\\u{1b}[2J\\u{1b}[31mPWNED".into(), "more characters)".into()]
    });
    assert!(!run.stderr.contains('\x1b'), "a raw escape reached the terminal:\n{}", run.stderr);
    assert!(run.stderr.lines().all(|l| l.len() < 600), "a line shows the whole name:\n{}", run.stderr);
}

#[test]
fn create_refuses_an_archive_cut_in_the_middle_of_a_blob() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let run = refuse_case("truncated-mid-blob", "oci-archive", EXIT_BAD_INPUT, |_| vec!["evil.tar".into()]);
    assert!(run.stderr.contains("truncated"), "the message should say the archive is truncated:\n{}", run.stderr);
}

#[test]
fn create_refuses_an_archive_cut_at_an_entry_boundary() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("truncated-at-boundary", "oci-archive", EXIT_BAD_INPUT, |_| {
        vec!["evil.tar".into(), "truncated".into()]
    });
}

#[test]
fn create_refuses_trailing_garbage_and_an_entry_hidden_after_the_end_marker() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    for case in ["trailing-garbage", "entry-after-end-marker"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            vec!["evil.tar".into(), "trailing garbage".into(), format!("at byte {}", i["at"])]
        });
    }
}

#[test]
fn create_refuses_digests_that_are_not_lowercase_sha256_hex() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // In index.json: a path escape and upper-case hex.
    for case in ["digest-dotdot", "digest-uppercase"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            vec!["evil.tar: index.json".into(), field(i, "digest").into(), "not a sha256 digest".into()]
        });
    }
    // In a manifest: a sha512 config digest and an upper-case layer digest.
    for case in ["digest-sha512-in-manifest", "digest-uppercase-in-manifest"] {
        refuse_case(case, "oci-archive", EXIT_BAD_INPUT, |i| {
            let shown: String = field(i, "digest").chars().take(80).collect();
            vec!["evil.tar".into(), hex(field(i, "manifest")).into(), shown, "not a sha256 digest".into()]
        });
    }
}

#[test]
fn create_refuses_a_descriptor_size_that_differs_from_the_blob() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // index.json says the manifest is one byte shorter than it is.
    refuse_case("size-mismatch-index", "oci-archive", EXIT_INTEGRITY, |i| {
        vec!["evil.tar".into(), hex(field(i, "digest")).into(), format!("expected {} bytes", i["size"])]
    });
    // The manifest says the layer is one byte shorter than it is.
    refuse_case("size-mismatch-layer", "oci-archive", EXIT_INTEGRITY, |i| {
        vec!["evil.tar".into(), hex(field(i, "digest")).into(), format!("the manifest says {}", i["size"])]
    });
}

#[test]
fn create_refuses_media_type_confusion() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // A manifest that also has `manifests`, as an index would.
    refuse_case("manifest-with-manifests", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), hex(field(i, "manifest")).into(), "ambiguous".into()]
    });
    // index.json calls an image index a manifest.
    refuse_case("index-called-manifest", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), hex(field(i, "digest")).into(), "media type confusion".into()]
    });
}

#[test]
fn an_index_naming_one_child_20000_times_reads_it_once_and_lists_its_platform_once() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    env.keygen("ops");
    make(&env, "index-same-child-20000", "fan.tar", None);
    env.run(&["create", "-k", "ops.key", "-o", "out.tar", "oci-archive:fan.tar=example.com/fan:1"]).ok();
    let index = crate::common::signed_index(&env, "out.tar");
    assert_eq!(index["images"][0]["platforms"], serde_json::json!(["linux/amd64"]), "{index}");
    env.run(&["verify", "-p", "ops.pub", "out.tar"]).ok();
}

#[test]
fn an_image_of_more_than_1024_manifests_is_refused_naming_the_limit() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    let info = make(&env, "index-too-many-manifests", "evil.tar", None);
    let needles = [hex(field(&info, "index")), "more than 1024 distinct manifests in one image"];
    refused(&env, "oci-archive:evil.tar=example.com/x:1", EXIT_BAD_INPUT, &needles);
}

#[test]
fn create_refuses_json_with_duplicate_keys() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("duplicate-keys", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), hex(field(i, "manifest")).into(), "duplicate key `layers`".into()]
    });
}

#[test]
fn create_refuses_absurdly_deep_json_without_overflowing_the_stack() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("deep-json", "oci-archive", EXIT_BAD_INPUT, |_| {
        vec!["evil.tar: index.json".into(), "nesting deeper than".into()]
    });
}

#[test]
fn create_refuses_json_documents_larger_than_4_mib() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("oversized-index", "oci-archive", EXIT_BAD_INPUT, |_| {
        vec!["evil.tar: index.json".into(), "exceeds the 4194304 byte limit".into()]
    });
    refuse_case("oversized-manifest", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), hex(field(i, "manifest")).into(), format!("{} bytes is too large", i["size"])]
    });
}

#[test]
fn create_refuses_a_legacy_layer_whose_content_does_not_match_its_diff_id() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // One byte of /bin/busybox inside the base layer.tar flipped; the inner tar is still valid.
    refuse_case("diff-id-mismatch", "docker-archive", EXIT_INTEGRITY, |i| {
        vec![
            format!("evil.tar: {}", field(i, "entry")),
            "diff_id is sha256:48a1f78b29454b4549d598581bd2938d8cd5ffb828eb70e8d2b0ba842186aab3".into(),
        ]
    });
}

#[test]
fn create_refuses_a_layer_count_that_disagrees_with_the_config_diff_ids() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // Legacy docker save: manifest.json lists one layer for an image whose config has two.
    refuse_case("layer-count-legacy", "docker-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar: manifest.json".into(), field(i, "config").into(), "2 diff_ids".into(), "1 layers".into()]
    });
    // OCI: the manifest lists its one layer twice.
    refuse_case("layer-count-oci", "oci-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar".into(), hex(field(i, "manifest")).into(), "2 layers but its config has 1 diff_ids".into()]
    });
}

#[test]
fn create_refuses_a_docker25_manifest_json_that_disagrees_with_index_json() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    for case in ["docker25-layers-disagree", "docker25-config-disagrees"] {
        refuse_case(case, "docker-archive", EXIT_BAD_INPUT, |i| {
            vec!["evil.tar: manifest.json".into(), "disagrees with index.json".into(), field(i, "config").into()]
        });
    }
}

#[test]
fn a_docker25_archive_whose_repotags_and_index_json_names_disagree_is_refused() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("docker25-names-disagree", "docker-archive", EXIT_BAD_INPUT, |i| {
        vec!["evil.tar: manifest.json".into(), "disagrees with index.json".into(), field(i, "tag").into()]
    });
}

#[test]
fn a_digest_pin_must_be_the_images_digest() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    refuse_case("repotags-wrong-digest-pin", "docker-archive", EXIT_BAD_INPUT, |i| {
        vec![format!("is pinned to {}", field(i, "pin")), "but the image's digest is".into()]
    });
    let env = Env::new();
    let wrong = format!("oci:{}:web-1.4=example.com/team/web@sha256:{}", fixture_str("oci-layout"), "1".repeat(64));
    refused(&env, &wrong, EXIT_BAD_INPUT, &["is pinned to sha256:1111", "but the image's digest is"]);
}

#[test]
fn a_name_pinned_only_by_digest_is_never_exported_as_latest() {
    let env = Env::new();
    env.keygen("ops");
    let web = "sha256:18963305bca706145e4465c8b82cf671f1b6ef60476cafd13176c14b5d482385";
    let src = format!("oci:{}:web-1.4=example.com/team/web@{web}", fixture_str("oci-layout"));
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    env.run(&["export", "-p", "ops.pub", "--format", "docker-archive", "-o", "img.tar", "b.tar"]).ok();
    let mut ar = tar::Archive::new(std::fs::File::open(env.path("img.tar")).unwrap());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_string_lossy().into_owned();
        if name == "manifest.json" || name == "repositories" {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut e, &mut text).unwrap();
            assert!(!text.contains("latest"), "{name} tags the digest-pinned image as latest: {text}");
        }
    }
}

#[test]
fn a_name_with_terminal_escapes_is_refused_and_shown_escaped() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let run = refuse_case("ref-name-with-escapes", "oci-archive", EXIT_BAD_INPUT, |_| {
        vec!["evil.tar".into(), "\\u{1b}[2J\\u{1b}[31m".into(), "not a valid image reference".into()]
    });
    assert!(!run.stderr.contains('\x1b'), "a raw escape reached the terminal:\n{}", run.stderr);
    let env = Env::new();
    let src = format!("oci:{}:web\x1b[2J", fixture_str("oci-layout"));
    let run = refused(&env, &src, EXIT_BAD_INPUT, &["web\\u{1b}[2J"]);
    assert!(!run.stderr.contains('\x1b'), "a raw escape reached the terminal:\n{}", run.stderr);
}

#[test]
fn a_file_whose_name_has_an_equals_sign_is_a_file_not_a_name() {
    let env = Env::new();
    env.keygen("ops");
    std::fs::copy(crate::common::fixture("tools.oci.tar"), env.path("a=b.tar")).unwrap();
    env.run(&["create", "-k", "ops.key", "-o", "out.tar", "oci-archive:a=b.tar"]).ok();
    let index = crate::common::signed_index(&env, "out.tar");
    assert_eq!(index["images"][0]["name"], "registry.example/tools/busybox:1.36", "{index}");
}

#[test]
fn a_nameless_image_is_refused_with_the_syntax_to_name_it_and_accepted_once_named() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    let env = Env::new();
    let layout = format!("oci:{}:web-1.4", fixture_str("oci-layout"));
    refused(&env, &layout, EXIT_BAD_INPUT, &["web-1.4", &format!("`{layout}=REGISTRY/REPOSITORY:TAG`")]);

    make(&env, "nameless-oci-archive", "oci.tar", None);
    refused(
        &env,
        "oci-archive:oci.tar:1.36",
        EXIT_BAD_INPUT,
        &["`1.36`", "`oci-archive:oci.tar:1.36=REGISTRY/REPOSITORY:TAG`"],
    );

    let info = make(&env, "nameless-docker-archive", "save.tar", None);
    refused(
        &env,
        "docker-archive:save.tar",
        EXIT_BAD_INPUT,
        &[field(&info, "config"), "`docker-archive:save.tar=REGISTRY/REPOSITORY:TAG`"],
    );

    for (i, src) in [
        format!("{layout}=registry.example/team/web:1.4"),
        "oci-archive:oci.tar:1.36=registry.example/tools/busybox:1.36".into(),
        "docker-archive:save.tar=registry.example/base:1.0".into(),
    ]
    .iter()
    .enumerate()
    {
        let out = format!("named-{i}.tar");
        env.run(&["create", "-k", "ops.key", "-o", &out, src]).ok();
        env.run(&["verify", "-p", "ops.pub", &out]).ok();
    }
}

/// A 512 KiB tmpfs mounted in the test directory, unmounted when dropped.
struct SmallDisk {
    dir: std::path::PathBuf,
}

impl SmallDisk {
    /// `None` (after saying why) when this process may not mount.
    fn mount(env: &Env) -> Option<SmallDisk> {
        let dir = env.path("small");
        std::fs::create_dir(&dir).expect("mkdir small");
        let out = Command::new("mount").args(["-t", "tmpfs", "-o", "size=512k", "tmpfs"]).arg(&dir).output();
        match out {
            Ok(o) if o.status.success() => Some(SmallDisk { dir }),
            Ok(o) => {
                eprintln!("SKIPPED: cannot mount a small tmpfs (needs root): {}", String::from_utf8_lossy(&o.stderr));
                None
            }
            Err(e) => {
                eprintln!("SKIPPED: cannot run mount: {e}");
                None
            }
        }
    }

    fn listing(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(&self.dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}

/// Creates a bundle from `source` onto the full disk: exit 6, a message naming the output and the
/// cause, nothing left on the disk.
fn full_disk(source: &str) {
    let env = Env::new();
    env.keygen("ops");
    let Some(disk) = SmallDisk::mount(&env) else { return };
    let run = env.run(&["create", "-k", "ops.key", "-o", "small/b.tar", source]);
    let left = disk.listing();
    drop(disk);
    run.fails(EXIT_IO, &["No space left on device", "small/"]);
    assert!(left.is_empty(), "left on the full disk: {left:?}");
}

#[test]
fn create_on_a_full_disk_fails_with_an_io_error_naming_the_output_and_leaves_nothing() {
    // The OCI layer is copied from the source archive straight into the bundle.
    full_disk(&format!("oci-archive:{}", fixture_str("tools.oci.tar")));
}

#[test]
fn create_on_a_full_disk_while_staging_legacy_layers_leaves_nothing() {
    // Legacy layers are compressed into a staging directory beside the output first.
    full_disk(&format!("docker-archive:{}", fixture_str("legacy-save.tar")));
}

/// Runs airlock under tests/hostile.py `maxrss`: (exit code, peak RSS in KiB, stderr).
pub fn peak_rss(env: &Env, args: &[&str]) -> (i64, u64, String) {
    peak_rss_with(env, args, &[])
}

/// [`peak_rss`] with extra environment variables (`DOCKER_HOST`).
pub fn peak_rss_with(env: &Env, args: &[&str], vars: &[(&str, &str)]) -> (i64, u64, String) {
    let o = Command::new("python3")
        .current_dir(env.dir.path())
        .envs(vars.iter().copied())
        .env_remove("AIRLOCK_KEY_PASSWORD")
        .env_remove("SOURCE_DATE_EPOCH")
        .arg(SCRIPT)
        .arg("maxrss")
        .arg(env!("CARGO_BIN_EXE_airlock"))
        .args(args)
        .output()
        .expect("python3");
    let v: Value = serde_json::from_slice(&o.stdout).expect("maxrss JSON");
    (v["code"].as_i64().unwrap(), v["maxrss_kib"].as_u64().unwrap(), v["stderr"].as_str().unwrap().to_owned())
}

#[test]
fn create_and_verify_carry_a_gzip_bomb_layer_without_inflating_it() {
    if skip_without(&[Peer::Python]) {
        return;
    }
    // airlock never decompresses an OCI layer (only legacy layers are compressed, never
    // inflated), so a 1 GiB-of-zeros layer that gzips to 1 MiB must cost 1 MiB, not 1 GiB.
    let env = Env::new();
    env.keygen("ops");
    let info = make(&env, "gzip-bomb", "bomb.tar", None);
    let limit_kib = 256 * 1024;
    let (code, rss, stderr) = peak_rss(&env, &["create", "-k", "ops.key", "-o", "b.tar", "oci-archive:bomb.tar"]);
    assert_eq!(code, 0, "create failed:\n{stderr}");
    assert!(rss < limit_kib, "create peaked at {rss} KiB for a {} byte layer", info["compressed"]);
    let (code, rss, stderr) = peak_rss(&env, &["verify", "-p", "ops.pub", "b.tar"]);
    assert_eq!(code, 0, "verify failed:\n{stderr}");
    assert!(rss < limit_kib, "verify peaked at {rss} KiB");
    let bundle = std::fs::metadata(env.path("b.tar")).unwrap().len();
    assert!(bundle < 4 << 20, "the layer was stored compressed: bundle is {bundle} bytes");
}
