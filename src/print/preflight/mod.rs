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
use reading::{Facts, resolve};
pub use reading::{page_count, trim_of};
pub use report::{Report, Rule, Target};
use report::{fact, rule};

/// The rules every upload shares: fonts, annotations, crop marks, encryption, image resolution,
/// file size.
fn common_rules(facts: &Facts) -> Vec<Rule> {
    let numbered = || facts.pages.iter().enumerate().map(|(i, p)| (i + 1, p));
    let mut unembedded: Vec<String> = Vec::new();
    let font_pages: Vec<usize> = numbered()
        .filter(|(_, p)| !p.drawn.unembedded.is_empty())
        .map(|(n, p)| {
            for font in &p.drawn.unembedded {
                if !unembedded.contains(font) {
                    unembedded.push(font.clone());
                }
            }
            n
        })
        .collect();
    let mut least_dpi = f32::INFINITY;
    let low_dpi: Vec<usize> = numbered()
        .filter(|(_, p)| {
            p.ink().iter().any(|ink| match ink.kind {
                InkKind::Image { dpi, .. } => {
                    least_dpi = least_dpi.min(dpi);
                    dpi < MIN_DPI - 0.5
                }
                _ => false,
            })
        })
        .map(|(n, _)| n)
        .collect();
    let annotated: Vec<usize> = numbered().filter(|(_, p)| p.annotations).map(|(n, _)| n).collect();
    let cropped: Vec<usize> = numbered().filter(|(_, p)| p.crop_marks).map(|(n, _)| n).collect();
    let mut lacking: Vec<&str> = Vec::new();
    let lacking_pages: Vec<usize> = numbered()
        .filter(|(_, p)| !p.drawn.lacking_glyphs.is_empty())
        .map(|(n, p)| {
            for what in &p.drawn.lacking_glyphs {
                if lacking.len() < 8 && !lacking.contains(&what.as_str()) {
                    lacking.push(what);
                }
            }
            n
        })
        .collect();
    let megabytes = facts.bytes as f64 / 1e6;
    vec![
        rule("fonts embedded", font_pages, "every font is embedded".into(), |_| {
            format!("not embedded: {}", unembedded.join(", "))
        })
        .on_content(facts),
        rule(
            "every character has a glyph",
            lacking_pages,
            "no text shows the empty .notdef box".into(),
            |_| {
                format!(
                    "text shows the empty .notdef box for a character its font has no glyph for: {}",
                    lacking.join(", ")
                )
            },
        )
        .on_content(facts),
        rule(
            "images at 300 DPI",
            low_dpi,
            if least_dpi.is_finite() {
                format!("the least is {least_dpi:.0} DPI as placed")
            } else {
                "no images".into()
            },
            |_| format!("placed below {MIN_DPI} DPI (the least is {least_dpi:.0})"),
        )
        .on_content(facts),
        rule("no annotations", annotated, "none".into(), |_| {
            "annotations (links, comments, form fields)".into()
        }),
        rule("no crop marks", cropped, "none".into(), |_| {
            "crop marks at the corners of the trim: KDP trims the book itself, export without printer's marks"
                .into()
        })
        .on_content(facts),
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

/// An encrypted file's pages cannot be trusted (or read): that one rule is the verdict.
fn encrypted(path: &Path, facts: &Facts) -> Option<Report> {
    facts.encrypted.then(|| Report {
        title: path.display().to_string(),
        pages: facts.pages.len(),
        rules: vec![fact(
            "not encrypted",
            false,
            "the file is encrypted, so its pages were not checked".into(),
        )],
    })
}

#[cfg(test)]
mod tests;
