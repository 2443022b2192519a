//! Preflight: a PDF, made by inkflow or not, read back and checked against the rules KDP applies
//! to a paperback interior or cover, each rule with the pages that break it. The file is read a
//! page at a time (see `file`), so a long book costs the memory of its largest page.
//!
//! Ink is found by walking each page's content: images as placed (with the ink inside 1-bit
//! CCITT and 8-bit Flate images located pixel by pixel, so a white border is not ink), text
//! (its extent from the fonts' widths) and painted paths.
//!
//! Any PDF is read, hostile ones too: the work is bounded (see [`limits`]), and a page over a
//! limit is reported as one the content rules could not check, not as a failed run.

use std::path::Path;

use super::*;

mod cover;
mod crop_marks;
mod file;
mod fonts;
mod image;
mod ink;
mod interior;
pub mod limits;
mod reading;
mod report;
mod tokens;

pub use cover::{CoverGeometry, check_cover};
use ink::{Ink, InkKind};
pub use interior::check_interior;
use reading::{Facts, PageFacts, resolve};
pub use reading::{page_count, trim_of};
pub use report::{Report, Rule, Target};
use report::{fact, rule};

/// What the rules every upload shares (fonts, glyphs, image resolution, annotations, crop
/// marks) gather, a page at a time, and the pages whose content is over a limit.
struct Common {
    unembedded: Vec<String>,
    font_pages: Vec<usize>,
    lacking: Vec<String>,
    lacking_pages: Vec<usize>,
    least_dpi: f32,
    low_dpi: Vec<usize>,
    annotated: Vec<usize>,
    cropped: Vec<usize>,
    unchecked: Unchecked,
}

/// The pages whose content is over a limit, and the first limit met.
#[derive(Default)]
struct Unchecked {
    pages: Vec<usize>,
    why: String,
}

impl Common {
    fn new() -> Self {
        Common {
            unembedded: Vec::new(),
            font_pages: Vec::new(),
            lacking: Vec::new(),
            lacking_pages: Vec::new(),
            least_dpi: f32::INFINITY,
            low_dpi: Vec::new(),
            annotated: Vec::new(),
            cropped: Vec::new(),
            unchecked: Unchecked::default(),
        }
    }

    fn page(&mut self, number: usize, page: &PageFacts) {
        if !page.drawn.unembedded.is_empty() {
            self.font_pages.push(number);
            for font in &page.drawn.unembedded {
                if !self.unembedded.contains(font) {
                    self.unembedded.push(font.clone());
                }
            }
        }
        if !page.drawn.lacking_glyphs.is_empty() {
            self.lacking_pages.push(number);
            for what in &page.drawn.lacking_glyphs {
                if self.lacking.len() < 8 && !self.lacking.contains(what) {
                    self.lacking.push(what.clone());
                }
            }
        }
        let mut low = false;
        for ink in page.ink() {
            if let InkKind::Image { dpi, .. } = ink.kind {
                self.least_dpi = self.least_dpi.min(dpi);
                low |= dpi < MIN_DPI - 0.5;
            }
        }
        if low {
            self.low_dpi.push(number);
        }
        if page.annotations {
            self.annotated.push(number);
        }
        if page.crop_marks {
            self.cropped.push(number);
        }
        if let Some(limit) = &page.drawn.limit {
            if self.unchecked.pages.is_empty() {
                self.unchecked.why = limit.clone();
            }
            self.unchecked.pages.push(number);
        }
    }

    /// The rules every upload shares: fonts, annotations, crop marks, encryption, image
    /// resolution, file size.
    fn rules(self, facts: &Facts) -> Vec<Rule> {
        let Common { unembedded, lacking, least_dpi, unchecked, .. } = &self;
        let megabytes = facts.bytes as f64 / 1e6;
        vec![
            rule("fonts embedded", self.font_pages.clone(), "every font is embedded".into(), |_| {
                format!("not embedded: {}", unembedded.join(", "))
            })
            .on_content(unchecked),
            rule(
                "every character has a glyph",
                self.lacking_pages.clone(),
                "no text shows the empty .notdef box".into(),
                |_| {
                    format!(
                        "text shows the empty .notdef box for a character its font has no glyph for: {}",
                        lacking.join(", ")
                    )
                },
            )
            .on_content(unchecked),
            rule(
                "images at 300 DPI",
                self.low_dpi.clone(),
                if least_dpi.is_finite() {
                    format!("the least is {least_dpi:.0} DPI as placed")
                } else {
                    "no images".into()
                },
                |_| format!("placed below {MIN_DPI} DPI (the least is {least_dpi:.0})"),
            )
            .on_content(unchecked),
            rule("no annotations", self.annotated.clone(), "none".into(), |_| {
                "annotations (links, comments, form fields)".into()
            }),
            rule("no crop marks", self.cropped.clone(), "none".into(), |_| {
                "crop marks at the corners of the trim: KDP trims the book itself, export without printer's marks"
                    .into()
            })
            .on_content(unchecked),
            fact(
                "not encrypted",
                !facts.encrypted,
                if facts.encrypted { "the file is encrypted".into() } else { "no encryption".into() },
            ),
            fact(
                "file size",
                facts.bytes <= MAX_FILE_BYTES,
                format!("{megabytes:.1} MB, at most {} MB", MAX_FILE_BYTES / 1_000_000),
            ),
        ]
    }
}

/// An encrypted file's pages cannot be trusted (or read): that one rule is the verdict.
fn encrypted(path: &Path, facts: &Facts) -> Option<Report> {
    facts.encrypted.then(|| Report {
        title: path.display().to_string(),
        pages: facts.pages,
        rules: vec![fact(
            "not encrypted",
            false,
            "the file is encrypted, so its pages were not checked".into(),
        )],
    })
}

#[cfg(test)]
mod tests;
