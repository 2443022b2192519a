//! A small emulation of fal.ai's queue API for whole-batch tests: every submission gets a new
//! request id and URLs under the app (`fal-ai/flux`), status polls answer COMPLETED (after an
//! optional delay), results point at a PNG on the same server, drawn from the prompt so the
//! image is realistic line art and the same prompt always gives the same bytes.

use std::collections::{HashMap, HashSet};
use std::io::Cursor;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

const APP: &str = "/fal-ai/flux";
/// A prompt containing this comes back flagged with `has_nsfw_concepts`.
pub const FLAGGED: &str = "[flag me]";

/// Where the test can see what the emulator was asked.
#[derive(Default)]
pub struct Ledger {
    /// Accepted submissions per prompt.
    pub submissions: HashMap<String, u32>,
    /// The prompt of each request id.
    pub prompts: HashMap<String, String>,
    /// Image downloads started.
    pub downloads: u32,
    /// Request ids whose status was asked for: inkflow polls a request only once it has
    /// journaled it.
    pub polled: HashSet<String>,
}

/// A running emulator.
pub struct FalEmulator {
    pub server: MockServer,
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
    Fixed(Arc<Vec<u8>>),
}

struct Submit(Arc<Mutex<Ledger>>, String, Duration);
impl Respond for Submit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let body: Value = request.body_json().unwrap_or(Value::Null);
        let prompt = body["prompt"].as_str().unwrap_or_default().to_owned();
        let mut ledger = self.0.lock().unwrap();
        *ledger.submissions.entry(prompt.clone()).or_default() += 1;
        let id = format!("req-{}", ledger.prompts.len() + 1);
        ledger.prompts.insert(id.clone(), prompt);
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
        let id = request.url.path().split('/').nth(4).unwrap_or_default().to_owned();
        self.0.lock().unwrap().polled.insert(id);
        ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"})).set_delay(self.1)
    }
}

struct Result(Arc<Mutex<Ledger>>, String);
impl Respond for Result {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id = request.url.path().rsplit('/').next().unwrap_or_default().to_owned();
        if !self.0.lock().unwrap().prompts.contains_key(&id) {
            return ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"}));
        }
        // fal's safety checker flags what it flags; here, prompts that ask to be flagged.
        let flagged = self.0.lock().unwrap().prompts.get(&id).is_some_and(|p| p.contains(FLAGGED));
        ResponseTemplate::new(200).set_body_json(json!({
            "images": [{"url": format!("{}/files/{id}.png", self.1), "content_type": "image/png"}],
            "seed": 42, "has_nsfw_concepts": [flagged], "timings": {"inference": 0.5},
        }))
    }
}

struct Download(Arc<Mutex<Ledger>>, Duration, Images);
impl Respond for Download {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id =
            request.url.path().rsplit('/').next().unwrap_or_default().trim_end_matches(".png").to_owned();
        let prompt = {
            let mut ledger = self.0.lock().unwrap();
            ledger.downloads += 1;
            ledger.prompts.get(&id).cloned()
        };
        let Some(prompt) = prompt else { return ResponseTemplate::new(404) };
        let body = match &self.2 {
            Images::FromPrompt => line_art_png(&prompt),
            Images::Fixed(bytes) => bytes.as_ref().clone(),
        };
        ResponseTemplate::new(200).set_body_raw(body, "image/png").set_delay(self.1)
    }
}

/// What "the model" draws for a prompt: the offline generator's page, as a PNG.
pub fn line_art_png(prompt: &str) -> Vec<u8> {
    let raster = inkflow::imaging::pattern::draw(prompt, 1, 300, 400);
    let inkflow::engine::media::Pixels::Rgb(rgb) = raster.pixels else { panic!("pattern draws RGB") };
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
            .and(path_regex(r"^/fal-ai/flux/dev$"))
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
            .respond_with(
                ResponseTemplate::new(200).set_body_json(json!({"status": "CANCELLATION_REQUESTED"})),
            )
            .mount(&server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/files/[^/]+\.png$"))
            .respond_with(Download(ledger.clone(), latency.download, images))
            .mount(&server)
            .await;
        FalEmulator { server, ledger }
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
