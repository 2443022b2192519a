//! The sink's options as written in the pipeline file, and the checks `validate` runs on them
//! before anything is built (endpoint, bucket, key template, prefix, header values).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::options::parse_declared;
use crate::engine::output_path::OutputPath;
use crate::engine::stage::OptionsError;
use crate::imaging::png::PngCompression;
use crate::stages::naming::NameTemplate;

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
pub(super) struct Options {
    /// https://ACCOUNT.r2.cloudflarestorage.com or any S3-compatible URL (http only for localhost).
    #[schemars(extend("x-inkflow-type" = "URL"))]
    pub(super) endpoint: String,
    /// The bucket to upload to.
    pub(super) bucket: String,
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
    pub(super) region: Option<String>,
    /// Content-Type of every image object, when the format's own type is not wanted.
    #[serde(default)]
    pub(super) content_type: Option<String>,
    /// Cache-Control header of every object.
    #[serde(default)]
    pub(super) cache_control: Option<String>,
    /// Upload metadata/<stem>.json per item.
    #[serde(default = "default_true")]
    pub(super) upload_metadata: bool,
    /// PNG effort for pages. With the same value as a disk sink of the same pages, the page
    /// is encoded once and both store the same bytes.
    #[serde(default)]
    pub(super) png_compression: PngCompression,
    /// Objects this large (MiB) or larger go multipart.
    #[serde(default = "default_threshold_mib")]
    #[schemars(range(min = 1))]
    pub(super) multipart_threshold_mib: u64,
    /// Multipart part size; every part but the last has exactly this size, as R2 requires (S3
    /// and R2 refuse parts under 5 MiB or over 5 GiB).
    #[serde(default = "default_part_mib")]
    #[schemars(range(min = 5, max = 5120))]
    pub(super) part_size_mib: u64,
    /// Retries of a request on 5xx and connection errors.
    #[serde(default = "default_retries")]
    #[schemars(range(max = 20))]
    pub(super) retries: u32,
    /// Files of the output directory uploaded at the end of the batch (e.g. [book.pdf]); list
    /// this sink after the sink that writes them.
    #[serde(default)]
    pub(super) upload_files: Vec<String>,
    /// The candidates of a page that are not the page (a rejected one that was re-rolled, the
    /// runners-up of best of N): `upload` puts them under rejected/ and candidates/, named
    /// <stem>.c<N>.<ext> with their metadata, as the disk sink keeps them; `skip` leaves them
    /// out. Either way a page goes up under its own key only once its rounds are over.
    #[serde(default)]
    pub(super) candidates: CandidateUploads,
}

/// What the sink does with the candidates of a page that are not the page.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub(super) enum CandidateUploads {
    /// Under rejected/ and candidates/, as on disk: what was paid for stays in reach.
    #[default]
    Upload,
    /// Not at all: the bucket holds the pages only.
    Skip,
}

/// The checked options, ready for build.
pub(super) struct Checked {
    pub(super) options: Options,
    pub(super) names: NameTemplate,
    pub(super) prefix: String,
    pub(super) allow_http: bool,
}

impl Options {
    pub(super) fn parse(value: &Value) -> Result<Checked, OptionsError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::stage::Kind;
    use crate::stages::r2::R2;
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
}
