//! Whole batches through the `inkflow` binary against the fal emulator's failure modes: for
//! each, what fal accepted (and charged), the item's state and message, and what a plain
//! resume and `--retry-failed` then do.

use std::path::{Path, PathBuf};

use crate::common::fal_emulator::{
    ACCEPTED_THEN_504, ANSWERS_SVG, ANSWERS_WEBP, CDN_404_ONCE, FLAGGED, FalEmulator, INGRESS_502,
    LOCKED_KEY, LOCKED_REASON, Latency, NEVER_COMPLETES, NOT_AN_IMAGE, POLICY_422, REFUSED_KEY,
    RESULT_500_ONCE, RUNS_AFTER_CANCEL, SPOILED_FIRST, STATUS_CUT_ONCE, SUBMIT_503_RETRYABLE,
};
use inkflow::engine::journal::{Journal, Status};
use tokio::process::Command;

/// A prompt that never has trouble, run beside the one that does.
pub(crate) const CALM: &str = "a calm lake with reeds";

/// A pipeline generating `prompts` through the emulator at `base`, with `more` fal options.
fn pipeline(dir: &Path, base: &str, prompts: &[&str], more: &str) -> PathBuf {
    pipeline_with_sinks(dir, base, prompts, more, "")
}

/// A pipeline file in `dir`: `prompts` generated through the emulator at `base` (with `more`
/// fal options), then `rest` (the stages after `generate`, and the sinks).
pub(crate) fn fal_pipeline(dir: &Path, base: &str, prompts: &[&str], more: &str, rest: &str) -> PathBuf {
    let prompts: Vec<serde_json::Value> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| serde_json::json!({"section": "s", "image_number": i + 1, "image_prompt": p, "description": format!("p{}", i + 1)}))
        .collect();
    let prompts_file = dir.join("prompts.json");
    std::fs::write(&prompts_file, serde_json::json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("pipeline.yaml");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {prompts} }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{base}\", image_size: square, poll_interval_ms: 20,
              base_delay_ms: 10, max_attempts: 3, deadline: 3s{more} }}
{rest}",
            prompts = prompts_file.display()
        ),
    )
    .unwrap();
    file
}

/// [`pipeline`] with more sinks.
fn pipeline_with_sinks(dir: &Path, base: &str, prompts: &[&str], more: &str, sinks: &str) -> PathBuf {
    let rest = format!(
        "  gray: {{ kind: grayscale, inputs: [generate] }}
  lineart: {{ kind: threshold, inputs: [gray] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
  book: {{ kind: pdf, inputs: [lineart], path: book.pdf }}
{sinks}"
    );
    fal_pipeline(dir, base, prompts, more, &rest)
}

/// What the batch looks like after one run.
#[derive(Debug)]
struct Seen {
    succeeded: bool,
    /// Accepted submissions of the troubled prompt, and fal calls over all its requests.
    accepted: u32,
    polls: u32,
    result_fetches: u32,
    image_fetches: u32,
    cancels: u32,
    /// The troubled item's journal state and message.
    state: String,
    error: String,
    status: Status,
}

/// One batch with `CALM` as page 1 and `trouble` as page 2, run three times: once, resumed,
/// and with `--retry-failed`.
struct Scenario {
    fal: FalEmulator,
    _dir: tempfile::TempDir,
    pipeline: PathBuf,
    out: PathBuf,
    trouble: String,
}

impl Scenario {
    async fn new(trouble: &str, more: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fal = FalEmulator::start(Latency::default()).await;
        let trouble = format!("a fox in the snow {trouble}");
        let pipeline = pipeline(dir.path(), &fal.base(), &[CALM, &trouble], more);
        let out = dir.path().join("out");
        Scenario { fal, _dir: dir, pipeline, out, trouble }
    }

    async fn run(&self, args: &[&str]) -> Seen {
        let output = inkflow("test-key-not-a-secret", &self.pipeline, &self.out, args).await;
        let items = Journal::items(&self.out).unwrap();
        let calm = items.iter().find(|i| i.description == "p1").unwrap();
        assert_eq!(calm.state, "written", "the neighbour is never disturbed: {calm:?}");
        let troubled = items.iter().find(|i| i.description == "p2").unwrap();
        let ledger = self.fal.ledger.lock().unwrap();
        assert_eq!(ledger.accepted(CALM), 1, "the neighbour is paid for once");
        Seen {
            succeeded: output.status.success(),
            accepted: ledger.accepted(&self.trouble),
            polls: ledger.calls(&ledger.polls, &self.trouble),
            result_fetches: ledger.calls(&ledger.result_fetches, &self.trouble),
            image_fetches: ledger.calls(&ledger.image_fetches, &self.trouble),
            cancels: ledger.calls(&ledger.cancels, &self.trouble),
            state: troubled.state.clone(),
            error: troubled.error.clone().unwrap_or_default(),
            status: Journal::status(&self.out).unwrap(),
        }
    }

    /// The first run, a plain resume and a run with `--retry-failed`.
    async fn three_runs(&self) -> [Seen; 3] {
        [self.run(&[]).await, self.run(&[]).await, self.run(&["--retry-failed"]).await]
    }
}

/// `inkflow run PIPELINE --output OUT ARGS` with `key` as FAL_KEY.
pub(crate) async fn inkflow(key: &str, pipeline: &Path, out: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("FAL_KEY", key)
        .env_remove("FAL_API_KEY")
        .arg("run")
        .arg(pipeline)
        .arg("--output")
        .arg(out)
        .args(args)
        .output()
        .await
        .unwrap()
}

fn spent(seen: &Seen) -> f64 {
    (seen.status.spent_usd * 1000.0).round() / 1000.0
}

/// Money the journal in `out` counts as spent.
fn spent_in(out: &Path) -> f64 {
    (Journal::status(out).unwrap().spent_usd * 1000.0).round() / 1000.0
}

#[tokio::test]
async fn a_504_to_an_accepted_submit_is_possibly_charged_and_never_repaid_unasked() {
    let scenario = Scenario::new(ACCEPTED_THEN_504, "").await;
    let [first, resumed, retried] = scenario.three_runs().await;
    assert_eq!((first.accepted, first.state.as_str(), first.succeeded), (1, "failed", false));
    assert!(first.error.contains("HTTP 504") && first.error.contains("may have accepted"), "{}", first.error);
    assert!(first.error.contains("--retry-failed"), "{}", first.error);
    assert_eq!(first.status.uncertain_submissions, 1);
    assert_eq!(spent(&first), 0.05, "the possibly charged request counts as spent");
    assert_eq!(
        (resumed.accepted, resumed.state.as_str(), resumed.status.uncertain_submissions),
        (1, "failed", 1)
    );
    assert_eq!((retried.accepted, retried.state.as_str(), retried.succeeded), (2, "written", true));
    assert_eq!((retried.status.uncertain_submissions, spent(&retried)), (0, 0.075));
}

#[tokio::test]
async fn a_proxys_502_page_to_a_submit_is_retried_at_once() {
    let scenario = Scenario::new(INGRESS_502, "").await;
    let [first, resumed, _] = scenario.three_runs().await;
    assert_eq!(scenario.fal.ledger.lock().unwrap().refused.values().sum::<u32>(), 1);
    assert_eq!((first.accepted, first.state.as_str(), first.succeeded), (1, "written", true));
    assert_eq!((resumed.accepted, resumed.polls), (1, first.polls), "nothing left to do");
}

#[tokio::test]
async fn a_422_after_completed_fails_for_good_with_fals_words_and_costs_its_price() {
    let scenario = Scenario::new(POLICY_422, "").await;
    let [first, resumed, retried] = scenario.three_runs().await;
    assert_eq!((first.accepted, first.state.as_str(), first.succeeded), (1, "failed", false));
    let request = scenario.fal.ledger.lock().unwrap().requests_of(&scenario.trouble)[0].clone();
    for words in
        ["HTTP 422", "content_policy_violation", "flagged by the content checker", &request, "--retry-failed"]
    {
        assert!(first.error.contains(words), "{words:?} missing from {}", first.error);
    }
    assert_eq!(first.status.settled_submissions, [("failed".to_owned(), 1)]);
    assert_eq!((first.status.unfinished_submissions, spent(&first)), (0, 0.05), "fal may charge a 422");
    // A plain resume leaves the dead request alone: no poll, no fetch, no new submission.
    assert_eq!(
        (resumed.accepted, resumed.polls, resumed.result_fetches, resumed.state.as_str()),
        (1, first.polls, first.result_fetches, "failed")
    );
    assert_eq!((retried.accepted, retried.state.as_str(), spent(&retried)), (2, "written", 0.075));
}

#[tokio::test]
async fn one_500_on_the_result_and_one_404_on_the_cdn_are_retried_for_free() {
    for (trouble, fetches) in [(RESULT_500_ONCE, (2, 1)), (CDN_404_ONCE, (1, 2))] {
        let scenario = Scenario::new(trouble, "").await;
        let first = scenario.run(&[]).await;
        assert_eq!(
            (first.accepted, first.state.as_str(), first.succeeded),
            (1, "written", true),
            "{trouble}"
        );
        assert_eq!((first.result_fetches, first.image_fetches), fetches, "{trouble}");
        assert_eq!(spent(&first), 0.05, "{trouble}");
    }
}

#[tokio::test]
async fn a_request_that_never_completes_is_cancelled_at_the_deadline() {
    let scenario = Scenario::new(NEVER_COMPLETES, ", start_timeout: 90s").await;
    let [first, resumed, retried] = scenario.three_runs().await;
    assert_eq!((first.accepted, first.cancels, first.state.as_str()), (1, 1, "failed"));
    assert!(first.error.contains("deadline of 3s") && first.error.contains("not charged"), "{}", first.error);
    assert_eq!(first.status.settled_submissions, [("cancelled".to_owned(), 1)]);
    assert_eq!(spent(&first), 0.025, "a request cancelled in the queue costs nothing");
    assert_eq!((resumed.accepted, resumed.polls, resumed.cancels), (1, first.polls, 1), "not polled again");
    assert_eq!((retried.accepted, retried.cancels, retried.state.as_str()), (2, 2, "failed"));
    let ledger = scenario.fal.ledger.lock().unwrap();
    let start_timeouts: Vec<&String> = ledger.start_timeouts.values().collect();
    assert!(start_timeouts.len() >= 3 && start_timeouts.iter().all(|t| *t == "90"), "{start_timeouts:?}");
}

#[tokio::test]
async fn a_flagged_result_is_collected_as_filtered_and_never_polled_again() {
    let scenario = Scenario::new(FLAGGED, "").await;
    let first = scenario.run(&[]).await;
    let resumed = scenario.run(&[]).await;
    assert_eq!((first.accepted, first.image_fetches, first.state.as_str()), (1, 0, "filtered"));
    assert_eq!(first.status.settled_submissions, [("filtered".to_owned(), 1)]);
    assert_eq!(first.status.unfinished_submissions, 0);
    assert_eq!(
        (resumed.accepted, resumed.polls, resumed.result_fetches, resumed.state.as_str()),
        (1, first.polls, first.result_fetches, "filtered")
    );
    assert_eq!(spent(&resumed), 0.05, "the flagged image is paid once, counted once");
}

#[tokio::test]
async fn every_image_of_a_request_is_downloaded_cached_and_listed() {
    let scenario = Scenario::new("", ", num_images: 3").await;
    let first = scenario.run(&[]).await;
    assert_eq!((first.accepted, first.image_fetches, first.state.as_str()), (1, 3, "written"));
    assert_eq!(spent(&first), 0.15, "three images per request, two requests");
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(scenario.out.join("metadata/02.json")).unwrap()).unwrap();
    let images = metadata["images"].as_array().expect("the images are listed");
    assert_eq!(images.len(), 3);
    assert_eq!(images.iter().filter(|i| i["page"] == true).count(), 1);
    let cached = std::fs::read_dir(scenario.out.join("cache/raw"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .count();
    assert_eq!(cached, 6, "every paid image is kept");
}

#[tokio::test]
async fn a_refused_key_stops_the_batch_with_one_message_and_no_book() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts: Vec<String> = (1..=8).map(|i| format!("a kite number {i}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = pipeline(dir.path(), &fal.base(), &prompts, "");
    let out = dir.path().join("out");
    let output = inkflow(REFUSED_KEY, &file, &out, &[]).await;
    assert_eq!(
        output.status.code(),
        Some(1),
        "a batch that stops itself failed; it was not the user's Ctrl-C"
    );
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    // The live log line and the summary's `stopped` row, not one line per item.
    assert_eq!(printed.matches("refused the API key").count(), 2, "{printed}");
    assert!(
        printed.contains("failed                   0") && printed.contains("not started              8"),
        "{printed}"
    );
    assert!(!printed.contains(REFUSED_KEY), "the key is never printed:\n{printed}");
    assert_eq!(fal.total_submissions(), 0);
    assert!(!out.join("book.pdf").exists(), "no book made of placeholder pages");
    let status = Journal::status(&out).unwrap();
    let stopped = status.stopped.unwrap_or_default();
    assert!(stopped.contains("refused the API key"), "{stopped}");
    assert!(
        status.states.iter().all(|(state, _)| state != "failed"),
        "the items are not failed, only not done: {:?}",
        status.states
    );
}

#[tokio::test]
async fn a_sink_reading_fals_images_directly_gets_them_decoded() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let originals =
        "  originals: { kind: disk, inputs: [generate], dir: originals, filename: \"{number:02}.png\" }\n";
    let file = pipeline_with_sinks(dir.path(), &fal.base(), &[CALM], "", originals);
    let out = dir.path().join("out");
    let output = inkflow("test-key-not-a-secret", &file, &out, &[]).await;
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stdout));
    let original = image::open(out.join("originals/01.png")).unwrap();
    assert_eq!(
        (original.width(), original.height()),
        (300, 400),
        "the emulator's image, decoded and written"
    );
}

/// A pipeline that judges every print page with `lineart-check` (`check`: its options).
fn judged_pipeline(dir: &Path, base: &str, prompts: &[&str], check: &str) -> PathBuf {
    let rest = format!(
        "  gray: {{ kind: grayscale, inputs: [generate] }}
  print: {{ kind: upscale, inputs: [gray], width: 2550, height: 3300, fit: contain, dpi: 300 }}
  quality: {{ kind: lineart-check, inputs: [print], {check} }}
  lineart: {{ kind: threshold, inputs: [quality] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
"
    );
    fal_pipeline(dir, base, prompts, "", &rest)
}

pub(crate) fn read_json(path: &Path) -> serde_json::Value {
    let text = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&text).unwrap()
}

/// The verdict and candidate number a page's (or a kept candidate's) metadata records.
pub(crate) fn judged(meta: &serde_json::Value) -> (String, u64) {
    (
        meta["quality"]["verdict"].as_str().unwrap_or_default().to_owned(),
        meta["candidate"].as_u64().unwrap_or(99),
    )
}

async fn pick(out: &Path, key: &str, candidate: u32) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .arg("pick")
        .arg(out)
        .arg(key)
        .arg(candidate.to_string())
        .output()
        .await
        .unwrap()
}

pub(crate) fn succeeded(output: &std::process::Output) {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn a_rejected_page_is_generated_again_with_a_new_seed_and_every_paid_candidate_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let spoiled = format!("a fox in the snow {SPOILED_FIRST}");
    let file = judged_pipeline(dir.path(), &fal.base(), &[CALM, &spoiled], "max_rerolls: 2");
    let out = dir.path().join("out");
    succeeded(&inkflow("test-key-not-a-secret", &file, &out, &[]).await);

    let seeds: Vec<Option<u64>> = {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!(ledger.accepted(CALM), 1, "a page that passes is made once");
        assert_eq!(ledger.accepted(&spoiled), 2, "one re-roll, and the second drawing passes");
        ledger.requests_of(&spoiled).iter().map(|id| ledger.bodies[id]["seed"].as_u64()).collect()
    };
    assert!(seeds[0].is_none() && seeds[1].is_some(), "the re-roll asks for a new seed: {seeds:?}");
    assert_eq!(spent_in(&out), 0.075, "three requests paid, each once");
    let page = read_json(&out.join("metadata/02.json"));
    assert_eq!(judged(&page), ("pass".to_owned(), 1), "the passing re-roll is the page");
    assert_eq!(page["seed"].as_u64(), seeds[1]);
    let rejected = read_json(&out.join("rejected/02.c0.json"));
    assert_eq!(judged(&rejected), ("reject".to_owned(), 0));
    assert!(rejected["quality"]["problems"].as_array().unwrap().contains(&"heavy_ink".into()), "{rejected}");
    let kept = image::open(out.join("rejected/02.c0.png")).unwrap().to_luma8();
    assert_eq!(kept.dimensions(), (2550, 3300));
    let black = kept.pixels().filter(|p| p.0[0] == 0).count() as f64 / f64::from(2550 * 3300);
    assert!(black > 0.1, "the rejected candidate is the blob page as drawn: {black:.3} black");
    let summary = read_json(&out.join("batch_metadata.json"));
    assert_eq!(summary["verdicts"], serde_json::json!({"pass": 2}));
    assert_eq!(summary["extra_candidates"], 1);

    // A resume has nothing to do: no request, no re-roll.
    succeeded(&inkflow("test-key-not-a-secret", &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 3);

    // Choosing the rejected candidate after all: it becomes the page from the raw cache.
    let key = page["key"].as_str().unwrap().to_owned();
    succeeded(&pick(&out, &key, 0).await);
    assert!(!pick(&out, &key, 7).await.status.success(), "there is no candidate 7");
    succeeded(&inkflow("test-key-not-a-secret", &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 3, "a pick pays nothing");
    assert_eq!(judged(&read_json(&out.join("metadata/02.json"))), ("reject".to_owned(), 0));
    assert_eq!(judged(&read_json(&out.join("candidates/02.c1.json"))), ("pass".to_owned(), 1));
    assert!(out.join("candidates/02.c1.png").is_file() && !out.join("rejected/02.c0.png").exists());
}

#[tokio::test]
async fn best_of_n_asks_for_n_images_in_one_request_and_keeps_the_runners_up() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let spoiled = format!("a kite over the dunes {SPOILED_FIRST}");
    let file = judged_pipeline(dir.path(), &fal.base(), &[&spoiled], "best_of: 3");
    let out = dir.path().join("out");
    succeeded(&inkflow("test-key-not-a-secret", &file, &out, &[]).await);
    {
        let ledger = fal.ledger.lock().unwrap();
        let requests = ledger.requests_of(&spoiled);
        assert_eq!(requests.len(), 1, "one request makes every candidate");
        assert_eq!(ledger.bodies[&requests[0]]["num_images"], 3);
        assert_eq!(ledger.image_fetches[&requests[0]], 3);
    }
    assert_eq!(spent_in(&out), 0.075, "three images, paid once");
    assert_eq!(judged(&read_json(&out.join("metadata/01.json"))), ("pass".to_owned(), 1));
    assert_eq!(judged(&read_json(&out.join("rejected/01.c0.json"))), ("reject".to_owned(), 0));
    assert_eq!(judged(&read_json(&out.join("candidates/01.c2.json"))), ("pass".to_owned(), 2));
    succeeded(&inkflow("test-key-not-a-secret", &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 1, "a resume pays nothing");
}

/// Issue 31 item 4: a vector answer (SVG) becomes a page drawn at print size and the SVG is
/// kept in the raw cache, named in the page's `images`; a WebP answer becomes a page too.
#[tokio::test]
async fn every_format_a_model_answers_becomes_a_page_and_a_vector_original_is_kept() {
    let scenario = Scenario::new(ANSWERS_SVG, "").await;
    let first = scenario.run(&[]).await;
    assert_eq!(
        (first.accepted, first.state.as_str(), first.succeeded),
        (1, "written", true),
        "{}",
        first.error
    );
    let metadata = read_json(&scenario.out.join("metadata/02.json"));
    let image = &metadata["images"][0];
    assert_eq!(image["format"], "svg", "{metadata:#}");
    let original = std::fs::read_to_string(image["original"].as_str().expect("the vector is kept")).unwrap();
    assert!(original.contains("<svg") && original.contains("<circle"), "{original}");
    // Drawn at print size (3300 px on the long side) in the drawing's own 3:4 shape.
    assert_eq!(
        (metadata["width"].as_u64(), metadata["height"].as_u64()),
        (Some(2475), Some(3300)),
        "{metadata:#}"
    );

    let webp = Scenario::new(ANSWERS_WEBP, "").await;
    let first = webp.run(&[]).await;
    assert_eq!(
        (first.accepted, first.state.as_str(), first.succeeded),
        (1, "written", true),
        "{}",
        first.error
    );
    assert_eq!(read_json(&webp.out.join("metadata/02.json"))["images"][0]["format"], "webp");
}

/// Issue 31 item 4: the bytes of a paid request enter the raw cache before they are read, so
/// one that is not an image fails its item and is never paid for again, by a resume or by
/// `--retry-failed`.
#[tokio::test]
async fn a_paid_image_that_cannot_be_decoded_is_never_paid_again() {
    let scenario = Scenario::new(NOT_AN_IMAGE, "").await;
    let [first, resumed, retried] = scenario.three_runs().await;
    assert_eq!((first.accepted, first.state.as_str()), (1, "failed"));
    assert!(first.error.contains("not a PNG, JPEG or WebP image"), "{}", first.error);
    assert_eq!((resumed.accepted, resumed.image_fetches), (1, first.image_fetches));
    assert_eq!((retried.accepted, retried.state.as_str()), (1, "failed"), "read again from the cache");
    assert!(retried.error.contains("raw cache"), "{}", retried.error);
    assert_eq!(spent(&retried), 0.05, "paid once");
}

/// Issue 31 item 7: a cancel fal answers CANCELLATION_REQUESTED leaves the request running:
/// it is polled on, collected when it completes, and counted as spent.
#[tokio::test]
async fn a_request_fal_only_signalled_to_cancel_is_collected_and_counted() {
    let scenario = Scenario::new(RUNS_AFTER_CANCEL, "").await;
    let first = scenario.run(&[]).await;
    assert_eq!((first.accepted, first.cancels), (1, 1));
    assert_eq!((first.state.as_str(), first.image_fetches), ("written", 1), "{}", first.error);
    assert!(first.status.settled_submissions.is_empty(), "{:?}", first.status.settled_submissions);
    assert_eq!(spent(&first), 0.05, "the request completed after the cancel, so it is paid for");
}

/// Issue 31 item 7: a locked account stops the batch with fal's reason (not "bad key"), and
/// `inkflow check` says the account is locked.
#[tokio::test]
async fn a_locked_account_stops_the_batch_with_fals_reason_and_check_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts: Vec<String> = (1..=4).map(|i| format!("a kite number {i}")).collect();
    let prompts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = pipeline(dir.path(), &fal.base(), &prompts, "");
    let out = dir.path().join("out");
    let output = inkflow(LOCKED_KEY, &file, &out, &[]).await;
    assert_eq!(output.status.code(), Some(1));
    let printed =
        format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(printed.contains(LOCKED_REASON) && printed.contains("account is locked"), "{printed}");
    assert!(!printed.contains("refused the API key"), "{printed}");
    assert_eq!(fal.total_submissions(), 0);
    let stopped = Journal::status(&out).unwrap().stopped.unwrap_or_default();
    assert!(stopped.contains(LOCKED_REASON), "{stopped}");

    let check = Command::new(env!("CARGO_BIN_EXE_inkflow"))
        .current_dir(dir.path())
        .env("FAL_KEY", LOCKED_KEY)
        .env_remove("FAL_API_KEY")
        .env("FAL_QUEUE_BASE_URL", fal.base())
        .env("FAL_PLATFORM_BASE_URL", fal.base())
        .arg("check")
        .output()
        .await
        .unwrap();
    let said = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{said}");
    assert!(said.contains("account is locked") && said.contains(LOCKED_REASON), "{said}");
}

/// Issue 31 item 7: `X-Fal-Retryable: true` on fal's error to a submission does not make it
/// retryable: fal may have accepted it, so it is not paid for twice.
#[tokio::test]
async fn a_retryable_header_never_repeats_a_submission() {
    let scenario = Scenario::new(SUBMIT_503_RETRYABLE, "").await;
    let first = scenario.run(&[]).await;
    assert_eq!((first.accepted, first.state.as_str()), (1, "failed"));
    assert!(first.error.contains("HTTP 503") && first.error.contains("may have accepted"), "{}", first.error);
}

/// Issue 30 item 7: a status answer cut short is a glitch on a free call: polled again, not
/// the end of the item.
#[tokio::test]
async fn a_status_answer_cut_short_is_polled_again() {
    let scenario = Scenario::new(STATUS_CUT_ONCE, "").await;
    let first = scenario.run(&[]).await;
    assert_eq!(
        (first.accepted, first.state.as_str(), first.succeeded),
        (1, "written", true),
        "{}",
        first.error
    );
    assert!(first.polls >= 2, "{first:?}");
}
