//! `inkflow preflight FILE.pdf [--cover COVER.pdf]`: a book checked against KDP's print rules.

use std::path::PathBuf;
use std::process::ExitCode;

use inkflow::print::preflight::{Target, check_cover, check_interior, trim_of};
use inkflow::print::{Paper, Trim};

/// Arguments of `inkflow preflight`.
#[derive(clap::Args)]
pub struct PreflightArgs {
    /// The interior PDF (any PDF, made by inkflow or not).
    interior: PathBuf,
    /// Also check this cover PDF, sized for the interior's page count.
    #[arg(long, value_name = "COVER.pdf")]
    cover: Option<PathBuf>,
    /// The trim the book is printed at (8.5x11, 8.5x8.5, 8x10, 6x9, a4, "W x H in|mm"); default:
    /// the interior's TrimBox.
    #[arg(long, value_parser = Trim::parse)]
    trim: Option<Trim>,
    /// The interior must have bleed (default: as its page boxes say).
    #[arg(long)]
    bleed: bool,
    /// The paper, for the spine width and the page limit.
    #[arg(long, default_value = "white", value_parser = Paper::parse)]
    paper: Paper,
}

/// Prints every rule as ✓ or ✗; exit code 0 only when all pass, 1 otherwise.
pub fn run(args: &PreflightArgs) -> anyhow::Result<ExitCode> {
    let target = Target { trim: args.trim, bleed: args.bleed.then_some(true), paper: args.paper };
    let interior = check_interior(&args.interior, target).map_err(anyhow::Error::msg)?;
    println!("{interior}");
    let mut passed = interior.passed();
    if let Some(cover) = &args.cover {
        let trim = match args.trim {
            Some(trim) => trim,
            None => trim_of(&args.interior).map_err(anyhow::Error::msg)?,
        };
        let pages = interior.pages;
        let cover = check_cover(cover, pages, trim, args.paper).map_err(anyhow::Error::msg)?;
        println!("\n{cover}");
        passed &= cover.passed();
    }
    Ok(if passed { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
