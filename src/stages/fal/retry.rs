//! Retrying one HTTP call with exponential backoff and jitter, honouring `Retry-After`, and
//! waking up at once when the batch is stopped.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::client::CallError;

/// The longest wait between attempts, whatever the backoff or `Retry-After` says, so one
/// item cannot stall for hours.
const MAX_DELAY: Duration = Duration::from_secs(300);

/// How often and how patiently to retry.
#[derive(Clone, Copy, Debug)]
pub(super) struct RetryPolicy {
    /// Attempts per call, counting the first.
    pub max_attempts: u32,
    /// The first backoff delay; it doubles with each retry.
    pub base_delay: Duration,
}

/// Which call is being retried: a submission may be retried only when fal surely did not
/// accept it, since a second accepted submission is paid twice.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// `POST` of a new request: not interrupted by a stop (its answer must be recorded).
    Submit,
    /// Status polls, result fetches and downloads: safe to repeat and to abandon.
    Repeatable,
}

/// Why a retried call gave up.
#[derive(Debug)]
pub(super) enum GaveUp {
    /// The batch was stopped.
    Stopped,
    /// The last error, after this many attempts.
    Failed(CallError, u32),
}

impl RetryPolicy {
    /// The backoff before retry number `retry` (1 for the first retry): base * 2^(retry-1),
    /// with "equal jitter" (a random half of it) so parallel items do not retry in lockstep.
    pub(super) fn backoff(&self, retry: u32) -> Duration {
        let exponential = self.base_delay.saturating_mul(1u32 << (retry - 1).min(16)).min(MAX_DELAY);
        exponential.mul_f64(0.5 + fastrand::f64() * 0.5)
    }

    /// Runs `call` until it succeeds, fails for good or runs out of attempts; `retries` counts
    /// the retries made (for the item's metadata).
    pub(super) async fn run<T, F, Fut>(
        &self,
        kind: Call,
        what: &str,
        stop: &CancellationToken,
        retries: &mut u32,
        mut call: F,
    ) -> Result<T, GaveUp>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, CallError>>,
    {
        let mut attempt = 1;
        loop {
            let outcome = match kind {
                Call::Submit => call().await,
                Call::Repeatable => tokio::select! {
                    biased;
                    () = stop.cancelled() => return Err(GaveUp::Stopped),
                    outcome = call() => outcome,
                },
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if attempt >= self.max_attempts || !error.retryable(kind) {
                return Err(GaveUp::Failed(error, attempt));
            }
            let delay = error.retry_after().unwrap_or_else(|| self.backoff(attempt)).min(MAX_DELAY);
            tracing::warn!("{what}: {error}; retry {attempt} of {} in {delay:?}", self.max_attempts - 1);
            attempt += 1;
            *retries += 1;
            sleep_unless_stopped(stop, delay).await.map_err(|()| GaveUp::Stopped)?;
        }
    }
}

/// Sleeps for `delay`, or returns `Err` as soon as the batch is stopped.
pub(super) async fn sleep_unless_stopped(stop: &CancellationToken, delay: Duration) -> Result<(), ()> {
    tokio::select! {
        biased;
        () = stop.cancelled() => Err(()),
        () = tokio::time::sleep(delay) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use super::*;

    fn policy() -> RetryPolicy {
        RetryPolicy { max_attempts: 3, base_delay: Duration::from_millis(1) }
    }

    fn unavailable() -> CallError {
        CallError::Http { status: 503, detail: "busy".into(), retry_after: None, user_timeout: false }
    }

    #[test]
    fn backoff_doubles_with_jitter_within_half_and_full() {
        let p = RetryPolicy { max_attempts: 9, base_delay: Duration::from_millis(100) };
        for retry in 1..=4 {
            let full = Duration::from_millis(100 << (retry - 1));
            let d = p.backoff(retry);
            assert!(d >= full / 2 && d <= full, "retry {retry}: {d:?}");
        }
        assert!(p.backoff(40) <= MAX_DELAY);
    }

    #[tokio::test]
    async fn gives_up_after_max_attempts_and_counts_retries() {
        let calls = AtomicU32::new(0);
        let mut retries = 0;
        let outcome: Result<(), _> = policy()
            .run(Call::Repeatable, "poll", &CancellationToken::new(), &mut retries, || async {
                calls.fetch_add(1, Ordering::SeqCst);
                Err(unavailable())
            })
            .await;
        assert!(matches!(outcome, Err(GaveUp::Failed(_, 3))));
        assert_eq!((calls.load(Ordering::SeqCst), retries), (3, 2));
    }

    #[tokio::test]
    async fn a_refused_submission_is_not_retried() {
        let mut retries = 0;
        let outcome: Result<(), _> = policy()
            .run(Call::Submit, "submit", &CancellationToken::new(), &mut retries, || async {
                Err(CallError::Http {
                    status: 422,
                    detail: "bad".into(),
                    retry_after: None,
                    user_timeout: false,
                })
            })
            .await;
        assert!(matches!(outcome, Err(GaveUp::Failed(CallError::Http { status: 422, .. }, 1))));
        assert_eq!(retries, 0);
    }

    #[tokio::test]
    async fn a_stop_ends_the_backoff_at_once() {
        let stop = CancellationToken::new();
        let slow = RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(3600) };
        let mut retries = 0;
        // The call fails and stops the batch as it does; the hour-long backoff must not run.
        let run = slow.run(Call::Repeatable, "poll", &stop, &mut retries, || {
            let stop = stop.clone();
            async move {
                stop.cancel();
                Err::<(), _>(unavailable())
            }
        });
        let outcome = tokio::time::timeout(Duration::from_secs(10), run).await;
        assert!(matches!(outcome, Ok(Err(GaveUp::Stopped))));
        assert_eq!(retries, 1);
    }
}
