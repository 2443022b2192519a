//! One fal `concurrency` per account, across every worker and every batch: a table of slots
//! per account (the key's hash, never the key). An item takes a slot before its "submitting"
//! record and gives it back as soon as fal has answered its request (before the images are
//! downloaded: the download is free and fal no longer runs anything for it), or when its
//! request was settled or never sent. A slot belongs to the item, not the worker: when a
//! worker dies with a request in flight, the slot stays taken until the worker that takes the
//! item over collects it, so the account never has more requests in flight than its limit.
//! A release is announced with NOTIFY, which wakes the items waiting for a slot in every
//! worker at once; a slow look every [`SLOT_POLL`] catches slots freed silently (an item
//! whose worker died and whose lease ran out).

use std::time::Duration;

use sha2::{Digest as _, Sha256};

use super::Database;
use super::db::SLOT_FREED;

/// How long a waiting submit sleeps between looks at the slots when no release wakes it
/// (jittered, so waiting workers do not ask in step).
const SLOT_POLL: Duration = Duration::from_millis(500);

/// The name an account goes by in the database: a hash of its key, so two workers with the
/// same key share a limit and the key itself is never stored.
pub fn account_of(key: &str) -> String {
    hex::encode(&Sha256::digest(format!("inkflow fal account\n{key}").as_bytes())[..12])
}

/// The fal key of this process's environment (the names the fal stage reads), if any.
pub fn account_from_env() -> Option<String> {
    ["FAL_KEY", "FAL_API_KEY"].iter().find_map(|name| std::env::var(name).ok()).map(|key| account_of(&key))
}

/// The slots of one account.
#[derive(Clone, Debug)]
pub struct Limit {
    /// The account's hash.
    pub account: String,
    /// Requests it may have in flight.
    pub concurrency: u32,
}

/// Takes a slot of `limit` for the item, waiting while every slot is taken; an item that
/// holds one already keeps it. Free slots are those held by no item, or by an item no longer
/// being worked on (settled, or given back to the queue).
pub async fn acquire(db: &Database, limit: &Limit, batch: &str, key: &str) -> anyhow::Result<()> {
    let concurrency = limit.concurrency.max(1) as i32;
    db.client
        .execute(
            "INSERT INTO fal_slots (account, slot) SELECT $1, generate_series(0, $2 - 1) ON CONFLICT DO NOTHING",
            &[&limit.account, &concurrency],
        )
        .await?;
    loop {
        // Made before looking, so a release announced while the look runs still wakes it.
        let released = db.slot_freed.notified();
        let taken = db
            .client
            .query_opt(
                "WITH held AS (
                    SELECT slot FROM fal_slots WHERE account = $1 AND batch_id = $3 AND item_key = $4),
                 free AS (
                    SELECT f.account, f.slot FROM fal_slots f
                    WHERE f.account = $1 AND f.slot < $2 AND NOT EXISTS (SELECT 1 FROM held)
                      AND (f.item_key IS NULL OR NOT EXISTS (
                        SELECT 1 FROM items i WHERE i.batch_id = f.batch_id AND i.key = f.item_key
                          AND i.state = 'claimed'))
                    ORDER BY f.slot LIMIT 1 FOR UPDATE SKIP LOCKED),
                 took AS (
                    UPDATE fal_slots s SET batch_id = $3, item_key = $4 FROM free
                    WHERE s.account = free.account AND s.slot = free.slot RETURNING s.slot)
                 SELECT slot FROM held UNION ALL SELECT slot FROM took",
                &[&limit.account, &concurrency, &batch, &key],
            )
            .await?;
        if taken.is_some() {
            return Ok(());
        }
        let jitter = Duration::from_millis(fastrand::u64(0..SLOT_POLL.as_millis() as u64 / 4));
        tokio::select! {
            () = released => {}
            () = tokio::time::sleep(SLOT_POLL + jitter) => {}
        }
    }
}

/// Gives back whatever slot the item holds, and announces it to the items waiting for one.
pub async fn release(db: &Database, batch: &str, key: &str) -> anyhow::Result<()> {
    db.client
        .execute(
            &format!(
                "WITH freed AS (
                    UPDATE fal_slots SET batch_id = NULL, item_key = NULL WHERE batch_id = $1 AND item_key = $2
                    RETURNING account)
                 SELECT pg_notify('{SLOT_FREED}', account) FROM freed"
            ),
            &[&batch, &key],
        )
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::account_of;

    #[test]
    fn an_account_is_named_by_a_hash_that_does_not_hold_the_key() {
        let key = "abc123:secret-part";
        let account = account_of(key);
        assert_eq!(account, account_of(key));
        assert_ne!(account, account_of("another-key"));
        assert!(!account.contains("secret") && !account.contains("abc123"));
    }
}
