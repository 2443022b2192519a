//! One request to an LLM endpoint on fal's queue (such as `fal-ai/any-llm`), with the same key,
//! queue and retry rules as the image stage: submit, poll, fetch the answer. It serves callers
//! outside a batch (the `plan` source), which journal each request themselves between
//! [`LlmClient::submit`] and [`LlmClient::answer`], so a resumed run collects a request it
//! paid for instead of paying again.

use std::time::Duration;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::client::{MAX_JSON_BYTES, QueueClient, QueueState, Submission};
use super::error::CallError;
use super::key::Environment;
use super::options::{DEFAULT_BASE_URL, check_base_url};
use super::retry::{self, Call, GaveUp, RetryPolicy};

/// How long one HTTP call may take, answer included.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);
/// Attempts per HTTP call (status polls and result fetches; a submission only when fal surely
/// did not take it).
const CALL_ATTEMPTS: u32 = 5;

/// How an LLM request ended, when not with an answer.
#[derive(Debug)]
pub(crate) enum LlmError {
    /// fal surely did not accept the request: nothing was charged.
    NotAccepted(String),
    /// The submission went out and no answer proves fal refused it: it may be charged.
    Uncertain(String),
    /// fal ran the request and answered an error for good; `charged` tells whether it bills it.
    Failed {
        /// What fal said.
        message: String,
        /// fal bills a run that failed with an answer of the app's own (not a 5xx).
        charged: bool,
    },
    /// Polling or fetching gave up for now; the request is still fal's to answer.
    Unfinished(String),
    /// The key was refused or the account is locked: nothing else can succeed.
    Refused(String),
}

impl std::fmt::Display for LlmError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LlmError::NotAccepted(m)
            | LlmError::Uncertain(m)
            | LlmError::Failed { message: m, .. }
            | LlmError::Unfinished(m)
            | LlmError::Refused(m) => f.write_str(m),
        }
    }
}

/// A client for LLM requests on fal's queue.
pub(crate) struct LlmClient {
    client: QueueClient,
    policy: RetryPolicy,
    poll_interval: Duration,
    /// Never cancelled: the request is made before the batch listens for Ctrl-C, and a stopped
    /// process leaves its journaled request for the next run to collect.
    stop: CancellationToken,
}

impl LlmClient {
    /// A client for the queue at `base_url` (else `FAL_QUEUE_BASE_URL`, else fal's), or `None`
    /// when `env` holds no fal key.
    pub(crate) fn new(
        env: &Environment,
        base_url: Option<&str>,
        poll_interval: Duration,
    ) -> Result<Option<Self>, String> {
        let Some((key, _)) = env.api_key() else { return Ok(None) };
        let base = match (base_url, env.var("FAL_QUEUE_BASE_URL")) {
            (Some(url), _) => check_base_url(url).map_err(|e| format!("option base_url: {e}"))?,
            (None, Some(url)) => check_base_url(&url).map_err(|e| format!("FAL_QUEUE_BASE_URL: {e}"))?,
            (None, None) => check_base_url(DEFAULT_BASE_URL)?,
        };
        let client = QueueClient::new(base, Some(key), CALL_TIMEOUT)?;
        let policy = RetryPolicy { max_attempts: CALL_ATTEMPTS, base_delay: Duration::from_millis(500) };
        Ok(Some(LlmClient { client, policy, poll_interval, stop: CancellationToken::new() }))
    }

    /// `message` with the key masked, in case a server echoed it back.
    fn redact(&self, message: &str) -> String {
        self.client.key().map_or_else(|| message.to_owned(), |key| key.redact(message))
    }

    /// Queues `input` at `endpoint`. Returns what a later run needs to collect it (request id
    /// and URLs), for the caller to journal before it waits.
    pub(crate) async fn submit(&self, endpoint: &str, input: &Value) -> Result<Value, LlmError> {
        let mut retries = 0;
        let submitted = self
            .policy
            .run(Call::Submit, &format!("{endpoint}: submit"), &self.stop, &mut retries, || {
                self.client.submit(endpoint, input, None)
            })
            .await;
        match submitted {
            Ok(submission) => Ok(serde_json::to_value(&submission).unwrap_or(Value::Null)),
            Err(GaveUp::Failed(error, attempts)) => {
                let message =
                    self.redact(&format!("submitting to {endpoint}: {error} ({attempts} attempt(s))"));
                Err(if error.is_auth() || error.account_lock().is_some() {
                    LlmError::Refused(message)
                } else if retry::may_have_been_accepted(&error) {
                    LlmError::Uncertain(format!("{message}: fal may have accepted (and charged) it"))
                } else {
                    LlmError::NotAccepted(message)
                })
            }
            Err(GaveUp::Stopped) => Err(LlmError::NotAccepted(format!("submitting to {endpoint}: stopped"))),
        }
    }

    /// Waits for the request `handle` (what [`LlmClient::submit`] returned) to finish and
    /// fetches its answer. Asking again for a finished request costs nothing.
    pub(crate) async fn answer(&self, handle: &Value) -> Result<Value, LlmError> {
        let submission: Submission = serde_json::from_value(handle.clone()).map_err(|e| {
            LlmError::Unfinished(format!("the journaled request is not a fal queue handle: {e}"))
        })?;
        let id = &submission.request_id;
        let mut retries = 0;
        loop {
            let polled = self
                .policy
                .run(Call::Queue, &format!("request {id}: status"), &self.stop, &mut retries, || {
                    self.client.status(&submission.status_url)
                })
                .await;
            match polled {
                Ok(QueueState::Finished(_)) => break,
                Ok(QueueState::Queued(_) | QueueState::InProgress) => {
                    tokio::time::sleep(self.poll_interval).await
                }
                Err(gave_up) => return Err(self.gave_up(gave_up, &format!("polling request {id}"))),
            }
        }
        let fetched = self
            .policy
            .run(Call::Queue, &format!("request {id}: result"), &self.stop, &mut retries, || {
                self.client.result(&submission.response_url, MAX_JSON_BYTES)
            })
            .await;
        match fetched {
            Ok(answer) => Ok(answer),
            Err(GaveUp::Failed(error, _)) if !error.is_auth() && retry::is_definitive(&error) => {
                let charged = !matches!(&error, CallError::Http(e) if e.status >= 500);
                Err(LlmError::Failed {
                    message: self.redact(&format!("fal failed request {id}: {error}")),
                    charged,
                })
            }
            Err(gave_up) => Err(self.gave_up(gave_up, &format!("fetching the answer of request {id}"))),
        }
    }

    fn gave_up(&self, gave_up: GaveUp, doing: &str) -> LlmError {
        match gave_up {
            GaveUp::Failed(error, _) if error.is_auth() || error.account_lock().is_some() => {
                LlmError::Refused(self.redact(&format!("{doing}: {error}")))
            }
            GaveUp::Failed(error, attempts) => {
                LlmError::Unfinished(self.redact(&format!("{doing}: {error} (after {attempts} attempt(s))")))
            }
            GaveUp::Stopped => LlmError::Unfinished(format!("{doing}: stopped")),
        }
    }
}
