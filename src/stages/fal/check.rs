//! `inkflow check`: is the fal setup usable? The key is present, the queue host answers and
//! accepts the key, and (on request) one small real image can be generated.

use std::time::Instant;

use serde_json::{Value, json};

use super::client::QueueClient;
use super::error::CallError;
use super::key::Environment;
use super::options::{Options, check_base_url};
use super::{FalStage, resolve_base_url};
use crate::engine::item::{Item, Prompt};
use crate::engine::media::Payload;
use crate::engine::run_context::RunContext;
use crate::engine::stage::{BuildContext, IoStage};

/// fal's platform API, where an authenticated call costs nothing.
const DEFAULT_PLATFORM_URL: &str = "https://api.fal.ai";

/// The prompt of the `--generate` test image.
const TEST_PROMPT: &str = "a simple black and white line drawing of a cat, coloring book page";

/// One line of the report: passed or not, what was checked, and what was found (never the key).
#[derive(Clone, Debug, PartialEq)]
pub struct CheckLine {
    /// Whether the check passed.
    pub ok: bool,
    /// What was checked, e.g. "API key accepted".
    pub what: String,
    /// What was found or how to fix it.
    pub detail: String,
}

impl CheckLine {
    fn new(ok: bool, what: &str, detail: impl Into<String>) -> Self {
        CheckLine { ok, what: what.to_owned(), detail: detail.into() }
    }
}

/// Checks the fal setup for a `fal` stage with `options` (use `{}` without a pipeline): key
/// present, queue host reachable (a status query for a request id that cannot exist, which
/// also tells a locked account), key accepted (the model's price from fal's platform API, which needs a valid key; nothing is
/// queued or paid), and with `generate` one 512x512 FLUX schnell image in one step
/// (about $0.003). Stops at the first failed check; each line says what to do.
pub async fn check_setup(options: &Value, env: &Environment, generate: bool) -> Vec<CheckLine> {
    let mut lines = Vec::new();
    let parsed = match Options::parse(options) {
        Ok(parsed) => parsed,
        Err(e) => {
            lines.push(CheckLine::new(
                false,
                "fal options",
                format!("{:?}: {}", e.path.join("."), e.message),
            ));
            return lines;
        }
    };
    let Some((key, source)) = env.api_key() else {
        lines.push(CheckLine::new(false, "API key present", CallError::MissingKey.to_string()));
        return lines;
    };
    lines.push(CheckLine::new(true, "API key present", format!("from {source}")));
    let base = match resolve_base_url(&parsed, env) {
        Ok(base) => base,
        Err(e) => {
            lines.push(CheckLine::new(false, "queue endpoint reachable", e));
            return lines;
        }
    };
    let timeout = parsed.request_timeout.get();
    let client = match QueueClient::new(base.clone(), Some(key.clone()), timeout) {
        Ok(client) => client,
        Err(e) => {
            lines.push(CheckLine::new(false, "queue endpoint reachable", e));
            return lines;
        }
    };
    match client.probe(&parsed.model).await {
        Err(e) if e.account_lock().is_some() => {
            lines.push(CheckLine::new(true, "queue endpoint reachable", format!("{base} answered HTTP 403")));
            lines.push(locked(&e));
            return lines;
        }
        Err(e) => {
            lines.push(CheckLine::new(
                false,
                "queue endpoint reachable",
                key.redact(&format!("{base}: {e}")),
            ));
            return lines;
        }
        Ok(status) => {
            lines.push(CheckLine::new(
                true,
                "queue endpoint reachable",
                format!("{base} answered HTTP {status}"),
            ));
        }
    }
    let accepted = prove_key(&client, env, &parsed.model).await;
    let refused = !accepted.ok;
    lines.push(accepted);
    if refused {
        return lines;
    }
    if generate {
        lines.push(generate_one(options, env).await);
    }
    lines
}

/// Proves the key with a call fal refuses without a valid one and that costs nothing: the
/// platform API's price of the model (which the queue's own answers cannot prove, since an
/// unknown request can be answered before the key is looked at).
async fn prove_key(client: &QueueClient, env: &Environment, model: &str) -> CheckLine {
    const WHAT: &str = "API key accepted";
    let platform = env.var("FAL_PLATFORM_BASE_URL").unwrap_or_else(|| DEFAULT_PLATFORM_URL.to_owned());
    let platform = match check_base_url(&platform) {
        Ok(url) => url,
        Err(e) => return CheckLine::new(false, WHAT, format!("FAL_PLATFORM_BASE_URL: {e}")),
    };
    let redact = |text: String| client.key().map_or(text.clone(), |key| key.redact(&text));
    match client.price(&platform, model).await {
        Ok(price) => CheckLine::new(true, WHAT, format!("fal's platform API accepted it and lists {price}")),
        Err(e) if e.account_lock().is_some() => locked(&e),
        Err(e) if e.is_auth() => {
            CheckLine::new(false, WHAT, redact(format!("fal refused the key ({e}): check FAL_KEY")))
        }
        Err(e) => CheckLine::new(false, WHAT, redact(format!("could not prove the key at {platform}: {e}"))),
    }
}

/// The line for an account fal says is locked: the key works, but nothing can be paid for.
fn locked(error: &CallError) -> CheckLine {
    CheckLine::new(
        false,
        "account not locked",
        format!(
            "fal says the account is locked: {}. The key is valid, but no request can run until fal lifts \
             the lock (see the billing page of fal's dashboard)",
            error.account_lock().unwrap_or_default()
        ),
    )
}

/// Generates one small image through the real stage code path.
async fn generate_one(options: &Value, env: &Environment) -> CheckLine {
    const WHAT: &str = "test image generated";
    let mut small = options.as_object().cloned().unwrap_or_default();
    // The test image is text only: schnell takes neither references nor LoRAs.
    small.remove("references");
    small.remove("loras");
    for (name, value) in [
        ("model", json!("fal-ai/flux/schnell")),
        ("image_size", json!("square")),
        ("num_inference_steps", json!(1)),
        ("num_images", json!(1)),
    ] {
        small.insert(name.into(), value);
    }
    let ctx = BuildContext {
        id: "check".into(),
        inputs: Vec::new(),
        output_dir: ".".into(),
        pipeline_file: "check".into(),
        dry_run: false,
        room_below: 1,
    };
    let stage = match FalStage::new("check", &Value::Object(small), env, &ctx) {
        Ok(stage) => stage,
        Err(e) => return CheckLine::new(false, WHAT, format!("{e:#}")),
    };
    let prompt =
        Prompt { image_prompt: TEST_PROMPT.into(), description: "check".into(), ..Prompt::default() };
    let mut item = Item::new(0, prompt);
    let started = Instant::now();
    let generated = stage.process(&mut item, Payload::Prompt, &RunContext::default()).await;
    match generated.map(Payload::decoded) {
        Ok(Ok(Payload::Image(raster))) => {
            let cost = item.facts.get("cost_usd").map_or_else(|| "unknown cost".into(), |c| format!("${c}"));
            let request = item.facts.get("request_id").and_then(Value::as_str).unwrap_or("?");
            CheckLine::new(
                true,
                WHAT,
                format!(
                    "{}x{} in {:.1}s (request {request}, {cost})",
                    raster.width,
                    raster.height,
                    started.elapsed().as_secs_f64()
                ),
            )
        }
        Ok(Ok(other)) => CheckLine::new(false, WHAT, format!("unexpected {} payload", other.media())),
        Ok(Err(e)) => CheckLine::new(false, WHAT, e),
        Err(e) => CheckLine::new(false, WHAT, e.to_string()),
    }
}
