//! fal's queue protocol: submit a request, poll its status, fetch its result, cancel it. Each
//! method makes one HTTP call; [`super::retry`] decides about repeating it. The status, result
//! and cancel URLs are the ones fal returned (never built here), and the API key is only sent
//! to the queue host the stage was configured with.

use std::time::Duration;

use reqwest::header::AUTHORIZATION;
use reqwest::{RequestBuilder, Url};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{CallError, describe_error_body, read_capped, truncate};
use super::key::ApiKey;

/// The largest JSON answer read from the queue (results hold URLs, not pixels, unless the
/// request asked for `sync_mode`: see [`super::download::OutputCaps`]).
pub(super) const MAX_JSON_BYTES: u64 = 4 * 1024 * 1024;

/// Header asking fal to give up on a request no runner has started within so many seconds
/// (what fal-js calls `startTimeout`).
const START_TIMEOUT_HEADER: &str = "x-fal-request-timeout";

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

/// What fal said to a cancel: its documented answers `OK`, `CANCELLATION_REQUESTED`,
/// `ALREADY_COMPLETED` and `NOT_FOUND`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum CancelAnswer {
    /// `OK`: the request is dropped before any runner took it: nothing is charged.
    Cancelled,
    /// `CANCELLATION_REQUESTED`: a runner has it and was only signalled to stop. It may still
    /// complete and be charged, so it stays open: polled (for free) and collected if it does.
    Requested,
    /// `ALREADY_COMPLETED`: it has finished, so it is charged and can be collected.
    TooLate,
    /// `NOT_FOUND`: fal does not know the request (any more).
    NotFound,
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

/// One client for fal's queue with the API key, and one without it for image downloads and
/// uploads (the key must never go to the image CDN or a storage host).
pub(super) struct QueueClient {
    api: reqwest::Client,
    downloads: reqwest::Client,
    key: Option<ApiKey>,
    base: Url,
}

impl QueueClient {
    /// A client for the queue at `base`; `timeout` bounds each HTTP call, body included.
    pub(super) fn new(base: Url, key: Option<ApiKey>, timeout: Duration) -> Result<Self, String> {
        crate::tls::install_crypto_provider();
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

    /// `POST {base}/{model}`: queues a request and returns fal's handle on it. With
    /// `start_timeout`, fal gives up on the request (a 504 of type `user`, not charged) when no
    /// runner has started it by then.
    pub(super) async fn submit(
        &self,
        model: &str,
        input: &Value,
        start_timeout: Option<Duration>,
    ) -> Result<Submission, CallError> {
        let url = format!("{}/{model}", self.base.as_str().trim_end_matches('/'));
        let url = Url::parse(&url).map_err(|e| CallError::Invalid(format!("bad submit URL {url}: {e}")))?;
        let mut request = self.api.post(url).json(input);
        if let Some(timeout) = start_timeout {
            request = request.header(START_TIMEOUT_HEADER, timeout.as_secs().max(1).to_string());
        }
        let answer = self.json(self.authorized(request)?, MAX_JSON_BYTES).await?;
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
        let request = self.authorized(self.api.get(self.queue_url(status_url)?))?;
        let answer = self.json(request, MAX_JSON_BYTES).await?;
        let status = answer.get("status").and_then(Value::as_str).unwrap_or_default();
        Ok(match status {
            "IN_QUEUE" => QueueState::Queued(answer.get("queue_position").and_then(Value::as_u64)),
            "IN_PROGRESS" => QueueState::InProgress,
            "" => {
                return Err(CallError::Malformed(format!(
                    "fal's status answer has no status: {}",
                    truncate(&answer.to_string(), 200)
                )));
            }
            other => QueueState::Finished(other.to_owned()),
        })
    }

    /// `GET response_url`: the model's output (at most `max_bytes` of JSON), or fal's error
    /// for a failed run.
    pub(super) async fn result(&self, response_url: &str, max_bytes: u64) -> Result<Value, CallError> {
        self.json(self.authorized(self.api.get(self.queue_url(response_url)?))?, max_bytes).await
    }

    /// `PUT cancel_url`: asks fal to drop a request. fal answers 202 with `OK` (dropped from
    /// the queue) or `CANCELLATION_REQUESTED` (a runner has it), 400 with `ALREADY_COMPLETED`
    /// and 404 with `NOT_FOUND`; the `status` it names decides, the HTTP status only without one.
    pub(super) async fn cancel(&self, cancel_url: &str) -> Result<CancelAnswer, CallError> {
        let request = self.authorized(self.api.put(self.queue_url(cancel_url)?))?;
        let response = request.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        if response.status().is_success() {
            let body = read_capped(response, MAX_JSON_BYTES, "fal's answer to the cancel").await?;
            let answer = serde_json::from_slice::<Value>(&body).map_err(|e| {
                CallError::Malformed(format!(
                    "fal's answer to the cancel is not JSON ({e}): {}",
                    describe_error_body(&body)
                ))
            })?;
            return match answer.get("status").and_then(Value::as_str) {
                Some("CANCELLATION_REQUESTED") => Ok(CancelAnswer::Requested),
                Some("ALREADY_COMPLETED") => Ok(CancelAnswer::TooLate),
                Some("NOT_FOUND") => Ok(CancelAnswer::NotFound),
                Some("OK") => Ok(CancelAnswer::Cancelled),
                // An answer of another shape cannot prove the request was dropped: keep it open.
                _ => Ok(CancelAnswer::Requested),
            };
        }
        match CallError::from_response(response).await {
            CallError::Http(e) if e.status == 400 => Ok(CancelAnswer::TooLate),
            CallError::Http(e) if e.status == 404 => Ok(CancelAnswer::NotFound),
            other => Err(other),
        }
    }

    /// A `GET` of the status of a request id that cannot exist, under the model's app: proves
    /// the queue host answers, without queueing any work. Returns the HTTP status, or fal's
    /// error when it says the account is locked.
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
        let status = response.status().as_u16();
        if status == 403 {
            let error = CallError::from_response(response).await;
            if error.account_lock().is_some() {
                return Err(error);
            }
        }
        Ok(status)
    }

    /// `GET {platform}/v1/models/pricing?endpoint_id=MODEL`: fal's price for a model, which
    /// needs a valid key and costs nothing. Returns it in words, e.g. `$0.025 per image`.
    pub(super) async fn price(&self, platform: &Url, model: &str) -> Result<String, CallError> {
        let url = format!("{}/v1/models/pricing", platform.as_str().trim_end_matches('/'));
        let url = Url::parse_with_params(&url, [("endpoint_id", model)])
            .map_err(|e| CallError::Invalid(format!("bad pricing URL {url}: {e}")))?;
        let answer = self.json(self.authorized(self.api.get(url))?, MAX_JSON_BYTES).await?;
        let price = answer.get("prices").and_then(Value::as_array).and_then(|p| p.first());
        Ok(match price {
            Some(p) => format!(
                "${} per {} for {model}",
                p.get("unit_price").and_then(Value::as_f64).unwrap_or(f64::NAN),
                p.get("unit").and_then(Value::as_str).unwrap_or("unit")
            ),
            None => format!("no price for {model}"),
        })
    }

    /// `POST {rest}/storage/upload/initiate`: asks fal's storage where to put a file of
    /// `content_type` named `file_name`. Answers the URL to PUT the bytes to and the URL the
    /// file will be read from (what fal's own clients do; the key goes to fal's REST host only).
    pub(super) async fn initiate_upload(
        &self,
        rest: &Url,
        content_type: &str,
        file_name: &str,
    ) -> Result<(Url, String), CallError> {
        let url = format!("{}/storage/upload/initiate", rest.as_str().trim_end_matches('/'));
        let url = Url::parse_with_params(&url, [("storage_type", "fal-cdn-v3")])
            .map_err(|e| CallError::Invalid(format!("bad upload URL {url}: {e}")))?;
        let input = serde_json::json!({"content_type": content_type, "file_name": file_name});
        let answer = self.json(self.authorized(self.api.post(url).json(&input))?, MAX_JSON_BYTES).await?;
        let field = |name: &str| answer.get(name).and_then(Value::as_str).map(str::to_owned);
        let (Some(upload_url), Some(file_url)) = (field("upload_url"), field("file_url")) else {
            return Err(CallError::Malformed(format!(
                "fal's storage answered no upload_url and file_url: {}",
                truncate(&answer.to_string(), 200)
            )));
        };
        let upload_url = Url::parse(&upload_url)
            .map_err(|e| CallError::Malformed(format!("fal's storage answered a bad upload_url: {e}")))?;
        Ok((upload_url, file_url))
    }

    /// `PUT upload_url` with the file's bytes. The upload URL is signed, and may be on a
    /// storage host that is not fal's: it goes out without the key, as fal's clients send it.
    pub(super) async fn put_upload(
        &self,
        upload_url: &Url,
        content_type: &str,
        bytes: Vec<u8>,
    ) -> Result<(), CallError> {
        let request = self
            .downloads
            .put(upload_url.clone())
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .body(bytes);
        let response = request.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        if response.status().is_success() { Ok(()) } else { Err(CallError::from_response(response).await) }
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

    async fn json(&self, request: RequestBuilder, max_bytes: u64) -> Result<Value, CallError> {
        let response = request.send().await.map_err(|e| CallError::from_reqwest(&e))?;
        if !response.status().is_success() {
            return Err(CallError::from_response(response).await);
        }
        let body = read_capped(response, max_bytes, "fal's answer").await?;
        serde_json::from_slice(&body).map_err(|e| {
            CallError::Malformed(format!("fal's answer is not JSON ({e}): {}", describe_error_body(&body)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
