//! An emulation of fal.ai's queue API for whole-batch tests, failure modes included. Every
//! accepted submission gets a new request id and URLs under the app (`fal-ai/flux`); status
//! polls answer COMPLETED (after an optional delay); results point at PNGs on the same server,
//! drawn from the prompt and the seed, so the image is realistic line art, the same prompt and
//! seed always give the same bytes, and another seed another drawing (no seed draws as seed 1
//! and reports 42, as fal reports the seed it picked). `num_images` gives that many images,
//! `sync_mode` gives `data:` URIs.
//!
//! Every model of inkflow's catalogue (`src/stages/fal/catalogue/models.json`) behaves per its
//! entry, as fal's apps do: unknown inputs are ignored, an out-of-range value is accepted at
//! submit and refused with a 422 after COMPLETED (billed, as fal's FAQ allows), aspect-ratio
//! models answer the ratio's size, `num_images` stops at the model's maximum, and each request
//! is billed in the model's unit ([`Ledger::billed_usd`]). `/v1/models/pricing` is fal's
//! platform pricing API. `/storage/upload/initiate` is fal's storage upload: it answers an
//! `upload_url` on a storage host of its own ([`FalEmulator::storage`], as fal's signed URLs
//! point at a bucket) and a `file_url`; a model given a `file_url` whose bytes were never PUT
//! fails with a 422, as fal cannot fetch it.
//!
//! A prompt asks for trouble by containing one of the markers below. Each trouble strikes the
//! first accepted request of its prompt only (the ingress refusal: the first POST), so a
//! resubmission behaves, as it would on the real service once a problem has passed.
//! The real service's behaviour is described in `../shared/fal.md` beside the checkout.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use inkflow::imaging::pattern::Defect;
use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const APP: &str = "/fal-ai/flux";
/// fal's safety checker flags the image of a prompt containing this.
pub const FLAGGED: &str = "[flag me]";
/// fal accepts (and charges) the submission, but a proxy answers 504 with no request id.
pub const ACCEPTED_THEN_504: &str = "[accepted then 504]";
/// The first POST meets a proxy's HTML 502 page: fal never saw it.
pub const INGRESS_502: &str = "[ingress 502]";
/// The request completes; its result is fal's 422 with `detail[].type` content_policy_violation.
pub const POLICY_422: &str = "[policy 422]";
/// The first fetch of the result answers 500.
pub const RESULT_500_ONCE: &str = "[result 500 once]";
/// The first download of the image answers 404, as a CDN lagging behind COMPLETED does.
pub const CDN_404_ONCE: &str = "[cdn 404 once]";
/// The request stays IN_QUEUE for ever.
pub const NEVER_COMPLETES: &str = "[never completes]";
/// A runner has the request (IN_PROGRESS, so it is paid for) until the test sets
/// [`Ledger::released`]; then it completes.
pub const HELD_RUNNING: &str = "[held running]";
/// The first image of the request is a spoiled page (a solid black blob), as models sometimes
/// draw; another seed (the next request) draws it well.
pub const SPOILED_FIRST: &str = "[spoiled first]";
/// Every image of every request of the prompt is a spoiled page: no seed draws it well.
pub const SPOILED_ALWAYS: &str = "[spoiled always]";

/// The model answers a vector drawing (SVG, as Recraft's vector styles do).
pub const ANSWERS_SVG: &str = "[answers svg]";
/// The model answers WebP.
pub const ANSWERS_WEBP: &str = "[answers webp]";
/// The CDN serves an HTML page instead of the first request's image: paid for, not an image.
pub const NOT_AN_IMAGE: &str = "[not an image]";
/// The request waits in the queue until a cancel arrives, just as a runner takes it: fal
/// answers the cancel CANCELLATION_REQUESTED, and the request then completes (and is billed).
pub const RUNS_AFTER_CANCEL: &str = "[runs after cancel]";
/// fal accepts (and charges) the first submission, but answers it with a 503 of its own
/// marked `X-Fal-Retryable: true`.
pub const SUBMIT_503_RETRYABLE: &str = "[submit 503 retryable]";
/// The first status poll is a 200 whose JSON body is cut short.
pub const STATUS_CUT_ONCE: &str = "[status cut once]";

/// The API key fal refuses (401 to every call made with it).
pub const REFUSED_KEY: &str = "refused-key";
/// The key of a locked account: fal's queue answers 403 "User is locked" to every call made
/// with it, while the free platform API still answers.
pub const LOCKED_KEY: &str = "locked-key";
/// fal's reason for [`LOCKED_KEY`].
pub const LOCKED_REASON: &str = "User is locked. Reason: Exhausted balance";

/// Where the test can see what the emulator was asked.
#[derive(Default)]
pub struct Ledger {
    /// Accepted submissions per prompt.
    pub submissions: HashMap<String, u32>,
    /// The prompt of each request id.
    pub prompts: HashMap<String, String>,
    /// The input of each request id, as submitted.
    pub bodies: HashMap<String, Value>,
    /// The `x-fal-request-timeout` header of each request id, when sent.
    pub start_timeouts: HashMap<String, String>,
    /// Request ids that are the first accepted request of their prompt (trouble strikes those).
    pub first_of_prompt: HashSet<String>,
    /// Submissions refused at the ingress per prompt (never accepted, never charged).
    pub refused: HashMap<String, u32>,
    /// Image downloads started.
    pub downloads: u32,
    /// Request ids whose status was asked for: inkflow polls a request only once it has
    /// journaled it.
    pub polled: HashSet<String>,
    /// Status polls, result fetches, image downloads and cancels per request id.
    pub polls: HashMap<String, u32>,
    pub result_fetches: HashMap<String, u32>,
    pub image_fetches: HashMap<String, u32>,
    pub cancels: HashMap<String, u32>,
    /// Lets every [`HELD_RUNNING`] request complete.
    pub released: bool,
    /// The model (endpoint id) of each request id.
    pub models: HashMap<String, String>,
    /// What each request was billed, by request id, in the model's unit.
    pub bills: HashMap<String, f64>,
    /// Unit prices the pricing API answers (and bills at) instead of the catalogue's, by model.
    pub live_prices: HashMap<String, f64>,
    /// Calls to the pricing API.
    pub pricing_calls: u32,
    /// Requests accepted whose result nobody fetched (or cancelled) yet, and the most there
    /// ever were at once: what an account's concurrency limit bounds.
    pub in_flight: HashSet<String>,
    pub peak_in_flight: usize,
    /// Storage upload initiate calls.
    pub upload_initiates: u32,
    /// Files PUT to the storage host, in order.
    pub uploaded: Vec<Uploaded>,
}

/// One file PUT to the storage host.
#[derive(Clone, Debug)]
pub struct Uploaded {
    /// Where models read it from.
    pub file_url: String,
    pub bytes: Vec<u8>,
    pub content_type: String,
    /// The `Authorization` header the PUT carried (fal's signed URLs need none).
    pub authorization: Option<String>,
}

/// The catalogue the emulated models follow: the one inkflow ships.
const CATALOGUE: &str = include_str!("../../../src/stages/fal/catalogue/models.json");

/// Model `id`'s catalogue entry.
fn model_entry(id: &str) -> Option<Value> {
    let catalogue: Value = serde_json::from_str(CATALOGUE).ok()?;
    catalogue["models"].as_array()?.iter().find(|m| m["id"] == id).cloned()
}

/// fal's 422 for the first input of `body` out of `model`'s schema: range, type or choices.
fn refusal(model: &Value, body: &Value) -> Option<Value> {
    let inputs = model["inputs"].as_object()?;
    body.as_object()?.iter().find_map(|(name, value)| {
        let schema = inputs.get(name)?;
        let number = value.as_f64();
        let (kind, msg) =
            if let Some(max) = schema["max"].as_f64().filter(|max| number.is_some_and(|n| n > *max)) {
                ("less_than_equal", format!("Input should be less than or equal to {max}"))
            } else if let Some(min) = schema["min"].as_f64().filter(|min| number.is_some_and(|n| n < *min)) {
                ("greater_than_equal", format!("Input should be greater than or equal to {min}"))
            } else if schema["type"] == "integer" && !value.is_u64() && !value.is_i64() {
                ("int_parsing", "Input should be a valid integer".to_owned())
            } else if let Some(choices) =
                schema["enum"].as_array().filter(|c| value.is_string() && !c.contains(value))
            {
                ("enum", format!("Input should be one of {choices:?}"))
            } else {
                return None;
            };
        Some(json!({"detail": [{"loc": ["body", name], "msg": msg, "type": kind, "input": value}]}))
    })
}

/// The value `model` uses for `name`: the request's, else its default.
fn used<'a>(model: &'a Value, body: &'a Value, name: &str) -> Option<&'a Value> {
    body.get(name).or_else(|| model["inputs"][name].get("default"))
}

/// How many images a request of `model` makes.
fn image_count(model: Option<&Value>, body: &Value) -> usize {
    let asked = body["num_images"].as_u64().unwrap_or(1).max(1);
    let max = model.map_or(4, |m| m["inputs"]["num_images"]["max"].as_u64().unwrap_or(1));
    asked.min(max) as usize
}

/// The pixels each image of a request of `model` has, as fal reports them.
fn image_dimensions(model: Option<&Value>, body: &Value) -> (u32, u32) {
    let Some(model) = model else { return (1024, 768) };
    let presets = [
        ("square_hd", (1024, 1024)),
        ("square", (512, 512)),
        ("portrait_4_3", (768, 1024)),
        ("portrait_16_9", (576, 1024)),
        ("landscape_4_3", (1024, 768)),
        ("landscape_16_9", (1024, 576)),
    ];
    match used(model, body, "image_size") {
        Some(Value::String(name)) => {
            return presets.iter().find(|(p, _)| p == name).map_or((2048, 2048), |(_, d)| *d);
        }
        Some(Value::Object(size)) => {
            return (
                size["width"].as_u64().unwrap_or(1024) as u32,
                size["height"].as_u64().unwrap_or(1024) as u32,
            );
        }
        _ => {}
    }
    let ratio = used(model, body, "aspect_ratio").and_then(Value::as_str).unwrap_or("1:1");
    let (w, h) = ratio
        .split_once(':')
        .map_or((1.0, 1.0), |(w, h)| (w.parse().unwrap_or(1.0), h.parse().unwrap_or(1.0)));
    let pixels = model["megapixels"].as_f64().unwrap_or(1.0) * 1024.0 * 1024.0;
    let height = (pixels * h / w).sqrt();
    (((height * w / h) / 16.0).round() as u32 * 16, (height / 16.0).round() as u32 * 16)
}

/// What fal bills for a request of `model` that ran: its unit price (the live one when a test
/// set it), at its tier, with its surcharges, per image or per started megapixel of each.
fn bill(model: &Value, body: &Value, live: Option<f64>) -> f64 {
    let price = &model["price"];
    let base = price["usd"].as_f64().unwrap_or(0.0);
    let mut unit = live.unwrap_or(base);
    if let Some(tier) = price["tiers"]["input"].as_str().and_then(|input| used(model, body, input)) {
        let tier_price = price["tiers"]["usd"][tier.as_str().unwrap_or_default()].as_f64();
        unit = tier_price.map_or(unit, |t| t * unit / base);
    }
    for surcharge in price["surcharges"].as_array().into_iter().flatten() {
        let value = surcharge["input"].as_str().and_then(|input| used(model, body, input));
        if value
            .and_then(Value::as_str)
            .is_some_and(|v| v.starts_with(surcharge["prefix"].as_str().unwrap_or("?")))
        {
            unit *= surcharge["factor"].as_f64().unwrap_or(1.0);
        }
    }
    let (w, h) = image_dimensions(Some(model), body);
    let units =
        if price["unit"] == "megapixel" { (u64::from(w) * u64::from(h)).div_ceil(1024 * 1024) } else { 1 };
    unit * units as f64 * image_count(Some(model), body) as f64
}

impl Ledger {
    /// Accepted submissions of the prompt containing `text`.
    pub fn accepted(&self, text: &str) -> u32 {
        self.submissions.iter().filter(|(p, _)| p.contains(text)).map(|(_, n)| n).sum()
    }

    /// Request ids of the prompt containing `text`, in the order fal accepted them.
    pub fn requests_of(&self, text: &str) -> Vec<String> {
        let mut ids: Vec<&String> =
            self.prompts.iter().filter(|(_, p)| p.contains(text)).map(|(id, _)| id).collect();
        ids.sort_by_key(|id| id.trim_start_matches("req-").parse::<u32>().unwrap_or(0));
        ids.into_iter().cloned().collect()
    }

    /// Calls of one kind (`polls`, `result_fetches`...) over every request of a prompt.
    pub fn calls(&self, calls: &HashMap<String, u32>, text: &str) -> u32 {
        self.requests_of(text).iter().map(|id| calls.get(id).copied().unwrap_or(0)).sum()
    }

    /// Dollars billed over every request.
    pub fn billed_usd(&self) -> f64 {
        (self.bills.values().sum::<f64>() * 1e6).round() / 1e6
    }

    /// Records what request `id` costs, once.
    fn charge(&mut self, id: &str) {
        let (Some(model), Some(body)) = (self.models.get(id), self.bodies.get(id)) else { return };
        let Some(entry) = model_entry(model) else { return };
        let cost = bill(&entry, body, self.live_prices.get(model).copied());
        self.bills.entry(id.to_owned()).or_insert(cost);
    }

    /// Whether request `id` is the first of its prompt and the prompt asks for `trouble`.
    fn troubled(&self, id: &str, trouble: &str) -> bool {
        self.first_of_prompt.contains(id) && self.prompts.get(id).is_some_and(|p| p.contains(trouble))
    }
}

/// A running emulator.
pub struct FalEmulator {
    pub server: MockServer,
    /// The storage host signed upload URLs point at: not fal's queue or REST host.
    pub storage: MockServer,
    pub ledger: Arc<Mutex<Ledger>>,
}

/// How slow each step is, so a test can catch the batch in the middle of one.
#[derive(Clone, Copy, Default)]
pub struct Latency {
    /// Before answering a submission (which is accepted, and charged, on arrival).
    pub submit: Duration,
    pub status: Duration,
    pub download: Duration,
}

/// What the emulator answers downloads with.
#[derive(Clone)]
pub enum Images {
    /// Line art drawn from each prompt (deterministic; costs CPU in the test process).
    FromPrompt,
    /// The same file for every request (for benchmarks, so drawing costs nothing).
    #[allow(dead_code, reason = "benches/e2e.rs answers with it; the tests draw from the prompt")]
    Fixed(Arc<Vec<u8>>),
}

/// An HTML error page from a proxy: no request id, not fal's JSON.
fn proxy_page(status: u16) -> ResponseTemplate {
    ResponseTemplate::new(status)
        .set_body_raw(format!("<html><body><h1>{status} Bad Gateway</h1>nginx</body></html>"), "text/html")
}

/// The id in `/fal-ai/flux/requests/{id}[/...]`.
fn request_id_in(request: &Request) -> String {
    request.url.path().split('/').nth(4).unwrap_or_default().trim_end_matches(".png").to_owned()
}

struct Submit(Arc<Mutex<Ledger>>, String, Duration);
impl Respond for Submit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap_or(Value::Null);
        let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
        let key = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if key == format!("Key {REFUSED_KEY}") {
            return ResponseTemplate::new(401).set_body_json(json!({"detail": "No user found for Key"}));
        }
        if key == format!("Key {LOCKED_KEY}") {
            return locked();
        }
        let mut ledger = self.0.lock().unwrap();
        if prompt.contains(INGRESS_502) && !ledger.refused.contains_key(&prompt) {
            *ledger.refused.entry(prompt).or_default() += 1;
            return proxy_page(502);
        }
        let count = ledger.submissions.entry(prompt.clone()).or_default();
        *count += 1;
        let first = *count == 1;
        let id = format!("req-{}", ledger.prompts.len() + 1);
        ledger.prompts.insert(id.clone(), prompt.clone());
        ledger.models.insert(id.clone(), request.url.path().trim_start_matches('/').to_owned());
        ledger.bodies.insert(id.clone(), body);
        if first {
            ledger.first_of_prompt.insert(id.clone());
        }
        ledger.in_flight.insert(id.clone());
        ledger.peak_in_flight = ledger.peak_in_flight.max(ledger.in_flight.len());
        if let Some(timeout) = request.headers.get("x-fal-request-timeout").and_then(|v| v.to_str().ok()) {
            ledger.start_timeouts.insert(id.clone(), timeout.to_owned());
        }
        if first && prompt.contains(ACCEPTED_THEN_504) {
            return proxy_page(504).set_delay(self.2);
        }
        if first && prompt.contains(SUBMIT_503_RETRYABLE) {
            return ResponseTemplate::new(503)
                .insert_header("x-fal-retryable", "true")
                .set_body_json(json!({"detail": "Service temporarily unavailable"}));
        }
        let url = format!("{}{APP}/requests/{id}", self.1);
        ResponseTemplate::new(200)
            .set_body_json(json!({
                "request_id": id, "response_url": url, "status_url": format!("{url}/status"),
                "cancel_url": format!("{url}/cancel"),
            }))
            .set_delay(self.2)
    }
}

struct Status(Arc<Mutex<Ledger>>, Duration);
impl Respond for Status {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request_id_in(request);
        if is_locked(request) {
            return locked();
        }
        let mut ledger = self.0.lock().unwrap();
        ledger.polled.insert(id.clone());
        let polls = {
            let n = ledger.polls.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        if ledger.troubled(&id, STATUS_CUT_ONCE) && polls == 1 {
            return ResponseTemplate::new(200).set_body_raw(r#"{"status": "COMPLE"#, "application/json");
        }
        if ledger.troubled(&id, RUNS_AFTER_CANCEL) && !ledger.cancels.contains_key(&id) {
            return ResponseTemplate::new(202)
                .set_body_json(json!({"status": "IN_QUEUE", "queue_position": 3}));
        }
        if ledger.prompts.get(&id).is_some_and(|p| p.contains(NEVER_COMPLETES)) {
            return ResponseTemplate::new(202)
                .set_body_json(json!({"status": "IN_QUEUE", "queue_position": 7}));
        }
        if !ledger.released && ledger.prompts.get(&id).is_some_and(|p| p.contains(HELD_RUNNING)) {
            return ResponseTemplate::new(202).set_body_json(json!({"status": "IN_PROGRESS", "logs": []}));
        }
        ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})).set_delay(self.1)
    }
}

struct Result(Arc<Mutex<Ledger>>, String);
impl Respond for Result {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default().to_owned();
        let mut ledger = self.0.lock().unwrap();
        ledger.in_flight.remove(&id);
        let fetches = {
            let n = ledger.result_fetches.entry(id.clone()).or_default();
            *n += 1;
            *n
        };
        let (Some(prompt), Some(body)) = (ledger.prompts.get(&id).cloned(), ledger.bodies.get(&id).cloned())
        else {
            return ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"}));
        };
        let model = ledger.models.get(&id).and_then(|m| model_entry(m));
        let refused = model
            .as_ref()
            .and_then(|m| refusal(m, &body).or_else(|| unfetchable(m, &body, &ledger, &self.1)));
        if let Some(refused) = refused {
            ledger.charge(&id);
            return ResponseTemplate::new(422)
                .insert_header("x-fal-request-id", id.as_str())
                .set_body_json(refused);
        }
        if ledger.troubled(&id, POLICY_422) {
            ledger.charge(&id);
            return ResponseTemplate::new(422).insert_header("x-fal-request-id", id.as_str()).set_body_json(json!({
                "detail": [{"loc": ["body", "prompt"], "msg": "The prompt was flagged by the content checker",
                            "type": "content_policy_violation"}]
            }));
        }
        if ledger.troubled(&id, RESULT_500_ONCE) && fetches == 1 {
            return ResponseTemplate::new(500)
                .insert_header("x-fal-request-id", id.as_str())
                .set_body_json(json!({"detail": "Internal Server Error"}));
        }
        // fal's safety checker flags what it flags; here, prompts that ask to be flagged.
        let flagged = prompt.contains(FLAGGED);
        let count = image_count(model.as_ref(), &body);
        let (width, height) = image_dimensions(model.as_ref(), &body);
        let sync = body["sync_mode"].as_bool().unwrap_or(false);
        let (extension, content_type) = answered_format(&prompt);
        let images: Vec<Value> = (0..count)
            .map(|n| {
                let url = if sync {
                    let file = drawn_file(&ledger, &id, n);
                    format!(
                        "data:{content_type};base64,{}",
                        base64::engine::general_purpose::STANDARD.encode(file)
                    )
                } else {
                    format!("{}/files/{id}-{n}.{extension}", self.1)
                };
                json!({"url": url, "content_type": content_type, "width": width, "height": height})
            })
            .collect();
        ledger.charge(&id);
        ResponseTemplate::new(200).set_body_json(json!({
            "images": images, "seed": body["seed"].as_u64().unwrap_or(42), "has_nsfw_concepts": vec![flagged; count],
            "timings": {"inference": 0.5},
        }))
    }
}

/// What image `n` of a request draws: the prompt itself for the first, so one-image results
/// stay the same as they always were.
fn image_prompt(prompt: &str, n: usize) -> String {
    if n == 0 { prompt.to_owned() } else { format!("{prompt} (image {n})") }
}

/// The file extension and content type of the images the model answers a prompt with.
fn answered_format(prompt: &str) -> (&'static str, &'static str) {
    if prompt.contains(ANSWERS_SVG) {
        ("svg", "image/svg+xml")
    } else if prompt.contains(ANSWERS_WEBP) {
        ("webp", "image/webp")
    } else {
        ("png", "image/png")
    }
}

/// Image `n` of request `id` in the format its model answers.
fn drawn_file(ledger: &Ledger, id: &str, n: usize) -> Vec<u8> {
    let prompt = ledger.prompts.get(id).cloned().unwrap_or_default();
    if prompt.contains(ANSWERS_SVG) {
        // A portrait page of line art: a frame and a circle, 300x400 user units.
        return br#"<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" width="300" height="400" viewBox="0 0 300 400">
  <rect x="10" y="10" width="280" height="380" fill="none" stroke="black" stroke-width="6"/>
  <circle cx="150" cy="200" r="90" fill="none" stroke="black" stroke-width="6"/>
</svg>"#
            .to_vec();
    }
    let png = drawn_png(ledger, id, n);
    if !prompt.contains(ANSWERS_WEBP) {
        return png;
    }
    let mut webp = Vec::new();
    image::load_from_memory(&png)
        .unwrap()
        .write_to(&mut Cursor::new(&mut webp), image::ImageFormat::WebP)
        .unwrap();
    webp
}

/// The pixels image `n` of request `id` is drawn at: 300x400 (small, to spare the test's CPU),
/// or for a model that reads an aspect ratio, that ratio's shape with a long side of 400.
fn drawn_size(ledger: &Ledger, id: &str) -> (u32, u32) {
    let model = ledger.models.get(id).and_then(|m| model_entry(m));
    let body = ledger.bodies.get(id).cloned().unwrap_or(Value::Null);
    match model {
        Some(model) if model["inputs"].get("aspect_ratio").is_some() => {
            let (w, h) = image_dimensions(Some(&model), &body);
            let scale = 400.0 / f64::from(w.max(h));
            ((f64::from(w) * scale).round() as u32, (f64::from(h) * scale).round() as u32)
        }
        _ => (300, 400),
    }
}

/// Image `n` of request `id`, drawn from its prompt and seed (or spoiled, when asked).
fn drawn_png(ledger: &Ledger, id: &str, n: usize) -> Vec<u8> {
    let prompt = ledger.prompts.get(id).cloned().unwrap_or_default();
    let seed = ledger.bodies.get(id).and_then(|body| body["seed"].as_u64()).unwrap_or(1);
    let (width, height) = drawn_size(ledger, id);
    let spoiled = (n == 0 && ledger.troubled(id, SPOILED_FIRST)) || prompt.contains(SPOILED_ALWAYS);
    png_of(&if spoiled {
        let family = inkflow::imaging::pattern::family_for(&prompt, seed);
        inkflow::imaging::pattern::draw_spoiled(family, &prompt, seed, width, height, Defect::Blob)
    } else {
        inkflow::imaging::pattern::draw(&image_prompt(&prompt, n), seed, width, height)
    })
}

struct Download(Arc<Mutex<Ledger>>, Duration, Images);
impl Respond for Download {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let file = request.url.path().rsplit('/').next().unwrap_or_default();
        let file = file.rsplit_once('.').map_or(file, |(stem, _)| stem);
        let (id, n) = file.rsplit_once('-').unwrap_or((file, "0"));
        let n: usize = n.parse().unwrap_or(0);
        let body = {
            let mut ledger = self.0.lock().unwrap();
            ledger.downloads += 1;
            let fetches = {
                let count = ledger.image_fetches.entry(id.to_owned()).or_default();
                *count += 1;
                *count
            };
            if ledger.troubled(id, CDN_404_ONCE) && fetches == 1 {
                return ResponseTemplate::new(404).set_body_raw("Not Found", "text/plain");
            }
            if ledger.troubled(id, NOT_AN_IMAGE) {
                return ResponseTemplate::new(200)
                    .set_body_raw("<html><body>Sign in</body></html>", "image/png");
            }
            let Some(prompt) = ledger.prompts.get(id) else {
                return ResponseTemplate::new(404);
            };
            let (_, content_type) = answered_format(prompt);
            let body = match &self.2 {
                Images::FromPrompt => drawn_file(&ledger, id, n),
                Images::Fixed(bytes) => bytes.as_ref().clone(),
            };
            (body, content_type)
        };
        ResponseTemplate::new(200).set_body_raw(body.0, body.1).set_delay(self.1)
    }
}

struct Cancel(Arc<Mutex<Ledger>>);
impl Respond for Cancel {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request_id_in(request);
        let mut ledger = self.0.lock().unwrap();
        let first_cancel = !ledger.cancels.contains_key(&id);
        *ledger.cancels.entry(id.clone()).or_default() += 1;
        ledger.in_flight.remove(&id);
        let queued = ledger.prompts.get(&id).is_some_and(|p| p.contains(NEVER_COMPLETES));
        if queued {
            // fal drops a request that no runner has taken.
            ResponseTemplate::new(202).set_body_json(json!({"status": "OK"}))
        } else if ledger.troubled(&id, RUNS_AFTER_CANCEL) && first_cancel {
            // A runner took it as the cancel arrived: fal can only signal it.
            ResponseTemplate::new(202).set_body_json(json!({"status": "CANCELLATION_REQUESTED"}))
        } else {
            ResponseTemplate::new(400).set_body_json(json!({"status": "ALREADY_COMPLETED"}))
        }
    }
}

/// fal's answer to any queue call made with [`LOCKED_KEY`].
fn locked() -> ResponseTemplate {
    ResponseTemplate::new(403).set_body_json(json!({"detail": LOCKED_REASON}))
}

fn is_locked(request: &Request) -> bool {
    request.headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Key {LOCKED_KEY}"))
}

/// fal's storage upload, step one: with a key fal knows, where to PUT the bytes (on the
/// storage host) and the URL the file will be read from.
struct InitiateUpload(Arc<Mutex<Ledger>>, String, String);
impl Respond for InitiateUpload {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !key.starts_with("Key ") || key == format!("Key {REFUSED_KEY}") {
            return ResponseTemplate::new(401).set_body_json(json!({"detail": "No user found for Key"}));
        }
        let body: Value = request.body_json().unwrap_or(Value::Null);
        let (Some(content_type), Some(_)) = (body["content_type"].as_str(), body["file_name"].as_str())
        else {
            return ResponseTemplate::new(422).set_body_json(json!({"detail": "content_type and file_name"}));
        };
        let mut ledger = self.0.lock().unwrap();
        ledger.upload_initiates += 1;
        let n = ledger.upload_initiates;
        let extension = content_type.rsplit('/').next().unwrap_or("bin");
        ResponseTemplate::new(200).set_body_json(json!({
            "upload_url": format!("{}/upload/{n}?content_type={content_type}", self.2),
            "file_url": format!("{}/files/upload-{n}.{extension}", self.1),
        }))
    }
}

/// fal's storage upload, step two: the bytes PUT to the signed URL.
struct PutUpload(Arc<Mutex<Ledger>>, String);
impl Respond for PutUpload {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let n = request.url.path().rsplit('/').next().unwrap_or_default();
        let content_type =
            request.url.query_pairs().find(|(k, _)| k == "content_type").map(|(_, v)| v.into_owned());
        let extension = content_type.as_deref().and_then(|t| t.rsplit('/').next()).unwrap_or("bin");
        let header = |name: &str| request.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
        self.0.lock().unwrap().uploaded.push(Uploaded {
            file_url: format!("{}/files/upload-{n}.{extension}", self.1),
            bytes: request.body.clone(),
            content_type: header("content-type").unwrap_or_default(),
            authorization: header("authorization"),
        });
        ResponseTemplate::new(200)
    }
}

/// fal's 422 when an image input of `model` names a storage file whose bytes never arrived.
fn unfetchable(model: &Value, body: &Value, ledger: &Ledger, base: &str) -> Option<Value> {
    let inputs = model["image_inputs"].as_array()?;
    inputs.iter().find_map(|input| {
        let name = input["input"].as_str().or(input.as_str())?;
        let urls: Vec<&str> = match &body[name] {
            Value::String(url) => vec![url.as_str()],
            Value::Array(urls) => urls.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        let missing = urls.into_iter().find(|url| {
            url.starts_with(&format!("{base}/files/upload-"))
                && !ledger.uploaded.iter().any(|u| u.file_url == *url)
        })?;
        Some(
            json!({"detail": [{"loc": ["body", name], "msg": format!("Failed to download the file {missing}"),
                                "type": "file_download_error"}]}),
        )
    })
}

/// fal's platform pricing API: the model's unit price (the live one a test set, else the
/// catalogue's), refused without a key fal knows.
struct Pricing(Arc<Mutex<Ledger>>);
impl Respond for Pricing {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let key = request.headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default();
        if !key.starts_with("Key ") || key == format!("Key {REFUSED_KEY}") {
            return ResponseTemplate::new(401).set_body_json(json!({"detail": "No user found for Key"}));
        }
        let mut ledger = self.0.lock().unwrap();
        ledger.pricing_calls += 1;
        let id = request.url.query_pairs().find(|(k, _)| k == "endpoint_id").map(|(_, v)| v.into_owned());
        let Some(entry) = id.as_deref().and_then(model_entry) else {
            return ResponseTemplate::new(200).set_body_json(json!({"prices": []}));
        };
        let id = id.unwrap_or_default();
        let usd = ledger.live_prices.get(&id).copied().or_else(|| entry["price"]["usd"].as_f64());
        let unit = if entry["price"]["unit"] == "megapixel" { "megapixels" } else { "images" };
        ResponseTemplate::new(200).set_body_json(json!({
            "prices": [{"endpoint_id": id, "unit_price": usd, "unit": unit, "currency": "USD"}]
        }))
    }
}

fn png_of(raster: &inkflow::engine::media::Raster) -> Vec<u8> {
    let inkflow::engine::media::Pixels::Rgb(rgb) = raster.pixels.clone() else { panic!("pattern draws RGB") };
    let image = image::RgbImage::from_raw(raster.width, raster.height, rgb).unwrap();
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

impl FalEmulator {
    /// Starts an emulator on loopback that draws each prompt's image.
    pub async fn start(latency: Latency) -> Self {
        Self::start_with(latency, Images::FromPrompt).await
    }

    /// Starts an emulator on loopback answering downloads with `images`.
    pub async fn start_with(latency: Latency, images: Images) -> Self {
        let server = MockServer::start().await;
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let base = server.uri();
        Mock::given(method("POST"))
            .and(path_regex(r"^/[a-z0-9-]+/[a-z0-9./-]+$"))
            .respond_with(Submit(ledger.clone(), base.clone(), latency.submit))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+/status$"))
            .respond_with(Status(ledger.clone(), latency.status))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+$"))
            .respond_with(Result(ledger.clone(), base.clone()))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+/cancel$"))
            .respond_with(Cancel(ledger.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/files/[^/]+\.(png|svg|webp)$"))
            .respond_with(Download(ledger.clone(), latency.download, images))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/v1/models/pricing$"))
            .respond_with(Pricing(ledger.clone()))
            .mount(&server)
            .await;
        let storage = MockServer::start().await;
        // Above the submit mock, whose paths it would match.
        Mock::given(method("POST"))
            .and(path_regex(r"^/storage/upload/initiate$"))
            .respond_with(InitiateUpload(ledger.clone(), base.clone(), storage.uri()))
            .with_priority(1)
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(r"^/upload/[0-9]+$"))
            .respond_with(PutUpload(ledger.clone(), base.clone()))
            .mount(&storage)
            .await;
        FalEmulator { server, storage, ledger }
    }

    /// The queue host to give the fal stage.
    pub fn base(&self) -> String {
        self.server.uri()
    }

    /// Accepted submissions over all prompts.
    pub fn total_submissions(&self) -> u32 {
        self.ledger.lock().unwrap().submissions.values().sum()
    }

    /// Whether inkflow has journaled every request accepted so far (it polls a request only
    /// after journaling it), so no submission is caught between acceptance and journal.
    pub fn every_accepted_request_journaled(&self) -> bool {
        let ledger = self.ledger.lock().unwrap();
        ledger.prompts.keys().all(|id| ledger.polled.contains(id))
    }
}
