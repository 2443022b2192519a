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

/// A batch of [`prompts`] run once, with what the next run must leave or change.
struct Reviewed {
    dir: tempfile::TempDir,
    fal: FalEmulator,
    file: PathBuf,
    out: PathBuf,
    prompts: [String; 4],
    keys: Vec<String>,
    approved_png: Vec<u8>,
    approved_meta: Vec<u8>,
    book: std::time::SystemTime,
    prompt_file: Vec<u8>,
}

/// The edited prompt of page 4.
const EDITED: &str = "a bear in a canoe";

async fn reviewed_batch() -> Reviewed {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = reviewed_pipeline(dir.path(), &fal.base(), &texts);
    let out = dir.path().join("out");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    assert_eq!(fal.total_submissions(), 5, "one request per page, and one re-roll of the spoiled one");
    Reviewed {
        prompt_file: std::fs::read(dir.path().join("prompts.json")).unwrap(),
        approved_png: std::fs::read(out.join("01.png")).unwrap(),
        approved_meta: std::fs::read(out.join("metadata/01.json")).unwrap(),
        book: std::fs::metadata(out.join("book.pdf")).unwrap().modified().unwrap(),
        keys: (1..=4).map(|n| key_of(&out, n)).collect(),
        dir,
        fal,
        file,
        out,
        prompts,
    }
}

/// Page 1 approved, candidate 0 of page 2 picked, page 3 rejected, page 4's prompt edited:
/// the next run pays for pages 3 and 4 alone and leaves page 1 as it was, byte for byte.
async fn assert_the_next_run_obeys(r: &Reviewed) {
    let (fal, out) = (&r.fal, &r.out);
    succeeded(&inkflow(KEY, &r.file, out, &[]).await);
    {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!(ledger.accepted(&r.prompts[2]), 2, "the rejected page is made again, once");
        assert_eq!(ledger.accepted(EDITED), 1, "the edited page is made from the new prompt");
    }
    assert_eq!(fal.total_submissions(), 7, "nothing else is paid");
    assert_eq!(std::fs::read(out.join("01.png")).unwrap(), r.approved_png, "the approved page is untouched");
    assert_eq!(std::fs::read(out.join("metadata/01.json")).unwrap(), r.approved_meta);
    assert_eq!(
        judged(&read_json(&out.join("metadata/02.json"))),
        ("reject".to_owned(), 0),
        "the pick is the page"
    );
    assert!(out.join("candidates/02.c1.png").is_file());
    let remade = read_json(&out.join("metadata/03.json"));
    assert_eq!(remade["candidate"], 1, "a new candidate replaces the rejected one: {remade}");
    assert_eq!(remade["rejected_in_review"], 0);
    let kept = read_json(&out.join("rejected/03.c0.json"));
    assert_eq!(judged(&kept), ("pass".to_owned(), 0), "the check passed it, the reviewer did not");
    assert!(out.join("rejected/03.c0.png").is_file());
    assert_eq!(read_json(&out.join("metadata/04.json"))["image_prompt"], EDITED);
    assert_eq!(std::fs::read(r.dir.path().join("prompts.json")).unwrap(), r.prompt_file, "never rewritten");
    let book_after = std::fs::metadata(out.join("book.pdf")).unwrap().modified().unwrap();
    assert!(book_after > r.book, "the book is rebuilt");
    let book = crate::common::pdf_reader::load(&out.join("book.pdf"));
    assert_eq!(crate::common::pdf_reader::pages(&book).len(), 4);
}

#[tokio::test]
async fn the_next_run_obeys_approve_reject_pick_and_edit_and_pays_only_for_what_changed() {
    let r = reviewed_batch().await;
    let (out, keys) = (&r.out, &r.keys);
    Journal::review(out, &keys[0], &ReviewAction::Approve, None).unwrap();
    Journal::review(out, &keys[1], &ReviewAction::Pick(0), None).unwrap();
    Journal::review(out, &keys[2], &ReviewAction::Reject, None).unwrap();
    let recorded = Journal::review(out, &keys[3], &ReviewAction::Edit(EDITED.into()), None).unwrap();
    assert_eq!(recorded.state.prompt.as_deref(), Some(EDITED));

    let told = status(out).await;
    assert!(
        told.contains("review       1 approved, 1 rejected, 0 undecided (and 1 edited, 1 picked"),
        "{told}"
    );
    let plan = inkflow(KEY, &r.file, out, &["--dry-run"]).await;
    let plan = String::from_utf8_lossy(&plan.stdout).into_owned();
    assert!(plan.contains("to run: 3 of 4 items"), "{plan}");
    assert!(
        plan.contains("review decisions: 2 page(s) rejected or edited are made again ($0.050), 1 picked"),
        "{plan}"
    );
    assert_eq!(r.fal.total_submissions(), 5, "a dry run pays nothing");

    assert_the_next_run_obeys(&r).await;
    let told = status(out).await;
    assert!(told.contains("review       1 approved, 0 rejected, 3 undecided"), "{told}");
    succeeded(&inkflow(KEY, &r.file, out, &[]).await);
    assert_eq!(r.fal.total_submissions(), 7, "a carried-out rejection or edit is never paid again");
    assert_eq!(read_json(&out.join("metadata/04.json"))["image_prompt"], EDITED, "the edit stays the prompt");
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

/// `inkflow review OUT --port 0`, killed when dropped, with the URL it printed.
pub(crate) struct Served {
    child: tokio::process::Child,
    /// `http://127.0.0.1:PORT/` (no token).
    pub base: String,
    pub token: String,
}

impl Served {
    pub(crate) async fn start(out: &Path, pipeline: &Path) -> Served {
        use tokio::io::AsyncBufReadExt as _;
        // The test's own HTTP clients need rustls's provider, as the binary's do.
        inkflow::tls::install_crypto_provider();
        let mut child = Command::new(env!("CARGO_BIN_EXE_inkflow"))
            .arg("review")
            .arg(out)
            .arg("--pipeline")
            .arg(pipeline)
            .env("FAL_KEY", KEY)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next_line().await.unwrap().expect("the server prints its URL");
        let url = first.rsplit(' ').next().unwrap().to_owned();
        let (base, token) = url.split_once("?token=").unwrap();
        assert!(base.starts_with("http://127.0.0.1:"), "loopback only: {first}");
        Served { child, base: base.to_owned(), token: token.to_owned() }
    }

    /// A client that opened the printed URL: it holds the token's cookie.
    pub(crate) async fn client(&self) -> reqwest::Client {
        let page = reqwest::get(format!("{}?token={}", self.base, self.token)).await.unwrap();
        assert_eq!(page.status(), 200);
        let cookie = page.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
        assert!(page.headers()["set-cookie"].to_str().unwrap().contains("HttpOnly; SameSite=Strict"));
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert("cookie", cookie.parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    }

    pub(crate) async fn decide(
        &self,
        client: &reqwest::Client,
        body: serde_json::Value,
    ) -> (u16, serde_json::Value) {
        let response = client
            .post(format!("{}api/decide", self.base))
            .header("origin", self.base.trim_end_matches('/'))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// A reviewed batch of two pages, run once.
async fn batch(dir: &Path, fal: &FalEmulator) -> (PathBuf, PathBuf) {
    let prompts = prompts();
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let file = reviewed_pipeline(dir, &fal.base(), &texts[..2]);
    let out = dir.join("out");
    succeeded(&inkflow(KEY, &file, &out, &[]).await);
    (file, out)
}

#[tokio::test]
async fn the_server_wants_its_token_its_own_origin_and_serves_only_the_output_folder() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let (file, out) = batch(dir.path(), &fal).await;
    std::fs::write(dir.path().join("secret.png"), b"not for the page").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.png"), out.join("escape.png")).unwrap();
    let served = Served::start(&out, &file).await;
    let plain = reqwest::Client::new();
    let get = |client: &reqwest::Client, path: &str| client.get(format!("{}{path}", served.base)).send();

    assert_eq!(get(&plain, "").await.unwrap().status(), 403, "no token");
    assert_eq!(get(&plain, "?token=0000").await.unwrap().status(), 403, "a wrong token");
    assert_eq!(get(&plain, "files/01.png").await.unwrap().status(), 403, "files need it too");
    assert_eq!(get(&plain, "api/events").await.unwrap().status(), 403);
    let with_token = get(&plain, &format!("files/01.png?token={}", served.token)).await.unwrap();
    assert_eq!(with_token.status(), 200);
    assert_eq!(with_token.headers()["content-type"], "image/png");

    let client = served.client().await;
    let page = get(&client, "").await.unwrap().text().await.unwrap();
    assert_eq!(page.matches("<article class=card").count(), 2, "one card per page");
    assert!(page.contains("loading=lazy"));
    for escape in [
        "files/%2e%2e/secret.png",
        "files/..%2Fsecret.png",
        "files/escape.png",
        "files/journal.sqlite",
        "files/%2Fetc%2Fpasswd",
    ] {
        assert_eq!(get(&client, escape).await.unwrap().status(), 404, "{escape}");
    }

    let key = key_of(&out, 1);
    let approve = serde_json::json!({"key": key, "action": "approve"});
    for (origin, site) in
        [("http://evil.example", None), (served.base.trim_end_matches('/'), Some("cross-site"))]
    {
        let mut post =
            client.post(format!("{}api/decide", served.base)).header("origin", origin).json(&approve);
        if let Some(site) = site {
            post = post.header("sec-fetch-site", site);
        }
        let refused = post.send().await.unwrap();
        assert_eq!(refused.status(), 403, "{origin} {site:?}");
    }
    let form = client
        .post(format!("{}api/decide", served.base))
        .header("content-type", "text/plain")
        .body(approve.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(form.status(), 415, "a body a cross-site form could send is refused");
    assert!(Journal::review_states(&out).unwrap().is_empty(), "no refused request decided anything");

    let (status, answer) =
        served.decide(&client, serde_json::json!({"key": key, "action": "pick", "value": 9})).await;
    assert_eq!(status, 400);
    assert!(answer["error"].as_str().unwrap().contains("has no candidate 9"), "{answer}");
    let (status, answer) = served.decide(&client, approve.clone()).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["said"].as_str().unwrap().starts_with("approved"), "{answer}");
}

#[tokio::test]
async fn two_reviewers_at_once_and_a_run_holding_the_folder() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let (file, out) = batch(dir.path(), &fal).await;
    let served = Served::start(&out, &file).await;
    let (first, second) = (served.client().await, served.client().await);
    let key = key_of(&out, 2);

    // Both saw the page undecided; both act on it at the same moment: one wins, the other is told.
    let reject = serde_json::json!({"key": key, "action": "reject", "expected": null});
    let approve = serde_json::json!({"key": key, "action": "approve", "expected": null});
    let ((a, _), (b, told)) = tokio::join!(served.decide(&first, reject), served.decide(&second, approve));
    let mut statuses = [a, b];
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 400], "{told}");
    let states = Journal::review_states(&out).unwrap();
    let (state, _) = &states[&key];
    assert!(state.rejected.is_some() != state.approved.is_some(), "exactly one decision landed: {state:?}");

    // A run holds the folder: the page says so and every action is refused, changing nothing.
    let before = Journal::review_states(&out).unwrap();
    let held = inkflow::engine::output_lock::OutputLock::acquire(&out).unwrap();
    let (status, answer) = served.decide(&first, serde_json::json!({"key": key, "action": "undo"})).await;
    assert_eq!(status, 409, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("in use by another inkflow run"), "{answer}");
    let mut events = first.get(format!("{}api/events", served.base)).send().await.unwrap();
    let chunk = String::from_utf8_lossy(&events.chunk().await.unwrap().unwrap()).into_owned();
    assert!(chunk.starts_with("event: lock") && chunk.contains("\"busy\":true"), "{chunk}");
    assert_eq!(Journal::review_states(&out).unwrap(), before);
    drop(held);
    let (status, _) = served.decide(&first, serde_json::json!({"key": key, "action": "undo"})).await;
    assert_eq!(status, 200, "the folder is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_clicks_and_keys_decide_and_the_next_run_obeys() {
    let Some(chromium) = crate::common::browser::chromium("review::in_chromium") else { return };
    let r = reviewed_batch().await;
    let served = Served::start(&r.out, &r.file).await;
    let url = format!("{}?token={}", served.base, served.token);
    let mut browser = tokio::task::block_in_place(|| {
        let mut browser = crate::common::browser::Browser::open(&chromium, &url, 1280, 900);
        browser.wait_for("document.querySelectorAll('.card').length === 4");
        browser.wait_for("document.querySelector('.card.sel') === document.getElementById('c0')");
        // Keyboard: approve the first page, move on, zoom and close.
        browser.press("a");
        browser.wait_for("document.querySelector('#c0 .decision').textContent.startsWith('approved')");
        browser.press("j");
        browser.wait_for("document.querySelector('.card.sel') === document.getElementById('c1')");
        browser.press("z");
        browser.wait_for("!document.getElementById('zoom').hidden");
        browser.press("Escape");
        browser.wait_for("document.getElementById('zoom').hidden");
        // The mouse: pick candidate 0 of page 2.
        browser.eval("document.querySelector('#c1 select.pick').value = '0'");
        browser.click("#c1 button[data-act=pick]");
        browser.wait_for("document.querySelector('#c1 .decision').textContent === 'picked candidate 0'");
        // Reject page 3 with its key, after the filter shows only undecided pages.
        browser.click("#filters button[data-filter=undecided]");
        browser.wait_for("document.getElementById('c0').classList.contains('hidden')");
        browser.wait_for("document.querySelector('.card.sel') === document.getElementById('c2')");
        browser.press("r");
        browser.wait_for("document.querySelector('#c2 .decision').textContent.startsWith('rejected')");
        // Edit page 4's prompt: the key opens the editor.
        browser.press("j");
        browser.press("e");
        browser.wait_for("document.querySelector('#c3 details').open");
        browser.eval(&format!("document.querySelector('#c3 textarea').value = {EDITED:?}"));
        browser.click("#c3 button[data-act=edit]");
        browser.wait_for("document.querySelector('#c3 .decision').textContent === 'prompt edited'");
        // A refused action says why on its card.
        browser.click("#filters button[data-filter=all]");
        browser.click("#c0 button[data-act=reject]");
        browser.wait_for("document.querySelector('#c0 .error').textContent.includes('locked')");
        browser
    });
    let shot = tokio::task::block_in_place(|| browser.screenshot());
    let image = image::load_from_memory(&shot).unwrap();
    assert_eq!((image.width(), image.height()), (1280, 900));
    if let Some(path) = std::env::var_os("INKFLOW_REVIEW_SCREENSHOT") {
        std::fs::write(path, &shot).unwrap();
    }
    drop(browser);
    drop(served);

    let states = Journal::review_states(&r.out).unwrap();
    let state = |n: usize| states[&r.keys[n]].0.clone();
    assert_eq!(state(0).approved, Some(0));
    assert_eq!(state(1).picked, Some(0));
    assert_eq!(state(2).rejected, Some(0));
    assert_eq!(state(3).prompt.as_deref(), Some(EDITED));
    assert_the_next_run_obeys(&r).await;
}

/// The run button prices the pending decisions and asks before a run that pays: dismissed, it
/// pays nothing; confirmed, it pays for the rejected page once and streams the run's lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_chromium_a_paying_run_asks_first_and_runs_only_when_confirmed() {
    let Some(chromium) = crate::common::browser::chromium("review::in_chromium_a_paying_run") else { return };
    let r = reviewed_batch().await;
    Journal::review(&r.out, &r.keys[2], &ReviewAction::Reject, None).unwrap();
    let served = Served::start(&r.out, &r.file).await;
    let url = format!("{}?token={}", served.base, served.token);
    tokio::task::block_in_place(|| {
        let mut browser = crate::common::browser::Browser::open(&chromium, &url, 1280, 900);
        browser.wait_for("document.querySelectorAll('.card').length === 4");
        browser.click("#plan");
        let asked = browser.answer_dialog(false);
        assert!(asked.starts_with("This run may pay up to $0.0") && asked.ends_with("Run it?"), "{asked}");
        browser.wait_for("document.getElementById('plantext').textContent.includes('made again')");
        assert!(browser.eval("document.getElementById('log').hidden") == serde_json::Value::Bool(true));
        assert_eq!(r.fal.total_submissions(), 5, "dismissed: nothing paid");
        browser.click("#plan");
        browser.answer_dialog(true);
        browser.wait_for("document.getElementById('log').textContent.includes('run ended: exit status: 0')");
    });
    assert_eq!(r.fal.total_submissions(), 6, "confirmed: the rejected page, once");
}

#[tokio::test]
async fn a_run_from_the_page_shows_its_price_waits_for_confirmation_and_streams_its_lines() {
    let r = reviewed_batch().await;
    for (n, action) in [
        ReviewAction::Approve,
        ReviewAction::Pick(0),
        ReviewAction::Reject,
        ReviewAction::Edit(EDITED.into()),
    ]
    .into_iter()
    .enumerate()
    {
        Journal::review(&r.out, &r.keys[n], &action, None).unwrap();
    }
    let served = Served::start(&r.out, &r.file).await;
    let client = served.client().await;
    let plan: serde_json::Value =
        client.get(format!("{}api/plan", served.base)).send().await.unwrap().json().await.unwrap();
    // The dry run's estimate prices every item to run, the pick too (the raw cache will serve it):
    // an upper bound, and what the reviewer confirms.
    assert_eq!((plan["cost_usd"].as_f64(), plan["pays"].as_bool()), (Some(0.075), Some(true)), "{plan}");
    assert!(
        plan["summary"].as_str().unwrap().contains("2 page(s) rejected or edited are made again ($0.050)"),
        "{plan}"
    );

    let mut events = client.get(format!("{}api/events", served.base)).send().await.unwrap();
    let start = |confirmed: serde_json::Value| {
        client
            .post(format!("{}api/run", served.base))
            .header("origin", served.base.trim_end_matches('/'))
            .json(&serde_json::json!({ "confirmed_cost_usd": confirmed }))
            .send()
    };
    let unconfirmed = start(serde_json::Value::Null).await.unwrap();
    assert_eq!(unconfirmed.status(), 409);
    assert!(unconfirmed.text().await.unwrap().contains("may pay up to $0.075"));
    assert_eq!(
        start(serde_json::json!(0.01)).await.unwrap().status(),
        409,
        "confirming less is no confirmation"
    );
    assert_eq!(r.fal.total_submissions(), 5, "nothing ran unconfirmed");
    assert_eq!(start(serde_json::json!(0.075)).await.unwrap().status(), 202);

    let mut seen = String::new();
    while !seen.contains("data: \"run ended") {
        let chunk = events.chunk().await.unwrap().expect("the events go on until the run ends");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(seen.contains("event: run") && seen.contains("data: \"run ended: exit status: 0\""), "{seen}");
    drop(served);
    assert_the_next_run_obeys(&r).await;
}
