//! A cluster batch as `inkflow status --cluster` and `inkflow report --cluster` read it: the
//! same [`Status`] and [`ItemRecord`]s a local journal gives, from the database.

use super::Database;
use super::registration::batch_id;
use crate::engine::journal::{ItemRecord, Status, SubmissionRecord};

/// The status of the batch writing to `output`, and its items in book order.
pub async fn read(db: &Database, output: &str) -> anyhow::Result<(Status, Vec<ItemRecord>)> {
    let id = batch_id(output);
    let client = &db.client;
    let known = client.query_opt("SELECT 1 FROM batches WHERE id = $1", &[&id]).await?;
    anyhow::ensure!(known.is_some(), "the cluster has no batch writing to {output}");
    let states = client
        .query("SELECT state, count(*) FROM items WHERE batch_id = $1 GROUP BY 1 ORDER BY 1", &[&id])
        .await?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
        .collect();
    let money = client
        .query_one(
            "SELECT COALESCE(sum(cost_usd), 0)::FLOAT8,
                    count(*) FILTER (WHERE collected = false AND request IS NOT NULL),
                    count(*) FILTER (WHERE collected = false AND request IS NULL)
             FROM submissions WHERE batch_id = $1",
            &[&id],
        )
        .await?;
    let settled_submissions = client
        .query(
            "SELECT outcome, count(*) FROM submissions WHERE batch_id = $1 AND collected
               AND outcome IN ('failed', 'filtered', 'cancelled') GROUP BY 1 ORDER BY 1",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| (row.get::<_, String>(0), row.get::<_, i64>(1) as u64))
        .collect();
    let status = Status {
        states,
        spent_usd: money.get(0),
        unfinished_submissions: money.get::<_, i64>(1) as u64,
        uncertain_submissions: money.get::<_, i64>(2) as u64,
        settled_submissions,
        stopped: super::queue::stop_reason(db, &id).await?,
        // Review decisions (`inkflow review`) are made on a local output folder's journal.
        review: Default::default(),
    };
    let items = client
        .query(
            "SELECT i.key, i.seq, i.description, i.state, i.stage, i.error, i.attempts,
                    COALESCE((SELECT sum(cost_usd) FROM submissions s WHERE s.batch_id = i.batch_id
                              AND s.key = i.key), 0)::FLOAT8
             FROM items i WHERE i.batch_id = $1 ORDER BY i.seq",
            &[&id],
        )
        .await?
        .iter()
        .map(|row| ItemRecord {
            key: row.get(0),
            seq: row.get::<_, i64>(1) as u64,
            description: row.get(2),
            state: row.get(3),
            stage: row.get(4),
            error: row.get(5),
            attempts: row.get::<_, i32>(6).max(0) as u32,
            cost_usd: row.get(7),
        })
        .collect();
    Ok((status, items))
}

/// Every paid submission of the batch writing to `output`, for the review page's snapshot.
pub async fn submissions(db: &Database, output: &str) -> anyhow::Result<Vec<SubmissionRecord>> {
    let rows = db
        .client
        .query(
            "SELECT key, stage, COALESCE(request::TEXT, 'null'), cost_usd, collected, outcome
             FROM submissions WHERE batch_id = $1 ORDER BY id",
            &[&batch_id(output)],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|row| SubmissionRecord {
            key: row.get(0),
            stage: row.get(1),
            request: row.get(2),
            cost_usd: row.get(3),
            collected: row.get(4),
            outcome: row.get(5),
        })
        .collect())
}

/// Writes `dir/journal.sqlite` from the database's records of the batch writing to `output`:
/// the review page reads a journal, and this one reads a cluster batch as a local one.
pub async fn write_journal_snapshot(
    db: &Database,
    output: &str,
    dir: &std::path::Path,
) -> anyhow::Result<()> {
    let (_, items) = read(db, output).await?;
    let submissions = submissions(db, output).await?;
    crate::engine::journal::Journal::write_snapshot(dir, &items, &submissions)
}
