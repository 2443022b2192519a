//! The journal of a batch opened outside a run: `inkflow status` and the report read it,
//! `inkflow pick` chooses a page's candidate in it.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, params};

use super::review::review_counts;
use super::schema::open_checked;
use super::submissions::UNACKNOWLEDGED;
use super::{ItemRecord, JOURNAL_FILE, Journal, Status};
use crate::engine::review::ReviewAction;

impl Journal {
    /// Every item of an existing journal in book order, without changing it.
    pub fn items(output_dir: &Path) -> anyhow::Result<Vec<ItemRecord>> {
        let mut items = Vec::new();
        Journal::each_item(output_dir, None, |item| {
            items.push(item);
            Ok(())
        })?;
        Ok(items)
    }

    /// Hands `visit` every item of an existing journal in book order (only those in `state`
    /// when given), one row at a time: a batch of any size is read in the same memory.
    pub fn each_item(
        output_dir: &Path,
        state: Option<&str>,
        mut visit: impl FnMut(ItemRecord) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (path, conn) = open_made(output_dir, false)?;
        let cannot = || format!("cannot read the journal {}", path.display());
        let mut stmt = conn.prepare(ITEMS_IN_BOOK_ORDER).with_context(cannot)?;
        let mut rows = stmt.query([state]).with_context(cannot)?;
        while let Some(row) = rows.next().with_context(cannot)? {
            visit(item_record(row).with_context(cannot)?)?;
        }
        Ok(())
    }

    /// Makes candidate `number` of item `key` its page from the next run on, whatever its
    /// verdict; the run takes it from the raw cache (or redraws it), paying nothing again.
    /// It is the reviewer's pick ([`Journal::review`]), recorded with its time. Returns the
    /// item's description.
    pub fn pick(output_dir: &Path, key: &str, number: u32) -> anyhow::Result<String> {
        Ok(Journal::review(output_dir, key, &ReviewAction::Pick(number), None)?.description)
    }

    /// Reads the status of an existing journal without changing it.
    pub fn status(output_dir: &Path) -> anyhow::Result<Status> {
        let (path, conn) = open_made(output_dir, false)?;
        read_status(&conn).with_context(|| format!("cannot read the journal {}", path.display()))
    }
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
    // A journal older than the review table (read, not upgraded) has no decisions.
    status.review = review_counts(conn).unwrap_or_default();
    Ok(status)
}

/// The items in book order, with the money each one's requests cost; `?1` keeps one state.
const ITEMS_IN_BOOK_ORDER: &str = "SELECT i.key, i.seq, i.description, i.state, i.stage, i.error, i.attempts,
        COALESCE((SELECT SUM(s.cost_usd) FROM submissions s WHERE s.key = i.key), 0)
    FROM items i WHERE ?1 IS NULL OR i.state = ?1 ORDER BY i.seq, i.key";

fn item_record(r: &rusqlite::Row) -> rusqlite::Result<ItemRecord> {
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
}

/// The journal an earlier batch made in `output_dir`, opened as [`open_checked`] does; an error
/// names the folder when no batch ran there.
pub(super) fn open_made(output_dir: &Path, create: bool) -> anyhow::Result<(PathBuf, Connection)> {
    let path = output_dir.join(JOURNAL_FILE);
    if !path.exists() {
        anyhow::bail!("{} has no journal ({JOURNAL_FILE}); was a batch run there?", output_dir.display());
    }
    let conn = open_checked(&path, create)?;
    // Sorting a big batch into book order spills to SQLite's own temporary files instead of
    // growing in memory (this build keeps temporary data in memory by default).
    conn.pragma_update(None, "temp_store", "FILE")
        .with_context(|| format!("cannot read the journal {}", path.display()))?;
    Ok((path, conn))
}
