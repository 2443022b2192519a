//! The `inkflow` command line: run, validate, graph and inspect pipelines.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    cli::main()
}
