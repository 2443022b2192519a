//! fal's LLM endpoints on the emulator's server, beside the image models and without touching
//! them: `fal-ai/any-llm` (a `prompt` in, its text in `output`) and the OpenAI-style
//! `openrouter/router/openai/v1/chat/completions` (`messages` and a `response_format` in, the
//! text in `choices[0].message.content`), on the same queue protocol, each completed request
//! billed. The model reads the request as a planner would: the scenes wanted per section (the
//! line inkflow writes as JSON) and the scenes already in the book, and writes new ones, each
//! a different animal in a different place.
//!
//! A theme asks for trouble with a marker, as the image prompts do.

use std::sync::{Arc, Mutex};

use serde_json::{Value, json};
use wiremock::matchers::{method, path_regex};
use wiremock::{Mock, MockServer, Request, Respond, ResponseTemplate};

/// The first request of the plan is answered in prose, with no JSON in it.
pub const MALFORMED_ONCE: &str = "[malformed once]";
/// Every request of the plan is answered in prose.
pub const MALFORMED_ALWAYS: &str = "[malformed always]";
/// The first answer's last scene is a rewording of its first.
pub const DUPLICATES_ONCE: &str = "[duplicates once]";
/// A runner has the request (IN_PROGRESS, so it is paid for) until the test sets
/// [`LlmLedger::released`].
pub const HELD_RUNNING: &str = "[held running]";

/// The endpoints served, by path.
const ENDPOINTS: &str = r"^/(fal-ai/any-llm|openrouter/router/openai/v1/chat/completions)$";

const ANIMALS: [&str; 24] = [
    "fox",
    "owl",
    "bear",
    "otter",
    "badger",
    "hedgehog",
    "rabbit",
    "squirrel",
    "beaver",
    "moose",
    "heron",
    "lynx",
    "raccoon",
    "wolf",
    "deer",
    "frog",
    "turtle",
    "mole",
    "swan",
    "goose",
    "weasel",
    "bison",
    "eagle",
    "salamander",
];
const ACTIONS: [&str; 5] = ["reading", "painting", "juggling", "gardening", "fishing"];
const PLACES: [&str; 23] = [
    "meadow",
    "harbor",
    "attic",
    "orchard",
    "canyon",
    "glacier",
    "lagoon",
    "library",
    "market",
    "bakery",
    "island",
    "volcano",
    "vineyard",
    "castle",
    "desert",
    "bridge",
    "cave",
    "pier",
    "treehouse",
    "greenhouse",
    "station",
    "tundra",
    "waterfall",
];

/// What the LLM endpoints were asked.
#[derive(Default)]
pub struct LlmLedger {
    /// Each accepted request's endpoint and input, in order.
    pub requests: Vec<(String, Value)>,
    /// Result fetches per request (index into `requests`).
    pub result_fetches: Vec<u32>,
    /// Requests that ran and were billed.
    pub billed: u32,
    /// Status polls over all requests.
    pub polls: u32,
    /// Lets every [`HELD_RUNNING`] request complete.
    pub released: bool,
}

impl LlmLedger {
    /// The prompt text of request `n` (either shape).
    pub fn prompt(&self, n: usize) -> String {
        let input = &self.requests[n].1;
        input["prompt"]
            .as_str()
            .or_else(|| input["messages"].as_array()?.last()?["content"].as_str())
            .unwrap_or_default()
            .to_owned()
    }
}

/// The LLM endpoints, mounted on a running emulator's server.
pub struct FalLlm {
    pub ledger: Arc<Mutex<LlmLedger>>,
}

impl FalLlm {
    /// Mounts the endpoints on `server`, ahead of its image models.
    pub async fn mount(server: &MockServer) -> Self {
        let ledger = Arc::new(Mutex::new(LlmLedger::default()));
        Mock::given(method("POST"))
            .and(path_regex(ENDPOINTS))
            .respond_with(Submit(ledger.clone(), server.uri()))
            .with_priority(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/llm/requests/[0-9]+/status$"))
            .respond_with(Status(ledger.clone()))
            .with_priority(1)
            .mount(server)
            .await;
        Mock::given(method("GET"))
            .and(path_regex(r"^/llm/requests/[0-9]+$"))
            .respond_with(Answer(ledger.clone()))
            .with_priority(1)
            .mount(server)
            .await;
        FalLlm { ledger }
    }
}

struct Submit(Arc<Mutex<LlmLedger>>, String);
impl Respond for Submit {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let Ok(input) = request.body_json::<Value>() else {
            return ResponseTemplate::new(422).set_body_json(json!({"detail": "the body is not JSON"}));
        };
        let mut ledger = self.0.lock().unwrap();
        let id = ledger.requests.len();
        ledger.requests.push((request.url.path().trim_start_matches('/').to_owned(), input));
        ledger.result_fetches.push(0);
        let url = format!("{}/llm/requests/{id}", self.1);
        ResponseTemplate::new(200).set_body_json(json!({
            "request_id": format!("llm-{id}"), "response_url": url, "status_url": format!("{url}/status"),
            "cancel_url": format!("{url}/cancel"),
        }))
    }
}

struct Status(Arc<Mutex<LlmLedger>>);
impl Respond for Status {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id: usize =
            request.url.path().split('/').nth(3).and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        let mut ledger = self.0.lock().unwrap();
        ledger.polls += 1;
        if id < ledger.requests.len() && !ledger.released && ledger.prompt(id).contains(HELD_RUNNING) {
            return ResponseTemplate::new(202).set_body_json(json!({"status": "IN_PROGRESS"}));
        }
        ResponseTemplate::new(200).set_body_json(json!({"status": "COMPLETED"}))
    }
}

/// The answer of a request: written once, when first fetched, and the same on every fetch.
struct Answer(Arc<Mutex<LlmLedger>>);
impl Respond for Answer {
    fn respond(&self, request: &Request) -> ResponseTemplate {
        let id: usize =
            request.url.path().rsplit('/').next().and_then(|n| n.parse().ok()).unwrap_or(usize::MAX);
        let mut ledger = self.0.lock().unwrap();
        let Some(fetches) = ledger.result_fetches.get_mut(id) else {
            return ResponseTemplate::new(404).set_body_json(json!({"detail": "Request not found"}));
        };
        *fetches += 1;
        if *fetches == 1 {
            ledger.billed += 1;
        }
        let text = ledger.answer_text(id);
        let chat = ledger.requests[id].0.ends_with("/chat/completions");
        ResponseTemplate::new(200).set_body_json(if chat {
            json!({"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]})
        } else {
            json!({"output": text, "partial": false, "error": null})
        })
    }
}

impl LlmLedger {
    /// What the model says to request `id`: prose when the theme asks for it, else the scenes
    /// wanted, none repeating a scene the request lists.
    fn answer_text(&self, id: usize) -> String {
        let prompt = self.prompt(id);
        let first = id == 0;
        if prompt.contains(MALFORMED_ALWAYS) || (first && prompt.contains(MALFORMED_ONCE)) {
            return "What a lovely idea for a book! Here are some scenes you could draw.".into();
        }
        // Scenes are numbered on from those earlier requests asked for, so every fetch of an
        // answer is the same and another request's scenes are new.
        let start = self.requests[..id].iter().map(|(_, input)| wanted_total(input)).sum::<usize>();
        let wanted = wanted(&prompt);
        let mut scenes = Vec::new();
        let mut k = start;
        for (section, count) in wanted {
            for _ in 0..count {
                let scene = scene_text(k);
                k += 1;
                scenes.push(json!({"section": section, "description": format!("scene {k}"), "scene": scene}));
            }
        }
        if first
            && prompt.contains(DUPLICATES_ONCE)
            && let (Some(first_scene), Some(last)) = (scenes.first().cloned(), scenes.last_mut())
        {
            let reworded = first_scene["scene"].as_str().unwrap_or_default().replacen("a ", "the ", 1) + "!";
            last["scene"] = json!(reworded);
        }
        format!("```json\n{}\n```", json!({"scenes": scenes}))
    }
}

/// The `k`th scene the model writes: a different animal and place every time.
fn scene_text(k: usize) -> String {
    format!(
        "a {} {} in the {}",
        ANIMALS[k % ANIMALS.len()],
        ACTIONS[(k / ANIMALS.len()) % ACTIONS.len()],
        PLACES[k % PLACES.len()]
    )
}

/// The sections and counts the request asks for (inkflow's JSON line).
fn wanted(prompt: &str) -> Vec<(String, usize)> {
    let line = prompt.lines().find_map(|l| l.strip_prefix("Scenes wanted per section:")).unwrap_or("{}");
    let counts: serde_json::Map<String, Value> = serde_json::from_str(line.trim()).unwrap_or_default();
    counts.into_iter().map(|(s, n)| (s, n.as_u64().unwrap_or(0) as usize)).collect()
}

fn wanted_total(input: &Value) -> usize {
    let prompt = input["prompt"]
        .as_str()
        .or_else(|| input["messages"].as_array()?.last()?["content"].as_str())
        .unwrap_or_default();
    wanted(prompt).iter().map(|(_, n)| n).sum()
}
