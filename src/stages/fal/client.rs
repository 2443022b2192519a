//! fal's queue protocol: submit a request, poll its status, fetch its result, cancel it. Each
//! method makes one HTTP call; [`super::retry`] decides about repeating it. The status, result
//! and cancel URLs are the ones fal returned (never built here), and the API key is only sent
//! to the queue host the stage was configured with.

use std::fmt;
use std::time::Duration;

use reqwest::header::{AUTHORIZATION, HeaderMap, RETRY_AFTER};
use reqwest::{RequestBuilder, Response, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::download::read_capped;
use super::key::ApiKey;
use super::retry::Call;

/// The largest JSON answer read from the queue (results hold URLs, not pixels).
const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// The most of an error body kept for a message.
const MAX_DETAIL_CHARS: usize = 600;

/// Header fal sets on a 504 to say whether the request's own start timeout expired (`user`),
/// which a retry cannot fix, or the platform timed out.
const TIMEOUT_TYPE_HEADER: &str = "x-fal-request-timeout-type";

/// What one HTTP call to fal (or to an image URL) ended with, when not success.
#[derive(Debug)]
pub(super) enum CallError {
    /// The server answered with an error status.
    Http {
        /// The status code.
        status: u16,
        /// fal's `detail` (string or validation array) or the body's text.
        detail: String,
        /// The server's `Retry-After`, in seconds form.
        retry_after: Option<Duration>,
        /// A 504 marked `X-Fal-Request-Timeout-Type: user`.
        user_timeout: bool,
    },
    /// No answer: timeout, refused or dropped connection.
    Transport {
        /// What happened.
        detail: String,
        /// The connection was never made, so the server cannot have seen the request.
        before_sending: bool,
    },
    /// An answer that cannot be used (malformed JSON, a URL on a foreign host, a body too large).
    Invalid(String),
    /// No API key was configured.
    MissingKey,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Http { status, detail, user_timeout: true, .. } => {
                write!(f, "HTTP {status}: {detail} (the request's start timeout expired at fal)")
            }
            CallError::Http { status, detail, .. } => write!(f, "HTTP {status}: {detail}"),
            CallError::Transport { detail, .. } | CallError::Invalid(detail) => f.write_str(detail),
            CallError::MissingKey => {
                f.write_str("no fal API key: set FAL_KEY (or FAL_API_KEY) in the environment or in .env")
            }
        }
    }
}

impl CallError {
    /// Whether repeating the call may help: 429, 502, 503 and 504 (but not fal's user timeout),
    /// timeouts and connection errors. A submission is repeated only when fal surely did not
    /// accept it: an error status or a connection that never opened.
    pub(super) fn retryable(&self, call: Call) -> bool {
        match self {
            CallError::Http { status, user_timeout, .. } => {
                matches!(status, 429 | 502 | 503) || (*status == 504 && !user_timeout)
            }
            CallError::Transport { before_sending, .. } => call == Call::Repeatable || *before_sending,
            CallError::Invalid(_) | CallError::MissingKey => false,
        }
    }

    /// Whether fal may have accepted (and will charge) a submission that ended in this error:
    /// the request was sent but no usable answer came back.
    pub(super) fn may_have_been_accepted(&self) -> bool {
        matches!(self, CallError::Transport { before_sending: false, .. } | CallError::Invalid(_))
    }

    /// How long the server asked to wait.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Http { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The key is missing or was refused: nothing else in the batch can succeed.
    pub(super) fn is_auth(&self) -> bool {
        matches!(self, CallError::Http { status: 401 | 403, .. } | CallError::MissingKey)
    }

    /// A transport error from reqwest, with its cause chain.
    pub(super) fn from_reqwest(error: &reqwest::Error) -> Self {
        let mut detail = if error.is_timeout() {
            "timed out".to_owned()
        } else if error.is_connect() {
            "could not connect".to_owned()
        } else {
            "the connection failed".to_owned()
        };
        let mut source = std::error::Error::source(error);
        while let Some(cause) = source {
            detail.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        if let Some(url) = error.url() {
            detail.push_str(&format!(" ({})", url.as_str()));
        }
        CallError::Transport { detail, before_sending: error.is_connect() }
    }

    /// The error a non-success response stands for, reading a little of its body.
    pub(super) async fn from_response(response: Response) -> Self {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = read_capped(response, 64 * 1024, "the error body").await.unwrap_or_default();
        let mut detail = describe_error_body(&body);
        if detail.is_empty() {
            detail = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no detail")
                .to_owned();
        }
        CallError::Http {
            status,
            detail,
            retry_after: retry_after(&headers),
            user_timeout: status == 504
                && headers
                    .get(TIMEOUT_TYPE_HEADER)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|v| v.trim().eq_ignore_ascii_case("user")),
        }
    }
}

/// `Retry-After` in its seconds form (fal's); an HTTP date falls back to the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// fal's error body for humans: `detail` as a string, or its validation array as
/// `loc: msg` pairs; else `error`/`message`, else the text itself.
pub(super) fn describe_error_body(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => {
            match map.get("detail").or_else(|| map.get("error")).or_else(|| map.get("message")) {
                Some(detail) => describe_detail(detail),
                None => Value::Object(map).to_string(),
            }
        }
        Ok(other) => describe_detail(&other),
        Err(_) => String::from_utf8_lossy(body).split_whitespace().collect::<Vec<_>>().join(" "),
    };
    truncate(&text, MAX_DETAIL_CHARS)
}

fn describe_detail(detail: &Value) -> String {
    match detail {
        Value::String(s) => s.clone(),
        Value::Array(items) => items
            .iter()
            .map(|item| {
                let msg =
                    item.get("msg").and_then(Value::as_str).map_or_else(|| item.to_string(), str::to_owned);
                let loc: Vec<String> = item
                    .get("loc")
                    .and_then(Value::as_array)
                    .map(|loc| {
                        loc.iter().map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_owned)).collect()
                    })
                    .unwrap_or_default();
                if loc.is_empty() { msg } else { format!("{}: {msg}", loc.join(".")) }
            })
            .collect::<Vec<_>>()
            .join("; "),
        other => other.to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// What fal answered to a submission: the request id and the URLs to follow it. This is also
/// what the journal stores as the item's `fal_request` fact.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
pub(super) struct Submission {
    /// fal's request id.
    pub request_id: String,
    /// Where to poll the status.
    pub status_url: String,
    /// Where to fetch the result.
    pub response_url: String,
    /// Where to cancel it.
    pub cancel_url: String,
}

/// A request's place in fal's queue.
#[derive(Clone, Debug, PartialEq)]
pub(super) enum QueueState {
    /// Waiting for a runner, at this position.
    Queued(Option<u64>),
    /// A runner is generating.
    InProgress,
    /// Finished (`COMPLETED`, or any status fal may add): the result fetch tells success or error.
    Finished(String),
}

/// One client for fal's queue with the API key, and one without it for image downloads (the
/// key must never go to the image CDN).
pub(super) struct QueueClient {
    api: reqwest::Client,
    downloads: reqwest::Client,
    key: Option<ApiKey>,
    base: Url,
}

impl QueueClient {
    /// A client for the queue at `base`; `timeout` bounds each HTTP call, body included.
    pub(super) fn new(base: Url, key: Option<ApiKey>, timeout: Duration) -> Result<Self, String> {
        let build = || {
            reqwest::Client::builder()
                .timeout(timeout)
                .connect_timeout(timeout.min(Duration::from_secs(30)))
                .user_agent(concat!("inkflow/", env!("CARGO_PKG_VERSION")))
                .build()
                .map_err(|e| format!("could not set up the HTTP client: {e}"))
        };
        Ok(QueueClient { api: build()?, downloads: build()?, key, base })
    }

    /// The client for image URLs, without credentials.
    pub(super) fn downloads(&self) -> &reqwest::Client {
        &self.downloads
    }

    /// The key, to redact it from messages.
    pub(super) fn key(&self) -> Option<&ApiKey> {
        self.key.as_ref()
    }

    /// `POST {base}/{model}`: queues a request and returns fal's handle on it.
    pub(super) async fn submit(&self, model: &str, input: &Value) -> Result<Submission, CallError> {
        let url = format!("{}/{model}", self.base.as_str().trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|e| CallError::Invalid(format!("bad submit URL {url}: {e}")))?;
        let answer = self.json(self.authorized(self.api.post(url).json(input))?).await?;
        let submission: Submission = serde_json::from_value(answer.clone()).map_err(|e| {
            CallError::Invalid(format!(
                "fal accepted the request but its answer is not a queue handle ({e}): {}",
                truncate(&answer.to_string(), 200)
            ))
        })?;
        for url in [&submission.status_url, &submission.response_url, &submission.cancel_url] {
            self.queue_url(url)?;
        }
        Ok(submission)
    }

    /// `GET status_url`: 202 while pending, 200 when done, both with a JSON status.
    pub(super) async fn status(&self, status_url: &str) -> Result<QueueState, CallError> {
        let answer = self.json(self.authorized(self.api.get(self.queue_url(status_url)?))?).await?;
        let status = answer.get("status").and_then(Value::as_str).unwrap_or_default();
        Ok(match status {
            "IN_QUEUE" => QueueState::Queued(answer.get("queue_position").and_then(Value::as_u64)),
            "IN_PROGRESS" => QueueState::InProgress,
            "" => {
                return Err(CallError::Invalid(format!(
                    "fal's status answer has no status: {}",
                    truncate(&answer.to_string(), 200)
                )));
            }
            other => QueueState::Finished(other.to_owned()),
        })
    }

    /// `GET response_url`: the model's output, or fal's error for a failed run.
    pub(super) async fn result(&self, response_url: &str) -> Result<Value, CallError> {
        self.json(self.authorized(self.api.get(self.queue_url(response_url)?))?).await
    }

    /// `PUT cancel_url`: removes a queued request (fal answers even when it is too late).
    pub(super) async fn cancel(&self, cancel_url: &str) -> Result<(), CallError> {
        let request = self.authorized(self.api.put(self.queue_url(cancel_url)?))?;
        let response = request.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        if response.status().is_success() { Ok(()) } else { Err(CallError::from_response(response).await) }
    }

    /// An authenticated `GET` of the status of a request id that cannot exist, under the
    /// model's app: fal refuses a bad key with 401/403 and answers anything else (404) for a
    /// good one, without queueing any work. Returns the HTTP status.
    pub(super) async fn probe(&self, model: &str) -> Result<u16, CallError> {
        let app: Vec<&str> = model.split('/').take(2).collect();
        let url = format!(
            "{}/{}/requests/00000000-0000-0000-0000-000000000000/status",
            self.base.as_str().trim_end_matches('/'),
            app.join("/")
        );
        let url = Url::parse(&url).map_err(|e| CallError::Invalid(format!("bad probe URL {url}: {e}")))?;
        let response =
            self.authorized(self.api.get(url))?.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        Ok(response.status().as_u16())
    }

    fn authorized(&self, request: RequestBuilder) -> Result<RequestBuilder, CallError> {
        let key = self.key.as_ref().ok_or(CallError::MissingKey)?;
        let value = key.authorization().map_err(CallError::Invalid)?;
        Ok(request.header(AUTHORIZATION, value))
    }

    /// A URL fal returned, checked to be on the configured queue host before the key is sent there.
    fn queue_url(&self, url: &str) -> Result<Url, CallError> {
        let parsed = Url::parse(url)
            .map_err(|e| CallError::Invalid(format!("fal returned a bad URL {url:?}: {e}")))?;
        let same_origin = parsed.scheme() == self.base.scheme()
            && parsed.host_str() == self.base.host_str()
            && parsed.port_or_known_default() == self.base.port_or_known_default();
        if !same_origin {
            return Err(CallError::Invalid(format!(
                "fal returned {url}, which is not on the queue host {}: not sending the API key there",
                self.base.origin().ascii_serialization()
            )));
        }
        Ok(parsed)
    }

    async fn json(&self, request: RequestBuilder) -> Result<Value, CallError> {
        let response = request.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        if !response.status().is_success() {
            return Err(CallError::from_response(response).await);
        }
        let body = read_capped(response, MAX_JSON_BYTES, "fal's answer").await?;
        serde_json::from_slice(&body).map_err(|e| {
            CallError::Invalid(format!("fal's answer is not JSON ({e}): {}", describe_error_body(&body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detail_arrays_read_as_location_and_message() {
        let body = br#"{"detail":[{"loc":["body","image_size"],"msg":"Input should be a valid size","type":"value_error"},
            {"loc":["body","num_images",0],"msg":"too many"}]}"#;
        assert_eq!(
            describe_error_body(body),
            "body.image_size: Input should be a valid size; body.num_images.0: too many"
        );
        assert_eq!(describe_error_body(br#"{"detail":"Invalid key"}"#), "Invalid key");
        assert_eq!(describe_error_body(b"<html>\n Bad   Gateway</html>"), "<html> Bad Gateway</html>");
        assert_eq!(describe_error_body(b""), "");
        assert!(describe_error_body(&[b'x'; 5000]).chars().count() <= MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn only_transient_errors_are_retried() {
        let http = |status, user_timeout| CallError::Http {
            status,
            detail: String::new(),
            retry_after: None,
            user_timeout,
        };
        for status in [429, 502, 503, 504] {
            assert!(http(status, false).retryable(Call::Submit), "{status}");
        }
        for status in [400, 401, 403, 404, 422, 500] {
            assert!(!http(status, false).retryable(Call::Repeatable), "{status}");
        }
        assert!(!http(504, true).retryable(Call::Repeatable));
        let lost = CallError::Transport { detail: "timed out".into(), before_sending: false };
        assert!(lost.retryable(Call::Repeatable) && !lost.retryable(Call::Submit));
        let refused = CallError::Transport { detail: "refused".into(), before_sending: true };
        assert!(refused.retryable(Call::Submit));
    }

    #[test]
    fn returned_urls_must_be_on_the_queue_host() {
        let client =
            QueueClient::new(Url::parse("https://queue.fal.run").unwrap(), None, Duration::from_secs(1))
                .unwrap();
        assert!(client.queue_url("https://queue.fal.run/fal-ai/flux/requests/1/status").is_ok());
        assert!(client.queue_url("https://evil.example/fal-ai/flux/requests/1/status").is_err());
        assert!(client.queue_url("http://queue.fal.run/x").is_err());
    }
}
