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

#[test]
fn off_a_terminal_create_and_verify_log_each_phase_in_plain_lines() {
    let env = Env::new();
    env.keygen("ops");
    big_layout(&env.path("big"), 1, 12 << 20);
    let src = format!("oci:{}", env.path("big").display());
    let run = env.run(&["create", "-k", "ops.key", "-o", "b.tar", &src]).ok();
    plain(&run);
    has_line(&run, "writing b.tar (12.0 MiB)");
    has_line(&run, "wrote b.tar: 12.0 MiB in ");

    let run = env.run(&["verify", "-p", "ops.pub", "b.tar"]).ok();
    plain(&run);
    has_line(&run, "verifying b.tar (12.0 MiB)");
    has_line(&run, "verified b.tar: 12.0 MiB in ");

    let run = env.run_with_stdin_file(&["verify", "-p", "ops.pub", "-"], "b.tar").ok();
    plain(&run);
    has_line(&run, "verifying <stdin>");
    has_line(&run, "verified <stdin>: ");
}
