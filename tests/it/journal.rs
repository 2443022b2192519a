//! The journal with the real runtime: resume skips what was written, keeps failures unless
//! asked, re-runs everything when the pipeline changed, hands paid requests back for
//! re-polling, and refuses files that are not its own.

use std::path::Path;
use std::sync::Arc;

use crate::common::{Probe, registry, write_pipeline};
use inkflow::engine::item::{Failure, Item, Prompt};
use inkflow::engine::journal::{Journal, ResumePolicy};
use inkflow::engine::output_path::JOURNAL_FILE;
use inkflow::engine::pipeline::{self, LoadOptions, Pipeline};
use inkflow::engine::run_context::{RunContext, Settlement, SubmissionLog as _};
use inkflow::engine::runtime::{self, ItemObserver as _, ItemOutcome, Preparation, RunSettings};
use inkflow::engine::summary::Summary;
use serde_json::json;

const PIPELINE: &str = "version: 1
sources:
  src: { kind: count, items: 5 }
stages:
  a: { kind: draw, inputs: [src], fail: [2] }
sinks:
  out: { kind: record, inputs: [a] }
";

fn load(dir: &Path, overrides: &[&str], probe: &Arc<Probe>) -> Pipeline {
    load_text(dir, PIPELINE, overrides, probe)
}

fn load_text(dir: &Path, text: &str, overrides: &[&str], probe: &Arc<Probe>) -> Pipeline {
    let file = write_pipeline(dir, text);
    let options = LoadOptions { overrides: overrides.iter().map(|s| s.to_string()).collect() };
    pipeline::load(&file, &options, &registry(probe)).unwrap()
}

async fn run(dir: &Path, overrides: &[&str], probe: &Arc<Probe>, policy: ResumePolicy) -> Summary {
    run_text(dir, PIPELINE, overrides, probe, policy).await
}

async fn run_text(
    dir: &Path,
    text: &str,
    overrides: &[&str],
    probe: &Arc<Probe>,
    policy: ResumePolicy,
) -> Summary {
    let pipeline = load_text(dir, text, overrides, probe);
    let journal = Arc::new(Journal::open(dir, &pipeline, policy).unwrap());
    let batch = runtime::build(pipeline, &registry(probe), dir, false).unwrap();
    let settings = RunSettings {
        context: RunContext { submissions: Some(journal.clone()), ..RunContext::default() },
        observer: Some(journal),
    };
    batch.run(settings).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_skips_written_items_and_keeps_failures_unless_asked() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let first = run(dir.path(), &[], &probe, ResumePolicy::default()).await;
    assert_eq!((first.succeeded, first.failed, first.skipped), (4, 1, 0));

    // The failed item is not run again, but the summary still lists it: it is the batch's.
    let second = run(dir.path(), &[], &probe, ResumePolicy::default()).await;
    assert_eq!((second.succeeded, second.failed, second.skipped), (0, 1, 4));
    assert_eq!(second.failures[0].key, "t-00002");

    let retried = run(dir.path(), &[], &probe, ResumePolicy { retry_failed: true }).await;
    assert_eq!((retried.succeeded, retried.failed, retried.skipped), (0, 1, 4));

    let status = Journal::status(dir.path()).unwrap();
    assert_eq!(status.states, [("failed".to_owned(), 1), ("written".to_owned(), 4)]);
    let failed = Journal::items(dir.path()).unwrap().into_iter().filter(|i| i.state == "failed");
    let failed: Vec<_> = failed.map(|i| (i.key, i.error.unwrap_or_default())).collect();
    assert_eq!(failed, [("t-00002".to_owned(), "refused 2".to_owned())]);
}

/// An item that fails because the batch is stopping (Ctrl-C) is not journaled as failed: a
/// plain resume takes it up again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn items_cut_short_by_a_stop_are_taken_up_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let text = "version: 1
sources:
  src: { kind: count, items: 3, concurrency: 1, capacity: 1 }
stages:
  a: { kind: gate, inputs: [src], gated: 99, stop_at: 2, concurrency: 1, capacity: 1 }
sinks:
  out: { kind: record, inputs: [a] }
";
    let stopped = run_text(dir.path(), text, &[], &probe, ResumePolicy::default()).await;
    // Item 3 finishes in this run if it was already on its way when the stop came.
    assert_eq!(stopped.failed, 0, "item 2 was cut short, not failed");
    assert_eq!(stopped.not_started, 3 - stopped.succeeded, "it counts as not started");
    let states = Journal::status(dir.path()).unwrap().states;
    assert!(!states.iter().any(|(state, _)| state == "failed"), "{states:?}");

    let resumed = run_text(dir.path(), text, &[], &probe, ResumePolicy::default()).await;
    assert_eq!(resumed.failed, 0);
    assert_eq!(stopped.succeeded + resumed.succeeded, 3, "every item written, item 2 included");
}

/// Only what the stop cut short is spared: an item that fails for a cause of its own while
/// the batch stops is failed, journaled as failed, and kept as failed by a plain resume.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_item_that_fails_of_its_own_as_the_batch_stops_is_failed() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let text = "version: 1
sources:
  src: { kind: count, items: 3, concurrency: 1, capacity: 1 }
stages:
  a: { kind: gate, inputs: [src], gated: 99, stop_at: 2, fail_at_stop: true, concurrency: 1, capacity: 1 }
sinks:
  out: { kind: record, inputs: [a] }
";
    let stopped = run_text(dir.path(), text, &[], &probe, ResumePolicy::default()).await;
    assert_eq!(stopped.failed, 1, "item 2 failed of its own, and the stop does not hide it");
    let states = Journal::status(dir.path()).unwrap().states;
    assert!(states.iter().any(|(state, count)| state == "failed" && *count == 1), "{states:?}");

    let resumed = run_text(dir.path(), text, &[], &probe, ResumePolicy::default()).await;
    assert_eq!(resumed.failed, 1, "a plain resume keeps the failure");
    assert_eq!(stopped.succeeded + resumed.succeeded, 2, "the other two are written");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_pipeline_reruns_written_items() {
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    run(dir.path(), &[], &probe, ResumePolicy::default()).await;
    let changed = run(dir.path(), &["stages.a.side=9"], &probe, ResumePolicy::default()).await;
    // The four written items are stale now; the failed one stays failed.
    assert_eq!((changed.succeeded, changed.failed, changed.skipped), (4, 1, 0));
}

#[test]
fn paid_requests_come_back_until_collected() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load(dir.path(), &[], &Arc::default());
    let journal = Journal::open(dir.path(), &pipeline, ResumePolicy::default()).unwrap();
    let mut item = Item::new(0, Prompt { section: "t".into(), number: 1, ..Prompt::default() });
    assert_eq!(journal.prepare(&mut item).unwrap(), Preparation::SkipIfComplete);
    let request = json!({"request_id": "r-1", "status_url": "http://x/s"});
    journal.submitted(&item, "gen", &request, Some(0.025)).unwrap();
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9);

    // A new process opening the same journal sees the request and re-polls it.
    drop(journal);
    let journal = Journal::open(dir.path(), &pipeline, ResumePolicy::default()).unwrap();
    let mut resumed = Item::new(0, item.prompt.clone());
    assert_eq!(journal.prepare(&mut resumed).unwrap(), Preparation::Run);
    assert_eq!(resumed.facts["resume_request"], json!({"stage": "gen", "request": request}));
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9, "spending survives restarts");

    journal.stage_done(&resumed, "gen");
    let mut later = Item::new(0, item.prompt.clone());
    journal.prepare(&mut later).unwrap();
    assert!(!later.facts.contains_key("resume_request"));
}

#[test]
fn a_submission_cut_off_before_its_answer_comes_back_uncertain_until_retried() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load(dir.path(), &[], &Arc::default());
    let open = |policy| Journal::open(dir.path(), &pipeline, policy).unwrap();
    let journal = open(ResumePolicy::default());
    let mut item = Item::new(0, Prompt { section: "t".into(), number: 1, ..Prompt::default() });
    journal.prepare(&mut item).unwrap();
    journal.submitting(&item, "gen", Some(0.025)).unwrap();
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9, "it may have been charged");
    drop(journal); // the process dies before fal's answer arrives

    let journal = open(ResumePolicy::default());
    let mut resumed = Item::new(0, item.prompt.clone());
    assert_eq!(journal.prepare(&mut resumed).unwrap(), Preparation::Run);
    assert_eq!(resumed.facts["resume_request"], json!({"stage": "gen", "request": null}));
    let status = Journal::status(dir.path()).unwrap();
    assert_eq!((status.uncertain_submissions, status.unfinished_submissions), (1, 0));

    // The stage reports it; a plain resume leaves it failed, --retry-failed submits again.
    let failure = Failure { stage: "gen".into(), error: "uncertain".into(), attempts: 1, interrupted: false };
    journal.item_finished(&resumed, &ItemOutcome::Failed(failure.clone()));
    drop(journal);
    let mut again = Item::new(0, item.prompt.clone());
    let kept = Preparation::Keep(ItemOutcome::Failed(failure));
    assert_eq!(open(ResumePolicy::default()).prepare(&mut again).unwrap(), kept);
    let journal = open(ResumePolicy { retry_failed: true });
    let mut retried = Item::new(0, item.prompt.clone());
    assert_eq!(journal.prepare(&mut retried).unwrap(), Preparation::Run);
    assert!(!retried.facts.contains_key("resume_request"), "the user's word to submit again");

    // A submission fal surely refused is forgotten, and so is its cost; the uncertain one
    // before it stays counted, but is no longer waited for.
    journal.submitting(&retried, "gen", Some(0.025)).unwrap();
    journal.not_submitted(&retried, "gen").unwrap();
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9);
    let status = Journal::status(dir.path()).unwrap();
    assert_eq!((status.uncertain_submissions, status.unfinished_submissions), (0, 0));
}

#[test]
fn a_settled_request_is_not_polled_again_and_keeps_its_cost() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load(dir.path(), &[], &Arc::default());
    let open = |policy| Journal::open(dir.path(), &pipeline, policy).unwrap();
    let journal = open(ResumePolicy::default());
    let mut item = Item::new(0, Prompt { section: "t".into(), number: 1, ..Prompt::default() });
    journal.prepare(&mut item).unwrap();
    journal.submitting(&item, "gen", Some(0.025)).unwrap();
    journal.submitted(&item, "gen", &json!({"request_id": "r-1"}), Some(0.025)).unwrap();
    journal.settled(&item.key, "gen", Settlement::Failed, 0.025).unwrap();
    let failure = Failure { stage: "gen".into(), error: "HTTP 422".into(), attempts: 1, interrupted: false };
    journal.item_finished(&item, &ItemOutcome::Failed(failure));
    drop(journal);

    let status = Journal::status(dir.path()).unwrap();
    assert_eq!(status.settled_submissions, [("failed".to_owned(), 1)]);
    assert_eq!(status.unfinished_submissions, 0);
    let journal = open(ResumePolicy { retry_failed: true });
    let mut retried = Item::new(0, item.prompt.clone());
    assert_eq!(journal.prepare(&mut retried).unwrap(), Preparation::Run);
    assert!(!retried.facts.contains_key("resume_request"), "a settled request is never polled again");
    // A second request for the same item adds to what the first cost.
    journal.submitting(&retried, "gen", Some(0.025)).unwrap();
    journal.submitted(&retried, "gen", &json!({"request_id": "r-2"}), Some(0.025)).unwrap();
    assert!((journal.spent_usd().unwrap() - 0.05).abs() < 1e-9);
    journal.settled(&retried.key, "gen", Settlement::Cancelled, 0.0).unwrap();
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9, "a cancelled request costs nothing");
}

#[test]
fn a_schema_1_journal_is_upgraded_with_its_submissions() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load(dir.path(), &[], &Arc::default());
    let old = rusqlite::Connection::open(dir.path().join(JOURNAL_FILE)).unwrap();
    old.execute_batch(
        "PRAGMA application_id = 1229867846; PRAGMA user_version = 1;
         CREATE TABLE items (key TEXT PRIMARY KEY, seq INTEGER NOT NULL, description TEXT NOT NULL,
            state TEXT NOT NULL, stage TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
            fingerprint TEXT NOT NULL, updated_at TEXT NOT NULL);
         CREATE TABLE submissions (key TEXT NOT NULL, stage TEXT NOT NULL, request TEXT NOT NULL,
            cost_usd REAL NOT NULL, collected INTEGER NOT NULL, submitted_at TEXT NOT NULL,
            PRIMARY KEY (key, stage));
         INSERT INTO items VALUES ('t-00001', 0, 'd', 'submitted', 'gen', NULL, 0, 'x', 'now');
         INSERT INTO submissions VALUES ('t-00001', 'gen', '{\"request_id\":\"r-1\"}', 0.025, 0, 'now');",
    )
    .unwrap();
    drop(old);
    let journal = Journal::open(dir.path(), &pipeline, ResumePolicy::default()).unwrap();
    let mut item = Item::new(0, Prompt { section: "t".into(), number: 1, ..Prompt::default() });
    assert_eq!(journal.prepare(&mut item).unwrap(), Preparation::Run);
    assert_eq!(item.facts["resume_request"], json!({"stage": "gen", "request": {"request_id": "r-1"}}));
    assert!((journal.spent_usd().unwrap() - 0.025).abs() < 1e-9);
}

#[test]
fn foreign_and_damaged_files_are_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = load(dir.path(), &[], &Arc::default());
    let path = dir.path().join(JOURNAL_FILE);

    let other = rusqlite::Connection::open(&path).unwrap();
    other.execute_batch("CREATE TABLE photos (id INTEGER); INSERT INTO photos VALUES (1);").unwrap();
    drop(other);
    let err = Journal::open(dir.path(), &pipeline, ResumePolicy::default()).err().unwrap().to_string();
    assert!(err.contains("not a usable inkflow journal") && err.contains("other SQLite database"), "{err}");
    let still: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("SELECT count(*) FROM photos", [], |r| r.get(0))
        .unwrap();
    assert_eq!(still, 1);

    std::fs::write(&path, b"this is not a database, it is a shopping list").unwrap();
    let err = Journal::open(dir.path(), &pipeline, ResumePolicy::default()).err().unwrap().to_string();
    assert!(err.contains("not a usable inkflow journal"), "{err}");
    assert_eq!(std::fs::read(&path).unwrap(), b"this is not a database, it is a shopping list");

    let err = Journal::status(tempfile::tempdir().unwrap().path()).unwrap_err().to_string();
    assert!(err.contains("has no journal"), "{err}");
}

/// Runs `inkflow ARGS`, returning its stdout and its peak resident memory in KiB.
fn inkflow_peak_rss(args: &[&str]) -> (String, i64) {
    let (out, peak) = crate::common::binary::run_peak_rss(args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "inkflow {args:?}: {}\n{stdout}\n{stderr}", out.status);
    (stdout, peak)
}

/// `inkflow status` reads a batch a row at a time: at 20,000 items its peak memory stays
/// under a bound that holding every item and its metadata at once went far beyond, and its
/// counts are exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reads_a_big_batch_in_bounded_memory() {
    const ITEMS: u32 = 20_000;
    /// Peak RSS of `inkflow status` at 20,000 items, in KiB.
    const BOUND_KIB: i64 = 40 * 1024;
    let dir = tempfile::tempdir().unwrap();
    let probe = Arc::new(Probe::default());
    let mut registry = registry(&probe);
    registry.register(Arc::new(inkflow::stages::disk::Disk));
    let text = format!(
        "version: 1
sources:
  src: {{ kind: count, items: {ITEMS} }}
stages:
  a: {{ kind: draw, inputs: [src], fail: [7, {ITEMS}] }}
sinks:
  pages: {{ kind: disk, inputs: [a], dir: pages, filename: \"{{section}}_{{number:05}}.png\" }}
"
    );
    let file = write_pipeline(dir.path(), &text);
    let pipeline = pipeline::load(&file, &LoadOptions::default(), &registry).unwrap();
    let journal = Arc::new(Journal::open(dir.path(), &pipeline, ResumePolicy::default()).unwrap());
    let batch = runtime::build(pipeline, &registry, dir.path(), false).unwrap();
    let settings = RunSettings { context: RunContext::default(), observer: Some(journal) };
    let summary = batch.run(settings).await.unwrap();
    assert_eq!((summary.succeeded, summary.failed), (u64::from(ITEMS) - 2, 2));
    // Quality verdicts on three pages, as a check stage leaves them in the metadata.
    for (number, verdict) in [(1, "pass"), (2, "warn"), (ITEMS - 1, "reject")] {
        let path = dir.path().join(format!("pages/metadata/t_{number:05}.json"));
        let mut meta: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        meta["quality"] = json!({ "verdict": verdict, "problems": [], "metrics": { "gray_fraction": 0.01 } });
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }

    let (printed, peak_kib) = inkflow_peak_rss(&["status", dir.path().to_str().unwrap()]);
    assert!(printed.contains(&format!("written      {}", ITEMS - 2)), "{printed}");
    assert!(printed.contains("failed       2"), "{printed}");
    assert!(printed.contains("quality      1 pass, 1 warn, 1 reject"), "{printed}");
    let failed: Vec<&str> = printed.lines().filter(|l| l.trim_start().starts_with("failed t-")).collect();
    assert_eq!(failed.len(), 2, "{printed}");
    assert!(failed[0].contains("t-00007") && failed[1].contains(&format!("t-{ITEMS:05}")), "{failed:?}");
    eprintln!("inkflow status at {ITEMS} items: peak RSS {peak_kib} KiB");
    assert!(peak_kib < BOUND_KIB, "inkflow status at {ITEMS} items peaked at {peak_kib} KiB");
}
