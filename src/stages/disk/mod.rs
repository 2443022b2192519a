//! `disk` sink: pages as PNG (bilevel as 1-bit, with the DPI in pHYs), further inputs such as
//! thumbnails beside them, a metadata JSON per item with the original script's fields, and
//! `batch_metadata.json` at the end.
//!
//! Every file is written under a temporary name in its final directory and renamed into place,
//! and the metadata file, written last, is the mark of a finished item: a re-run skips an item
//! only when its metadata says success and every output it lists is there. A process that dies
//! mid-write leaves at most a hidden `.*.tmp` file, never a half page under the real name.

mod files;
mod metadata;
mod sink;

use std::sync::Arc;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use self::sink::DiskSink;
use crate::engine::declared_kind::TypedKind;
use crate::engine::media::Media;
use crate::engine::options::parse_declared;
use crate::engine::output_path::{Claim, OutputPath};
use crate::engine::stage::{BuildContext, Component, OptionsError, OutputMedia, Role};
use crate::imaging::png::PngCompression;
use crate::stages::naming::{CANDIDATES_DIR, NameTemplate, REJECTED_DIR, UniqueNames, sanitize_component};

/// The folder, under the sink's directory, that holds one metadata JSON per item.
const METADATA_DIR: &str = "metadata";
/// The batch summary, under the sink's directory.
const SUMMARY_FILE: &str = "batch_metadata.json";

/// The `disk` kind.
pub struct Disk;

/// The `disk` options, as written in the pipeline file.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Folder for the files, relative to the batch output dir.
    #[serde(default = "default_dir")]
    dir: OutputPath,
    /// Name of the first input's file; further inputs go to <input id>/ with the same stem.
    #[serde(default = "default_filename")]
    #[schemars(extend("x-inkflow-type" = "template"))]
    filename: String,
    /// PNG effort: fast is quickest, best is smallest.
    #[serde(default)]
    png_compression: PngCompression,
}

fn default_dir() -> OutputPath {
    OutputPath::default()
}

fn default_filename() -> String {
    "{section}_{number:03}_{description}.png".into()
}

impl Options {
    fn parse(options: &Value) -> Result<(Self, NameTemplate), OptionsError> {
        let parsed: Options = parse_declared(options)?;
        let template = NameTemplate::parse(&parsed.filename).map_err(|e| OptionsError::at("filename", e))?;
        Ok((parsed, template))
    }
}

impl TypedKind for Disk {
    const NAME: &'static str = "disk";
    const ROLE: Role = Role::Sink;
    const SUMMARY: &'static str =
        "Writes pages (PNG with DPI, 1-bit when bilevel), thumbnails and per-item metadata JSON";
    const ACCEPTS: &'static [Media] = &[Media::Rgb, Media::Gray, Media::Bilevel, Media::Encoded];
    const OUTPUT: OutputMedia = OutputMedia::None;
    type Options = Options;
    type Parsed = (Options, NameTemplate);

    fn parse(&self, options: &Value) -> Result<(Options, NameTemplate), OptionsError> {
        Options::parse(options)
    }

    fn build_from(
        &self,
        (options, template): (Options, NameTemplate),
        ctx: &BuildContext,
    ) -> anyhow::Result<Component> {
        Ok(Component::Sink(Arc::new(DiskSink {
            id: ctx.id.clone(),
            dir: options.dir.under(&ctx.output_dir),
            names: UniqueNames::new(template),
            inputs: input_folders(&ctx.inputs),
            compression: options.png_compression,
        })))
    }

    /// The summary, the metadata folder and each further input's folder; a template's fixed
    /// leading folder is checked by the output-path rule too.
    fn writes_from(
        &self,
        (options, template): &(Options, NameTemplate),
        inputs: &[String],
    ) -> Result<Vec<Claim>, OptionsError> {
        let dir = &options.dir;
        let at = |option: &str, below: &str| {
            dir.join(below).map(|path| Claim::new(option, path)).map_err(|e| OptionsError::at(option, e))
        };
        if let Some(folder) = template.leading_folder() {
            at("filename", folder)?;
        }
        let mut claims = vec![
            at("dir", SUMMARY_FILE)?,
            at("dir", METADATA_DIR)?,
            at("dir", REJECTED_DIR)?,
            at("dir", CANDIDATES_DIR)?,
        ];
        for folder in input_folders(inputs).iter().skip(1) {
            if [METADATA_DIR, REJECTED_DIR, CANDIDATES_DIR].contains(&folder.as_str()) {
                let msg =
                    format!("an input named \"{folder}\" would mix its files with the sink's own {folder}/");
                return Err(OptionsError::at("inputs", msg));
            }
            claims.push(at("inputs", folder)?);
        }
        Ok(claims)
    }
}

/// The folder of each input's files: its id, made safe as a folder name (the first input's
/// files sit in the sink's directory itself).
fn input_folders(inputs: &[String]) -> Vec<String> {
    inputs.iter().map(|id| sanitize_component(id)).collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::stage::Kind;

    #[test]
    fn options_are_checked() {
        let kind = Disk;
        assert_eq!(kind.check(&json!({"filename": "../{key}.png"})).unwrap_err().path, vec!["filename"]);
        assert_eq!(kind.check(&json!({"png_compression": "max"})).unwrap_err().path, vec!["png_compression"]);
        assert!(
            kind.check(&json!({"dir": "pages", "png_compression": "fast", "filename": "{key}.png"})).is_ok()
        );
    }
}
