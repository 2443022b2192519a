//! Shared state of a running batch that stages may consult.

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::item::Item;
use super::raw_cache::RawCache;

/// The fact under which the journal hands a resumed item its accepted-but-uncollected
/// request: `{"stage": <stage id>, "request": <what the stage recorded>}`. The request is
/// `null` when an earlier run was stopped between sending it and hearing back: the service
/// may or may not have accepted (and charged) it.
pub const RESUME_FACT: &str = "resume_request";

/// Durable record of paid remote work. The journal implements it so that a request accepted
/// by a paid API is on disk before anything else happens, and a resumed batch re-polls it
/// instead of paying again.
///
/// A submission is recorded twice: once before it is sent (`submitting`) and once when it is
/// accepted (`submitted`). A crash between the two leaves a submission whose fate is unknown;
/// a resumed batch reports it instead of paying a second time without being asked.
pub trait SubmissionLog: Send + Sync {
    /// Records that work for `item` is about to be sent, costing `cost_usd` if accepted.
    /// Returns only once it is durable.
    fn submitting(&self, item: &Item, stage: &str, cost_usd: Option<f64>) -> anyhow::Result<()>;
    /// Records that the remote service accepted work for `item`; `request` holds what is
    /// needed to collect it later (request id and URLs). Returns only once it is durable.
    fn submitted(&self, item: &Item, stage: &str, request: &Value) -> anyhow::Result<()>;
    /// Records that the service surely did not accept the work announced by `submitting`
    /// (it answered with an error, or was never reached), so nothing was charged.
    fn not_submitted(&self, item: &Item, stage: &str) -> anyhow::Result<()>;
}

/// Handed to I/O stages: lets long waits (polling, retries) end promptly on Ctrl-C and lets
/// paid stages record their submissions.
#[derive(Clone, Default)]
pub struct RunContext {
    /// Cancelled when the user asks the batch to stop.
    pub stop: CancellationToken,
    /// Where paid submissions are recorded, when the batch keeps a journal.
    pub submissions: Option<Arc<dyn SubmissionLog>>,
    /// Originals generated before, so a re-run pays nothing for what it already has.
    pub raw_cache: Option<Arc<RawCache>>,
    /// Money earlier runs of this batch spent, so budgets hold across restarts.
    pub spent_before_usd: f64,
}

impl RunContext {
    /// The submission log, or `None` when the batch keeps no journal (then recording is a
    /// no-op).
    pub fn submission_log(&self) -> Option<&dyn SubmissionLog> {
        self.submissions.as_deref()
    }
}
