//! `airlock completions SHELL`: the shell's completion script for every subcommand and flag, on
//! stdout, generated from the same clap definitions the binary parses with.

use std::io::Write;

use anyhow::Result;
use clap::CommandFactory;
use clap_complete::Shell;

/// `--help` ends with these.
const EXAMPLES: &str = "\
Examples:
  airlock completions bash > /etc/bash_completion.d/airlock
  airlock completions zsh > \"${fpath[1]}/_airlock\"
  airlock completions fish > ~/.config/fish/completions/airlock.fish";

#[derive(clap::Args)]
#[command(after_help = EXAMPLES)]
pub struct CompletionsArgs {
    /// The shell to write a completion script for
    #[arg(value_enum)]
    shell: Shell,
}

pub fn run(args: CompletionsArgs) -> Result<()> {
    // clap_complete panics on a write error (`| head` closing the pipe): write the script here.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut super::Args::command(), "airlock", &mut script);
    if let Err(e) = std::io::stdout().lock().write_all(&script) {
        super::out::remember("<stdout>", e);
    }
    Ok(())
}
