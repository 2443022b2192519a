//! `inkflow check [PIPELINE] [--generate]`: is fal.ai set up? Key present and accepted,
//! endpoint reachable, and optionally one small real image (about $0.003).

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use inkflow::engine::pipeline::LoadOptions;
use inkflow::stages::fal;
use serde_json::{Value, json};

/// Arguments of `inkflow check`.
#[derive(clap::Args)]
pub struct CheckArgs {
    /// A pipeline whose fal stage's options (model, base_url...) to check with.
    pipeline: Option<PathBuf>,
    /// Also generate one small image (schnell, square, 1 step; costs about $0.003).
    #[arg(long)]
    generate: bool,
}

/// Prints one ✓/✗ line per check; exits 1 when any failed.
pub fn run(args: &CheckArgs) -> anyhow::Result<ExitCode> {
    let options = match &args.pipeline {
        Some(file) => fal_options(file)?,
        None => json!({}),
    };
    let tokio =
        tokio::runtime::Builder::new_current_thread().enable_all().build().context("cannot start tokio")?;
    let lines = tokio.block_on(fal::check_setup(&options, &fal::Environment::process(), args.generate));
    let colour = std::io::stdout().is_terminal();
    let mut all_ok = true;
    for line in &lines {
        all_ok &= line.ok;
        let mark = match (line.ok, colour) {
            (true, true) => "\x1b[32m✓\x1b[0m",
            (false, true) => "\x1b[31m✗\x1b[0m",
            (true, false) => "✓",
            (false, false) => "✗",
        };
        println!("{mark} {}: {}", line.what, line.detail);
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The options of the pipeline's first fal stage.
fn fal_options(file: &std::path::Path) -> anyhow::Result<Value> {
    let (checked, _) = super::load_with(file, &LoadOptions::default())?;
    let stage = checked
        .components
        .iter()
        .find(|c| c.kind == "fal")
        .with_context(|| format!("{} has no stage of kind \"fal\"", file.display()))?;
    Ok(stage.options.clone())
}
