//! Progress while a batch runs: a bar with per-stage counts and ETA on a terminal, plain
//! periodic lines otherwise (CI logs, pipes).

use std::io::IsTerminal as _;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use inkflow::engine::runtime::Progress;

/// How often plain progress lines are printed when stderr is not a terminal.
const PLAIN_INTERVAL: Duration = Duration::from_secs(5);

/// The progress display; cheap to clone, shared with the log writer so log lines do not
/// tear the bar.
#[derive(Clone)]
pub struct Display {
    bar: Option<ProgressBar>,
}

/// A running display; `finish` stops it.
pub struct Running {
    display: Display,
    task: tokio::task::JoinHandle<()>,
}

impl Display {
    /// A bar on a terminal, nothing drawn otherwise.
    pub fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {pos}/{len} items  {per_sec}  ETA {eta}  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Display { bar }
    }

    /// Runs `f` with the bar hidden, so a log line prints cleanly.
    pub fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        match &self.bar {
            Some(bar) => bar.suspend(f),
            None => f(),
        }
    }

    /// Starts updating from the batch's live counts.
    pub fn start(&self, progress: Arc<Progress>) -> Running {
        let display = self.clone();
        let task = tokio::spawn(async move {
            let interval = if display.bar.is_some() { Duration::from_millis(200) } else { PLAIN_INTERVAL };
            loop {
                tokio::time::sleep(interval).await;
                display.update(&progress);
            }
        });
        Running { display: self.clone(), task }
    }

    fn update(&self, progress: &Progress) {
        let total = progress.total.load(Ordering::Relaxed);
        let skipped = progress.skipped.load(Ordering::Relaxed);
        let finished = progress.finished.load(Ordering::Relaxed);
        let stages: Vec<String> = progress
            .components
            .iter()
            .map(|c| {
                let (id, failed, done) =
                    (&c.id, c.failed.load(Ordering::Relaxed), c.done.load(Ordering::Relaxed));
                if failed > 0 { format!("{id} {done} ({failed} failed)") } else { format!("{id} {done}") }
            })
            .collect();
        match &self.bar {
            Some(bar) => {
                bar.set_length(total.saturating_sub(skipped));
                bar.set_position(finished);
                bar.set_message(stages.join(" | "));
            }
            None => eprintln!(
                "progress: {finished}/{} items | {}",
                total.saturating_sub(skipped),
                stages.join(" | ")
            ),
        }
    }
}

impl Running {
    /// Stops the display and clears the bar.
    pub fn finish(self) {
        self.task.abort();
        if let Some(bar) = &self.display.bar {
            bar.finish_and_clear();
        }
    }
}
