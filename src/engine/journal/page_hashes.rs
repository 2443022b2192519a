//! The perceptual hashes of a book's pages, one row per candidate a judging stage hashed, so a
//! page is compared with the pages of earlier runs as well as this one's. A judging stage opens
//! the table itself (it runs on the CPU pool, without the engine's journal handle): a second
//! connection to the same WAL file, which SQLite serialises with the engine's.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use rusqlite::{Connection, params};

use super::JOURNAL_FILE;
use super::schema::open_checked;

/// The table: per judging stage and item, every candidate's hash with the stage's word on it
/// (which candidate is the page follows from `acceptable` and `score`, as the engine picks),
/// and the item it was found to repeat, if any.
pub(super) const PAGE_HASHES_TABLE: &str = "CREATE TABLE page_hashes (
    stage TEXT NOT NULL, key TEXT NOT NULL, number INTEGER NOT NULL, seq INTEGER NOT NULL,
    hash TEXT NOT NULL, acceptable INTEGER NOT NULL, score REAL NOT NULL, duplicate_of TEXT,
    suits TEXT NOT NULL, difficulty REAL NOT NULL,
    PRIMARY KEY (stage, key, number))";

/// One hashed candidate.
#[derive(Clone, Debug, PartialEq)]
pub struct PageHashRow {
    /// The item key.
    pub key: String,
    /// Which candidate of the page.
    pub number: u32,
    /// The item's place in the book.
    pub seq: u64,
    /// The hash, as its kind writes it.
    pub hash: String,
    /// Whether the stage found the candidate printable.
    pub acceptable: bool,
    /// The stage's score of it (higher is better).
    pub score: f64,
    /// The item whose page this one repeats, when the stage found one.
    pub duplicate_of: Option<String>,
    /// The audience the page suits.
    pub suits: String,
    /// Its difficulty score.
    pub difficulty: f64,
}

/// A book's difficulty spread: its pages (each item's page candidate) per audience they suit,
/// and their difficulty scores.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct DifficultySpread {
    /// Pages per audience.
    pub suits: std::collections::BTreeMap<String, u64>,
    /// The lowest, median and highest score.
    pub scores: Option<(f64, f64, f64)>,
}

impl DifficultySpread {
    /// "score 12-40-71 (lowest-median-highest); suits: 3 toddler, 20 kids, 9 teens", or nothing
    /// when no page was judged: the line `status`, the report and the review page show.
    pub fn describe(&self) -> Option<String> {
        let (low, median, high) = self.scores?;
        let order = ["toddler", "kids", "teens", "adults"];
        let suits: Vec<String> =
            order.iter().filter_map(|a| self.suits.get(*a).map(|n| format!("{n} {a}"))).collect();
        Some(format!(
            "score {low:.0}-{median:.0}-{high:.0} (lowest-median-highest); suits: {}",
            suits.join(", ")
        ))
    }
}

impl PageHashRow {
    /// Whether this candidate is the item's page rather than `other`: the better one (acceptable
    /// first, then the score), the earlier among equals, as the engine places candidates.
    pub fn beats(&self, other: &PageHashRow) -> bool {
        (self.acceptable, self.score) > (other.acceptable, other.score)
    }
}

/// The page hashes of one batch's journal.
pub struct PageHashes {
    conn: Connection,
    path: PathBuf,
}

impl PageHashes {
    /// The table in `output_dir`'s journal, or `None` when the batch keeps no journal there.
    /// The run opened (and upgraded) the journal before any page reaches a stage.
    pub fn open(output_dir: &Path) -> anyhow::Result<Option<PageHashes>> {
        let path = output_dir.join(JOURNAL_FILE);
        if !path.exists() {
            return Ok(None);
        }
        let conn = open_checked(&path, false)?;
        Ok(Some(PageHashes { conn, path }))
    }

    /// Every candidate `stage` hashed, in book order.
    pub fn of_stage(&self, stage: &str) -> anyhow::Result<Vec<PageHashRow>> {
        let mut statement = self.conn.prepare(
            "SELECT key, number, seq, hash, acceptable, score, duplicate_of, suits, difficulty FROM page_hashes
             WHERE stage = ?1 ORDER BY seq, number",
        )?;
        let rows = statement.query_map([stage], |r| {
            Ok(PageHashRow {
                key: r.get(0)?,
                number: r.get(1)?,
                seq: r.get::<_, i64>(2)? as u64,
                hash: r.get(3)?,
                acceptable: r.get(4)?,
                score: r.get(5)?,
                duplicate_of: r.get(6)?,
                suits: r.get(7)?,
                difficulty: r.get(8)?,
            })
        })?;
        rows.collect::<rusqlite::Result<_>>()
            .with_context(|| format!("cannot read the page hashes of {}", self.path.display()))
    }

    /// Records a candidate's hash. Candidates of the item numbered from `row.number` up go first:
    /// they belong to an older version of the page (an edited prompt starts again from 0).
    pub fn record(&self, stage: &str, row: &PageHashRow) -> anyhow::Result<()> {
        let write = || -> rusqlite::Result<()> {
            let tx = self.conn.unchecked_transaction()?;
            tx.execute(
                "DELETE FROM page_hashes WHERE stage = ?1 AND key = ?2 AND number >= ?3",
                params![stage, row.key, row.number],
            )?;
            tx.execute(
                "INSERT INTO page_hashes
                    (stage, key, number, seq, hash, acceptable, score, duplicate_of, suits, difficulty)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
                params![
                    stage,
                    row.key,
                    row.number,
                    row.seq as i64,
                    row.hash,
                    row.acceptable,
                    row.score,
                    row.duplicate_of,
                    row.suits,
                    row.difficulty
                ],
            )?;
            tx.commit()
        };
        write().with_context(|| format!("cannot write to the journal {}", self.path.display()))
    }
}

/// The difficulty spread of the book in `output_dir`, over every judging stage's pages; empty
/// when no page was judged.
pub fn difficulty_spread(output_dir: &Path) -> anyhow::Result<DifficultySpread> {
    let Some(store) = PageHashes::open(output_dir)? else { return Ok(DifficultySpread::default()) };
    let stages: Vec<String> = store
        .conn
        .prepare("SELECT DISTINCT stage FROM page_hashes")?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    let mut pages: std::collections::BTreeMap<(String, String), PageHashRow> = Default::default();
    for stage in stages {
        for row in store.of_stage(&stage)? {
            let id = (stage.clone(), row.key.clone());
            if pages.get(&id).is_none_or(|page| row.beats(page)) {
                pages.insert(id, row);
            }
        }
    }
    let mut spread = DifficultySpread::default();
    let mut scores: Vec<f64> = Vec::with_capacity(pages.len());
    for page in pages.into_values() {
        *spread.suits.entry(page.suits).or_default() += 1;
        scores.push(page.difficulty);
    }
    scores.sort_by(f64::total_cmp);
    if let (Some(&low), Some(&high)) = (scores.first(), scores.last()) {
        spread.scores = Some((low, scores[scores.len() / 2], high));
    }
    Ok(spread)
}
