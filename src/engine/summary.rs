//! The batch summary: printed at the end, written by sinks (`batch_metadata.json`).

use std::collections::BTreeMap;

use serde::Serialize;

/// Per-component counts, for the statistics table and the summary file.
#[derive(Clone, Debug, Default, Serialize)]
pub struct ComponentCounts {
    /// The component id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// Items it passed on (or wrote, for a sink).
    pub done: u64,
    /// Items it failed.
    pub failed: u64,
    /// Items it filtered out on purpose.
    pub filtered: u64,
}

/// One failed item, for the summary and `inkflow status`.
#[derive(Clone, Debug, Serialize)]
pub struct FailedItem {
    /// The item key.
    pub key: String,
    /// Its description from the prompt file.
    pub description: String,
    /// The stage that failed it.
    pub stage: String,
    /// The error.
    pub error: String,
    /// Attempts the stage made.
    pub attempts: u32,
}

/// What happened in a batch.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The pipeline file.
    pub pipeline: String,
    /// When the batch started (RFC 3339, UTC).
    pub started_at: String,
    /// When it finished.
    pub finished_at: String,
    /// Items the sources listed.
    pub total_items: u64,
    /// Items every sink wrote.
    pub succeeded: u64,
    /// Items a stage or sink failed.
    pub failed: u64,
    /// Items a stage removed on purpose (e.g. the safety check).
    pub filtered: u64,
    /// Items skipped because a previous run already completed them.
    pub skipped: u64,
    /// Items never started because the batch was stopped.
    pub not_started: u64,
    /// Retries spent over all items.
    pub retries: u64,
    /// Wall time of the batch.
    pub elapsed_seconds: f64,
    /// Items finished (succeeded, failed or filtered) per second.
    pub items_per_second: f64,
    /// Money spent on paid stages, in US dollars.
    pub cost_usd: f64,
    /// True when the batch was stopped before its end (Ctrl-C or a fatal error).
    pub interrupted: bool,
    /// True when it was stopped from outside (Ctrl-C, a signal) rather than by an error of
    /// its own: the run's exit code says which.
    pub stopped_by_user: bool,
    /// Why the batch stopped early, when it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stop_reason: Option<String>,
    /// The output directory.
    pub output_dir: String,
    /// Counts per component.
    pub components: Vec<ComponentCounts>,
    /// Filtered items per reason.
    pub filtered_reasons: BTreeMap<String, u64>,
    /// Every failed item.
    pub failures: Vec<FailedItem>,
    /// Sinks that could not finish (e.g. a book with missing pages and `on_missing: fail`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sink_errors: Vec<String>,
    /// What sinks report after finishing (e.g. a book's print preflight verdict).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sink_notes: Vec<String>,
    /// Pages per verdict of the judging stage (pass, warn, reject), over every page whose
    /// candidates this run knows of, earlier runs' included.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub verdicts: BTreeMap<String, u64>,
    /// Candidates this run made beyond each page's first (re-rolls, best of N).
    #[serde(skip_serializing_if = "is_zero")]
    pub extra_candidates: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}
