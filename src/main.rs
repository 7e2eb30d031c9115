//! The `airlock` binary: parses arguments, calls the library, prints results and maps error
//! classes to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            cli::print_error(&err);
            cli::exit_code(&err)
        }
    }
}
