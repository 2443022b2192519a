//! The `r2` sink (alias `s3`): uploads every page, the other inputs of the sink (thumbnails),
//! a metadata JSON per item and finished batch files (the PDF book) to Cloudflare R2 or any
//! S3-compatible store, so a batch is published where the books are served from.
//!
//! Resume: every object carries the SHA-256 of its content in `x-amz-meta-sha256`. Before an
//! upload the sink HEADs the key and skips it when the size and the stored hash match. ETags
//! are not compared: a multipart ETag is not the MD5 of the object (S3 and R2 both make it from
//! the parts), so it cannot tell whether a local file is already there. An object uploaded by
//! another tool (no stored hash) is uploaded again, once.
//!
//! Transport integrity: object_store signs each request body's SHA-256 (SigV4), so a body that
//! arrives damaged is refused by the server instead of being stored.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::anyhow;
use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path;
use object_store::{
    Attribute, Attributes, BackoffConfig, ClientOptions, GetOptions, ObjectStore, PutMultipartOptions,
    PutOptions, PutPayload, RetryConfig,
};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use crate::engine::cpu;
use crate::engine::item::{Item, State};
use crate::engine::media::{Media, Payload, Raster};
use crate::engine::options::{documented, parse_declared};
use crate::engine::output_path::OutputPath;
use crate::engine::stage::{
    BuildContext, Component, Kind, KindInfo, OptionsError, OutputMedia, Receipt, Role, Sink, StageError,
    StoredObject,
};
use crate::engine::summary::Summary;
use crate::imaging::png::{PngCompression, page_png};
use crate::stages::naming::{NameTemplate, UniqueNames, strip_extension};

/// Credential variables, in order of preference: a pair is used only when both halves are set,
/// so an R2 key id is never signed with an AWS secret.
const CREDENTIAL_PAIRS: [(&str, &str); 2] =
    [("R2_ACCESS_KEY_ID", "R2_SECRET_ACCESS_KEY"), ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")];

/// The user metadata field holding the content hash that makes resume possible.
const HASH_FIELD: &str = "sha256";

/// Parts of one object uploaded at once: enough to fill a link, bounded so memory stays at a
/// few parts.
const PARTS_IN_FLIGHT: usize = 4;

/// Per-request timeout: generous because one request may carry a whole part on a slow uplink.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(300);

const MIB: u64 = 1024 * 1024;

/// Uploads items to object storage. Registered twice with one implementation: `r2` (region
/// `auto`, Cloudflare R2) and `s3` (region `us-east-1`, any S3-compatible server).
pub struct R2 {
    info: KindInfo,
    default_region: &'static str,
    env: Option<BTreeMap<String, String>>,
}

impl R2 {
    /// The `r2` kind, reading credentials from the process environment.
    pub fn new() -> Self {
        Self::named("r2", "auto")
    }

    /// The `s3` alias: the same sink with the AWS default region.
    pub fn s3() -> Self {
        Self::named("s3", "us-east-1")
    }

    /// The same kind reading credentials only from `vars`, never from the process environment
    /// (tests run in parallel and cannot share one environment).
    pub fn with_env<'a>(mut self, vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        self.env = Some(vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
        self
    }

    fn named(name: &str, default_region: &'static str) -> Self {
        let mut options = documented::<Options>();
        // The one default that differs between the two names of this kind.
        if let Some(region) = options.iter_mut().find(|o| o.name == "region") {
            region.default = Some(default_region.to_owned());
        }
        let info = KindInfo {
            name: name.into(),
            role: Role::Sink,
            summary: "uploads pages, thumbnails, metadata and the book to Cloudflare R2 / S3, skipping \
                      objects already there"
                .into(),
            options,
            accepts: vec![Media::Rgb, Media::Gray, Media::Bilevel, Media::Encoded],
            output: OutputMedia::None,
        };
        R2 { info, default_region, env: None }
    }

    /// A variable's value; empty values count as unset.
    fn var(&self, name: &str) -> Option<String> {
        let value = match &self.env {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
    }

    /// The first complete credential pair and the names it came from.
    fn credentials(&self) -> Result<Option<Credentials>, String> {
        for (id_var, secret_var) in CREDENTIAL_PAIRS {
            match (self.var(id_var), self.var(secret_var)) {
                (Some(key_id), Some(secret)) => {
                    return Ok(Some(Credentials {
                        key_id,
                        secret: Secret(secret),
                        source: (id_var, secret_var),
                    }));
                }
                (Some(_), None) => return Err(format!("{id_var} is set but {secret_var} is not")),
                (None, Some(_)) => return Err(format!("{secret_var} is set but {id_var} is not")),
                (None, None) => {}
            }
        }
        Ok(None)
    }
}

impl Default for R2 {
    fn default() -> Self {
        Self::new()
    }
}

/// A secret access key: its `Debug` prints `***` and it has no `Display`, so it cannot reach a
/// log or a message by accident.
struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl Secret {
    /// `text` with the secret replaced by `***`, for messages built from server answers.
    fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

struct Credentials {
    key_id: String,
    secret: Secret,
    source: (&'static str, &'static str),
}

fn default_key() -> String {
    "{section}_{number:03}_{description}.png".into()
}
fn default_true() -> bool {
    true
}
fn default_threshold_mib() -> u64 {
    16
}
fn default_part_mib() -> u64 {
    8
}
fn default_retries() -> u32 {
    5
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct Options {
    /// https://ACCOUNT.r2.cloudflarestorage.com or any S3-compatible URL (http only for localhost).
    #[schemars(extend("x-inkflow-type" = "URL"))]
    endpoint: String,
    /// The bucket to upload to.
    bucket: String,
    /// Object key of the first input; other inputs go to <input id>/<stem>.<ext>, metadata to
    /// metadata/<stem>.json; the extension follows the object's format.
    #[serde(default = "default_key")]
    #[schemars(extend("x-inkflow-type" = "template"))]
    key: String,
    /// Folder prepended to every key (e.g. books/2025).
    #[serde(default)]
    prefix: String,
    /// Signing region (R2 uses auto).
    #[serde(default)]
    region: Option<String>,
    /// Content-Type of every image object, when the format's own type is not wanted.
    #[serde(default)]
    content_type: Option<String>,
    /// Cache-Control header of every object.
    #[serde(default)]
    cache_control: Option<String>,
    /// Upload metadata/<stem>.json per item.
    #[serde(default = "default_true")]
    upload_metadata: bool,
    /// PNG effort for pages. With the same value as a disk sink of the same pages, the page
    /// is encoded once and both store the same bytes.
    #[serde(default)]
    png_compression: PngCompression,
    /// Objects this large (MiB) or larger go multipart.
    #[serde(default = "default_threshold_mib")]
    #[schemars(range(min = 1))]
    multipart_threshold_mib: u64,
    /// Multipart part size; every part but the last has exactly this size, as R2 requires (S3
    /// and R2 refuse parts under 5 MiB or over 5 GiB).
    #[serde(default = "default_part_mib")]
    #[schemars(range(min = 5, max = 5120))]
    part_size_mib: u64,
    /// Retries of a request on 5xx and connection errors.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 20))]
    retries: u32,
    /// Files of the output directory uploaded at the end of the batch (e.g. [book.pdf]); list
    /// this sink after the sink that writes them.
    #[serde(default)]
    upload_files: Vec<String>,
}

/// The checked options, ready for build.
struct Checked {
    options: Options,
    names: NameTemplate,
    prefix: String,
    allow_http: bool,
}

impl Options {
    fn parse(value: &Value) -> Result<Checked, OptionsError> {
        let options: Options = parse_declared(value)?;
        let allow_http = check_endpoint(&options.endpoint).map_err(|e| OptionsError::at("endpoint", e))?;
        check_bucket(&options.bucket).map_err(|e| OptionsError::at("bucket", e))?;
        let names = NameTemplate::parse(&options.key).map_err(|e| OptionsError::at("key", e))?;
        let prefix = options.prefix.trim_matches('/').to_owned();
        check_relative(&prefix).map_err(|e| OptionsError::at("prefix", e))?;
        for (i, file) in options.upload_files.iter().enumerate() {
            if file.trim().is_empty() {
                return Err(OptionsError::at(&format!("upload_files.{i}"), "is empty"));
            }
            OutputPath::new(file).map_err(|e| OptionsError::at(&format!("upload_files.{i}"), e))?;
        }
        for (field, value) in
            [("content_type", &options.content_type), ("cache_control", &options.cache_control)]
        {
            if value.as_deref().is_some_and(|v| v.trim().is_empty() || v.chars().any(char::is_control)) {
                return Err(OptionsError::at(field, "must be a non-empty header value"));
            }
        }
        Ok(Checked { options, names, prefix, allow_http })
    }
}

/// Checks the endpoint URL; returns whether plain HTTP is allowed (only on the local machine,
/// so object data never crosses a network unencrypted).
fn check_endpoint(endpoint: &str) -> Result<bool, String> {
    if endpoint.trim().is_empty() {
        return Err("is empty (is R2_ENDPOINT set?)".into());
    }
    let (scheme, rest) = endpoint
        .split_once("://")
        .ok_or_else(|| format!("{endpoint:?} is not a URL like https://ACCOUNT.r2.cloudflarestorage.com"))?;
    let host_port = rest.split('/').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    if host.is_empty() {
        return Err(format!("{endpoint:?} has no host"));
    }
    match scheme {
        "https" => Ok(false),
        "http" if matches!(host, "localhost" | "127.0.0.1" | "::1") => Ok(true),
        "http" => Err(format!("{endpoint:?}: use https (plain http is allowed only for localhost)")),
        other => Err(format!("{endpoint:?}: unsupported scheme {other:?}, use https")),
    }
}

/// S3 bucket naming rules (R2 follows them), so a typo is caught by `validate`.
fn check_bucket(bucket: &str) -> Result<(), String> {
    let valid_chars =
        bucket.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.');
    let valid_ends = bucket.starts_with(|c: char| c.is_ascii_alphanumeric())
        && bucket.ends_with(|c: char| c.is_ascii_alphanumeric());
    if (3..=63).contains(&bucket.len()) && valid_chars && valid_ends {
        Ok(())
    } else {
        Err(format!("{bucket:?} is not a bucket name: 3-63 lowercase letters, digits, '-' or '.'"))
    }
}

fn check_relative(path: &str) -> Result<(), String> {
    if path.starts_with('/') || path.starts_with('\\') || path.contains(':') {
        return Err(format!("{path:?} must be a relative path"));
    }
    if path.split(['/', '\\']).any(|seg| seg == "..") {
        return Err(format!("{path:?} must not contain '..'"));
    }
    Ok(())
}

impl Kind for R2 {
    fn info(&self) -> &KindInfo {
        &self.info
    }

    fn check(&self, options: &Value) -> Result<(), OptionsError> {
        Options::parse(options).map(|_| ())
    }

    fn build(&self, options: &Value, ctx: &BuildContext) -> anyhow::Result<Component> {
        let id = &ctx.id;
        let Checked { options, names, prefix, allow_http } = Options::parse(options)
            .map_err(|e| anyhow!("sink {id:?}: option {:?}: {}", e.path.join("."), e.message))?;
        let credentials = self.credentials().map_err(|e| anyhow!("sink {id:?}: {e}"))?;
        if credentials.is_none() && !ctx.dry_run {
            return Err(anyhow!(
                "sink {id:?}: no credentials: set R2_ACCESS_KEY_ID and R2_SECRET_ACCESS_KEY \
                 (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
            ));
        }
        let retry = RetryConfig {
            backoff: BackoffConfig::default(),
            max_retries: options.retries as usize,
            retry_timeout: Duration::from_secs(120),
        };
        // Path-style requests (endpoint/bucket/key): R2 and every S3-compatible server take
        // them, while virtual-hosted style needs DNS for each bucket.
        let mut builder = AmazonS3Builder::new()
            .with_endpoint(options.endpoint.trim_end_matches('/'))
            .with_bucket_name(&options.bucket)
            .with_region(options.region.as_deref().unwrap_or(self.default_region))
            .with_virtual_hosted_style_request(false)
            .with_retry(retry)
            .with_client_options(
                ClientOptions::new().with_allow_http(allow_http).with_timeout(REQUEST_TIMEOUT),
            );
        builder = match &credentials {
            Some(c) => builder.with_access_key_id(&c.key_id).with_secret_access_key(&c.secret.0),
            // Only reachable in a dry run, which sends nothing.
            None => builder.with_skip_signature(true),
        };
        let store = builder.build().map_err(|e| {
            let message = e.to_string();
            let message = credentials.as_ref().map_or(message.clone(), |c| c.secret.redact(&message));
            anyhow!("sink {id:?}: {message}")
        })?;
        let sink = R2Sink {
            id: id.clone(),
            inputs: ctx.inputs.clone(),
            output_dir: ctx.output_dir.clone(),
            endpoint: options.endpoint.clone(),
            bucket: options.bucket.clone(),
            credential_source: credentials.as_ref().map(|c| c.source),
            secret: credentials.map(|c| c.secret),
            store,
            names: UniqueNames::new(names),
            prefix,
            content_type: options.content_type,
            cache_control: options.cache_control,
            upload_metadata: options.upload_metadata,
            png_compression: options.png_compression,
            multipart_threshold: options.multipart_threshold_mib * MIB,
            part_size: options.part_size_mib * MIB,
            upload_files: options.upload_files,
            uploaded: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
        };
        Ok(Component::Sink(Arc::new(sink)))
    }
}

/// The built sink.
struct R2Sink {
    id: String,
    inputs: Vec<String>,
    output_dir: PathBuf,
    endpoint: String,
    bucket: String,
    credential_source: Option<(&'static str, &'static str)>,
    secret: Option<Secret>,
    store: AmazonS3,
    names: UniqueNames,
    prefix: String,
    content_type: Option<String>,
    cache_control: Option<String>,
    upload_metadata: bool,
    png_compression: PngCompression,
    multipart_threshold: u64,
    part_size: u64,
    upload_files: Vec<String>,
    uploaded: AtomicU64,
    unchanged: AtomicU64,
}

/// One object to upload.
struct Object {
    key: Path,
    body: Body,
    len: u64,
    sha256: String,
    content_type: String,
}

/// Where an object's bytes are: encoded in memory (pages) or in a file (the book, which may be
/// large and is streamed part by part).
enum Body {
    Memory(Bytes),
    File(PathBuf),
}

/// Why an upload failed: the store refused or the local file could not be read.
enum UploadError {
    Store(object_store::Error),
    Read(PathBuf, std::io::Error),
}

/// An upload error turned into words, and whether it dooms every other upload too.
struct Explained {
    message: String,
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

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The SHA-256 and length of a file, read in blocks so a large book needs little memory.
fn hash_file(path: &FsPath) -> std::io::Result<(String, u64)> {
    let mut file = std::fs::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            return Ok((hex::encode(hasher.finalize()), len));
        }
        hasher.update(&buffer[..n]);
        len += n as u64;
    }
}

fn content_type_for_file(path: &str) -> &'static str {
    let extension = path.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match extension.as_str() {
        "pdf" => "application/pdf",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// A payload ready to hash and upload: its bytes (or the pixels to encode) and its type.
enum Prepared {
    Encoded(Bytes, &'static str, &'static str),
    Pixels(Arc<Raster>),
}

impl R2Sink {
    fn redact(&self, text: &str) -> String {
        match &self.secret {
            Some(secret) => secret.redact(text),
            None => text.to_owned(),
        }
    }

    fn object_key(&self, relative: &str) -> Result<Path, String> {
        let full =
            if self.prefix.is_empty() { relative.to_owned() } else { format!("{}/{relative}", self.prefix) };
        Path::parse(&full).map_err(|e| format!("{full:?} is not a valid object key: {e}"))
    }

    fn explain(&self, error: &UploadError, doing: &str) -> Explained {
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
                        self.endpoint, self.bucket
                    ),
                    fatal: true,
                }
            }
            _ if detail.contains("NoSuchBucket") => Explained {
                message: format!(
                    "sink {sink:?}: bucket {:?} does not exist at {}; create it or fix the bucket option",
                    self.bucket, self.endpoint
                ),
                fatal: true,
            },
            _ => Explained { message: format!("sink {sink:?}: could not {doing}: {detail}"), fatal: false },
        }
    }

    /// Uploads an object unless the same content is already stored under its key.
    async fn upload(&self, object: &Object) -> Result<(), UploadError> {
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

    /// Encodes and hashes an item's objects on the CPU pool, and builds its metadata JSON.
    async fn prepare(&self, item: &Item, states: &[State]) -> Result<Vec<Object>, StageError> {
        let sink = &self.id;
        let stem = strip_extension(
            &self.names.render(item).map_err(|e| StageError::failed(format!("sink {sink:?}: {e}")))?,
        )
        .to_owned();
        let mut prepared = Vec::new();
        let mut not_uploaded = Vec::new();
        for (index, state) in states.iter().enumerate() {
            let input = self.inputs.get(index).cloned().unwrap_or_else(|| format!("input{index}"));
            match state {
                State::Ready(Payload::Image(raster)) => {
                    prepared.push((input, Prepared::Pixels(raster.clone())))
                }
                State::Ready(Payload::Encoded(file)) => prepared.push((
                    input,
                    Prepared::Encoded(
                        Bytes::from(file.bytes.clone()),
                        file.format.extension(),
                        file.format.mime(),
                    ),
                )),
                State::Ready(Payload::Prompt | Payload::Undecoded(_)) => {
                    return Err(StageError::failed(format!(
                        "sink {sink:?}: input {input:?} gave no pixels to upload"
                    )));
                }
                State::Failed(failure) => not_uploaded.push(json!({
                    "input": input, "state": "failed", "stage": failure.stage, "error": failure.error,
                })),
                State::Filtered { stage, reason } => not_uploaded.push(json!({
                    "input": input, "state": "filtered", "stage": stage, "reason": reason,
                })),
            }
        }
        if prepared.is_empty() {
            return Ok(Vec::new());
        }
        let (content_type, png_compression) = (self.content_type.clone(), self.png_compression);
        let key_stem = stem.clone();
        let encoded = cpu::run(move || {
            prepared
                .into_iter()
                .enumerate()
                .map(|(position, (input, prepared))| {
                    let (bytes, extension, mime) = match prepared {
                        Prepared::Encoded(bytes, extension, mime) => (bytes, extension, mime),
                        Prepared::Pixels(raster) => (page_png(&raster, png_compression)?, "png", "image/png"),
                    };
                    let relative = if position == 0 {
                        format!("{key_stem}.{extension}")
                    } else {
                        format!("{input}/{key_stem}.{extension}")
                    };
                    let content_type = content_type.clone().unwrap_or_else(|| mime.to_owned());
                    Ok((input, relative, sha256_hex(&bytes), bytes, content_type))
                })
                .collect::<Result<Vec<_>, String>>()
        })
        .await
        .and_then(|r| r)
        .map_err(|e| StageError::failed(format!("sink {sink:?}: item {}: {e}", item.key)))?;

        let mut objects = Vec::new();
        let mut listed = Vec::new();
        for (input, relative, sha256, bytes, content_type) in encoded {
            let key =
                self.object_key(&relative).map_err(|e| StageError::failed(format!("sink {sink:?}: {e}")))?;
            listed.push(json!({
                "input": input, "key": key.as_ref(), "content_type": content_type,
                "bytes": bytes.len(), "sha256": sha256,
            }));
            objects.push(Object {
                key,
                len: bytes.len() as u64,
                body: Body::Memory(bytes),
                sha256,
                content_type,
            });
        }
        if self.upload_metadata {
            let metadata = json!({
                "key": item.key,
                "seq": item.seq,
                "prompt": item.prompt,
                "facts": item.facts,
                "retries": item.retries,
                "generation_seconds": item.generation_time.map(|t| t.as_secs_f64()),
                "objects": listed,
                "not_uploaded": not_uploaded,
            });
            let bytes = Bytes::from(
                serde_json::to_vec_pretty(&metadata)
                    .map_err(|e| StageError::failed(format!("sink {sink:?}: metadata: {e}")))?,
            );
            let key = self
                .object_key(&format!("metadata/{stem}.json"))
                .map_err(|e| StageError::failed(format!("sink {sink:?}: {e}")))?;
            objects.push(Object {
                key,
                len: bytes.len() as u64,
                sha256: sha256_hex(&bytes),
                body: Body::Memory(bytes),
                content_type: "application/json".into(),
            });
        }
        Ok(objects)
    }

    /// One listed batch file as an object; fails when the file is missing.
    async fn file_object(&self, relative: &str) -> Result<Object, String> {
        let sink = &self.id;
        let path = self.output_dir.join(relative);
        let shown = path.display().to_string();
        let hashed = path.clone();
        let (sha256, len) = tokio::task::spawn_blocking(move || hash_file(&hashed))
            .await
            .map_err(|e| format!("sink {sink:?}: hashing {shown} stopped: {e}"))?
            .map_err(|e| {
                format!("sink {sink:?}: cannot read {shown} (upload_files; is it written by an earlier sink?): {e}")
            })?;
        let key = self.object_key(&relative.replace('\\', "/")).map_err(|e| format!("sink {sink:?}: {e}"))?;
        Ok(Object {
            key,
            body: Body::File(path),
            len,
            sha256,
            content_type: content_type_for_file(relative).into(),
        })
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

#[async_trait]
impl Sink for R2Sink {
    /// Complete when the journal holds this sink's receipt for the item as it is now, and the
    /// receipt's page is under the name the item has now: no request to the store at all.
    fn is_complete(&self, item: &Item, recorded: Option<&Receipt>) -> bool {
        let Some(page) = recorded.and_then(|receipt| receipt.objects.first()) else { return false };
        let Ok(name) = self.names.render(item) else { return false };
        self.object_key(strip_extension(&name)).is_ok_and(|stem| strip_extension(&page.name) == stem.as_ref())
    }

    /// Lists one page of the prefix before anything is generated, so a missing bucket, refused
    /// credentials or an unreachable endpoint stop the batch before money is spent. (A HEAD
    /// cannot tell a missing bucket from a missing key: its 404 has no body.)
    async fn begin(&self, items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        self.names.plan(items);
        let prefix = if self.prefix.is_empty() { None } else { Some(Path::from(self.prefix.as_str())) };
        match self.store.list(prefix.as_ref()).next().await {
            None | Some(Ok(_)) => Ok(()),
            Some(Err(e)) => {
                let doing = format!("list bucket {:?} at {}", self.bucket, self.endpoint);
                Err(anyhow!(self.explain(&UploadError::Store(e), &doing).message))
            }
        }
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        // Metadata comes last, so its presence means the item's images are all stored.
        let mut receipt = Receipt::default();
        for object in self.prepare(item, &states).await? {
            self.upload(&object).await.map_err(|e| self.explain(&e, &format!("upload {}", object.key)))?;
            receipt.objects.push(StoredObject {
                name: object.key.to_string(),
                sha256: object.sha256,
                bytes: object.len,
            });
        }
        Ok(receipt)
    }

    /// Last: `upload_files` may name what the other sinks write as they finish (the book,
    /// `batch_metadata.json`).
    fn finish_rank(&self) -> u8 {
        2
    }

    async fn finish(&self, _summary: &Summary) -> anyhow::Result<()> {
        let mut errors = Vec::new();
        for relative in &self.upload_files {
            let outcome = match self.file_object(relative).await {
                Ok(object) => self
                    .upload(&object)
                    .await
                    .map_err(|e| self.explain(&e, &format!("upload {}", object.key)).message),
                Err(message) => Err(message),
            };
            if let Err(message) = outcome {
                errors.push(message);
            }
        }
        tracing::info!(
            sink = %self.id,
            uploaded = self.uploaded.load(Ordering::Relaxed),
            unchanged = self.unchanged.load(Ordering::Relaxed),
            "uploads done"
        );
        if errors.is_empty() { Ok(()) } else { Err(anyhow!(errors.join("\n"))) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn check(options: Value) -> Result<(), OptionsError> {
        R2::new().check(&options)
    }

    fn base() -> Value {
        json!({ "endpoint": "https://acc.r2.cloudflarestorage.com", "bucket": "books" })
    }

    fn with(field: &str, value: Value) -> Value {
        let mut options = base();
        options[field] = value;
        options
    }

    #[test]
    fn accepts_minimal_options() {
        check(base()).unwrap();
    }

    #[test]
    fn refuses_bad_options_at_their_field() {
        for (field, value) in [
            ("endpoint", json!("http://storage.example.com")),
            ("endpoint", json!("")),
            ("endpoint", json!("ftp://x")),
            ("bucket", json!("Books")),
            ("bucket", json!("ab")),
            ("key", json!("../{key}.png")),
            ("prefix", json!("a/../b")),
            ("part_size_mib", json!(4)),
            ("multipart_threshold_mib", json!(0)),
            ("retries", json!(99)),
            ("cache_control", json!("")),
        ] {
            let err = check(with(field, value.clone())).unwrap_err();
            assert_eq!(err.path, vec![field.to_owned()], "{field}={value}: {err}");
        }
        let err = check(with("upload_files", json!(["ok.pdf", "/etc/passwd"]))).unwrap_err();
        assert_eq!(err.path, vec!["upload_files", "1"]);
        let err = check(with("bucket_name", json!("x"))).unwrap_err();
        assert!(err.message.contains("bucket_name"), "{err}");
    }

    #[test]
    fn plain_http_only_for_this_machine() {
        assert_eq!(check_endpoint("http://127.0.0.1:9000"), Ok(true));
        assert_eq!(check_endpoint("http://localhost:9000/"), Ok(true));
        assert_eq!(check_endpoint("http://[::1]:9000"), Ok(true));
        assert_eq!(check_endpoint("https://acc.r2.cloudflarestorage.com"), Ok(false));
        assert!(check_endpoint("http://localhost.evil.com").is_err());
    }

    #[test]
    fn r2_pair_wins_and_pairs_are_not_mixed() {
        let both = R2::new().with_env([
            ("R2_ACCESS_KEY_ID", "r2id"),
            ("R2_SECRET_ACCESS_KEY", "r2secret"),
            ("AWS_ACCESS_KEY_ID", "awsid"),
            ("AWS_SECRET_ACCESS_KEY", "awssecret"),
        ]);
        let c = both.credentials().unwrap().unwrap();
        assert_eq!((c.key_id.as_str(), c.secret.0.as_str()), ("r2id", "r2secret"));

        let aws =
            R2::new().with_env([("AWS_ACCESS_KEY_ID", "awsid"), ("AWS_SECRET_ACCESS_KEY", "awssecret")]);
        let c = aws.credentials().unwrap().unwrap();
        assert_eq!((c.key_id.as_str(), c.source.0), ("awsid", "AWS_ACCESS_KEY_ID"));

        let half = R2::new().with_env([("R2_ACCESS_KEY_ID", "r2id"), ("AWS_SECRET_ACCESS_KEY", "awssecret")]);
        let err = half.credentials().err().unwrap();
        assert!(err.contains("R2_SECRET_ACCESS_KEY") && !err.contains("awssecret"), "{err}");
        assert!(R2::new().with_env([]).credentials().unwrap().is_none());
    }

    #[test]
    fn secret_debug_and_redaction_hide_it() {
        let secret = Secret("s3cr3t".into());
        assert_eq!(format!("{secret:?}"), "***");
        assert_eq!(secret.redact("sig for s3cr3t failed"), "sig for *** failed");
    }

    #[test]
    fn extension_is_removed_from_the_last_segment_only() {
        assert_eq!(strip_extension("animals_007_cat.png"), "animals_007_cat");
        assert_eq!(strip_extension("v1.2/page"), "v1.2/page");
        assert_eq!(strip_extension("sea/03.png"), "sea/03");
    }
}
