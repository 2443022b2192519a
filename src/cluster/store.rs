//! A cluster batch's output folder: an S3 or R2 prefix, reached through `object_store` and
//! configured from the standard AWS environment of each process (`AWS_ENDPOINT_URL`,
//! `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_ALLOW_HTTP` for loopback).
//! Workers write each item's files in a scratch folder and copy them here; the batch's last
//! step copies everything back down to build the book.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context as _;
use futures::TryStreamExt as _;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

use crate::engine::raw_cache::{RawCache, SharedOutput};

/// Where a batch's output lives: `s3://BUCKET/PREFIX`.
#[derive(Clone)]
pub struct OutputStore {
    store: Arc<dyn ObjectStore>,
    prefix: String,
    url: String,
}

/// The bucket and prefix of an `s3://` (or `r2://`) output, or why `output` is not one.
pub fn parse_output(output: &str) -> anyhow::Result<(String, String)> {
    let rest = output.strip_prefix("s3://").or_else(|| output.strip_prefix("r2://")).with_context(|| {
        format!(
            "--cluster needs --output s3://BUCKET/PREFIX (or r2://): workers on other machines cannot \
             reach the local folder {output}"
        )
    })?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    anyhow::ensure!(!bucket.is_empty(), "--output {output}: no bucket named");
    anyhow::ensure!(
        !prefix.split('/').any(|part| part == ".."),
        "--output {output}: a prefix cannot climb out of the bucket with .."
    );
    Ok((bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

impl OutputStore {
    /// The store of `output`, with the credentials of this process's environment.
    pub fn open(output: &str) -> anyhow::Result<Self> {
        let (bucket, prefix) = parse_output(output)?;
        crate::tls::install_crypto_provider();
        let store = AmazonS3Builder::from_env()
            .with_bucket_name(&bucket)
            .build()
            .with_context(|| format!("cannot reach {output} (AWS_* environment)"))?;
        Ok(OutputStore { store: Arc::new(store), prefix, url: output.to_owned() })
    }

    fn object(&self, relative: &str) -> ObjectPath {
        if self.prefix.is_empty() {
            ObjectPath::from(relative)
        } else {
            ObjectPath::from(format!("{}/{relative}", self.prefix))
        }
    }

    /// Copies every file under `dir` up (only those changed `since`, when given), at its path
    /// under `dir`, except unfinished ones (`.partial` books, temporary files), a journal
    /// snapshot (the database is the batch's journal) and raw originals already stored.
    pub async fn upload_dir(&self, dir: &Path, since: Option<SystemTime>) -> anyhow::Result<usize> {
        let mut uploaded = 0;
        for file in files_under(dir)? {
            let relative = relative_name(dir, &file);
            let unfinished = relative.ends_with(".partial") || relative.ends_with(".tmp");
            if unfinished || relative.starts_with(crate::engine::output_path::JOURNAL_FILE) {
                continue;
            }
            let changed = std::fs::metadata(&file)?.modified()?;
            if since.is_some_and(|since| changed < since) {
                continue;
            }
            // An original is stored once per key, never changed: one a worker read back from
            // here (a rerun) is not sent again.
            if relative.starts_with(&RawCache::stored_name("")) && self.has(&relative).await {
                continue;
            }
            let bytes =
                tokio::fs::read(&file).await.with_context(|| format!("reading {}", file.display()))?;
            self.store
                .put(&self.object(&relative), PutPayload::from(bytes))
                .await
                .with_context(|| format!("cannot store {relative} in {}", self.url))?;
            uploaded += 1;
        }
        Ok(uploaded)
    }

    /// Copies every object under the prefix down into `dir`.
    pub async fn download_all(&self, dir: &Path) -> anyhow::Result<usize> {
        let prefix = (!self.prefix.is_empty()).then(|| ObjectPath::from(self.prefix.as_str()));
        let listed: Vec<_> = self
            .store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .with_context(|| format!("cannot list {}", self.url))?;
        for meta in &listed {
            let name = meta.location.as_ref();
            let relative = name.strip_prefix(&format!("{}/", self.prefix)).unwrap_or(name);
            // Object names come from a bucket others may write: never outside `dir`.
            if relative.split('/').any(|part| part == ".." || part.is_empty()) {
                continue;
            }
            let bytes = self.store.get(&meta.location).await?.bytes().await?;
            let path = dir.join(relative);
            if let Some(parent) = path.parent() {
                tokio::fs::create_dir_all(parent).await?;
            }
            tokio::fs::write(&path, &bytes).await.with_context(|| format!("writing {}", path.display()))?;
        }
        Ok(listed.len())
    }

    /// Whether an object is there, for `status`.
    pub async fn has(&self, relative: &str) -> bool {
        self.store.head(&self.object(relative)).await.is_ok()
    }
}

/// The workers' raw cache reads through to the batch's store: the originals of earlier
/// rounds are there, whichever worker paid for them.
#[async_trait::async_trait]
impl SharedOutput for OutputStore {
    async fn read(&self, relative: &str) -> anyhow::Result<Option<Vec<u8>>> {
        match self.store.get(&self.object(relative)).await {
            Ok(found) => Ok(Some(found.bytes().await?.to_vec())),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!("in {}", self.url))),
        }
    }
}

/// Every file under `dir`, depth first.
pub fn files_under(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut folders = vec![dir.to_owned()];
    while let Some(folder) = folders.pop() {
        for entry in std::fs::read_dir(&folder)? {
            let entry = entry?;
            let kind = entry.file_type()?;
            if kind.is_dir() {
                folders.push(entry.path());
            } else if kind.is_file() {
                files.push(entry.path());
            }
        }
    }
    files.sort();
    Ok(files)
}

/// `file`'s path under `dir`, with `/` between parts.
pub fn relative_name(dir: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(dir).unwrap_or(file);
    relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/")
}

#[cfg(test)]
mod tests {
    use super::parse_output;

    #[test]
    fn only_bucket_prefixes_are_outputs() {
        assert_eq!(parse_output("s3://books/a/b/").unwrap(), ("books".into(), "a/b".into()));
        assert_eq!(parse_output("r2://books").unwrap(), ("books".into(), String::new()));
        let local = parse_output("out/book").unwrap_err().to_string();
        assert!(local.contains("cannot reach the local folder out/book"), "{local}");
        assert!(parse_output("s3://books/../x").is_err());
    }
}
