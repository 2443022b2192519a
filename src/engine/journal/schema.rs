//! The journal file's schema: checking that a file is an inkflow journal, creating its tables,
//! and upgrading one an older build wrote, so every other part reads a current schema.

use std::path::Path;

use anyhow::Context as _;
use rusqlite::Connection;

use super::page_hashes::PAGE_HASHES_TABLE;
use super::review::REVIEW_TABLE;
use super::uploads::UPLOADS_TABLE;

/// Marks a SQLite file as an inkflow journal ("INKF").
const APPLICATION_ID: i32 = 0x494E_4B46;
/// The schema this build writes; an older build refuses a newer journal. Version 2 keeps
/// every submission of an item (a re-submission no longer replaces the money of the first)
/// and how each one ended; version 3 keeps every candidate of a page and the user's picks;
/// version 4 keeps what each sink stored per item; version 5 the files uploaded for references,
/// the reviewer's decisions and the pages' likeness hashes.
const SCHEMA_VERSION: i32 = 5;

/// Opens a journal file and makes sure it is ours: a foreign or corrupt file is refused with
/// a clear message instead of being overwritten.
pub(super) fn open_checked(path: &Path, create: bool) -> anyhow::Result<Connection> {
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
             {UPLOADS_TABLE};
             {REVIEW_TABLE};
             {PAGE_HASHES_TABLE};
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

/// What each sink stored for an item's page ([`Receipt`](crate::engine::stage::Receipt)),
/// under the item's fingerprint: a receipt of an older version of the item is not its.
const STORED_TABLE: &str = "CREATE TABLE stored (
    sink TEXT NOT NULL, key TEXT NOT NULL, fingerprint TEXT NOT NULL, position INTEGER NOT NULL,
    object TEXT NOT NULL, sha256 TEXT NOT NULL, bytes INTEGER NOT NULL,
    PRIMARY KEY (sink, key, position))";

/// Brings an older journal to this schema. Schema 1 kept one submission per item and stage;
/// its rows move over as they are. Schema 2 had no candidates, schema 3 no receipts, schema
/// 4 no uploads, review decisions or page hashes.
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
    let stored = if version < 4 { STORED_TABLE } else { "" };
    conn.execute_batch(&format!(
        "BEGIN;
         {steps}
         {candidates};
         {stored};
         {UPLOADS_TABLE};
         {REVIEW_TABLE};
         {PAGE_HASHES_TABLE};
         PRAGMA user_version = {SCHEMA_VERSION};
         COMMIT;"
    ))
}
