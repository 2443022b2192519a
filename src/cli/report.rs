//! `inkflow report OUTPUT_DIR`: writes the batch's `report.html` again from what is on disk;
//! `inkflow run` writes it at the end of every run through [`write_after_run`].

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use inkflow::engine::stage::CostEstimate;
use inkflow::engine::summary::Summary;
use inkflow::report::{RunFacts, write_report};
use serde_json::Value;

use super::PipelineArgs;

/// Arguments of `inkflow report`.
#[derive(clap::Args)]
pub struct ReportArgs {
    /// The batch's output directory (holding journal.sqlite).
    output_dir: PathBuf,
    /// The batch's pipeline file, to show its cost estimate and budget.
    #[arg(long, value_name = "FILE")]
    pipeline: Option<PathBuf>,
    /// Override a value of the pipeline, as for `run`: --set stages.x.y=1 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE", requires = "pipeline")]
    overrides: Vec<String>,
    /// The batch runs on this PostgreSQL cluster (postgres://...): OUTPUT_DIR is its s3://
    /// output, where report.html is written again.
    #[arg(long, value_name = "URL", conflicts_with = "pipeline")]
    cluster: Option<String>,
}

/// Writes `OUTPUT_DIR/report.html`.
pub fn run(args: &ReportArgs) -> anyhow::Result<ExitCode> {
    if let Some(cluster) = &args.cluster {
        return in_cluster(cluster, &args.output_dir.to_string_lossy());
    }
    let mut facts = RunFacts { summary: last_summary(&args.output_dir), ..RunFacts::default() };
    if let Some(file) = &args.pipeline {
        let (pipeline, registry) =
            super::load(&PipelineArgs { pipeline: file.clone(), overrides: args.overrides.clone() })?;
        let batch = inkflow::engine::runtime::build(pipeline, &registry, &args.output_dir, true)?;
        let (estimate, budget) = batch.costs();
        (facts.estimate_usd, facts.budget_usd) = (Some(estimate.map_or(0.0, |e| e.usd)), budget);
    }
    let path = write_report(&args.output_dir, facts)?;
    println!("wrote {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// Writes the report at the end of a run (finished, failed or stopped); a report that cannot
/// be written is a warning, not a failed batch.
pub fn write_after_run(
    output_dir: &Path,
    summary: &Summary,
    (estimate, budget_usd): (Option<CostEstimate>, Option<f64>),
) {
    let facts = RunFacts {
        summary: serde_json::to_value(summary).ok(),
        estimate_usd: Some(estimate.map_or(0.0, |e| e.usd)),
        budget_usd,
    };
    match write_report(output_dir, facts) {
        Ok(path) => println!("  {:<24} {}", "report", path.display()),
        Err(e) => {
            tracing::warn!("report: {e:#}");
            eprintln!("warning: {e:#}");
        }
    }
}

/// The summary the last run's sinks wrote (`batch_metadata.json`), in the output folder or a
/// sink folder under it.
pub(super) fn last_summary(output_dir: &Path) -> Option<Value> {
    let read = |path: PathBuf| serde_json::from_slice::<Value>(&std::fs::read(path).ok()?).ok();
    read(output_dir.join("batch_metadata.json")).or_else(|| {
        let mut dirs: Vec<PathBuf> =
            std::fs::read_dir(output_dir).ok()?.flatten().map(|e| e.path()).collect();
        dirs.sort();
        dirs.into_iter().find_map(|dir| read(dir.join("batch_metadata.json")))
    })
}

/// `report --cluster`: the batch's files and a snapshot of its journal in a scratch folder, the
/// page written there as for a local batch, and copied back to the store.
fn in_cluster(cluster: &str, output: &str) -> anyhow::Result<ExitCode> {
    let tokio = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    tokio.block_on(async {
        let db = inkflow::cluster::Database::connect(cluster).await?;
        let store = inkflow::cluster::store::OutputStore::open(output)?;
        let dir = tempfile::tempdir()?;
        store.download_all(dir.path()).await?;
        let downloaded = std::time::SystemTime::now();
        inkflow::cluster::status::write_journal_snapshot(&db, output, dir.path()).await?;
        let facts = RunFacts { summary: last_summary(dir.path()), ..RunFacts::default() };
        write_report(dir.path(), facts)?;
        store.upload_dir(dir.path(), Some(downloaded)).await?;
        println!("wrote {}/report.html", output.trim_end_matches('/'));
        Ok(ExitCode::SUCCESS)
    })
}
