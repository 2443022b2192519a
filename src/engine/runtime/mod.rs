//! The staged runtime: one task per component, bounded channels between them.
//!
//! A full channel blocks its producer, so the number of items between a source and a slow
//! sink is bounded by the channel capacities and stage concurrencies along the path, never
//! by the batch size. CPU stages run on the rayon pool; I/O stages run as futures on tokio.
//! CPU work linked one to one (a source's load, CPU stages) is fused into one task and one
//! job per item ([`fusion`](super::fusion)).
//!
//! This module holds the public face (building a batch, running it, the hooks and live counts
//! it offers); the graph work, the tasks, the per-item decision and the tally live beside it.

mod costs;
mod decision;
mod tally;
mod tasks;
mod wiring;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use anyhow::Context as _;

use self::decision::{Decision, decide};
use self::tally::Shared;
use self::wiring::{Round, Wiring, room_below};
use super::candidates::{CandidatePolicy, History};
use super::item::{Failure, INPUTS_FACT, Item, Judgement, Placement};
use super::pipeline::Pipeline;
use super::review::ReviewState;
use super::run_context::RunContext;
use super::stage::{BuildContext, Component, IoStage, Listing, Receipt, Registry, Sink};
use super::summary::Summary;

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
    /// Whether the user asked to make again what did not succeed (`--retry-failed`): failed
    /// items, and pages settled without an acceptable candidate.
    fn retry_failed(&self) -> bool {
        false
    }
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
    /// The reviewer's decisions on the item (`inkflow review`) that this run obeys, after
    /// putting the prompt the reviewer wrote, if any, on it.
    fn review(&self, _item: &mut Item) -> ReviewState {
        ReviewState::default()
    }
    /// Whether the sinks' `finish` (the book, the cover, the batch's metadata) is left to
    /// another run: a cluster worker writes the pages of the items it claimed, and the batch's
    /// last step builds the book once from every stored page.
    fn defers_finish(&self) -> bool {
        false
    }
    /// Money other processes paid for this batch (a cluster's workers, when the batch's last
    /// step builds the book), which the summary the sinks write counts beside this run's own.
    fn spent_elsewhere(&self) -> anyhow::Result<f64> {
        Ok(0.0)
    }
    /// Why other processes stopped this batch early (a cluster worker met the batch's budget
    /// or a refused key), which the summary the sinks see reports as this run's stop: a batch
    /// that stopped early gets no book, as a local run that stops gets none.
    fn stopped_elsewhere(&self) -> anyhow::Result<Option<String>> {
        Ok(None)
    }
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
    /// Another process runs it: a cluster worker runs only the items it claimed, so the rest
    /// pass by as if done.
    Elsewhere,
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
    mut pipeline: Pipeline,
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
    for (spec, component) in pipeline.components.iter_mut().zip(&components) {
        spec.settle_concurrency(matches!(component, Component::Cpu(_)));
    }
    let readers: Arc<[InputReader]> = pipeline
        .components
        .iter()
        .zip(&components)
        .filter_map(|(spec, c)| match c {
            Component::Io(stage) => Some(InputReader { id: spec.id.clone(), stage: stage.clone() }),
            _ => None,
        })
        .collect();
    let mut items = Vec::new();
    let mut first_seq = 0u64;
    for (spec, component) in pipeline.components.iter().zip(&components) {
        if let Component::Source(source) = component {
            let listing = source.list().with_context(|| format!("source \"{}\"", spec.id))?;
            let len = listing.len() as u64;
            items.push(Listed { first_seq, listing, readers: readers.clone() });
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
        let shared = Arc::new(Shared::new(
            settings.context.stop.clone(),
            settings.observer.clone(),
            progress.clone(),
            components.iter().filter(|c| matches!(c, Component::Sink(_))).count(),
            policy,
        ));
        let wiring = Wiring::new(&pipeline, &components);
        let items: Vec<Arc<Listed>> = items.into_iter().map(Arc::new).collect();
        let mut again = None;
        loop {
            let round = Round { pipeline: &pipeline, components: &components, shared: &shared, again };
            round.run(&wiring, &items, &settings.context).await?;
            let wanted = shared.take_wanted();
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
        let mut summary = shared.summary(&pipeline, &output_dir, started, started_at);
        if let Some(observer) = &settings.observer {
            if observer.defers_finish() {
                return Ok(summary);
            }
            summary.cost_usd += observer.spent_elsewhere()?;
            if let Some(reason) = observer.stopped_elsewhere()? {
                summary.interrupted = true;
                summary.stop_reason = Some(reason);
                // The items the stopped batch never reached passed by here as run elsewhere.
                summary.not_started += std::mem::take(&mut summary.skipped);
            }
        }
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

/// A stage that may read files for an item ([`IoStage::input_revision`]), with its id.
struct InputReader {
    id: String,
    stage: Arc<dyn IoStage>,
}

/// One source's listing, the number, over the whole batch, of its first item, and the
/// stages whose inputs each item's fingerprint names.
struct Listed {
    first_seq: u64,
    listing: Box<dyn Listing>,
    readers: Arc<[InputReader]>,
}

/// Nothing to list: what a source without a listing would run on.
impl Default for Listed {
    fn default() -> Self {
        Listed { first_seq: 0, listing: Box::new(Vec::<Item>::new()), readers: Arc::new([]) }
    }
}

impl Listed {
    /// The items in order, each made as the iterator reaches it, so a batch keeps only the
    /// items it is working on; each knows what its stages will read ([`INPUTS_FACT`]) before
    /// the journal compares its fingerprint.
    fn iter(&self) -> impl Iterator<Item = Item> + Send + '_ {
        self.listing.iter().zip(self.first_seq..).map(|(mut item, seq)| {
            item.seq = seq;
            let inputs: serde_json::Map<String, serde_json::Value> = self
                .readers
                .iter()
                .filter_map(|reader| Some((reader.id.clone(), reader.stage.input_revision(&item)?.into())))
                .collect();
            if !inputs.is_empty() {
                item.record(INPUTS_FACT, inputs);
            }
            item
        })
    }
}
