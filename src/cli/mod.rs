//! One module per command; this file parses arguments and maps outcomes to exit codes.

mod bakeoff;
mod cache;
mod check;
mod cluster_run;
mod graph;
mod logging;
mod models;
mod pick;
mod plan;
mod preflight;
mod progress;
mod report;
mod review;
mod run;
mod shutdown;
mod stages;
mod status;
mod validate;
mod worker;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inkflow::engine::diagnostic::ConfigErrors;
use inkflow::engine::output_lock::LockError;
use inkflow::engine::pipeline::{self, LoadOptions, Pipeline, Reads};
use inkflow::engine::stage::Registry;

/// Exit code for a pipeline file with errors.
const EXIT_CONFIG: u8 = 2;
/// Exit code when another run holds the output folder (EX_TEMPFAIL: try again later).
const EXIT_IN_USE: u8 = 75;

#[derive(Parser)]
#[command(name = "inkflow", version, about = "Runs YAML-declared image-generation pipelines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a pipeline (re-running resumes: complete items are skipped).
    Run(run::RunArgs),
    /// Make a book's plan (plan.json from its `plan` source) and show its pages and their cost.
    Plan(plan::PlanArgs),
    /// Check a pipeline file and print every problem with its line and column.
    Validate(PipelineArgs),
    /// Print a pipeline's graph as Graphviz dot or Mermaid.
    Graph(graph::GraphArgs),
    /// List the stage kinds, or describe one.
    Stages(stages::StagesArgs),
    /// Show a batch's state from its journal: counts, money spent, failures.
    Status(status::StatusArgs),
    /// Write the batch's review page (OUTPUT/report.html) again from its journal and files.
    Report(report::ReportArgs),
    /// Show or trim the cache of generated originals.
    Cache(cache::CacheArgs),
    /// Check the fal.ai setup: key present and accepted, endpoint reachable.
    Check(check::CheckArgs),
    /// Check a PDF book (and its cover) against Amazon KDP's print rules.
    Preflight(preflight::PreflightArgs),
    /// Choose another candidate of a page (from rejected/ or candidates/) as the page.
    Pick(pick::PickArgs),
    /// Serve the batch's review page on 127.0.0.1: approve, reject, pick and edit pages.
    Review(review::ReviewArgs),
    /// List the fal models inkflow knows, describe one, or refresh one from fal (--refresh).
    Models(models::ModelsArgs),
    /// Run the same prompts through several fal models and compare their usable pages and cost.
    Bakeoff(bakeoff::BakeoffArgs),
    /// Work on the batches of a PostgreSQL cluster (see `run --cluster`) until stopped.
    Worker(worker::WorkerArgs),
}

/// Arguments every command that reads a pipeline takes.
#[derive(clap::Args)]
struct PipelineArgs {
    /// The pipeline file, e.g. pipelines/offline-book.yaml.
    pipeline: PathBuf,
    /// Override a value: --set stages.lineart.level=140 (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    overrides: Vec<String>,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Plan(args) => plan::run(args),
        Command::Validate(args) => validate::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Stages(args) => stages::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Report(args) => report::run(&args),
        Command::Cache(args) => cache::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Preflight(args) => preflight::run(&args),
        Command::Pick(args) => pick::run(&args),
        Command::Review(args) => review::run(&args),
        Command::Models(args) => models::run(&args),
        Command::Bakeoff(args) => bakeoff::run(&args),
        Command::Worker(args) => worker::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigErrors>() {
                eprintln!("{config}");
                let n = config.0.len();
                eprintln!("{n} error{} in the pipeline file", if n == 1 { "" } else { "s" });
                ExitCode::from(EXIT_CONFIG)
            } else if let Some(busy @ LockError::Busy { .. }) = e.downcast_ref::<LockError>() {
                eprintln!("error: {busy}");
                ExitCode::from(EXIT_IN_USE)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The built-in kinds plus the kinds of every plugin library the pipeline's `plugins:` names
/// (a library file, or a folder of them; relative to the pipeline file's folder).
fn registry_for(file: &Path, root: &inkflow::engine::yaml::Node) -> anyhow::Result<Registry> {
    registry_with_plugins(&pipeline::plugin_paths(file, root))
}

/// The built-in kinds plus those of these plugin libraries or folders.
fn registry_with_plugins(paths: &[PathBuf]) -> anyhow::Result<Registry> {
    let mut registry = inkflow::stages::builtin();
    for path in paths {
        let kinds = if path.is_dir() {
            inkflow::stages::plugin::kinds_from_dir(path)?
        } else {
            inkflow::stages::plugin::kinds_from_file(path)?
        };
        for kind in kinds {
            let name = kind.info().name.clone();
            if registry.get(&name).is_some() {
                anyhow::bail!(
                    "plugin {}: stage \"{name}\" has the name of a kind inkflow already has",
                    path.display()
                );
            }
            registry.register(kind);
        }
    }
    Ok(registry)
}

/// Reads and checks a pipeline file, with the registry it was checked against.
fn load_with(file: &Path, options: &LoadOptions) -> anyhow::Result<(Pipeline, Registry)> {
    let root = pipeline::read_tree(file, options)?;
    let registry = registry_for(file, &root)?;
    let checked = pipeline::check_reads(file, &root, &registry, Reads::MustExist)?;
    Ok((checked, registry))
}

/// Reads and checks the pipeline named on the command line.
fn load(args: &PipelineArgs) -> anyhow::Result<(Pipeline, Registry)> {
    load_with(&args.pipeline, &LoadOptions { overrides: args.overrides.clone() })
}
