//! Preflight: a PDF, made by inkflow or not, read back with lopdf and checked against the rules
//! KDP applies to a paperback interior or cover, each rule with the pages that break it.
//!
//! Ink is found by walking each page's content: images as placed (with the ink inside 1-bit
//! CCITT and 8-bit Flate images located pixel by pixel, so a white border is not ink), text
//! (its extent from the fonts' widths) and painted paths.
//!
//! Any PDF is read, hostile ones too: the work is bounded (see [`limits`]), and a page over a
//! limit is reported as one the content rules could not check, not as a failed run.

use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::rc::Rc;

use lopdf::{Dictionary, Document, LoadOptions, Object, ObjectId};

use super::*;

mod crop_marks;
mod fonts;
mod image;
mod ink;
pub mod limits;
mod tokens;

use crop_marks::has_crop_marks;
use ink::{Drawn, Ink, InkKind, Walker};

/// What the file is checked against; `None` means "as the file says".
#[derive(Clone, Copy, Debug, Default)]
pub struct Target {
    pub trim: Option<Trim>,
    pub bleed: Option<bool>,
    pub paper: Paper,
}

/// One rule's verdict.
#[derive(Clone, Debug)]
pub struct Rule {
    pub name: &'static str,
    /// Nothing checked breaks it.
    pub passed: bool,
    /// What was found; for a failure, what is wrong.
    pub detail: String,
    /// The pages that break it, from 1.
    pub pages: Vec<usize>,
    /// The pages it could not be checked on (their content is over a limit), from 1, and why.
    pub unchecked: Vec<usize>,
    pub unchecked_why: String,
}

impl Rule {
    /// Checked on every page, and passed.
    pub fn holds(&self) -> bool {
        self.passed && self.unchecked.is_empty()
    }
}

/// Every rule checked on one file.
#[derive(Clone, Debug)]
pub struct Report {
    pub title: String,
    /// The file's page count.
    pub pages: usize,
    pub rules: Vec<Rule>,
}

impl Report {
    /// Every rule checked on every page and passed: a rule that could not be checked is no pass.
    pub fn passed(&self) -> bool {
        self.rules.iter().all(Rule::holds)
    }

    /// One line for a summary: "KDP preflight: all 11 rules pass", or the names of the rules
    /// that failed and of those that could not be checked.
    pub fn verdict(&self) -> String {
        let failed: Vec<&str> = self.rules.iter().filter(|r| !r.passed).map(|r| r.name).collect();
        let unchecked: Vec<&str> =
            self.rules.iter().filter(|r| r.passed && !r.unchecked.is_empty()).map(|r| r.name).collect();
        let total = self.rules.len();
        let mut verdict = format!("KDP preflight of {}: ", self.title);
        if failed.is_empty() && unchecked.is_empty() {
            verdict += &format!("all {total} rules pass");
        }
        if !failed.is_empty() {
            verdict += &format!("{} of {total} rules fail ({})", failed.len(), failed.join(", "));
        }
        if !unchecked.is_empty() {
            verdict += if failed.is_empty() { "" } else { "; " };
            verdict += &format!(
                "{} of {total} rules could not check every page ({}): over a preflight limit",
                unchecked.len(),
                unchecked.join(", ")
            );
        }
        verdict
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "preflight {}", self.title)?;
        for rule in &self.rules {
            let mark = match (rule.passed, rule.unchecked.is_empty()) {
                (false, _) => "✗",
                (true, false) => "?",
                (true, true) => "✓",
            };
            write!(f, "{mark} {}: {}", rule.name, rule.detail)?;
            if !rule.pages.is_empty() {
                write!(f, " (pages {})", page_list(&rule.pages))?;
            }
            if !rule.unchecked.is_empty() {
                write!(f, "; could not check pages {}: {}", page_list(&rule.unchecked), rule.unchecked_why)?;
            }
            writeln!(f)?;
        }
        write!(f, "{}", self.verdict())
    }
}

/// "1-3, 7, 9-10", at most a dozen ranges.
fn page_list(pages: &[usize]) -> String {
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for &page in pages {
        match ranges.last_mut() {
            Some((_, end)) if *end + 1 == page => *end = page,
            _ => ranges.push((page, page)),
        }
    }
    let shown: Vec<String> = ranges
        .iter()
        .take(12)
        .map(|&(a, b)| if a == b { a.to_string() } else { format!("{a}-{b}") })
        .collect();
    let more = if ranges.len() > 12 { ", ..." } else { "" };
    format!("{}{more}", shown.join(", "))
}

fn rule(name: &'static str, pages: Vec<usize>, ok: String, bad: impl FnOnce(&[usize]) -> String) -> Rule {
    let passed = pages.is_empty();
    let detail = if passed { ok } else { bad(&pages) };
    Rule { name, passed, detail, pages, unchecked: Vec::new(), unchecked_why: String::new() }
}

fn fact(name: &'static str, passed: bool, detail: String) -> Rule {
    Rule { name, passed, detail, pages: Vec::new(), unchecked: Vec::new(), unchecked_why: String::new() }
}

impl Rule {
    /// The rule reads the pages' content: the pages whose content is over a limit are ones it
    /// could not check.
    fn on_content(mut self, facts: &Facts) -> Rule {
        for (number, page) in facts.pages.iter().enumerate() {
            if let Some(limit) = &page.drawn.limit {
                if self.unchecked.is_empty() {
                    self.unchecked_why = limit.clone();
                }
                self.unchecked.push(number + 1);
            }
        }
        self
    }
}

/// A rectangle in points.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Box2 {
    pub x0: f32,
    pub y0: f32,
    pub x1: f32,
    pub y1: f32,
}

impl Box2 {
    fn from_points(points: impl IntoIterator<Item = (f32, f32)>) -> Option<Box2> {
        let mut b: Option<Box2> = None;
        for (x, y) in points {
            b = Some(match b {
                None => Box2 { x0: x, y0: y, x1: x, y1: y },
                Some(b) => Box2 { x0: b.x0.min(x), y0: b.y0.min(y), x1: b.x1.max(x), y1: b.y1.max(y) },
            });
        }
        b
    }

    fn width(&self) -> f32 {
        self.x1 - self.x0
    }

    fn height(&self) -> f32 {
        self.y1 - self.y0
    }

    /// Inside `outer`, with a quarter point of slack for rounding.
    fn within(&self, outer: &Box2) -> bool {
        const SLACK: f32 = 0.25;
        self.x0 >= outer.x0 - SLACK
            && self.y0 >= outer.y0 - SLACK
            && self.x1 <= outer.x1 + SLACK
            && self.y1 <= outer.y1 + SLACK
    }

    fn overlaps(&self, other: &Box2) -> bool {
        self.x0 < other.x1 && other.x0 < self.x1 && self.y0 < other.y1 && other.y0 < self.y1
    }

    fn inset(&self, left: f32, bottom: f32, right: f32, top: f32) -> Box2 {
        Box2 { x0: self.x0 + left, y0: self.y0 + bottom, x1: self.x1 - right, y1: self.y1 - top }
    }
}

/// What preflight reads of one page.
struct PageFacts {
    media: Box2,
    trim: Box2,
    bleed: Box2,
    has_trim_box: bool,
    /// What its content draws (shared by pages drawn alike).
    drawn: Rc<Drawn>,
    annotations: bool,
    /// Crop marks at the corners of the trim (or of the page, without a TrimBox).
    crop_marks: bool,
}

impl PageFacts {
    fn ink(&self) -> &[Ink] {
        &self.drawn.ink
    }

    /// No ink, and all of its content read: a page over a limit has content.
    fn blank(&self) -> bool {
        self.drawn.ink.is_empty() && self.drawn.limit.is_none()
    }
}

/// The file read once, for the interior and cover checks alike.
struct Facts {
    bytes: u64,
    encrypted: bool,
    pages: Vec<PageFacts>,
}

/// Loads a PDF, with lopdf's own decoding bounded as preflight's is.
fn load(path: &Path) -> Result<Document, String> {
    let options =
        LoadOptions { max_decompressed_size: Some(limits::MAX_DECODED_BYTES), ..LoadOptions::default() };
    Document::load_with_options(path, options)
        .map_err(|e| format!("{} is not a readable PDF: {e}", path.display()))
}

/// The document's pages in order, each page object once: a page tree that lists a page or a
/// subtree twice (or in a loop) is walked once per node, not once per path to it.
fn page_ids(doc: &Document) -> Vec<ObjectId> {
    let root = doc.catalog().ok().and_then(|c| c.get(b"Pages").ok()).and_then(|p| p.as_reference().ok());
    let mut seen = HashSet::new();
    let mut pages = Vec::new();
    let mut stack: Vec<ObjectId> = root.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !seen.insert(id) {
            continue;
        }
        let Ok(node) = doc.get_dictionary(id) else { continue };
        match node.get(b"Kids").map(|k| resolve(doc, k)) {
            Ok(Object::Array(kids)) => {
                stack.extend(kids.iter().rev().filter_map(|kid| kid.as_reference().ok()));
            }
            _ if node.get(b"Type").and_then(Object::as_name).is_ok_and(|t| t == b"Pages") => {}
            _ => pages.push(id),
        }
    }
    pages
}

fn read(path: &Path) -> Result<Facts, String> {
    let bytes = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    let doc = load(path)?;
    let encrypted = doc.is_encrypted() || doc.trailer.has(b"Encrypt");
    let mut walker = Walker::new(&doc);
    let mut pages = Vec::new();
    for (index, id) in page_ids(&doc).into_iter().enumerate() {
        let page = read_page(&doc, &mut walker, id)
            .map_err(|e| format!("{}, page {}: {e}", path.display(), index + 1))?;
        pages.push(page);
    }
    Ok(Facts { bytes, encrypted, pages })
}

fn resolve<'a>(doc: &'a Document, object: &'a Object) -> &'a Object {
    match object {
        Object::Reference(id) => doc.get_object(*id).unwrap_or(&Object::Null),
        other => other,
    }
}

/// A page attribute, inherited through the page tree (MediaBox and Resources are).
fn inherited<'a>(doc: &'a Document, page: &'a Dictionary, key: &[u8]) -> Option<&'a Object> {
    let mut node = page;
    for _ in 0..64 {
        if let Ok(value) = node.get(key) {
            return Some(resolve(doc, value));
        }
        node = node
            .get(b"Parent")
            .ok()
            .and_then(|p| p.as_reference().ok())
            .and_then(|p| doc.get_dictionary(p).ok())?;
    }
    None
}

fn rect(object: Option<&Object>, doc: &Document) -> Option<Box2> {
    let values: Vec<f32> =
        object?.as_array().ok()?.iter().filter_map(|o| resolve(doc, o).as_float().ok()).collect();
    let [a, b, c, d] = values[..] else { return None };
    Some(Box2 { x0: a.min(c), y0: b.min(d), x1: a.max(c), y1: b.max(d) })
}

fn read_page<'a>(doc: &'a Document, walker: &mut Walker<'a>, id: ObjectId) -> Result<PageFacts, String> {
    let page = doc.get_dictionary(id).map_err(|e| e.to_string())?;
    let media = rect(inherited(doc, page, b"MediaBox"), doc).ok_or("no MediaBox")?;
    let trim_box = rect(page.get(b"TrimBox").ok(), doc);
    let trim = trim_box.unwrap_or(media);
    let bleed = rect(page.get(b"BleedBox").ok(), doc).unwrap_or(media);
    let annotations = page
        .get(b"Annots")
        .ok()
        .map(|a| resolve(doc, a))
        .and_then(|a| a.as_array().ok())
        .is_some_and(|a| !a.is_empty());
    let resources = inherited(doc, page, b"Resources").and_then(|r| r.as_dict().ok());
    let drawn = walker.page(doc.get_page_contents(id), resources);
    let crop_marks = has_crop_marks(&drawn.ink, trim_box, media);
    Ok(PageFacts { media, trim, bleed, has_trim_box: trim_box.is_some(), drawn, annotations, crop_marks })
}

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

/// Checks an interior PDF.
pub fn check_interior(path: &Path, target: Target) -> Result<Report, String> {
    let facts = read(path)?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let count = facts.pages.len();
    let first = facts.pages.first().ok_or_else(|| format!("{} has no pages", path.display()))?;
    let trim = target.trim.unwrap_or(Trim { width: first.trim.width(), height: first.trim.height() });
    let bleed = target.bleed.unwrap_or(first.media.width() > first.trim.width() + 1.0);
    let max = max_pages(trim, target.paper);
    let paper = match target.paper {
        Paper::White => "white",
        Paper::Cream => "cream",
    };
    let title = format!(
        "{} ({count} pages, {trim}, {}, {paper} paper)",
        path.display(),
        if bleed { "bleed" } else { "no bleed" }
    );
    let numbered = || facts.pages.iter().enumerate().map(|(i, p)| (i + 1, p));

    let mut rules = vec![fact(
        "page count",
        (MIN_PAGES..=max).contains(&count) && count.is_multiple_of(2),
        format!("{count} pages: at least {MIN_PAGES}, at most {max}, an even count"),
    )];

    let size = |p: &PageFacts| (p.media.width(), p.media.height());
    let (w0, h0) = size(first);
    let odd_size: Vec<usize> = numbered()
        .filter(|(_, p)| (size(p).0 - w0).abs() > 0.5 || (size(p).1 - h0).abs() > 0.5)
        .map(|(n, _)| n)
        .collect();
    rules.push(rule("one page size", odd_size, format!("every page is {w0:.2} x {h0:.2} pt"), |_| {
        format!("pages differ from page 1's {w0:.2} x {h0:.2} pt")
    }));

    let bleed_pt = BLEED_IN * PT_PER_IN;
    let (want_w, want_h) =
        if bleed { (trim.width + bleed_pt, trim.height + 2.0 * bleed_pt) } else { (trim.width, trim.height) };
    let bad_boxes: Vec<usize> = numbered()
        .filter(|(_, p)| {
            let trim_ok =
                (p.trim.width() - trim.width).abs() <= 0.5 && (p.trim.height() - trim.height).abs() <= 0.5;
            let media_ok =
                (p.media.width() - want_w).abs() <= 0.5 && (p.media.height() - want_h).abs() <= 0.5;
            let nested = p.trim.within(&p.bleed) && p.bleed.within(&p.media);
            !(trim_ok && media_ok && nested && (p.has_trim_box || !bleed))
        })
        .map(|(n, _)| n)
        .collect();
    rules.push(rule(
        "page boxes",
        bad_boxes,
        format!(
            "TrimBox {trim} inside BleedBox inside MediaBox {:.3} x {:.3} in",
            want_w / PT_PER_IN,
            want_h / PT_PER_IN
        ),
        |_| {
            format!(
                "want TrimBox {trim} and MediaBox {:.3} x {:.3} in, nested",
                want_w / PT_PER_IN,
                want_h / PT_PER_IN
            )
        },
    ));

    // Blank runs: at most two in a row before the last inked page, at most ten after it.
    let last_ink = facts.pages.iter().rposition(|p| !p.blank());
    let mut bad_blanks = Vec::new();
    let mut run: Vec<usize> = Vec::new();
    for (number, page) in numbered().take(last_ink.map_or(0, |l| l + 1)) {
        if page.blank() {
            run.push(number);
        } else {
            if run.len() > MAX_BLANK_RUN {
                bad_blanks.extend(&run);
            }
            run.clear();
        }
    }
    let trailing = count - last_ink.map_or(0, |l| l + 1);
    if trailing > MAX_BLANK_AT_END {
        bad_blanks.extend(count - trailing + 1..=count);
    }
    rules.push(rule(
        "blank pages",
        bad_blanks,
        format!("no run over {MAX_BLANK_RUN} inside, {trailing} at the end (at most {MAX_BLANK_AT_END})"),
        |_| format!("over {MAX_BLANK_RUN} blank pages in a row, or over {MAX_BLANK_AT_END} at the end"),
    ));

    let outside = outside_margin_in(bleed) * PT_PER_IN;
    let gutter = gutter_in(count) * PT_PER_IN;
    let outside_safe: Vec<usize> = numbered()
        .filter(|(number, p)| {
            // Odd pages are right-hand pages: their gutter is on the left.
            let (left, right) = if number % 2 == 1 { (gutter, outside) } else { (outside, gutter) };
            let safe = p.trim.inset(left, outside, right, outside);
            p.ink().iter().any(|ink| {
                let full_bleed =
                    matches!(ink.kind, InkKind::Image { placed, .. } if bleed && p.bleed.within(&placed));
                !full_bleed && !ink.area.within(&safe)
            })
        })
        .map(|(n, _)| n)
        .collect();
    rules.push(
        rule(
            "ink inside the margins",
            outside_safe,
            format!("{:.3} in outside, {:.3} in gutter", outside / PT_PER_IN, gutter / PT_PER_IN),
            |_| {
                format!(
                    "ink within {:.3} in of the edge or {:.3} in of the gutter",
                    outside / PT_PER_IN,
                    gutter / PT_PER_IN
                )
            },
        )
        .on_content(&facts),
    );
    rules.extend(common_rules(&facts));
    Ok(Report { title, pages: count, rules })
}

/// The cover's parts, in points on its one page (with bleed all round).
pub struct CoverGeometry {
    pub width: f32,
    pub height: f32,
    pub spine: Box2,
    pub barcode: Box2,
    pub back: Box2,
    pub front: Box2,
}

impl CoverGeometry {
    pub fn new(trim: Trim, pages: usize, paper: Paper) -> CoverGeometry {
        let bleed = BLEED_IN * PT_PER_IN;
        let spine_w = spine_in(pages, paper) * PT_PER_IN;
        let width = 2.0 * bleed + 2.0 * trim.width + spine_w;
        let height = 2.0 * bleed + trim.height;
        let back = Box2 { x0: bleed, y0: bleed, x1: bleed + trim.width, y1: bleed + trim.height };
        let spine = Box2 { x0: back.x1, y0: bleed, x1: back.x1 + spine_w, y1: back.y1 };
        let front = Box2 { x0: spine.x1, y0: bleed, x1: spine.x1 + trim.width, y1: back.y1 };
        let inset = BARCODE_INSET_IN * PT_PER_IN;
        let (bw, bh) = (BARCODE_IN.0 * PT_PER_IN, BARCODE_IN.1 * PT_PER_IN);
        let barcode = Box2 {
            x0: back.x1 - inset - bw,
            y0: back.y0 + inset,
            x1: back.x1 - inset,
            y1: back.y0 + inset + bh,
        };
        CoverGeometry { width, height, spine, barcode, back, front }
    }
}

/// Checks a cover PDF for an interior of `pages` pages.
pub fn check_cover(path: &Path, pages: usize, trim: Trim, paper: Paper) -> Result<Report, String> {
    let facts = read(path)?;
    if let Some(report) = encrypted(path, &facts) {
        return Ok(report);
    }
    let geometry = CoverGeometry::new(trim, pages, paper);
    let title = format!("{} (cover for {pages} pages, {trim})", path.display());
    let mut rules = vec![fact("one page", facts.pages.len() == 1, format!("{} page(s)", facts.pages.len()))];
    let (w, h) = (geometry.width / PT_PER_IN, geometry.height / PT_PER_IN);
    let wrong_size: Vec<usize> = facts
        .pages
        .iter()
        .enumerate()
        .filter(|(_, p)| {
            (p.media.width() - geometry.width).abs() > 0.72
                || (p.media.height() - geometry.height).abs() > 0.72
        })
        .map(|(i, _)| i + 1)
        .collect();
    rules.push(rule(
        "cover size",
        wrong_size,
        format!(
            "{w:.3} x {h:.3} in: 0.125 in bleed, two {trim} sides and a {:.3} in spine",
            geometry.spine.width() / PT_PER_IN
        ),
        |_| format!("want {w:.3} x {h:.3} in for {pages} pages"),
    ));
    let ink: Vec<&Ink> = facts.pages.iter().flat_map(|p| p.ink()).collect();
    let in_barcode = ink.iter().any(|i| i.area.overlaps(&geometry.barcode));
    rules.push(
        fact(
            "barcode area empty",
            !in_barcode,
            if in_barcode {
                "ink in the 2 x 1.2 in area at the back's lower right".into()
            } else {
                "2 x 1.2 in at the back's lower right left empty".into()
            },
        )
        .on_content(&facts),
    );
    let spine_text: Vec<&&Ink> =
        ink.iter().filter(|i| i.kind == InkKind::Text && i.area.overlaps(&geometry.spine)).collect();
    let clear = SPINE_CLEARANCE_IN * PT_PER_IN;
    let inner = geometry.spine.inset(clear, 0.0, clear, 0.0);
    let (spine_ok, spine_detail) = if pages < SPINE_TEXT_MIN_PAGES {
        (
            spine_text.is_empty(),
            format!(
                "no spine text below {SPINE_TEXT_MIN_PAGES} pages ({})",
                if spine_text.is_empty() { "none" } else { "found some" }
            ),
        )
    } else {
        (
            spine_text.iter().all(|i| i.area.x0 >= inner.x0 - 0.25 && i.area.x1 <= inner.x1 + 0.25),
            format!("spine text {SPINE_CLEARANCE_IN} in clear of the folds"),
        )
    };
    rules.push(fact("spine text", spine_ok, spine_detail).on_content(&facts));
    rules.extend(common_rules(&facts));
    Ok(Report { title, pages: facts.pages.len(), rules })
}

/// The page count of a PDF, for sizing its cover.
pub fn page_count(path: &Path) -> Result<usize, String> {
    Ok(page_ids(&load(path)?).len())
}

/// The trim of a PDF's first page (its TrimBox, else its MediaBox).
pub fn trim_of(path: &Path) -> Result<Trim, String> {
    let doc = load(path)?;
    let id = *page_ids(&doc).first().ok_or_else(|| format!("{} has no pages", path.display()))?;
    let page = doc.get_dictionary(id).map_err(|e| e.to_string())?;
    let media = rect(inherited(&doc, page, b"MediaBox"), &doc);
    let trim = rect(page.get(b"TrimBox").ok(), &doc)
        .or(media)
        .ok_or_else(|| format!("{}: page 1 has no MediaBox", path.display()))?;
    Ok(Trim { width: trim.width(), height: trim.height() })
}

#[cfg(test)]
mod tests;
