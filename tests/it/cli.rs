//! The command line as a newcomer meets it: shell completions and the examples every `--help`
//! ends with.

use crate::common::Env;

const SUBCOMMANDS: [&str; 10] =
    ["keygen", "create", "inspect", "verify", "index", "diff", "export", "load", "push", "completions"];

#[test]
fn completions_for_bash_zsh_and_fish_offer_every_subcommand_and_an_unknown_shell_is_a_usage_error() {
    let env = Env::new();
    for shell in ["bash", "zsh", "fish"] {
        let script = env.run(&["completions", shell]).ok().stdout;
        for sub in SUBCOMMANDS {
            assert!(script.contains(sub), "{shell} completions lack {sub}");
        }
        assert!(script.contains("insecure-no-signature"), "{shell} completions lack the flags");
    }
    env.run(&["completions", "tcsh"]).fails(2, &["invalid value 'tcsh'", "bash", "zsh", "fish"]);
}

#[test]
fn every_subcommand_help_ends_with_examples_of_that_subcommand() {
    let env = Env::new();
    for sub in SUBCOMMANDS {
        let help = env.run(&[sub, "--help"]).ok().stdout;
        let examples =
            help.split_once("\nExamples:\n").map(|(_, e)| e).unwrap_or_else(|| panic!("{sub} --help:\n{help}"));
        assert!(examples.contains(&format!("airlock {sub} ")), "{sub} examples:\n{examples}");
    }
}
