//! The graph work of a run: which components fuse into one task, the channels joining the
//! tasks of a round, and each component's rank on the CPU pool.

use std::collections::HashSet;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;

use anyhow::Context as _;
use futures::FutureExt as _;
use futures::future::{self, BoxFuture};
use tokio::sync::mpsc;

use super::tally::Shared;
use super::tasks::{Member, Processed, SourceItems, TaskInfo, run_fused, run_sink, run_source, run_stage};
use super::{Listed, named_sinks};
use crate::engine::cpu;
use crate::engine::fusion;
use crate::engine::item::{Envelope, Item};
use crate::engine::media::Payload;
use crate::engine::pipeline::Pipeline;
use crate::engine::run_context::RunContext;
use crate::engine::stage::{Component, CpuStage, Source, StageError};

/// How a pipeline's components run: which are fused into one task, and the CPU pool's ranks.
pub(super) struct Wiring {
    units: Vec<Vec<usize>>,
    fused: Vec<bool>,
    ranks: Vec<u32>,
}

impl Wiring {
    pub(super) fn new(pipeline: &Pipeline, components: &[Component]) -> Self {
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
pub(super) struct Round<'a> {
    pub(super) pipeline: &'a Pipeline,
    pub(super) components: &'a [Component],
    pub(super) shared: &'a Arc<Shared>,
    pub(super) again: Option<Arc<HashSet<String>>>,
}

impl Round<'_> {
    /// Spawns one task per unit, joined by fresh bounded channels, and waits for them all.
    pub(super) async fn run(
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
    let chain: Vec<Arc<dyn CpuStage>> = unit
        .iter()
        .filter_map(|&member| match &components[member] {
            Component::Source(source) => Some(Arc::new(SourceLoad(source.clone())) as Arc<dyn CpuStage>),
            Component::Cpu(stage) => Some(stage.clone()),
            Component::Io(_) | Component::Sink(_) => None,
        })
        .collect();
    fusion::kernels(&chain).into()
}

/// A source's load as the first step of a fused chain: the decoded input is made on the pool
/// thread that goes on to process it.
struct SourceLoad(Arc<dyn Source>);

impl CpuStage for SourceLoad {
    fn process(&self, item: &mut Item, _unloaded: Payload) -> Result<Payload, StageError> {
        self.0.load(item)
    }
}

/// How many items the consumers of component `index` hold at most: each one's input queue and
/// the items it works on.
pub(super) fn room_below(pipeline: &Pipeline, index: usize) -> usize {
    let consumers = pipeline.components.iter().filter(|c| c.inputs.contains(&index));
    consumers.map(|c| c.capacity + c.most_at_once()).sum::<usize>().max(1)
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
