//! The cluster's journal: the same hooks a local run's SQLite journal gives the runtime and
//! the paid stages, backed by the cluster's database, so stages never know which one they run
//! in. Every write that matters is guarded by the worker's lease: a worker that lost an item
//! (paused, partitioned) cannot record a submission for it, and so cannot submit.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Mutex;

use serde_json::Value;

use super::Database;
use super::limiter::{self, Limit};
use super::queue::{Claim, Settlement as ItemSettlement};
use crate::engine::item::{Failure, Item};
use crate::engine::run_context::{RESUME_FACT, Settlement, SubmissionLog};
use crate::engine::runtime::{ItemObserver, ItemOutcome, Preparation};

/// What a journal does for a run.
pub enum Role {
    /// A worker's run of one claimed item: the others are left to other runs, and the sinks'
    /// `finish` to the batch's last step.
    Item(Claim),
    /// The batch's last step: every item is kept as the database says it ended, and the sinks
    /// finish (the book, the cover, the batch's metadata).
    Finish {
        /// The batch.
        batch: String,
    },
}

/// A run's journal in the cluster database.
pub struct ClusterJournal {
    db: Database,
    role: Role,
    worker: String,
    runtime: tokio::runtime::Handle,
    /// The fal limit of each paid stage (by stage id).
    limits: HashMap<String, Limit>,
    /// `max_cost_usd` of each paid stage that has one, held for the batch across workers.
    budgets: HashMap<String, f64>,
    /// How the claimed item ended, recorded once its files are in the store.
    outcome: Mutex<Option<ItemSettlement>>,
    /// Why the whole batch must stop, when this journal refused a submission for a cause
    /// outside the item (the batch's `max_cost_usd`, held across the workers).
    stop_reason: Mutex<Option<String>>,
}

impl ClusterJournal {
    /// A journal for `role`, on the runtime running this call.
    pub fn new(
        db: Database,
        role: Role,
        worker: &str,
        limits: HashMap<String, Limit>,
        budgets: HashMap<String, f64>,
    ) -> Self {
        ClusterJournal {
            db,
            role,
            worker: worker.to_owned(),
            runtime: tokio::runtime::Handle::current(),
            limits,
            budgets,
            outcome: Mutex::new(None),
            stop_reason: Mutex::new(None),
        }
    }

    /// How the claimed item ended (`None`: it did not end, and goes back to the queue).
    pub fn outcome(&self) -> Option<ItemSettlement> {
        self.outcome.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Why the batch must stop for every worker, if this item's run found out.
    pub fn stop_reason(&self) -> Option<String> {
        self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn batch(&self) -> &str {
        match &self.role {
            Role::Item(claim) => &claim.batch,
            Role::Finish { batch } => batch,
        }
    }

    /// Runs a statement from the runtime's synchronous hooks, which may be called on a tokio
    /// worker thread or on the CPU pool.
    fn wait<T>(&self, future: impl Future<Output = T>) -> T {
        match tokio::runtime::Handle::try_current() {
            Ok(_) => tokio::task::block_in_place(|| self.runtime.block_on(future)),
            Err(_) => self.runtime.block_on(future),
        }
    }

    fn log_failure(&self, what: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            tracing::error!("cluster journal: {what}: {e:#}");
        }
    }

    /// The submitting record, committed only while the item's lease is this worker's: the row
    /// lock on the item makes a takeover wait for it (and then see it), or makes it fail.
    async fn record_submitting(&self, item: &Item, stage: &str, cost: f64) -> anyhow::Result<()> {
        let budget = self.budgets.get(stage).copied();
        let batch = self.batch();
        let db = &self.db.client;
        db.execute(
            "UPDATE submissions SET collected = true, outcome = 'abandoned'
             WHERE batch_id = $1 AND key = $2 AND stage = $3 AND collected = false AND request IS NULL",
            &[&batch, &item.key, &stage],
        )
        .await?;
        let inserted = db
            .execute(
                "WITH mine AS (
                    SELECT 1 FROM items WHERE batch_id = $1 AND key = $2 AND lease_owner = $4
                      AND state = 'claimed' AND lease_until > now() FOR UPDATE),
                 paid AS (
                    UPDATE batches SET committed_usd = committed_usd + $5
                    WHERE id = $1 AND EXISTS (SELECT 1 FROM mine)
                      AND ($6::FLOAT8 IS NULL OR committed_usd + $5 <= $6 + 0.000001)
                    RETURNING id)
                 INSERT INTO submissions (batch_id, key, stage, request, cost_usd, worker)
                 SELECT $1, $2, $3, NULL, $5, $4 FROM paid",
                &[&batch, &item.key, &stage, &self.worker, &cost, &budget],
            )
            .await?;
        if inserted == 1 {
            return Ok(());
        }
        let owner = db
            .query_opt(
                "SELECT 1 FROM items WHERE batch_id = $1 AND key = $2 AND lease_owner = $3 AND lease_until > now()",
                &[&batch, &item.key, &self.worker],
            )
            .await?;
        match (owner, budget) {
            (None, _) => anyhow::bail!(
                "this worker's lease on the item ran out and another worker may own it now: not submitting"
            ),
            (Some(_), Some(budget)) => {
                let reason = format!(
                    "stage \"{stage}\": max_cost_usd budget of ${budget} for the batch is reached across the \
                     workers: not submitting more"
                );
                *self.stop_reason.lock().unwrap_or_else(|e| e.into_inner()) = Some(reason.clone());
                anyhow::bail!(reason)
            }
            (Some(_), None) => anyhow::bail!("the cluster database refused the submission record"),
        }
    }
}

impl ItemObserver for ClusterJournal {
    /// The batch's last step pays for nothing itself: every cent was spent by the workers.
    fn spent_elsewhere(&self) -> anyhow::Result<f64> {
        let Role::Finish { batch } = &self.role else { return Ok(0.0) };
        self.wait(async {
            let row = self
                .db
                .client
                .query_one(
                    "SELECT COALESCE(sum(cost_usd), 0)::FLOAT8 FROM submissions WHERE batch_id = $1",
                    &[batch],
                )
                .await?;
            Ok(row.get(0))
        })
    }

    fn stopped_elsewhere(&self) -> anyhow::Result<Option<String>> {
        let Role::Finish { batch } = &self.role else { return Ok(None) };
        self.wait(super::queue::stop_reason(&self.db, batch))
    }

    fn prepare(&self, item: &mut Item) -> anyhow::Result<Preparation> {
        match &self.role {
            Role::Item(claim) if claim.key != item.key => Ok(Preparation::Elsewhere),
            Role::Item(claim) => self.wait(async {
                // A paid request not yet collected is polled, never paid again; one whose
                // answer never arrived is reported as possibly charged.
                let open = self
                    .db
                    .client
                    .query(
                        "SELECT stage, request FROM submissions
                         WHERE batch_id = $1 AND key = $2 AND collected = false ORDER BY id",
                        &[&claim.batch, &claim.key],
                    )
                    .await?;
                for row in open {
                    let stage: String = row.get(0);
                    let request: Option<Value> = row.get(1);
                    let request = request.unwrap_or(Value::Null);
                    item.record(RESUME_FACT, serde_json::json!({ "stage": stage, "request": request }));
                }
                Ok(Preparation::Run)
            }),
            Role::Finish { batch } => self.wait(async {
                let row = self
                    .db
                    .client
                    .query_opt(
                        "SELECT state, stage, error, attempts FROM items WHERE batch_id = $1 AND key = $2",
                        &[&batch, &item.key],
                    )
                    .await?;
                let Some(row) = row else { return Ok(Preparation::Elsewhere) };
                let (state, stage, error, attempts): (String, Option<String>, Option<String>, i32) =
                    (row.get(0), row.get(1), row.get(2), row.get(3));
                let (stage, error) = (stage.unwrap_or_default(), error.unwrap_or_default());
                Ok(match state.as_str() {
                    "written" => Preparation::Keep(ItemOutcome::Written),
                    "filtered" => Preparation::Keep(ItemOutcome::Filtered { stage, reason: error }),
                    "failed" => Preparation::Keep(ItemOutcome::Failed(Failure {
                        stage,
                        error,
                        attempts: attempts.max(0) as u32,
                        interrupted: false,
                    })),
                    // Not started, or cut short, before the batch was stopped: neither run here
                    // nor failed, as a stopped local run leaves them.
                    _ => Preparation::Elsewhere,
                })
            }),
        }
    }

    fn item_finished(&self, _item: &Item, outcome: &ItemOutcome) {
        let settlement = match outcome {
            ItemOutcome::Written => {
                ItemSettlement { state: "written", stage: None, error: None, attempts: 0 }
            }
            // Cut short by a stop: not ended, it goes back to the queue (its open submissions
            // stay on record, so whoever runs it next polls them or reports them as possibly
            // charged, never submits blindly). An item refused for the batch's budget was not
            // submitted: cut short too, as locally, where the budget stops the batch.
            ItemOutcome::Failed(f) if f.interrupted => return,
            ItemOutcome::Failed(_) if self.stop_reason().is_some() => return,
            ItemOutcome::Failed(f) => ItemSettlement {
                state: "failed",
                stage: Some(f.stage.clone()),
                error: Some(f.error.clone()),
                attempts: f.attempts,
            },
            ItemOutcome::Filtered { stage, reason } => ItemSettlement {
                state: "filtered",
                stage: Some(stage.clone()),
                error: Some(reason.clone()),
                attempts: 0,
            },
        };
        *self.outcome.lock().unwrap_or_else(|e| e.into_inner()) = Some(settlement);
    }

    fn defers_finish(&self) -> bool {
        matches!(self.role, Role::Item(_))
    }
}

impl SubmissionLog for ClusterJournal {
    fn submitting(&self, item: &Item, stage: &str, cost_usd: Option<f64>) -> anyhow::Result<()> {
        self.wait(async {
            if let Some(limit) = self.limits.get(stage) {
                limiter::acquire(&self.db, limit, self.batch(), &item.key).await?;
            }
            let recorded = self.record_submitting(item, stage, cost_usd.unwrap_or(0.0)).await;
            if recorded.is_err() {
                limiter::release(&self.db, self.batch(), &item.key).await?;
            }
            recorded
        })
    }

    fn submitted(
        &self,
        item: &Item,
        stage: &str,
        request: &Value,
        cost_usd: Option<f64>,
    ) -> anyhow::Result<()> {
        // The truth about money is written whoever owns the item now.
        self.wait(async {
            let cost = cost_usd.unwrap_or(0.0);
            let updated = self
                .db
                .client
                .execute(
                    "UPDATE submissions SET request = $4, cost_usd = $5
                     WHERE id = (SELECT max(id) FROM submissions WHERE batch_id = $1 AND key = $2
                                 AND stage = $3 AND collected = false AND request IS NULL AND worker = $6)",
                    &[&self.batch(), &item.key, &stage, request, &cost, &self.worker],
                )
                .await?;
            if updated == 0 {
                self.db
                    .client
                    .execute(
                        "INSERT INTO submissions (batch_id, key, stage, request, cost_usd, worker)
                         VALUES ($1, $2, $3, $4, $5, $6)",
                        &[&self.batch(), &item.key, &stage, request, &cost, &self.worker],
                    )
                    .await?;
            }
            Ok(())
        })
    }

    fn not_submitted(&self, item: &Item, stage: &str) -> anyhow::Result<()> {
        self.wait(async {
            let removed = self
                .db
                .client
                .query_opt(
                    "DELETE FROM submissions WHERE id = (SELECT max(id) FROM submissions WHERE batch_id = $1
                       AND key = $2 AND stage = $3 AND collected = false AND request IS NULL AND worker = $4)
                     RETURNING cost_usd",
                    &[&self.batch(), &item.key, &stage, &self.worker],
                )
                .await?;
            if let Some(row) = removed {
                let cost: f64 = row.get(0);
                self.db
                    .client
                    .execute(
                        "UPDATE batches SET committed_usd = committed_usd - $2 WHERE id = $1",
                        &[&self.batch(), &cost],
                    )
                    .await?;
            }
            limiter::release(&self.db, self.batch(), &item.key).await
        })
    }

    fn answered(&self, key: &str, stage: &str) {
        if self.limits.contains_key(stage) {
            // fal runs nothing more for the request: the download that follows is free and
            // outside fal's concurrency, so the next item's submit need not wait for it.
            let result = self.wait(limiter::release(&self.db, self.batch(), key));
            self.log_failure("request answered", result);
        }
    }

    fn settled(&self, key: &str, stage: &str, settlement: Settlement, cost_usd: f64) -> anyhow::Result<()> {
        self.wait(async {
            self.db
                .client
                .execute(
                    "UPDATE submissions SET collected = true, outcome = $4, cost_usd = $5
                     WHERE id = (SELECT max(id) FROM submissions WHERE batch_id = $1 AND key = $2
                                 AND stage = $3 AND collected = false)",
                    &[&self.batch(), &key, &stage, &settlement.as_str(), &cost_usd],
                )
                .await?;
            limiter::release(&self.db, self.batch(), key).await
        })
    }
}

/// Finishes a claimed item in the database after its files are stored (see
/// [`super::queue::settle`]).
pub async fn settle(journal: &ClusterJournal, claim: &Claim) -> anyhow::Result<bool> {
    super::queue::settle(&journal.db, claim, &journal.worker, journal.outcome().as_ref()).await
}
