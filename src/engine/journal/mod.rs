//! The batch journal: an SQLite file in the output directory recording every item's state
//! as it moves (pending → submitted → each stage → written, or failed / filtered), so a
//! crashed or stopped batch resumes without losing or re-paying a generation.
//!
//! Writes are small transactions in WAL mode with `synchronous=NORMAL`: durable when the
//! process is killed (the OS keeps the WAL), cheap enough to run on every transition. Every
//! lookup is by primary key, so a 512 KiB page cache serves it as well as SQLite's 2 MiB default.
//! `sqlite3 OUTPUT/journal.sqlite 'select state, count(*) from items group by 1'` inspects a batch.
//!
//! This module holds the public face (opening a journal, the types `inkflow status` and the
//! report read, the row helpers the rest share); the schema, the run's item hooks, the paid
//! request log and the reads outside a run live beside it.

mod observer;
mod page_hashes;
mod plan_requests;
mod review;
mod schema;
mod snapshot;
mod status;
mod submissions;
mod uploads;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, params};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use self::page_hashes::{DifficultySpread, PageHashRow, PageHashes, difficulty_spread};
pub use self::plan_requests::{PlanRequest, PlanRequests};
use self::review::{Decided, load_decisions};
pub use self::review::{Recorded, ReviewCounts};
use self::schema::open_checked;
pub use self::snapshot::SubmissionRecord;
use super::item::{INPUTS_FACT, Item, REVISION_FACT};
use super::output_path::JOURNAL_FILE;
use super::pipeline::Pipeline;
use super::stage::Role;

/// How a resumed run treats earlier outcomes.
#[derive(Clone, Copy, Debug, Default)]
pub struct ResumePolicy {
    /// Run items that failed before (otherwise they stay failed and are skipped).
    pub retry_failed: bool,
}

/// An open journal.
pub struct Journal {
    conn: Mutex<Connection>,
    path: PathBuf,
    fingerprint: String,
    policy: ResumePolicy,
    /// The pipeline's sinks: an item a sink failed has outputs missing, so it runs again.
    sinks: Vec<String>,
    /// Opened for `--dry-run`: `prepare` answers without recording new items.
    read_only: bool,
    /// The reviewer's decisions in force per item, read once: a run obeys them as they were
    /// when it started (decisions are refused while it holds the output lock).
    decisions: HashMap<String, Decided>,
}

/// Counts of a batch, for `inkflow status` (which lists the failed items with
/// [`Journal::each_item`]).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Status {
    /// Items per state.
    pub states: Vec<(String, u64)>,
    /// Money spent on paid stages, in US dollars.
    pub spent_usd: f64,
    /// Paid requests accepted but not yet collected.
    pub unfinished_submissions: u64,
    /// Requests sent by a run that stopped before hearing whether they were accepted.
    pub uncertain_submissions: u64,
    /// Accepted requests settled without a result: (failed | filtered | cancelled, count).
    pub settled_submissions: Vec<(String, u64)>,
    /// Why the last run stopped before the end of the batch (a refused key, the budget,
    /// Ctrl-C), if it did.
    pub stopped: Option<String>,
    /// Written pages per review decision (`inkflow review`).
    pub review: ReviewCounts,
}

/// One item as the journal last recorded it, for the batch report.
#[derive(Clone, Debug)]
pub struct ItemRecord {
    /// The item key.
    pub key: String,
    /// Its place in the book.
    pub seq: u64,
    /// Its description from the prompt file.
    pub description: String,
    /// pending, submitted, processing, written, failed or filtered.
    pub state: String,
    /// The stage that failed or filtered it, or the last one it passed.
    pub stage: Option<String>,
    /// The failure message or filter reason.
    pub error: Option<String>,
    /// Attempts the failing stage made.
    pub attempts: u32,
    /// Money its paid requests cost, in US dollars.
    pub cost_usd: f64,
}

impl Journal {
    /// Opens (or creates) the journal of an output directory for a run of `pipeline`.
    pub fn open(output_dir: &Path, pipeline: &Pipeline, policy: ResumePolicy) -> anyhow::Result<Self> {
        let path = output_dir.join(JOURNAL_FILE);
        let conn = open_checked(&path, true)?;
        Journal::with(conn, path, pipeline, policy, false)
    }

    /// The journal of an output directory as it is, for a dry run: `None` when there is none;
    /// `prepare` then changes nothing.
    pub fn open_existing(
        output_dir: &Path,
        pipeline: &Pipeline,
        policy: ResumePolicy,
    ) -> anyhow::Result<Option<Self>> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = open_checked(&path, false)?;
        Journal::with(conn, path, pipeline, policy, true).map(Some)
    }

    fn with(
        conn: Connection,
        path: PathBuf,
        pipeline: &Pipeline,
        policy: ResumePolicy,
        read_only: bool,
    ) -> anyhow::Result<Self> {
        let sinks =
            pipeline.components.iter().filter(|c| c.role == Role::Sink).map(|c| c.id.clone()).collect();
        let decisions = load_decisions(&conn, None)
            .with_context(|| format!("cannot read the journal {}", path.display()))?;
        Ok(Journal {
            conn: Mutex::new(conn),
            path,
            fingerprint: fingerprint(pipeline),
            policy,
            sinks,
            read_only,
            decisions,
        })
    }

    fn item_fingerprint(&self, item: &Item) -> String {
        item_fingerprint(&self.fingerprint, item)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_state(
        &self,
        item: &Item,
        state: &str,
        stage: Option<&str>,
        error: Option<&str>,
        attempts: u32,
    ) -> anyhow::Result<()> {
        self.lock()
            .execute(
                "INSERT INTO items (key, seq, description, state, stage, error, attempts, fingerprint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
                 ON CONFLICT(key) DO UPDATE SET state = ?4, stage = ?5, error = ?6, attempts = ?7,
                    fingerprint = ?8, updated_at = ?9",
                params![
                    item.key,
                    item.seq as i64,
                    item.prompt.description,
                    state,
                    stage,
                    error,
                    attempts,
                    self.item_fingerprint(item),
                    now()
                ],
            )
            .with_context(|| format!("cannot write to the journal {}", self.path.display()))?;
        Ok(())
    }

    /// Runs one statement on the journal.
    fn execute(&self, sql: &str, params: impl rusqlite::Params) -> anyhow::Result<()> {
        self.lock()
            .execute(sql, params)
            .map(drop)
            .with_context(|| format!("cannot write to the journal {}", self.path.display()))
    }

    fn log_failure(&self, what: &str, result: anyhow::Result<()>) {
        if let Err(e) = result {
            tracing::error!("journal: {what}: {e:#}");
        }
    }
}

/// What shapes an item's outputs: the pipeline (its [`fingerprint`]), and the item's own prompt,
/// source revision and the files its stages read (their [`INPUTS_FACT`]), so editing one prompt
/// or replacing one page's reference image runs that item again and no other. Both journals
/// (this file and a cluster's database) key items' outputs by it.
pub fn item_fingerprint(pipeline_fingerprint: &str, item: &Item) -> String {
    let mut hasher = Sha256::new();
    hasher.update(pipeline_fingerprint.as_bytes());
    hasher.update(b"\n");
    // Not its number: a `files` item's is its position, which a new file shifts (a prompt's
    // is in its key), and a name made from it is checked by the sinks' `is_complete`.
    let prompt = &item.prompt;
    let content = (&prompt.section, &prompt.image_prompt, &prompt.description, &prompt.extra);
    hasher.update(serde_json::to_string(&content).unwrap_or_default().as_bytes());
    if let Some(revision) = item.facts.get(REVISION_FACT) {
        hasher.update(b"\n");
        hasher.update(revision.to_string().as_bytes());
    }
    if let Some(inputs) = item.facts.get(INPUTS_FACT) {
        hasher.update(b"\n");
        hasher.update(inputs.to_string().as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

/// A hash of what shapes every item's outputs: kinds, options and wiring of every component.
pub fn fingerprint(pipeline: &Pipeline) -> String {
    let mut hasher = Sha256::new();
    for c in &pipeline.components {
        hasher.update(format!("{}|{}|{:?}|{}\n", c.id, c.kind, c.inputs, c.options).as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
