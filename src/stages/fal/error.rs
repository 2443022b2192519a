//! What one HTTP call to fal (or to an image URL) can end with, read from the answer: the
//! status, fal's own words (`detail`, its `type`s, the request id) and its hints. The leaf of
//! the fal module: the client, the downloads and the retry policy all read it, and it reads
//! none of them.

use std::fmt;
use std::time::Duration;

use futures::StreamExt;
use reqwest::Response;
use reqwest::header::{HeaderMap, RETRY_AFTER};
use serde_json::Value;

/// The most of an error body kept for a message.
const MAX_DETAIL_CHARS: usize = 600;

/// Header fal sets on a 504 to say whether the request's own start timeout expired (`user`),
/// which a retry cannot fix, or the platform timed out.
const TIMEOUT_TYPE_HEADER: &str = "x-fal-request-timeout-type";

/// Header carrying the id of the request an answer is about: present when fal's application
/// (not a proxy in front of it) answered.
const REQUEST_ID_HEADER: &str = "x-fal-request-id";

/// What fal's 403 for a locked account says (`User is locked. Reason: ...`), lower-cased.
const LOCKED_WORDS: &str = "user is locked";

/// Header by which fal says outright whether repeating the call can help.
const RETRYABLE_HEADER: &str = "x-fal-retryable";

/// An error status, with what the answer says about who sent it and why.
#[derive(Clone, Debug, Default)]
pub(super) struct HttpError {
    /// The status code.
    pub status: u16,
    /// fal's `detail` (string or validation array) or the body's text.
    pub detail: String,
    /// The `type` of each `detail[]` entry, such as `content_policy_violation`.
    pub error_types: Vec<String>,
    /// `x-fal-request-id`: the application answered about this request.
    pub request_id: Option<String>,
    /// The body is fal's JSON error (`{"detail": ...}`), not a proxy's HTML page.
    pub fal_json: bool,
    /// The server's `Retry-After`, in seconds form.
    pub retry_after: Option<Duration>,
    /// A 504 marked `X-Fal-Request-Timeout-Type: user`: the request's start timeout expired.
    pub user_timeout: bool,
    /// `X-Fal-Retryable`, when fal sent it.
    pub retryable_hint: Option<bool>,
}

impl HttpError {
    /// fal's application answered (it names the request, or speaks fal's JSON), as opposed
    /// to an ingress proxy that may never have passed the call on.
    pub(super) fn answered_by_fal(&self) -> bool {
        self.request_id.is_some() || self.fal_json
    }
}

/// What one HTTP call ended with, when not success.
#[derive(Debug)]
pub(super) enum CallError {
    /// The server answered with an error status.
    Http(HttpError),
    /// No answer: timeout, refused or dropped connection.
    Transport {
        /// What happened.
        detail: String,
        /// The connection was never made, so the server cannot have seen the request.
        before_sending: bool,
    },
    /// An answer that cannot be used (a URL on a foreign host, a body too large, an answer of
    /// the wrong shape).
    Invalid(String),
    /// An answer that arrived but cannot be read (JSON cut short or garbled): a glitch on the
    /// way, which a free call repeats like a dropped connection.
    Malformed(String),
    /// No API key was configured.
    MissingKey,
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Http(e) => {
                write!(f, "HTTP {}: {}", e.status, e.detail)?;
                if !e.error_types.is_empty() {
                    write!(f, " [{}]", e.error_types.join(", "))?;
                }
                if e.user_timeout {
                    f.write_str(" (the request's start timeout expired at fal)")?;
                }
                if let Some(id) = &e.request_id {
                    write!(f, " (fal request {id})")?;
                }
                Ok(())
            }
            CallError::Transport { detail, .. } | CallError::Invalid(detail) | CallError::Malformed(detail) => {
                f.write_str(detail)
            }
            CallError::MissingKey => f.write_str(
                "no fal API key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET) in the environment or in .env",
            ),
        }
    }
}

impl CallError {
    /// How long the server asked to wait.
    pub(super) fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::Http(e) => e.retry_after,
            _ => None,
        }
    }

    /// The key is missing or was refused: nothing else in the batch can succeed.
    pub(super) fn is_auth(&self) -> bool {
        matches!(self, CallError::Http(HttpError { status: 401 | 403, .. }) | CallError::MissingKey)
    }

    /// fal's reason when it answered that the account is locked (403 `User is locked. Reason:
    /// Exhausted balance`, or `Admin lock`): the key is fine, the account may not spend.
    pub(super) fn account_lock(&self) -> Option<&str> {
        match self {
            CallError::Http(e) if e.status == 403 && e.detail.to_ascii_lowercase().contains(LOCKED_WORDS) => {
                Some(&e.detail)
            }
            _ => None,
        }
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
        let parsed = serde_json::from_slice::<Value>(&body).ok();
        let mut detail = describe_error_body(&body);
        if detail.is_empty() {
            detail = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("no detail")
                .to_owned();
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
        CallError::Http(HttpError {
            status,
            detail,
            error_types: parsed.as_ref().map(error_types).unwrap_or_default(),
            request_id: header(REQUEST_ID_HEADER).filter(|id| !id.is_empty()).map(str::to_owned),
            fal_json: parsed.as_ref().is_some_and(|v| v.get("detail").is_some()),
            retry_after: retry_after(&headers),
            user_timeout: status == 504
                && header(TIMEOUT_TYPE_HEADER).is_some_and(|v| v.eq_ignore_ascii_case("user")),
            retryable_hint: header(RETRYABLE_HEADER).and_then(|v| match v.to_ascii_lowercase().as_str() {
                "true" | "1" => Some(true),
                "false" | "0" => Some(false),
                _ => None,
            }),
        })
    }
}

/// Reads a body of at most `max_bytes`, refusing a larger `Content-Length` up front and
/// stopping as soon as the streamed bytes pass the cap (for bodies without a length).
pub(super) async fn read_capped(
    response: Response,
    max_bytes: u64,
    what: &str,
) -> Result<Vec<u8>, CallError> {
    let too_large =
        |size: &str| CallError::Invalid(format!("{what} is {size} bytes, over the limit of {max_bytes}"));
    if let Some(length) = response.content_length()
        && length > max_bytes
    {
        return Err(too_large(&length.to_string()));
    }
    let capacity = response.content_length().unwrap_or(64 * 1024).min(max_bytes);
    let mut body = Vec::with_capacity(usize::try_from(capacity).unwrap_or(0));
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| CallError::from_reqwest(&e))?;
        if (body.len() + chunk.len()) as u64 > max_bytes {
            return Err(too_large(&format!("more than {max_bytes}")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// `Retry-After` in its seconds form (fal's); an HTTP date falls back to the backoff.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds: f64 = headers.get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds.min(3600.0)))
}

/// The `type` of every entry of fal's `detail` array.
fn error_types(body: &Value) -> Vec<String> {
    let entries = body.get("detail").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    entries.iter().filter_map(|e| e.get("type").and_then(Value::as_str)).map(str::to_owned).collect()
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

/// `text` cut to `max_chars` characters, marked with an ellipsis when cut.
pub(super) fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
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
        assert_eq!(error_types(&serde_json::from_slice(body).unwrap()), ["value_error"]);
        assert_eq!(describe_error_body(br#"{"detail":"Invalid key"}"#), "Invalid key");
        assert_eq!(describe_error_body(b"<html>\n Bad   Gateway</html>"), "<html> Bad Gateway</html>");
        assert_eq!(describe_error_body(b""), "");
        assert!(describe_error_body(&[b'x'; 5000]).chars().count() <= MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn messages_carry_the_types_and_the_request_id() {
        let error = CallError::Http(HttpError {
            status: 422,
            detail: "prompt: flagged".into(),
            error_types: vec!["content_policy_violation".into()],
            request_id: Some("r-1".into()),
            ..HttpError::default()
        });
        assert_eq!(
            error.to_string(),
            "HTTP 422: prompt: flagged [content_policy_violation] (fal request r-1)"
        );
    }
}
