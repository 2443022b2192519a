//! The requests fal holds for us and their cancels: the registry a stop cancels the queued ones
//! from, and the cancel itself, which records whether the request may still be charged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::super::client::CancelAnswer;
use super::super::retry::{Call, GaveUp};
use super::{FalStage, lock, record_settlement};
use crate::engine::run_context::{Settlement, SubmissionLog};

/// How long a best-effort cancel may take, so Ctrl-C stays prompt.
const CANCEL_TIMEOUT: Duration = Duration::from_secs(5);

/// What a cancel did, in words, and whether the request may still complete and be charged.
pub(super) struct CancelOutcome {
    pub(super) still_open: bool,
    pub(super) message: String,
}

/// A request fal holds for us, for cancelling on Ctrl-C.
#[derive(Clone)]
pub(super) struct Pending {
    /// The item it is for.
    pub(super) key: String,
    pub(super) cancel_url: String,
    /// Last seen waiting in the queue (or not polled yet): cancelling it costs nothing.
    pub(super) queued: bool,
    /// What it costs if a runner has started it.
    pub(super) cost_usd: f64,
    /// Where to record a cancel.
    pub(super) log: Option<Arc<dyn SubmissionLog>>,
}

/// The requests fal holds for us, by request id.
#[derive(Default)]
pub(super) struct PendingRequests(Mutex<HashMap<String, Pending>>);

impl PendingRequests {
    /// Tracks `request`, replacing what was known of it.
    pub(super) fn insert(&self, id: String, request: Pending) {
        lock(&self.0).insert(id, request);
    }

    /// Stops tracking request `id`, returning what was known of it.
    pub(super) fn remove(&self, id: &str) -> Option<Pending> {
        lock(&self.0).remove(id)
    }

    /// Takes out every request last seen waiting in the queue: those a stop cancels.
    pub(super) fn take_queued(&self) -> Vec<(String, Pending)> {
        let mut pending = lock(&self.0);
        let ids: Vec<String> = pending.iter().filter(|(_, p)| p.queued).map(|(id, _)| id.clone()).collect();
        ids.into_iter().filter_map(|id| pending.remove(&id).map(|p| (id, p))).collect()
    }
}

impl FalStage {
    /// Asks fal to drop request `id` and records what happened. A cancelled request costs
    /// nothing if it was still queued. One fal only signalled to stop (a runner has it) or has
    /// finished may be charged: it stays open, tracked as running, to be collected; a resumed
    /// batch polls it too.
    pub(super) async fn cancel(&self, id: &str, pending: Pending) -> CancelOutcome {
        let key = pending.key.clone();
        // A cancel costs nothing, so a glitch is retried like any free call, within the timeout.
        let answer = tokio::time::timeout(CANCEL_TIMEOUT, async {
            let mut retries = 0;
            let never = CancellationToken::new();
            self.policy
                .run(Call::Queue, &format!("{key}: cancel"), &never, &mut retries, || {
                    self.client.cancel(&pending.cancel_url)
                })
                .await
        })
        .await;
        let open = |message: String| {
            self.pending.insert(id.to_owned(), Pending { queued: false, ..pending.clone() });
            CancelOutcome { still_open: true, message }
        };
        let closed = |message: String| CancelOutcome { still_open: false, message };
        match answer {
            Ok(Ok(CancelAnswer::Cancelled)) => {
                tracing::info!("{key}: cancelled fal request {id}");
                let cost = if pending.queued { 0.0 } else { pending.cost_usd };
                record_settlement(pending.log.as_deref(), &key, &self.id, Settlement::Cancelled, cost);
                closed(if pending.queued {
                    format!("cancelled request {id} at fal before it started, so it is not charged")
                } else {
                    format!("cancelled request {id} at fal; it had started, so it may be charged")
                })
            }
            Ok(Ok(CancelAnswer::Requested)) => open(format!(
                "fal only signalled the runner that has request {id} to stop (CANCELLATION_REQUESTED): it may \
                 still complete and be charged, so it is kept open and collected if it does"
            )),
            Ok(Ok(CancelAnswer::TooLate)) => {
                open(format!("fal has already finished request {id}, so it is paid for and is collected"))
            }
            Ok(Ok(CancelAnswer::NotFound)) => closed(format!(
                "fal does not know request {id} (NOT_FOUND): a resumed batch polls it once more"
            )),
            Ok(Err(gave_up)) => {
                let e = match gave_up {
                    GaveUp::Failed(e, _) => self.redact(&e.to_string()),
                    GaveUp::Stopped => "stopped".to_owned(),
                };
                tracing::warn!("{key}: could not cancel fal request {id}: {e}");
                closed(format!("the cancel of request {id} failed ({e}): a resumed batch polls it again"))
            }
            Err(_) => closed(format!(
                "the cancel of request {id} got no answer in {CANCEL_TIMEOUT:?}: a resumed batch polls it again"
            )),
        }
    }
}
