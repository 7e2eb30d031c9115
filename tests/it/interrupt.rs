//! An interrupted run cleans up: SIGINT or SIGTERM during `create`, `export` or `push` removes its
//! staging directories and temporary files, exits 130 or 143 and says what was and was not
//! written.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, Run};

/// Waits until a path whose name starts with `prefix` appears in `dir` (recursively one level) and
/// holds data, i.e. until the run is busy staging.
fn wait_for_staging(dir: &std::path::Path, prefix: &str, child: &mut Child) -> PathBuf {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(child.try_wait().unwrap().is_none(), "airlock ended before it was interrupted");
        let found = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|p| p.file_name().unwrap().to_string_lossy().starts_with(prefix));
        if let Some(p) = found {
            let busy = walkdir::WalkDir::new(&p)
                .into_iter()
                .filter_map(Result::ok)
                .any(|e| e.file_type().is_file() && e.metadata().map(|m| m.len() > 0).unwrap_or(false));
            if busy {
                return p;
            }
        }
        assert!(Instant::now() < deadline, "no {prefix}* appeared in {}", dir.display());
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn signal(child: &Child, name: &str) {
    let ok = std::process::Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status();
    assert!(ok.unwrap().success(), "kill -{name}");
}

fn finish(child: Child) -> Run {
    Run::from_output(child.wait_with_output().unwrap())
}

fn spawn(env: &Env, args: &[&str]) -> Child {
    env.cmd().args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
}

#[test]
fn an_interrupted_create_removes_its_staging_and_exits_130_or_143() {
    let env = Env::new();
    env.keygen("ops");
    crate::big_save::legacy_save(&env.path("save.tar"), 64 << 20);
    let before = env.listing();
    for (sig, code) in [("INT", 130), ("TERM", 143)] {
        // zstd -19 on an incompressible layer is slow enough to be caught in the act.
        let mut child = spawn(
            &env,
            &[
                "create",
                "-k",
                "ops.key",
                "-o",
                "b.tar",
                "--compression",
                "zstd",
                "--compression-level",
                "19",
                "save.tar",
            ],
        );
        let stage = wait_for_staging(env.dir.path(), ".airlock-stage-", &mut child);
        signal(&child, sig);
        let run = finish(child);
        assert_eq!(run.code, code, "SIG{sig}\nstderr:\n{}", run.stderr);
        let stage_name = stage.file_name().unwrap().to_string_lossy().into_owned();
        let interrupted = format!("interrupted by SIG{sig}");
        // The staging directory by its plain path (`DIR/.airlock-stage-…`, not `DIR/./.airlock-stage-…`).
        let removed = format!("removed the temporary {}", stage.display());
        for needle in [interrupted.as_str(), &removed, &stage_name, "b.tar was not written"] {
            assert!(run.stderr.contains(needle), "stderr lacks {needle:?}:\n{}", run.stderr);
        }
        assert_eq!(env.listing(), before, "SIG{sig} left something behind");
    }
}

/// Starts `args` with the first half of bundle `b.tar` on stdin, keeping stdin open, and waits for
/// the run to stage into `stage_dir`.
fn interrupt_while_reading_stdin(env: &Env, args: &[&str], stage_dir: &std::path::Path, sig: &str) -> Run {
    let bundle = std::fs::read(env.path("b.tar")).unwrap();
    // The Docker Engine is never reached: `load` is interrupted while it verifies.
    let mut child = env
        .cmd()
        .args(args)
        .env("DOCKER_HOST", "unix:///nonexistent/docker.sock")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(&bundle[..bundle.len() / 2]).unwrap();
    wait_for_staging(stage_dir, ".airlock-export-", &mut child);
    signal(&child, sig);
    let run = finish(child);
    drop(stdin);
    run
}

#[test]
fn an_interrupted_export_removes_its_staging_and_writes_nothing() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let before = env.listing();
    let args = ["export", "-p", "ops.pub", "-", "--format", "oci", "-o", "layout"];
    let run = interrupt_while_reading_stdin(&env, &args, env.dir.path(), "TERM");
    assert_eq!(run.code, 143, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("interrupted by SIGTERM") && run.stderr.contains("layout was not written"),
        "{}",
        run.stderr
    );
    assert_eq!(env.listing(), before);
}

#[test]
fn an_interrupted_push_removes_its_staging_and_says_what_stays() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    std::fs::create_dir(env.path("tmp")).unwrap();
    let args = ["push", "-p", "ops.pub", "-", "--to", "127.0.0.1:9/mirror", "--tmp-dir", "tmp"];
    let run = interrupt_while_reading_stdin(&env, &args, &env.path("tmp"), "INT");
    assert_eq!(run.code, 130, "stderr:\n{}", run.stderr);
    assert!(
        run.stderr.contains("interrupted by SIGINT") && run.stderr.contains("run the push again"),
        "{}",
        run.stderr
    );
    assert_eq!(std::fs::read_dir(env.path("tmp")).unwrap().count(), 0, "staging left in --tmp-dir");
}

#[test]
fn an_interrupted_load_removes_its_staging() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    std::fs::create_dir(env.path("tmp")).unwrap();
    let args = ["load", "-p", "ops.pub", "-", "--tmp-dir", "tmp"];
    let run = interrupt_while_reading_stdin(&env, &args, &env.path("tmp"), "TERM");
    assert_eq!(run.code, 143, "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("interrupted by SIGTERM") && run.stderr.contains("Docker Engine"), "{}", run.stderr);
    assert_eq!(std::fs::read_dir(env.path("tmp")).unwrap().count(), 0, "staging left in --tmp-dir");
}

#[test]
fn an_interrupted_export_of_a_bundle_file_removes_the_layout_it_was_writing() {
    let env = Env::new();
    env.keygen("ops");
    crate::common::big_layout(&env.path("big"), 1, 128 << 20);
    let src = format!("oci:{}=example.com/interrupt/big:1", env.path("big").display());
    env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    std::fs::remove_dir_all(env.path("big")).unwrap();
    let before = env.listing();
    // A bundle file is verified in place, then the layout is written from it beside the output.
    let mut child = spawn(&env, &["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "layout"]);
    wait_for_staging(env.dir.path(), ".airlock-export-", &mut child);
    signal(&child, "INT");
    let run = finish(child);
    assert_eq!(run.code, 130, "stderr:\n{}", run.stderr);
    assert!(run.stderr.contains("layout was not written"), "{}", run.stderr);
    assert_eq!(env.listing(), before);
}
