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
/// a resumed batch reports it instead of paying a second time without being asked. An
/// accepted submission stays open (a resume polls it) until the stage passes the item on, or
/// until it is `settled` without a result.
pub trait SubmissionLog: Send + Sync {
    /// Records that work for `item` is about to be sent, costing `cost_usd` if accepted.
    /// Returns only once it is durable.
    fn submitting(&self, item: &Item, stage: &str, cost_usd: Option<f64>) -> anyhow::Result<()>;
    /// Records that the remote service accepted work for `item`, costing `cost_usd`; `request`
    /// holds what is needed to collect it later (request id and URLs). Returns only once it
    /// is durable.
    fn submitted(
        &self,
        item: &Item,
        stage: &str,
        request: &Value,
        cost_usd: Option<f64>,
    ) -> anyhow::Result<()>;
    /// Records that the service surely did not accept the work announced by `submitting`
    /// (it answered with an error, or was never reached), so nothing was charged.
    fn not_submitted(&self, item: &Item, stage: &str) -> anyhow::Result<()>;
    /// Records that the open submission of item `key` ended without a result to go on with,
    /// so a resumed batch does not poll it again; `cost_usd` is what it cost in the end.
    fn settled(&self, key: &str, stage: &str, settlement: Settlement, cost_usd: f64) -> anyhow::Result<()>;
    /// Notes that the service has finished the work announced for item `key` (its result is
    /// in hand, not yet its files): it runs nothing more for it, so a limit on requests in
    /// flight (a cluster's per-account one) may let the next one go before the download.
    fn answered(&self, _key: &str, _stage: &str) {}
    /// The URL a file with content hash `sha256` was uploaded to earlier in the batch (a
    /// paid request's input, such as a reference image), so it is not uploaded again. A log
    /// that keeps no uploads answers `None`: the file is uploaded again.
    fn uploaded(&self, _sha256: &str) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
    /// Records that the file with content hash `sha256` (`bytes` long) is at `url`.
    fn record_upload(&self, _sha256: &str, _url: &str, _bytes: u64) -> anyhow::Result<()> {
        Ok(())
    }
}

/// How an accepted submission ended without a result to pass on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settlement {
    /// The service answered for good that the work failed (a refused prompt, a model error).
    Failed,
    /// The service's own safety check withheld the result.
    Filtered,
    /// It was cancelled before any work was done.
    Cancelled,
}

impl Settlement {
    /// The word the journal stores and `inkflow status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Settlement::Failed => "failed",
            Settlement::Filtered => "filtered",
            Settlement::Cancelled => "cancelled",
        }
    }
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
