//! The staged runtime: one task per component, bounded channels between them.
//!
//! A full channel blocks its producer, so the number of items between a source and a slow
//! sink is bounded by the channel capacities and stage concurrencies along the path, never
//! by the batch size. CPU stages run on the rayon pool; I/O stages run as futures on tokio.
//! CPU work linked one to one (a source's load, CPU stages) is fused into one task and one
//! job per item ([`fusion`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;
use futures::future::{self, BoxFuture};
use futures::{FutureExt as _, StreamExt as _, stream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::candidates::{CandidatePolicy, History};
use super::cpu;
use super::fusion;
use super::item::{Envelope, Failure, Item, Judgement, Placement, State};
use super::media::Payload;
use super::pipeline::Pipeline;
use super::run_context::RunContext;
use super::stage::{BuildContext, Component, CpuStage, Listing, Receipt, Registry, Sink, StageError};
use super::summary::{ComponentCounts, FailedItem, Summary};

/// Live counts of one component, read by the progress display.
#[derive(Debug, Default)]
pub struct Counters {
    /// The component's id in the pipeline.
    pub id: String,
    /// Items it passed on or wrote.
    pub done: AtomicU64,
    /// Items it failed.
    pub failed: AtomicU64,
    /// Items it filtered out.
    pub filtered: AtomicU64,
}

/// Live counts of a running batch, shared with the progress display and tests.
#[derive(Debug, Default)]
pub struct Progress {
    /// Items the sources listed.
    pub total: AtomicU64,
    /// Items skipped as already complete.
    pub skipped: AtomicU64,
    /// Items that reached every sink (whatever their fate).
    pub finished: AtomicU64,
    /// Per component, in pipeline order.
    pub components: Vec<Counters>,
}

/// Hooks into an item's life, for the journal.
pub trait ItemObserver: Send + Sync {
    /// Called once per listed item before it runs; may put facts on it (e.g. a pending paid
    /// request to re-poll) or answer that it is already complete.
    fn prepare(&self, _item: &mut Item) -> anyhow::Result<Preparation> {
        Ok(Preparation::SkipIfComplete)
    }
    /// Called when a stage passed an item on.
    fn stage_done(&self, _item: &Item, _stage: &str) {}
    /// Called when every sink has handled an item; `failure` says why it did not succeed.
    fn item_finished(&self, _item: &Item, _outcome: &ItemOutcome) {}
    /// What is known of an item's candidates (for a pipeline whose judging stage wants some).
    fn history(&self, _item: &Item) -> anyhow::Result<History> {
        Ok(History::default())
    }
    /// Called when a candidate of a page ended: judged (or not) and placed, or failed
    /// (`SetAside` without a judgement).
    fn candidate_done(&self, _item: &Item, _judgement: Option<&Judgement>, _placement: Placement) {}
    /// Called when `sink` wrote an item's page and said what it stored.
    fn stored(&self, _item: &Item, _sink: &str, _receipt: &Receipt) {}
    /// What `sink` last said it stored for the item as it is now, for its `is_complete`.
    fn receipt(&self, _item: &Item, _sink: &str) -> anyhow::Result<Option<Receipt>> {
        Ok(None)
    }
    /// Called once at the end of a run with its summary (why it stopped early, if it did).
    fn batch_finished(&self, _summary: &Summary) {}
}

/// What [`ItemObserver::prepare`] decided for an item.
#[derive(Clone, Debug, PartialEq)]
pub enum Preparation {
    /// Run it, even if its outputs exist (they are stale: the pipeline changed).
    Run,
    /// Skip it if every sink already has its outputs, else run it.
    SkipIfComplete,
    /// Leave it as an earlier run ended it (failed or filtered, not retried): not run, but
    /// counted and listed in this run's summary, which describes the whole batch.
    Keep(ItemOutcome),
}

/// How an item ended.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemOutcome {
    /// Every sink wrote it.
    Written,
    /// A stage or sink failed it.
    Failed(Failure),
    /// A stage removed it on purpose.
    Filtered {
        /// The stage.
        stage: String,
        /// Why.
        reason: String,
    },
}

/// What a run needs besides the pipeline.
#[derive(Clone, Default)]
pub struct RunSettings {
    /// What I/O stages see: the stop token (cancelled on Ctrl-C: sources stop taking new
    /// items, in-flight items finish), the submission log, the raw cache.
    pub context: RunContext,
    /// The journal's view of items.
    pub observer: Option<Arc<dyn ItemObserver>>,
}

/// A pipeline with its components built and its items listed, ready to run.
pub struct Batch {
    pipeline: Pipeline,
    components: Vec<Component>,
    items: Vec<Listed>,
    output_dir: PathBuf,
    progress: Arc<Progress>,
}

/// Builds every component of a checked pipeline and lists the sources' items.
/// Errors name the component (`stage "gen": ...`).
pub fn build(
    pipeline: Pipeline,
    registry: &Registry,
    output_dir: &Path,
    dry_run: bool,
) -> anyhow::Result<Batch> {
    let mut components = Vec::with_capacity(pipeline.components.len());
    for (index, spec) in pipeline.components.iter().enumerate() {
        let kind = registry.get(&spec.kind).with_context(|| format!("unknown kind \"{}\"", spec.kind))?;
        let ctx = BuildContext {
            id: spec.id.clone(),
            inputs: spec.inputs.iter().map(|&i| pipeline.components[i].id.clone()).collect(),
            output_dir: output_dir.to_owned(),
            pipeline_file: pipeline.file.clone(),
            dry_run,
            room_below: room_below(&pipeline, index),
        };
        let component = kind
            .build(&spec.options, &ctx)
            .with_context(|| format!("{} \"{}\"", spec.role.noun(), spec.id))?;
        components.push(component);
    }
    let mut items = Vec::new();
    let mut first_seq = 0u64;
    for (spec, component) in pipeline.components.iter().zip(&components) {
        if let Component::Source(source) = component {
            let listing = source.list().with_context(|| format!("source \"{}\"", spec.id))?;
            let len = listing.len() as u64;
            items.push(Listed { first_seq, listing });
            first_seq += len;
        }
    }
    let progress = Arc::new(Progress {
        components: pipeline
            .components
            .iter()
            .map(|c| Counters { id: c.id.clone(), ..Counters::default() })
            .collect(),
        ..Progress::default()
    });
    Ok(Batch { pipeline, components, items, output_dir: output_dir.to_owned(), progress })
}

impl Batch {
    /// The live counts, for a progress display.
    pub fn progress(&self) -> Arc<Progress> {
        self.progress.clone()
    }

    /// Every listed item, over all sources, each made as the iterator reaches it.
    pub fn items(&self) -> impl Iterator<Item = Item> + Send + '_ {
        self.items.iter().flat_map(Listed::iter)
    }

    /// How many items the sources listed.
    pub fn item_count(&self) -> usize {
        self.items.iter().map(|listed| listed.listing.len()).sum()
    }

    /// The items a run would take up now, as the journal (`observer`, opened read-only) and
    /// the sinks' outputs say, in order: what `--dry-run` counts and prices.
    pub fn items_to_run(&self, observer: Option<&dyn ItemObserver>) -> anyhow::Result<Vec<Item>> {
        let sinks = named_sinks(&self.pipeline, &self.components);
        let policy = candidate_policy(&self.components);
        let mut to_run = Vec::new();
        for mut item in self.items() {
            if let (Decision::Run, _) = decide(observer, &sinks, policy, &mut item)? {
                to_run.push(item);
            }
        }
        Ok(to_run)
    }

    /// The checked pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// The built components, in pipeline order.
    pub fn components(&self) -> &[Component] {
        &self.components
    }

    /// Runs the batch to the end (or until stopped) and returns its summary, after every
    /// sink's `finish` has run; sinks that could not finish are listed in `sink_errors`.
    /// A pipeline whose judging stage wants more candidates of some pages runs in rounds:
    /// after each, those items run again as their next candidate ([`super::candidates`]).
    pub async fn run(self, settings: RunSettings) -> anyhow::Result<Summary> {
        self.progress.total.store(self.item_count() as u64, Ordering::Relaxed);
        let started = Instant::now();
        let started_at = SystemTime::now();
        for component in &self.components {
            if let Component::Sink(sink) = component {
                sink.begin(&mut self.items()).await?;
            }
        }
        let Batch { pipeline, components, items, output_dir, progress } = self;
        let policy = candidate_policy(&components);
        let shared = Arc::new(Shared {
            stop: settings.context.stop.clone(),
            stop_reason: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            observer: settings.observer.clone(),
            progress: progress.clone(),
            sink_count: components.iter().filter(|c| matches!(c, Component::Sink(_))).count(),
            policy,
            candidates: Mutex::new(Candidates::default()),
        });
        let wiring = Wiring::new(&pipeline, &components);
        let items: Vec<Arc<Listed>> = items.into_iter().map(Arc::new).collect();
        let mut again = None;
        loop {
            let round = Round { pipeline: &pipeline, components: &components, shared: &shared, again };
            round.run(&wiring, &items, &settings.context).await?;
            let wanted = std::mem::take(&mut lock(&shared.candidates).wanted);
            if wanted.is_empty() || shared.stop.is_cancelled() {
                break;
            }
            tracing::info!("{} page(s) get another candidate", wanted.len());
            again = Some(Arc::new(wanted));
        }
        if shared.stop.is_cancelled() {
            for component in &components {
                if let Component::Io(stage) = component {
                    stage.cancel_pending().await;
                }
            }
        }
        let summary = shared.summary(&pipeline, &output_dir, started, started_at);
        Ok(finish(&pipeline, &components, &shared, summary).await)
    }
}

/// How many candidates of a page the judging stage wants, if the pipeline has one.
fn candidate_policy(components: &[Component]) -> Option<CandidatePolicy> {
    components.iter().find_map(|c| match c {
        Component::Cpu(stage) => stage.candidate_policy(),
        _ => None,
    })
}

/// Runs every sink's `finish` with the summary and gives it back with their notes and errors.
/// Sinks finish in their [`Sink::finish_rank`] order (then pipeline order), each seeing the
/// notes and errors of the sinks before.
async fn finish(
    pipeline: &Pipeline,
    components: &[Component],
    shared: &Shared,
    mut summary: Summary,
) -> Summary {
    let mut sinks = named_sinks(pipeline, components);
    sinks.sort_by_key(|named| named.sink.finish_rank());
    for NamedSink { id, sink } in sinks {
        match sink.finish(&summary).await {
            Ok(()) => summary.sink_notes.extend(sink.note().map(|note| format!("sink \"{id}\": {note}"))),
            Err(e) => {
                let error = format!("sink \"{id}\": {e:#}");
                tracing::error!("{error}");
                summary.sink_errors.push(error);
            }
        }
    }
    if let Some(observer) = &shared.observer {
        observer.batch_finished(&summary);
    }
    summary
}

/// A sink with its id, which keys its receipts in the journal.
#[derive(Clone)]
struct NamedSink {
    id: String,
    sink: Arc<dyn Sink>,
}

/// The pipeline's sinks in pipeline order.
fn named_sinks(pipeline: &Pipeline, components: &[Component]) -> Vec<NamedSink> {
    pipeline
        .components
        .iter()
        .zip(components)
        .filter_map(|(spec, c)| match c {
            Component::Sink(sink) => Some(NamedSink { id: spec.id.clone(), sink: sink.clone() }),
            _ => None,
        })
        .collect()
}

/// How a pipeline's components run: which are fused into one task, and the CPU pool's ranks.
struct Wiring {
    units: Vec<Vec<usize>>,
    fused: Vec<bool>,
    ranks: Vec<u32>,
}

impl Wiring {
    fn new(pipeline: &Pipeline, components: &[Component]) -> Self {
        let inputs: Vec<&[usize]> = pipeline.components.iter().map(|c| c.inputs.as_slice()).collect();
        let work: Vec<fusion::Work> = components
            .iter()
            .map(|c| match c {
                Component::Source(_) => fusion::Work::Load,
                Component::Cpu(_) => fusion::Work::Compute,
                Component::Io(_) | Component::Sink(_) => fusion::Work::Other,
            })
            .collect();
        let units = fusion::units(&inputs, &work);
        let mut fused = vec![false; inputs.len()];
        for unit in &units {
            for &member in &unit[1..] {
                fused[member] = true;
            }
        }
        let ranks = cpu_ranks(&inputs, components);
        Wiring { units, fused, ranks }
    }
}

/// One pass of the batch: every listed item, or (`again`) only those wanting another candidate.
struct Round<'a> {
    pipeline: &'a Pipeline,
    components: &'a [Component],
    shared: &'a Arc<Shared>,
    again: Option<Arc<HashSet<String>>>,
}

impl Round<'_> {
    /// Spawns one task per unit, joined by fresh bounded channels, and waits for them all.
    async fn run(
        self,
        wiring: &Wiring,
        items: &[Arc<Listed>],
        run_context: &RunContext,
    ) -> anyhow::Result<()> {
        let Round { pipeline, components, shared, again } = self;
        // One channel per edge, sized by the consumer's capacity; the links inside a fused
        // chain have none.
        let n = pipeline.components.len();
        let mut senders: Vec<Vec<mpsc::Sender<Envelope>>> = (0..n).map(|_| Vec::new()).collect();
        let mut receivers: Vec<Vec<Option<mpsc::Receiver<Envelope>>>> = Vec::with_capacity(n);
        for (spec, &fused) in pipeline.components.iter().zip(&wiring.fused) {
            let mut slots = Vec::new();
            for &input in spec.inputs.iter().filter(|_| !fused) {
                let (tx, rx) = mpsc::channel(spec.capacity);
                senders[input].push(tx);
                slots.push(Some(rx));
            }
            receivers.push(slots);
        }

        let sinks = named_sinks(pipeline, components);
        let mut items_by_source = items.iter().cloned();
        let mut next_listing = || SourceItems {
            listed: items_by_source.next().unwrap_or_default(),
            again: again.clone(),
            sinks: sinks.clone(),
        };
        let mut tasks = tokio::task::JoinSet::new();
        for unit in &wiring.units {
            let (index, tail) = (unit[0], unit[unit.len() - 1]);
            let spec = &pipeline.components[index];
            let outputs = std::mem::take(&mut senders[tail]);
            let inputs: Vec<mpsc::Receiver<Envelope>> =
                receivers[index].iter_mut().filter_map(Option::take).collect();
            // A fused chain takes no more items at once than its strictest stage allows. A source
            // heading it does not count: its concurrency (1 unless set) bounds loads running
            // beside each other, and in a chain each load runs in the job of its own item.
            let concurrency = unit
                .iter()
                .filter(|&&m| unit.len() == 1 || !matches!(components[m], Component::Source(_)))
                .map(|&m| pipeline.components[m].concurrency)
                .min()
                .unwrap_or(1);
            let task_info = TaskInfo { index, id: spec.id.clone(), concurrency, shared: shared.clone() };
            let members: Vec<Member> = unit
                .iter()
                .map(|&m| {
                    let spec = &pipeline.components[m];
                    Member { index: m, id: spec.id.clone(), noun: spec.role.noun() }
                })
                .collect();
            let task: BoxFuture<'static, ()> = match &components[index] {
                Component::Source(source) if unit.len() == 1 => {
                    run_source(task_info, source.clone(), true, next_listing(), outputs).boxed()
                }
                Component::Source(source) => {
                    // The source lists and hands on unloaded items; the chain's jobs load them.
                    let (tx, rx) = mpsc::channel(pipeline.components[unit[1]].capacity);
                    let listing =
                        run_source(task_info.clone(), source.clone(), false, next_listing(), vec![tx]);
                    let chain = run_fused(task_info, members, rx, outputs, fused_chain(unit, components));
                    future::join(listing, chain).map(|_| ()).boxed()
                }
                Component::Cpu(_) => {
                    run_fused(task_info, members, one_input(inputs), outputs, fused_chain(unit, components))
                        .boxed()
                }
                Component::Io(stage) => {
                    let stage = stage.clone();
                    let cx = run_context.clone();
                    let process = move |mut item: Item, payload| {
                        let stage = stage.clone();
                        let cx = cx.clone();
                        async move {
                            let result =
                                AssertUnwindSafe(stage.process(&mut item, payload, &cx)).catch_unwind().await;
                            result
                                .map(|result| Processed { item, result, reached: 0 })
                                .map_err(|p| StageError::failed(cpu::panic_message(p)))
                        }
                        .boxed()
                    };
                    run_stage(task_info, members, one_input(inputs), outputs, process).boxed()
                }
                Component::Sink(sink) => run_sink(task_info, sink.clone(), inputs).boxed(),
            };
            tasks.spawn(cpu::ranked(wiring.ranks[index], task));
        }
        while let Some(joined) = tasks.join_next().await {
            joined.context("a pipeline task crashed")?;
        }
        Ok(())
    }
}

/// The CPU work of a fused unit, in order: a source's load, then each stage's process.
fn fused_chain(unit: &[usize], components: &[Component]) -> Arc<[Arc<dyn CpuStage>]> {
    unit.iter()
        .filter_map(|&member| match &components[member] {
            Component::Source(source) => Some(Arc::new(SourceLoad(source.clone())) as Arc<dyn CpuStage>),
            Component::Cpu(stage) => Some(stage.clone()),
            Component::Io(_) | Component::Sink(_) => None,
        })
        .collect()
}

/// A source's load as the first step of a fused chain: the decoded input is made on the pool
/// thread that goes on to process it.
struct SourceLoad(Arc<dyn super::stage::Source>);

impl CpuStage for SourceLoad {
    fn process(&self, item: &mut Item, _unloaded: Payload) -> Result<Payload, StageError> {
        self.0.load(item)
    }
}

/// Runs a fused unit's chain, one CPU job per item.
async fn run_fused(
    task_info: TaskInfo,
    members: Vec<Member>,
    input: mpsc::Receiver<Envelope>,
    outputs: Vec<mpsc::Sender<Envelope>>,
    chain: Arc<[Arc<dyn CpuStage>]>,
) {
    let process = move |item: Item, payload| {
        let chain = chain.clone();
        cpu::run(move || run_chain(&chain, item, payload)).map(|r| r.map_err(StageError::failed)).boxed()
    };
    run_stage(task_info, members, input, outputs, process).await;
}

/// Each component's rank on the CPU pool. In a pipeline that only computes, its depth in the
/// graph (the longest path from a source): the jobs of items nearer the end run first, so
/// queues stay nearly empty and memory low. A pipeline with an I/O stage ranks them all alike
/// (first come, first served): there the queues are what hides the remote latency, and
/// finishing items first would starve the stages that free the I/O stage's request slots
/// (measured: 98% of the ideal end-to-end throughput first come, first served; 75-85% deepest first).
fn cpu_ranks(inputs: &[&[usize]], components: &[Component]) -> Vec<u32> {
    let has_io = components.iter().any(|c| matches!(c, Component::Io(_)));
    ranks_from_inputs(inputs.iter().copied(), has_io)
}

/// [`cpu_ranks`] from each component's inputs, given inputs first.
fn ranks_from_inputs<'a>(inputs: impl Iterator<Item = &'a [usize]>, has_io: bool) -> Vec<u32> {
    let mut depths: Vec<u32> = Vec::new();
    for inputs in inputs {
        depths.push(inputs.iter().map(|&i| depths[i] + 1).max().unwrap_or(0));
    }
    if has_io {
        depths.fill(0);
    }
    depths
}

fn one_input(mut inputs: Vec<mpsc::Receiver<Envelope>>) -> mpsc::Receiver<Envelope> {
    // The checker guarantees a stage has exactly one input.
    inputs.pop().unwrap_or_else(|| mpsc::channel(1).1)
}

/// State shared by every task of a run.
struct Shared {
    stop: CancellationToken,
    stop_reason: Mutex<Option<String>>,
    tally: Mutex<Tally>,
    observer: Option<Arc<dyn ItemObserver>>,
    progress: Arc<Progress>,
    sink_count: usize,
    /// The judging stage's wish for candidates, if the pipeline has one.
    policy: Option<CandidatePolicy>,
    candidates: Mutex<Candidates>,
}

/// The candidates of the pages this run works on.
#[derive(Default)]
struct Candidates {
    /// Per item key: what is known of its candidates.
    histories: HashMap<String, History>,
    /// Items that want another candidate after this round.
    wanted: HashSet<String>,
    /// Candidates made beyond each page's first, in this run.
    extra: u64,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

/// One item as the sinks that have seen it so far report it.
struct ItemTally {
    /// The worst outcome reported.
    outcome: ItemOutcome,
    /// How many sinks reported it.
    sinks_seen: usize,
    retries: u32,
    cost_usd: f64,
    description: String,
}

/// What happened to each item, gathered from the sinks.
#[derive(Default)]
struct Tally {
    /// Per item key: what the sinks have reported so far.
    items: HashMap<String, ItemTally>,
    succeeded: u64,
    failed: Vec<FailedItem>,
    filtered: BTreeMap<String, u64>,
    filtered_count: u64,
    retries: u64,
    cost_usd: f64,
    /// Items an earlier run failed or filtered, left so by this one (counted above too).
    kept: u64,
    /// Items counted so far: a page's later candidates do not count it again.
    counted: HashSet<String>,
}

impl Tally {
    /// Counts an item's final outcome.
    fn count(&mut self, key: &str, description: String, outcome: &ItemOutcome) {
        if !self.counted.insert(key.to_owned()) {
            return;
        }
        match outcome {
            ItemOutcome::Written => self.succeeded += 1,
            ItemOutcome::Failed(f) => self.failed.push(FailedItem {
                key: key.to_owned(),
                description,
                stage: f.stage.clone(),
                error: f.error.clone(),
                attempts: f.attempts,
            }),
            ItemOutcome::Filtered { reason, .. } => {
                self.filtered_count += 1;
                *self.filtered.entry(reason.clone()).or_default() += 1;
            }
        }
    }
}

impl Shared {
    fn counters(&self, index: usize) -> &Counters {
        &self.progress.components[index]
    }

    fn stop_batch(&self, reason: String) {
        let mut slot = self.stop_reason.lock().unwrap_or_else(|e| e.into_inner());
        if slot.is_none() {
            tracing::error!("stopping the batch: {reason}");
            *slot = Some(reason);
        }
        self.stop.cancel();
    }

    /// Records one sink's view of an item; when every sink has seen it, the item is final.
    fn record(&self, item: &Item, outcome: ItemOutcome) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let entry = tally.items.entry(item.key.clone()).or_insert_with(|| ItemTally {
            outcome: ItemOutcome::Written,
            sinks_seen: 0,
            retries: item.retries,
            cost_usd: item.cost_usd,
            description: item.prompt.description.clone(),
        });
        if entry.outcome == ItemOutcome::Written {
            entry.outcome = outcome;
        }
        entry.sinks_seen += 1;
        entry.retries = entry.retries.max(item.retries);
        entry.cost_usd = entry.cost_usd.max(item.cost_usd);
        if entry.sinks_seen < self.sink_count {
            return;
        }
        let Some(ItemTally { outcome, retries, cost_usd, description, .. }) = tally.items.remove(&item.key)
        else {
            return;
        };
        tally.retries += u64::from(retries);
        tally.cost_usd += cost_usd;
        // An item the stop cut short (not submitted, its paid request left open) counts as not
        // started, and the journal leaves it unfinished so the next run takes it up again
        // instead of skipping it as failed.
        let cut_short = matches!(&outcome, ItemOutcome::Failed(failure) if failure.interrupted);
        drop(tally);
        // A later candidate that failed leaves the page as it was: the item is still written.
        let outcome = match outcome {
            ItemOutcome::Failed(failure) if !cut_short && self.candidate_done(item, None) => {
                tracing::warn!(
                    "item {}: candidate {} failed in stage \"{}\": {}; the page keeps the best earlier one",
                    item.key,
                    item.trial.number,
                    failure.stage,
                    failure.error
                );
                ItemOutcome::Written
            }
            ItemOutcome::Written => {
                self.candidate_done(item, Some(item.judgement.as_ref()));
                ItemOutcome::Written
            }
            other => other,
        };
        let mut tally = lock(&self.tally);
        if !cut_short {
            tally.count(&item.key, description, &outcome);
        }
        drop(tally);
        self.progress.finished.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = self.observer.as_ref().filter(|_| !cut_short) {
            observer.item_finished(item, &outcome);
        }
    }

    /// [`decide`] for this run, keeping the item's candidate history.
    fn decide(&self, sinks: &[NamedSink], item: &mut Item) -> anyhow::Result<Decision> {
        let (decision, history) = decide(self.observer.as_deref(), sinks, self.policy, item)?;
        if self.policy.is_some() {
            lock(&self.candidates).histories.insert(item.key.clone(), history);
        }
        Ok(decision)
    }

    /// Makes `item` the next candidate of its page, for a later round.
    fn next_candidate(&self, item: &mut Item) {
        let candidates = lock(&self.candidates);
        if let (Some(policy), Some(history)) = (self.policy, candidates.histories.get(&item.key)) {
            item.trial.number = history.next();
            item.trial.per_request = policy.best_of.max(1);
        }
    }

    /// Where the sinks put this candidate of its page (`made`: it reached the sinks whole; a
    /// failed one never replaces an earlier page).
    fn placement(&self, item: &Item, made: bool) -> Placement {
        if self.policy.is_none() {
            return Placement::Page;
        }
        let candidates = lock(&self.candidates);
        match candidates.histories.get(&item.key) {
            Some(history) if history.page.is_some() && !made => Placement::SetAside,
            Some(history) => history.place(item.trial.number, item.judgement.as_ref()),
            None => Placement::Page,
        }
    }

    /// Records how a candidate ended (`judged`: written, with its judgement if a stage judged
    /// it; `None`: failed) and whether its page wants another. Returns whether the page had
    /// an earlier candidate, which a failed one leaves in place.
    fn candidate_done(&self, item: &Item, judged: Option<Option<&Judgement>>) -> bool {
        let Some(policy) = self.policy else { return false };
        let mut candidates = lock(&self.candidates);
        let history = candidates.histories.entry(item.key.clone()).or_default();
        let had_page = history.page.is_some();
        let judgement = judged.flatten();
        let placement = match judged {
            Some(judgement) => history.place(item.trial.number, judgement),
            None => Placement::SetAside,
        };
        history.record(item.trial.number, judgement, placement);
        let wanted = (judged.is_some() || had_page) && policy.wants_another(history);
        if item.trial.number > 0 {
            candidates.extra += 1;
        }
        if wanted {
            candidates.wanted.insert(item.key.clone());
        }
        drop(candidates);
        if let Some(observer) = &self.observer {
            observer.candidate_done(item, judgement, placement);
        }
        had_page
    }

    /// Counts an item an earlier run failed or filtered, which this run leaves so.
    fn keep(&self, item: &Item, outcome: ItemOutcome) {
        let mut tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        tally.count(&item.key, item.prompt.description.clone(), &outcome);
        tally.kept += 1;
        drop(tally);
        self.progress.finished.fetch_add(1, Ordering::Relaxed);
    }

    fn summary(
        &self,
        pipeline: &Pipeline,
        output_dir: &Path,
        started: Instant,
        started_at: SystemTime,
    ) -> Summary {
        let tally = self.tally.lock().unwrap_or_else(|e| e.into_inner());
        let elapsed = started.elapsed().as_secs_f64();
        let total = self.progress.total.load(Ordering::Relaxed);
        let skipped = self.progress.skipped.load(Ordering::Relaxed);
        let finished = tally.succeeded + tally.failed.len() as u64 + tally.filtered_count;
        let stop_reason = self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let interrupted = self.stop.is_cancelled();
        let candidates = lock(&self.candidates);
        let mut verdicts = BTreeMap::new();
        for (_, judgement) in candidates.histories.values().filter_map(|h| h.page.as_ref()) {
            *verdicts.entry(judgement.verdict.clone()).or_insert(0) += 1;
        }
        Summary {
            pipeline: pipeline.file.display().to_string(),
            started_at: humantime::format_rfc3339_seconds(started_at).to_string(),
            finished_at: humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            total_items: total,
            succeeded: tally.succeeded,
            failed: tally.failed.len() as u64,
            filtered: tally.filtered_count,
            skipped,
            not_started: total.saturating_sub(skipped + finished),
            retries: tally.retries,
            elapsed_seconds: elapsed,
            items_per_second: if elapsed > 0.0 { (finished - tally.kept) as f64 / elapsed } else { 0.0 },
            cost_usd: tally.cost_usd,
            interrupted,
            stopped_by_user: interrupted && stop_reason.is_none(),
            stop_reason: stop_reason
                .or_else(|| interrupted.then(|| "stopped by the user (Ctrl-C)".to_owned())),
            output_dir: output_dir.display().to_string(),
            components: pipeline
                .components
                .iter()
                .enumerate()
                .map(|(i, spec)| {
                    let c = self.counters(i);
                    ComponentCounts {
                        id: spec.id.clone(),
                        kind: spec.kind.clone(),
                        done: c.done.load(Ordering::Relaxed),
                        failed: c.failed.load(Ordering::Relaxed),
                        filtered: c.filtered.load(Ordering::Relaxed),
                    }
                })
                .collect(),
            filtered_reasons: tally.filtered.clone(),
            failures: tally.failed.clone(),
            sink_errors: Vec::new(),
            sink_notes: Vec::new(),
            verdicts,
            extra_candidates: candidates.extra,
        }
    }
}

/// What a task knows about its component.
#[derive(Clone)]
struct TaskInfo {
    index: usize,
    id: String,
    concurrency: usize,
    shared: Arc<Shared>,
}

/// Sends an envelope to every consumer; a clone shares the payload (an `Arc`), not its pixels.
async fn fan_out(outputs: &[mpsc::Sender<Envelope>], envelope: Envelope) {
    if let Some((last, rest)) = outputs.split_last() {
        for tx in rest {
            // A closed consumer means the batch is being torn down; nothing to deliver.
            let _ = tx.send(envelope.clone()).await;
        }
        let _ = last.send(envelope).await;
    }
}

/// The items a source task hands on in one round.
struct SourceItems {
    listed: Arc<Listed>,
    /// A later round: only these items, each as its next candidate.
    again: Option<Arc<HashSet<String>>>,
    /// The sinks, which say whether an item's outputs are complete.
    sinks: Vec<NamedSink>,
}

/// Lists a source's items in order, skipping those already complete. With `load`, loads each
/// one on the CPU pool (up to `concurrency` at once) and hands it on; without, hands it on
/// unloaded to the fused chain that loads it and counts it.
async fn run_source(
    task_info: TaskInfo,
    source: Arc<dyn super::stage::Source>,
    load: bool,
    items: SourceItems,
    outputs: Vec<mpsc::Sender<Envelope>>,
) {
    let shared = task_info.shared.clone();
    let counters = shared.counters(task_info.index);
    let SourceItems { listed, again, sinks } = items;
    let mut waiting = listed.iter().filter(|item| again.as_ref().is_none_or(|keys| keys.contains(&item.key)));
    let mut loading = futures::stream::FuturesOrdered::new();
    loop {
        while loading.len() < task_info.concurrency && !shared.stop.is_cancelled() {
            let Some(mut item) = waiting.next() else { break };
            let decision = match again {
                Some(_) => {
                    shared.next_candidate(&mut item);
                    Ok(Decision::Run)
                }
                None => shared.decide(&sinks, &mut item),
            };
            match decision {
                Ok(Decision::Run) => {}
                Ok(Decision::Keep(outcome)) => {
                    shared.keep(&item, outcome);
                    continue;
                }
                Ok(Decision::Done) => {
                    shared.progress.skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                Err(e) => {
                    shared.stop_batch(format!("journal: {e:#}"));
                    break;
                }
            }
            if !load {
                loading.push_back(future::Either::Left(future::ready((item, Ok(Payload::Prompt)))));
                continue;
            }
            let source = source.clone();
            let fallback = item.clone();
            loading.push_back(future::Either::Right(
                cpu::run(move || {
                    let payload = source.load(&mut item);
                    (item, payload)
                })
                .map(move |r| r.unwrap_or_else(|panic| (fallback, Err(StageError::failed(panic))))),
            ));
        }
        let Some((item, loaded)) = loading.next().await else { break };
        let state = match loaded {
            Ok(payload) => {
                if load {
                    counters.done.fetch_add(1, Ordering::Relaxed);
                }
                State::Ready(payload)
            }
            Err(error) => failure_state(&task_info.id, error, &shared, counters),
        };
        fan_out(&outputs, Envelope { item, state }).await;
    }
}

/// What a run does with a listed item.
enum Decision {
    /// Runs it.
    Run,
    /// Skips it: every sink has its outputs.
    Done,
    /// Leaves it as an earlier run ended it.
    Keep(ItemOutcome),
}

/// Whether an item runs, from the journal's word and the sinks' outputs, and which candidate
/// of its page it makes: the one rule a run and a dry run's count share. With a judging
/// stage's `policy`, a complete page still runs when it wants another candidate or the user
/// picked one that is not the page yet.
fn decide(
    observer: Option<&dyn ItemObserver>,
    sinks: &[NamedSink],
    policy: Option<CandidatePolicy>,
    item: &mut Item,
) -> anyhow::Result<(Decision, History)> {
    let prepared = match observer {
        Some(observer) => observer.prepare(item)?,
        None => Preparation::SkipIfComplete,
    };
    let mut decision = match prepared {
        Preparation::Keep(outcome) => Decision::Keep(outcome),
        Preparation::Run => Decision::Run,
        Preparation::SkipIfComplete if !sinks.is_empty() && all_complete(observer, sinks, item)? => {
            Decision::Done
        }
        Preparation::SkipIfComplete => Decision::Run,
    };
    let (Some(policy), Some(observer)) = (policy, observer) else {
        return Ok((decision, History::default()));
    };
    let history = observer.history(item)?;
    let pick_pending = history.picked.is_some_and(|p| history.page.as_ref().map(|(n, _)| *n) != Some(p));
    if matches!(decision, Decision::Done)
        && (pick_pending || history.made > 0 && policy.wants_another(&history))
    {
        decision = Decision::Run;
    }
    item.trial.number = history.next();
    item.trial.per_request = policy.best_of.max(1);
    Ok((decision, history))
}

/// Whether every sink has the item's outputs, each told what the journal says it stored.
fn all_complete(
    observer: Option<&dyn ItemObserver>,
    sinks: &[NamedSink],
    item: &Item,
) -> anyhow::Result<bool> {
    for NamedSink { id, sink } in sinks {
        let recorded = match observer {
            Some(observer) => observer.receipt(item, id)?,
            None => None,
        };
        if !sink.is_complete(item, recorded.as_ref()) {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Counts an item's run through `members` and gives its state: every member before `reached`
/// passed it on, and `reached` gave `result`.
fn account(
    members: &[Member],
    item: &Item,
    result: Result<Payload, StageError>,
    reached: usize,
    shared: &Shared,
) -> State {
    let passed_on = |member: &Member| {
        shared.counters(member.index).done.fetch_add(1, Ordering::Relaxed);
        if let Some(observer) = &shared.observer {
            observer.stage_done(item, &member.id);
        }
    };
    members[..reached].iter().for_each(passed_on);
    let last = &members[reached];
    match result {
        Ok(payload) => {
            passed_on(last);
            State::Ready(payload)
        }
        Err(error) => {
            if let StageError::Failed { message, .. } = &error {
                tracing::warn!("{} \"{}\": item {}: {message}", last.noun, last.id, item.key);
            }
            failure_state(&last.id, error, shared, shared.counters(last.index))
        }
    }
}

/// One source's listing and the number, over the whole batch, of its first item.
struct Listed {
    first_seq: u64,
    listing: Box<dyn Listing>,
}

/// Nothing to list: what a source without a listing would run on.
impl Default for Listed {
    fn default() -> Self {
        Listed { first_seq: 0, listing: Box::new(Vec::<Item>::new()) }
    }
}

impl Listed {
    /// The items in order, each made as the iterator reaches it, so a batch keeps only the
    /// items it is working on.
    fn iter(&self) -> impl Iterator<Item = Item> + Send + '_ {
        self.listing.iter().zip(self.first_seq..).map(|(mut item, seq)| {
            item.seq = seq;
            item
        })
    }
}

/// The state an item gets when a component returns an error, counting it.
fn failure_state(id: &str, error: StageError, shared: &Shared, counters: &Counters) -> State {
    match error {
        StageError::Filtered { reason } => {
            counters.filtered.fetch_add(1, Ordering::Relaxed);
            State::Filtered { stage: id.to_owned(), reason }
        }
        StageError::Failed { message, attempts } => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            State::Failed(Failure { stage: id.to_owned(), error: message, attempts, interrupted: false })
        }
        StageError::Fatal(message) => {
            counters.failed.fetch_add(1, Ordering::Relaxed);
            shared.stop_batch(format!("stage \"{id}\": {message}"));
            // The batch stops for a cause outside the item (a refused key, the budget): the
            // item is cut short with the rest, not failed.
            State::Failed(Failure { stage: id.to_owned(), error: message, attempts: 1, interrupted: true })
        }
        StageError::Interrupted(message) => {
            State::Failed(Failure { stage: id.to_owned(), error: message, attempts: 1, interrupted: true })
        }
    }
}

/// What an item's run through a stage, or a fused chain of them, came to.
struct Processed {
    item: Item,
    /// The last stage's output, or the error of the stage that stopped the item.
    result: Result<Payload, StageError>,
    /// Which member of the chain gave `result`.
    reached: usize,
}

/// A component inside a task (the only one, unless it heads or joins a fused chain).
struct Member {
    index: usize,
    id: String,
    /// "source" or "stage", for messages.
    noun: &'static str,
}

/// A sink's input states with any undecoded image decoded on the CPU pool (a sink writing
/// an I/O stage's output directly); an image that cannot be decoded fails the item there.
async fn decoded_states(states: Vec<State>) -> Vec<State> {
    if !states.iter().any(|s| matches!(s, State::Ready(Payload::Undecoded(_)))) {
        return states;
    }
    let count = states.len();
    let decoded = cpu::run(move || {
        states
            .into_iter()
            .map(|state| match state {
                State::Ready(payload) => match payload.decoded() {
                    Ok(payload) => State::Ready(payload),
                    Err(error) => State::Failed(Failure {
                        stage: "decode".into(),
                        error,
                        attempts: 1,
                        interrupted: false,
                    }),
                },
                other => other,
            })
            .collect()
    })
    .await;
    decoded.unwrap_or_else(|panic| {
        vec![
            State::Failed(Failure { stage: "decode".into(), error: panic, attempts: 1, interrupted: false });
            count
        ]
    })
}

/// How many items the consumers of component `index` hold at most: each one's input queue and
/// the items it works on.
fn room_below(pipeline: &Pipeline, index: usize) -> usize {
    let consumers = pipeline.components.iter().filter(|c| c.inputs.contains(&index));
    consumers.map(|c| c.capacity + c.concurrency).sum::<usize>().max(1)
}

/// Runs an item through a fused chain of CPU stages on the current pool thread. Each stage's
/// input is dropped when it returns, so at most one intermediate image per item is alive. A
/// panic is caught per stage, so the failure names the stage that panicked.
fn run_chain(chain: &[Arc<dyn CpuStage>], item: Item, payload: Payload) -> Processed {
    // An image that waited undecoded becomes pixels here, inside the job that needs them.
    let payload = payload.decoded().map_err(StageError::failed);
    let mut processed = Processed { item, result: payload, reached: 0 };
    for (reached, stage) in chain.iter().enumerate() {
        let Ok(payload) = processed.result else { break };
        let item = &mut processed.item;
        processed.result = catch_unwind(AssertUnwindSafe(|| stage.process(item, payload)))
            .unwrap_or_else(|panic| Err(StageError::failed(cpu::panic_message(panic))));
        processed.reached = reached;
    }
    processed
}

/// What a stage does with an item it received.
enum Step {
    /// Run it: the stage's work, and the item to report if that work is lost (a panic).
    Process(Item, BoxFuture<'static, Result<Processed, StageError>>),
    /// Hand it on untouched: it had already failed or been filtered.
    PassThrough(Envelope),
}

/// Runs a stage, or a fused chain of `members`: up to `concurrency` items at a time, each
/// handed on as soon as it is done. Every member's counts and journal entries are kept as if
/// it ran on its own.
///
/// Each item's future includes its hand-off to the next stage, and all of them are polled
/// together: an item waiting for room downstream holds its own slot but never stalls the
/// others (a fal request keeps being polled while a finished neighbour waits for the CPU).
async fn run_stage<F>(
    task_info: TaskInfo,
    members: Vec<Member>,
    mut input: mpsc::Receiver<Envelope>,
    outputs: Vec<mpsc::Sender<Envelope>>,
    process: F,
) where
    F: Fn(Item, Payload) -> BoxFuture<'static, Result<Processed, StageError>>,
{
    let shared = task_info.shared.clone();
    let handle = |envelope: Envelope| {
        let (outputs, shared, members) = (&outputs, &shared, &members);
        let step = match envelope.state {
            State::Ready(payload) => Step::Process(envelope.item.clone(), process(envelope.item, payload)),
            // Failed and filtered items pass through untouched so sinks can record them.
            _ => Step::PassThrough(envelope),
        };
        async move {
            let envelope =
                match step {
                    Step::PassThrough(envelope) => envelope,
                    Step::Process(fallback, work) => {
                        let Processed { item, result, reached } = work.await.unwrap_or_else(|error| {
                            Processed { item: fallback, result: Err(error), reached: 0 }
                        });
                        let state = account(members, &item, result, reached, shared);
                        Envelope { item, state }
                    }
                };
            fan_out(outputs, envelope).await;
        }
    };
    let mut in_flight = futures::stream::FuturesUnordered::new();
    let mut input_open = true;
    while input_open || !in_flight.is_empty() {
        tokio::select! {
            envelope = input.recv(), if input_open && in_flight.len() < task_info.concurrency => match envelope {
                Some(envelope) => in_flight.push(handle(envelope)),
                None => input_open = false,
            },
            Some(()) = in_flight.next(), if !in_flight.is_empty() => {}
        }
    }
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Envelope>) -> impl futures::Stream<Item = Envelope> {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
}

async fn run_sink(task_info: TaskInfo, sink: Arc<dyn Sink>, inputs: Vec<mpsc::Receiver<Envelope>>) {
    let shared = task_info.shared.clone();
    let counters = &shared.progress.components[task_info.index];
    let slots = inputs.len();
    let tagged = stream::select_all(
        inputs
            .into_iter()
            .enumerate()
            .map(|(slot, rx)| tokio_stream_from(rx).map(move |e| (slot, e)).boxed()),
    );
    // Join the envelopes of one item from every input; a partial join holds only what the
    // bounded channels upstream let through, so this map stays small.
    let mut partial: HashMap<String, Vec<Option<Envelope>>> = HashMap::new();
    let joined = tagged.filter_map(move |(slot, envelope)| {
        let complete = if slots == 1 {
            Some(vec![envelope])
        } else {
            let key = envelope.item.key.clone();
            let entry = partial.entry(key.clone()).or_insert_with(|| vec![None; slots]);
            entry[slot] = Some(envelope);
            if entry.iter().all(Option::is_some) {
                partial.remove(&key).map(|parts| parts.into_iter().flatten().collect())
            } else {
                None
            }
        };
        std::future::ready(complete)
    });
    joined
        .map(|parts: Vec<Envelope>| {
            let (sink, shared) = (sink.clone(), shared.clone());
            async move {
                let mut item = parts[0].item.clone();
                for part in &parts[1..] {
                    for (k, v) in &part.item.facts {
                        item.facts.entry(k.clone()).or_insert_with(|| v.clone());
                    }
                    item.retries = item.retries.max(part.item.retries);
                    if item.judgement.is_none() {
                        item.judgement = part.item.judgement.clone();
                    }
                }
                let states = decoded_states(parts.into_iter().map(|p| p.state).collect()).await;
                let upstream = states.iter().find_map(|s| match s {
                    State::Failed(f) => Some(ItemOutcome::Failed(f.clone())),
                    State::Filtered { stage, reason } => {
                        Some(ItemOutcome::Filtered { stage: stage.clone(), reason: reason.clone() })
                    }
                    State::Ready(_) => None,
                });
                item.trial.placement = shared.placement(&item, upstream.is_none());
                let written = async {
                    match item.trial.placement {
                        Placement::Page => sink.write(&item, states).await,
                        Placement::SetAside => {
                            sink.write_aside(&item, states).await.map(|()| Receipt::default())
                        }
                    }
                };
                let result = AssertUnwindSafe(written).catch_unwind().await;
                (item, upstream, result.unwrap_or_else(|p| Err(StageError::failed(cpu::panic_message(p)))))
            }
        })
        .buffer_unordered(task_info.concurrency)
        .for_each(|(item, upstream, result)| {
            let shared = &shared;
            let id = &task_info.id;
            async move {
                let outcome = match (result, upstream) {
                    (Err(error), _) => {
                        tracing::warn!("sink \"{id}\": item {}: {error}", item.key);
                        match failure_state(id, error, shared, counters) {
                            State::Failed(f) => ItemOutcome::Failed(f),
                            State::Filtered { stage, reason } => ItemOutcome::Filtered { stage, reason },
                            State::Ready(_) => ItemOutcome::Written,
                        }
                    }
                    (Ok(receipt), upstream) => {
                        counters.done.fetch_add(1, Ordering::Relaxed);
                        if let Some(observer) =
                            shared.observer.as_ref().filter(|_| !receipt.objects.is_empty())
                        {
                            observer.stored(&item, id, &receipt);
                        }
                        upstream.unwrap_or(ItemOutcome::Written)
                    }
                };
                shared.record(&item, outcome);
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// source -> gray -> print -> lineart -> {thumb, disk}, thumb -> disk.
    const BOOK: [&[usize]; 6] = [&[], &[0], &[1], &[2], &[3], &[3, 4]];

    #[test]
    fn a_compute_only_pipeline_ranks_by_the_longest_path_from_a_source() {
        assert_eq!(ranks_from_inputs(BOOK.into_iter(), false), [0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_pipeline_with_an_io_stage_ranks_all_alike() {
        assert_eq!(ranks_from_inputs(BOOK.into_iter(), true), [0; 6]);
    }
}
