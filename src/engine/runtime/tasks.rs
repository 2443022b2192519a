//! The tasks a round spawns: a source listing and loading its items, a stage (or a fused chain
//! of them) processing items as they come, and a sink joining its inputs and writing each item.

use std::collections::{HashMap, HashSet};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures::future::{self, BoxFuture};
use futures::{FutureExt as _, StreamExt as _, stream};
use tokio::sync::mpsc;

use super::decision::Decision;
use super::tally::Shared;
use super::{Counters, ItemOutcome, Listed, NamedSink};
use crate::engine::cpu;
use crate::engine::item::{Envelope, Failure, Item, Placement, State};
use crate::engine::media::Payload;
use crate::engine::stage::{CpuStage, Sink, Source, StageError};

/// What a task knows about its component.
#[derive(Clone)]
pub(super) struct TaskInfo {
    pub(super) index: usize,
    pub(super) id: String,
    pub(super) concurrency: usize,
    pub(super) shared: Arc<Shared>,
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
pub(super) struct SourceItems {
    pub(super) listed: Arc<Listed>,
    /// A later round: only these items, each as its next candidate.
    pub(super) again: Option<Arc<HashSet<String>>>,
    /// The sinks, which say whether an item's outputs are complete.
    pub(super) sinks: Vec<NamedSink>,
}

/// Lists a source's items in order, skipping those already complete. With `load`, loads each
/// one on the CPU pool (up to `concurrency` at once) and hands it on; without, hands it on
/// unloaded to the fused chain that loads it and counts it.
pub(super) async fn run_source(
    task_info: TaskInfo,
    source: Arc<dyn Source>,
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

/// What an item's run through a stage, or a fused chain of them, came to.
pub(super) struct Processed {
    pub(super) item: Item,
    /// The last stage's output, or the error of the stage that stopped the item.
    pub(super) result: Result<Payload, StageError>,
    /// Which member of the chain gave `result`.
    pub(super) reached: usize,
}

/// A component inside a task (the only one, unless it heads or joins a fused chain).
pub(super) struct Member {
    pub(super) index: usize,
    pub(super) id: String,
    /// "source" or "stage", for messages.
    pub(super) noun: &'static str,
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
pub(super) async fn run_stage<F>(
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

/// Runs a fused unit's chain, one CPU job per item.
pub(super) async fn run_fused(
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

fn tokio_stream_from(mut rx: mpsc::Receiver<Envelope>) -> impl futures::Stream<Item = Envelope> {
    stream::poll_fn(move |cx| rx.poll_recv(cx))
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

pub(super) async fn run_sink(
    task_info: TaskInfo,
    sink: Arc<dyn Sink>,
    inputs: Vec<mpsc::Receiver<Envelope>>,
) {
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
                item.trial.last = shared.is_last(&item, upstream.is_none());
                let written = async {
                    match item.trial.placement {
                        Placement::Page => sink.write(&item, states).await,
                        Placement::SetAside => sink.write_aside(&item, states).await,
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
