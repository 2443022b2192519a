//! The batch report: `report.html` in the output folder, a page to review every item of a
//! batch by eye. It is gathered from what a batch leaves on disk, so it covers every run of
//! the batch and not only the last one: the journal (every item, its fate, its cost), the
//! per-item metadata JSON that disk sinks write (names, files, model, quality verdict) and the
//! `candidates/` and `rejected/` folders beside them.
//!
//! It knows no stage by name: it reads the journal's schema and the metadata files' fields.

mod gather;
mod html;

use std::path::Path;

use anyhow::Context as _;
use serde_json::Value;

use crate::engine::atomic_file::write_atomically;

pub use gather::{Card, Report, gather};
pub use html::render;

/// The report's file name inside the output folder.
pub use crate::engine::output_path::REPORT_FILE;

/// What only the run knows, shown in the report's header when given.
#[derive(Clone, Debug, Default)]
pub struct RunFacts {
    /// The last run's summary (`batch_metadata.json`) as JSON: time, throughput, retries.
    pub summary: Option<Value>,
    /// The pipeline's cost estimate for the whole batch, in US dollars.
    pub estimate_usd: Option<f64>,
    /// The budget (`max_cost_usd` of the paid stages), in US dollars.
    pub budget_usd: Option<f64>,
}

/// Gathers the batch in `output_dir` and writes its `report.html`; returns the file's path.
pub fn write_report(output_dir: &Path, facts: RunFacts) -> anyhow::Result<std::path::PathBuf> {
    let report = gather(output_dir, facts)?;
    let path = output_dir.join(REPORT_FILE);
    write_atomically(&path, render(&report).as_bytes())
        .with_context(|| format!("cannot write the report {}", path.display()))?;
    // The temp file it was written through is private; a review page is for reading.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", path.display()))?;
    }
    Ok(path)
}
