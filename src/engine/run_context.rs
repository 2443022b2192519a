//! Shared state of a running batch that stages may consult.

use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::item::Item;
use super::raw_cache::RawCache;

/// The fact under which the journal hands a resumed item its accepted-but-uncollected
/// request: `{"stage": <stage id>, "request": <what the stage recorded>}`.
pub const RESUME_FACT: &str = "resume_request";

/// Durable record of paid remote work. The journal implements it so that a request accepted
/// by a paid API is on disk before anything else happens, and a resumed batch re-polls it
/// instead of paying again.
pub trait SubmissionLog: Send + Sync {
    /// Records that the remote service accepted work for `item`; `request` holds what is
    /// needed to collect it later (request id and URLs). Returns only once it is durable.
    fn submitted(&self, item: &Item, stage: &str, request: &Value) -> anyhow::Result<()>;
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
    /// Records an accepted submission; a no-op when the batch keeps no journal.
    pub fn record_submission(&self, item: &Item, stage: &str, request: &Value) -> anyhow::Result<()> {
        match &self.submissions {
            Some(log) => log.submitted(item, stage, request),
            None => Ok(()),
        }
    }
}
