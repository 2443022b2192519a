//! The reviewer's decisions (`inkflow review`, `inkflow pick`): one row per decision with its
//! time, never rewritten except to mark it undone, so the journal tells who decided what when.
//! A run reads what the decisions in force add up to ([`ReviewState`]) once, when it opens the
//! journal; `inkflow status` counts them.

use std::collections::HashMap;
use std::path::Path;

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};
use serde::Serialize;

use super::status::open_made;
use super::{Journal, now};
use crate::engine::review::{ReviewAction, ReviewState};

/// Every decision, in the order made; `fingerprint` is the item's as it was decided on (a
/// rejection or an edit is spent once the item ran under a new one), `undone_at` marks one
/// taken back.
pub(super) const REVIEW_TABLE: &str = "CREATE TABLE review_decisions (
    id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, action TEXT NOT NULL,
    candidate INTEGER, prompt TEXT, fingerprint TEXT NOT NULL, decided_at TEXT NOT NULL,
    undone_at TEXT);
    CREATE INDEX review_by_item ON review_decisions (key, id)";

/// What the decisions in force on one item add up to, with the fingerprints the spendable
/// ones were made under.
#[derive(Clone, Debug, Default)]
pub(super) struct Decided {
    pub(super) state: ReviewState,
    /// The item's fingerprint when its page was rejected.
    pub(super) rejected_under: Option<String>,
    /// The item's fingerprint when its prompt was edited.
    pub(super) edited_under: Option<String>,
    /// The newest decision in force, which an undo takes back.
    pub(super) last: Option<i64>,
}

impl Decided {
    fn apply(&mut self, id: i64, action: &str, candidate: Option<u32>, prompt: Option<String>, fp: String) {
        let state = &mut self.state;
        match action {
            "approve" => state.approved = candidate,
            "reject" => {
                (state.rejected, state.picked, state.approved) = (candidate, None, None);
                self.rejected_under = Some(fp);
            }
            "pick" => (state.picked, state.rejected) = (candidate, None),
            "edit" => {
                *state = ReviewState { prompt, ..ReviewState::default() };
                self.rejected_under = None;
                self.edited_under = Some(fp);
            }
            _ => {}
        }
        self.last = Some(id);
    }
}

/// Every item's decisions in force, folded in the order made. A journal older than the
/// table (read as it is by a dry run) has none.
pub(super) fn load_decisions(
    conn: &Connection,
    key: Option<&str>,
) -> rusqlite::Result<HashMap<String, Decided>> {
    let mut decided: HashMap<String, Decided> = HashMap::new();
    let Ok(mut stmt) = conn.prepare(
        "SELECT id, key, action, candidate, prompt, fingerprint FROM review_decisions
         WHERE undone_at IS NULL AND (?1 IS NULL OR key = ?1) ORDER BY id",
    ) else {
        return Ok(decided);
    };
    let mut rows = stmt.query([key])?;
    while let Some(r) = rows.next()? {
        decided.entry(r.get(1)?).or_default().apply(
            r.get(0)?,
            &r.get::<_, String>(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
        );
    }
    Ok(decided)
}

/// A decision recorded: what the page's decisions add up to now, and the id a client sends
/// back with its next decision on the page (see [`Journal::review`]).
#[derive(Clone, Debug, Serialize)]
pub struct Recorded {
    /// The item's key.
    pub key: String,
    /// Its description.
    pub description: String,
    /// The decisions in force.
    pub state: ReviewState,
    /// The newest decision in force, if any.
    pub last: Option<i64>,
}

/// Pages per review state, for `inkflow status`.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct ReviewCounts {
    /// Pages approved (locked).
    pub approved: u64,
    /// Pages rejected and not yet made again.
    pub rejected: u64,
    /// Pages whose prompt was edited and that have not run with it yet.
    pub edited: u64,
    /// Pages with a picked candidate not yet in place.
    pub picked: u64,
    /// Written pages nobody decided about (or whose rejection or edit the last run carried out).
    pub undecided: u64,
}

/// The item a decision is about, as the journal last recorded it.
struct Target {
    description: String,
    state: String,
    fingerprint: String,
    /// The candidate that is its page under its fingerprint, when a judging stage made some.
    page: Option<u32>,
}

/// Longest prompt a reviewer may write: far more than any model takes, short enough that
/// a pasted file is refused instead of stored.
const MAX_PROMPT_CHARS: usize = 4000;

impl Journal {
    /// Records a reviewer's decision on item `key` and returns what the page's decisions add
    /// up to. With `expected` (the newest decision the reviewer saw), a page someone else
    /// decided on meanwhile is refused, so two reviewers never undo each other unknowingly.
    /// Bad input (no such item or candidate, a locked page, nothing to undo) is refused with
    /// a message and changes nothing. The caller holds the output lock: no run is writing.
    pub fn review(
        output_dir: &Path,
        key: &str,
        action: &ReviewAction,
        expected: Option<Option<i64>>,
    ) -> anyhow::Result<Recorded> {
        let (path, mut conn) = open_made(output_dir, true)?;
        let cannot = || format!("cannot write to the journal {}", path.display());
        // One writer at a time from the first read: two reviewers' decisions are ordered.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate).with_context(cannot)?;
        let target = target(&tx, key)?.with_context(|| {
            format!("the batch in {} has no item {key:?} (`inkflow status` lists them)", output_dir.display())
        })?;
        let decided = load_decisions(&tx, Some(key))?.remove(key).unwrap_or_default();
        if let Some(expected) = expected
            && expected != decided.last
        {
            anyhow::bail!(
                "page {key:?} was decided on meanwhile (elsewhere, perhaps in another browser); \
                 reload to see its decisions; nothing was changed"
            );
        }
        let refuse_locked = || {
            if decided.state.approved.is_some() {
                anyhow::bail!(
                    "page {key:?} is approved, so it is locked: undo the approval first; nothing was changed"
                );
            }
            Ok(())
        };
        let current = decided.state.picked.or(target.page);
        let (name, candidate, prompt) = match action {
            ReviewAction::Undo => {
                let Some(last) = decided.last else {
                    anyhow::bail!("page {key:?} has no decision to undo");
                };
                tx.execute("UPDATE review_decisions SET undone_at = ?1 WHERE id = ?2", params![now(), last])
                    .with_context(cannot)?;
                return finish(tx, key, target.description).with_context(cannot);
            }
            ReviewAction::Approve => {
                if decided.state.approved.is_some() {
                    anyhow::bail!("page {key:?} is approved already");
                }
                if target.state != "written" {
                    anyhow::bail!("page {key:?} is {}, so there is no page to approve", target.state);
                }
                ("approve", Some(current.unwrap_or(0)), None)
            }
            ReviewAction::Reject => {
                refuse_locked()?;
                if target.state != "written" {
                    anyhow::bail!(
                        "page {key:?} is {}: `inkflow run --retry-failed` makes it again",
                        target.state
                    );
                }
                let Some(current) = current else {
                    anyhow::bail!(
                        "page {key:?} has no candidates (its pipeline judges no pages), so rejecting it cannot \
                         make it again: edit its prompt instead"
                    );
                };
                ("reject", Some(current), None)
            }
            ReviewAction::Pick(number) => {
                refuse_locked()?;
                check_candidate(&tx, key, *number)?;
                ("pick", Some(*number), None)
            }
            ReviewAction::Edit(text) => {
                refuse_locked()?;
                let text = text.trim();
                if text.is_empty() {
                    anyhow::bail!("the new prompt of page {key:?} is empty");
                }
                if text.chars().count() > MAX_PROMPT_CHARS {
                    anyhow::bail!(
                        "the new prompt of page {key:?} is longer than {MAX_PROMPT_CHARS} characters"
                    );
                }
                ("edit", None, Some(text.to_owned()))
            }
        };
        tx.execute(
            "INSERT INTO review_decisions (key, action, candidate, prompt, fingerprint, decided_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            params![key, name, candidate, prompt, target.fingerprint, now()],
        )
        .with_context(cannot)?;
        finish(tx, key, target.description).with_context(cannot)
    }

    /// What the decisions in force add up to, per item, for the review page.
    pub fn review_states(output_dir: &Path) -> anyhow::Result<HashMap<String, (ReviewState, Option<i64>)>> {
        let (path, conn) = open_made(output_dir, false)?;
        let decided = load_decisions(&conn, None)
            .with_context(|| format!("cannot read the journal {}", path.display()))?;
        Ok(decided.into_iter().map(|(key, d)| (key, (d.state, d.last))).collect())
    }

    /// The decisions that apply to `item` as this run sees it (its prompt edited or not):
    /// a rejection or an edit made under another fingerprint was carried out already.
    pub(super) fn review_of(&self, key: &str, fingerprint: Option<&str>) -> ReviewState {
        let Some(decided) = self.decisions.get(key) else { return ReviewState::default() };
        let mut state = decided.state.clone();
        if let Some(fingerprint) = fingerprint
            && decided.rejected_under.as_deref() != Some(fingerprint)
        {
            state.rejected = None;
        }
        state
    }
}

/// Counts pages per review state ([`ReviewCounts`]) over the written items.
pub(super) fn review_counts(conn: &Connection) -> rusqlite::Result<ReviewCounts> {
    let decided = load_decisions(conn, None)?;
    let mut counts = ReviewCounts::default();
    let mut stmt = conn.prepare(
        "SELECT i.key, i.fingerprint, (SELECT c.number FROM candidates c WHERE c.key = i.key
            AND c.fingerprint = i.fingerprint AND c.placement = 'page')
         FROM items i WHERE i.state = 'written'",
    )?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        let (key, fingerprint, page): (String, String, Option<u32>) = (r.get(0)?, r.get(1)?, r.get(2)?);
        let Some(d) = decided.get(&key) else {
            counts.undecided += 1;
            continue;
        };
        let under = |at: &Option<String>| at.as_deref() == Some(fingerprint.as_str());
        let slot = if d.state.approved.is_some() {
            &mut counts.approved
        } else if d.state.rejected.is_some() && under(&d.rejected_under) && page == d.state.rejected {
            &mut counts.rejected
        } else if d.state.prompt.is_some() && under(&d.edited_under) {
            &mut counts.edited
        } else if d.state.picked.is_some() && d.state.picked != page {
            &mut counts.picked
        } else {
            &mut counts.undecided
        };
        *slot += 1;
    }
    Ok(counts)
}

fn target(conn: &Connection, key: &str) -> rusqlite::Result<Option<Target>> {
    conn.query_row(
        "SELECT i.description, i.state, i.fingerprint, (SELECT c.number FROM candidates c WHERE c.key = i.key
            AND c.fingerprint = i.fingerprint AND c.placement = 'page')
         FROM items i WHERE i.key = ?1",
        [key],
        |r| Ok(Target { description: r.get(0)?, state: r.get(1)?, fingerprint: r.get(2)?, page: r.get(3)? }),
    )
    .optional()
}

/// Refuses a candidate the page does not have (or one that failed: it has no image).
fn check_candidate(conn: &Connection, key: &str, number: u32) -> anyhow::Result<()> {
    let mut stmt = conn.prepare(
        "SELECT DISTINCT number FROM candidates WHERE key = ?1 AND placement != 'failed' ORDER BY number",
    )?;
    let made: Vec<u32> = stmt.query_map([key], |r| r.get(0))?.collect::<Result<_, _>>()?;
    if made.contains(&number) {
        return Ok(());
    }
    let listed: Vec<String> = made.iter().map(u32::to_string).collect();
    anyhow::bail!(
        "item {key:?} has no candidate {number}; it has {}",
        if listed.is_empty() { "none (its pipeline judges no pages)".to_owned() } else { listed.join(", ") }
    )
}

fn finish(tx: rusqlite::Transaction<'_>, key: &str, description: String) -> rusqlite::Result<Recorded> {
    let decided = load_decisions(&tx, Some(key))?.remove(key).unwrap_or_default();
    tx.commit()?;
    Ok(Recorded { key: key.to_owned(), description, state: decided.state, last: decided.last })
}
