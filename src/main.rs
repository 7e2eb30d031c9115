//! The `airlock` binary: parses arguments, calls the library, prints results and maps error
//! classes to exit codes.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Args::parse();
    let result = cli::run(args);
    // An interruption may make the run fail (its staging vanished): the handler reports and exits.
    cli::wait_if_interrupted();
    match result.and_then(cli::out::checked) {
        Ok(code) => code,
        Err(err) => {
            cli::print_error(&err);
            cli::exit_code(&err)
        }
    }
}
