//! `inkflow plan`: makes a book's plan (each `plan` source's plan.json) and generates nothing,
//! then shows every planned page and what generating them will cost: the first of the three
//! steps plan, review (read and edit plan.json), run.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use inkflow::engine::output_lock::OutputLock;
use inkflow::engine::pipeline::{self, LoadOptions, Reads};
use inkflow::engine::runtime;

use super::PipelineArgs;

/// Arguments of `inkflow plan`.
#[derive(clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// Output directory (default: the pipeline's `output:`, else output/NAME).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
}

/// Plans the book and prints its pages and their cost.
pub fn run(args: PlanArgs) -> anyhow::Result<ExitCode> {
    let file = &args.pipeline.pipeline;
    let root = pipeline::read_tree(file, &LoadOptions { overrides: args.pipeline.overrides.clone() })?;
    let registry = super::registry_for(file, &root)?;
    let checked = pipeline::check_reads(file, &root, &registry, Reads::MustExist)?;
    let plans: Vec<String> =
        checked.components.iter().filter(|c| c.kind == "plan").map(|c| c.id.clone()).collect();
    if plans.is_empty() {
        anyhow::bail!("{} has no source of kind \"plan\": there is nothing to plan", file.display());
    }
    let output_dir = args
        .output
        .clone()
        .or_else(|| checked.output.clone())
        .unwrap_or_else(|| PathBuf::from("output").join(&checked.name));
    std::fs::create_dir_all(&output_dir)
        .with_context(|| format!("cannot create the output directory {}", output_dir.display()))?;
    let _lock = OutputLock::acquire(&output_dir)?;
    super::logging::init(Some(&output_dir), &super::progress::Display::new())?;
    // Building the batch lists the sources' items, which is when a plan source plans.
    let batch = runtime::build(checked, &registry, &output_dir, false)?;
    for item in batch.items() {
        println!(
            "{:<16} {}\n                 {}",
            item.key, item.prompt.description, item.prompt.image_prompt
        );
    }
    let count = batch.item_count();
    match batch.costs().0 {
        Some(estimate) if estimate.unpriced.is_empty() => {
            println!("{count} pages; generating them costs about ${:.3}", estimate.usd);
        }
        Some(estimate) => println!(
            "{count} pages; generating them costs at least ${:.3} ({} cannot be priced)",
            estimate.usd,
            estimate.unpriced.len()
        ),
        None => println!("{count} pages; generating them costs nothing (no paid stage)"),
    }
    println!(
        "review and edit the plan in {} ({}), then: inkflow run {}",
        output_dir.display(),
        plans.join(", "),
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}
