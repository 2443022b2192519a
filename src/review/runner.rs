//! Running the pending decisions from the review page. The run is `inkflow run PIPELINE
//! --output OUTPUT` itself, a child process: the same run under the same output lock, with the
//! same budget and journal. Its `--dry-run` prices it first, and a run that will pay starts
//! only once the reviewer confirmed that amount. Its output lines go to the page live.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::Command;
use tokio::sync::broadcast;

/// Starts runs from the page and passes their output on.
pub struct Runner {
    root: PathBuf,
    pipeline: Option<PathBuf>,
    inkflow: PathBuf,
    lines: broadcast::Sender<String>,
    running: Arc<AtomicBool>,
}

/// The pipeline the batch's last run ran, as its summary (`batch_metadata.json`) names it.
pub fn pipeline_of(root: &Path) -> Option<PathBuf> {
    let text = std::fs::read(root.join("batch_metadata.json")).ok()?;
    let summary: Value = serde_json::from_slice(&text).ok()?;
    summary.get("pipeline").and_then(Value::as_str).filter(|p| !p.is_empty()).map(PathBuf::from)
}

impl Runner {
    pub(super) fn new(root: PathBuf, pipeline: Option<PathBuf>, inkflow: PathBuf) -> Self {
        Runner { root, pipeline, inkflow, lines: broadcast::channel(1024).0, running: Arc::default() }
    }

    pub(super) fn subscribe(&self) -> broadcast::Receiver<String> {
        self.lines.subscribe()
    }

    fn command(&self) -> anyhow::Result<Command> {
        let Some(pipeline) = &self.pipeline else {
            anyhow::bail!(
                "no pipeline is known for this batch: start `inkflow review OUTPUT --pipeline FILE`"
            );
        };
        let mut command = Command::new(&self.inkflow);
        command
            .arg("run")
            .arg(pipeline)
            .arg("--output")
            .arg(&self.root)
            .stdin(Stdio::null())
            .kill_on_drop(false);
        Ok(command)
    }

    /// What a run would do now and cost, from its `--dry-run`: `summary` (its plan's lines),
    /// `cost_usd` and whether it `pays`.
    pub async fn plan(&self) -> anyhow::Result<Value> {
        let output = self.command()?.arg("--dry-run").output().await?;
        let text = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() && !text.contains("estimated cost") {
            anyhow::bail!("pricing the run failed: {}", String::from_utf8_lossy(&output.stderr).trim());
        }
        let cost_usd = text
            .lines()
            .find_map(|line| line.strip_prefix("estimated cost: "))
            .map(|rest| rest.trim_start_matches("at least ").trim_start_matches('$'))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|number| number.trim_end_matches(',').parse::<f64>().ok())
            .unwrap_or(0.0);
        let summary: Vec<&str> = text
            .lines()
            .filter(|l| {
                l.starts_with("to run:")
                    || l.starts_with("review decisions:")
                    || l.starts_with("estimated cost:")
            })
            .collect();
        Ok(json!({"summary": summary.join("; "), "cost_usd": cost_usd, "pays": cost_usd > 0.0}))
    }

    /// Starts the run when none from this page is running and, if it will pay, the reviewer
    /// confirmed at least its price (`confirmed`, in US dollars).
    pub async fn start(&self, confirmed: Option<f64>) -> anyhow::Result<()> {
        if self.running.swap(true, Ordering::SeqCst) {
            anyhow::bail!("a run started from this page is still going");
        }
        let started = self.spawn(confirmed).await;
        if started.is_err() {
            self.running.store(false, Ordering::SeqCst);
        }
        started
    }

    async fn spawn(&self, confirmed: Option<f64>) -> anyhow::Result<()> {
        let plan = self.plan().await?;
        let cost = plan["cost_usd"].as_f64().unwrap_or(0.0);
        if cost > 0.0 && confirmed.is_none_or(|usd| usd + 1e-9 < cost) {
            anyhow::bail!(
                "this run may pay up to ${cost:.3}: confirm that amount to start it; nothing was run"
            );
        }
        let mut child = self.command()?.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn()?;
        let (lines, running) = (self.lines.clone(), self.running.clone());
        let _ = lines.send(format!("run started: {}", plan["summary"].as_str().unwrap_or_default()));
        let out = child.stdout.take().map(|s| forward(s, lines.clone()));
        let err = child.stderr.take().map(|s| forward(s, lines.clone()));
        tokio::spawn(async move {
            let status = child.wait().await;
            for task in [out, err].into_iter().flatten() {
                let _ = task.await;
            }
            let _ = lines.send(match status {
                Ok(status) => format!("run ended: {status}"),
                Err(e) => format!("run ended: {e}"),
            });
            running.store(false, Ordering::SeqCst);
        });
        Ok(())
    }
}

fn forward(
    stream: impl AsyncRead + Unpin + Send + 'static,
    lines: broadcast::Sender<String>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            let _ = lines.send(line);
        }
    })
}
