//! The command line as a newcomer meets it: shell completions, the examples every `--help`
//! ends with, and the README's commands as they would be pasted into a shell.

use crate::common::{EXIT_BAD_INPUT, EXIT_IO, EXIT_TRUST, Env, Run};

/// Every subcommand `airlock --help` lists (but `help`).
fn subcommands(env: &Env) -> Vec<String> {
    let help = env.run(&["--help"]).ok().stdout;
    let commands = help.split_once("Commands:\n").map(|(_, c)| c).expect("a Commands section");
    let names = commands.lines().take_while(|l| !l.trim().is_empty()).filter_map(|l| l.split_whitespace().next());
    let names: Vec<String> = names.filter(|n| *n != "help").map(str::to_owned).collect();
    assert!(names.len() >= 10, "{help}");
    names
}

/// The examples `airlock SUB --help` ends with, one line each.
fn examples(env: &Env, sub: &str) -> Vec<String> {
    let help = env.run(&[sub, "--help"]).ok().stdout;
    let examples = help.split_once("\nExamples:\n").map(|(_, e)| e).unwrap_or_else(|| panic!("{sub} --help:\n{help}"));
    examples.lines().map(|l| l.trim().to_owned()).filter(|l| !l.is_empty()).collect()
}

#[test]
fn completions_for_bash_zsh_and_fish_offer_every_subcommand_and_an_unknown_shell_is_a_usage_error() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = env.run(&["completions", shell]).ok().stdout;
        for sub in subcommands(&env) {
            assert!(script.contains(&sub), "{shell} completions lack {sub}");
        }
        assert!(script.contains("insecure-no-signature"), "{shell} completions lack the flags");
    }
    env.run(&["completions", "tcsh"]).fails(2, &["invalid value 'tcsh'", "bash", "zsh", "fish"]);
}

#[test]
fn every_subcommand_help_ends_with_examples_of_that_subcommand_as_the_readme_shows_them() {
    let env = Env::new();
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let readme_lines: Vec<&str> = readme.lines().map(str::trim).collect();
    for sub in subcommands(&env) {
        let examples = examples(&env, &sub);
        assert!(examples.iter().any(|e| e.starts_with(&format!("airlock {sub} "))), "{sub} examples:\n{examples:?}");
        for line in examples {
            assert!(
                readme_lines.contains(&line.as_str()),
                "`airlock {sub} --help` shows an example the README lacks:\n{line}"
            );
        }
    }
}

/// Lines of the README's code blocks that a shell would cut short when pasted: a `\` meant to
/// continue the command but followed by a comment (it escapes a space and the comment ends the
/// command), or a continued line followed by a comment or a blank line.
fn broken_continuations(readme: &str) -> Vec<String> {
    let mut broken = Vec::new();
    let mut in_code = false;
    let mut continued: Option<&str> = None;
    for line in readme.lines() {
        if line.trim_start().starts_with("```") {
            in_code = !in_code;
            continued = None;
            continue;
        }
        if !in_code {
            continue;
        }
        if let Some(prev) = continued.take()
            && (line.trim().is_empty() || line.trim_start().starts_with('#'))
        {
            broken.push(format!("{prev}\n{line}"));
        }
        let code = line.split(" #").next().unwrap_or(line).trim_end();
        if code.ends_with('\\') && code.len() < line.trim_end().len() {
            broken.push(line.to_owned());
        } else if line.trim_end().ends_with('\\') {
            continued = Some(line);
        }
    }
    broken
}

#[test]
fn the_readme_commands_run_as_pasted_with_no_comment_inside_a_continued_command() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let broken = broken_continuations(&readme);
    assert!(broken.is_empty(), "a shell would cut these commands short:\n{}", broken.join("\n"));
    let pasted = "airlock create -k ops.key -o bundle.tar \\\n    docker-archive:all.tar \\      # a save\n    oci-archive:tools.tar\n";
    assert_eq!(broken_continuations(&format!("```sh\n{pasted}```\n")).len(), 1, "the check finds the mistake");
}

#[test]
fn a_key_given_for_the_bundle_or_a_bundle_for_the_key_is_named_as_such() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let legacy = crate::common::fixture("legacy-save.tar");
    std::fs::copy(legacy, env.path("save.tar")).unwrap();
    env.run(&["verify", "-p", "ops.key", "b.tar"])
        .fails(EXIT_TRUST, &["ops.key: is a minisign secret key, not a public key", "PREFIX.pub"]);
    env.run(&["verify", "-p", "b.tar", "b.tar"]).fails(EXIT_TRUST, &["b.tar", "too large", "PREFIX.pub"]);
    env.run(&["create", "-k", "ops.pub", "-o", "out.tar", "save.tar"])
        .fails(EXIT_TRUST, &["ops.pub: is a minisign public key, not a secret key", "PREFIX.key"]);
    let swapped = ["is a minisign key or signature, not a bundle", "after -p"];
    env.run(&["verify", "-p", "ops.pub", "ops.pub"]).fails(EXIT_BAD_INPUT, &swapped);
    env.run(&["inspect", "ops.key"]).fails(EXIT_BAD_INPUT, &swapped);
    // cosign's keys (PEM) and airlock's (minisign) in each other's place.
    let pem = "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE\n-----END PUBLIC KEY-----\n";
    std::fs::write(env.path("cosign.pub"), pem).unwrap();
    std::fs::write(env.path("cosign.key"), "-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nx\n").unwrap();
    env.run(&["verify", "-p", "cosign.pub", "b.tar"])
        .fails(EXIT_TRUST, &["cosign.pub: is a PEM key (cosign's?)", "goes after --cosign-key"]);
    env.run(&["verify", "-p", "ops.pub", "--cosign-key", "cosign.key", "b.tar"])
        .fails(EXIT_TRUST, &["cosign.key", "it is a private key; give its public half"]);
    env.run(&["verify", "-p", "ops.pub", "--cosign-key", "ops.pub", "b.tar"])
        .fails(EXIT_TRUST, &["ops.pub", "it is a minisign key (airlock's own, for -p)"]);
    env.run(&["verify", "-p", "ops.pub", "save.tar"])
        .fails(EXIT_BAD_INPUT, &["save.tar: not an airlock bundle", "`airlock create` bundles it"]);
    assert!(!env.path("out.tar").exists());
}

#[test]
fn load_with_no_docker_engine_says_so_before_it_verifies_and_how_to_point_at_one() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let host = format!("unix://{}", env.path("docker.sock").display());
    let run = env.cmd().args(["load", "-p", "ops.pub", "b.tar"]).env("DOCKER_HOST", &host).output().unwrap();
    let run = Run::from_output(run).fails(
        EXIT_IO,
        &[&format!("docker daemon at {host}"), "cannot connect", "is the Docker Engine running there? DOCKER_HOST"],
    );
    let note = run.stderr.find("note: docker daemon at").unwrap_or_else(|| panic!("no early note:\n{}", run.stderr));
    let verified = run.stderr.find("verified signature").expect("the bundle is still verified");
    assert!(note < verified, "the missing engine is told before the verification:\n{}", run.stderr);
}

/// `airlock ARGS` with stdout a pipe whose reader is gone before the first line (`| head` that
/// has read enough), and with `--json` into a full disk.
fn with_stdout(env: &Env, args: &[&str], stdout: std::process::Stdio) -> Run {
    Run::from_output(env.cmd().args(args).stdout(stdout).output().unwrap())
}

#[test]
fn output_into_a_closed_pipe_is_dropped_without_a_panic_and_a_full_disk_is_exit_6() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    for args in [&["inspect", "b.tar"][..], &["verify", "-p", "ops.pub", "b.tar"], &["completions", "bash"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let run = with_stdout(&env, args, writer.into());
        assert_eq!(run.code, 0, "`airlock {}` into a closed pipe:\n{}", args.join(" "), run.stderr);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    }
    let full = std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    with_stdout(&env, &["verify", "-p", "ops.pub", "--json", "b.tar"], full.into())
        .fails(EXIT_IO, &["error: <stdout>", "No space left on device"]);
}

#[test]
fn an_output_in_a_missing_directory_and_a_malformed_flag_say_what_is_wrong() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let before = env.listing();
    let src = format!("oci-archive:{}", crate::common::fixture_str("tools.oci.tar"));
    let missing = ["missing/out", "its directory missing does not exist"];
    env.run(&["create", "-k", "ops.key", "-o", "missing/out.tar", &src]).fails(EXIT_IO, &missing);
    env.run(&["keygen", "--no-password", "-o", "missing/out"]).fails(EXIT_IO, &missing);
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "oci", "-o", "missing/out"]).fails(EXIT_IO, &missing);
    env.run(&["create", "-k", "ops.key", "-o", "b.tar/out.tar", &src]).fails(EXIT_IO, &["b.tar is not a directory"]);
    env.run(&["create", "-k", "ops.key", "-o", "out.tar", "--created", "yesterday", &src])
        .fails(EXIT_BAD_INPUT, &["--created: `yesterday`", "give RFC 3339 (2026-01-01T00:00:00Z) or seconds"]);
    env.run(&["push", "-p", "ops.pub", "b.tar", "--to", "127.0.0.1:9/mirror:1.0"])
        .fails(EXIT_BAD_INPUT, &["--to 127.0.0.1:9/mirror:1.0", "without a tag or digest"]);
    assert_eq!(env.listing(), before, "nothing is left behind");
}

#[test]
fn serve_on_a_port_in_use_says_so_before_it_verifies_and_records_nothing() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let listen = taken.local_addr().unwrap().to_string();
    let state = env.path("state.json");
    let args = ["serve", "-p", "ops.pub", "--listen", &listen, "--state", state.to_str().unwrap(), "b.tar"];
    let run = env.run(&args).fails(EXIT_IO, &[&format!("--listen {listen}"), "Address already in use"]);
    assert!(!run.stderr.contains("verified"), "the bundle was verified first:\n{}", run.stderr);
    assert!(!state.exists(), "a bundle that was never served is recorded as served");
}

#[test]
fn serve_drop_registry_host_refuses_two_images_that_would_share_a_name() {
    let env = Env::new();
    env.host_clash_bundle("b.tar");
    let serve = ["serve", "-p", "ops.pub", "--drop-registry-host", "--listen", "127.0.0.1:0", "b.tar"];
    env.run(&serve).fails(
        EXIT_BAD_INPUT,
        &["image registry.example/team/web:1.4: would be served as team/web:1.4, as image example.com/team/web:1.4"],
    );
}

#[test]
fn exporting_a_delta_with_its_base_shows_no_empty_hashing_task() {
    let env = Env::new();
    let legacy = format!("docker-archive:{}", crate::common::fixture_str("legacy-save.tar"));
    let tools = format!("oci-archive:{}", crate::common::fixture_str("tools.oci.tar"));
    env.keygen("ops");
    env.run(&["create", "-k", "ops.key", "-o", "full.tar", &legacy]).ok();
    env.run(&["create", "-k", "ops.key", "-o", "delta.tar", "--base", "full.tar", &legacy, &tools]).ok();
    let export = ["export", "-p", "ops.pub", "delta.tar", "--base", "full.tar", "--format", "docker-archive"];
    let run = env.run(&[&export[..], &["-o", "images.tar"]].concat()).ok();
    assert!(!run.stderr.contains("full.tar: 0 B"), "a task of nothing is shown:\n{}", run.stderr);
}

#[test]
fn an_output_that_is_one_of_the_inputs_is_refused_and_the_input_kept() {
    let env = Env::new();
    env.standard_bundle("b.tar").ok();
    std::fs::copy(crate::common::fixture("legacy-save.tar"), env.path("save.tar")).unwrap();
    let (bundle, save) = (std::fs::read(env.path("b.tar")).unwrap(), std::fs::read(env.path("save.tar")).unwrap());
    let reading = |name: &str| format!("-o {name}: is {name}, which is being read: give another output");
    env.run(&["create", "-k", "ops.key", "-o", "save.tar", "docker-archive:save.tar"])
        .fails(EXIT_BAD_INPUT, &[&reading("save.tar")]);
    env.run(&["export", "-p", "ops.pub", "b.tar", "--format", "docker-archive", "-o", "b.tar"])
        .fails(EXIT_BAD_INPUT, &[&reading("b.tar")]);
    env.run(&["index", "b.tar", "-o", "b.tar"]).fails(EXIT_BAD_INPUT, &[&reading("b.tar")]);
    assert!(std::fs::read(env.path("b.tar")).unwrap() == bundle, "the bundle was replaced");
    assert!(std::fs::read(env.path("save.tar")).unwrap() == save, "the source was replaced");
}
