//! `inkflow review`: a small HTTP server on 127.0.0.1 for deciding about a batch where its
//! pages are seen. Every request needs the token of the printed URL ([`guard`]); it serves
//! only the output folder's pages and metadata ([`files`]); decisions go to the journal
//! ([`Journal::review`]) under the output lock, so none lands while a run writes the batch;
//! and it runs the pending decisions as `inkflow run` does, because it is `inkflow run`
//! ([`runner`]).

pub mod files;
pub mod guard;
pub mod page;
pub mod runner;

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt as _, Full, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::header::{CACHE_CONTROL, CONTENT_SECURITY_POLICY, CONTENT_TYPE, SET_COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{Mutex, broadcast};

use self::guard::{Guard, Refusal, TOKEN_COOKIE};
use crate::engine::journal::Journal;
use crate::engine::output_lock::{LockError, OutputLock};
use crate::engine::review::ReviewAction;

/// A response body: a whole answer or a stream of server-sent events.
pub type Body = BoxBody<Bytes, Infallible>;

/// Largest action request read: a decision is a key and at most a prompt.
const MAX_ACTION_BYTES: usize = 64 * 1024;

/// The review server of one output folder.
pub struct ReviewServer {
    /// The output folder, canonical: files are served from inside it only.
    root: PathBuf,
    guard: Guard,
    /// One taker of the output lock at a time in this process: each decision takes it for its
    /// transaction and each look at whether a run holds it takes it for an instant; the lock is
    /// per open file, so two of ours at once would see each other as a run.
    deciding: Arc<Mutex<()>>,
    runner: runner::Runner,
}

impl ReviewServer {
    /// A server for `output_dir` listening on `port`; `pipeline` and `inkflow` are what a
    /// run from the page runs (`inkflow run PIPELINE --output OUTPUT`).
    pub fn new(
        output_dir: &Path,
        port: u16,
        pipeline: Option<PathBuf>,
        inkflow: PathBuf,
    ) -> anyhow::Result<Self> {
        let root = output_dir
            .canonicalize()
            .map_err(|e| anyhow::anyhow!("cannot open the output folder {}: {e}", output_dir.display()))?;
        if !root.join(crate::engine::output_path::JOURNAL_FILE).is_file() {
            anyhow::bail!("{} has no journal: was a batch run there?", output_dir.display());
        }
        let pipeline = pipeline.or_else(|| runner::pipeline_of(&root));
        Ok(ReviewServer {
            runner: runner::Runner::new(root.clone(), pipeline, inkflow),
            root,
            guard: Guard::new(port)?,
            deciding: Arc::default(),
        })
    }

    /// The URL to open, with the token.
    pub fn url(&self, port: u16) -> String {
        format!("http://127.0.0.1:{port}/?token={}", self.guard.token())
    }

    /// Answers connections on `listener` until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener) -> anyhow::Result<()> {
        loop {
            let (stream, _) = listener.accept().await?;
            let server = self.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let server = server.clone();
                    async move { Ok::<_, Infallible>(server.handle(request).await) }
                });
                let io = hyper_util::rt::TokioIo::new(stream);
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, service).await;
            });
        }
    }

    /// One request: checked, then routed.
    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let mutating = request.method() != Method::GET && request.method() != Method::HEAD;
        let query = request.uri().query().map(str::to_owned);
        match self.guard.check(request.headers(), query.as_deref(), mutating) {
            Ok(()) => {}
            Err(Refusal::Token) => {
                return error(
                    StatusCode::FORBIDDEN,
                    "missing or wrong token: open the URL `inkflow review` printed",
                );
            }
            Err(Refusal::Origin(why)) => return error(StatusCode::FORBIDDEN, &format!("refused: {why}")),
        }
        let path = request.uri().path().to_owned();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/") => self.page(query.is_some()).await,
            (Method::GET, "/api/events") => self.events(),
            (Method::GET, "/api/plan") => match self.runner.plan().await {
                Ok(plan) => answer(StatusCode::OK, &plan),
                Err(e) => error(StatusCode::CONFLICT, &format!("{e:#}")),
            },
            (Method::POST, "/api/decide") => match read_json(request).await {
                Ok(body) => self.decide(&body).await,
                Err(response) => response,
            },
            (Method::POST, "/api/run") => match read_json(request).await {
                Ok(body) => {
                    let confirmed = body.get("confirmed_cost_usd").and_then(Value::as_f64);
                    match self.runner.start(confirmed).await {
                        Ok(()) => answer(StatusCode::ACCEPTED, &json!({"started": true})),
                        Err(e) => error(StatusCode::CONFLICT, &format!("{e:#}")),
                    }
                }
                Err(response) => response,
            },
            (Method::GET, file) if file.starts_with("/files/") => self.file(&file["/files/".len()..]),
            _ => error(StatusCode::NOT_FOUND, "no such page"),
        }
    }

    async fn page(&self, from_printed_url: bool) -> Response<Body> {
        let root = self.root.clone();
        let built = tokio::task::spawn_blocking(move || -> anyhow::Result<String> {
            let mut cards = Vec::new();
            crate::report::each_card(&root, |card| cards.push(card.clone()))?;
            let decisions = Journal::review_states(&root)?;
            let difficulty = crate::report::difficulty(&root);
            Ok(page::render(&root.display().to_string(), &cards, &decisions, difficulty.as_deref()))
        })
        .await;
        let html = match built {
            Ok(Ok(html)) => html,
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{e:#}")),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let mut response = Response::builder()
            .header(CONTENT_TYPE, "text/html; charset=utf-8")
            .header(CACHE_CONTROL, "no-store")
            // The page's own script and styles, its own images; nothing from elsewhere.
            .header(
                CONTENT_SECURITY_POLICY,
                "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'; \
                 connect-src 'self'; frame-ancestors 'none'",
            );
        if from_printed_url {
            response = response.header(
                SET_COOKIE,
                format!("{TOKEN_COOKIE}={}; HttpOnly; SameSite=Strict; Path=/", self.guard.token()),
            );
        }
        response.body(full(html)).unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
    }

    fn file(&self, requested: &str) -> Response<Body> {
        let Some((path, kind)) = files::resolve(&self.root, requested) else {
            return error(StatusCode::NOT_FOUND, "no such file in the output folder");
        };
        match std::fs::read(&path) {
            Ok(bytes) => Response::builder()
                .header(CONTENT_TYPE, kind)
                .header("x-content-type-options", "nosniff")
                .header(CACHE_CONTROL, "no-cache")
                .body(full(bytes))
                .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response")),
            Err(_) => error(StatusCode::NOT_FOUND, "no such file in the output folder"),
        }
    }

    /// Records one decision, under the output lock: refused with a message, changing nothing,
    /// while a run holds the folder.
    async fn decide(&self, body: &Value) -> Response<Body> {
        let (key, action) = match parse_action(body) {
            Ok(parsed) => parsed,
            Err(why) => return error(StatusCode::BAD_REQUEST, &why),
        };
        let expected = body.get("expected").map(Value::as_i64);
        let _turn = self.deciding.lock().await;
        let root = self.root.clone();
        let result = tokio::task::spawn_blocking(move || {
            let _lock = OutputLock::acquire(&root)?;
            Journal::review(&root, &key, &action, expected)
        })
        .await;
        match result {
            Ok(Ok(recorded)) => answer(
                StatusCode::OK,
                &json!({
                    "key": recorded.key, "last": recorded.last, "said": page::describe(&recorded.state),
                    "undecided": recorded.state.is_undecided(), "state": recorded.state,
                }),
            ),
            Ok(Err(e)) if e.downcast_ref::<LockError>().is_some() => error(
                StatusCode::CONFLICT,
                &format!("{e}: the page is read-only until that run ends; nothing was changed"),
            ),
            Ok(Err(e)) => error(StatusCode::BAD_REQUEST, &format!("{e:#}")),
            Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        }
    }

    /// Server-sent events: whether a run holds the folder (on connecting and on each change)
    /// and the lines of a run started from the page.
    fn events(&self) -> Response<Body> {
        let root = self.root.clone();
        let lines = self.runner.subscribe();
        let turn = self.deciding.clone();
        let state = (root, turn, lines, None::<Value>, tokio::time::interval(Duration::from_millis(500)));
        let stream =
            futures::stream::unfold(state, |(root, turn, mut lines, mut shown, mut tick)| async move {
                loop {
                    tokio::select! {
                        line = lines.recv() => match line {
                            Ok(line) => {
                                let event = sse("run", &Value::String(line));
                                return Some((Ok(Frame::data(event)), (root, turn, lines, shown, tick)));
                            }
                            Err(broadcast::error::RecvError::Lagged(_)) => continue,
                            Err(broadcast::error::RecvError::Closed) => return None,
                        },
                        _ = tick.tick() => {
                            let now = {
                                let _turn = turn.lock().await;
                                lock_state(&root)
                            };
                            if shown.as_ref() != Some(&now) {
                                let event = sse("lock", &now);
                                shown = Some(now);
                                return Some((Ok(Frame::data(event)), (root, turn, lines, shown, tick)));
                            }
                        }
                    }
                }
            });
        Response::builder()
            .header(CONTENT_TYPE, "text/event-stream")
            .header(CACHE_CONTROL, "no-store")
            .body(StreamBody::new(stream).boxed())
            .unwrap_or_else(|_| error(StatusCode::INTERNAL_SERVER_ERROR, "response"))
    }
}

/// Whether a run holds the output folder now, and who. Asking takes the lock for an instant
/// when it is free (the operating system has no other way to ask); a run starting at that
/// instant waits for it ([`OutputLock::acquire`]).
pub fn lock_state(root: &Path) -> Value {
    match OutputLock::try_acquire(root) {
        Ok(_free) => json!({"busy": false}),
        Err(e @ LockError::Busy { .. }) => json!({"busy": true, "why": e.to_string()}),
        Err(e) => json!({"busy": true, "why": e.to_string()}),
    }
}

/// `{"key": K, "action": "approve" | "reject" | "pick" | "edit" | "undo", "value": N | TEXT}`.
fn parse_action(body: &Value) -> Result<(String, ReviewAction), String> {
    let key = body.get("key").and_then(Value::as_str).ok_or("the decision names no page (\"key\")")?;
    let value = body.get("value");
    let action = match body.get("action").and_then(Value::as_str) {
        Some("approve") => ReviewAction::Approve,
        Some("reject") => ReviewAction::Reject,
        Some("undo") => ReviewAction::Undo,
        Some("pick") => ReviewAction::Pick(
            value
                .and_then(Value::as_u64)
                .and_then(|n| u32::try_from(n).ok())
                .ok_or("pick needs a candidate number")?,
        ),
        Some("edit") => {
            ReviewAction::Edit(value.and_then(Value::as_str).ok_or("edit needs the new prompt")?.to_owned())
        }
        other => return Err(format!("unknown action {other:?}: approve, reject, pick, edit or undo")),
    };
    Ok((key.to_owned(), action))
}

async fn read_json(request: Request<Incoming>) -> Result<Value, Response<Body>> {
    let json_body = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|t| t.to_str().ok())
        .is_some_and(|t| t.starts_with("application/json"));
    // A JSON body cannot be sent across sites without the browser asking first (CORS).
    if !json_body {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "actions are JSON (content-type: application/json)",
        ));
    }
    let bytes = Limited::new(request.into_body(), MAX_ACTION_BYTES)
        .collect()
        .await
        .map_err(|_| error(StatusCode::PAYLOAD_TOO_LARGE, "the request is too large"))?
        .to_bytes();
    serde_json::from_slice(&bytes)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("the request is not JSON: {e}")))
}

fn sse(event: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {event}\ndata: {data}\n\n"))
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

fn answer(status: StatusCode, value: &impl serde::Serialize) -> Response<Body> {
    Response::builder()
        .status(status)
        .header(CONTENT_TYPE, "application/json")
        .header(CACHE_CONTROL, "no-store")
        .body(full(serde_json::to_vec(value).unwrap_or_default()))
        .unwrap_or_else(|_| Response::new(full("")))
}

fn error(status: StatusCode, message: &str) -> Response<Body> {
    answer(status, &json!({"error": message}))
}
