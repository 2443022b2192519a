//! Reruns of a finished batch whose judged pages used up their candidates: such a page is
//! settled. A plain rerun pays nothing for it and makes no new candidate of it, whatever a sink
//! says of it (a book that printed it as a placeholder or left it out, a page file deleted
//! since); `--retry-failed` makes it again. Through the binary, with the fal emulator counting
//! paid requests, and offline with `pattern`.

use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use crate::common::fal_emulator::{FalEmulator, Latency, SPOILED_ALWAYS};
use crate::common::pdf_reader::{load, page_image, pages};
use crate::fal_batch::{CALM, fal_pipeline, inkflow, judged, read_json, succeeded};
use inkflow::engine::journal::Journal;
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::engine::runtime::{self, RunSettings};

const KEY: &str = "test-key-not-a-secret";

/// The stages after `generate` of a batch whose pages `lineart-check` judges (`check`: its
/// options), written to disk and to a book that treats a rejected page as `rejected` says.
fn judged_book(input: &str, check: &str, rejected: &str) -> String {
    format!(
        "  gray: {{ kind: grayscale, inputs: [{input}] }}
  print: {{ kind: upscale, inputs: [gray], width: 600, height: 800, fit: contain, dpi: 100 }}
  quality: {{ kind: lineart-check, inputs: [print], {check} }}
  lineart: {{ kind: threshold, inputs: [quality] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
  book: {{ kind: pdf, inputs: [lineart], path: book.pdf, title: Owls, rejected: {rejected} }}
"
    )
}

/// A fal batch of two pages judged as [`judged_book`] says: a calm one that passes, and an owl
/// no seed draws well, so every candidate of it is rejected.
struct OwlBatch {
    _dir: tempfile::TempDir,
    fal: FalEmulator,
    /// The owl's prompt.
    owl: String,
    file: PathBuf,
    out: PathBuf,
}

impl OwlBatch {
    async fn new(check: &str, rejected: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let fal = FalEmulator::start(Latency::default()).await;
        let owl = format!("an owl on a branch {SPOILED_ALWAYS}");
        let stages = judged_book("generate", check, rejected);
        let file = fal_pipeline(dir.path(), &fal.base(), &[CALM, &owl], "", &stages);
        let out = dir.path().join("out");
        OwlBatch { _dir: dir, fal, owl, file, out }
    }

    /// `inkflow run` with `args`.
    async fn run(&self, args: &[&str]) -> std::process::Output {
        inkflow(KEY, &self.file, &self.out, args).await
    }
}

/// Candidates the journal knows of, over every page.
fn candidates(out: &Path) -> u32 {
    let journal = rusqlite::Connection::open(out.join("journal.sqlite")).unwrap();
    journal.query_row("SELECT count(*) FROM candidates", [], |r| r.get(0)).unwrap()
}

/// Pages of the book, and how many of them hold an image.
fn book_pages(out: &Path) -> (usize, usize) {
    let doc = load(&out.join("book.pdf"));
    let pages = pages(&doc);
    let images = pages.iter().filter(|&&page| page_image(&doc, page).is_some()).count();
    (pages.len(), images)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// What `--dry-run` says the run would pay for.
async fn to_pay_for(file: &Path, out: &Path, args: &[&str]) -> String {
    let plan = stdout(&inkflow(KEY, file, out, &[&["--dry-run"][..], args].concat()).await);
    let line = plan.lines().find(|line| line.starts_with("to pay for:"));
    line.unwrap_or_else(|| panic!("no cost line: {plan}")).to_owned()
}

#[tokio::test]
async fn a_rerun_never_pays_for_a_page_whose_rerolls_are_used_up() {
    let batch = OwlBatch::new("max_rerolls: 2", "placeholder").await;
    let OwlBatch { fal, owl, file, out, .. } = &batch;
    succeeded(&batch.run(&[]).await);
    assert_eq!(fal.ledger.lock().unwrap().accepted(owl), 3, "the page and its two re-rolls");
    assert_eq!((fal.total_submissions(), candidates(out)), (4, 4));
    assert_eq!(judged(&read_json(&out.join("metadata/02.json"))).0, "reject");
    assert_eq!(book_pages(out), (3, 1), "title, the calm page, a placeholder for the owl");

    for rerun in 1..=3 {
        assert_eq!(to_pay_for(file, out, &[]).await, "to pay for: 0 item(s) reach a paid stage");
        succeeded(&batch.run(&[]).await);
        assert_eq!(fal.total_submissions(), 4, "rerun {rerun} paid for a settled page");
        assert_eq!(candidates(out), 4, "rerun {rerun} made a new candidate");
        assert_eq!(read_json(&out.join("batch_metadata.json"))["skipped"], 2, "rerun {rerun}");
        assert_eq!(book_pages(out), (3, 1), "rerun {rerun}: the book keeps its placeholder");
    }

    // `--retry-failed` is the word to make it again: a new allowance of candidates, paid.
    assert_eq!(to_pay_for(file, out, &["--retry-failed"]).await, "to pay for: 1 item(s) reach a paid stage");
    succeeded(&batch.run(&["--retry-failed"]).await);
    assert_eq!(fal.ledger.lock().unwrap().accepted(owl), 6, "three more tries");
    assert_eq!(candidates(out), 7);
    succeeded(&batch.run(&[]).await);
    assert_eq!((fal.total_submissions(), candidates(out)), (7, 7), "settled again");
}

/// The budget case: the first run spends the whole `max_cost_usd`, and a rerun, having
/// nothing to buy, neither stops at the budget nor takes the written pages back.
#[tokio::test]
async fn a_rerun_within_a_spent_budget_has_nothing_to_buy() {
    let batch = OwlBatch::new("max_rerolls: 2", "placeholder").await;
    let budget = ["--set", "stages.generate.max_cost_usd=0.1"];
    succeeded(&batch.run(&budget).await);
    assert_eq!(batch.fal.total_submissions(), 4, "$0.10 buys the four requests the batch needs");
    for rerun in 1..=2 {
        let output = batch.run(&budget).await;
        succeeded(&output);
        assert!(!stdout(&output).contains("budget"), "rerun {rerun}: {}", stdout(&output));
        let states: Vec<String> =
            Journal::items(&batch.out).unwrap().into_iter().map(|item| item.state).collect();
        assert_eq!(states, ["written", "written"], "rerun {rerun}");
    }
    assert_eq!(batch.fal.total_submissions(), 4);
}

#[tokio::test]
async fn a_settled_page_a_sink_lacks_is_made_again_as_its_page_for_nothing() {
    let batch = OwlBatch::new("max_rerolls: 1", "include").await;
    let OwlBatch { fal, out, .. } = &batch;
    succeeded(&batch.run(&[]).await);
    assert_eq!((fal.total_submissions(), candidates(out)), (3, 3));
    let page = judged(&read_json(&out.join("metadata/02.json")));
    assert_eq!(page.0, "reject");
    let drawn = std::fs::read(out.join("02.png")).unwrap();

    // The page file is lost: the disk sink lacks it, and the run writes it again.
    std::fs::remove_file(out.join("02.png")).unwrap();
    succeeded(&batch.run(&[]).await);
    assert_eq!(fal.total_submissions(), 3, "the settled page came from the raw cache");
    assert_eq!(candidates(out), 3, "no new candidate of a settled page");
    assert_eq!(judged(&read_json(&out.join("metadata/02.json"))), page, "the same page");
    assert_eq!(std::fs::read(out.join("02.png")).unwrap(), drawn);
    let extra = read_json(&out.join("batch_metadata.json"))["extra_candidates"].as_u64();
    assert_eq!(extra.unwrap_or(0), 0, "nothing new was made");
}

/// An offline batch of three pages, every one rejected by the check (`min_coverage` asks for
/// more ink than line art has) with `max_rerolls` more candidates each, and left out of the book.
fn offline_rejected_book(dir: &Path, max_rerolls: u32) -> PathBuf {
    let prompts: Vec<serde_json::Value> = (1..=3)
        .map(|i| serde_json::json!({"section": "s", "image_number": i, "image_prompt": format!("a mandala {i}"), "description": format!("p{i}")}))
        .collect();
    let prompts_file = dir.join("prompts.json");
    std::fs::write(&prompts_file, serde_json::json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join("offline.yaml");
    let stages = judged_book("draw", &format!("max_rerolls: {max_rerolls}, min_coverage: 0.9"), "skip");
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {} }}
stages:
  draw: {{ kind: pattern, inputs: [prompts], size: {{ width: 300, height: 400 }} }}
{stages}",
            prompts_file.display()
        ),
    )
    .unwrap();
    file
}

/// Offline, every page is rejected and the book leaves them out: reruns make no new candidate.
#[tokio::test]
async fn offline_a_rerun_makes_no_new_candidate_of_a_settled_page() {
    let dir = tempfile::tempdir().unwrap();
    let file = offline_rejected_book(dir.path(), 1);
    let out = dir.path().join("out");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    assert_eq!(candidates(&out), 6, "two candidates of each page");
    assert_eq!(book_pages(&out), (1, 0), "only the title: every page was rejected and left out");
    for rerun in 1..=3 {
        succeeded(&inkflow(KEY, &file, &out, &[]).await);
        assert_eq!(candidates(&out), 6, "rerun {rerun} made a new candidate");
        assert_eq!(read_json(&out.join("batch_metadata.json"))["skipped"], 3, "rerun {rerun}");
        assert_eq!(book_pages(&out), (1, 0), "rerun {rerun}");
    }
}

/// Re-rolls are more candidates of a page, not more items: the live count of finished items
/// (the progress line's "N/total items") ends at the number of pages, however many rounds ran.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_counts_a_rerolled_page_once() {
    let dir = tempfile::tempdir().unwrap();
    let file = offline_rejected_book(dir.path(), 2);
    let registry = inkflow::stages::builtin();
    let pipeline = pipeline::load(&file, &LoadOptions::default(), &registry).unwrap();
    let batch = runtime::build(pipeline, &registry, &dir.path().join("out"), false).unwrap();
    let progress = batch.progress();
    let summary = batch.run(RunSettings::default()).await.unwrap();
    assert_eq!(summary.extra_candidates, 6, "two re-rolls of each of the three pages: {summary:?}");
    assert_eq!(progress.total.load(Ordering::Relaxed), 3);
    assert_eq!(progress.finished.load(Ordering::Relaxed), 3, "each page counted once");
}
