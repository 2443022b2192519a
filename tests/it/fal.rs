//! The `fal` stage against an emulation of fal.ai's queue API (wiremock) and two tiny raw TCP
//! servers for what wiremock cannot do (chunked bodies without a length, dropped connections).
//! Stages are driven the way the engine will: `Kind::build`, then `IoStage::process` on several
//! items at once.

use std::io::Cursor;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use inkflow::engine::item::{Item, Prompt};
use inkflow::engine::media::{Payload, Pixels};
use inkflow::engine::run_context::{RunContext, Settlement, SubmissionLog};
use inkflow::engine::stage::{BuildContext, Component, IoStage, Kind, StageError};
use inkflow::stages::fal::{Environment, Fal, check_setup};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use wiremock::matchers::{body_partial_json, header, method, path, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const KEY: &str = "test-key-5ecret-do-not-print";
const APP: &str = "/fal-ai/flux";

// ---------------------------------------------------------------------------------------------
// The emulator

/// fal's queue for FLUX: submissions answer with URLs under the app (not the subpath), every
/// request completes at its first poll unless a test mounts something else (priority 1 mocks
/// win over these defaults), results point at PNGs on the same server under /files/.
struct Emulator {
    server: MockServer,
}

/// The id fal gives a request: the prompt text (tests use short ids as prompts).
fn request_id(request: &Request) -> String {
    request
        .body_json::<Value>()
        .ok()
        .and_then(|b| b["prompt"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn accepted(base: &str, id: &str) -> ResponseTemplate {
    let request = format!("{base}{APP}/requests/{id}");
    ResponseTemplate::new(200).set_body_json(json!({
        "request_id": id,
        "response_url": request,
        "status_url": format!("{request}/status"),
        "cancel_url": format!("{request}/cancel"),
    }))
}

fn status(code: u16, status: &str, base: &str, id: &str) -> ResponseTemplate {
    ResponseTemplate::new(code).set_body_json(json!({
        "status": status, "queue_position": 0, "response_url": format!("{base}{APP}/requests/{id}")
    }))
}

fn result_for(base: &str, id: &str) -> Value {
    json!({
        "images": [{"url": format!("{base}/files/{id}.png"), "width": 8, "height": 6, "content_type": "image/png"}],
        "timings": {"inference": 1.25},
        "seed": 1234,
        "has_nsfw_concepts": [false],
        "prompt": id,
    })
}

fn png(width: u32, height: u32) -> Vec<u8> {
    let mut bytes = Vec::new();
    image::RgbImage::from_pixel(width, height, image::Rgb([200, 100, 50]))
        .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
        .unwrap();
    bytes
}

struct Submit(String);
impl Respond for Submit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        accepted(&self.0, &request_id(request))
    }
}

struct Completed(String);
impl Respond for Completed {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().split('/').nth(4).unwrap_or_default().to_owned();
        status(200, "COMPLETED", &self.0, &id)
    }
}

struct Result(String);
impl Respond for Result {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default().to_owned();
        ResponseTemplate::new(200).set_body_json(result_for(&self.0, &id))
    }
}

/// Answers with each template in turn, repeating the last one.
struct Sequence {
    answers: Vec<ResponseTemplate>,
    calls: AtomicUsize,
}
impl Sequence {
    fn new(answers: Vec<ResponseTemplate>) -> Self {
        Sequence { answers, calls: AtomicUsize::new(0) }
    }
}
impl Respond for Sequence {
    fn respond(&self, _: &Request) -> ResponseTemplate {
        let n = self.calls.fetch_add(1, SeqCst).min(self.answers.len() - 1);
        self.answers[n].clone()
    }
}

impl Emulator {
    async fn start() -> Self {
        let server = MockServer::start().await;
        let base = server.uri();
        let authorized = || header("authorization", format!("Key {KEY}").as_str());
        Mock::given(method("POST"))
            .and(path_regex(r"^/fal-ai/flux/(dev|schnell)$"))
            .and(authorized())
            .respond_with(Submit(base.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+/status$"))
            .and(authorized())
            .respond_with(Completed(base.clone()))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+$"))
            .and(authorized())
            .respond_with(Result(base.clone()))
            .mount(&server)
            .await;
        Mock::given(method("PUT"))
            .and(path_regex(r"^/fal-ai/flux/requests/[^/]+/cancel$"))
            .and(authorized())
            // The requests these tests cancel are queued: fal drops them.
            .respond_with(ResponseTemplate::new(202).set_body_json(json!({"status": "OK"})))
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path("/v1/models/pricing"))
            .and(authorized())
            .respond_with(ResponseTemplate::new(200).set_body_json(json!({
                "prices": [{"endpoint_id": "fal-ai/flux/dev", "unit_price": 0.025, "unit": "image", "currency": "USD"}],
                "next_cursor": null, "has_more": false,
            })))
            .mount(&server)
            .await;
        // fal's platform API refuses a call without a valid key; its queue may not.
        Mock::given(method("GET"))
            .and(path("/v1/models/pricing"))
            .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Invalid API key"})))
            .with_priority(10)
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/files/"))
            .respond_with(ResponseTemplate::new(200).set_body_raw(png(8, 6), "image/png"))
            .mount(&server)
            .await;
        Emulator { server }
    }

    fn base(&self) -> String {
        self.server.uri()
    }

    /// Mounts `responder` for `verb` on `path`, ahead of the defaults.
    async fn on(&self, verb: &str, path_: &str, responder: impl Respond + 'static) {
        Mock::given(method(verb))
            .and(path(path_))
            .respond_with(responder)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    async fn on_submit(&self, prompt: &str, responder: impl Respond + 'static) {
        Mock::given(method("POST"))
            .and(path(format!("{APP}/dev")))
            .and(body_partial_json(json!({"prompt": prompt})))
            .respond_with(responder)
            .with_priority(1)
            .mount(&self.server)
            .await;
    }

    async fn requests(&self) -> Vec<Request> {
        self.server.received_requests().await.unwrap_or_default()
    }

    /// Requests with this verb and exact path.
    async fn count(&self, verb: &str, path_: &str) -> usize {
        self.requests().await.iter().filter(|r| r.method.as_str() == verb && r.url.path() == path_).count()
    }

    /// Submissions (POSTs) of this prompt, accepted or not.
    async fn submissions(&self, prompt: &str) -> usize {
        self.requests()
            .await
            .iter()
            .filter(|r| r.method.as_str() == "POST" && request_id(r) == prompt)
            .count()
    }

    async fn polls(&self, id: &str) -> usize {
        self.count("GET", &format!("{APP}/requests/{id}/status")).await
    }

    async fn fetches(&self, id: &str) -> usize {
        self.count("GET", &format!("{APP}/requests/{id}")).await
    }

    async fn cancels(&self, id: &str) -> usize {
        self.count("PUT", &format!("{APP}/requests/{id}/cancel")).await
    }

    async fn downloads(&self, id: &str) -> usize {
        self.count("GET", &format!("/files/{id}.png")).await
    }

    /// Fast test settings: 3 attempts, 10 ms backoff, 5 ms polls, 2 s per call.
    fn options(&self, more: Value) -> Value {
        let mut options = json!({
            "base_url": self.base(), "max_attempts": 3, "base_delay_ms": 10,
            "poll_interval_ms": 5, "request_timeout": "2s", "image_size": "portrait_4_3"
        });
        for (k, v) in more.as_object().cloned().unwrap_or_default() {
            options[k] = v;
        }
        options
    }
}

// ---------------------------------------------------------------------------------------------
// Driving the stage

fn build_context(dry_run: bool) -> BuildContext {
    BuildContext {
        id: "generate".into(),
        inputs: vec!["prompts".into()],
        output_dir: "output".into(),
        pipeline_file: "pipelines/test.yaml".into(),
        dry_run,
        room_below: 4,
    }
}

fn kind() -> Fal {
    Fal::with_environment(Environment::fixed([("FAL_KEY", KEY)]))
}

fn build(options: &Value) -> Arc<dyn IoStage> {
    kind().check(options).unwrap();
    match kind().build(options, &build_context(false)).unwrap() {
        Component::Io(stage) => stage,
        _ => panic!("fal must build an I/O stage"),
    }
}

fn item(seq: u64, prompt: &str) -> Item {
    let prompt = Prompt {
        section: "test".into(),
        number: seq as u32 + 1,
        image_prompt: prompt.into(),
        description: prompt.into(),
        ..Prompt::default()
    };
    Item::new(seq, prompt)
}

type Outcome = (Item, std::result::Result<Payload, StageError>);

/// Runs the prompts through the stage at once, as the engine's stage task would.
async fn run(stage: &Arc<dyn IoStage>, prompts: &[&str], cx: &RunContext) -> Vec<Outcome> {
    run_items(stage, prompts.iter().enumerate().map(|(i, p)| item(i as u64, p)).collect(), cx).await
}

async fn run_items(stage: &Arc<dyn IoStage>, items: Vec<Item>, cx: &RunContext) -> Vec<Outcome> {
    futures::future::join_all(items.into_iter().map(|mut item| async move {
        let outcome = stage.process(&mut item, Payload::Prompt, cx).await;
        (item, outcome)
    }))
    .await
}

fn assert_image(outcome: &Outcome, width: u32, height: u32) {
    let (item, result) = outcome;
    match result {
        Ok(Payload::Undecoded(file)) => {
            assert_eq!((file.width, file.height), (width, height), "{}: the header", item.key);
            let raster = file.decode().unwrap();
            assert_eq!((raster.width, raster.height), (width, height), "{}", item.key);
            assert!(matches!(raster.pixels, Pixels::Rgb(_)));
        }
        // Decoded already, by a test that must not hold its images' room below.
        Ok(Payload::Image(raster)) => {
            assert_eq!((raster.width, raster.height), (width, height), "{}", item.key);
            assert!(matches!(raster.pixels, Pixels::Rgb(_)));
        }
        other => panic!("{}: expected an image, got {other:?}", item.key),
    }
}

/// The message of an item the batch's stop cut short (not a failure: the next run takes it up).
fn interruption(outcome: &Outcome) -> String {
    match &outcome.1 {
        Err(StageError::Interrupted(message)) => message.clone(),
        other => panic!("{}: expected an item cut short by the stop, got {other:?}", outcome.0.key),
    }
}

fn failure(outcome: &Outcome) -> (String, u32) {
    match &outcome.1 {
        Err(StageError::Failed { message, attempts }) => (message.clone(), *attempts),
        other => panic!("{}: expected a failed item, got {other:?}", outcome.0.key),
    }
}

/// Runs `trouble` between two ordinary items and checks those two completed with one submission each.
async fn run_with_neighbours(fal: &Emulator, options: Value, trouble: &str) -> Outcome {
    let stage = build(&fal.options(options));
    let mut outcomes = run(&stage, &["ok-a", trouble, "ok-b"], &RunContext::default()).await;
    for neighbour in [&outcomes[0], &outcomes[2]] {
        assert_image(neighbour, 8, 6);
        assert_eq!(fal.submissions(&neighbour.0.prompt.image_prompt).await, 1);
    }
    outcomes.remove(1)
}

// ---------------------------------------------------------------------------------------------
// Happy paths

/// The `fal` stage's options from a pipeline file, without the engine's wiring fields.
fn pipeline_stage_options(file: &str) -> Value {
    let text = std::fs::read_to_string(file).unwrap();
    let pipeline: Value = serde_saphyr::from_str(&text).unwrap();
    let mut options = pipeline["stages"]["generate"].clone();
    assert_eq!(options["kind"], "fal", "{file}");
    for wiring in ["kind", "inputs", "concurrency", "capacity"] {
        options.as_object_mut().unwrap().remove(wiring);
    }
    options
}

#[tokio::test]
async fn both_pipelines_generate_through_the_queue() {
    let fal = Emulator::start().await;
    let cases = [
        ("pipelines/coloring-book.yaml", json!("portrait_4_3"), 28, 3.5, 0.025),
        ("pipelines/batch-images.yaml", json!({"width": 1920, "height": 1080}), 50, 7.5, 0.05),
    ];
    for (file, size, steps, guidance, cost) in cases {
        let mut options = pipeline_stage_options(file);
        options["base_url"] = json!(fal.base());
        options["poll_interval_ms"] = json!(5);
        let stage = build(&options);
        let name = file.trim_start_matches("pipelines/").trim_end_matches(".yaml");
        let prompts = [format!("{name}-1"), format!("{name}-2"), format!("{name}-3")];
        let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
        let outcomes = run(&stage, &prompts, &RunContext::default()).await;
        for (outcome, prompt) in outcomes.iter().zip(&prompts) {
            assert_image(outcome, 8, 6);
            let facts = &outcome.0.facts;
            assert_eq!(facts["model"], "fal-ai/flux/dev");
            assert_eq!(facts["request_id"], *prompt);
            assert_eq!(facts["seed"], 1234);
            assert_eq!(facts["has_nsfw_concepts"], false);
            assert_eq!((facts["width"].clone(), facts["height"].clone()), (json!(8), json!(6)));
            assert_eq!(facts["resolution"], "8x6");
            assert_eq!(facts["timings"], json!({"inference": 1.25}));
            assert_eq!(facts["cost_usd"], cost, "{file}");
            assert_eq!(facts["attempts"], 1);
            assert_eq!(outcome.0.retries, 0);
            assert!(outcome.0.generation_time.is_some());
            assert_eq!(fal.submissions(prompt).await, 1);
            assert_eq!(fal.downloads(prompt).await, 1);
        }
        let body = fal.requests().await.into_iter().find(|r| request_id(r) == prompts[0]).unwrap();
        assert_eq!(body.url.path(), "/fal-ai/flux/dev");
        assert_eq!(body.headers.get("authorization").unwrap(), &format!("Key {KEY}"));
        let body: Value = body.body_json().unwrap();
        assert_eq!(body["image_size"], size, "{file}");
        assert_eq!(
            (body["num_inference_steps"].clone(), body["guidance_scale"].clone()),
            (json!(steps), json!(guidance))
        );
        assert_eq!(body["output_format"], "png");
        let estimate = stage.estimate_cost(&mut [item(0, "a"), item(1, "b")].into_iter()).unwrap();
        assert!(
            (estimate.usd - 2.0 * cost).abs() < 1e-9 && estimate.unpriced.is_empty(),
            "{file}: {estimate:?}"
        );
    }
    // Image downloads never carry the key.
    for request in fal.requests().await.iter().filter(|r| r.url.path().starts_with("/files/")) {
        assert!(request.headers.get("authorization").is_none());
    }
}

#[tokio::test]
async fn requests_wait_through_in_queue_and_in_progress() {
    let fal = Emulator::start().await;
    let base = fal.base();
    let id = "queued-1";
    let steps = vec![
        status(202, "IN_QUEUE", &base, id).set_body_json(json!({"status": "IN_QUEUE", "queue_position": 3})),
        status(202, "IN_QUEUE", &base, id),
        status(202, "IN_PROGRESS", &base, id),
        status(200, "COMPLETED", &base, id),
    ];
    fal.on("GET", &format!("{APP}/requests/{id}/status"), Sequence::new(steps)).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!(fal.polls(id).await, 4);
    assert_eq!((fal.submissions(id).await, fal.fetches(id).await), (1, 1));
    assert_eq!(outcome.0.retries, 0);
}

#[tokio::test]
async fn item_fields_override_pipeline_inputs() {
    let fal = Emulator::start().await;
    let allowed = json!(["seed", "image_size", "num_images"]);
    let stage = build(&fal.options(json!({"seed": 1, "num_images": 2, "allow_overrides": allowed})));
    let mut custom = item(0, "custom-1");
    custom.prompt.extra = json!({"seed": 42, "image_size": "square", "num_images": 1, "mood": "calm"})
        .as_object()
        .cloned()
        .unwrap();
    let outcomes = run_items(&stage, vec![custom, item(1, "plain-1")], &RunContext::default()).await;
    assert_image(&outcomes[0], 8, 6);
    let bodies: Vec<Value> = fal
        .requests()
        .await
        .iter()
        .filter(|r| r.method.as_str() == "POST")
        .map(|r| r.body_json().unwrap())
        .collect();
    let custom_body = bodies.iter().find(|b| b["prompt"] == "custom-1").unwrap();
    assert_eq!(
        (custom_body["seed"].clone(), custom_body["image_size"].clone()),
        (json!(42), json!("square"))
    );
    assert!(custom_body.get("mood").is_none());
    let plain_body = bodies.iter().find(|b| b["prompt"] == "plain-1").unwrap();
    assert_eq!((plain_body["seed"].clone(), plain_body["num_images"].clone()), (json!(1), json!(2)));
    assert_eq!(outcomes[0].0.facts["cost_usd"], 0.025);
    assert_eq!(outcomes[1].0.facts["cost_usd"], 0.05);
}

#[tokio::test]
async fn a_prompt_cannot_override_what_the_pipeline_does_not_allow() {
    let fal = Emulator::start().await;
    let stage = build(&fal.options(json!({})));
    let mut pricier = item(0, "pricier-1");
    pricier.prompt.extra = json!({"num_images": 4}).as_object().cloned().unwrap();
    let mut unsafe_ = item(1, "unsafe-1");
    unsafe_.prompt.extra = json!({"enable_safety_checker": false}).as_object().cloned().unwrap();
    let outcomes = run_items(&stage, vec![pricier, unsafe_], &RunContext::default()).await;
    for (outcome, field) in outcomes.iter().zip(["num_images", "enable_safety_checker"]) {
        let (message, _) = failure(outcome);
        assert!(message.contains(field) && message.contains("allow_overrides"), "{message}");
        assert_eq!(fal.submissions(&outcome.0.prompt.image_prompt).await, 0);
    }
    // The estimate names them too instead of pricing them at the pipeline's values.
    let mut pricier = item(0, "pricier-1");
    pricier.prompt.extra = json!({"model": "fal-ai/unknown"}).as_object().cloned().unwrap();
    let estimate = stage.estimate_cost(&mut [pricier, item(1, "plain")].into_iter()).unwrap();
    assert_eq!(estimate.unpriced.len(), 1, "{estimate:?}");
    assert!(estimate.unpriced[0].contains("test-00001") && estimate.unpriced[0].contains("allow_overrides"));
}

#[tokio::test]
async fn an_unpriced_model_is_named_by_the_estimate() {
    let fal = Emulator::start().await;
    let allowed = json!(["model"]);
    let stage = build(&fal.options(json!({"allow_overrides": allowed})));
    let mut other = item(0, "other-1");
    other.prompt.extra = json!({"model": "fal-ai/unknown"}).as_object().cloned().unwrap();
    let estimate = stage.estimate_cost(&mut [other, item(1, "plain")].into_iter()).unwrap();
    assert!((estimate.usd - 0.025).abs() < 1e-9, "{estimate:?}");
    assert_eq!(estimate.unpriced.len(), 1);
    assert!(estimate.unpriced[0].contains("no price for model \"fal-ai/unknown\""), "{estimate:?}");
}

#[tokio::test]
async fn several_images_are_all_downloaded_and_the_first_unflagged_is_the_page() {
    let fal = Emulator::start().await;
    let id = "pair-1";
    let mut result = result_for(&fal.base(), id);
    result["images"] = json!([{"url": format!("{}/files/{id}-a.png", fal.base())},
        {"url": format!("{}/files/{id}.png", fal.base())}, {"url": format!("{}/files/{id}-c.png", fal.base())}]);
    result["has_nsfw_concepts"] = json!([true, false, false]);
    fal.on("GET", &format!("{APP}/requests/{id}"), ResponseTemplate::new(200).set_body_json(result)).await;
    let outcome = run_with_neighbours(&fal, json!({"num_images": 3}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!(outcome.0.facts["images_returned"], 3);
    assert_eq!(outcome.0.facts["cost_usd"], 0.075);
    let pages: Vec<bool> =
        outcome.0.facts["images"].as_array().unwrap().iter().map(|i| i["page"] == true).collect();
    assert_eq!(pages, [false, true, false]);
    let downloads =
        (fal.downloads("pair-1-a").await, fal.downloads(id).await, fal.downloads("pair-1-c").await);
    assert_eq!(downloads, (0, 1, 1), "the flagged image is never fetched");
}

#[tokio::test]
async fn sync_mode_images_come_inline_and_are_capped() {
    use base64::Engine as _;
    let fal = Emulator::start().await;
    let id = "inline-1";
    let inline =
        format!("data:image/png;base64,{}", base64::engine::general_purpose::STANDARD.encode(png(8, 6)));
    let mut result = result_for(&fal.base(), id);
    result["images"] = json!([{"url": inline}]);
    fal.on("GET", &format!("{APP}/requests/{id}"), ResponseTemplate::new(200).set_body_json(result.clone()))
        .await;
    let outcome = run_with_neighbours(&fal, json!({"extra": {"sync_mode": true}}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!(fal.downloads(id).await, 0);

    // An answer over the 4 MiB a queue answer may take is what inline images of this size
    // take: it is read, not paid for and dropped.
    let large = "inline-large";
    let mut rng = fastrand::Rng::with_seed(7);
    let noise = image::RgbImage::from_fn(1100, 1100, |_, _| image::Rgb([rng.u8(..), rng.u8(..), rng.u8(..)]));
    let mut noisy = Vec::new();
    noise.write_to(&mut Cursor::new(&mut noisy), image::ImageFormat::Png).unwrap();
    let mut large_result = result.clone();
    large_result["images"] = json!([{"url": format!("data:image/png;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(&noisy))}]);
    assert!(large_result.to_string().len() > 4 * 1024 * 1024);
    fal.on("GET", &format!("{APP}/requests/{large}"), ResponseTemplate::new(200).set_body_json(large_result))
        .await;
    let sync = fal.options(json!({"extra": {"sync_mode": true}}));
    let outcome = run(&build(&sync), &[large], &RunContext::default()).await.remove(0);
    assert_image(&outcome, 1100, 1100);

    // The cap is what the largest image asked for (768x1024) can take: 8-bit RGBA, uncompressed,
    // and 1 MiB of metadata. The stage's smaller `max_image_bytes` is raised to it.
    let capped = "inline-2";
    result["images"] = json!([{"url": format!("data:image/png;base64,{}", "A".repeat(6_000_000))}]);
    fal.on("GET", &format!("{APP}/requests/{capped}"), ResponseTemplate::new(200).set_body_json(result))
        .await;
    let stage = build(&fal.options(json!({"max_image_bytes": 20, "extra": {"sync_mode": true}})));
    let outcome = run(&stage, &[capped], &RunContext::default()).await.remove(0);
    let (message, _) = failure(&outcome);
    assert!(message.contains("over the limit of 4194304"), "{message}");
}

// ---------------------------------------------------------------------------------------------
// Retries

#[tokio::test]
async fn rate_limited_submission_waits_for_retry_after() {
    let fal = Emulator::start().await;
    let id = "limited-1";
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "1")
        .set_body_json(json!({"detail": "Too many concurrent requests"}));
    fal.on_submit(id, Sequence::new(vec![limited, accepted(&fal.base(), id)])).await;
    let started = Instant::now();
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert_image(&outcome, 8, 6);
    // Backoff alone would be 10-20 ms: the wait is the server's second.
    assert!(started.elapsed() >= Duration::from_millis(950), "{:?}", started.elapsed());
    assert_eq!(fal.submissions(id).await, 2, "one refused, one accepted");
    assert_eq!((outcome.0.retries, outcome.0.facts["attempts"].clone()), (1, json!(2)));
}

#[tokio::test]
async fn unavailable_status_is_retried_without_resubmitting() {
    let fal = Emulator::start().await;
    let id = "flaky-1";
    let unavailable = || ResponseTemplate::new(503).set_body_json(json!({"detail": "Service Unavailable"}));
    let steps = vec![unavailable(), unavailable(), status(200, "COMPLETED", &fal.base(), id)];
    fal.on("GET", &format!("{APP}/requests/{id}/status"), Sequence::new(steps)).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!((fal.polls(id).await, fal.submissions(id).await), (3, 1));
    assert_eq!(outcome.0.retries, 2);
}

#[tokio::test]
async fn user_timeout_504_is_not_retried() {
    let fal = Emulator::start().await;
    let id = "late-1";
    let timeout = ResponseTemplate::new(504)
        .insert_header("X-Fal-Request-Timeout-Type", "user")
        .set_body_json(json!({"detail": "Request timed out"}));
    fal.on("GET", &format!("{APP}/requests/{id}"), timeout).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    let (message, attempts) = failure(&outcome);
    assert!(message.contains("HTTP 504") && message.contains("start timeout"), "{message}");
    assert_eq!(attempts, 1);
    assert_eq!((fal.fetches(id).await, fal.submissions(id).await), (1, 1));
}

#[tokio::test]
async fn a_dropped_status_connection_is_retried() {
    let fal = Emulator::start().await;
    let id = "dropped-1";
    Mock::given(method("GET"))
        .and(path(format!("{APP}/requests/{id}/status")))
        .respond_with_err(|_: &Request| std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped"))
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!((fal.polls(id).await, fal.submissions(id).await, outcome.0.retries), (2, 1, 1));
}

#[tokio::test]
async fn a_slow_server_hits_the_timeout() {
    let fal = Emulator::start().await;
    let id = "slow-1";
    let slow = status(200, "COMPLETED", &fal.base(), id).set_delay(Duration::from_secs(5));
    fal.on("GET", &format!("{APP}/requests/{id}/status"), slow).await;
    let outcome = run_with_neighbours(&fal, json!({"request_timeout": "200ms", "max_attempts": 2}), id).await;
    let (message, attempts) = failure(&outcome);
    assert!(message.contains("timed out") && message.contains("after 2 attempts"), "{message}");
    assert_eq!(attempts, 2);
    assert_eq!((fal.polls(id).await, fal.submissions(id).await), (2, 1));
}

// ---------------------------------------------------------------------------------------------
// Refusals and failures

#[tokio::test]
async fn validation_detail_array_is_reported_per_item() {
    let fal = Emulator::start().await;
    let id = "invalid-1";
    let refused = ResponseTemplate::new(422).set_body_json(json!({"detail": [
        {"loc": ["body", "image_size"], "msg": "Input should be a valid image size", "type": "value_error"},
        {"loc": ["body", "num_inference_steps"], "msg": "Input should be less than or equal to 50", "type": "less_than_equal"}
    ]}));
    fal.on_submit(id, refused).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("HTTP 422"), "{message}");
    assert!(message.contains("body.image_size: Input should be a valid image size"), "{message}");
    assert!(
        message.contains("body.num_inference_steps: Input should be less than or equal to 50"),
        "{message}"
    );
    assert_eq!(fal.submissions(id).await, 1);
}

#[tokio::test]
async fn a_refused_key_is_fatal_and_never_printed() {
    let fal = Emulator::start().await;
    // A server that echoes the key back must not get it into the message.
    Mock::given(method("POST"))
        .and(path(format!("{APP}/dev")))
        .respond_with(
            ResponseTemplate::new(401)
                .set_body_json(json!({"detail": format!("No user found for Key {KEY}")})),
        )
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let stage = build(&fal.options(json!({})));
    let outcomes = run(&stage, &["a-1", "a-2"], &RunContext::default()).await;
    for (item, result) in &outcomes {
        let Err(StageError::Fatal(message)) = result else {
            panic!("{}: expected Fatal, got {result:?}", item.key)
        };
        assert!(message.contains("refused the API key") && message.contains("HTTP 401"), "{message}");
        assert!(message.contains("FAL_KEY") && !message.contains(KEY), "{message}");
        assert_eq!(fal.submissions(&item.prompt.image_prompt).await, 1, "401 is never retried");
    }
}

#[tokio::test]
async fn an_application_error_after_completed_is_retried_then_settled_with_fals_message() {
    let fal = Emulator::start().await;
    let id = "broken-1";
    let error = ResponseTemplate::new(500)
        .insert_header("x-fal-request-id", id)
        .set_body_json(json!({"detail": "CUDA out of memory"}));
    fal.on("GET", &format!("{APP}/requests/{id}"), error).await;
    let journal = Arc::new(Journal::default());
    let cx = RunContext { submissions: Some(journal.clone()), ..RunContext::default() };
    let stage = build(&fal.options(json!({})));
    let outcome = run(&stage, &[id], &cx).await.remove(0);
    let (message, _) = failure(&outcome);
    assert!(message.contains("fal failed request broken-1: HTTP 500: CUDA out of memory"), "{message}");
    assert!(message.contains("(fal request broken-1)") && message.contains("--retry-failed"), "{message}");
    assert_eq!((fal.fetches(id).await, fal.submissions(id).await, fal.downloads(id).await), (3, 1, 0));
    assert_eq!(
        journal.settlements(),
        [("test-00001".to_owned(), Settlement::Failed, 0.0)],
        "5xx is not charged"
    );
}

#[tokio::test]
async fn a_proxy_error_on_the_result_leaves_the_request_open_for_a_resume() {
    let fal = Emulator::start().await;
    let id = "outage-1";
    let page = ResponseTemplate::new(502).set_body_raw("<html>Bad Gateway</html>", "text/html");
    fal.on("GET", &format!("{APP}/requests/{id}"), page).await;
    let journal = Arc::new(Journal::default());
    let cx = RunContext { submissions: Some(journal.clone()), ..RunContext::default() };
    let outcome = run(&build(&fal.options(json!({}))), &[id], &cx).await.remove(0);
    let (message, attempts) = failure(&outcome);
    assert!(message.contains("HTTP 502") && message.contains("after 3 attempts"), "{message}");
    assert_eq!((attempts, fal.fetches(id).await), (3, 3));
    assert!(journal.settlements().is_empty(), "paid for and not known dead: a resume fetches it again");
}

#[tokio::test]
async fn a_missing_image_is_retried_then_settled_as_failed() {
    let fal = Emulator::start().await;
    let id = "gone-1";
    fal.on("GET", &format!("/files/{id}.png"), ResponseTemplate::new(404)).await;
    let journal = Arc::new(Journal::default());
    let cx = RunContext { submissions: Some(journal.clone()), ..RunContext::default() };
    let outcome = run(&build(&fal.options(json!({}))), &[id], &cx).await.remove(0);
    let (message, _) = failure(&outcome);
    assert!(message.contains("HTTP 404") && message.contains("/files/gone-1.png"), "{message}");
    assert_eq!((fal.downloads(id).await, fal.submissions(id).await), (3, 1));
    assert_eq!(journal.settlements(), [("test-00001".to_owned(), Settlement::Failed, 0.025)]);
}

#[tokio::test]
async fn an_image_over_the_cap_is_refused_from_its_length() {
    let fal = Emulator::start().await;
    let id = "huge-1";
    fal.on(
        "GET",
        &format!("/files/{id}.png"),
        ResponseTemplate::new(200).set_body_raw(vec![0u8; 5_000_000], "image/png"),
    )
    .await;
    let outcome = run_with_neighbours(&fal, json!({"max_image_bytes": 2000}), id).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("5000000 bytes, over the limit of 4194304"), "{message}");
    assert_eq!((fal.downloads(id).await, fal.submissions(id).await), (1, 1));
}

#[tokio::test]
async fn a_body_that_is_not_an_image_fails_clearly() {
    let fal = Emulator::start().await;
    let id = "html-1";
    let page = ResponseTemplate::new(200).set_body_raw("<html><body>Sign in</body></html>", "text/html");
    fal.on("GET", &format!("/files/{id}.png"), page).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("is not a PNG, JPEG or WebP image"), "{message}");
    assert_eq!(fal.submissions(id).await, 1);
}

#[tokio::test]
async fn flagged_images_are_filtered_and_never_downloaded() {
    let fal = Emulator::start().await;
    let id = "nsfw-1";
    let mut result = result_for(&fal.base(), id);
    result["has_nsfw_concepts"] = json!([true]);
    fal.on("GET", &format!("{APP}/requests/{id}"), ResponseTemplate::new(200).set_body_json(result)).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert!(
        matches!(&outcome.1, Err(StageError::Filtered { reason }) if reason == "fal flagged NSFW concepts")
    );
    assert_eq!(outcome.0.facts["has_nsfw_concepts"], true);
    assert_eq!((fal.downloads(id).await, fal.submissions(id).await), (0, 1));
}

// ---------------------------------------------------------------------------------------------
// Raw TCP servers: a body without Content-Length, and connections dropped without an answer

/// Serves loopback HTTP by hand: the first `drops` connections are closed after reading the
/// request, later ones get `reply`. Returns its URL and the number of connections so far.
async fn raw_server(drops: usize, reply: Vec<u8>) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let connections = Arc::new(AtomicUsize::new(0));
    let counter = connections.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let n = counter.fetch_add(1, SeqCst);
            let mut request = vec![0u8; 8192];
            let _ = socket.read(&mut request).await;
            if n >= drops {
                let _ = socket.write_all(&reply).await;
            }
            let _ = socket.shutdown().await;
        }
    });
    (url, connections)
}

/// Points the result of `id` at `url` instead of the emulator's /files/.
async fn image_at(fal: &Emulator, id: &str, url: &str) {
    let mut result = result_for(&fal.base(), id);
    result["images"][0]["url"] = json!(url);
    fal.on("GET", &format!("{APP}/requests/{id}"), ResponseTemplate::new(200).set_body_json(result)).await;
}

#[tokio::test]
async fn a_streamed_image_without_length_is_cut_at_the_cap() {
    let fal = Emulator::start().await;
    let mut reply = b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n".to_vec();
    for _ in 0..5 {
        reply.extend_from_slice(b"f4240\r\n");
        reply.extend_from_slice(&[0u8; 1_000_000]);
        reply.extend_from_slice(b"\r\n");
    }
    reply.extend_from_slice(b"0\r\n\r\n");
    let (url, _) = raw_server(0, reply).await;
    let id = "chunked-1";
    image_at(&fal, id, &format!("{url}/{id}.png")).await;
    let outcome = run_with_neighbours(&fal, json!({"max_image_bytes": 2000}), id).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("more than 4194304 bytes, over the limit of 4194304"), "{message}");
    assert_eq!(fal.submissions(id).await, 1);
}

fn http_png_reply() -> Vec<u8> {
    let body = png(8, 6);
    let mut reply = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    reply
}

#[tokio::test]
async fn a_dropped_download_is_retried_then_succeeds() {
    let fal = Emulator::start().await;
    let (url, connections) = raw_server(1, http_png_reply()).await;
    let id = "redo-1";
    image_at(&fal, id, &format!("{url}/{id}.png")).await;
    let outcome = run_with_neighbours(&fal, json!({}), id).await;
    assert_image(&outcome, 8, 6);
    assert_eq!((connections.load(SeqCst), fal.submissions(id).await, outcome.0.retries), (2, 1, 1));
}

#[tokio::test]
async fn a_download_that_always_drops_fails_after_max_attempts() {
    let fal = Emulator::start().await;
    let (url, connections) = raw_server(usize::MAX, Vec::new()).await;
    let id = "lost-1";
    image_at(&fal, id, &format!("{url}/{id}.png")).await;
    let outcome = run_with_neighbours(&fal, json!({"max_attempts": 3}), id).await;
    let (message, attempts) = failure(&outcome);
    assert!(message.contains("downloading") && message.contains("after 3 attempts"), "{message}");
    assert_eq!((attempts, connections.load(SeqCst), fal.submissions(id).await), (3, 3, 1));
}

// ---------------------------------------------------------------------------------------------
// Concurrency, budget, journal, resume, stop

/// Counts requests submitted but not yet fetched, and holds every request in progress until a
/// second one has been submitted, so overlap is certain rather than lucky.
#[derive(Default)]
struct InFlight {
    now: AtomicUsize,
    max: AtomicUsize,
    submitted: AtomicUsize,
}

struct CountingSubmit(String, Arc<InFlight>);
impl Respond for CountingSubmit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let now = self.1.now.fetch_add(1, SeqCst) + 1;
        self.1.max.fetch_max(now, SeqCst);
        self.1.submitted.fetch_add(1, SeqCst);
        accepted(&self.0, &request_id(request))
    }
}

struct HeldStatus(String, Arc<InFlight>, usize);
impl Respond for HeldStatus {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().split('/').nth(4).unwrap_or_default().to_owned();
        let submitted = self.1.submitted.load(SeqCst);
        if submitted < 2 && submitted < self.2 {
            status(202, "IN_PROGRESS", &self.0, &id)
        } else {
            status(200, "COMPLETED", &self.0, &id)
        }
    }
}

struct CountingResult(String, Arc<InFlight>);
impl Respond for CountingResult {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        self.1.now.fetch_sub(1, SeqCst);
        Result(self.0.clone()).respond(request)
    }
}

#[tokio::test]
async fn concurrency_two_keeps_at_most_two_requests_in_flight() {
    let fal = Emulator::start().await;
    let base = fal.base();
    let counts = Arc::new(InFlight::default());
    let items = 6;
    fal.on("POST", &format!("{APP}/dev"), CountingSubmit(base.clone(), counts.clone())).await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/fal-ai/flux/requests/[^/]+/status$"))
        .respond_with(HeldStatus(base.clone(), counts.clone(), items))
        .with_priority(1)
        .mount(&fal.server)
        .await;
    Mock::given(method("GET"))
        .and(path_regex(r"^/fal-ai/flux/requests/[^/]+$"))
        .respond_with(CountingResult(base.clone(), counts.clone()))
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let stage = build(&fal.options(json!({})));
    let cx = RunContext::default();
    // The engine bounds a stage's concurrency with buffer_unordered(concurrency).
    let outcomes: Vec<Outcome> = futures::stream::iter((0..items).map(|i| {
        let (stage, cx) = (stage.clone(), cx.clone());
        async move {
            let mut item = item(i as u64, &format!("c-{i}"));
            // Decoded at once, as the stage below would: a held image keeps its room below.
            let outcome = stage.process(&mut item, Payload::Prompt, &cx).await.map(|p| p.decoded().unwrap());
            (item, outcome)
        }
    }))
    .buffer_unordered(2)
    .collect()
    .await;
    assert_eq!(outcomes.len(), items);
    outcomes.iter().for_each(|o| assert_image(o, 8, 6));
    assert_eq!(counts.max.load(SeqCst), 2, "two requests overlapped, never three");
    assert_eq!((counts.submitted.load(SeqCst), counts.now.load(SeqCst)), (items, 0));
}

#[tokio::test]
async fn the_budget_stops_submitting_and_says_so() {
    let fal = Emulator::start().await;
    let stage = build(&fal.options(json!({"max_cost_usd": 0.05})));
    let cx = RunContext::default();
    let mut outcomes = Vec::new();
    for (i, prompt) in ["b-1", "b-2", "b-3"].iter().enumerate() {
        outcomes.extend(run_items(&stage, vec![item(i as u64, prompt)], &cx).await);
    }
    assert_image(&outcomes[0], 8, 6);
    assert_image(&outcomes[1], 8, 6);
    let Err(StageError::Fatal(message)) = &outcomes[2].1 else { panic!("{:?}", outcomes[2].1) };
    assert_eq!(message, "max_cost_usd budget of $0.05 reached after $0.05: not submitting more");
    assert_eq!(fal.submissions("b-3").await, 0);
}

/// A journal that keeps entries in memory, or refuses them all.
/// A journal that keeps what it is told in memory, and refuses the call named `refuse`.
#[derive(Default)]
struct Journal {
    /// Accepted requests: item key, stage, request.
    entries: Mutex<Vec<(String, String, Value)>>,
    /// Every call in order: "submitting", "submitted" or "not_submitted", with the item key.
    calls: Mutex<Vec<(&'static str, String)>>,
    /// Requests settled without a result: item key, how, cost.
    settled: Mutex<Vec<(String, Settlement, f64)>>,
    refuse: Option<&'static str>,
}
impl Journal {
    fn note(&self, call: &'static str, item: &Item) -> anyhow::Result<()> {
        anyhow::ensure!(self.refuse != Some(call), "disk full");
        self.calls.lock().unwrap().push((call, item.key.clone()));
        Ok(())
    }

    fn calls(&self) -> Vec<&'static str> {
        self.calls.lock().unwrap().iter().map(|(call, _)| *call).collect()
    }

    fn settlements(&self) -> Vec<(String, Settlement, f64)> {
        self.settled.lock().unwrap().clone()
    }
}
impl SubmissionLog for Journal {
    fn submitting(&self, item: &Item, _stage: &str, _cost: Option<f64>) -> anyhow::Result<()> {
        self.note("submitting", item)
    }

    fn submitted(&self, item: &Item, stage: &str, request: &Value, cost: Option<f64>) -> anyhow::Result<()> {
        self.note("submitted", item)?;
        let mut request = request.clone();
        request["cost_usd"] = json!(cost);
        self.entries.lock().unwrap().push((item.key.clone(), stage.to_owned(), request));
        Ok(())
    }

    fn not_submitted(&self, item: &Item, _stage: &str) -> anyhow::Result<()> {
        self.note("not_submitted", item)
    }

    fn settled(&self, key: &str, _stage: &str, settlement: Settlement, cost: f64) -> anyhow::Result<()> {
        self.settled.lock().unwrap().push((key.to_owned(), settlement, cost));
        Ok(())
    }
}

/// Runs one item through a journaled stage; returns its outcome and the journal.
async fn run_journaled(fal: &Emulator, prompt: &str, journal: Journal) -> (Outcome, Arc<Journal>) {
    let journal = Arc::new(journal);
    let cx = RunContext { submissions: Some(journal.clone()), ..RunContext::default() };
    let stage = build(&fal.options(json!({})));
    let outcome = run(&stage, &[prompt], &cx).await.remove(0);
    (outcome, journal)
}

#[tokio::test]
async fn a_submission_is_journaled_before_it_is_sent_and_never_sent_unjournaled() {
    let fal = Emulator::start().await;
    let (outcome, journal) = run_journaled(&fal, "jb-1", Journal::default()).await;
    assert_image(&outcome, 8, 6);
    assert_eq!(journal.calls(), ["submitting", "submitted"]);

    let refusing = Journal { refuse: Some("submitting"), ..Journal::default() };
    let (outcome, _) = run_journaled(&fal, "jb-2", refusing).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("not submitted") && message.contains("disk full"), "{message}");
    assert_eq!(fal.submissions("jb-2").await, 0);
}

#[tokio::test]
async fn a_refused_submission_is_withdrawn_from_the_journal() {
    let fal = Emulator::start().await;
    let invalid = ResponseTemplate::new(422).set_body_json(json!({"detail": "prompt too long"}));
    fal.on_submit("jr-1", invalid).await;
    let (outcome, journal) = run_journaled(&fal, "jr-1", Journal::default()).await;
    let (message, _) = failure(&outcome);
    assert!(message.contains("HTTP 422") && !message.contains("--retry-failed"), "{message}");
    assert_eq!(journal.calls(), ["submitting", "not_submitted"]);
}

#[tokio::test]
async fn a_submission_without_an_answer_is_left_uncertain_and_not_repeated() {
    let fal = Emulator::start().await;
    let id = "ju-1";
    Mock::given(method("POST"))
        .and(path(format!("{APP}/dev")))
        .and(body_partial_json(json!({"prompt": id})))
        .respond_with_err(|_: &Request| std::io::Error::new(std::io::ErrorKind::ConnectionReset, "dropped"))
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let (outcome, journal) = run_journaled(&fal, id, Journal::default()).await;
    let (message, attempts) = failure(&outcome);
    assert!(message.contains("may have been accepted") && message.contains("--retry-failed"), "{message}");
    assert_eq!((attempts, fal.submissions(id).await), (1, 1), "fal may have it: sent once only");
    assert_eq!(journal.calls(), ["submitting"], "the journal keeps it as uncertain");
}

#[tokio::test]
async fn a_resumed_uncertain_submission_is_reported_not_repaid() {
    let fal = Emulator::start().await;
    let stage = build(&fal.options(json!({})));
    let mut resumed = item(0, "ur-1");
    resumed.record(inkflow::engine::run_context::RESUME_FACT, json!({"stage": "generate", "request": null}));
    let outcome = run_items(&stage, vec![resumed], &RunContext::default()).await.remove(0);
    let (message, _) = failure(&outcome);
    assert!(message.contains("--retry-failed"), "{message}");
    assert_eq!(fal.submissions("ur-1").await, 0);
}

#[tokio::test]
async fn accepted_requests_are_journaled_with_their_urls() {
    let fal = Emulator::start().await;
    let journal = Arc::new(Journal::default());
    let cx = RunContext { submissions: Some(journal.clone()), ..RunContext::default() };
    let stage = build(&fal.options(json!({})));
    let outcomes = run(&stage, &["j-1", "j-2"], &cx).await;
    outcomes.iter().for_each(|o| assert_image(o, 8, 6));
    let entries = journal.entries.lock().unwrap().clone();
    assert_eq!(entries.len(), 2);
    let (key, stage_id, request) = entries.iter().find(|(key, ..)| key == "test-00001").unwrap();
    assert_eq!((key.as_str(), stage_id.as_str()), ("test-00001", "generate"));
    let base = format!("{}{APP}/requests/j-1", fal.base());
    assert_eq!(
        request,
        &json!({"request_id": "j-1", "status_url": format!("{base}/status"), "response_url": base,
                "cancel_url": format!("{base}/cancel"), "cost_usd": 0.025,
                "price": {"cost_usd": 0.025, "unit": "megapixel", "unit_usd": 0.025, "source": "inkflow's catalogue"}})
    );
}

#[tokio::test]
async fn an_unjournaled_request_is_cancelled_and_the_item_fails() {
    let fal = Emulator::start().await;
    let cx = RunContext {
        submissions: Some(Arc::new(Journal { refuse: Some("submitted"), ..Journal::default() })),
        ..RunContext::default()
    };
    let stage = build(&fal.options(json!({})));
    let outcomes = run(&stage, &["nj-1"], &cx).await;
    let (message, _) = failure(&outcomes[0]);
    assert!(message.contains("journal could not record it (disk full)"), "{message}");
    assert_eq!(
        (fal.submissions("nj-1").await, fal.cancels("nj-1").await, fal.polls("nj-1").await),
        (1, 1, 0)
    );
}

#[tokio::test]
async fn a_resumed_item_collects_its_request_without_submitting() {
    let fal = Emulator::start().await;
    let stage = build(&fal.options(json!({})));
    let base = format!("{}{APP}/requests/old-1", fal.base());
    let mut resumed = item(0, "old-1");
    resumed.record(
        inkflow::engine::run_context::RESUME_FACT,
        json!({"stage": "generate", "request": {"request_id": "old-1", "status_url": format!("{base}/status"),
               "response_url": base, "cancel_url": format!("{base}/cancel")}}),
    );
    let outcomes = run_items(&stage, vec![resumed, item(1, "new-1")], &RunContext::default()).await;
    assert_image(&outcomes[0], 8, 6);
    assert_image(&outcomes[1], 8, 6);
    assert_eq!(
        (fal.submissions("old-1").await, fal.polls("old-1").await, fal.fetches("old-1").await),
        (0, 1, 1)
    );
    assert_eq!(outcomes[0].0.facts["request_id"], "old-1");
}

/// Keeps a request queued forever, and fires `seen` (or stops the batch) at its first poll.
struct ForeverQueued {
    base: String,
    seen: Arc<tokio::sync::Notify>,
    stop: Option<CancellationToken>,
}
impl Respond for ForeverQueued {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().split('/').nth(4).unwrap_or_default().to_owned();
        self.seen.notify_one();
        if let Some(stop) = &self.stop {
            stop.cancel();
        }
        status(202, "IN_QUEUE", &self.base, &id)
    }
}

#[tokio::test]
async fn stopping_while_queued_cancels_the_request() {
    let fal = Emulator::start().await;
    let stop = CancellationToken::new();
    let id = "waiting-1";
    let queued = ForeverQueued { base: fal.base(), seen: Default::default(), stop: Some(stop.clone()) };
    fal.on("GET", &format!("{APP}/requests/{id}/status"), queued).await;
    let stage = build(&fal.options(json!({"poll_interval_ms": 60_000})));
    let journal = Arc::new(Journal::default());
    let cx = RunContext { stop, submissions: Some(journal.clone()), ..RunContext::default() };
    let outcomes = tokio::time::timeout(Duration::from_secs(10), run(&stage, &[id], &cx)).await.unwrap();
    let message = interruption(&outcomes[0]);
    assert!(message.contains("cancelled request") && message.contains("queued"), "{message}");
    assert_eq!((fal.submissions(id).await, fal.cancels(id).await), (1, 1));
    assert_eq!(journal.settlements(), [("test-00001".to_owned(), Settlement::Cancelled, 0.0)], "recorded");
    // Nothing is left for cancel_pending to do.
    stage.cancel_pending().await;
    assert_eq!(fal.cancels(id).await, 1);
}

#[tokio::test]
async fn a_finished_request_is_downloaded_only_when_the_stages_below_have_room() {
    let fal = Emulator::start().await;
    let options = fal.options(json!({}));
    let ctx = BuildContext { room_below: 1, ..build_context(false) };
    let Component::Io(stage) = kind().build(&options, &ctx).unwrap() else { panic!("fal is an I/O stage") };
    let (held, _) = run(&stage, &["room-a"], &RunContext::default()).await.remove(0);
    let held_payload = stage.process(&mut item(5, "room-a2"), Payload::Prompt, &RunContext::default()).await;
    assert!(matches!(held_payload, Ok(Payload::Undecoded(_))), "{held:?}");
    // The one place below is taken by room-a2's image: room-b is polled and fetched, not downloaded.
    let waiting = {
        let stage = stage.clone();
        tokio::spawn(async move {
            let mut item = item(1, "room-b");
            let outcome = stage.process(&mut item, Payload::Prompt, &RunContext::default()).await;
            (item, outcome)
        })
    };
    let started = Instant::now();
    while fal.fetches("room-b").await == 0 {
        assert!(started.elapsed() < Duration::from_secs(10), "room-b was never fetched");
        tokio::task::yield_now().await;
    }
    assert_eq!(fal.downloads("room-b").await, 0, "no room below: nothing downloaded yet");
    drop(held_payload);
    let outcome = tokio::time::timeout(Duration::from_secs(10), waiting).await.unwrap().unwrap();
    assert_image(&outcome, 8, 6);
    assert_eq!(fal.downloads("room-b").await, 1);
}

/// Stops the batch at the first poll of a request, while it is queued; fal then finishes it.
struct QueuedAtTheStop {
    base: String,
    stop: CancellationToken,
    polls: AtomicUsize,
}
impl Respond for QueuedAtTheStop {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().split('/').nth(4).unwrap_or_default().to_owned();
        if self.polls.fetch_add(1, SeqCst) == 0 {
            self.stop.cancel();
            return status(202, "IN_QUEUE", &self.base, &id);
        }
        status(200, "COMPLETED", &self.base, &id)
    }
}

#[tokio::test]
async fn a_request_a_cancel_cannot_drop_is_collected_within_stop_wait() {
    let fal = Emulator::start().await;
    // fal answers each way it can to a request a runner has or has finished.
    for (id, answer) in [
        ("late-cancel-1", ResponseTemplate::new(400).set_body_json(json!({"status": "ALREADY_COMPLETED"}))),
        (
            "signalled-1",
            ResponseTemplate::new(202).set_body_json(json!({"status": "CANCELLATION_REQUESTED"})),
        ),
    ] {
        let stop = CancellationToken::new();
        let queued = QueuedAtTheStop { base: fal.base(), stop: stop.clone(), polls: AtomicUsize::new(0) };
        fal.on("GET", &format!("{APP}/requests/{id}/status"), queued).await;
        fal.on("PUT", &format!("{APP}/requests/{id}/cancel"), answer).await;
        let journal = Arc::new(Journal::default());
        let cx = RunContext { stop, submissions: Some(journal.clone()), ..RunContext::default() };
        let stage = build(&fal.options(json!({"stop_wait": "10s"})));
        let outcome = run(&stage, &[id], &cx).await.remove(0);
        assert_image(&outcome, 8, 6);
        assert_eq!(
            (fal.cancels(id).await, fal.fetches(id).await, fal.downloads(id).await),
            (1, 1, 1),
            "{id}"
        );
        assert!(journal.settlements().is_empty(), "{id}: it is paid for, and collected");
    }

    let journal = Arc::new(Journal::default());

    let id = "cancel-fails-1";
    let stop = CancellationToken::new();
    let queued = ForeverQueued { base: fal.base(), seen: Default::default(), stop: Some(stop.clone()) };
    fal.on("GET", &format!("{APP}/requests/{id}/status"), queued).await;
    let broken = ResponseTemplate::new(500).set_body_json(json!({"detail": "cancel unavailable"}));
    fal.on("PUT", &format!("{APP}/requests/{id}/cancel"), broken).await;
    let cx = RunContext { stop, submissions: Some(journal.clone()), ..RunContext::default() };
    let stage = build(&fal.options(json!({"poll_interval_ms": 60_000})));
    let outcome = run(&stage, &[id], &cx).await.remove(0);
    let message = interruption(&outcome);
    assert!(
        message.contains("cancel of request cancel-fails-1 failed") && message.contains("polls it again"),
        "{message}"
    );
    assert!(journal.settlements().is_empty());
}

#[tokio::test]
async fn cancel_pending_cancels_requests_of_dropped_items() {
    let fal = Emulator::start().await;
    let id = "parked-1";
    let seen = Arc::new(tokio::sync::Notify::new());
    let queued = ForeverQueued { base: fal.base(), seen: seen.clone(), stop: None };
    fal.on("GET", &format!("{APP}/requests/{id}/status"), queued).await;
    let stage = build(&fal.options(json!({})));
    let running = {
        let stage = stage.clone();
        tokio::spawn(async move {
            let mut item = item(0, id);
            let _ = stage.process(&mut item, Payload::Prompt, &RunContext::default()).await;
        })
    };
    seen.notified().await;
    running.abort();
    let _ = running.await;
    assert_eq!(fal.cancels(id).await, 0);
    stage.cancel_pending().await;
    assert_eq!((fal.cancels(id).await, fal.submissions(id).await), (1, 1));
}

// ---------------------------------------------------------------------------------------------
// Building and `inkflow check`

#[test]
fn the_key_is_needed_unless_dry_run() {
    let keyless = Fal::with_environment(Environment::fixed([]));
    let options = json!({"image_size": "square"});
    assert!(keyless.build(&options, &build_context(true)).is_ok());
    let error = keyless.build(&options, &build_context(false)).err().unwrap().to_string();
    assert!(error.contains("stage \"generate\"") && error.contains("FAL_KEY"), "{error}");
    let from_env =
        Fal::with_environment(Environment::fixed([("FAL_API_KEY", KEY), ("FAL_QUEUE_BASE_URL", "nope")]));
    let error = from_env.build(&options, &build_context(false)).err().unwrap().to_string();
    assert!(error.contains("FAL_QUEUE_BASE_URL"), "{error}");
}

#[tokio::test]
async fn check_reports_key_endpoint_and_a_test_image() {
    let fal = Emulator::start().await;
    let env = Environment::fixed([
        ("FAL_KEY", KEY),
        ("FAL_QUEUE_BASE_URL", &fal.base()),
        ("FAL_PLATFORM_BASE_URL", &fal.base()),
    ]);
    let lines = check_setup(&json!({}), &env, true).await;
    let oks: Vec<(bool, &str)> = lines.iter().map(|l| (l.ok, l.what.as_str())).collect();
    assert_eq!(
        oks,
        [
            (true, "API key present"),
            (true, "queue endpoint reachable"),
            (true, "API key accepted"),
            (true, "test image generated")
        ]
    );
    assert!(
        lines[3].detail.starts_with("8x6 in") && lines[3].detail.contains("$0.003"),
        "{}",
        lines[3].detail
    );
    assert!(lines[2].detail.contains("$0.025 per image for fal-ai/flux/dev"), "{}", lines[2].detail);
    let probe = fal
        .requests()
        .await
        .into_iter()
        .find(|r| r.url.path().ends_with("00000000-0000-0000-0000-000000000000/status"));
    assert_eq!(
        probe.unwrap().url.path(),
        "/fal-ai/flux/requests/00000000-0000-0000-0000-000000000000/status"
    );
    let post = fal.requests().await.into_iter().find(|r| r.method.as_str() == "POST").unwrap();
    assert_eq!(post.url.path(), "/fal-ai/flux/schnell");
    let body: Value = post.body_json().unwrap();
    assert_eq!(
        (body["image_size"].clone(), body["num_inference_steps"].clone()),
        (json!("square"), json!(1))
    );
    assert!(lines.iter().all(|l| !l.detail.contains(KEY)));
}

#[tokio::test]
async fn check_tells_a_refused_key_from_an_unreachable_host() {
    let fal = Emulator::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(401).set_body_json(json!({"detail": "Unauthorized"})))
        .with_priority(1)
        .mount(&fal.server)
        .await;
    let env = Environment::fixed([("FAL_KEY", KEY), ("FAL_PLATFORM_BASE_URL", &fal.base())]);
    let lines = check_setup(&json!({"base_url": fal.base()}), &env, true).await;
    let oks: Vec<(bool, &str)> = lines.iter().map(|l| (l.ok, l.what.as_str())).collect();
    assert_eq!(
        oks,
        [(true, "API key present"), (true, "queue endpoint reachable"), (false, "API key accepted")]
    );
    assert_eq!(fal.requests().await.iter().filter(|r| r.method.as_str() == "POST").count(), 0);

    // A wrong key that the queue answers like any other is still found out.
    let fal = Emulator::start().await;
    let wrong = Environment::fixed([("FAL_KEY", "wrong"), ("FAL_PLATFORM_BASE_URL", &fal.base())]);
    let lines = check_setup(&json!({"base_url": fal.base()}), &wrong, false).await;
    assert_eq!((lines[2].ok, lines[2].what.as_str()), (false, "API key accepted"));
    assert!(
        lines[2].detail.contains("refused the key") && lines[2].detail.contains("HTTP 401"),
        "{}",
        lines[2].detail
    );

    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap().local_addr().unwrap();
    let lines = check_setup(&json!({"base_url": format!("http://{closed}")}), &env, false).await;
    assert_eq!((lines[1].ok, lines[1].what.as_str(), lines.len()), (false, "queue endpoint reachable", 2));
    assert!(lines[1].detail.contains("could not connect"), "{}", lines[1].detail);

    let lines = check_setup(&json!({}), &Environment::fixed([]), false).await;
    assert_eq!((lines[0].ok, lines.len()), (false, 1));
    assert!(lines[0].detail.contains("FAL_KEY"));
}
