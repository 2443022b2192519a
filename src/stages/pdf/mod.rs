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
use std::sync::{Arc, LazyLock, Mutex};

use serde::de::Error as _;
use serde_json::Value;

use crate::engine::media::Media;
use crate::engine::output_path::Claim;
use crate::engine::stage::{
    BuildContext, Component, KindInfo, OptionDoc, OptionsError, OutputMedia, Role, TypedKind,
};
use crate::print::font::Font;

mod book;
mod image;
mod object_file;
mod options;
mod page;

use book::*;
use image::*;
use object_file::*;
use options::*;
use page::*;

/// The `pdf` sink kind: writes every item as one page of a single PDF book, in page order.
pub struct PdfBook;

impl TypedKind for PdfBook {
    type Options = Options;

    fn describe(&self) -> &KindInfo {
        static INFO: LazyLock<KindInfo> = LazyLock::new(|| KindInfo {
            name: "pdf".into(),
            role: Role::Sink,
            summary: "Assembles the pages into one print-ready PDF book, in page order, streamed to disk"
                .into(),
            options: vec![
                OptionDoc::new("path", "string", "book.pdf", "the PDF file, relative to the output dir"),
                OptionDoc::new(
                    "page_size",
                    "letter|a4|{ width_pt, height_pt }",
                    "letter",
                    "page size; letter is 612x792 pt, a4 595.28x841.89 pt",
                ),
                OptionDoc::new(
                    "margin",
                    "number (pt)",
                    "0",
                    "0 places each image at its DPI, centred (shrunk if larger than the page); \
                     more scales it to fit within the margins",
                ),
                OptionDoc::new("title", "string", "none", "adds a title page and sets the document title"),
                OptionDoc::new(
                    "author",
                    "string",
                    "none",
                    "the document author, also shown on the title page",
                ),
                OptionDoc::new(
                    "page_numbers",
                    "boolean",
                    "false",
                    "prints 1, 2, 3... at the bottom of each page",
                ),
                OptionDoc::new(
                    "on_missing",
                    "skip|placeholder|fail",
                    "placeholder",
                    "for a failed or filtered item: leave the page out, print a page saying which prompt \
                     failed and why (so later pages keep their numbers), or write no book and fail",
                ),
                OptionDoc::new("creator", "string", "inkflow", "the document's Creator entry"),
                OptionDoc::new(
                    "font",
                    "path",
                    "built-in Liberation Sans",
                    "a .ttf or .otf file for every text of the book, embedded as a subset",
                ),
            ],
            accepts: Media::IMAGES.to_vec(),
            output: OutputMedia::None,
        });
        &INFO
    }

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
            page: options.page_size,
            margin: options.margin,
            title: options.title,
            author: options.author,
            creator: options.creator,
            page_numbers: options.page_numbers,
            on_missing: options.on_missing,
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
    fn a_300_dpi_letter_image_fills_a_letter_page_exactly() {
        assert_eq!(place_image(LETTER, 0.0, 2550, 3300, Some(300.0)), [0.0, 0.0, 612.0, 792.0]);
    }

    #[test]
    fn an_image_too_large_for_the_page_is_shrunk_and_centred() {
        let [x, y, w, h] = place_image(A4, 0.0, 2550, 3300, Some(300.0));
        assert!((w - 595.28).abs() < 0.01, "width {w}");
        assert!((h - 595.28 * 3300.0 / 2550.0).abs() < 0.01, "height {h}");
        assert!(x.abs() < 0.01 && (y - (841.89 - h) / 2.0).abs() < 0.01);
    }

    #[test]
    fn margins_fit_the_image_inside_them() {
        let [x, y, w, h] = place_image(LETTER, 36.0, 100, 100, Some(300.0));
        assert_eq!((x, w, h), (36.0, 540.0, 540.0));
        assert_eq!(y, (792.0 - 540.0) / 2.0);
    }

    #[test]
    fn option_errors_point_at_the_field() {
        let err =
            Options::parse(&serde_json::json!({ "page_size": "legal" })).err().map(|e| (e.path, e.message));
        let (path, message) = err.unwrap_or_default();
        assert_eq!(path, ["page_size"]);
        assert!(message.contains("legal") && message.contains("a4"), "{message}");

        let err = Options::parse(&serde_json::json!({ "page_size": { "width_pt": 10, "height_pt": 700 } }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["page_size".to_owned(), "width_pt".to_owned()]));

        let err = Options::parse(&serde_json::json!({ "margin": 300 }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["margin".to_owned()]));

        let err = Options::parse(&serde_json::json!({ "on_missing": "ignore" }));
        assert_eq!(err.err().map(|e| e.path), Some(vec!["on_missing".to_owned()]));
    }
}
