//! The queue: items claimed with `FOR UPDATE SKIP LOCKED` under a lease kept on the database's
//! clock (`now()`), so that the workers' clocks never matter. A worker renews its leases while
//! it works; an item whose lease ran out (its worker died, paused or lost the network) is
//! claimed again by another. Batches share the workers fairly: a claim goes to the batch with
//! the fewest items in work, so a small book is not starved behind a large one.

use std::time::Duration;

use super::Database;

/// States an item settles in; every other item still needs a worker.
pub const SETTLED: [&str; 3] = ["written", "failed", "filtered"];

/// An item a worker claimed.
#[derive(Clone, Debug)]
pub struct Claim {
    /// Its batch.
    pub batch: String,
    /// Its key.
    pub key: String,
}

/// The name a worker goes by in leases: host, process and a random part.
pub fn worker_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}-{}-{:04x}", host.trim(), std::process::id(), fastrand::u16(..))
}

/// Claims one item: pending, or claimed by a worker whose lease ran out.
pub async fn claim(db: &Database, worker: &str, lease: Duration) -> anyhow::Result<Option<Claim>> {
    let lease = lease.as_secs_f64();
    // The batches with work, fewest items in work first (then oldest).
    let batches = db
        .client
        .query(
            "SELECT b.id FROM batches b
             WHERE b.finished_at IS NULL AND b.stop_reason IS NULL AND EXISTS (
                SELECT 1 FROM items i WHERE i.batch_id = b.id
                  AND (i.state = 'pending' OR (i.state = 'claimed' AND i.lease_until < now())))
             ORDER BY (SELECT count(*) FROM items i WHERE i.batch_id = b.id AND i.state = 'claimed'
                         AND i.lease_until >= now()), b.created_at",
            &[],
        )
        .await?;
    for row in batches {
        let batch: String = row.get(0);
        let claimed = db
            .client
            .query_opt(
                "UPDATE items SET state = 'claimed', lease_owner = $2,
                    lease_until = now() + make_interval(secs => $3), updated_at = now()
                 WHERE (batch_id, key) = (
                    SELECT batch_id, key FROM items
                    WHERE batch_id = $1 AND NOT EXISTS (
                        SELECT 1 FROM batches WHERE id = $1 AND stop_reason IS NOT NULL)
                      AND (state = 'pending' OR (state = 'claimed' AND lease_until < now()))
                    ORDER BY seq LIMIT 1 FOR UPDATE SKIP LOCKED)
                 RETURNING key",
                &[&batch, &worker, &lease],
            )
            .await?;
        if let Some(row) = claimed {
            return Ok(Some(Claim { batch, key: row.get(0) }));
        }
    }
    Ok(None)
}

/// Renews every lease the worker holds (items and the book it builds).
pub async fn renew(db: &Database, worker: &str, lease: Duration) -> anyhow::Result<()> {
    let lease = lease.as_secs_f64();
    db.client
        .execute(
            "UPDATE items SET lease_until = now() + make_interval(secs => $2)
             WHERE lease_owner = $1 AND state = 'claimed' AND lease_until >= now()",
            &[&worker, &lease],
        )
        .await?;
    db.client
        .execute(
            "UPDATE batches SET finalizer_until = now() + make_interval(secs => $2)
             WHERE finalizer = $1 AND finished_at IS NULL AND finalizer_until >= now()",
            &[&worker, &lease],
        )
        .await?;
    Ok(())
}

/// How an item ended on this worker, to record once its files are in the store.
#[derive(Clone, Debug)]
pub struct Settlement {
    /// written, failed or filtered.
    pub state: &'static str,
    /// The stage that failed or filtered it.
    pub stage: Option<String>,
    /// Why.
    pub error: Option<String>,
    /// Attempts the failing stage made.
    pub attempts: u32,
}

/// Records how a claimed item ended and gives up its lease, if the lease is still the worker's
/// (otherwise another worker owns the item now, and its word counts). `None` gives the item
/// back to the queue. Returns whether the lease was still the worker's.
pub async fn settle(
    db: &Database,
    claim: &Claim,
    worker: &str,
    settlement: Option<&Settlement>,
) -> anyhow::Result<bool> {
    let (state, stage, error, attempts) = match settlement {
        Some(s) => (s.state, s.stage.as_deref(), s.error.as_deref(), s.attempts as i32),
        None => ("pending", None, None, 0),
    };
    let updated = db
        .client
        .execute(
            "UPDATE items SET state = $4, stage = $5, error = $6, attempts = $7, lease_owner = NULL,
                lease_until = NULL, updated_at = now()
             WHERE batch_id = $1 AND key = $2 AND lease_owner = $3 AND state = 'claimed'",
            &[&claim.batch, &claim.key, &worker, &state, &stage, &error, &attempts],
        )
        .await?;
    if updated == 0 {
        return Ok(false);
    }
    if matches!(state, "written" | "filtered") {
        // Its requests' results are in the store now: nobody needs to poll them again.
        db.client
            .execute(
                "UPDATE submissions SET collected = true, outcome = 'collected'
                 WHERE batch_id = $1 AND key = $2 AND collected = false AND request IS NOT NULL",
                &[&claim.batch, &claim.key],
            )
            .await?;
    }
    super::limiter::release(db, &claim.batch, &claim.key).await?;
    Ok(true)
}

/// Whether the batch `b` is due for its last step: every item settled or, once the batch was
/// stopped, every item in work given back (the rest stay for a later run, as locally).
const DUE: &str = "(NOT EXISTS (SELECT 1 FROM items i WHERE i.batch_id = b.id
                              AND i.state NOT IN ('written', 'failed', 'filtered'))
          OR (b.stop_reason IS NOT NULL AND NOT EXISTS (
                SELECT 1 FROM items i WHERE i.batch_id = b.id AND i.state = 'claimed'
                  AND i.lease_until >= now())))";

/// Takes the batch's last step (the book, the cover, the summary and the report) when it is
/// due and nobody else has it; `false` when it is not time or it is taken. A stopped batch's
/// items whose worker died go back to the queue first, for a later run.
pub async fn claim_finalizer(
    db: &Database,
    batch: &str,
    worker: &str,
    lease: Duration,
) -> anyhow::Result<bool> {
    let lease = lease.as_secs_f64();
    let taken = db
        .client
        .execute(
            &format!(
                "UPDATE batches b SET finalizer = $2, finalizer_until = now() + make_interval(secs => $3)
                 WHERE b.id = $1 AND b.finished_at IS NULL
                   AND (b.finalizer IS NULL OR b.finalizer_until < now()) AND {DUE}"
            ),
            &[&batch, &worker, &lease],
        )
        .await?;
    if taken == 1 {
        db.client
            .execute(
                "UPDATE items SET state = 'pending', lease_owner = NULL, lease_until = NULL, updated_at = now()
                 WHERE batch_id = $1 AND state = 'claimed' AND lease_until < now()",
                &[&batch],
            )
            .await?;
    }
    Ok(taken == 1)
}

/// The batches due for their last step that nobody is taking.
pub async fn ready_to_finish(db: &Database) -> anyhow::Result<Vec<String>> {
    let rows = db
        .client
        .query(
            &format!(
                "SELECT id FROM batches b WHERE finished_at IS NULL
                   AND (finalizer IS NULL OR finalizer_until < now()) AND {DUE}
                 ORDER BY created_at"
            ),
            &[],
        )
        .await?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Stops the batch for every worker, keeping the first reason: none of its items is claimed
/// any more, and once those in work are given back its last step reports it stopped.
pub async fn stop(db: &Database, batch: &str, reason: &str) -> anyhow::Result<()> {
    db.client
        .execute(
            "UPDATE batches SET stop_reason = $2 WHERE id = $1 AND stop_reason IS NULL",
            &[&batch, &reason],
        )
        .await?;
    Ok(())
}

/// Why the batch was stopped, if it was.
pub async fn stop_reason(db: &Database, batch: &str) -> anyhow::Result<Option<String>> {
    let row = db.client.query_one("SELECT stop_reason FROM batches WHERE id = $1", &[&batch]).await?;
    Ok(row.get(0))
}

/// Marks the batch finished with its summary, if the worker still holds its last step.
pub async fn finished(
    db: &Database,
    batch: &str,
    worker: &str,
    summary: &serde_json::Value,
) -> anyhow::Result<bool> {
    let updated = db
        .client
        .execute(
            "UPDATE batches SET finished_at = now(), summary = $3, finalizer = NULL, finalizer_until = NULL
             WHERE id = $1 AND finalizer = $2",
            &[&batch, &worker, &summary],
        )
        .await?;
    Ok(updated == 1)
}
