//! A journal file written from records kept elsewhere (a cluster's database), so the review
//! page, which reads a batch's journal, reads a cluster batch as it reads a local one.

use anyhow::Context as _;
use rusqlite::params;

use super::schema::open_checked;
use super::{ItemRecord, JOURNAL_FILE, Journal, now};

/// One paid submission as a snapshot keeps it.
pub struct SubmissionRecord {
    /// The item's key.
    pub key: String,
    /// The paid stage.
    pub stage: String,
    /// What the stage recorded to collect it (`null` while its answer never came).
    pub request: String,
    /// What it cost.
    pub cost_usd: f64,
    /// Whether it was collected or settled.
    pub collected: bool,
    /// How it ended, when it did.
    pub outcome: Option<String>,
}

impl Journal {
    /// Writes `output_dir/journal.sqlite` holding `items` and `submissions` (a folder that
    /// already has a journal is refused: this never overwrites a local batch's record).
    pub fn write_snapshot(
        output_dir: &std::path::Path,
        items: &[ItemRecord],
        submissions: &[SubmissionRecord],
    ) -> anyhow::Result<()> {
        let path = output_dir.join(JOURNAL_FILE);
        anyhow::ensure!(!path.exists(), "{} exists already", path.display());
        let mut conn = open_checked(&path, true)?;
        let tx = conn.transaction()?;
        let at = now();
        for item in items {
            tx.execute(
                "INSERT INTO items (key, seq, description, state, stage, error, attempts, fingerprint, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, '', ?8)",
                params![
                    item.key,
                    item.seq as i64,
                    item.description,
                    item.state,
                    item.stage,
                    item.error,
                    item.attempts,
                    at
                ],
            )?;
        }
        for s in submissions {
            tx.execute(
                "INSERT INTO submissions (key, stage, request, cost_usd, collected, outcome, submitted_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![s.key, s.stage, s.request, s.cost_usd, s.collected, s.outcome, at],
            )?;
        }
        tx.commit().with_context(|| format!("cannot write {}", path.display()))
    }
}
