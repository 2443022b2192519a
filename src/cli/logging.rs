//! Logs to the console (warnings and up, or RUST_LOG) and, during a run, to `inkflow.log`
//! in the output directory (info and up) so a batch leaves its own record.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

use super::progress::Display;

use inkflow::engine::output_path::LOG_FILE;

/// Writes console log lines with the progress bar suspended.
#[derive(Clone)]
struct ConsoleWriter {
    display: Display,
}

/// One console log line, buffered and printed whole.
struct ConsoleLine {
    display: Display,
    buffer: Vec<u8>,
}

impl Write for ConsoleLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.buffer.extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for ConsoleLine {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.display.suspend(|| {
            let _ = std::io::stderr().write_all(&buffer);
        });
    }
}

impl<'a> MakeWriter<'a> for ConsoleWriter {
    type Writer = ConsoleLine;
    fn make_writer(&'a self) -> ConsoleLine {
        ConsoleLine { display: self.display.clone(), buffer: Vec::new() }
    }
}

/// Appends to the log file from any thread.
#[derive(Clone)]
struct FileWriter(Arc<Mutex<File>>);

impl Write for FileWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

impl<'a> MakeWriter<'a> for FileWriter {
    type Writer = FileWriter;
    fn make_writer(&'a self) -> FileWriter {
        self.clone()
    }
}

/// Installs the global subscriber; with an output directory, also logs to its `inkflow.log`.
pub fn init(output_dir: Option<&Path>, display: &Display) -> anyhow::Result<()> {
    let console = tracing_subscriber::fmt::layer()
        .with_writer(ConsoleWriter { display: display.clone() })
        .with_target(false);
    let console_filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("warn"));
    let file_layer = match output_dir {
        Some(dir) => {
            let path = dir.join(LOG_FILE);
            let file = File::options()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open the log file {}", path.display()))?;
            Some(
                tracing_subscriber::fmt::layer()
                    .with_writer(FileWriter(Arc::new(Mutex::new(file))))
                    .with_ansi(false)
                    .with_filter(EnvFilter::new("info")),
            )
        }
        None => None,
    };
    tracing_subscriber::registry().with(console.with_filter(console_filter)).with(file_layer).try_init().ok();
    Ok(())
}
