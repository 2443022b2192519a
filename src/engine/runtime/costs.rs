//! What a batch would cost and may spend, summed over its paid stages. Each stage answers for
//! itself ([`IoStage::estimate_cost`], [`IoStage::budget_usd`]), so no caller reads a kind's
//! option by its name.
//!
//! [`IoStage::estimate_cost`]: crate::engine::stage::IoStage::estimate_cost
//! [`IoStage::budget_usd`]: crate::engine::stage::IoStage::budget_usd

use super::Batch;
use crate::engine::item::Item;
use crate::engine::stage::{Component, CostEstimate};

impl Batch {
    /// The batch's cost estimate and budget, summed over its paid stages.
    pub fn costs(&self) -> (Option<CostEstimate>, Option<f64>) {
        self.costs_of(&|| Box::new(self.items()))
    }

    /// [`Batch::costs`] for some of the batch's items (those a dry run says will run).
    pub fn costs_of<'a>(
        &self,
        items: &dyn Fn() -> Box<dyn Iterator<Item = Item> + 'a>,
    ) -> (Option<CostEstimate>, Option<f64>) {
        let (mut estimate, mut budget) = (None::<CostEstimate>, None);
        for (spec, component) in self.pipeline().components.iter().zip(self.components()) {
            let Component::Io(stage) = component else { continue };
            if let Some(stage_estimate) = stage.estimate_cost(&mut items()) {
                let total = estimate.get_or_insert_default();
                total.usd += stage_estimate.usd;
                total.unpriced.extend(
                    stage_estimate.unpriced.into_iter().map(|why| format!("stage {:?}: {why}", spec.id)),
                );
            }
            if let Some(usd) = stage.budget_usd() {
                budget = Some(budget.unwrap_or(0.0) + usd);
            }
        }
        (estimate, budget)
    }
}
