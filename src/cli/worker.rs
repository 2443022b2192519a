//! `inkflow worker --cluster URL`: a stateless worker. It claims items of any registered
//! batch, runs each through the batch's pipeline in a scratch folder with the cluster's
//! journal, copies the files to the batch's output store and records how the item ended; when
//! every item of a batch is settled, one worker builds the book, the cover, the summary and the
//! report. SIGTERM (or Ctrl-C) drains it: no new items, those in hand are finished.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use inkflow::cluster::Database;
use inkflow::cluster::journal::{ClusterJournal, Role};
use inkflow::cluster::limiter::{Limit, account_from_env};
use inkflow::cluster::queue::{self, Claim};
use inkflow::cluster::store::OutputStore;
use inkflow::engine::pipeline::{self, LoadOptions, Pipeline, Reads};
use inkflow::engine::raw_cache::RawCache;
use inkflow::engine::run_context::RunContext;
use inkflow::engine::runtime::{self, Batch, RunSettings};
use inkflow::engine::stage::Registry;
use tokio_util::sync::CancellationToken;

use super::shutdown::StopSignals;

/// Arguments of `inkflow worker`.
#[derive(clap::Args)]
pub struct WorkerArgs {
    /// The cluster's PostgreSQL, e.g. postgres://inkflow@db:5432/inkflow.
    #[arg(long, value_name = "URL")]
    cluster: String,
    /// Items this worker works on at once.
    #[arg(long, value_name = "N", default_value_t = 4)]
    threads: usize,
    /// How long a claim holds without renewal; renewed every third of it.
    #[arg(long, value_name = "DURATION", default_value = "30s")]
    lease: humantime::Duration,
    /// Leave once no registered batch is left unfinished (for scripts and tests).
    #[arg(long)]
    exit_when_idle: bool,
}

/// How long an idle worker waits before looking for work again.
const IDLE_POLL: Duration = Duration::from_millis(150);

/// Runs a worker until it is stopped (or idle, with `--exit-when-idle`).
pub fn run(args: WorkerArgs) -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_target(false)
        .init();
    let tokio =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start tokio")?;
    tokio.block_on(async move {
        let db = Database::connect(&args.cluster).await?;
        let scratch = tempfile::Builder::new().prefix("inkflow-worker-").tempdir()?;
        let worker = Arc::new(Worker {
            db,
            name: queue::worker_name(),
            lease: args.lease.into(),
            scratch: scratch.path().to_owned(),
            projects: tokio::sync::Mutex::new(HashMap::new()),
        });
        tracing::info!("worker {} started with {} thread(s)", worker.name, args.threads);
        let stop = CancellationToken::new();
        let signals = StopSignals::install().context("cannot listen for SIGTERM and Ctrl-C")?;
        tokio::spawn(
            signals.stop_on_request(stop.clone(), "finishing the items in hand, taking no new ones"),
        );
        let renewing = tokio::spawn(worker.clone().renew_leases());
        let mut slots = tokio::task::JoinSet::new();
        for _ in 0..args.threads.max(1) {
            slots.spawn(worker.clone().work(stop.clone(), args.exit_when_idle));
        }
        while let Some(joined) = slots.join_next().await {
            if let Err(e) = joined {
                tracing::error!("worker task: {e}");
            }
        }
        renewing.abort();
        tracing::info!("worker {} stopped", worker.name);
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// The fal limit of each paid stage, by stage id.
type PaidStages = HashMap<String, Limit>;

/// A batch's project as registered, written out where this worker reads it, with its
/// pipeline read and checked once: each claimed item only builds the components.
struct Project {
    pipeline: Pipeline,
    registry: Registry,
    output: String,
    /// The output's store, whose connections every item of the batch reuses.
    store: OutputStore,
}

struct Worker {
    db: Database,
    name: String,
    lease: Duration,
    scratch: PathBuf,
    /// Projects written out, by batch and registration.
    projects: tokio::sync::Mutex<HashMap<(String, i64), Arc<Project>>>,
}

impl Worker {
    async fn renew_leases(self: Arc<Self>) {
        loop {
            tokio::time::sleep(self.lease / 3).await;
            if let Err(e) = queue::renew(&self.db, &self.name, self.lease).await {
                tracing::warn!("renewing leases: {e:#}");
            }
        }
    }

    /// One slot's loop: claim an item, run it; when there is none, build the books that are due.
    async fn work(self: Arc<Self>, stop: CancellationToken, exit_when_idle: bool) {
        while !stop.is_cancelled() {
            let claimed = queue::claim(&self.db, &self.name, self.lease).await;
            match claimed {
                Ok(Some(claim)) => {
                    if let Err(e) = self.run_item(&claim).await {
                        tracing::error!("{}: {e:#}", claim.key);
                        let _ = queue::settle(&self.db, &claim, &self.name, None).await;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::error!("claiming an item: {e:#}"),
            }
            match queue::ready_to_finish(&self.db).await {
                Ok(batches) => {
                    for batch in batches {
                        if let Err(e) = self.finish_batch(&batch).await {
                            tracing::error!("batch {batch}: building the book: {e:#}");
                        }
                    }
                }
                Err(e) => tracing::error!("looking for batches to finish: {e:#}"),
            }
            if exit_when_idle && self.nothing_left().await {
                break;
            }
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(IDLE_POLL) => {}
            }
        }
    }

    async fn nothing_left(&self) -> bool {
        let left =
            self.db.client.query_one("SELECT count(*) FROM batches WHERE finished_at IS NULL", &[]).await;
        left.is_ok_and(|row| row.get::<_, i64>(0) == 0)
    }

    /// The batch's project, written out under the scratch folder once per registration.
    async fn project(&self, batch: &str) -> anyhow::Result<Arc<Project>> {
        let row = self
            .db
            .client
            .query_one(
                "SELECT pipeline_file, pipeline_text, overrides, output, revision FROM batches WHERE id = $1",
                &[&batch],
            )
            .await?;
        let revision: i64 = row.get(4);
        let mut projects = self.projects.lock().await;
        if let Some(project) = projects.get(&(batch.to_owned(), revision)) {
            return Ok(project.clone());
        }
        let dir = self.scratch.join("projects").join(format!("{batch}-{revision}"));
        let name: String = row.get(0);
        let text: String = row.get(1);
        let overrides: serde_json::Value = row.get(2);
        let files = self
            .db
            .client
            .query("SELECT path, content FROM batch_files WHERE batch_id = $1", &[&batch])
            .await?;
        for file in files {
            let path: String = file.get(0);
            let content: Vec<u8> = file.get(1);
            let target = inside(&dir, &path)?;
            tokio::fs::create_dir_all(target.parent().unwrap_or(&dir)).await?;
            tokio::fs::write(&target, content).await?;
        }
        let pipeline_file = inside(&dir, &name)?;
        tokio::fs::create_dir_all(&dir).await?;
        tokio::fs::write(&pipeline_file, text).await?;
        let overrides = serde_json::from_value(overrides).unwrap_or_default();
        let (pipeline, registry) = tokio::task::block_in_place(|| {
            let root = pipeline::read_tree(&pipeline_file, &LoadOptions { overrides })?;
            let registry = super::registry_for(&pipeline_file, &root)?;
            let checked = pipeline::check_reads(&pipeline_file, &root, &registry, Reads::MustExist)?;
            anyhow::Ok((checked, registry))
        })?;
        let output: String = row.get(3);
        let store = OutputStore::open(&output)?;
        let project = Arc::new(Project { pipeline, registry, output, store });
        projects.insert((batch.to_owned(), revision), project.clone());
        Ok(project)
    }

    /// Builds the batch's pipeline writing into `output_dir`, with the fal limits and budgets
    /// of its paid stages.
    fn build(
        project: &Project,
        output_dir: &Path,
    ) -> anyhow::Result<(Batch, PaidStages, HashMap<String, f64>)> {
        let batch = runtime::build(project.pipeline.clone(), &project.registry, output_dir, false)?;
        let account = account_from_env().unwrap_or_else(|| "no-key".into());
        let (mut limits, mut budgets) = (HashMap::new(), HashMap::new());
        for spec in batch.pipeline().components.iter().filter(|c| c.kind == "fal") {
            let concurrency = spec.concurrency as u32;
            limits.insert(spec.id.clone(), Limit { account: account.clone(), concurrency });
            if let Some(budget) = spec.options.get("max_cost_usd").and_then(serde_json::Value::as_f64) {
                budgets.insert(spec.id.clone(), budget);
            }
        }
        Ok((batch, limits, budgets))
    }

    /// Runs one claimed item in a scratch folder, stores its files, then records how it ended.
    async fn run_item(&self, claim: &Claim) -> anyhow::Result<()> {
        let project = self.project(&claim.batch).await?;
        let store = &project.store;
        let round = tempfile::tempdir_in(&self.scratch)?;
        let (batch, limits, budgets) = tokio::task::block_in_place(|| Self::build(&project, round.path()))?;
        let journal = Arc::new(ClusterJournal::new(
            self.db.clone(),
            Role::Item(claim.clone()),
            &self.name,
            limits,
            budgets,
        ));
        let context = RunContext {
            stop: CancellationToken::new(),
            submissions: Some(journal.clone()),
            // The round's folder starts empty: earlier rounds' originals are in the store.
            raw_cache: Some(Arc::new(
                RawCache::in_output(round.path()).reading_through(Arc::new(store.clone())),
            )),
            // The database holds the batch's budget across workers (see ClusterJournal).
            spent_before_usd: 0.0,
        };
        let summary = batch.run(RunSettings { context, observer: Some(journal.clone()) }).await?;
        // A stop for a cause outside the item (the budget, a refused key) stops the batch for
        // every worker, as it stops a local run; the item cut short goes back to the queue.
        let stop_reason = journal.stop_reason().or(summary.stop_reason.filter(|_| summary.interrupted));
        if let Some(reason) = stop_reason {
            tracing::error!("batch {}: stopping it for every worker: {reason}", claim.batch);
            queue::stop(&self.db, &claim.batch, &reason).await?;
        }
        store.upload_dir(round.path(), None).await?;
        let kept = inkflow::cluster::journal::settle(&journal, claim).await?;
        if !kept {
            tracing::warn!(
                "{}: the lease ran out while it ran; the worker that took it over decides",
                claim.key
            );
        }
        Ok(())
    }

    /// The batch's last step, once: the book, the cover, the summary and the report, from the
    /// stored pages, in book order.
    async fn finish_batch(&self, batch_id: &str) -> anyhow::Result<()> {
        if !queue::claim_finalizer(&self.db, batch_id, &self.name, self.lease).await? {
            return Ok(());
        }
        tracing::info!("batch {batch_id}: every item is settled; building the book");
        let project = self.project(batch_id).await?;
        let store = &project.store;
        let dir = tempfile::tempdir_in(&self.scratch)?;
        store.download_all(dir.path()).await?;
        let downloaded = SystemTime::now();
        let (batch, _, _) = tokio::task::block_in_place(|| Self::build(&project, dir.path()))?;
        let costs = batch.costs();
        let journal = Arc::new(ClusterJournal::new(
            self.db.clone(),
            Role::Finish { batch: batch_id.to_owned() },
            &self.name,
            HashMap::new(),
            HashMap::new(),
        ));
        let settings = RunSettings { context: RunContext::default(), observer: Some(journal) };
        // The summary counts what the workers spent (`spent_elsewhere`), in batch_metadata.json too.
        let mut summary = batch.run(settings).await?;
        summary.output_dir = project.output.clone();
        // The review page reads a journal: a snapshot of the database's, kept out of the store.
        inkflow::cluster::status::write_journal_snapshot(&self.db, &project.output, dir.path()).await?;
        tokio::task::block_in_place(|| super::report::write_after_run(dir.path(), &summary, costs));
        store.upload_dir(dir.path(), Some(downloaded)).await?;
        let summary = serde_json::to_value(&summary)?;
        if queue::finished(&self.db, batch_id, &self.name, &summary).await? {
            tracing::info!("batch {batch_id}: finished");
        }
        Ok(())
    }
}

/// `relative` under `dir`, refusing a name that would climb out of it.
fn inside(dir: &Path, relative: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !relative.split('/').any(|part| part == ".." || part.is_empty()) && !relative.starts_with('/'),
        "the batch names a file outside its project: {relative}"
    );
    Ok(dir.join(relative))
}
