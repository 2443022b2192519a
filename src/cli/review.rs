//! `inkflow review OUTPUT_DIR [--port N]`: serves the batch's review page on 127.0.0.1 and
//! prints its URL, with the token every request needs.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use inkflow::review::ReviewServer;

/// Arguments of `inkflow review`.
#[derive(clap::Args)]
pub struct ReviewArgs {
    /// The batch's output directory (holding journal.sqlite).
    output_dir: PathBuf,
    /// The port on 127.0.0.1 (0: any free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The pipeline a run from the page runs (default: the one the batch's last run ran).
    #[arg(long)]
    pipeline: Option<PathBuf>,
}

/// Serves the page until the process is stopped (Ctrl-C).
pub fn run(args: &ReviewArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async {
        // Loopback only: the page is for the person at this machine.
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", args.port)).await?;
        let port = listener.local_addr()?.port();
        let server =
            ReviewServer::new(&args.output_dir, port, args.pipeline.clone(), std::env::current_exe()?)?;
        // Whoever started the server may stop reading its output: that must not stop it.
        let mut out = std::io::stdout();
        let _ = writeln!(out, "reviewing {}: open {}", args.output_dir.display(), server.url(port));
        let _ = writeln!(out, "(Ctrl-C stops the server; the next `inkflow run` obeys the decisions)");
        let _ = out.flush();
        Arc::new(server).serve(listener).await
    })?;
    Ok(ExitCode::SUCCESS)
}
