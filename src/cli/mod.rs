//! One module per command; this file parses arguments and maps outcomes to exit codes.

mod cache;
mod graph;
mod logging;
mod progress;
mod run;
mod stages;
mod status;
mod validate;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use inkflow::engine::diagnostic::ConfigErrors;
use inkflow::engine::pipeline::{self, LoadOptions, Pipeline};
use inkflow::engine::stage::Registry;

/// Exit code for a pipeline file with errors.
const EXIT_CONFIG: u8 = 2;

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
    /// Check a pipeline file and print every problem with its line and column.
    Validate(PipelineArgs),
    /// Print a pipeline's graph as Graphviz dot or Mermaid.
    Graph(graph::GraphArgs),
    /// List the stage kinds, or describe one.
    Stages(stages::StagesArgs),
    /// Show a batch's state from its journal: counts, money spent, failures.
    Status(status::StatusArgs),
    /// Show or trim the cache of generated originals.
    Cache(cache::CacheArgs),
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
        Command::Validate(args) => validate::run(&args),
        Command::Graph(args) => graph::run(&args),
        Command::Stages(args) => stages::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Cache(args) => cache::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            if let Some(config) = e.downcast_ref::<ConfigErrors>() {
                eprintln!("{config}");
                let n = config.0.len();
                eprintln!("{n} error{} in the pipeline file", if n == 1 { "" } else { "s" });
                ExitCode::from(EXIT_CONFIG)
            } else {
                eprintln!("error: {e:#}");
                ExitCode::FAILURE
            }
        }
    }
}

/// The built-in kinds plus the kinds of any plugins the pipeline names.
fn registry_for(_file: &Path, _root: &inkflow::engine::yaml::Node) -> anyhow::Result<Registry> {
    Ok(inkflow::stages::builtin())
}

/// Reads and checks a pipeline file, with the registry it was checked against.
fn load(args: &PipelineArgs) -> anyhow::Result<(Pipeline, Registry)> {
    let options = LoadOptions { overrides: args.overrides.clone() };
    let root = pipeline::read_tree(&args.pipeline, &options)?;
    let registry = registry_for(&args.pipeline, &root)?;
    let checked = pipeline::check(&args.pipeline, &root, &registry)?;
    Ok((checked, registry))
}
