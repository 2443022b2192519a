//! `inkflow status OUTPUT_DIR`: what the journal says about a batch.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use inkflow::engine::journal::{Journal, Status};

/// Arguments of `inkflow status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// The batch's output directory (holding journal.sqlite), or with --cluster its s3:// output.
    output_dir: PathBuf,
    /// Read the batch from this PostgreSQL cluster (postgres://...) instead of a local journal.
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
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

/// Prints counts per state, money spent and every failure with its reason, reading the
/// journal a row at a time so that a batch of any size fits in the same memory.
pub fn run(args: &StatusArgs) -> anyhow::Result<ExitCode> {
    if let Some(cluster) = &args.cluster {
        return in_cluster(cluster, &args.output_dir.to_string_lossy());
    }
    let status = Journal::status(&args.output_dir)?;
    println!("batch {}", args.output_dir.display());
    print_counts(&status);
    let review = &status.review;
    println!(
        "  review       {} approved, {} rejected, {} undecided (and {} edited, {} picked, to run)",
        review.approved, review.rejected, review.undecided, review.edited, review.picked
    );
    match quality_counts(&args.output_dir) {
        Ok(Some(line)) => println!("  quality      {line}"),
        Ok(None) => {}
        // The counts are a convenience on top of the journal's: the rest is still worth printing.
        Err(e) => eprintln!("warning: cannot count the quality verdicts: {e:#}"),
    }
    match inkflow::engine::journal::difficulty_spread(&args.output_dir) {
        Ok(spread) => {
            if let Some(line) = spread.describe() {
                println!("  difficulty   {line}");
            }
        }
        Err(e) => eprintln!("warning: cannot read the pages' difficulty: {e:#}"),
    }
    print_submissions(&status);
    let mut out = std::io::stdout().lock();
    Journal::each_item(&args.output_dir, Some("failed"), |item| {
        let (stage, error) = (item.stage.unwrap_or_default(), item.error.unwrap_or_default());
        writeln!(out, "  failed {} at {stage} after {} attempt(s): {error}", item.key, item.attempts)?;
        Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// Why the batch stopped, counts per state and money spent, local or in a cluster.
fn print_counts(status: &Status) {
    if let Some(reason) = &status.stopped {
        println!("  the last run stopped early: {reason}");
    }
    for (state, count) in &status.states {
        println!("  {state:<12} {count}");
    }
    println!("  spent        ${:.3}", status.spent_usd);
}

/// The paid requests' fates, local or in a cluster.
fn print_submissions(status: &Status) {
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
}

/// `status --cluster`: the same counts and failures from the cluster's database.
fn in_cluster(cluster: &str, output: &str) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    let (status, items) = tokio.block_on(async {
        let db = inkflow::cluster::Database::connect(cluster).await?;
        inkflow::cluster::status::read(&db, output).await
    })?;
    println!("batch {output}");
    print_counts(&status);
    print_submissions(&status);
    for item in items.iter().filter(|item| item.state == "failed") {
        let (stage, error) =
            (item.stage.as_deref().unwrap_or_default(), item.error.as_deref().unwrap_or_default());
        println!("  failed {} at {stage} after {} attempt(s): {error}", item.key, item.attempts);
    }
    Ok(ExitCode::SUCCESS)
}
