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

mod bucket;
mod credentials;
mod held;
mod objects;
mod options;
mod sink;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::anyhow;
use object_store::aws::AmazonS3Builder;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use serde_json::Value;

use self::bucket::Bucket;
use self::held::Held;
use self::objects::ObjectPlan;
use self::options::{Checked, Options};
use self::sink::R2Sink;
use crate::engine::media::Media;
use crate::engine::options::documented;
use crate::engine::output_path::CACHE_DIR;
use crate::engine::stage::{BuildContext, Component, Kind, KindInfo, OptionsError, OutputMedia, Role};
use crate::stages::naming::UniqueNames;

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
}

impl Default for R2 {
    fn default() -> Self {
        Self::new()
    }
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
        crate::tls::install_crypto_provider();
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
        let plan = ObjectPlan {
            id: id.clone(),
            inputs: ctx.inputs.clone(),
            output_dir: ctx.output_dir.clone(),
            names: UniqueNames::new(names),
            prefix,
            content_type: options.content_type,
            upload_metadata: options.upload_metadata,
            png_compression: options.png_compression,
        };
        let bucket = Bucket {
            id: id.clone(),
            endpoint: options.endpoint.clone(),
            name: options.bucket.clone(),
            credential_source: credentials.as_ref().map(|c| c.source),
            secret: credentials.map(|c| c.secret),
            store,
            cache_control: options.cache_control,
            multipart_threshold: options.multipart_threshold_mib * MIB,
            part_size: options.part_size_mib * MIB,
            uploaded: AtomicU64::new(0),
            unchanged: AtomicU64::new(0),
        };
        let sink = R2Sink {
            plan,
            bucket,
            upload_files: options.upload_files,
            candidates: options.candidates,
            held: Held { dir: ctx.output_dir.join(CACHE_DIR).join("r2-held").join(id) },
        };
        Ok(Component::Sink(Arc::new(sink)))
    }
}
