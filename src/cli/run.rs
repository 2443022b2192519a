//! `inkflow run`: build the batch, run it with a progress display, print the statistics.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use inkflow::engine::pipeline::{self, LoadOptions, Reads};
use std::sync::Arc;

use inkflow::engine::journal::{Journal, ResumePolicy};
use inkflow::engine::output_lock::OutputLock;
use inkflow::engine::raw_cache::RawCache;
use inkflow::engine::run_context::RunContext;
use inkflow::engine::runtime::{self, ItemObserver, RunSettings};
use inkflow::engine::stage::CostEstimate;
use inkflow::engine::summary::Summary;
use inkflow::engine::yaml;
use tokio_util::sync::CancellationToken;

use super::PipelineArgs;
use super::shutdown::StopSignals;

/// Exit code when the batch was asked to stop (Ctrl-C or SIGTERM), as a shell reports Ctrl-C.
pub(super) const EXIT_INTERRUPTED: u8 = 130;

/// Arguments of `inkflow run`.
#[derive(clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Read prompts from this file instead of the prompts source's `path`.
    #[arg(long, value_name = "FILE")]
    prompts: Option<PathBuf>,
    /// Print the plan (items, stages, outputs, cost estimate) and run nothing.
    #[arg(long)]
    dry_run: bool,
    /// Output directory (default: the pipeline's `output:`, else output/NAME).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Threads for CPU image work (default: the number of cores).
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Run items that failed in an earlier run of this batch again.
    #[arg(long)]
    retry_failed: bool,
    /// Run on the workers of this PostgreSQL cluster (postgres://...) instead of here; --output
    /// is then an s3:// or r2:// prefix. See README "Scale out".
    #[arg(long, value_name = "URL")]
    cluster: Option<String>,
    /// With --cluster: register the batch, print its id and return at once.
    #[arg(long, requires = "cluster")]
    detach: bool,
}

/// Runs the pipeline.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    if let Some(cluster) = &args.cluster {
        return super::cluster_run::run(super::cluster_run::ClusterRun {
            pipeline: &args.pipeline,
            cluster,
            output: args.output.as_ref(),
            prompts: args.prompts.is_some(),
            dry_run: args.dry_run,
            retry_failed: args.retry_failed,
            detach: args.detach,
        });
    }
    let file = &args.pipeline.pipeline;
    let mut root = pipeline::read_tree(file, &LoadOptions { overrides: args.pipeline.overrides.clone() })?;
    if let Some(prompts) = &args.prompts {
        let id = first_source_of_kind(&root, "prompts")
            .with_context(|| format!("--prompts: {} has no source of kind \"prompts\"", file.display()))?;
        yaml::apply_override(&mut root, &format!("sources.{id}.path={}", prompts.display()))
            .map_err(anyhow::Error::msg)?;
    }
    let registry = super::registry_for(file, &root)?;
    let checked = pipeline::check_reads(file, &root, &registry, Reads::MustExist)?;
    let output_dir = args
        .output
        .clone()
        .or_else(|| checked.output.clone())
        .unwrap_or_else(|| PathBuf::from("output").join(&checked.name));

    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("inkflow-cpu-{i}"))
            .build_global()
            .context("cannot start the CPU pool")?;
    }
    if !args.dry_run {
        std::fs::create_dir_all(&output_dir)
            .with_context(|| format!("cannot create the output directory {}", output_dir.display()))?;
    }
    // Taken before the log, the journal or any sink touches the folder, and held to the end.
    let _lock = if args.dry_run { None } else { Some(OutputLock::acquire(&output_dir)?) };
    let bar = super::progress::Display::new();
    super::logging::init(if args.dry_run { None } else { Some(&output_dir) }, &bar)?;
    for warning in inkflow::print::font::coverage::unprintable_text(&checked) {
        tracing::warn!("{warning}");
    }
    if !args.dry_run {
        let removed = inkflow::engine::atomic_file::remove_stale_temp_files(&output_dir);
        if removed > 0 {
            tracing::info!("removed {removed} temporary file(s) a stopped run left");
        }
    }

    if args.retry_failed && !args.dry_run {
        let given_up = inkflow::engine::journal::PlanRequests::give_up_uncertain(&output_dir)?;
        if given_up > 0 {
            tracing::warn!(
                "--retry-failed: {given_up} plan request(s) that may have been charged count as spent"
            );
        }
    }
    let batch = runtime::build(checked, &registry, &output_dir, args.dry_run)?;
    let costs = batch.costs();
    let unpriced = costs.0.as_ref().map(|e| e.unpriced.as_slice()).unwrap_or_default();
    if args.dry_run {
        let policy = ResumePolicy { retry_failed: args.retry_failed };
        let journal = Journal::open_existing(&output_dir, batch.pipeline(), policy)?;
        let to_run = batch.items_to_run(journal.as_ref().map(|j| j as &dyn ItemObserver))?;
        let estimate = batch.costs_of(&|| Box::new(to_run.iter().cloned())).0;
        print_plan(&batch, &output_dir, to_run.len(), estimate.as_ref());
        if let Some(journal) = &journal {
            print_review_plan(&batch, journal, &to_run);
        }
        let unpriced = estimate.as_ref().map(|e| e.unpriced.as_slice()).unwrap_or_default();
        return Ok(if unpriced.is_empty() { ExitCode::SUCCESS } else { ExitCode::FAILURE });
    }
    if let (Some(budget), false) = (costs.1, unpriced.is_empty()) {
        anyhow::bail!(
            "max_cost_usd (${budget}) cannot be enforced: {} item(s) cannot be priced, first: {}; nothing was run",
            unpriced.len(),
            unpriced[0]
        );
    }

    let journal = Arc::new(Journal::open(
        &output_dir,
        batch.pipeline(),
        ResumePolicy { retry_failed: args.retry_failed },
    )?);
    let context = RunContext {
        stop: CancellationToken::new(),
        submissions: Some(journal.clone()),
        raw_cache: Some(Arc::new(RawCache::in_output(&output_dir))),
        spent_before_usd: journal.spent_usd()?,
    };
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    let summary = tokio.block_on(async move {
        let signals = StopSignals::install().context("cannot listen for Ctrl-C and SIGTERM")?;
        let stop = context.stop.clone();
        tokio::spawn(
            signals.stop_on_request(stop, "collecting what is paid for, finishing the items in flight"),
        );
        let display = bar.start(batch.progress());
        let settings = RunSettings { context, observer: Some(journal) };
        let summary = batch.run(settings).await;
        display.finish();
        summary
    })?;
    print_statistics(&summary);
    super::report::write_after_run(&output_dir, &summary, costs);
    Ok(if summary.stopped_by_user {
        ExitCode::from(EXIT_INTERRUPTED)
    } else if summary.failed > 0 || summary.interrupted || !summary.sink_errors.is_empty() {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn first_source_of_kind(root: &yaml::Node, kind: &str) -> Option<String> {
    root.get("sources")?
        .as_map()?
        .iter()
        .find(|(_, node)| matches!(node.get("kind").map(|k| &k.value), Some(yaml::Yaml::Str(k)) if k == kind))
        .map(|(key, _)| key.name.clone())
}

fn print_plan(
    batch: &runtime::Batch,
    output_dir: &std::path::Path,
    to_run: usize,
    estimate: Option<&CostEstimate>,
) {
    let pipeline = batch.pipeline();
    let count = batch.item_count();
    println!("plan for {} ({count} items)", pipeline.file.display());
    for item in batch.items().take(5) {
        println!("  {:<18} {}", item.key, item.prompt.description);
    }
    if count > 5 {
        println!("  ... and {} more", count - 5);
    }
    println!("components:");
    for spec in &pipeline.components {
        let inputs: Vec<&str> = spec.inputs.iter().map(|&i| pipeline.components[i].id.as_str()).collect();
        let media = spec.output.map(|m| format!(" -> {m}")).unwrap_or_default();
        println!(
            "  {:<6} {:<10} {:<10} <- [{}]{media} (capacity {}, concurrency {})",
            spec.role.noun(),
            spec.id,
            spec.kind,
            inputs.join(", "),
            spec.capacity,
            spec.concurrency
        );
    }
    println!("output: {}", output_dir.display());
    let earlier = count - to_run;
    println!("to run: {to_run} of {count} items ({earlier} done or left as an earlier run ended them)");
    match estimate {
        Some(_) => println!("to pay for: {to_run} item(s) reach a paid stage"),
        None => println!("to pay for: 0 items (no paid stage)"),
    }
    match estimate {
        Some(estimate) if estimate.unpriced.is_empty() => println!("estimated cost: ${:.3}", estimate.usd),
        Some(estimate) => {
            println!(
                "estimated cost: at least ${:.3}, and unknown for {} item(s):",
                estimate.usd,
                estimate.unpriced.len()
            );
            for why in estimate.unpriced.iter().take(10) {
                println!("  error: {why}");
            }
        }
        None => println!("estimated cost: $0 (no paid stage)"),
    }
}

/// What the reviewer's decisions (`inkflow review`) make this run do, and what they cost: a
/// rejected or edited page is made anew (paid), a picked one comes from the raw cache.
fn print_review_plan(batch: &runtime::Batch, journal: &Journal, to_run: &[inkflow::engine::item::Item]) {
    let (mut made_again, mut picked) = (Vec::new(), 0usize);
    for item in to_run {
        let mut item = item.clone();
        let review = journal.review(&mut item);
        if review.rejected.is_some() || review.prompt.is_some() && review.picked.is_none() {
            made_again.push(item);
        } else if review.picked.is_some() || review.approved.is_some() {
            picked += 1;
        }
    }
    if made_again.is_empty() && picked == 0 {
        return;
    }
    let cost = match batch.costs_of(&|| Box::new(made_again.iter().cloned())).0 {
        Some(estimate) if estimate.unpriced.is_empty() => format!("${:.3}", estimate.usd),
        Some(estimate) => format!("at least ${:.3}", estimate.usd),
        None => "$0 (no paid stage)".to_owned(),
    };
    println!(
        "review decisions: {} page(s) rejected or edited are made again ({cost}), {picked} picked page(s) are \
         put in place from the raw cache ($0)",
        made_again.len()
    );
}

fn print_statistics(s: &Summary) {
    let rows = [
        ("total items", s.total_items.to_string()),
        ("succeeded", s.succeeded.to_string()),
        ("failed", s.failed.to_string()),
        ("filtered", s.filtered.to_string()),
        ("skipped (already done)", s.skipped.to_string()),
        ("not started", s.not_started.to_string()),
        ("retries", s.retries.to_string()),
        ("time", format!("{:.1} s", s.elapsed_seconds)),
        ("throughput", format!("{:.2} items/s", s.items_per_second)),
        ("cost", format!("${:.3}", s.cost_usd)),
        ("output", s.output_dir.clone()),
    ];
    println!();
    for (name, value) in rows {
        println!("  {name:<24} {value}");
    }
    if !s.verdicts.is_empty() {
        let counts: Vec<String> = s.verdicts.iter().map(|(verdict, n)| format!("{verdict} {n}")).collect();
        println!("  {:<24} {}", "quality", counts.join(", "));
    }
    if s.extra_candidates > 0 {
        println!("  {:<24} {} (rejected/ and candidates/ keep them)", "extra candidates", s.extra_candidates);
    }
    if let Some(reason) = &s.stop_reason {
        println!("  {:<24} {reason}", "stopped");
    }
    for failure in s.failures.iter().take(10) {
        println!("  failed: {} at {}: {}", failure.key, failure.stage, failure.error);
    }
    for error in &s.sink_errors {
        println!("  error: {error}");
    }
    for note in &s.sink_notes {
        println!("  {note}");
    }
    if s.failures.len() > 10 {
        println!("  ... {} more failures in batch_metadata.json", s.failures.len() - 10);
    }
}
