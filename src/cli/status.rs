//! `inkflow status OUTPUT_DIR`: what the journal says about a batch.

use std::io::Write as _;
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
fn quality_counts(output_dir: &std::path::Path) -> anyhow::Result<Option<String>> {
    let counts = inkflow::report::verdict_counts(output_dir)?;
    if counts.is_empty() {
        return Ok(None);
    }
    let count = |v: &str| counts.get(v).copied().unwrap_or(0);
    Ok(Some(format!("{} pass, {} warn, {} reject", count("pass"), count("warn"), count("reject"))))
}

/// "score 12-40-71; suits: 3 toddler, 20 kids, 9 teens" (lowest, median, highest score, then
/// pages per audience they suit), or nothing when no page was judged.
fn difficulty_line(spread: &inkflow::engine::journal::DifficultySpread) -> Option<String> {
    let (low, median, high) = spread.scores?;
    let order = ["toddler", "kids", "teens", "adults"];
    let suits: Vec<String> =
        order.iter().filter_map(|a| spread.suits.get(*a).map(|n| format!("{n} {a}"))).collect();
    Some(format!("score {low:.0}-{median:.0}-{high:.0} (lowest-median-highest); suits: {}", suits.join(", ")))
}

/// Prints counts per state, money spent and every failure with its reason, reading the
/// journal a row at a time so that a batch of any size fits in the same memory.
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
    match quality_counts(&args.output_dir) {
        Ok(Some(line)) => println!("  quality      {line}"),
        Ok(None) => {}
        // The counts are a convenience on top of the journal's: the rest is still worth printing.
        Err(e) => eprintln!("warning: cannot count the quality verdicts: {e:#}"),
    }
    match inkflow::engine::journal::difficulty_spread(&args.output_dir) {
        Ok(spread) => {
            if let Some(line) = difficulty_line(&spread) {
                println!("  difficulty   {line}");
            }
        }
        Err(e) => eprintln!("warning: cannot read the pages' difficulty: {e:#}"),
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
    let mut out = std::io::stdout().lock();
    Journal::each_item(&args.output_dir, Some("failed"), |item| {
        let (stage, error) = (item.stage.unwrap_or_default(), item.error.unwrap_or_default());
        writeln!(out, "  failed {} at {stage} after {} attempt(s): {error}", item.key, item.attempts)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}
