//! What a run does with each listed item it reaches: run it (and as which candidate of its
//! page), skip it as complete, or keep it as an earlier run ended it.

use super::{ItemObserver, ItemOutcome, NamedSink, Preparation};
use crate::engine::candidates::{CandidatePolicy, History};
use crate::engine::item::Item;
use crate::engine::review::REJECTED_IN_REVIEW_FACT;

/// What a run does with a listed item.
pub(super) enum Decision {
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
/// picked one that is not the page yet; a settled page runs only when a sink lacks its
/// outputs, and then as its page again ([`CandidatePolicy::next`]), never as a new candidate.
/// `--retry-failed` reopens a page settled without an acceptable candidate. The reviewer's
/// decisions come first: an approved page is left as it is while every sink has it, a
/// rejected one is made again as a new candidate, a picked one is put in place.
pub(super) fn decide(
    observer: Option<&dyn ItemObserver>,
    sinks: &[NamedSink],
    policy: Option<CandidatePolicy>,
    item: &mut Item,
) -> anyhow::Result<(Decision, History)> {
    let review = observer.map(|observer| observer.review(item)).unwrap_or_default();
    let prepared = match observer {
        Some(observer) => observer.prepare(item)?,
        None => Preparation::SkipIfComplete,
    };
    let mut decision = match prepared {
        Preparation::Keep(outcome) => Decision::Keep(outcome),
        Preparation::Run => Decision::Run,
        Preparation::Elsewhere => return Ok((Decision::Done, History::default())),
        Preparation::SkipIfComplete if !sinks.is_empty() && all_complete(observer, sinks, item)? => {
            Decision::Done
        }
        Preparation::SkipIfComplete => Decision::Run,
    };
    // Locked: not even a changed pipeline remakes it; only a sink missing it writes it again.
    if review.approved.is_some()
        && matches!(decision, Decision::Run)
        && !sinks.is_empty()
        && all_complete(observer, sinks, item)?
    {
        decision = Decision::Done;
    }
    let (Some(policy), Some(observer)) = (policy, observer) else {
        return Ok((decision, History::default()));
    };
    let mut history = observer.history(item)?;
    if let Some(rejected) = review.steer(&mut history) {
        item.record(REJECTED_IN_REVIEW_FACT, rejected);
    }
    if observer.retry_failed() && policy.settled_unacceptable(&history) {
        history.reopen();
    }
    let pick_pending = history.picked.is_some_and(|p| history.page.as_ref().map(|(n, _)| *n) != Some(p));
    if matches!(decision, Decision::Done)
        && (pick_pending || history.made > 0 && policy.wants_another(&history))
    {
        decision = Decision::Run;
    }
    item.trial.number = policy.next(&history);
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
