//! Scale-out on PostgreSQL (issue 32): real worker processes against a throwaway PostgreSQL,
//! the project's S3 test server for the output and the fal emulator, which counts accepted
//! submissions per prompt and the most requests in flight at once.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::common::fal_emulator::{FalEmulator, Latency};
use crate::common::pdf_reader;
use crate::common::postgres::Postgres;
use crate::common::s3::{KEY_ID, SECRET, Server};

const PREFIX: &str = "books/run";
/// The account's limit: the fal stage's `concurrency`.
const LIMIT: usize = 2;

/// A cluster: its database, its store, fal, and a pipeline of `prompts`.
struct Cluster {
    db: Postgres,
    s3: Server,
    fal: FalEmulator,
    dir: TempDir,
    pipeline: PathBuf,
}

impl Cluster {
    async fn start(test: &str, prompts: &[&str], latency: Latency) -> Option<Cluster> {
        let db = Postgres::start(test)?;
        let s3 = Server::start(true).await;
        let fal = FalEmulator::start(latency).await;
        let dir = tempfile::tempdir().unwrap();
        let project = dir.path().join("project");
        std::fs::create_dir(&project).unwrap();
        let prompts: Vec<serde_json::Value> = prompts
            .iter()
            .enumerate()
            .map(|(i, p)| serde_json::json!({"section": "s", "image_number": i + 1, "image_prompt": p, "description": format!("p{}", i + 1)}))
            .collect();
        let text = serde_json::json!({ "prompts": prompts }).to_string();
        std::fs::write(project.join("prompts.json"), text).unwrap();
        // Paths relative to the pipeline's folder: the workers get the files from the database.
        let pipeline = project.join("book.yaml");
        std::fs::write(
            &pipeline,
            format!(
                "version: 1
sources:
  prompts: {{ kind: prompts, path: prompts.json }}
stages:
  generate: {{ kind: fal, inputs: [prompts], base_url: \"{base}\", image_size: square, poll_interval_ms: 20,
              base_delay_ms: 10, max_attempts: 3, deadline: 5s, concurrency: {LIMIT} }}
  gray: {{ kind: grayscale, inputs: [generate] }}
  lineart: {{ kind: threshold, inputs: [gray] }}
sinks:
  pages: {{ kind: disk, inputs: [lineart], filename: \"{{number:02}}.png\" }}
  book: {{ kind: pdf, inputs: [lineart], path: book.pdf }}
",
                base = fal.base()
            ),
        )
        .unwrap();
        Some(Cluster { db, s3, fal, dir, pipeline })
    }

    /// `inkflow ARGS` with this machine's keys: fal's and the store's, never the database's.
    fn inkflow(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_inkflow"));
        command
            .current_dir(self.dir.path())
            .env("FAL_KEY", "cluster-test-key")
            .env_remove("FAL_API_KEY")
            .env("AWS_ENDPOINT_URL", &self.s3.endpoint)
            .env("AWS_REGION", "auto")
            .env("AWS_ACCESS_KEY_ID", KEY_ID)
            .env("AWS_SECRET_ACCESS_KEY", SECRET)
            .env("AWS_ALLOW_HTTP", "true")
            .env("RUST_LOG", "info")
            .args(args)
            .kill_on_drop(true);
        command
    }

    fn output(&self) -> String {
        format!("s3://{PREFIX}")
    }

    /// `inkflow run PIPELINE --cluster URL --output s3://... ARGS`.
    async fn run(&self, args: &[&str]) -> std::process::Output {
        let output = self.output();
        let pipeline = self.pipeline.to_str().unwrap();
        let mut all = vec!["run", pipeline, "--cluster", &self.db.url, "--output", &output];
        all.extend_from_slice(args);
        self.inkflow(&all).output().await.unwrap()
    }

    /// A worker process; its log goes to `worker-N.log` in the test folder.
    fn worker(&self, n: u32, threads: u32, lease: &str, exit_when_idle: bool) -> Child {
        let log = std::fs::File::create(self.dir.path().join(format!("worker-{n}.log"))).unwrap();
        let threads = threads.to_string();
        let mut args = vec!["worker", "--cluster", &self.db.url, "--threads", &threads, "--lease", lease];
        if exit_when_idle {
            args.push("--exit-when-idle");
        }
        self.inkflow(&args).stdout(Stdio::null()).stderr(log).spawn().unwrap()
    }

    /// `inkflow status --cluster URL s3://...`'s report.
    async fn status(&self) -> String {
        let output =
            self.inkflow(&["status", "--cluster", &self.db.url, &self.output()]).output().await.unwrap();
        assert_success(&output, "status --cluster");
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    fn log(&self, n: u32) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("worker-{n}.log"))).unwrap_or_default()
    }

    fn object(&self, name: &str) -> PathBuf {
        self.s3.object_file(&format!("run/{name}"))
    }

    /// Waits for a worker that leaves when idle, with its log on failure.
    async fn wait_for(&self, mut worker: Child, n: u32) {
        let status = tokio::time::timeout(Duration::from_secs(120), worker.wait()).await;
        let status =
            status.unwrap_or_else(|_| panic!("worker {n} did not finish:\n{}", self.log(n))).unwrap();
        assert!(status.success(), "worker {n} failed:\n{}", self.log(n));
    }

    fn book_pages(&self) -> usize {
        let book = self.object("book.pdf");
        assert!(book.is_file(), "no book in the store at {}", book.display());
        pdf_reader::pages(&pdf_reader::load(&book)).len()
    }
}

fn prompts(n: usize) -> Vec<String> {
    (1..=n).map(|i| format!("a lighthouse number {i} on a rock")).collect()
}

fn assert_success(output: &std::process::Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Polls `done` (a condition on the emulator) until it holds.
async fn until(what: &str, done: impl Fn() -> bool) {
    let started = Instant::now();
    while !done() {
        assert!(started.elapsed() < Duration::from_secs(60), "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn two_workers_pay_each_page_once_within_the_account_limit_and_build_the_book_once() {
    let prompts = prompts(8);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let latency = Latency { status: Duration::from_millis(80), ..Latency::default() };
    let Some(cluster) = Cluster::start("cluster e2e", &texts, latency).await else { return };
    let detached = cluster.run(&["--detach"]).await;
    assert_success(&detached, "run --detach");
    let id = String::from_utf8_lossy(&detached.stdout).trim().to_owned();
    assert_eq!(id.len(), 16, "--detach prints the batch id: {id:?}");
    // The workers need nothing of the project: the batch carries its files.
    let prompts_file = cluster.pipeline.with_file_name("prompts.json");
    let kept = std::fs::read(&prompts_file).unwrap();
    std::fs::remove_file(&prompts_file).unwrap();

    // Three threads each: six items could be in work at once, against a limit of two.
    let workers = [cluster.worker(1, 3, "5s", true), cluster.worker(2, 3, "5s", true)];
    for (n, worker) in workers.into_iter().enumerate() {
        cluster.wait_for(worker, n as u32 + 1).await;
    }

    // Running the same batch again (from the project) attaches to it, and reports it as a
    // local run would.
    std::fs::write(&prompts_file, kept).unwrap();
    let attached = cluster.run(&[]).await;
    assert_success(&attached, "run (attach)");
    let summary = String::from_utf8_lossy(&attached.stdout);
    let succeeded = summary.lines().find(|l| l.trim_start().starts_with("succeeded"));
    assert!(succeeded.is_some_and(|l| l.trim_end().ends_with(" 8")), "{summary}");

    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in &prompts {
            assert_eq!(ledger.accepted(prompt), 1, "{prompt} paid once");
        }
        let peak = ledger.peak_in_flight;
        assert!((1..=LIMIT).contains(&peak), "peak in flight {peak}, limit {LIMIT}");
    }
    for number in 1..=8 {
        assert!(cluster.object(&format!("{number:02}.png")).is_file(), "page {number} in the store");
    }
    assert_eq!(cluster.book_pages(), 8, "the book has every page");
    let metadata: serde_json::Value =
        serde_json::from_slice(&std::fs::read(cluster.object("batch_metadata.json")).unwrap()).unwrap();
    let billed = cluster.fal.ledger.lock().unwrap().billed_usd();
    let recorded = metadata["cost_usd"].as_f64().unwrap_or_default();
    assert!(
        billed > 0.0 && (recorded - billed).abs() < 1e-6,
        "batch_metadata.json: ${recorded}, billed ${billed}"
    );
    assert!(cluster.object("report.html").is_file());
    let status = cluster.status().await;
    assert!(status.contains("written      8"), "status agrees:\n{status}");
    // `report --cluster` writes the review page again in the store.
    std::fs::remove_file(cluster.object("report.html")).unwrap();
    let report =
        cluster.inkflow(&["report", "--cluster", &cluster.db.url, &cluster.output()]).output().await.unwrap();
    assert_success(&report, "report --cluster");
    let page = std::fs::read_to_string(cluster.object("report.html")).unwrap();
    assert!(page.contains("p8"), "the review page lists the pages");
    let books: usize = (1..=2).map(|n| cluster.log(n).matches("building the book").count()).sum();
    assert_eq!(books, 1, "one worker built the book");
    for n in 1..=2 {
        assert!(!cluster.log(n).contains("cluster-test-key"), "no key in worker {n}'s log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_submit_leaves_a_possibly_charged_item_that_only_retry_failed_pays_again() {
    let prompts = prompts(3);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    // fal holds each submission's answer two seconds: the kill lands after fal accepted it.
    let latency = Latency { submit: Duration::from_secs(2), ..Latency::default() };
    let Some(cluster) = Cluster::start("cluster kill mid-submit", &texts, latency).await else { return };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    let mut doomed = cluster.worker(1, 1, "2s", false);
    until("the first submission", || cluster.fal.total_submissions() >= 1).await;
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();

    let survivor = cluster.worker(2, 2, "2s", true);
    cluster.wait_for(survivor, 2).await;
    let first = cluster.run(&[]).await;
    assert!(!first.status.success(), "a possibly charged item fails the batch, as locally");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("fal's answer never arrived"), "reported as possibly charged:\n{text}");
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in &prompts {
            assert_eq!(
                ledger.accepted(prompt),
                1,
                "{prompt}: accepted once, never paid again by the takeover"
            );
        }
        assert!(ledger.peak_in_flight <= LIMIT);
    }
    assert_eq!(cluster.book_pages(), 3, "the book has a page for every item");
    let status = cluster.status().await;
    assert!(
        status.contains("failed       1") && status.contains("written      2"),
        "status agrees:\n{status}"
    );
    assert!(status.contains("1 request(s) sent by a run that stopped before fal answered"), "{status}");
    for number in 2..=3 {
        assert!(cluster.object(&format!("{number:02}.png")).is_file(), "page {number} in the store");
    }

    // --retry-failed is the word to pay again.
    let mut retry = cluster.inkflow(&[
        "run",
        cluster.pipeline.to_str().unwrap(),
        "--cluster",
        &cluster.db.url,
        "--output",
        &cluster.output(),
        "--retry-failed",
        "--detach",
    ]);
    assert_success(&retry.output().await.unwrap(), "run --retry-failed");
    cluster.wait_for(cluster.worker(3, 2, "2s", true), 3).await;
    assert_success(&cluster.run(&[]).await, "run after the retry");
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        assert_eq!(ledger.accepted(&prompts[0]), 2, "paid again only when asked");
        assert_eq!(ledger.accepted(&prompts[1]), 1);
    }
    assert!(cluster.object("01.png").is_file());
    assert!(cluster.status().await.contains("written      3"));
}

/// Three items, one worker of one thread until `ready` holds on the emulator; then that worker is
/// killed (or paused past its lease, then let go), and a second worker finishes the batch.
/// Every item is paid once and written, the book has every page, the limit held, and status
/// agrees.
async fn takeover(test: &str, latency: Latency, ready: fn(&FalEmulator) -> bool, pause: bool) {
    let prompts = prompts(3);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::start(test, &texts, latency).await else { return };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    let mut first = cluster.worker(1, 1, "2s", true);
    until("the moment to strike", || ready(&cluster.fal)).await;
    let pid = first.id().unwrap() as i32;
    if pause {
        // SAFETY: signals to our own child process.
        unsafe { libc::kill(pid, libc::SIGSTOP) };
    } else {
        first.start_kill().unwrap();
        first.wait().await.unwrap();
    }
    let second = cluster.worker(2, 2, "2s", true);
    if pause {
        // The paused worker's request is polled again: the second worker took the item over
        // once the lease ran out.
        let polls_of_first = || {
            let ledger = cluster.fal.ledger.lock().unwrap();
            let first = ledger.requests_of(&prompts[0]).first().cloned().unwrap_or_default();
            ledger.polls.get(&first).copied().unwrap_or(0)
        };
        let paused_at = polls_of_first();
        until("the takeover", || polls_of_first() > paused_at).await;
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        cluster.wait_for(first, 1).await;
    }
    cluster.wait_for(second, 2).await;
    assert_success(&cluster.run(&[]).await, "run (attach)");
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in &prompts {
            assert_eq!(ledger.accepted(prompt), 1, "{prompt}: paid once, the takeover polled it");
        }
        assert!(ledger.peak_in_flight <= LIMIT);
    }
    for number in 1..=3 {
        assert!(cluster.object(&format!("{number:02}.png")).is_file(), "page {number} in the store");
    }
    assert_eq!(cluster.book_pages(), 3);
    let status = cluster.status().await;
    assert!(status.contains("written      3"), "status agrees:\n{status}");
}

/// fal holds every request two seconds at its status poll.
fn slow_to_finish() -> Latency {
    Latency { status: Duration::from_secs(2), ..Latency::default() }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_while_it_polls_is_taken_over_by_polling_the_same_request() {
    takeover(
        "cluster kill while polling",
        slow_to_finish(),
        |fal| !fal.ledger.lock().unwrap().polled.is_empty(),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_paused_past_its_lease_loses_the_item_and_nothing_is_paid_twice() {
    takeover(
        "cluster pause past the lease",
        slow_to_finish(),
        |fal| !fal.ledger.lock().unwrap().polled.is_empty(),
        true,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_drains_a_worker_it_finishes_the_item_in_hand_and_takes_no_other() {
    let prompts = prompts(3);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::start("cluster drain", &texts, slow_to_finish()).await else { return };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    let mut worker = cluster.worker(1, 1, "5s", false);
    until("the first poll", || !cluster.fal.ledger.lock().unwrap().polled.is_empty()).await;
    // SAFETY: a signal to our own child process.
    unsafe { libc::kill(worker.id().unwrap() as i32, libc::SIGTERM) };
    let status = tokio::time::timeout(Duration::from_secs(60), worker.wait()).await.unwrap().unwrap();
    assert!(status.success(), "a drained worker ends cleanly:\n{}", cluster.log(1));
    let status = cluster.status().await;
    assert!(status.contains("written      1") && status.contains("pending      2"), "{status}");
    assert_eq!(cluster.fal.total_submissions(), 1, "nothing new was taken after SIGTERM");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_small_batch_is_not_starved_behind_a_large_one() {
    let large = prompts(12);
    let texts: Vec<&str> = large.iter().map(String::as_str).collect();
    let latency = Latency { status: Duration::from_millis(300), ..Latency::default() };
    let Some(cluster) = Cluster::start("cluster fairness", &texts, latency).await else { return };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach (large)");
    let small_output = "s3://books/small";
    let pipeline = cluster.pipeline.to_str().unwrap();
    let mut small = cluster.inkflow(&[
        "run",
        pipeline,
        "--cluster",
        &cluster.db.url,
        "--output",
        small_output,
        "--detach",
        "--set",
        "sources.prompts.limit=2",
    ]);
    assert_success(&small.output().await.unwrap(), "run --detach (small)");
    cluster.wait_for(cluster.worker(1, 2, "5s", true), 1).await;
    // When the small batch's last item settled, most of the large one was still to do.
    let client = inkflow::cluster::Database::connect(&cluster.db.url).await.unwrap().client;
    let small_id = inkflow::cluster::registration::batch_id(small_output);
    let large_id = inkflow::cluster::registration::batch_id(&cluster.output());
    let row = client
        .query_one(
            "SELECT count(*) FROM items WHERE batch_id = $2 AND state = 'written' AND updated_at <=
                (SELECT max(updated_at) FROM items WHERE batch_id = $1)",
            &[&small_id, &large_id],
        )
        .await
        .unwrap();
    let large_done: i64 = row.get(0);
    // First in, first out would finish all 12 large pages first. Shared fairly, the small batch's
    // two pages take about two of the worker's rounds (2 or 3 large pages); the bound leaves room
    // for a loaded machine, where one page's requests and upload can take several rounds.
    assert!(large_done <= 8, "the small batch finished after {large_done} of the large one's 12 pages");
    let small_written = client
        .query_one("SELECT count(*) FROM items WHERE batch_id = $1 AND state = 'written'", &[&small_id])
        .await
        .unwrap()
        .get::<_, i64>(0);
    assert_eq!(small_written, 2);
}
