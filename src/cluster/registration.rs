//! Registering a batch: its pipeline, the files the pipeline names (prompts, deny lists,
//! fonts, references, plugins), its items with today's fingerprints and its output, so that a
//! worker on another machine needs only its keys, not a copy of the project. Registering the
//! same output again attaches to the batch: items whose fingerprint changed run again, and
//! with `--retry-failed` so do failed ones.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use sha2::{Digest as _, Sha256};

use super::Database;
use crate::engine::journal::{fingerprint, item_fingerprint};
use crate::engine::pipeline::Pipeline;
use crate::engine::runtime::Batch;

/// The id of the batch writing to `output`: one output, one batch, as locally.
pub fn batch_id(output: &str) -> String {
    let output = output.trim_end_matches('/');
    hex::encode(&Sha256::digest(format!("inkflow batch\n{output}").as_bytes())[..8])
}

/// A batch as `run --cluster` hands it to the workers.
pub struct Registration {
    /// `s3://BUCKET/PREFIX`.
    pub output: String,
    /// The pipeline file's name (workers write it beside the files, as in the project).
    pub pipeline_file: String,
    /// Its text as written (workers interpolate `${VAR}` from their own environment).
    pub pipeline_text: String,
    /// `--set` overrides.
    pub overrides: Vec<String>,
    /// The files the pipeline names, by path under the pipeline's folder.
    pub files: Vec<(String, Vec<u8>)>,
    /// `--retry-failed`.
    pub retry_failed: bool,
}

/// The files a checked pipeline reads, under its folder: every path option's file (a folder's
/// files, a pattern's matches) and its plugins. A path outside the folder is refused, naming
/// it: a worker could not put it at the same place.
pub fn named_files(pipeline: &Pipeline, plugins: &[PathBuf]) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let folder = pipeline.file.parent().unwrap_or(Path::new(".")).canonicalize()?;
    let mut paths = Vec::new();
    for component in &pipeline.components {
        collect_paths(&component.options, &mut paths);
    }
    paths.extend(plugins.iter().cloned());
    let mut files = Vec::new();
    for path in paths {
        let matches: Vec<PathBuf> = if path.exists() {
            vec![path]
        } else {
            glob::glob(&path.to_string_lossy()).map(|m| m.flatten().collect()).unwrap_or_default()
        };
        for found in matches {
            let found = found.canonicalize()?;
            found.strip_prefix(&folder).map_err(|_| {
                anyhow::anyhow!(
                    "--cluster carries the files a pipeline names to the workers, from the pipeline's folder \
                     {}: {} is outside it; move it there",
                    folder.display(),
                    found.display()
                )
            })?;
            let listed =
                if found.is_dir() { super::store::files_under(&found)? } else { vec![found.clone()] };
            for file in listed {
                let name = super::store::relative_name(&folder, &file);
                let bytes = std::fs::read(&file).with_context(|| format!("reading {}", file.display()))?;
                files.push((name, bytes));
            }
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    files.dedup_by(|a, b| a.0 == b.0);
    Ok(files)
}

/// Every string option that names an existing path (the checker made them absolute).
fn collect_paths(value: &serde_json::Value, into: &mut Vec<PathBuf>) {
    match value {
        serde_json::Value::String(text) if Path::new(text).is_absolute() => {
            let path = PathBuf::from(text);
            let is_pattern = text.contains(['*', '?', '[']);
            if path.exists() || is_pattern {
                into.push(path);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_paths(v, into)),
        serde_json::Value::Object(fields) => fields.values().for_each(|v| collect_paths(v, into)),
        _ => {}
    }
}

/// Registers (or attaches to) the batch and returns its id.
pub async fn register(db: &Database, registration: &Registration, batch: &Batch) -> anyhow::Result<String> {
    let id = batch_id(&registration.output);
    let pipeline_fingerprint = fingerprint(batch.pipeline());
    let overrides = serde_json::to_value(&registration.overrides)?;
    let client = &db.client;
    // A stopped batch run again goes on where it stopped, as a local run does.
    let was_stopped = client
        .query_opt("SELECT 1 FROM batches WHERE id = $1 AND stop_reason IS NOT NULL", &[&id])
        .await?
        .is_some();
    client
        .execute(
            "INSERT INTO batches (id, output, pipeline_file, pipeline_text, overrides, fingerprint, retry_failed)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (id) DO UPDATE SET pipeline_file = $3, pipeline_text = $4, overrides = $5,
                fingerprint = $6, retry_failed = $7, revision = batches.revision + 1, stop_reason = NULL",
            &[
                &id,
                &registration.output,
                &registration.pipeline_file,
                &registration.pipeline_text,
                &overrides,
                &pipeline_fingerprint,
                &registration.retry_failed,
            ],
        )
        .await
        .context("cannot register the batch")?;
    client.execute("DELETE FROM batch_files WHERE batch_id = $1", &[&id]).await?;
    for (path, content) in &registration.files {
        client
            .execute(
                "INSERT INTO batch_files (batch_id, path, content) VALUES ($1, $2, $3)",
                &[&id, path, content],
            )
            .await?;
    }
    let mut reopened = 0u64;
    for item in batch.items() {
        let item_fp = item_fingerprint(&pipeline_fingerprint, &item);
        // New, changed (its outputs are stale) or, with --retry-failed, failed: pending again.
        reopened += client
            .execute(
                "INSERT INTO items (batch_id, key, seq, description, fingerprint, state)
                 VALUES ($1, $2, $3, $4, $5, 'pending')
                 ON CONFLICT (batch_id, key) DO UPDATE SET seq = $3, description = $4, fingerprint = $5,
                    state = 'pending', stage = NULL, error = NULL, attempts = 0, updated_at = now()
                 WHERE items.state <> 'claimed'
                   AND (items.fingerprint <> $5 OR ($6 AND items.state = 'failed'))",
                &[
                    &id,
                    &item.key,
                    &(item.seq as i64),
                    &item.prompt.description,
                    &item_fp,
                    &registration.retry_failed,
                ],
            )
            .await?;
    }
    if registration.retry_failed {
        // Answers that never arrived were reported; --retry-failed is the word to submit again.
        client
            .execute(
                "UPDATE submissions s SET collected = true, outcome = 'abandoned'
                 FROM items i WHERE s.batch_id = $1 AND i.batch_id = $1 AND i.key = s.key
                   AND i.state = 'pending' AND s.collected = false AND s.request IS NULL",
                &[&id],
            )
            .await?;
    }
    if reopened > 0 || was_stopped {
        client.execute("UPDATE batches SET finished_at = NULL, summary = NULL WHERE id = $1", &[&id]).await?;
    }
    Ok(id)
}
