//! The batch journal: an SQLite file in the output directory recording every item's state
//! as it moves (pending → submitted → each stage → written, or failed / filtered), so a
//! crashed or stopped batch resumes without losing or re-paying a generation.
//!
//! Writes are small transactions in WAL mode with `synchronous=NORMAL`: durable when the
//! process is killed (the OS keeps the WAL), cheap enough to run on every transition. Every
//! lookup is by primary key, so a 512 KiB page cache serves it as well as SQLite's 2 MiB default.
//! `sqlite3 OUTPUT/journal.sqlite 'select state, count(*) from items group by 1'` inspects a batch.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::candidates::History;
use super::item::{Failure, Item, Judgement, Placement, REVISION_FACT};
use super::pipeline::Pipeline;
use super::run_context::{RESUME_FACT, Settlement, SubmissionLog};
use super::runtime::{ItemObserver, ItemOutcome, Preparation};
use super::stage::{Receipt, Role, StoredObject};
use super::summary::Summary;

/// The journal's file name inside the output directory.
pub const JOURNAL_FILE: &str = "journal.sqlite";
/// Marks a SQLite file as an inkflow journal ("INKF").
const APPLICATION_ID: i32 = 0x494E_4B46;
/// The schema this build writes; an older build refuses a newer journal. Version 2 keeps
/// every submission of an item (a re-submission no longer replaces the money of the first)
/// and how each one ended; version 3 keeps every candidate of a page and the user's picks;
/// version 4 keeps what each sink stored per item.
const SCHEMA_VERSION: i32 = 4;

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
}

/// Counts and failures of a batch, for `inkflow status`.
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
    /// Failed items: key, stage, error, attempts.
    pub failures: Vec<(String, String, String, u32)>,
    /// Why the last run stopped before the end of the batch (a refused key, the budget,
    /// Ctrl-C), if it did.
    pub stopped: Option<String>,
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
    /// Every item of an existing journal in book order, without changing it.
    pub fn items(output_dir: &Path) -> anyhow::Result<Vec<ItemRecord>> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            anyhow::bail!("{} has no journal ({JOURNAL_FILE}); was a batch run there?", output_dir.display());
        }
        let conn = open_checked(&path, false)?;
        read_items(&conn).with_context(|| format!("cannot read the journal {}", path.display()))
    }

    /// Opens (or creates) the journal of an output directory for a run of `pipeline`.
    pub fn open(output_dir: &Path, pipeline: &Pipeline, policy: ResumePolicy) -> anyhow::Result<Self> {
        let path = output_dir.join(JOURNAL_FILE);
        let conn = open_checked(&path, true)?;
        Ok(Journal::with(conn, path, pipeline, policy, false))
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
        Ok(Some(Journal::with(conn, path, pipeline, policy, true)))
    }

    fn with(
        conn: Connection,
        path: PathBuf,
        pipeline: &Pipeline,
        policy: ResumePolicy,
        read_only: bool,
    ) -> Self {
        let sinks =
            pipeline.components.iter().filter(|c| c.role == Role::Sink).map(|c| c.id.clone()).collect();
        Journal { conn: Mutex::new(conn), path, fingerprint: fingerprint(pipeline), policy, sinks, read_only }
    }

    /// What shapes an item's outputs: the pipeline, and the item's own prompt and source
    /// revision, so editing one prompt runs that item again and no other.
    fn item_fingerprint(&self, item: &Item) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.fingerprint.as_bytes());
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
        hex::encode(&hasher.finalize()[..8])
    }

    /// Makes candidate `number` of item `key` its page from the next run on, whatever its
    /// verdict; the run takes it from the raw cache (or redraws it), paying nothing again.
    /// Returns the item's description.
    pub fn pick(output_dir: &Path, key: &str, number: u32) -> anyhow::Result<String> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            anyhow::bail!("{} has no journal ({JOURNAL_FILE}); was a batch run there?", output_dir.display());
        }
        let conn = open_checked(&path, true)?;
        let description: Option<String> =
            conn.query_row("SELECT description FROM items WHERE key = ?1", [key], |r| r.get(0)).optional()?;
        let Some(description) = description else {
            anyhow::bail!(
                "the batch in {} has no item {key:?} (`inkflow status` lists them)",
                output_dir.display()
            );
        };
        let made: Vec<u32> = {
            let mut stmt = conn.prepare(
                "SELECT number FROM candidates WHERE key = ?1 AND placement != 'failed' ORDER BY number",
            )?;
            stmt.query_map([key], |r| r.get(0))?.collect::<Result<_, _>>()?
        };
        if !made.contains(&number) {
            let listed: Vec<String> = made.iter().map(u32::to_string).collect();
            anyhow::bail!(
                "item {key:?} has no candidate {number}; it has {}",
                if listed.is_empty() {
                    "none (its pipeline judges no pages)".to_owned()
                } else {
                    listed.join(", ")
                }
            );
        }
        conn.execute(
            "INSERT INTO picks (key, number) VALUES (?1, ?2) ON CONFLICT(key) DO UPDATE SET number = ?2",
            params![key, number],
        )
        .with_context(|| format!("cannot write to the journal {}", path.display()))?;
        Ok(description)
    }

    /// Reads the status of an existing journal without changing it.
    pub fn status(output_dir: &Path) -> anyhow::Result<Status> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            anyhow::bail!("{} has no journal ({JOURNAL_FILE}); was a batch run there?", output_dir.display());
        }
        let conn = open_checked(&path, false)?;
        read_status(&conn).with_context(|| format!("cannot read the journal {}", path.display()))
    }

    /// Money spent by earlier runs of this batch, so `max_cost_usd` survives restarts.
    pub fn spent_usd(&self) -> anyhow::Result<f64> {
        let conn = self.lock();
        let spent: f64 =
            conn.query_row("SELECT COALESCE(SUM(cost_usd), 0) FROM submissions", [], |r| r.get(0))?;
        Ok(spent)
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

/// What the `request` column holds between `submitting` and `submitted`.
const UNACKNOWLEDGED: &str = "null";

/// The open submission of an item for a stage: the newest row not yet collected or settled.
const OPEN_ROW: &str =
    "id = (SELECT max(id) FROM submissions WHERE key = ?1 AND stage = ?2 AND collected = 0)";

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

    fn settled(&self, key: &str, stage: &str, settlement: Settlement, cost_usd: f64) -> anyhow::Result<()> {
        self.execute(
            &format!("UPDATE submissions SET collected = 1, outcome = ?3, cost_usd = ?4 WHERE {OPEN_ROW}"),
            params![key, stage, settlement.as_str(), cost_usd],
        )
    }
}

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

/// Opens a journal file and makes sure it is ours: a foreign or corrupt file is refused with
/// a clear message instead of being overwritten.
fn open_checked(path: &Path, create: bool) -> anyhow::Result<Connection> {
    let refuse = |why: String| {
        anyhow::anyhow!(
            "{} is not a usable inkflow journal: {why}. Move it away or choose another --output; nothing was changed",
            path.display()
        )
    };
    let existed = path.exists();
    let conn =
        Connection::open(path).with_context(|| format!("cannot open the journal {}", path.display()))?;
    let (app_id, version): (i32, i32) = conn
        .query_row("SELECT * FROM pragma_application_id, pragma_user_version", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .map_err(|e| refuse(e.to_string()))?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(|e| refuse(e.to_string()))?;
    if app_id != APPLICATION_ID && (tables > 0 || app_id != 0) {
        return Err(refuse("it is some other SQLite database".into()));
    }
    if version > SCHEMA_VERSION {
        return Err(refuse(format!("it was written by a newer inkflow (schema {version})")));
    }
    let check: String =
        conn.query_row("PRAGMA quick_check", [], |r| r.get(0)).map_err(|e| refuse(e.to_string()))?;
    if check != "ok" {
        return Err(refuse(format!("SQLite reports damage ({check})")));
    }
    if !create && (!existed || tables == 0) {
        return Err(refuse("it is empty".into()));
    }
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA busy_timeout = 5000;
         PRAGMA cache_size = -512;",
    )
    .map_err(|e| refuse(e.to_string()))?;
    if create && tables == 0 {
        conn.execute_batch(&format!(
            "BEGIN;
             PRAGMA application_id = {APPLICATION_ID};
             PRAGMA user_version = {SCHEMA_VERSION};
             CREATE TABLE items (
                key TEXT PRIMARY KEY, seq INTEGER NOT NULL, description TEXT NOT NULL,
                state TEXT NOT NULL, stage TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                fingerprint TEXT NOT NULL, updated_at TEXT NOT NULL);
             {SUBMISSIONS_TABLE};
             {BATCH_TABLE};
             {CANDIDATES_TABLES};
             {STORED_TABLE};
             COMMIT;"
        ))
        .with_context(|| format!("cannot create the journal {}", path.display()))?;
    }
    if create && tables > 0 && version < SCHEMA_VERSION {
        upgrade(&conn, version)
            .map_err(|e| refuse(format!("upgrading it from schema {version} failed: {e}")))?;
    }
    Ok(conn)
}

/// Every paid submission, one row each: `collected` is 0 while a resumed batch must still poll
/// it (or report it as uncertain when `request` is still `null`), `outcome` says how it ended.
const SUBMISSIONS_TABLE: &str = "CREATE TABLE submissions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, stage TEXT NOT NULL,
    request TEXT NOT NULL, cost_usd REAL NOT NULL, collected INTEGER NOT NULL, outcome TEXT,
    submitted_at TEXT NOT NULL);
    CREATE INDEX submissions_by_item ON submissions (key, stage)";

/// Facts about the batch as a whole, such as why its last run stopped early.
const BATCH_TABLE: &str = "CREATE TABLE batch (name TEXT PRIMARY KEY, value TEXT NOT NULL)";

/// Every candidate of a page (`placement`: page, aside or failed) with the judging stage's
/// word on it, under the item's fingerprint, so an edited prompt starts its candidates anew;
/// and the candidate a user chose for a page (`inkflow pick`).
const CANDIDATES_TABLES: &str = "CREATE TABLE candidates (
    key TEXT NOT NULL, fingerprint TEXT NOT NULL, number INTEGER NOT NULL, verdict TEXT,
    acceptable INTEGER, score REAL, placement TEXT NOT NULL, updated_at TEXT NOT NULL,
    PRIMARY KEY (key, fingerprint, number));
    CREATE TABLE picks (key TEXT PRIMARY KEY, number INTEGER NOT NULL)";

/// What each sink stored for an item's page ([`Receipt`]), under the item's fingerprint: a
/// receipt of an older version of the item is not its.
const STORED_TABLE: &str = "CREATE TABLE stored (
    sink TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, position INTEGER NOT NULL,
    object TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (sink, key, position))";

/// Brings an older journal to this schema. Schema 1 kept one submission per item and stage;
/// its rows move over as they are. Schema 2 had no candidates, schema 3 no receipts.
fn upgrade(conn: &Connection, version: i32) -> rusqlite::Result<()> {
    let from_v1 = format!(
        "ALTER TABLE submissions RENAME TO submissions_v1;
         {SUBMISSIONS_TABLE};
         INSERT INTO submissions (key, stage, request, cost_usd, collected, submitted_at)
            SELECT key, stage, request, cost_usd, collected, submitted_at FROM submissions_v1;
         DROP TABLE submissions_v1;
         {BATCH_TABLE};"
    );
    let steps = if version < 2 { from_v1.as_str() } else { "" };
    let candidates = if version < 3 { CANDIDATES_TABLES } else { "" };
    conn.execute_batch(&format!(
        "BEGIN;
         {steps}
         {candidates};
         {STORED_TABLE};
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
}

fn read_status(conn: &Connection) -> rusqlite::Result<Status> {
    let mut status = Status::default();
    let mut stmt = conn.prepare("SELECT state, count(*) FROM items GROUP BY state ORDER BY state")?;
    status.states =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<_, _>>()?;
    status.spent_usd =
        conn.query_row("SELECT COALESCE(SUM(cost_usd), 0) FROM submissions", [], |r| r.get(0))?;
    let unfinished = |acknowledged: bool| {
        conn.query_row(
            "SELECT count(*) FROM submissions WHERE collected = 0 AND (request != ?1) = ?2",
            params![UNACKNOWLEDGED, acknowledged],
            |r| r.get::<_, i64>(0),
        )
    };
    status.unfinished_submissions = unfinished(true)? as u64;
    status.uncertain_submissions = unfinished(false)? as u64;
    let mut stmt = conn.prepare(
        "SELECT outcome, count(*) FROM submissions WHERE outcome IN ('failed', 'filtered', 'cancelled')
         GROUP BY outcome ORDER BY outcome",
    )?;
    status.settled_submissions =
        stmt.query_map([], |r| Ok((r.get(0)?, r.get::<_, i64>(1)? as u64)))?.collect::<Result<_, _>>()?;
    // A schema 1 journal (read, not upgraded) has no batch table: nothing recorded a stop.
    status.stopped = conn
        .query_row("SELECT value FROM batch WHERE name = 'stop_reason'", [], |r| r.get(0))
        .optional()
        .unwrap_or(None);
    let mut stmt =
        conn.prepare("SELECT key, COALESCE(stage, ''), COALESCE(error, ''), attempts FROM items WHERE state = 'failed' ORDER BY seq")?;
    status.failures = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    Ok(status)
}

fn read_items(conn: &Connection) -> rusqlite::Result<Vec<ItemRecord>> {
    let mut stmt = conn.prepare(
        "SELECT i.key, i.seq, i.description, i.state, i.stage, i.error, i.attempts,
                COALESCE((SELECT SUM(s.cost_usd) FROM submissions s WHERE s.key = i.key), 0)
         FROM items i ORDER BY i.seq, i.key",
    )?;
    stmt.query_map([], |r| {
        Ok(ItemRecord {
            key: r.get(0)?,
            seq: r.get::<_, i64>(1)? as u64,
            description: r.get(2)?,
            state: r.get(3)?,
            stage: r.get(4)?,
            error: r.get(5)?,
            attempts: r.get(6)?,
            cost_usd: r.get(7)?,
        })
    })?
    .collect()
}

/// A hash of what shapes every item's outputs: kinds, options and wiring of every component.
fn fingerprint(pipeline: &Pipeline) -> String {
    let mut hasher = Sha256::new();
    for c in &pipeline.components {
        hasher.update(format!("{}|{}|{:?}|{}\n", c.id, c.kind, c.inputs, c.options).as_bytes());
    }
    hex::encode(&hasher.finalize()[..8])
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
