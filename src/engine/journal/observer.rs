//! The run's hooks into the journal: each item's state as it moves, the resume decision for an
//! item seen before, its candidates, what each sink stored, and why the batch stopped.

use anyhow::Context as _;
use rusqlite::{OptionalExtension as _, params};
use serde_json::Value;

use super::submissions::UNACKNOWLEDGED;
use super::{Journal, now};
use crate::engine::candidates::History;
use crate::engine::item::{Failure, Item, Judgement, Placement};
use crate::engine::review::ReviewState;
use crate::engine::run_context::RESUME_FACT;
use crate::engine::runtime::{ItemObserver, ItemOutcome, Preparation};
use crate::engine::stage::{Receipt, StoredObject};
use crate::engine::summary::Summary;

/// What the journal last recorded of one item, as `prepare` reads it.
struct ItemRow {
    state: String,
    fingerprint: String,
    stage: Option<String>,
    error: Option<String>,
    attempts: u32,
}

impl ItemObserver for Journal {
    fn prepare(&self, item: &mut Item) -> anyhow::Result<Preparation> {
        let row = self
            .lock()
            .query_row(
                "SELECT state, fingerprint, stage, error, attempts FROM items WHERE key = ?1",
                [&item.key],
                |r| {
                    Ok(ItemRow {
                        state: r.get(0)?,
                        fingerprint: r.get(1)?,
                        stage: r.get(2)?,
                        error: r.get(3)?,
                        attempts: r.get(4)?,
                    })
                },
            )
            .optional()?;
        let pending: Vec<(String, String)> = {
            let conn = self.lock();
            let mut stmt = conn.prepare(
                "SELECT stage, request FROM submissions WHERE key = ?1 AND collected = 0 ORDER BY id",
            )?;
            stmt.query_map([&item.key], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?
        };
        let failed_before = row.as_ref().is_some_and(|row| row.state == "failed");
        // A request paid for and not collected is collected on any resume: it costs nothing more.
        let paid_uncollected = pending.iter().any(|(_, request)| request != UNACKNOWLEDGED);
        for (stage, request) in pending {
            if request == UNACKNOWLEDGED && failed_before && self.policy.retry_failed {
                // Reported as uncertain before; --retry-failed is the user's word to submit again.
                continue;
            }
            // A paid request not yet collected: the stage re-polls it instead of paying again
            // (or, if its fate is unknown, reports that instead of paying twice).
            let request: Value = serde_json::from_str(&request).unwrap_or(Value::Null);
            item.record(RESUME_FACT, serde_json::json!({ "stage": stage, "request": request }));
        }
        let Some(ItemRow { state, fingerprint, stage, error, attempts }) = row else {
            if !self.read_only {
                self.set_state(item, "pending", None, None, 0)?;
            }
            return Ok(Preparation::SkipIfComplete);
        };
        let stage = stage.unwrap_or_default();
        // A sink's failure (a full disk) left outputs missing, which cost nothing to write again.
        let kept = !self.policy.retry_failed && !paid_uncollected && !self.sinks.contains(&stage);
        let error = error.unwrap_or_default();
        Ok(match state.as_str() {
            "written" if fingerprint == self.item_fingerprint(item) => Preparation::SkipIfComplete,
            // A failed or filtered item stays so unless the user asks for another try, which
            // may be paid for again; the run still lists it.
            "failed" if kept => {
                Preparation::Keep(ItemOutcome::Failed(Failure { stage, error, attempts, interrupted: false }))
            }
            "filtered" if kept => Preparation::Keep(ItemOutcome::Filtered { stage, reason: error }),
            _ => Preparation::Run,
        })
    }

    fn stage_done(&self, item: &Item, stage: &str) {
        let result = self.set_state(item, "processing", Some(stage), None, 0).and_then(|()| {
            self.execute(
                "UPDATE submissions SET collected = 1, outcome = 'collected' WHERE key = ?1 AND stage = ?2 AND collected = 0",
                params![item.key, stage],
            )
        });
        self.log_failure("stage done", result);
    }

    fn item_finished(&self, item: &Item, outcome: &ItemOutcome) {
        let result = match outcome {
            ItemOutcome::Written => self.set_state(item, "written", None, None, 0),
            ItemOutcome::Failed(f) => {
                self.set_state(item, "failed", Some(&f.stage), Some(&f.error), f.attempts)
            }
            ItemOutcome::Filtered { stage, reason } => {
                self.set_state(item, "filtered", Some(stage), Some(reason), 0)
            }
        };
        self.log_failure("item finished", result);
    }

    fn retry_failed(&self) -> bool {
        self.policy.retry_failed
    }

    fn history(&self, item: &Item) -> anyhow::Result<History> {
        let fingerprint = self.item_fingerprint(item);
        let conn = self.lock();
        let mut history = History::default();
        // A dry run reads an older journal as it is, without the candidates table: none yet.
        let Ok(mut stmt) = conn.prepare(
            "SELECT number, verdict, acceptable, score, placement FROM candidates
             WHERE key = ?1 AND fingerprint = ?2 ORDER BY number",
        ) else {
            return Ok(history);
        };
        let rows = stmt.query_map(params![item.key, fingerprint], |r| {
            let judgement = match (r.get::<_, Option<String>>(1)?, r.get::<_, Option<bool>>(2)?) {
                (Some(verdict), Some(acceptable)) => {
                    Some(Judgement { verdict, acceptable, score: r.get::<_, Option<f64>>(3)?.unwrap_or(0.0) })
                }
                _ => None,
            };
            Ok((r.get::<_, u32>(0)?, judgement, r.get::<_, String>(4)?))
        })?;
        for row in rows {
            let (number, judgement, placement) = row?;
            history.made = history.made.max(number + 1);
            if let (Some(judgement), "page") = (judgement, placement.as_str()) {
                history.page = Some((number, judgement));
            }
        }
        drop(stmt);
        history.picked = conn
            .query_row("SELECT number FROM picks WHERE key = ?1", [&item.key], |r| r.get(0))
            .optional()?;
        Ok(history)
    }

    fn candidate_done(&self, item: &Item, judgement: Option<&Judgement>, placement: Placement) {
        let fingerprint = self.item_fingerprint(item);
        let placed = match (placement, judgement) {
            (Placement::Page, _) => "page",
            (Placement::SetAside, Some(_)) => "aside",
            (Placement::SetAside, None) => "failed",
        };
        let result = (|| {
            if placement == Placement::Page {
                self.execute(
                    "UPDATE candidates SET placement = 'aside' WHERE key = ?1 AND fingerprint = ?2 AND placement = 'page'",
                    params![item.key, fingerprint],
                )?;
            }
            self.execute(
                "INSERT INTO candidates (key, fingerprint, number, verdict, acceptable, score, placement, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
                 ON CONFLICT(key, fingerprint, number) DO UPDATE SET verdict = ?4, acceptable = ?5, score = ?6,
                    placement = ?7, updated_at = ?8",
                params![
                    item.key,
                    fingerprint,
                    item.trial.number,
                    judgement.map(|j| j.verdict.as_str()),
                    judgement.map(|j| j.acceptable),
                    judgement.map(|j| j.score),
                    placed,
                    now()
                ],
            )
        })();
        self.log_failure("candidate done", result);
    }

    fn stored(&self, item: &Item, sink: &str, receipt: &Receipt) {
        let fingerprint = self.item_fingerprint(item);
        let result = (|| {
            let mut conn = self.lock();
            let tx = conn.transaction()?;
            tx.execute("DELETE FROM stored WHERE sink = ?1 AND key = ?2", params![sink, item.key])?;
            for (position, object) in receipt.objects.iter().enumerate() {
                tx.execute(
                    "INSERT INTO stored (sink, key, fingerprint, position, object, sha256, bytes)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        sink,
                        item.key,
                        fingerprint,
                        position as i64,
                        object.name,
                        object.sha256,
                        object.bytes as i64
                    ],
                )?;
            }
            tx.commit()
        })()
        .with_context(|| format!("cannot write to the journal {}", self.path.display()));
        self.log_failure("stored", result);
    }

    fn receipt(&self, item: &Item, sink: &str) -> anyhow::Result<Option<Receipt>> {
        let fingerprint = self.item_fingerprint(item);
        let conn = self.lock();
        // A dry run reads an older journal as it is, without the table: no receipts yet.
        let Ok(mut stmt) = conn.prepare(
            "SELECT object, sha256, bytes FROM stored WHERE sink = ?1 AND key = ?2 AND fingerprint = ?3
             ORDER BY position",
        ) else {
            return Ok(None);
        };
        let objects = stmt
            .query_map(params![sink, item.key, fingerprint], |r| {
                Ok(StoredObject { name: r.get(0)?, sha256: r.get(1)?, bytes: r.get::<_, i64>(2)? as u64 })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        Ok((!objects.is_empty()).then_some(Receipt { objects }))
    }

    fn review(&self, item: &mut Item) -> ReviewState {
        self.review_of(&item.key, None).amend(item);
        self.review_of(&item.key, Some(&self.item_fingerprint(item)))
    }

    fn batch_finished(&self, summary: &Summary) {
        let result = match summary.stop_reason.as_deref().filter(|_| summary.interrupted) {
            Some(reason) => self.execute(
                "INSERT INTO batch (name, value) VALUES ('stop_reason', ?1)
                 ON CONFLICT(name) DO UPDATE SET value = ?1",
                [reason],
            ),
            None => self.execute("DELETE FROM batch WHERE name = 'stop_reason'", []),
        };
        self.log_failure("batch finished", result);
    }
}
