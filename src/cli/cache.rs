//! `inkflow cache stats|prune OUTPUT_DIR`: the generated originals kept for free re-runs.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use inkflow::engine::output_lock::OutputLock;
use inkflow::engine::raw_cache::RawCache;

/// Arguments of `inkflow cache`.
#[derive(clap::Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    action: Action,
}

#[derive(Subcommand)]
enum Action {
    /// Count the cached originals and their size.
    Stats {
        /// The batch's output directory.
        output_dir: PathBuf,
    },
    /// Remove originals older than --older-than (default: all).
    Prune {
        /// The batch's output directory.
        output_dir: PathBuf,
        /// Keep what is younger than this, e.g. 30d or 12h.
        #[arg(long, value_parser = humantime::parse_duration)]
        older_than: Option<Duration>,
    },
}

/// Runs the cache command.
pub fn run(args: &CacheArgs) -> anyhow::Result<ExitCode> {
    match &args.action {
        Action::Stats { output_dir } => {
            let stats = RawCache::in_output(output_dir).stats();
            println!("{} originals, {:.1} MiB", stats.entries, stats.bytes as f64 / (1024.0 * 1024.0));
        }
        Action::Prune { output_dir, older_than } => {
            // Pruning under a running batch would take originals it is about to read.
            let _lock = if output_dir.is_dir() { Some(OutputLock::acquire(output_dir)?) } else { None };
            let removed = RawCache::in_output(output_dir).prune(older_than.unwrap_or(Duration::ZERO))?;
            println!(
                "removed {} originals, {:.1} MiB",
                removed.entries,
                removed.bytes as f64 / (1024.0 * 1024.0)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
