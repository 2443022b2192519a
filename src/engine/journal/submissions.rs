//! The paid-request log: every fal submission of an item, from before it is sent to how it was
//! settled, so a resumed batch re-polls what it paid for instead of paying twice.

use anyhow::Context as _;
use rusqlite::params;
use serde_json::Value;

use super::{Journal, now};
use crate::engine::item::Item;
use crate::engine::run_context::{Settlement, SubmissionLog};

/// What the `request` column holds between `submitting` and `submitted`.
pub(super) const UNACKNOWLEDGED: &str = "null";

/// The open submission of an item for a stage: the newest row not yet collected or settled.
const OPEN_ROW: &str =
    "id = (SELECT max(id) FROM submissions WHERE key = ?1 AND stage = ?2 AND collected = 0)";

impl Journal {
    /// Money spent by earlier runs of this batch, so `max_cost_usd` survives restarts.
    pub fn spent_usd(&self) -> anyhow::Result<f64> {
        let conn = self.lock();
        let spent: f64 =
            conn.query_row("SELECT COALESCE(SUM(cost_usd), 0) FROM submissions", [], |r| r.get(0))?;
        Ok(spent)
    }
}

impl SubmissionLog for Journal {
    fn submitting(&self, item: &Item, stage: &str, cost_usd: Option<f64>) -> anyhow::Result<()> {
        // An older open row here is an uncertain one that `--retry-failed` chose to submit
        // again: it stays counted as money possibly spent, but is no longer waited for.
        self.execute(
            "UPDATE submissions SET collected = 1, outcome = 'abandoned' WHERE key = ?1 AND stage = ?2 AND collected = 0",
            params![item.key, stage],
        )?;
        self.execute(
            "INSERT INTO submissions (key, stage, request, cost_usd, collected, submitted_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![item.key, stage, UNACKNOWLEDGED, cost_usd.unwrap_or(0.0), now()],
        )
    }

    fn submitted(
        &self,
        item: &Item,
        stage: &str,
        request: &Value,
        cost_usd: Option<f64>,
    ) -> anyhow::Result<()> {
        let (request, cost) = (request.to_string(), cost_usd.unwrap_or(0.0));
        let updated = self
            .lock()
            .execute(
                &format!(
                    "UPDATE submissions SET request = ?3, cost_usd = ?4 WHERE {OPEN_ROW} AND request = ?5"
                ),
                params![item.key, stage, request, cost, UNACKNOWLEDGED],
            )
            .with_context(|| format!("cannot write to the journal {}", self.path.display()))?;
        if updated == 0 {
            self.execute(
                "INSERT INTO submissions (key, stage, request, cost_usd, collected, submitted_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
                params![item.key, stage, request, cost, now()],
            )?;
        }
        self.set_state(item, "submitted", Some(stage), None, 0)
    }

    fn not_submitted(&self, item: &Item, stage: &str) -> anyhow::Result<()> {
        self.execute(
            &format!("DELETE FROM submissions WHERE {OPEN_ROW} AND request = ?3"),
            params![item.key, stage, UNACKNOWLEDGED],
        )
    }

    fn uploaded(&self, sha256: &str) -> anyhow::Result<Option<String>> {
        Journal::uploaded(self, sha256)
    }

    fn record_upload(&self, sha256: &str, url: &str, bytes: u64) -> anyhow::Result<()> {
        Journal::record_upload(self, sha256, url, bytes)
    }

    fn settled(&self, key: &str, stage: &str, settlement: Settlement, cost_usd: f64) -> anyhow::Result<()> {
        self.execute(
            &format!("UPDATE submissions SET collected = 1, outcome = ?3, cost_usd = ?4 WHERE {OPEN_ROW}"),
            params![key, stage, settlement.as_str(), cost_usd],
        )
    }
}
