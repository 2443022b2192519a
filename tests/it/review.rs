//! Reviewing a batch (issue 34): the reviewer's decisions in the journal, and what the next
//! `inkflow run` does with them against the fal emulator, which counts every paid request.

use std::path::{Path, PathBuf};

use inkflow::engine::journal::Journal;
use inkflow::engine::review::ReviewAction;
use tokio::process::Command;

use crate::common::fal_emulator::{FalEmulator, Latency, SPOILED_FIRST};
use crate::fal_batch::{CALM, fal_pipeline, inkflow, judged, read_json, succeeded};

const KEY: &str = "test-key-not-a-secret";

/// The prompts of the reviewed batch: page 2 is spoiled at first, so it has a rejected
/// candidate 0 beside its page, candidate 1.
fn prompts() -> [String; 4] {
    [
        CALM.to_owned(),
        format!("a fox in the snow {SPOILED_FIRST}"),
        "an owl on a branch".to_owned(),
        "a bear by a river".to_owned(),
    ]
}

/// A judged pipeline with pages on disk and a book.
pub(crate) fn reviewed_pipeline(dir: &Path, base: &str, prompts: &[&str]) -> PathBuf {
    let rest = "  gray: { kind: grayscale, inputs: [generate] }
  print: { kind: upscale, inputs: [gray], width: 2550, height: 3300, fit: contain, dpi: 300 }
  quality: { kind: lineart-check, inputs: [print], max_rerolls: 1 }
  lineart: { kind: threshold, inputs: [quality] }
sinks:
  pages: { kind: disk, inputs: [lineart], filename: \"{number:02}.png\" }
  book: { kind: pdf, inputs: [lineart], path: book.pdf }
";
    fal_pipeline(dir, base, prompts, "", rest)
}

/// The key of page `n` (its metadata's).
fn key_of(out: &Path, n: u32) -> String {
    read_json(&out.join(format!("metadata/{n:02}.json")))["key"].as_str().unwrap().to_owned()
}

async fn status(out: &Path) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_inkflow")).arg("status").arg(out).output().await.unwrap();
    succeeded(&output);
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test]
async fn the_next_run_obeys_approve_reject_pick_and_edit_and_pays_only_for_what_changed() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = reviewed_pipeline(dir.path(), &fal.base(), &texts);
    let prompt_file = std::fs::read(dir.path().join("prompts.json")).unwrap();
    let out = dir.path().join("out");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 5, "one request per page, and one re-roll of the spoiled one");
    let approved_png = std::fs::read(out.join("01.png")).unwrap();
    let approved_meta = std::fs::read(out.join("metadata/01.json")).unwrap();
    let book_before = std::fs::metadata(out.join("book.pdf")).unwrap().modified().unwrap();

    let keys: Vec<String> = (1..=4).map(|n| key_of(&out, n)).collect();
    Journal::review(&out, &keys[0], &ReviewAction::Approve, None).unwrap();
    Journal::review(&out, &keys[1], &ReviewAction::Pick(0), None).unwrap();
    Journal::review(&out, &keys[2], &ReviewAction::Reject, None).unwrap();
    let edited = "a bear in a canoe";
    let recorded = Journal::review(&out, &keys[3], &ReviewAction::Edit(edited.into()), None).unwrap();
    assert_eq!(recorded.state.prompt.as_deref(), Some(edited));

    let told = status(&out).await;
    assert!(told.contains("review       1 approved, 1 rejected, 0 undecided (and 1 edited, 1 picked"), "{told}");
    let plan = inkflow(KEY, &file, &out, &["--dry-run"]).await;
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("to run: 3 of 4 items"), "{plan}");
    assert!(
        plan.contains("review decisions: 2 page(s) rejected or edited are made again ($0.050), 1 picked"),
        "{plan}"
    );
    assert_eq!(fal.total_submissions(), 5, "a dry run pays nothing");

    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!(ledger.accepted(&prompts[2]), 2, "the rejected page is made again, once");
        assert_eq!(ledger.accepted(edited), 1, "the edited page is made from the new prompt");
    }
    assert_eq!(fal.total_submissions(), 7, "nothing else is paid");
    assert_eq!(std::fs::read(out.join("01.png")).unwrap(), approved_png, "the approved page is untouched");
    assert_eq!(std::fs::read(out.join("metadata/01.json")).unwrap(), approved_meta);
    assert_eq!(judged(&read_json(&out.join("metadata/02.json"))), ("reject".to_owned(), 0), "the pick is the page");
    assert!(out.join("candidates/02.c1.png").is_file());
    let remade = read_json(&out.join("metadata/03.json"));
    assert_eq!(remade["candidate"], 1, "a new candidate replaces the rejected one: {remade}");
    assert_eq!(remade["rejected_in_review"], 0);
    let kept = read_json(&out.join("rejected/03.c0.json"));
    assert_eq!(judged(&kept), ("pass".to_owned(), 0), "the check passed it, the reviewer did not");
    assert!(out.join("rejected/03.c0.png").is_file());
    assert_eq!(read_json(&out.join("metadata/04.json"))["image_prompt"], edited);
    assert_eq!(std::fs::read(dir.path().join("prompts.json")).unwrap(), prompt_file, "never rewritten");
    let book_after = std::fs::metadata(out.join("book.pdf")).unwrap().modified().unwrap();
    assert!(book_after > book_before, "the book is rebuilt");
    let book = crate::common::pdf_reader::load(&out.join("book.pdf"));
    assert_eq!(crate::common::pdf_reader::pages(&book).len(), 4);

    let told = status(&out).await;
    assert!(told.contains("review       1 approved, 0 rejected, 3 undecided"), "{told}");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 7, "a carried-out rejection or edit is never paid again");
    assert_eq!(read_json(&out.join("metadata/04.json"))["image_prompt"], edited, "the edit stays the prompt");
}

#[tokio::test]
async fn bad_decisions_are_refused_with_a_message_and_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = reviewed_pipeline(dir.path(), &fal.base(), &texts[..2]);
    let out = dir.path().join("out");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    let key = key_of(&out, 2);
    let refused = |action: ReviewAction, expected: Option<Option<i64>>| {
        format!("{:#}", Journal::review(&out, &key, &action, expected).unwrap_err())
    };
    assert!(refused(ReviewAction::Undo, None).contains("no decision to undo"));
    assert!(refused(ReviewAction::Pick(7), None).contains("has no candidate 7; it has 0, 1"));
    assert!(refused(ReviewAction::Edit("  ".into()), None).contains("is empty"));
    let missing = Journal::review(&out, "no-such-page", &ReviewAction::Approve, None).unwrap_err();
    assert!(format!("{missing:#}").contains("has no item \"no-such-page\""), "{missing:#}");

    let approved = Journal::review(&out, &key, &ReviewAction::Approve, Some(None)).unwrap();
    assert!(refused(ReviewAction::Reject, None).contains("approved, so it is locked"));
    assert!(refused(ReviewAction::Pick(0), None).contains("approved, so it is locked"));
    assert!(
        refused(ReviewAction::Undo, Some(None)).contains("decided on meanwhile"),
        "a reviewer who saw the page undecided cannot take back another's approval"
    );
    assert_eq!(Journal::review_states(&out).unwrap()[&key], (approved.state.clone(), approved.last));

    let undone = Journal::review(&out, &key, &ReviewAction::Undo, Some(approved.last)).unwrap();
    assert!(undone.state.is_undecided() && undone.last.is_none());
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 3, "refused and undone decisions cost nothing");
}
