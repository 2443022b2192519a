//! The cluster database's schema, created and upgraded by inkflow itself and versioned like
//! the SQLite journal's: an older build refuses a newer schema.

use anyhow::Context as _;

use super::Database;

/// The schema this build writes.
const SCHEMA_VERSION: i32 = 2;
/// Serialises schema changes between workers starting at once (any constant of our own).
const MIGRATION_LOCK: i64 = 0x494E_4B46_0001;

/// Version 1: batches with the files their pipeline names, items with leases, every paid
/// submission, what sinks stored, and the fal slots of each account.
const V1: &str = "
CREATE TABLE batches (
    id TEXT PRIMARY KEY, output TEXT NOT NULL, pipeline_file TEXT NOT NULL,
    pipeline_text TEXT NOT NULL, overrides JSONB NOT NULL, fingerprint TEXT NOT NULL,
    retry_failed BOOLEAN NOT NULL DEFAULT false, revision BIGINT NOT NULL DEFAULT 0, committed_usd FLOAT8 NOT NULL DEFAULT 0,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now(), finalizer TEXT, finalizer_until TIMESTAMPTZ,
    finished_at TIMESTAMPTZ, summary JSONB);
CREATE TABLE batch_files (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE, path TEXT NOT NULL,
    content BYTEA NOT NULL, PRIMARY KEY (batch_id, path));
CREATE TABLE items (
    batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE, key TEXT NOT NULL,
    seq BIGINT NOT NULL, description TEXT NOT NULL, fingerprint TEXT NOT NULL,
    state TEXT NOT NULL, stage TEXT, error TEXT, attempts INTEGER NOT NULL DEFAULT 0,
    lease_owner TEXT, lease_until TIMESTAMPTZ, updated_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (batch_id, key));
CREATE INDEX items_by_state ON items (batch_id, state, seq);
CREATE TABLE submissions (
    id BIGSERIAL PRIMARY KEY, batch_id TEXT NOT NULL, key TEXT NOT NULL, stage TEXT NOT NULL,
    request JSONB, cost_usd FLOAT8 NOT NULL, collected BOOLEAN NOT NULL DEFAULT false,
    outcome TEXT, worker TEXT NOT NULL, submitted_at TIMESTAMPTZ NOT NULL DEFAULT now());
CREATE INDEX submissions_by_item ON submissions (batch_id, key);
CREATE TABLE fal_slots (
    account TEXT NOT NULL, slot INTEGER NOT NULL, batch_id TEXT, item_key TEXT,
    PRIMARY KEY (account, slot));
";

/// Version 2: why a batch was stopped for every worker (its `max_cost_usd` reached, fal refusing
/// the key), as a local run stops; the workers then take none of its items.
const V2: &str = "ALTER TABLE batches ADD COLUMN stop_reason TEXT";

/// Creates the schema or upgrades it to [`SCHEMA_VERSION`], under an advisory lock so that
/// workers starting together do it once.
pub(super) async fn upgrade(db: &mut Database) -> anyhow::Result<()> {
    let client = &db.client;
    client.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await?;
    let result = async {
        client
            .batch_execute("CREATE TABLE IF NOT EXISTS inkflow_schema (version INTEGER NOT NULL)")
            .await?;
        let version: Option<i32> = client
            .query_opt("SELECT max(version) FROM inkflow_schema", &[])
            .await?
            .and_then(|row| row.get(0));
        let version = version.unwrap_or(0);
        anyhow::ensure!(
            version <= SCHEMA_VERSION,
            "the cluster database was set up by a newer inkflow (schema {version}, this one writes {SCHEMA_VERSION})"
        );
        if version < 1 {
            client
                .batch_execute(&format!("BEGIN; {V1}; INSERT INTO inkflow_schema VALUES (1); COMMIT;"))
                .await
                .context("cannot create the cluster's tables")?;
        }
        if version < 2 {
            client
                .batch_execute(&format!("BEGIN; {V2}; INSERT INTO inkflow_schema VALUES (2); COMMIT;"))
                .await
                .context("cannot upgrade the cluster's tables to schema 2")?;
        }
        Ok(())
    }
    .await;
    client.execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK]).await?;
    result
}
