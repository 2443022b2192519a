//! The paid requests a `plan` source makes to write a book's plan, in the journal's
//! `submissions` table beside the pages' requests: `inkflow status` counts their money, budgets
//! see it, and a resumed run collects (or reads again) what it paid for instead of asking anew.
//!
//! A plan is made while the batch is built, before the run opens its [`Journal`](super::Journal),
//! so this is a journal of its own over the same file. Its rows are under an item key no page
//! can have (`@plan`) and the source's id as the stage.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, params};
use serde_json::Value;

use super::submissions::UNACKNOWLEDGED;
use super::{JOURNAL_FILE, now, schema::open_checked};

/// The item key of plan requests: `@` starts no page's key (section names and file stems).
const PLAN_KEY: &str = "@plan";

/// One request of a plan, as the journal last recorded it.
#[derive(Clone, Debug, PartialEq)]
pub enum PlanRequest {
    /// Sent by a run that stopped before hearing back: fal may have accepted (and charged) it.
    Uncertain,
    /// Accepted and not yet collected: the handle to collect it with.
    Open(Value),
    /// Answered, and the answer was used: the handle to read it again.
    Answered(Value),
    /// Ended without a usable answer (malformed, failed, or given up on).
    Unusable,
}

/// The plan requests of one `plan` source in an output folder's journal.
pub struct PlanRequests {
    conn: Connection,
    source: String,
    shown: String,
}

impl PlanRequests {
    /// Opens (creating if need be) the journal of `output_dir` for the plan source `source`.
    pub fn open(output_dir: &Path, source: &str) -> anyhow::Result<Self> {
        let path = output_dir.join(JOURNAL_FILE);
        let conn = open_checked(&path, true)?;
        Ok(PlanRequests { conn, source: source.to_owned(), shown: path.display().to_string() })
    }

    /// For `--retry-failed`: every plan request of the output folder that an earlier run was
    /// sending when it stopped (fal may have charged it) is given up on, still counted as
    /// spent, so the plan may be asked for again. Returns how many; none without a journal.
    pub fn give_up_uncertain(output_dir: &Path) -> anyhow::Result<usize> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            return Ok(0);
        }
        let conn = open_checked(&path, false)?;
        conn.execute(
            "UPDATE submissions SET collected = 1, outcome = 'abandoned' WHERE key = ?1 AND request = ?2 AND collected = 0",
            params![PLAN_KEY, UNACKNOWLEDGED],
        )
        .with_context(|| format!("cannot write to the journal {}", path.display()))
    }

    /// Every request of this source so far, oldest first, each with its row id.
    pub fn recorded(&self) -> anyhow::Result<Vec<(i64, PlanRequest)>> {
        let mut statement = self.conn.prepare(
            "SELECT id, request, collected, outcome FROM submissions WHERE key = ?1 AND stage = ?2 ORDER BY id",
        )?;
        let rows = statement.query_map(params![PLAN_KEY, self.source], |row| {
            let request: String = row.get(1)?;
            let collected: bool = row.get(2)?;
            let outcome: Option<String> = row.get(3)?;
            Ok((row.get::<_, i64>(0)?, request, collected, outcome))
        })?;
        let mut recorded = Vec::new();
        for row in rows {
            let (id, request, collected, outcome) = row?;
            let handle = serde_json::from_str::<Value>(&request).unwrap_or(Value::Null);
            let state = match (collected, outcome.as_deref(), handle.is_null()) {
                (false, _, true) => PlanRequest::Uncertain,
                (false, _, false) => PlanRequest::Open(handle),
                (true, Some("collected"), false) => PlanRequest::Answered(handle),
                _ => PlanRequest::Unusable,
            };
            recorded.push((id, state));
        }
        Ok(recorded)
    }

    /// Money this source's requests cost, answered or not.
    pub fn spent_usd(&self) -> anyhow::Result<f64> {
        Ok(self.conn.query_row(
            "SELECT COALESCE(SUM(cost_usd), 0) FROM submissions WHERE key = ?1 AND stage = ?2",
            params![PLAN_KEY, self.source],
            |r| r.get(0),
        )?)
    }

    /// Records, before it is sent, a request that costs `cost_usd` if accepted; returns its row.
    pub fn submitting(&self, cost_usd: f64) -> anyhow::Result<i64> {
        self.execute(
            "INSERT INTO submissions (key, stage, request, cost_usd, collected, submitted_at) VALUES (?1, ?2, ?3, ?4, 0, ?5)",
            params![PLAN_KEY, self.source, UNACKNOWLEDGED, cost_usd, now()],
        )?;
        Ok(self.conn.last_insert_rowid())
    }

    /// Records that fal accepted the request of `row`, with the handle to collect it.
    pub fn submitted(&self, row: i64, handle: &Value) -> anyhow::Result<()> {
        self.execute("UPDATE submissions SET request = ?2 WHERE id = ?1", params![row, handle.to_string()])
    }

    /// Forgets the request of `row`: fal surely did not accept it.
    pub fn not_submitted(&self, row: i64) -> anyhow::Result<()> {
        self.execute("DELETE FROM submissions WHERE id = ?1", params![row])
    }

    /// Records that the answer of `row` was used.
    pub fn answered(&self, row: i64) -> anyhow::Result<()> {
        self.execute(
            "UPDATE submissions SET collected = 1, outcome = 'collected' WHERE id = ?1",
            params![row],
        )
    }

    /// Records that `row` ended without a usable answer (`outcome`: failed, abandoned),
    /// costing `cost_usd` in the end (`None`: what it was counted at).
    pub fn unusable(&self, row: i64, outcome: &str, cost_usd: Option<f64>) -> anyhow::Result<()> {
        self.execute(
            "UPDATE submissions SET collected = 1, outcome = ?2, cost_usd = COALESCE(?3, cost_usd) WHERE id = ?1",
            params![row, outcome, cost_usd],
        )
    }

    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<()> {
        self.conn
            .execute(sql, params)
            .map(drop)
            .with_context(|| format!("cannot write to the journal {}", self.shown))
    }
}
