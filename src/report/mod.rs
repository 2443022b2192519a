//! The batch report: `report.html` in the output folder, a page to review every item of a
//! batch by eye. It is gathered from what a batch leaves on disk, so it covers every run of
//! the batch and not only the last one: the journal (every item, its fate, its cost), the
//! per-item metadata JSON that disk sinks write (names, files, model, quality verdict) and the
//! `candidates/` and `rejected/` folders beside them.
//!
//! A batch of more than [`CARDS_PER_PAGE`] items is split into page files: `report.html` holds
//! the first cards, the list of every page file with the problems each holds, and the first
//! failed and filtered items wherever they are; `report-2.html`, `report-3.html`... hold the
//! rest in book order. Each is one offline file, and the batch is read one item at a time, so
//! writing the report takes the same memory for a batch of any size.
//!
//! It knows no stage by name: it reads the journal's schema and the metadata files' fields.

mod gather;
mod html;
mod index;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use serde_json::Value;

use crate::engine::atomic_file::write_atomically;

pub use gather::{CARDS_PER_PAGE, Card, Overview, PROBLEMS_LISTED, PageSummary, Problem, difficulty};
pub use html::{esc, page_file, render, url};

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

/// Gathers the batch in `output_dir` and writes `report.html` (and its further page files);
/// returns the path of `report.html`.
pub fn write_report(output_dir: &Path, facts: RunFacts) -> anyhow::Result<PathBuf> {
    let batch = gather::Batch::open(output_dir)?;
    let overview = batch.overview(facts)?;
    // The first page is written last, so it never links to a page file not yet written.
    let mut first = None;
    batch.each_page(|page, cards| {
        let html = render(&overview, page, cards);
        if page == 0 {
            first = Some(html);
            Ok(())
        } else {
            write_page(&output_dir.join(page_file(page)), &html)
        }
    })?;
    let path = output_dir.join(REPORT_FILE);
    write_page(&path, &first.unwrap_or_default())?;
    remove_stale_pages(output_dir, overview.pages.len());
    Ok(path)
}

/// Pages per quality verdict, over the items of the batch whose metadata has one (as the
/// review page shows them).
pub fn verdict_counts(output_dir: &Path) -> anyhow::Result<BTreeMap<String, u64>> {
    gather::Batch::open(output_dir)?.verdicts()
}

/// Hands `visit` every item of the batch in `output_dir`, in book order, as the review page
/// shows it (for pages that set batches side by side, such as the model bake-off).
pub fn each_card(output_dir: &Path, mut visit: impl FnMut(&Card)) -> anyhow::Result<()> {
    gather::Batch::open(output_dir)?.each_page(|_, cards| {
        cards.iter().for_each(&mut visit);
        Ok(())
    })
}

fn write_page(path: &Path, html: &str) -> anyhow::Result<()> {
    write_atomically(path, html.as_bytes())
        .with_context(|| format!("cannot write the report {}", path.display()))?;
    // The temp file it was written through is private; a review page is for reading.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .with_context(|| format!("cannot make {} readable", path.display()))?;
    }
    Ok(())
}

/// Removes page files beyond the `pages` just written, left by an earlier report.
fn remove_stale_pages(output_dir: &Path, pages: usize) {
    let Ok(entries) = std::fs::read_dir(output_dir) else { return };
    for entry in entries.flatten() {
        let name = entry.file_name();
        if let Some(number) = name.to_str().and_then(crate::engine::output_path::report_page_number)
            && number > pages
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
