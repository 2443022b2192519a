//! Generated originals, cached by what was asked for (model + input JSON), so re-running a
//! batch with a new threshold, page size or sink costs nothing and needs no network.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context as _;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::atomic_file::write_atomically;

/// The raw cache's folder under an output directory.
const RAW_DIR: &str = "raw";

/// A folder of `<sha256>.bin` originals, each with a `<sha256>.json` of what the service said.
#[derive(Clone)]
pub struct RawCache {
    dir: PathBuf,
    /// The same output kept elsewhere, read on a local miss (see [`SharedOutput`]).
    shared: Option<Arc<dyn SharedOutput>>,
}

/// An output folder kept away from this machine: a cluster batch's store, where each worker
/// copies its item's files, this cache's entries among them. A worker runs each item in an
/// empty scratch folder, so without reading through to the store a rerun whose options change
/// every item but not what fal is asked (a threshold, a page name) would pay for every page
/// again.
#[async_trait::async_trait]
pub trait SharedOutput: Send + Sync {
    /// The file at `relative` (`/`-separated, under the output), or `None` when there is none.
    async fn read(&self, relative: &str) -> anyhow::Result<Option<Vec<u8>>>;
}

/// A cached original and its metadata.
#[derive(Clone, Debug)]
pub struct CachedOriginal {
    /// The bytes as downloaded.
    pub bytes: Vec<u8>,
    /// What the service said about it (seed, request id, timings...).
    pub meta: Value,
}

/// Size of the cache, for `inkflow cache stats`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Cached originals.
    pub entries: u64,
    /// Bytes on disk, metadata included.
    pub bytes: u64,
}

impl RawCache {
    /// The cache of an output directory (`OUTPUT/cache/raw`).
    pub fn in_output(output_dir: &Path) -> Self {
        RawCache { dir: output_dir.join(super::output_path::CACHE_DIR).join(RAW_DIR), shared: None }
    }

    /// This cache, reading an entry it lacks from `shared` (and keeping it here).
    pub fn reading_through(self, shared: Arc<dyn SharedOutput>) -> Self {
        RawCache { shared: Some(shared), ..self }
    }

    /// The key of a request: the SHA-256 of the model and its input with sorted keys.
    pub fn key(model: &str, input: &Value) -> String {
        let mut hasher = Sha256::new();
        hasher.update(model.as_bytes());
        hasher.update([0]);
        // serde_json's maps are sorted, so equal inputs serialize equally.
        hasher.update(input.to_string().as_bytes());
        hex::encode(hasher.finalize())
    }

    /// The file holding the original of a key (`<sha256>.bin`), for the metadata that points
    /// at a kept original.
    pub fn file(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.bin"))
    }

    /// The original for a key, if cached and readable here or, failing that, in the shared
    /// output. An error means the shared output could not say: the caller must not pay for
    /// what may be there.
    pub async fn get(&self, key: &str) -> anyhow::Result<Option<CachedOriginal>> {
        if let Some(local) = self.get_local(key) {
            return Ok(Some(local));
        }
        let Some(shared) = &self.shared else { return Ok(None) };
        let stored = |file: String| async move {
            let relative = Self::stored_name(&file);
            shared.read(&relative).await.with_context(|| format!("cannot read the raw cache's {relative}"))
        };
        let Some(bytes) = stored(format!("{key}.bin")).await? else { return Ok(None) };
        let meta = stored(format!("{key}.json")).await?.unwrap_or_default();
        let meta = serde_json::from_slice(&meta).unwrap_or(Value::Null);
        // Kept for the rest of the round: an item's other images look their request up again.
        if let Err(e) = self.put(key, &bytes, &meta) {
            tracing::warn!("could not keep the stored original {key} here: {e:#}");
        }
        Ok(Some(CachedOriginal { bytes, meta }))
    }

    /// The name of one of the cache's files under an output, as a store holds it
    /// (`cache/raw/FILE`, `/`-separated).
    pub fn stored_name(file: &str) -> String {
        format!("{}/{RAW_DIR}/{file}", super::output_path::CACHE_DIR)
    }

    fn get_local(&self, key: &str) -> Option<CachedOriginal> {
        let bytes = std::fs::read(self.file(key)).ok()?;
        let meta = std::fs::read(self.dir.join(format!("{key}.json")))
            .ok()
            .and_then(|m| serde_json::from_slice(&m).ok())
            .unwrap_or(Value::Null);
        Some(CachedOriginal { bytes, meta })
    }

    /// Stores an original; the metadata goes first and the bytes last, each written to a temp
    /// name and renamed, so a crash never leaves an entry that looks complete but is not.
    pub fn put(&self, key: &str, bytes: &[u8], meta: &Value) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)
            .with_context(|| format!("cannot create {}", self.dir.display()))?;
        write_atomically(&self.dir.join(format!("{key}.json")), meta.to_string().as_bytes())?;
        write_atomically(&self.file(key), bytes)
    }

    /// How much is cached.
    pub fn stats(&self) -> CacheStats {
        let mut stats = CacheStats::default();
        for (path, meta) in self.entries() {
            stats.bytes += meta.len();
            if path.extension().is_some_and(|e| e == "bin") {
                stats.entries += 1;
            }
        }
        stats
    }

    /// Removes entries not used for `older_than` (all of them with zero); returns what went.
    pub fn prune(&self, older_than: Duration) -> anyhow::Result<CacheStats> {
        let cutoff = SystemTime::now().checked_sub(older_than).unwrap_or(SystemTime::UNIX_EPOCH);
        let mut removed = CacheStats::default();
        for (path, meta) in self.entries() {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if older_than.is_zero() || modified < cutoff {
                std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
                removed.bytes += meta.len();
                if path.extension().is_some_and(|e| e == "bin") {
                    removed.entries += 1;
                }
            }
        }
        Ok(removed)
    }

    fn entries(&self) -> Vec<(PathBuf, std::fs::Metadata)> {
        let Ok(read) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        read.flatten()
            .filter_map(|e| Some((e.path(), e.metadata().ok()?)))
            .filter(|(_, m)| m.is_file())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_ignore_field_order_and_differ_by_model() {
        let a = RawCache::key("fal-ai/flux/dev", &json!({"prompt": "cat", "seed": 1}));
        let b = RawCache::key(
            "fal-ai/flux/dev",
            &serde_json::from_str(r#"{"seed": 1, "prompt": "cat"}"#).unwrap(),
        );
        let c = RawCache::key("fal-ai/flux/schnell", &json!({"prompt": "cat", "seed": 1}));
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[tokio::test]
    async fn put_get_stats_prune() {
        let dir = tempfile::tempdir().unwrap();
        let cache = RawCache::in_output(dir.path());
        assert!(cache.get("k").await.unwrap().is_none());
        cache.put("k", b"png bytes", &json!({"seed": 7})).unwrap();
        let got = cache.get("k").await.unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), got.meta["seed"].as_u64()), (&b"png bytes"[..], Some(7)));
        assert_eq!(cache.stats().entries, 1);
        assert_eq!(cache.prune(Duration::from_secs(3600)).unwrap().entries, 0);
        assert_eq!(cache.prune(Duration::ZERO).unwrap().entries, 1);
        assert!(cache.get("k").await.unwrap().is_none());
        assert_eq!(cache.stats(), CacheStats::default());
    }

    /// Another output folder, standing where a batch's store would.
    struct Folder(PathBuf);

    #[async_trait::async_trait]
    impl SharedOutput for Folder {
        async fn read(&self, relative: &str) -> anyhow::Result<Option<Vec<u8>>> {
            match std::fs::read(self.0.join(relative)) {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e.into()),
            }
        }
    }

    #[tokio::test]
    async fn a_miss_reads_the_shared_output_and_keeps_what_it_found() {
        let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        RawCache::in_output(there.path()).put("k", b"png bytes", &json!({"seed": 7})).unwrap();
        let shared = Arc::new(Folder(there.path().to_owned()));
        let cache = RawCache::in_output(here.path()).reading_through(shared);
        assert!(cache.get("other").await.unwrap().is_none());
        let got = cache.get("k").await.unwrap().unwrap();
        assert_eq!((got.bytes.as_slice(), got.meta["seed"].as_u64()), (&b"png bytes"[..], Some(7)));
        let kept = RawCache::in_output(here.path()).get("k").await.unwrap();
        assert!(kept.is_some_and(|k| k.meta["seed"] == 7), "kept here for the round");
    }

    #[tokio::test]
    async fn a_shared_output_that_cannot_say_is_an_error_not_a_miss() {
        let (here, there) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        // A folder where the original should be: reading it fails, it is not missing.
        std::fs::create_dir_all(there.path().join(RawCache::stored_name("k.bin"))).unwrap();
        let shared = Arc::new(Folder(there.path().to_owned()));
        let cache = RawCache::in_output(here.path()).reading_through(shared);
        let error = cache.get("k").await.unwrap_err();
        assert!(format!("{error:#}").contains("cache/raw/k.bin"), "{error:#}");
    }
}
