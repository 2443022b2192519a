//! `inkflow status OUTPUT_DIR`: what the journal says about a batch.

use std::path::PathBuf;
use std::process::ExitCode;

use inkflow::engine::journal::Journal;

/// Arguments of `inkflow status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The batch's output directory (holding journal.sqlite).
    output_dir: PathBuf,
}

/// "N pass, N warn, N reject" over the items whose metadata has a quality verdict (from every
/// run of the batch, as the review page reads them), or nothing when no page was judged.
fn quality_counts(output_dir: &std::path::Path) -> Option<String> {
    let report = inkflow::report::gather(output_dir, inkflow::report::RunFacts::default()).ok()?;
    let mut counts = std::collections::BTreeMap::new();
    for verdict in report.cards.iter().filter_map(|card| card.verdict.as_deref()) {
        *counts.entry(verdict).or_insert(0u64) += 1;
    }
    if counts.is_empty() {
        return None;
    }
    let count = |v: &str| counts.get(v).copied().unwrap_or(0);
    Some(format!("{} pass, {} warn, {} reject", count("pass"), count("warn"), count("reject")))
}

/// Prints counts per state, money spent and every failure with its reason.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    let status = Journal::status(&args.output_dir)?;
    println!("batch {}", args.output_dir.display());
    if let Some(reason) = &status.stopped {
        println!("  the last run stopped early: {reason}");
    }
    for (state, count) in &status.states {
        println!("  {state:<12} {count}");
    }
    println!("  spent        ${:.3}", status.spent_usd);
    if let Some(line) = quality_counts(&args.output_dir) {
        println!("  quality      {line}");
    }
    if status.unfinished_submissions > 0 {
        println!(
            "  {} paid request(s) not yet collected: `inkflow run` collects them",
            status.unfinished_submissions
        );
    }
    if status.uncertain_submissions > 0 {
        println!(
            "  {} request(s) sent by a run that stopped before fal answered: they may have been charged; \
             `inkflow run --retry-failed` submits them again",
            status.uncertain_submissions
        );
    }
    for (outcome, count) in &status.settled_submissions {
        let what = match outcome.as_str() {
            "failed" => {
                "failed at fal for good (not polled again; `inkflow run --retry-failed` submits anew)"
            }
            "filtered" => "filtered by fal's safety checker (collected, never written)",
            _ => "cancelled before a runner took them (not charged)",
        };
        println!("  {count} request(s) {what}");
    }
    for (key, stage, error, attempts) in &status.failures {
        println!("  failed {key} at {stage} after {attempts} attempt(s): {error}");
    }
    Ok(ExitCode::SUCCESS)
}
