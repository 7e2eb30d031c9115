//! The fuzz corpus replayed on stable Rust: every input under fuzz/corpus/TARGET and
//! fuzz/regressions/TARGET goes through the same `airlock::fuzz` function as `cargo fuzz run
//! TARGET` (docs/fuzzing.md), so a crash the fuzzers once found, or a new one the corpus reaches,
//! fails CI.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

fn inputs(target: &str) -> Vec<std::path::PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut files: Vec<_> = ["corpus", "regressions"]
        .iter()
        .filter_map(|dir| std::fs::read_dir(root.join(dir).join(target)).ok())
        .flatten()
        .map(|e| e.expect("corpus entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_fuzz_target_survives_its_corpus_and_regressions() {
    let mut failed = Vec::new();
    for (target, run) in airlock::fuzz::TARGETS {
        let files = inputs(target);
        assert!(!files.is_empty(), "fuzz/corpus/{target} is empty");
        for file in files {
            let data = std::fs::read(&file).expect("read a corpus file");
            if catch_unwind(AssertUnwindSafe(|| run(&data))).is_err() {
                failed.push(file.display().to_string());
            }
        }
    }
    assert!(failed.is_empty(), "these inputs panic (reproduce: cargo fuzz run TARGET FILE):\n{}", failed.join("\n"));
}
