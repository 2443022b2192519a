//! Scale-out on PostgreSQL (issue 32): real worker processes against a throwaway PostgreSQL,
//! the project's S3 test server for the output and the fal emulator, which counts accepted
//! submissions per prompt and the most requests in flight at once.

use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::process::{Child, Command};

use crate::common::fal_emulator::{FalEmulator, HELD_RUNNING, LOCKED_KEY, Latency};
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
        self.worker_reaching(&self.db.url, n, threads, lease, exit_when_idle)
    }

    /// A worker that reaches the database at `url` (through a proxy the test controls).
    fn worker_reaching(&self, url: &str, n: u32, threads: u32, lease: &str, exit_when_idle: bool) -> Child {
        self.worker_command(url, n, threads, lease, exit_when_idle).spawn().unwrap()
    }

    /// The command of worker `n`, to adjust (its environment) before it starts.
    fn worker_command(&self, url: &str, n: u32, threads: u32, lease: &str, exit_when_idle: bool) -> Command {
        let log = std::fs::File::create(self.dir.path().join(format!("worker-{n}.log"))).unwrap();
        let threads = threads.to_string();
        let mut args = vec!["worker", "--cluster", url, "--threads", &threads, "--lease", lease];
        if exit_when_idle {
            args.push("--exit-when-idle");
        }
        let mut command = self.inkflow(&args);
        command.stdout(Stdio::null()).stderr(log);
        command
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
    only_retry_failed_pays_again(&cluster, &prompts).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_between_the_submit_and_writing_the_request_id_leaves_a_possibly_charged_item() {
    let prompts = prompts(3);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) =
        Cluster::start("cluster kill before the request id", &texts, Latency::default()).await
    else {
        return;
    };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    // The doomed worker reaches the database through a proxy that goes silent as it sends the
    // statement writing the request id (the journal's `submitted`): fal has accepted the
    // submission, and the worker is blocked on that write when it is killed.
    let proxy = SilencingProxy::start(&cluster.db.url, "UPDATE submissions SET request").await;
    let mut doomed = cluster.worker_reaching(&proxy.url, 1, 1, "2s", false);
    until("the worker writing the request id", || proxy.is_silenced()).await;
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    let client = inkflow::cluster::Database::connect(&cluster.db.url).await.unwrap().client;
    let row = client
        .query_one("SELECT count(*), count(*) FILTER (WHERE request IS NULL) FROM submissions", &[])
        .await
        .unwrap();
    assert_eq!(
        (row.get::<_, i64>(0), row.get::<_, i64>(1)),
        (1, 1),
        "one submission on record, without its request id"
    );
    assert_eq!(cluster.fal.ledger.lock().unwrap().accepted(&prompts[0]), 1, "fal accepted it");
    only_retry_failed_pays_again(&cluster, &prompts).await;
}

/// After the worker running the first of `prompts` died with fal's answer to its submission
/// unrecorded, a second worker finishes the batch without paying for that item again: the
/// run reports it as possibly charged, every other page is in the store and the book, the
/// account's limit held, and status agrees. Only `--retry-failed` submits it again.
async fn only_retry_failed_pays_again(cluster: &Cluster, prompts: &[String]) {
    {
        // fal runs an accepted request to its end whether or not its client lives, and then it
        // no longer takes one of the account's slots; nobody collects it, so the emulator would
        // count it in flight for ever.
        let mut ledger = cluster.fal.ledger.lock().unwrap();
        for orphan in ledger.requests_of(&prompts[0]) {
            ledger.in_flight.remove(&orphan);
        }
    }
    let survivor = cluster.worker(2, 2, "2s", true);
    cluster.wait_for(survivor, 2).await;
    let first = cluster.run(&[]).await;
    assert!(!first.status.success(), "a possibly charged item fails the batch, as locally");
    let text = String::from_utf8_lossy(&first.stdout);
    assert!(text.contains("fal's answer never arrived"), "reported as possibly charged:\n{text}");
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in prompts {
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

#[tokio::test(flavor = "multi_thread")]
async fn the_batch_budget_reached_stops_the_batch_for_every_worker_and_leaves_the_rest_unstarted() {
    let prompts = prompts(4);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::start("cluster budget stop", &texts, Latency::default()).await else {
        return;
    };
    // $0.05 buys two of the four $0.025 pages.
    let budget = ["--detach", "--set", "stages.generate.max_cost_usd=0.05"];
    assert_success(&cluster.run(&budget).await, "run --detach");
    let workers = [cluster.worker(1, 1, "5s", true), cluster.worker(2, 1, "5s", true)];
    for (n, worker) in workers.into_iter().enumerate() {
        cluster.wait_for(worker, n as u32 + 1).await;
    }
    assert_eq!(cluster.fal.total_submissions(), 2, "the budget held across the workers");
    let status = cluster.status().await;
    assert!(
        status.contains("the last run stopped early: stage \"generate\": max_cost_usd budget of $0.05"),
        "{status}"
    );
    // As a local run leaves them: the two pages the budget did not reach are not failed, and a
    // later run takes them up.
    assert!(status.contains("written      2") && status.contains("pending      2"), "{status}");
    assert!(!status.contains("failed"), "{status}");
    let client = inkflow::cluster::Database::connect(&cluster.db.url).await.unwrap().client;
    let summary: serde_json::Value =
        client.query_one("SELECT summary FROM batches", &[]).await.unwrap().get(0);
    assert_eq!(summary["interrupted"], true, "{summary}");
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["not_started"].as_u64()),
        (Some(2), Some(2)),
        "{summary}"
    );
    assert!(!cluster.object("book.pdf").exists(), "no book of a batch that stopped early, as locally");
    let stored = (1..=4).filter(|n| cluster.object(&format!("{n:02}.png")).is_file()).count();
    assert_eq!(stored, 2, "the pages paid for are in the store");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_paid_item_cut_short_by_a_batch_wide_stop_is_collected_by_the_next_run_never_paid_again() {
    let mut prompts = prompts(3);
    prompts[0] = format!("{} {HELD_RUNNING}", prompts[0]);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::start("cluster stop with a paid item", &texts, Latency::default()).await
    else {
        return;
    };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    // The first worker's request is paid for (fal runs it) when the worker dies.
    let mut doomed = cluster.worker(1, 1, "2s", false);
    until("the first poll", || !cluster.fal.ledger.lock().unwrap().polled.is_empty()).await;
    doomed.start_kill().unwrap();
    doomed.wait().await.unwrap();
    // A worker whose fal account is locked: every call it makes to fal fails, which stops the
    // batch (as a local run stops), whether it meets the paid request or a new item first.
    let mut locked = cluster.worker_command(&cluster.db.url, 2, 2, "2s", true);
    locked.env("FAL_KEY", LOCKED_KEY);
    cluster.wait_for(locked.spawn().unwrap(), 2).await;
    let status = cluster.status().await;
    assert!(status.contains("the last run stopped early") && status.contains("locked"), "{status}");
    assert!(status.contains("pending      3"), "every item is left for a later run:\n{status}");
    assert!(status.contains("1 paid request(s) not yet collected"), "{status}");
    assert_eq!(cluster.fal.total_submissions(), 1);

    // The account is paid up and the batch is run again: the paid request is collected, for free.
    cluster.fal.ledger.lock().unwrap().released = true;
    assert_success(&cluster.run(&["--detach"]).await, "run again");
    cluster.wait_for(cluster.worker(3, 2, "2s", true), 3).await;
    assert_success(&cluster.run(&[]).await, "run (attach)");
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in &prompts {
            assert_eq!(ledger.accepted(prompt), 1, "{prompt}: paid once");
        }
        assert!(ledger.peak_in_flight <= LIMIT);
    }
    assert_eq!(cluster.book_pages(), 3);
    assert!(cluster.status().await.contains("written      3"));
}

/// A TCP proxy in front of the real PostgreSQL that goes silent for good the moment a client
/// sends a statement containing `marker`: that statement and everything after it is swallowed,
/// as if the network died with the packets in flight. The client is then blocked on exactly
/// that statement, and the test knows it.
struct SilencingProxy {
    /// The database's URL, through the proxy.
    url: String,
    silenced: Arc<AtomicBool>,
}

impl SilencingProxy {
    async fn start(database_url: &str, marker: &'static str) -> SilencingProxy {
        let (head, tail) = database_url.split_once("127.0.0.1:").expect("a loopback database URL");
        let (port, rest) = tail.split_once('/').unwrap();
        let upstream = format!("127.0.0.1:{port}");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("{head}127.0.0.1:{}/{rest}", listener.local_addr().unwrap().port());
        let silenced = Arc::new(AtomicBool::new(false));
        let flag = silenced.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let (upstream, flag) = (upstream.clone(), flag.clone());
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&upstream).await else { return };
                    let (mut from_client, mut to_client) = client.into_split();
                    let (mut from_server, mut to_server) = server.into_split();
                    tokio::spawn(async move { tokio::io::copy(&mut from_server, &mut to_client).await });
                    let (mut seen, mut chunk) = (Vec::new(), vec![0u8; 16 * 1024]);
                    loop {
                        let n = match from_client.read(&mut chunk).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        // The marker may straddle two reads: keep the tail of the one before.
                        seen.extend_from_slice(&chunk[..n]);
                        if seen.windows(marker.len()).any(|w| w == marker.as_bytes()) {
                            flag.store(true, Ordering::SeqCst);
                        }
                        seen.drain(..seen.len().saturating_sub(marker.len()));
                        if flag.load(Ordering::SeqCst) {
                            continue;
                        }
                        if to_server.write_all(&chunk[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        SilencingProxy { url, silenced }
    }

    fn is_silenced(&self) -> bool {
        self.silenced.load(Ordering::SeqCst)
    }
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

#[tokio::test(flavor = "multi_thread")]
async fn a_rerun_with_an_option_fal_never_sees_makes_every_page_again_from_the_stored_originals() {
    let prompts = prompts(3);
    let texts: Vec<&str> = prompts.iter().map(String::as_str).collect();
    let Some(cluster) = Cluster::start("cluster rerun from the raw cache", &texts, Latency::default()).await
    else {
        return;
    };
    assert_success(&cluster.run(&["--detach"]).await, "run --detach");
    cluster.wait_for(cluster.worker(1, 2, "5s", true), 1).await;
    assert_eq!(cluster.fal.total_submissions(), 3, "the first round pays for each page");
    let originals = || -> Vec<(PathBuf, std::time::SystemTime)> {
        let dir = cluster.object("cache/raw");
        let mut found: Vec<_> = std::fs::read_dir(&dir)
            .unwrap_or_else(|e| panic!("no raw cache in the store at {}: {e}", dir.display()))
            .flatten()
            .map(|e| (e.path(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        found.sort();
        found
    };
    let stored = originals();
    assert_eq!(stored.len(), 6, "an original and its facts per page: {stored:?}");

    // A new threshold level and new page names: every item's fingerprint changes, not what fal
    // is asked. Another worker, with an empty scratch folder, makes the pages again.
    let changed = ["--set", "stages.lineart.level=40", "--set", "sinks.pages.filename=page-{number:02}.png"];
    let mut args = vec!["--detach"];
    args.extend_from_slice(&changed);
    assert_success(&cluster.run(&args).await, "run --detach with new options");
    cluster.wait_for(cluster.worker(2, 2, "5s", true), 2).await;
    assert_success(&cluster.run(&changed).await, "run (attach) with the same options");
    for number in 1..=3 {
        assert!(cluster.object(&format!("page-{number:02}.png")).is_file(), "page {number} made again");
    }
    {
        let ledger = cluster.fal.ledger.lock().unwrap();
        for prompt in &prompts {
            assert_eq!(
                ledger.accepted(prompt),
                1,
                "{prompt}: served from the stored original, not paid again"
            );
        }
    }
    assert_eq!(originals(), stored, "the originals read back are not stored again");
    assert_eq!(cluster.book_pages(), 3);
    assert!(cluster.status().await.contains("written      3"));
}
