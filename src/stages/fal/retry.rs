//! Retrying one HTTP call with exponential backoff and jitter, honouring `Retry-After`, and
//! waking up at once when the batch is stopped; and the rules for what may be retried, which
//! depend on what a repeat can cost.

use std::future::Future;
use std::time::Duration;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::error::{CallError, HttpError};

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
/// accept it, since a second accepted submission is paid twice; every other call is free.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Call {
    /// `POST` of a new request: not interrupted by a stop (its answer must be recorded).
    Submit,
    /// Status polls and result fetches: safe to repeat and to abandon.
    Queue,
    /// Image downloads from fal's CDN, which can answer 404 for a moment after `COMPLETED`.
    Download,
}

/// Whether repeating `call` after `error` may help and cannot cost money.
///
/// A submission is repeated only when fal surely did not accept it: a 429, a connection that
/// never opened, or a proxy's own 502/503 page (no request id, not fal's JSON). Free calls are
/// repeated on 408, 429, 500, 502, 503, 504 (but not fal's user timeout), lost connections and
/// answers cut short or garbled, downloads on 404 too. `X-Fal-Retryable`, where fal sends it,
/// decides for a free call; it never makes a submission retryable, since neither of fal's own
/// clients reads it and a repeated submission may be paid twice.
pub(super) fn retryable(error: &CallError, call: Call) -> bool {
    match error {
        CallError::Http(HttpError { retryable_hint: Some(hint), .. }) if call != Call::Submit => *hint,
        CallError::Http(e) => match call {
            Call::Submit => e.status == 429 || is_ingress_refusal(e),
            Call::Queue => is_transient(e),
            Call::Download => is_transient(e) || e.status == 404,
        },
        CallError::Transport { before_sending, .. } => call != Call::Submit || *before_sending,
        // A submission's garbled answer may be fal's acceptance: never repeated.
        CallError::Malformed(_) => call != Call::Submit,
        CallError::Invalid(_) | CallError::MissingKey => false,
    }
}

/// Whether a submission that ended in `error` may have been accepted (and charged) by fal:
/// the body went out and no answer says otherwise. Such a submission is never repeated
/// without the user's word.
pub(super) fn may_have_been_accepted(error: &CallError) -> bool {
    match error {
        CallError::Http(e) => {
            e.status >= 500 && e.request_id.is_none() && !e.user_timeout && !is_ingress_refusal(e)
        }
        CallError::Transport { before_sending, .. } => !before_sending,
        CallError::Invalid(_) | CallError::Malformed(_) => true,
        CallError::MissingKey => false,
    }
}

/// Whether fal has answered for good about a request it ran, so polling it again can only
/// give the same answer: a 4xx (not 408/429) or an error the application itself sent.
pub(super) fn is_definitive(error: &CallError) -> bool {
    match error {
        CallError::Http(e) => (e.status < 500 && !matches!(e.status, 408 | 429)) || e.answered_by_fal(),
        CallError::Invalid(_) => true,
        CallError::Transport { .. } | CallError::Malformed(_) | CallError::MissingKey => false,
    }
}

/// A status worth another try for a call that costs nothing.
fn is_transient(e: &HttpError) -> bool {
    matches!(e.status, 408 | 429 | 500 | 502 | 503) || (e.status == 504 && !e.user_timeout)
}

/// A 502/503 from something in front of fal (an HTML page, no request id): the request never
/// reached fal's queue.
fn is_ingress_refusal(e: &HttpError) -> bool {
    matches!(e.status, 502 | 503) && !e.answered_by_fal()
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
                Call::Queue | Call::Download => tokio::select! {
                    biased;
                    () = stop.cancelled() => return Err(GaveUp::Stopped),
                    outcome = call() => outcome,
                },
            };
            let error = match outcome {
                Ok(value) => return Ok(value),
                Err(error) => error,
            };
            if attempt >= self.max_attempts || !retryable(&error, kind) {
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

/// A token cancelled `wait` after `stop` is. Collecting a request fal is already generating
/// watches it instead of the stop, so a stopped batch still takes in what it has paid for,
/// but within a bounded wait. Dropping the guard ends the timer.
pub(super) fn cancelled_after(stop: &CancellationToken, wait: Duration) -> (CancellationToken, DropGuard) {
    let waited = CancellationToken::new();
    let done = CancellationToken::new();
    let (stop, waited_out, finished) = (stop.clone(), waited.clone(), done.clone());
    tokio::spawn(async move {
        tokio::select! {
            () = finished.cancelled() => {}
            () = async { stop.cancelled().await; tokio::time::sleep(wait).await } => waited_out.cancel(),
        }
    });
    (waited, done.drop_guard())
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

    fn http(status: u16) -> HttpError {
        HttpError { status, detail: "no".into(), ..HttpError::default() }
    }

    fn unavailable() -> CallError {
        CallError::Http(http(503))
    }

    #[test]
    fn submissions_are_retried_only_when_surely_not_accepted() {
        let proxy_page = CallError::Http(http(502));
        let fal_502 = CallError::Http(HttpError { fal_json: true, ..http(502) });
        let gateway_timeout = CallError::Http(http(504));
        assert!(retryable(&CallError::Http(http(429)), Call::Submit));
        assert!(retryable(&proxy_page, Call::Submit) && !may_have_been_accepted(&proxy_page));
        for unknown in [&fal_502, &gateway_timeout, &CallError::Http(http(500))] {
            assert!(!retryable(unknown, Call::Submit) && may_have_been_accepted(unknown), "{unknown}");
        }
        let lost = CallError::Transport { detail: "reset".into(), before_sending: false };
        let refused = CallError::Transport { detail: "refused".into(), before_sending: true };
        assert!(!retryable(&lost, Call::Submit) && may_have_been_accepted(&lost));
        assert!(retryable(&refused, Call::Submit) && !may_have_been_accepted(&refused));
        let invalid = CallError::Http(http(422));
        assert!(!retryable(&invalid, Call::Submit) && !may_have_been_accepted(&invalid));
    }

    #[test]
    fn free_calls_are_retried_on_every_transient_error() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable(&CallError::Http(http(status)), Call::Queue), "{status}");
        }
        for status in [400, 401, 403, 404, 422] {
            assert!(!retryable(&CallError::Http(http(status)), Call::Queue), "{status}");
        }
        assert!(retryable(&CallError::Http(http(404)), Call::Download));
        let user_timeout = CallError::Http(HttpError { user_timeout: true, ..http(504) });
        assert!(!retryable(&user_timeout, Call::Queue));
        let told_not_to = CallError::Http(HttpError { retryable_hint: Some(false), ..http(503) });
        let told_to = CallError::Http(HttpError { retryable_hint: Some(true), ..http(400) });
        assert!(!retryable(&told_not_to, Call::Queue) && retryable(&told_to, Call::Queue));
        let cut_short = CallError::Malformed("fal's answer is not JSON".into());
        assert!(retryable(&cut_short, Call::Queue) && !is_definitive(&cut_short));
    }

    #[test]
    fn no_header_makes_a_submission_retryable() {
        for status in [400, 422, 500, 502, 504] {
            let app_error = HttpError { request_id: Some("r".into()), fal_json: true, ..http(status) };
            let told_to = CallError::Http(HttpError { retryable_hint: Some(true), ..app_error });
            assert!(!retryable(&told_to, Call::Submit), "{status}");
        }
        let garbled = CallError::Malformed("fal's answer is not JSON".into());
        assert!(!retryable(&garbled, Call::Submit) && may_have_been_accepted(&garbled));
    }

    #[test]
    fn only_the_applications_own_answers_are_definitive() {
        let policy = CallError::Http(HttpError { fal_json: true, ..http(422) });
        let app_error = CallError::Http(HttpError { request_id: Some("r".into()), ..http(500) });
        assert!(is_definitive(&policy) && is_definitive(&app_error));
        for passing in [CallError::Http(http(502)), CallError::Http(http(429))] {
            assert!(!is_definitive(&passing), "{passing}");
        }
        assert!(!is_definitive(&CallError::Transport { detail: "reset".into(), before_sending: false }));
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
            .run(Call::Queue, "poll", &CancellationToken::new(), &mut retries, || async {
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
                Err(CallError::Http(http(422)))
            })
            .await;
        assert!(matches!(outcome, Err(GaveUp::Failed(CallError::Http(HttpError { status: 422, .. }), 1))));
        assert_eq!(retries, 0);
    }

    #[tokio::test]
    async fn a_stop_ends_the_backoff_at_once() {
        let stop = CancellationToken::new();
        let slow = RetryPolicy { max_attempts: 3, base_delay: Duration::from_secs(3600) };
        let mut retries = 0;
        // The call fails and stops the batch as it does; the hour-long backoff must not run.
        let run = slow.run(Call::Queue, "poll", &stop, &mut retries, || {
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

    #[tokio::test(start_paused = true)]
    async fn the_wait_after_a_stop_starts_at_the_stop_and_is_bounded() {
        let stop = CancellationToken::new();
        let wait = Duration::from_secs(60);
        let (waited, _guard) = cancelled_after(&stop, wait);
        // No stop, no end: an hour passes (on the paused clock) with the token untouched.
        assert!(tokio::time::timeout(Duration::from_secs(3600), waited.cancelled()).await.is_err());
        stop.cancel();
        let stopped_at = tokio::time::Instant::now();
        waited.cancelled().await;
        assert_eq!(stopped_at.elapsed(), wait);
    }

    #[tokio::test(start_paused = true)]
    async fn dropping_the_guard_ends_the_timer() {
        let stop = CancellationToken::new();
        let (waited, guard) = cancelled_after(&stop, Duration::from_secs(1));
        drop(guard);
        stop.cancel();
        assert!(tokio::time::timeout(Duration::from_secs(10), waited.cancelled()).await.is_err());
    }
}
