//! The stage's `max_cost_usd` budget: what this run has counted against it, checked before
//! each submission, so a batch stops before it would spend more than the pipeline allows.

use std::sync::Mutex;

use super::super::pricing::round_cents;
use super::{Failure, lock};

/// The dollars a stage may spend, and what this run has counted so far.
pub(super) struct Budget {
    /// `max_cost_usd`; `None` is no limit.
    limit_usd: Option<f64>,
    spent_usd: Mutex<f64>,
}

impl Budget {
    pub(super) fn new(limit_usd: Option<f64>) -> Self {
        Budget { limit_usd, spent_usd: Mutex::new(0.0) }
    }

    /// Counts this request against `max_cost_usd`, or refuses to submit it.
    /// `spent_before` is what earlier runs of the batch spent (from the journal).
    pub(super) fn reserve(&self, model: &str, cost: Option<f64>, spent_before: f64) -> Result<(), Failure> {
        let Some(budget) = self.limit_usd else { return Ok(()) };
        let Some(cost) = cost else {
            return Err(Failure::Item(format!(
                "no price for model {model:?}, so max_cost_usd cannot be enforced: add it under `prices`"
            )));
        };
        let mut spent = lock(&self.spent_usd);
        let total = round_cents(spent_before + *spent);
        if total + cost > budget + 1e-9 {
            return Err(Failure::Fatal(format!(
                "max_cost_usd budget of ${budget} reached after ${total}: not submitting more"
            )));
        }
        *spent = round_cents(*spent + cost);
        Ok(())
    }

    /// Gives back what [`Budget::reserve`] counted for a request that was surely not sent.
    pub(super) fn release(&self, cost: Option<f64>) {
        if let (Some(_), Some(cost)) = (self.limit_usd, cost) {
            let mut spent = lock(&self.spent_usd);
            *spent = round_cents((*spent - cost).max(0.0));
        }
    }
}
