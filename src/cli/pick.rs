//! `inkflow pick OUTPUT_DIR ITEM N`: makes candidate N of a page (a re-roll or a best-of-N
//! runner-up, kept in `rejected/` or `candidates/`) the page. The next `inkflow run` puts it in
//! place, from the raw cache, without paying again.

use std::path::PathBuf;
use std::process::ExitCode;

use inkflow::engine::journal::Journal;

/// Arguments of `inkflow pick`.
#[derive(clap::Args)]
pub struct PickArgs {
    /// The batch's output directory (holding journal.sqlite).
    output_dir: PathBuf,
    /// The item's key, as the metadata's "key" and `inkflow status` show it.
    item: String,
    /// The candidate to make the page: the N of its `STEM.cN.png` file (0 is the first).
    candidate: u32,
}

/// Records the pick in the journal.
pub fn run(args: &PickArgs) -> anyhow::Result<ExitCode> {
    let description = Journal::pick(&args.output_dir, &args.item, args.candidate)?;
    println!(
        "candidate {} of {} ({description}) is its page from the next run on: run the pipeline again with --output {} \
         (nothing is paid again)",
        args.candidate,
        args.item,
        args.output_dir.display()
    );
    Ok(ExitCode::SUCCESS)
}
