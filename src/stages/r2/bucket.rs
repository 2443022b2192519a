//! The bucket: where objects go. One object's way into it: skipped when the same content is
//! already there, else put in one request or in parts; and a failed upload explained, fatal
//! when it dooms every other.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::aws::AmazonS3;
use object_store::path::Path as ObjectPath;
use object_store::{
    Attribute, Attributes, GetOptions, ObjectStore, PutMultipartOptions, PutOptions, PutPayload,
};
use tokio::io::AsyncReadExt;

use super::credentials::{CREDENTIAL_PAIRS, Secret};
use super::objects::{Body, Object};
use crate::engine::stage::StageError;

/// The user metadata field holding the content hash that makes resume possible.
const HASH_FIELD: &str = "sha256";

/// Parts of one object uploaded at once: enough to fill a link, bounded so memory stays at a
/// few parts.
const PARTS_IN_FLIGHT: usize = 4;

/// Why an upload failed: the store refused or the local file could not be read.
pub(super) enum UploadError {
    Store(object_store::Error),
    Read(PathBuf, std::io::Error),
}

/// An upload error turned into words, and whether it dooms every other upload too.
pub(super) struct Explained {
    pub(super) message: String,
    fatal: bool,
}

impl From<Explained> for StageError {
    fn from(e: Explained) -> Self {
        if e.fatal { StageError::Fatal(e.message) } else { StageError::failed(e.message) }
    }
}

/// Error codes S3 and R2 send when the signature or the key is refused.
const REFUSED_CODES: [&str; 4] =
    ["SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied", "403 Forbidden"];

/// Whether the server refused the credentials. object_store maps only some requests' 401/403
/// to typed variants (listings come back as `Generic`), so the S3 error code is read too.
fn refused_credentials(error: &object_store::Error, detail: &str) -> bool {
    matches!(
        error,
        object_store::Error::PermissionDenied { .. } | object_store::Error::Unauthenticated { .. }
    ) || REFUSED_CODES.iter().any(|code| detail.contains(code))
}

/// Where the objects go: the store with its credentials, how big objects are sent in parts,
/// and the counts of what was uploaded or found already there.
pub(super) struct Bucket {
    /// The sink's id, for messages and logs.
    pub(super) id: String,
    pub(super) endpoint: String,
    pub(super) name: String,
    /// The environment variables the credentials came from, to name in a refusal.
    pub(super) credential_source: Option<(&'static str, &'static str)>,
    pub(super) secret: Option<Secret>,
    pub(super) store: AmazonS3,
    pub(super) cache_control: Option<String>,
    pub(super) multipart_threshold: u64,
    pub(super) part_size: u64,
    pub(super) uploaded: AtomicU64,
    pub(super) unchanged: AtomicU64,
}

impl Bucket {
    /// Lists one page under `prefix`, so a missing bucket, refused credentials or an
    /// unreachable endpoint show before anything is generated. (A HEAD cannot tell a missing
    /// bucket from a missing key: its 404 has no body.)
    pub(super) async fn check_reachable(&self, prefix: &str) -> Result<(), Explained> {
        let prefix = if prefix.is_empty() { None } else { Some(ObjectPath::from(prefix)) };
        match self.store.list(prefix.as_ref()).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                let doing = format!("list bucket {:?} at {}", self.name, self.endpoint);
                Err(self.explain(&UploadError::Store(e), &doing))
            }
        }
    }

    /// Logs what this run uploaded and what it found already stored.
    pub(super) fn log_counts(&self) {
        tracing::info!(
            sink = %self.id,
            uploaded = self.uploaded.load(Ordering::Relaxed),
            unchanged = self.unchanged.load(Ordering::Relaxed),
            "uploads done"
        );
    }

    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) => secret.redact(text),
            None => text.to_owned(),
        }
    }

    pub(super) fn explain(&self, error: &UploadError, doing: &str) -> Explained {
        let sink = &self.id;
        let store_error = match error {
            UploadError::Read(path, e) => {
                return Explained {
                    message: format!("sink {sink:?}: cannot read {}: {e}", path.display()),
                    fatal: false,
                };
            }
            UploadError::Store(e) => e,
        };
        let detail = self.redact(&store_error.to_string());
        match store_error {
            _ if refused_credentials(store_error, &detail) => {
                let (id_var, secret_var) = self.credential_source.unwrap_or(CREDENTIAL_PAIRS[0]);
                Explained {
                    message: format!(
                        "sink {sink:?}: {} refused the credentials for bucket {:?} (check {id_var} and \
                         {secret_var}); stopping the uploads: {detail}",
                        self.endpoint, self.name
                    ),
                    fatal: true,
                }
            }
            _ if detail.contains("NoSuchBucket") => Explained {
                message: format!(
                    "sink {sink:?}: bucket {:?} does not exist at {}; create it or fix the bucket option",
                    self.name, self.endpoint
                ),
                fatal: true,
            },
            _ => Explained { message: format!("sink {sink:?}: could not {doing}: {detail}"), fatal: false },
        }
    }

    /// Uploads an object unless the same content is already stored under its key.
    pub(super) async fn upload(&self, object: &Object) -> Result<(), UploadError> {
        if self.already_stored(object).await? {
            self.unchanged.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(sink = %self.id, key = %object.key, "unchanged, not uploaded again");
            return Ok(());
        }
        let mut attributes = Attributes::new();
        attributes.insert(Attribute::ContentType, object.content_type.clone().into());
        attributes.insert(Attribute::Metadata(HASH_FIELD.into()), object.sha256.clone().into());
        if let Some(cache_control) = &self.cache_control {
            attributes.insert(Attribute::CacheControl, cache_control.clone().into());
        }
        if object.len >= self.multipart_threshold {
            self.upload_multipart(object, attributes).await?;
        } else {
            let bytes = match &object.body {
                Body::Memory(bytes) => bytes.clone(),
                Body::File(path) => {
                    Bytes::from(tokio::fs::read(path).await.map_err(|e| UploadError::Read(path.clone(), e))?)
                }
            };
            let options = PutOptions { attributes, ..PutOptions::default() };
            self.store
                .put_opts(&object.key, PutPayload::from(bytes), options)
                .await
                .map_err(UploadError::Store)?;
        }
        self.uploaded.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(sink = %self.id, key = %object.key, bytes = object.len, "uploaded");
        Ok(())
    }

    /// True when the key holds an object of the same size whose stored hash is ours.
    async fn already_stored(&self, object: &Object) -> Result<bool, UploadError> {
        let head = GetOptions { head: true, ..GetOptions::default() };
        match self.store.get_opts(&object.key, head).await {
            Ok(found) => Ok(found.meta.size == object.len
                && found.attributes.get(&Attribute::Metadata(HASH_FIELD.into())).map(|v| v.as_ref())
                    == Some(object.sha256.as_str())),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(UploadError::Store(e)),
        }
    }

    /// Uploads in parts of exactly `part_size` bytes (the last may be shorter), a few at once;
    /// a failed upload is aborted so no orphan parts stay billed.
    async fn upload_multipart(&self, object: &Object, attributes: Attributes) -> Result<(), UploadError> {
        let options = PutMultipartOptions { attributes, ..PutMultipartOptions::default() };
        let mut upload =
            self.store.put_multipart_opts(&object.key, options).await.map_err(UploadError::Store)?;
        let sent = async {
            let mut reader = match &object.body {
                Body::Memory(bytes) => PartReader::Memory(bytes.clone()),
                Body::File(path) => PartReader::File(
                    tokio::fs::File::open(path).await.map_err(|e| UploadError::Read(path.clone(), e))?,
                    path.clone(),
                ),
            };
            let mut in_flight = FuturesUnordered::new();
            let mut offset = 0u64;
            while offset < object.len {
                let len = self.part_size.min(object.len - offset);
                let part = reader.next_part(len as usize).await?;
                offset += len;
                in_flight.push(upload.put_part(PutPayload::from(part)));
                if in_flight.len() >= PARTS_IN_FLIGHT
                    && let Some(done) = in_flight.next().await
                {
                    done.map_err(UploadError::Store)?;
                }
            }
            while let Some(done) = in_flight.next().await {
                done.map_err(UploadError::Store)?;
            }
            Ok(())
        }
        .await;
        let completed = match sent {
            Ok(()) => upload.complete().await.map(|_| ()).map_err(UploadError::Store),
            Err(e) => Err(e),
        };
        if completed.is_err()
            && let Err(e) = upload.abort().await
        {
            tracing::warn!(sink = %self.id, key = %object.key, "could not abort the multipart upload: {}",
                self.redact(&e.to_string()));
        }
        completed
    }
}

/// Reads consecutive parts of a body.
enum PartReader {
    Memory(Bytes),
    File(tokio::fs::File, PathBuf),
}

impl PartReader {
    async fn next_part(&mut self, len: usize) -> Result<Bytes, UploadError> {
        match self {
            PartReader::Memory(rest) => Ok(rest.split_to(len.min(rest.len()))),
            PartReader::File(file, path) => {
                let mut part = vec![0; len];
                file.read_exact(&mut part).await.map_err(|e| UploadError::Read(path.clone(), e))?;
                Ok(Bytes::from(part))
            }
        }
    }
}
