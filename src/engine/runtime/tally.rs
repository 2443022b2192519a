//! The state every task of a run shares: the stop, the tally of each item's outcome as the
//! sinks report it, the candidates of the pages, and the summary made from them at the end.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use tokio_util::sync::CancellationToken;

use super::decision::{Decision, decide};
use super::{Counters, ItemObserver, ItemOutcome, NamedSink, Progress};
use crate::engine::candidates::{CandidatePolicy, History};
use crate::engine::item::{Item, Judgement, Placement};
use crate::engine::pipeline::Pipeline;
use crate::engine::summary::{ComponentCounts, FailedItem, Summary};

/// State shared by every task of a run.
pub(super) struct Shared {
    pub(super) stop: CancellationToken,
    stop_reason: Mutex<Option<String>>,
    tally: Mutex<Tally>,
    pub(super) observer: Option<Arc<dyn ItemObserver>>,
    pub(super) progress: Arc<Progress>,
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

/// How a candidate left its page ([`Shared::candidate_done`]).
struct CandidateEnd {
    /// The page had an earlier candidate, which a failed one leaves in place.
    had_page: bool,
    /// The page wants another round: this candidate did not end it.
    wants_another: bool,
}

impl Shared {
    pub(super) fn new(
        stop: CancellationToken,
        observer: Option<Arc<dyn ItemObserver>>,
        progress: Arc<Progress>,
        sink_count: usize,
        policy: Option<CandidatePolicy>,
    ) -> Self {
        Shared {
            stop,
            stop_reason: Mutex::new(None),
            tally: Mutex::new(Tally::default()),
            observer,
            progress,
            sink_count,
            policy,
            candidates: Mutex::new(Candidates::default()),
        }
    }

    /// The items that want another candidate after this round; the next round starts with none.
    pub(super) fn take_wanted(&self) -> HashSet<String> {
        std::mem::take(&mut lock(&self.candidates).wanted)
    }

    pub(super) fn counters(&self, index: usize) -> &Counters {
        &self.progress.components[index]
    }

    pub(super) fn stop_batch(&self, reason: String) {
        let mut slot = lock(&self.stop_reason);
        if slot.is_none() {
            tracing::error!("stopping the batch: {reason}");
            *slot = Some(reason);
        }
        self.stop.cancel();
    }

    /// Records one sink's view of an item; when every sink has seen it, the item is final.
    pub(super) fn record(&self, item: &Item, outcome: ItemOutcome) {
        let mut tally = lock(&self.tally);
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
        let end = match &outcome {
            ItemOutcome::Failed(_) if !cut_short => Some(self.candidate_done(item, None)),
            ItemOutcome::Written => Some(self.candidate_done(item, Some(item.judgement.as_ref()))),
            _ => None,
        };
        // A later candidate that failed leaves the page as it was: the item is still written.
        let outcome = match outcome {
            ItemOutcome::Failed(failure) if end.as_ref().is_some_and(|end| end.had_page) => {
                tracing::warn!(
                    "item {}: candidate {} failed in stage \"{}\": {}; the page keeps the best earlier one",
                    item.key,
                    item.trial.number,
                    failure.stage,
                    failure.error
                );
                ItemOutcome::Written
            }
            other => other,
        };
        let mut tally = lock(&self.tally);
        if !cut_short {
            tally.count(&item.key, description, &outcome);
        }
        drop(tally);
        // A page counts once, when its rounds are over: its re-rolls are not more items.
        if !end.is_some_and(|end| end.wants_another) {
            self.progress.finished.fetch_add(1, Ordering::Relaxed);
        }
        if let Some(observer) = self.observer.as_ref().filter(|_| !cut_short) {
            observer.item_finished(item, &outcome);
        }
    }

    /// [`decide`] for this run, keeping the item's candidate history.
    pub(super) fn decide(&self, sinks: &[NamedSink], item: &mut Item) -> anyhow::Result<Decision> {
        let (decision, history) = decide(self.observer.as_deref(), sinks, self.policy, item)?;
        if self.policy.is_some() {
            lock(&self.candidates).histories.insert(item.key.clone(), history);
        }
        Ok(decision)
    }

    /// Makes `item` the next candidate of its page, for a later round.
    pub(super) fn next_candidate(&self, item: &mut Item) {
        if let Some(observer) = &self.observer {
            observer.review(item);
        }
        let candidates = lock(&self.candidates);
        if let (Some(policy), Some(history)) = (self.policy, candidates.histories.get(&item.key)) {
            item.trial.number = policy.next(history);
            item.trial.per_request = policy.best_of.max(1);
        }
    }

    /// Where the sinks put this candidate of its page (`made`: it reached the sinks whole; a
    /// failed one never replaces an earlier page).
    pub(super) fn placement(&self, item: &Item, made: bool) -> Placement {
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

    /// Whether this candidate, placed as it is ([`Self::placement`]), ends its page's rounds:
    /// the same rule [`Self::candidate_done`] applies once it is recorded, asked before the
    /// sinks write it so they know the page is final ([`crate::engine::item::Trial::last`]).
    pub(super) fn is_last(&self, item: &Item, made: bool) -> bool {
        let Some(policy) = self.policy else { return true };
        let mut history = lock(&self.candidates).histories.get(&item.key).cloned().unwrap_or_default();
        let had_page = history.page.is_some();
        let judgement = if made { item.judgement.as_ref() } else { None };
        history.record(item.trial.number, judgement, item.trial.placement);
        !((made || had_page) && policy.wants_another(&history))
    }

    /// Records how a candidate ended (`judged`: written, with its judgement if a stage judged
    /// it; `None`: failed) and whether its page wants another.
    fn candidate_done(&self, item: &Item, judged: Option<Option<&Judgement>>) -> CandidateEnd {
        let Some(policy) = self.policy else { return CandidateEnd { had_page: false, wants_another: false } };
        let mut candidates = lock(&self.candidates);
        let history = candidates.histories.entry(item.key.clone()).or_default();
        let had_page = history.page.is_some();
        let judgement = judged.flatten();
        let placement = match judged {
            Some(judgement) => history.place(item.trial.number, judgement),
            None => Placement::SetAside,
        };
        let new = history.record(item.trial.number, judgement, placement);
        let wanted = (judged.is_some() || had_page) && policy.wants_another(history);
        if new && item.trial.number > 0 {
            candidates.extra += 1;
        }
        if wanted {
            candidates.wanted.insert(item.key.clone());
        }
        drop(candidates);
        if let Some(observer) = &self.observer {
            observer.candidate_done(item, judgement, placement);
        }
        CandidateEnd { had_page, wants_another: wanted }
    }

    /// Counts an item an earlier run failed or filtered, which this run leaves so.
    pub(super) fn keep(&self, item: &Item, outcome: ItemOutcome) {
        let mut tally = lock(&self.tally);
        tally.count(&item.key, item.prompt.description.clone(), &outcome);
        tally.kept += 1;
        drop(tally);
        self.progress.finished.fetch_add(1, Ordering::Relaxed);
    }

    pub(super) fn summary(
        &self,
        pipeline: &Pipeline,
        output_dir: &Path,
        started: Instant,
        started_at: SystemTime,
    ) -> Summary {
        let tally = lock(&self.tally);
        let elapsed = started.elapsed().as_secs_f64();
        let total = self.progress.total.load(Ordering::Relaxed);
        let skipped = self.progress.skipped.load(Ordering::Relaxed);
        let finished = tally.succeeded + tally.failed.len() as u64 + tally.filtered_count;
        let stop_reason = lock(&self.stop_reason).clone();
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
                .or_else(|| interrupted.then(|| "stopped on request (Ctrl-C or SIGTERM)".to_owned())),
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
