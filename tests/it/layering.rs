//! The library's layers (scripts/check-layers.sh): no module uses a layer above its own, and the
//! check names the file, the line and both layers when one does.

use std::path::Path;

use crate::common::tool;

fn check(src: &Path) -> crate::common::Run {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/check-layers.sh");
    tool(script.to_str().unwrap(), &[src.to_str().unwrap()], &[])
}

#[test]
fn no_module_uses_a_higher_layer() {
    let run = check(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
}

#[test]
fn a_source_that_uses_the_plan_or_a_bundle_that_reaches_a_source_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let write = |path: &str, text: &str| {
        let p = dir.path().join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    write("lib.rs", "pub mod bundle;\npub mod plan;\npub mod source;\n");
    write("plan/mod.rs", "use crate::source::Blob;\n");
    write(
        "source/oci.rs",
        "//! Uses crate::plan only in this comment.\nuse crate::digest::Digest;\n\nuse crate::{error, plan::Collection};\n",
    );
    write("bundle/writer.rs", "fn f() {\n    crate::source::read();\n}\n");
    write("serve/mod.rs", "use crate::ops::create;\n");
    write("extra.rs", "\n");
    let run = check(dir.path());
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let out = run.stdout;
    assert!(out.contains("source/oci.rs:4: `source` (source) uses `crate::plan` (plan), a higher layer"), "{out}");
    assert!(
        out.contains(
            "bundle/writer.rs:2: `bundle` (bundle) uses `crate::source`, which it must reach through the plan"
        ),
        "{out}"
    );
    assert!(out.contains("serve/mod.rs:1: `serve` (sink) uses `crate::ops` (ops), a higher layer"), "{out}");
    assert!(out.contains("extra.rs: module `extra` has no layer"), "{out}");
    assert!(!out.contains("oci.rs:1"), "a comment is not an import:\n{out}");
    assert!(!out.contains("plan/mod.rs"), "the plan may use sources:\n{out}");
}
