//! The `inkflow` command line: run, validate, graph and inspect pipelines.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    inkflow::keep_large_buffers_out_of_the_heap();
    cli::main()
}
