//! Kill safety with paid generation: the real binary, generating through an emulated fal.ai,
//! is SIGKILLed while requests are being polled or images downloaded, then resumed. Every
//! prompt must be paid for exactly once, and the book must come out complete and identical to
//! an uninterrupted run. Ctrl-C (SIGINT) while fal is generating collects what is paid for.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::common::binary::inkflow_with_test_key;
use crate::common::fal_emulator::{FalEmulator, HELD_RUNNING, Latency};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const ITEMS: u32 = 10;

fn inkflow() -> Command {
    Command::from(inkflow_with_test_key())
}

/// `inkflow run PIPELINE --output OUT`, ready for more arguments.
fn run_batch(pipeline: &Path, out: &Path) -> Command {
    let mut cmd = inkflow();
    cmd.arg("run").arg(pipeline).arg("--output").arg(out);
    cmd
}

/// A pipeline generating through the emulator; returns its path.
fn pipeline(dir: &Path, fal_base: &str, name: &str) -> PathBuf {
    pipeline_of(dir, fal_base, name, "")
}

/// [`pipeline`] with `trouble` (an emulator marker) in every prompt.
fn pipeline_of(dir: &Path, fal_base: &str, name: &str, trouble: &str) -> PathBuf {
    let prompts: Vec<serde_json::Value> = (1..=ITEMS)
        .map(|i| serde_json::json!({"section": "s", "image_number": i, "image_prompt": format!("a mandala number {i} {trouble}"), "description": format!("p{i}")}))
        .collect();
    let prompts_file = dir.join("prompts.json");
    std::fs::write(&prompts_file, serde_json::json!({ "prompts": prompts }).to_string()).unwrap();
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &file,
        format!(
            "version: 1
sources:
  prompts: {{ kind: prompts, path: {prompts} }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{fal_base}\", concurrency: 4, image_size: square,
              poll_interval_ms: 20, base_delay_ms: 10 }}
  gray: {{ kind: grayscale, inputs: [generate] }}
  print: {{ kind: upscale, inputs: [gray], width: 600, height: 800, dpi: 100 }}
  lineart: {{ kind: threshold, inputs: [print] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
  book: {{ kind: pdf, inputs: [lineart], path: book.pdf, on_missing: fail }}
",
            prompts = prompts_file.display()
        ),
    )
    .unwrap();
    file
}

async fn run_to_end(pipeline: &Path, out: &Path) {
    let result = run_batch(pipeline, out).output().await.unwrap();
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
}

fn pages(out: &Path) -> Vec<(String, Vec<u8>)> {
    let mut pages: Vec<(String, Vec<u8>)> = std::fs::read_dir(out)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "png"))
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    pages.sort();
    pages
}

/// Runs the batch against `fal` and SIGKILLs it once `ready` says the moment has come.
/// Returns the pipeline file, the output directory and an uninterrupted run's output.
async fn run_and_kill(
    dir: &Path,
    fal: &FalEmulator,
    ready: impl Fn(&FalEmulator) -> bool,
) -> (PathBuf, PathBuf, PathBuf) {
    let reference_fal = FalEmulator::start(Latency::default()).await;
    let reference = dir.join("reference");
    run_to_end(&pipeline(dir, &reference_fal.base(), "reference"), &reference).await;

    let file = pipeline(dir, &fal.base(), "killed");
    let out = dir.join("killed");
    let mut child = run_batch(&file, &out).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap();
    let started = Instant::now();
    while !ready(fal) {
        assert!(child.try_wait().unwrap().is_none(), "the batch ended before the moment to kill it");
        assert!(started.elapsed() < Duration::from_secs(60), "the moment to kill never came");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    child.kill().await.unwrap();
    let written_before = pages(&out).len();
    assert!(written_before < ITEMS as usize, "the kill came too late ({written_before} pages written)");
    (file, out, reference)
}

/// Checks a finished batch: the pages equal an uninterrupted run's, the book is whole,
/// nothing half-written is left and the journal counts every item written.
async fn assert_complete(out: &Path, reference: &Path) {
    assert_eq!(pages(out), pages(reference), "the resumed pages differ from an uninterrupted run");
    let book = lopdf::Document::load(out.join("book.pdf")).unwrap();
    assert_eq!(book.get_pages().len(), ITEMS as usize);
    for entry in std::fs::read_dir(out).unwrap().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp") && !name.ends_with(".partial"), "left behind: {name}");
    }
    let status = status_report(out).await;
    assert!(status.contains(&format!("written      {ITEMS}")), "{status}");
}

/// What `inkflow status` prints for a batch.
async fn status_report(out: &Path) -> String {
    let status = inkflow().arg("status").arg(out).output().await.unwrap();
    String::from_utf8_lossy(&status.stdout).into_owned()
}

/// Kills the batch at a moment when every accepted request is journaled, resumes it, and
/// checks that nothing was paid twice and the outputs equal an uninterrupted run's.
async fn kill_and_resume(latency: Latency, ready: impl Fn(&FalEmulator) -> bool) {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(latency).await;
    let (file, out, reference) = run_and_kill(dir.path(), &fal, ready).await;

    run_to_end(&file, &out).await;

    let submissions = fal.ledger.lock().unwrap().submissions.clone();
    assert_eq!(submissions.len(), ITEMS as usize, "every prompt was submitted");
    for (prompt, count) in &submissions {
        assert_eq!(*count, 1, "{prompt:?} was paid for {count} times");
    }
    assert_complete(&out, &reference).await;
    let status = status_report(&out).await;
    assert!(status.contains(&format!("${:.3}", f64::from(ITEMS) * 0.025)), "{status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_polling_it_resumes_without_paying_twice() {
    // Four requests in flight (the stage's concurrency), each polled at least once, so each
    // was journaled; the slow polls hold them there.
    let slow_polls = Latency { status: Duration::from_millis(400), ..Latency::default() };
    kill_and_resume(slow_polls, |fal| {
        fal.ledger.lock().unwrap().polled.len() >= 4 && fal.every_accepted_request_journaled()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_downloading_it_resumes_without_paying_twice() {
    let slow_downloads = Latency { download: Duration::from_millis(800), ..Latency::default() };
    kill_and_resume(slow_downloads, |fal| {
        fal.ledger.lock().unwrap().downloads >= 4 && fal.every_accepted_request_journaled()
    })
    .await;
}

/// Killed after fal accepted (and charged) four requests but before its answers arrived:
/// the journal knows they were sent but not their ids. The resume must not pay for them
/// again on its own, must say so, and `--retry-failed` must finish the book.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_while_submitting_it_reports_the_uncertain_requests_instead_of_paying_again() {
    let dir = tempfile::tempdir().unwrap();
    let slow_answers = Latency { submit: Duration::from_millis(1500), ..Latency::default() };
    let fal = FalEmulator::start(slow_answers).await;
    let (file, out, reference) = run_and_kill(dir.path(), &fal, |fal| fal.total_submissions() >= 4).await;
    let cut_off: Vec<String> = fal.ledger.lock().unwrap().submissions.keys().cloned().collect();
    assert_eq!(cut_off.len(), 4);

    let resumed = run_batch(&file, &out).output().await.unwrap();
    assert!(!resumed.status.success(), "four items could not be finished");
    let stdout = String::from_utf8_lossy(&resumed.stdout);
    assert!(stdout.contains("--retry-failed"), "the way forward is named: {stdout}");
    let report = status_report(&out).await;
    assert!(report.contains("4 request(s) sent by a run that stopped before fal answered"), "{report}");
    assert!(report.contains("written      6") && report.contains("failed       4"), "{report}");
    for (prompt, count) in fal.ledger.lock().unwrap().submissions.iter() {
        assert_eq!(*count, 1, "{prompt:?} was paid for {count} times without being asked");
    }

    let retried = run_batch(&file, &out).arg("--retry-failed").output().await.unwrap();
    assert!(retried.status.success(), "{}", String::from_utf8_lossy(&retried.stderr));
    for (prompt, count) in fal.ledger.lock().unwrap().submissions.iter() {
        let expected = if cut_off.contains(prompt) { 2 } else { 1 };
        assert_eq!(*count, expected, "{prompt:?}: submitted again only when asked");
    }
    assert_complete(&out, &reference).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_budget_holds_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let file = pipeline(dir.path(), &fal.base(), "budget");
    let out = dir.path().join("out");
    let run = || run_batch(&file, &out).args(["--set", "stages.generate.max_cost_usd=0.1"]).output();
    let first = run().await.unwrap();
    assert!(!first.status.success());
    let spent_first = fal.total_submissions();
    assert_eq!(spent_first, 4, "$0.10 buys four $0.025 images");
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(stdout.contains("max_cost_usd budget"), "{stdout}");

    let second = run().await.unwrap();
    assert!(!second.status.success());
    assert_eq!(fal.total_submissions(), spent_first, "a restart must not spend past the budget");
}

/// Starts the batch, waits until fal is generating four requests (the stage's concurrency)
/// and every one is journaled, then sends `signal` (SIGINT as Ctrl-C does, SIGTERM as
/// `docker stop` does) and waits until inkflow says it is stopping.
async fn stop_while_generating(
    fal: &FalEmulator,
    file: &Path,
    out: &Path,
    args: &[&str],
    signal: i32,
) -> Child {
    let mut child =
        run_batch(file, out).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let started = Instant::now();
    while !(fal.ledger.lock().unwrap().polled.len() >= 4 && fal.every_accepted_request_journaled()) {
        assert!(child.try_wait().unwrap().is_none(), "the batch ended before fal ran anything");
        assert!(started.elapsed() < Duration::from_secs(60), "fal never got four requests");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    send(&child, signal);
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    loop {
        let line = stderr.next_line().await.unwrap().expect("inkflow ended without saying it stops");
        if line.starts_with("stopping:") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = stderr.next_line().await {} });
    child
}

/// Sends `signal` to the running batch.
fn send(child: &Child, signal: i32) {
    let pid = i32::try_from(child.id().unwrap()).unwrap();
    // SAFETY: kill(2) on our own child's pid, which has not been reaped (it has not exited).
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

/// Exit code of a batch the user stopped.
async fn stopped_by_user(mut child: Child) {
    let status = tokio::time::timeout(Duration::from_secs(60), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(130), "Ctrl-C ends with its own exit code");
}

/// Ctrl-C while fal generates four paid requests: the run waits for them (within the stage's
/// `stop_wait`), writes their pages, submits and cancels nothing more, and the resume never
/// polls them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_collects_the_requests_fal_is_generating_before_it_exits() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let file = pipeline_of(dir.path(), &fal.base(), "stopped", HELD_RUNNING);
    let out = dir.path().join("out");
    let child =
        stop_while_generating(&fal, &file, &out, &["--set", "stages.generate.stop_wait=5m"], libc::SIGINT)
            .await;
    // The runners finish only after inkflow knows it is stopping.
    fal.ledger.lock().unwrap().released = true;
    stopped_by_user(child).await;

    let collected: Vec<String> = fal.ledger.lock().unwrap().polled.iter().cloned().collect();
    assert_eq!(fal.total_submissions(), 4, "nothing is submitted after Ctrl-C");
    {
        let ledger = fal.ledger.lock().unwrap();
        assert!(
            ledger.cancels.is_empty(),
            "a running request is collected, not cancelled: {:?}",
            ledger.cancels
        );
        for id in &collected {
            assert_eq!(ledger.result_fetches.get(id), Some(&1), "{id}: its result is fetched once");
        }
    }
    assert_eq!(pages(&out).len(), 4, "the four paid pages are written before the exit");
    let polls_before = fal.ledger.lock().unwrap().polls.clone();

    run_to_end(&file, &out).await;
    let ledger = fal.ledger.lock().unwrap();
    for id in &collected {
        assert_eq!(ledger.polls.get(id), polls_before.get(id), "{id}: the resume polled a collected request");
    }
    assert!(ledger.submissions.values().all(|n| *n == 1), "{:?}", ledger.submissions);
    assert_eq!(ledger.submissions.len(), ITEMS as usize);
    drop(ledger);
    assert_eq!(pages(&out).len(), ITEMS as usize);
}

/// The wait is bounded: requests fal still runs after `stop_wait` are left open in the
/// journal (never cancelled: they are paid for), and the resume collects them for free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ctrl_c_waits_at_most_stop_wait_then_leaves_running_requests_to_the_resume() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let file = pipeline_of(dir.path(), &fal.base(), "stopped", HELD_RUNNING);
    let out = dir.path().join("out");
    let child =
        stop_while_generating(&fal, &file, &out, &["--set", "stages.generate.stop_wait=1s"], libc::SIGINT)
            .await;
    stopped_by_user(child).await;
    assert!(pages(&out).is_empty(), "fal finished nothing, so nothing was written");
    assert!(fal.ledger.lock().unwrap().cancels.is_empty(), "paid requests are not cancelled");
    let status = status_report(&out).await;
    assert!(status.contains("4 paid request(s) not yet collected"), "{status}");

    fal.ledger.lock().unwrap().released = true;
    run_to_end(&file, &out).await;
    let ledger = fal.ledger.lock().unwrap();
    assert!(ledger.submissions.values().all(|n| *n == 1), "{:?}", ledger.submissions);
    assert_eq!(ledger.submissions.len(), ITEMS as usize);
    drop(ledger);
    assert_eq!(pages(&out).len(), ITEMS as usize);
}

/// SIGTERM (`docker stop`, systemd, Kubernetes) is a request to stop like Ctrl-C: the paid
/// requests fal is generating are collected within `stop_wait`, the summary and the review page
/// are written, and the exit code is Ctrl-C's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_like_ctrl_c_collecting_what_is_paid_for() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let file = pipeline_of(dir.path(), &fal.base(), "stopped", HELD_RUNNING);
    let out = dir.path().join("out");
    let args = ["--set", "stages.generate.stop_wait=5m"];
    let child = stop_while_generating(&fal, &file, &out, &args, libc::SIGTERM).await;
    fal.ledger.lock().unwrap().released = true;
    stopped_by_user(child).await;

    {
        let ledger = fal.ledger.lock().unwrap();
        assert_eq!(ledger.submissions.values().sum::<u32>(), 4, "nothing is submitted after SIGTERM");
        assert!(
            ledger.cancels.is_empty(),
            "paid requests are collected, not cancelled: {:?}",
            ledger.cancels
        );
        for id in &ledger.polled {
            assert_eq!(ledger.result_fetches.get(id), Some(&1), "{id}: its result is fetched once");
        }
    }
    assert_eq!(pages(&out).len(), 4, "the four paid pages are written before the exit");
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("batch_metadata.json")).unwrap()).unwrap();
    assert_eq!(
        (summary["interrupted"].as_bool(), summary["stopped_by_user"].as_bool()),
        (Some(true), Some(true))
    );
    assert_eq!(summary["succeeded"], 4, "{summary}");
    assert_eq!(summary["stop_reason"], "stopped on request (Ctrl-C or SIGTERM)");
    assert!(out.join("report.html").is_file(), "the review page is written");
    let status = status_report(&out).await;
    assert!(!status.contains("not yet collected"), "{status}");
}

/// A second request to stop, of either kind, quits at once, even while paid requests are
/// still being waited for.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_of_either_kind_quits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let fal = FalEmulator::start(Latency::default()).await;
    let file = pipeline_of(dir.path(), &fal.base(), "stopped", HELD_RUNNING);
    let out = dir.path().join("out");
    let args = ["--set", "stages.generate.stop_wait=5m"];
    let mut child = stop_while_generating(&fal, &file, &out, &args, libc::SIGINT).await;
    send(&child, libc::SIGTERM);
    let status = tokio::time::timeout(Duration::from_secs(20), child.wait()).await.unwrap().unwrap();
    assert_eq!(status.code(), Some(143), "it quits, with SIGTERM's exit code, without waiting 5 minutes");
    assert_eq!(fal.total_submissions(), 4);
}
