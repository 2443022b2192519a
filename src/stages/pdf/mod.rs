//! The `pdf` sink: the batch's pages assembled into one print-ready coloring book.
//!
//! Pages arrive in whatever order the pipeline finishes them, and a 1,000-page book must not sit
//! in memory. So each arriving image is encoded at once (CCITT Group 4 for line art, Flate for
//! gray and colour) and appended to `<path>.partial` as one PDF object; the sink keeps only a small
//! record per page. `finish` then writes the page objects in page order, the page tree, the document
//! info and the cross-reference table, and renames the file into place, so `path` never holds half
//! a book. pdf-writer serializes every object, but its `Pdf` buffers the whole file to compute the
//! xref offsets; `ObjectFile` writes objects one by one and keeps the offsets itself instead.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde::de::Error as _;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::media::Media;
use crate::engine::output_path::Claim;
use crate::engine::stage::{BuildContext, Component, OptionsError, OutputMedia, Role};
use crate::print::font::Font;

mod book;
pub mod cover;
mod image;
mod layout;
mod object_file;
mod options;
mod page;

use book::*;
use image::*;
pub(crate) use layout::printed_mm_per_px;
use layout::*;
use object_file::*;
use options::*;
use page::*;

pub(crate) use options::PRINTED_FIELDS;

/// The `pdf` sink kind: writes every item as one page of a single PDF book, in page order.
pub struct PdfBook;

impl TypedKind for PdfBook {
    const NAME: &'static str = "pdf";
    const ROLE: Role = Role::Sink;
    const SUMMARY: &'static str =
        "Assembles the pages into one print-ready PDF book, in page order, streamed to disk";
    const ACCEPTS: &'static [Media] = Media::IMAGES;
    const OUTPUT: OutputMedia = OutputMedia::None;
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        Options::parse(options)
    }

    fn build_from(&self, options: Options, ctx: &BuildContext) -> anyhow::Result<Component> {
        let font = match &options.font {
            Some(path) => Font::load(path).map_err(|e| anyhow::anyhow!("font: {e}"))?,
            None => Font::builtin(),
        };
        let final_path = options.path.under(&ctx.output_dir);
        let mut partial = final_path.clone().into_os_string();
        partial.push(".partial");
        let store_name = format!("pdf-pages-{}", short_hash(&options.path.to_string()));
        let settings = Settings {
            pages: PageStore {
                dir: ctx.output_dir.join(crate::engine::output_path::CACHE_DIR).join(store_name),
            },
            final_path,
            partial_path: PathBuf::from(partial),
            layout: options.layout(),
            title: options.title,
            subtitle: options.subtitle,
            author: options.author,
            copyright: options.copyright,
            belongs_to: options.belongs_to,
            creator: options.creator,
            on_missing: options.on_missing,
            rejected: options.rejected,
            font,
        };
        Ok(Component::Sink(Arc::new(BookSink {
            settings: Arc::new(settings),
            book: Arc::new(Mutex::new(Book::default())),
        })))
    }

    /// The book itself.
    fn writes_from(&self, options: &Options, _inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        Ok(vec![Claim::new("path", options.path.clone())])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_errors_point_at_the_field() {
        let err = Options::parse(&serde_json::json!({ "trim": "legal" })).err().map(|e| (e.path, e.message));
        let (path, message) = err.unwrap_or_default();
        assert_eq!(path, ["trim"]);
        assert!(message.contains("legal") && message.contains("a4"), "{message}");

        for margin in [serde_json::json!(300), serde_json::json!("4 in"), serde_json::json!("2 cubits")] {
            let err = Options::parse(&serde_json::json!({ "margin": margin }));
            assert_eq!(err.err().map(|e| e.path), Some(vec!["margin".to_owned()]), "{margin}");
        }
        let err = Options::parse(&serde_json::json!({ "margin": { "outside": "0.5 in", "gutter": "x" } }));
        assert_eq!(err.err().map(|e| e.path.first().cloned()), Some(Some("margin".to_owned())));

        let err = Options::parse(&serde_json::json!({ "art": "bleed" }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["art".to_owned()]));
        assert!(Options::parse(&serde_json::json!({ "art": "bleed", "bleed": true })).is_ok());

        let err = Options::parse(&serde_json::json!({ "sides": "triple" }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["sides".to_owned()]));

        let err = Options::parse(&serde_json::json!({ "on_missing": "ignore" }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["on_missing".to_owned()]));
    }
}
