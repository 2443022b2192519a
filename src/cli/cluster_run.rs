//! `inkflow run --cluster URL --output s3://BUCKET/PREFIX`: registers the batch in the
//! cluster's database (its pipeline, the files it names, its items, its output) and follows it
//! while workers run it, with a progress line, the summary and the exit codes of a local run.
//! Running it again attaches to the batch; `--detach` returns at once with the batch id.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use inkflow::cluster::Database;
use inkflow::cluster::registration::{self, Registration};
use inkflow::cluster::store::parse_output;
use inkflow::engine::journal::{fingerprint, item_fingerprint};
use inkflow::engine::pipeline::{self, LoadOptions, Reads};
use inkflow::engine::runtime;

use super::PipelineArgs;

/// How often the follower reads the batch's counts.
const FOLLOW_POLL: Duration = Duration::from_millis(250);

/// What `run` was asked, as the cluster takes it.
pub(super) struct ClusterRun<'a> {
    pub pipeline: &'a PipelineArgs,
    pub cluster: &'a str,
    pub output: Option<&'a PathBuf>,
    pub prompts: bool,
    pub dry_run: bool,
    pub retry_failed: bool,
    pub detach: bool,
}

/// Registers (or attaches to) the batch and follows it to its end.
pub(super) fn run(args: ClusterRun<'_>) -> anyhow::Result<ExitCode> {
    let output = args
        .output
        .map(|o| o.to_string_lossy().into_owned())
        .context("--cluster needs --output s3://BUCKET/PREFIX: the workers write there")?;
    parse_output(&output)?;
    anyhow::ensure!(
        !args.prompts,
        "--prompts is not carried to the workers: name the prompt file in the pipeline for --cluster"
    );
    let file = &args.pipeline.pipeline;
    let root = pipeline::read_tree(file, &LoadOptions { overrides: args.pipeline.overrides.clone() })?;
    let registry = super::registry_for(file, &root)?;
    let checked = pipeline::check_reads(file, &root, &registry, Reads::MustExist)?;
    let files = registration::named_files(&checked, &pipeline::plugin_paths(file, &root))?;
    let registration = Registration {
        output: output.clone(),
        pipeline_file: file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        pipeline_text: std::fs::read_to_string(file)?,
        overrides: args.pipeline.overrides.clone(),
        files,
        retry_failed: args.retry_failed,
    };
    // Listed only: nothing is written on this machine.
    let plan_dir = std::env::temp_dir().join("inkflow-cluster-plan");
    let batch = runtime::build(checked, &registry, &plan_dir, true)?;
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    tokio.block_on(async move {
        let db = Database::connect(args.cluster).await?;
        if args.dry_run {
            return dry_run(&db, &batch, &output, args.retry_failed).await;
        }
        let id = registration::register(&db, &registration, &batch).await?;
        if args.detach {
            println!("{id}");
            return Ok(ExitCode::SUCCESS);
        }
        eprintln!("batch {id} registered; following it (Ctrl-C stops following, the workers go on)");
        follow(&db, &id).await
    })
}

/// What a run would take up now: items new, changed, not yet settled, or failed with
/// `--retry-failed`.
async fn dry_run(
    db: &Database,
    batch: &runtime::Batch,
    output: &str,
    retry_failed: bool,
) -> anyhow::Result<ExitCode> {
    let id = registration::batch_id(output);
    let pipeline_fp = fingerprint(batch.pipeline());
    let mut to_run = 0;
    for item in batch.items() {
        let row = db
            .client
            .query_opt(
                "SELECT state, fingerprint FROM items WHERE batch_id = $1 AND key = $2",
                &[&id, &item.key],
            )
            .await?;
        let runs = match row {
            None => true,
            Some(row) => {
                let (state, fp): (String, String) = (row.get(0), row.get(1));
                fp != item_fingerprint(&pipeline_fp, &item)
                    || !matches!(state.as_str(), "written" | "failed" | "filtered")
                    || (retry_failed && state == "failed")
            }
        };
        to_run += usize::from(runs);
    }
    let count = batch.item_count();
    println!("plan for {} ({count} items), batch {id}", batch.pipeline().file.display());
    println!("output: {output}");
    println!(
        "to run: {to_run} of {count} items ({} done or left as an earlier run ended them)",
        count - to_run
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints the batch's progress until it is finished, then its summary; the exit code is a
/// local run's.
async fn follow(db: &Database, id: &str) -> anyhow::Result<ExitCode> {
    let mut last = String::new();
    loop {
        let rows = db
            .client
            .query("SELECT state, count(*) FROM items WHERE batch_id = $1 GROUP BY 1 ORDER BY 1", &[&id])
            .await?;
        let line: Vec<String> =
            rows.iter().map(|r| format!("{} {}", r.get::<_, i64>(1), r.get::<_, String>(0))).collect();
        let line = line.join(", ");
        if line != last {
            eprintln!("  {line}");
            last = line;
        }
        let batch = db.client.query_one("SELECT summary FROM batches WHERE id = $1", &[&id]).await?;
        if let Some(summary) = batch.get::<_, Option<serde_json::Value>>(0) {
            return Ok(print_summary(&summary));
        }
        tokio::time::sleep(FOLLOW_POLL).await;
    }
}

fn print_summary(summary: &serde_json::Value) -> ExitCode {
    let number = |name: &str| summary.get(name).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let rows = [
        ("total items", number("total_items").to_string()),
        ("succeeded", number("succeeded").to_string()),
        ("failed", number("failed").to_string()),
        ("filtered", number("filtered").to_string()),
        ("not started", number("not_started").to_string()),
        (
            "cost",
            format!("${:.3}", summary.get("cost_usd").and_then(serde_json::Value::as_f64).unwrap_or(0.0)),
        ),
        ("output", summary.get("output_dir").and_then(serde_json::Value::as_str).unwrap_or("").to_owned()),
    ];
    println!();
    for (name, value) in rows {
        println!("  {name:<24} {value}");
    }
    if let Some(reason) = summary.get("stop_reason").and_then(serde_json::Value::as_str) {
        println!("  {:<24} {reason}", "stopped");
    }
    let failures = summary.get("failures").and_then(serde_json::Value::as_array).cloned().unwrap_or_default();
    for failure in failures.iter().take(10) {
        let text =
            |name: &str| failure.get(name).and_then(serde_json::Value::as_str).unwrap_or("").to_owned();
        println!("  failed: {} at {}: {}", text("key"), text("stage"), text("error"));
    }
    let sink_errors = summary.get("sink_errors").and_then(serde_json::Value::as_array).map_or(0, Vec::len);
    let interrupted = summary.get("interrupted").and_then(serde_json::Value::as_bool).unwrap_or(false);
    if number("failed") > 0 || interrupted || sink_errors > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
