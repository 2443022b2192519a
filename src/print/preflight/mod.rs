//! Preflight: a PDF, made by inkflow or not, read back with lopdf and checked against the rules
//! KDP applies to a paperback interior or cover, each rule with the pages that break it.
//!
//! Ink is found by walking each page's content: images as placed (with the ink inside 1-bit
//! CCITT and 8-bit Flate images located pixel by pixel, so a white border is not ink), text
//! (its extent estimated at 0.6 em per glyph) and painted paths.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::*;

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
    pub passed: bool,
    /// What was found; for a failure, what is wrong.
    pub detail: String,
    /// The pages that break it, from 1.
    pub pages: Vec<usize>,
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
    pub fn passed(&self) -> bool {
        self.rules.iter().all(|r| r.passed)
    }

    /// One line for a summary: "KDP preflight: all 10 rules pass" or the failed rules' names.
    pub fn verdict(&self) -> String {
        let failed: Vec<&str> = self.rules.iter().filter(|r| !r.passed).map(|r| r.name).collect();
        if failed.is_empty() {
            format!("KDP preflight of {}: all {} rules pass", self.title, self.rules.len())
        } else {
            format!(
                "KDP preflight of {}: {} of {} rules fail ({})",
                self.title,
                failed.len(),
                self.rules.len(),
                failed.join(", ")
            )
        }
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "preflight {}", self.title)?;
        for rule in &self.rules {
            write!(f, "{} {}: {}", if rule.passed { "✓" } else { "✗" }, rule.name, rule.detail)?;
            if !rule.pages.is_empty() {
                write!(f, " (pages {})", page_list(&rule.pages))?;
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
    Rule { name, passed, detail, pages }
}

fn fact(name: &'static str, passed: bool, detail: String) -> Rule {
    Rule { name, passed, detail, pages: Vec::new() }
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

/// Ink found on a page.
#[derive(Clone, Copy, Debug)]
struct Ink {
    area: Box2,
    kind: InkKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum InkKind {
    /// An image: where it is placed (`placed`) and the dark pixels inside it (`area`).
    Image {
        dpi: f32,
        placed: Box2,
    },
    Text,
    Path,
}

/// What preflight reads of one page.
struct PageFacts {
    media: Box2,
    trim: Box2,
    bleed: Box2,
    has_trim_box: bool,
    ink: Vec<Ink>,
    annotations: bool,
    unembedded_fonts: Vec<String>,
}

impl PageFacts {
    fn blank(&self) -> bool {
        self.ink.is_empty()
    }
}

/// The file read once, for the interior and cover checks alike.
struct Facts {
    bytes: u64,
    encrypted: bool,
    pages: Vec<PageFacts>,
}

fn read(path: &Path) -> Result<Facts, String> {
    let bytes = std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?.len();
    let doc = Document::load(path).map_err(|e| format!("{} is not a readable PDF: {e}", path.display()))?;
    let encrypted = doc.is_encrypted() || doc.trailer.has(b"Encrypt");
    let mut pages = Vec::new();
    for (number, id) in doc.get_pages() {
        pages.push(read_page(&doc, id).map_err(|e| format!("{}, page {number}: {e}", path.display()))?);
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

fn read_page(doc: &Document, id: ObjectId) -> Result<PageFacts, String> {
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
    let content = doc.get_and_decode_page_content(id).map_err(|e| format!("unreadable content: {e}"))?;
    let mut walker = Walker { doc, ink: Vec::new(), unembedded: Vec::new() };
    walker.walk(&content, resources, [1.0, 0.0, 0.0, 1.0, 0.0, 0.0], 0);
    Ok(PageFacts {
        media,
        trim,
        bleed,
        has_trim_box: trim_box.is_some(),
        ink: walker.ink,
        annotations,
        unembedded_fonts: walker.unembedded,
    })
}

type Matrix = [f32; 6];

fn multiply(a: Matrix, b: Matrix) -> Matrix {
    [
        a[0] * b[0] + a[1] * b[2],
        a[0] * b[1] + a[1] * b[3],
        a[2] * b[0] + a[3] * b[2],
        a[2] * b[1] + a[3] * b[3],
        a[4] * b[0] + a[5] * b[2] + b[4],
        a[4] * b[1] + a[5] * b[3] + b[5],
    ]
}

fn apply(m: Matrix, (x, y): (f32, f32)) -> (f32, f32) {
    (m[0] * x + m[2] * y + m[4], m[1] * x + m[3] * y + m[5])
}

fn transformed(m: Matrix, b: Box2) -> Box2 {
    let corners = [(b.x0, b.y0), (b.x1, b.y0), (b.x0, b.y1), (b.x1, b.y1)].map(|p| apply(m, p));
    Box2::from_points(corners).unwrap_or(b)
}

const UNIT: Box2 = Box2 { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };

/// Walks a content stream, keeping the graphics state that places ink.
struct Walker<'a> {
    doc: &'a Document,
    ink: Vec<Ink>,
    unembedded: Vec<String>,
}

/// A named resource of a kind (`Font`, `XObject`) from a resource dictionary.
fn resource<'a>(
    doc: &'a Document,
    resources: Option<&'a Dictionary>,
    kind: &[u8],
    name: &[u8],
) -> Option<&'a Object> {
    let group = resolve(doc, resources?.get(kind).ok()?).as_dict().ok()?;
    Some(resolve(doc, group.get(name).ok()?))
}

fn descriptor_of<'a>(doc: &'a Document, font: &'a Dictionary) -> Option<&'a Object> {
    font.get(b"FontDescriptor").ok().map(|d| resolve(doc, d))
}

impl<'a> Walker<'a> {
    fn walk(&mut self, content: &Content, resources: Option<&'a Dictionary>, start: Matrix, depth: u32) {
        let number = |o: &Object| o.as_float().unwrap_or(0.0);
        let mut ctm = start;
        let mut stack = Vec::new();
        let mut path: Vec<(f32, f32)> = Vec::new();
        let (mut tm, mut line, mut font_size, mut leading) = (IDENTITY, IDENTITY, 0.0, 0.0);
        let mut metrics = Metrics::default();
        for op in &content.operations {
            let args: Vec<f32> = op.operands.iter().map(number).collect();
            match (op.operator.as_str(), args.as_slice()) {
                ("q", _) => stack.push(ctm),
                ("Q", _) => ctm = stack.pop().unwrap_or(start),
                ("cm", &[a, b, c, d, e, f]) => ctm = multiply([a, b, c, d, e, f], ctm),
                ("m" | "l", &[x, y]) => path.push((x, y)),
                ("c", &[x1, y1, x2, y2, x3, y3]) => path.extend([(x1, y1), (x2, y2), (x3, y3)]),
                ("v" | "y", &[x1, y1, x2, y2]) => path.extend([(x1, y1), (x2, y2)]),
                ("re", &[x, y, w, h]) => path.extend([(x, y), (x + w, y + h)]),
                ("S" | "s" | "f" | "F" | "f*" | "B" | "B*" | "b" | "b*", _) => {
                    if let Some(area) = Box2::from_points(path.drain(..).map(|p| apply(ctm, p))) {
                        self.ink.push(Ink { area, kind: InkKind::Path });
                    }
                }
                ("n", _) => path.clear(),
                ("BT", _) => (tm, line) = (IDENTITY, IDENTITY),
                ("Tf", [.., size]) => {
                    font_size = *size;
                    let name = op.operands.first().and_then(|n| n.as_name().ok()).unwrap_or_default();
                    metrics = self.check_font(resources, name);
                }
                ("TL", &[l]) => leading = l,
                ("Td", &[x, y]) => {
                    line = multiply([1.0, 0.0, 0.0, 1.0, x, y], line);
                    tm = line;
                }
                ("TD", &[x, y]) => {
                    leading = -y;
                    line = multiply([1.0, 0.0, 0.0, 1.0, x, y], line);
                    tm = line;
                }
                ("Tm", &[a, b, c, d, e, f]) => (tm, line) = ([a, b, c, d, e, f], [a, b, c, d, e, f]),
                ("T*", _) => {
                    line = multiply([1.0, 0.0, 0.0, 1.0, 0.0, -leading], line);
                    tm = line;
                }
                ("Tj" | "TJ" | "'" | "\"", _) => {
                    if op.operator == "'" || op.operator == "\"" {
                        line = multiply([1.0, 0.0, 0.0, 1.0, 0.0, -leading], line);
                        tm = line;
                    }
                    let mut em = 0.0;
                    for operand in &op.operands {
                        match operand {
                            Object::String(text, _) => em += metrics.width(text),
                            Object::Array(items) => {
                                em += items
                                    .iter()
                                    .filter_map(|i| i.as_str().ok())
                                    .map(|t| metrics.width(t))
                                    .sum::<f32>();
                            }
                            _ => {}
                        }
                    }
                    if em > 0.0 {
                        let extent =
                            Box2 { x0: 0.0, y0: -0.25 * font_size, x1: em * font_size, y1: font_size };
                        let area = transformed(multiply(tm, ctm), extent);
                        self.ink.push(Ink { area, kind: InkKind::Text });
                    }
                }
                ("Do", _) => {
                    let name = op.operands.first().and_then(|n| n.as_name().ok()).unwrap_or_default();
                    self.x_object(resources, name, ctm, depth);
                }
                ("BI" | "sh", _) => {
                    self.ink.push(Ink { area: transformed(ctm, UNIT), kind: InkKind::Path });
                }
                _ => {}
            }
        }
    }

    /// Notes a font without an embedded program; returns its advance widths.
    fn check_font(&mut self, resources: Option<&'a Dictionary>, name: &[u8]) -> Metrics {
        let doc = self.doc;
        let Some(font) = resource(doc, resources, b"Font", name).and_then(|f| f.as_dict().ok()) else {
            return Metrics::default();
        };
        let subtype = font.get(b"Subtype").and_then(Object::as_name).unwrap_or_default();
        let base = String::from_utf8_lossy(font.get(b"BaseFont").and_then(Object::as_name).unwrap_or(name))
            .into_owned();
        let descendant = font
            .get(b"DescendantFonts")
            .ok()
            .map(|d| resolve(doc, d))
            .and_then(|d| d.as_array().ok())
            .and_then(|d| d.first())
            .map(|d| resolve(doc, d))
            .and_then(|d| d.as_dict().ok());
        let two_byte = subtype == b"Type0";
        let descriptor = match descendant {
            Some(cid_font) if two_byte => descriptor_of(doc, cid_font),
            _ => descriptor_of(doc, font),
        };
        // Type 3 fonts are drawn by their own content: nothing to embed.
        let embedded = subtype == b"Type3"
            || descriptor
                .and_then(|d| d.as_dict().ok())
                .is_some_and(|d| d.has(b"FontFile") || d.has(b"FontFile2") || d.has(b"FontFile3"));
        if !embedded && !self.unembedded.contains(&base) {
            self.unembedded.push(base);
        }
        let numbers = |o: &Object| -> Vec<f32> {
            resolve(doc, o)
                .as_array()
                .map(|a| a.iter().map(|v| resolve(doc, v).as_float().unwrap_or(0.0)).collect())
                .unwrap_or_default()
        };
        let mut widths = BTreeMap::new();
        let mut default = None;
        match descendant {
            Some(cid_font) if two_byte => {
                default = Some(
                    cid_font.get(b"DW").ok().and_then(|w| resolve(doc, w).as_float().ok()).unwrap_or(1000.0)
                        / 1000.0,
                );
                // W: `c [w1 w2 ...]` or `c_first c_last w` (ISO 32000-1, 9.7.4.3).
                let w = cid_font.get(b"W").ok().map(|w| resolve(doc, w)).and_then(|w| w.as_array().ok());
                let mut items = w.into_iter().flatten().map(|o| resolve(doc, o)).peekable();
                while let Some(first) = items.next() {
                    let Ok(first) = first.as_i64() else { break };
                    match items.next() {
                        Some(Object::Array(list)) => {
                            for (i, v) in list.iter().enumerate() {
                                widths.insert(
                                    first as u32 + i as u32,
                                    resolve(doc, v).as_float().unwrap_or(0.0) / 1000.0,
                                );
                            }
                        }
                        Some(last) => {
                            let (Ok(last), Some(width)) =
                                (last.as_i64(), items.next().and_then(|w| w.as_float().ok()))
                            else {
                                break;
                            };
                            for code in first..=last.min(first + 65_535) {
                                widths.insert(code as u32, width / 1000.0);
                            }
                        }
                        None => break,
                    }
                }
            }
            _ => {
                let first =
                    font.get(b"FirstChar").ok().and_then(|f| resolve(doc, f).as_i64().ok()).unwrap_or(0);
                for (i, w) in font.get(b"Widths").map(numbers).unwrap_or_default().into_iter().enumerate() {
                    widths.insert(first as u32 + i as u32, w / 1000.0);
                }
            }
        }
        Metrics { two_byte, widths, default }
    }

    fn x_object(&mut self, resources: Option<&'a Dictionary>, name: &[u8], ctm: Matrix, depth: u32) {
        let doc = self.doc;
        let Some(Object::Stream(stream)) = resource(doc, resources, b"XObject", name) else { return };
        let placed = transformed(ctm, UNIT);
        match stream.dict.get(b"Subtype").and_then(Object::as_name).unwrap_or_default() {
            b"Image" => {
                let int =
                    |key: &[u8]| stream.dict.get(key).and_then(Object::as_i64).unwrap_or(0).max(0) as f32;
                let (width, height) = (int(b"Width"), int(b"Height"));
                let dpi = (width / (placed.width() / PT_PER_IN)).min(height / (placed.height() / PT_PER_IN));
                let area = match image_ink(stream) {
                    Some(Some(inside)) => transformed(ctm, inside),
                    // Decoded and all white: no ink at all.
                    Some(None) => return,
                    None => placed,
                };
                self.ink.push(Ink { area, kind: InkKind::Image { dpi, placed } });
            }
            b"Form" if depth < 8 => {
                let matrix = stream.dict.get(b"Matrix").ok().and_then(|m| {
                    let v: Vec<f32> = m.as_array().ok()?.iter().filter_map(|o| o.as_float().ok()).collect();
                    <[f32; 6]>::try_from(v).ok()
                });
                let inner = stream
                    .dict
                    .get(b"Resources")
                    .ok()
                    .map(|r| resolve(doc, r))
                    .and_then(|r| r.as_dict().ok());
                if let Ok(content) = stream.decompressed_content().and_then(|c| Content::decode(&c)) {
                    let start = multiply(matrix.unwrap_or(IDENTITY), ctm);
                    self.walk(&content, inner.or(resources), start, depth + 1);
                }
            }
            _ => {}
        }
    }
}

/// A font's advance widths in em, by character code, as its dictionary gives them.
#[derive(Default)]
struct Metrics {
    two_byte: bool,
    widths: BTreeMap<u32, f32>,
    /// For codes `widths` lacks; `None` means an estimate of 0.6 em (a standard font with no
    /// `Widths`, or a missing font).
    default: Option<f32>,
}

impl Metrics {
    /// The advance of a shown string, in em.
    fn width(&self, text: &[u8]) -> f32 {
        let codes: Vec<u32> = if self.two_byte {
            text.chunks(2).map(|c| c.iter().fold(0, |code, &b| code << 8 | u32::from(b))).collect()
        } else {
            text.iter().map(|&b| u32::from(b)).collect()
        };
        codes.iter().map(|c| self.widths.get(c).copied().or(self.default).unwrap_or(0.6)).sum()
    }
}

const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// The dark pixels' extent inside an image, in the image's unit square: `Some(None)` when it has
/// none, `None` when the image is not one preflight decodes (then all of it counts as ink).
fn image_ink(stream: &Stream) -> Option<Option<Box2>> {
    let dict = &stream.dict;
    let int = |key: &[u8]| dict.get(key).and_then(Object::as_i64).ok().and_then(|v| u32::try_from(v).ok());
    let (width, height) = (int(b"Width")?, int(b"Height")?);
    let filter = match dict.get(b"Filter").ok()? {
        Object::Name(name) => name.clone(),
        Object::Array(items) if items.len() == 1 => items[0].as_name().ok()?.to_vec(),
        _ => return None,
    };
    // Rows of dark spans: (row, first column, one past the last).
    let mut spans: Vec<(u32, u32, u32)> = Vec::new();
    match filter.as_slice() {
        b"CCITTFaxDecode" => {
            let parms = dict.get(b"DecodeParms").ok().and_then(|p| p.as_dict().ok());
            let k = parms.and_then(|p| p.get(b"K").and_then(Object::as_i64).ok()).unwrap_or(0);
            let black_is_1 =
                parms.and_then(|p| p.get(b"BlackIs1").and_then(Object::as_bool).ok()).unwrap_or(false);
            let decode_inverted = dict
                .get(b"Decode")
                .ok()
                .and_then(|d| d.as_array().ok())
                .and_then(|d| d.first())
                .and_then(|d| d.as_float().ok())
                == Some(1.0);
            if k >= 0 || black_is_1 || decode_inverted {
                return None;
            }
            let mut row = 0;
            fax::decoder::decode_g4(stream.content.iter().copied(), width, Some(height), |transitions| {
                for pair in transitions.chunks(2) {
                    let end = pair.get(1).copied().unwrap_or(width);
                    if end > pair[0] {
                        spans.push((row, pair[0], end));
                    }
                }
                row += 1;
            })?;
        }
        b"FlateDecode" => {
            let bits = int(b"BitsPerComponent")?;
            let channels = match dict.get(b"ColorSpace").and_then(Object::as_name).ok()? {
                b"DeviceGray" => 1,
                b"DeviceRGB" => 3,
                _ => return None,
            };
            if bits != 8 || dict.has(b"DecodeParms") || dict.has(b"Decode") {
                return None;
            }
            let samples = stream.decompressed_content().ok()?;
            let stride = (width * channels) as usize;
            for (row, line) in samples.chunks_exact(stride).take(height as usize).enumerate() {
                let dark = |x: usize| {
                    line[x * channels as usize..(x + 1) * channels as usize]
                        .iter()
                        .map(|&v| u32::from(v))
                        .sum::<u32>()
                        < 128 * channels
                };
                let first = (0..width as usize).find(|&x| dark(x));
                let last = (0..width as usize).rev().find(|&x| dark(x));
                if let (Some(a), Some(b)) = (first, last) {
                    spans.push((row as u32, a as u32, b as u32 + 1));
                }
            }
        }
        _ => return None,
    }
    let (w, h) = (width as f32, height as f32);
    // Row 0 is the top of the image: y = 1 in its unit square.
    Some(Box2::from_points(spans.iter().flat_map(|&(row, a, b)| {
        [(a as f32 / w, 1.0 - (row + 1) as f32 / h), (b as f32 / w, 1.0 - row as f32 / h)]
    })))
}

/// The rules every upload shares: fonts, annotations, encryption, image resolution, file size.
fn common_rules(facts: &Facts) -> Vec<Rule> {
    let numbered = || facts.pages.iter().enumerate().map(|(i, p)| (i + 1, p));
    let mut unembedded: Vec<String> = Vec::new();
    let font_pages: Vec<usize> = numbered()
        .filter(|(_, p)| !p.unembedded_fonts.is_empty())
        .map(|(n, p)| {
            for font in &p.unembedded_fonts {
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
            p.ink.iter().any(|ink| match ink.kind {
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
    let megabytes = facts.bytes as f64 / 1e6;
    vec![
        rule("fonts embedded", font_pages, "every font is embedded".into(), |_| {
            format!("not embedded: {}", unembedded.join(", "))
        }),
        rule(
            "images at 300 DPI",
            low_dpi,
            if least_dpi.is_finite() {
                format!("the least is {least_dpi:.0} DPI as placed")
            } else {
                "no images".into()
            },
            |_| format!("placed below {MIN_DPI} DPI (the least is {least_dpi:.0})"),
        ),
        rule("no annotations", annotated, "none".into(), |_| {
            "annotations (links, comments, form fields)".into()
        }),
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
            p.ink.iter().any(|ink| {
                let full_bleed =
                    matches!(ink.kind, InkKind::Image { placed, .. } if bleed && p.bleed.within(&placed));
                !full_bleed && !ink.area.within(&safe)
            })
        })
        .map(|(n, _)| n)
        .collect();
    rules.push(rule(
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
    ));
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
    let ink: Vec<&Ink> = facts.pages.iter().flat_map(|p| &p.ink).collect();
    let in_barcode = ink.iter().any(|i| i.area.overlaps(&geometry.barcode));
    rules.push(fact(
        "barcode area empty",
        !in_barcode,
        if in_barcode {
            "ink in the 2 x 1.2 in area at the back's lower right".into()
        } else {
            "2 x 1.2 in at the back's lower right left empty".into()
        },
    ));
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
    rules.push(fact("spine text", spine_ok, spine_detail));
    rules.extend(common_rules(&facts));
    Ok(Report { title, pages: facts.pages.len(), rules })
}

/// The page count of a PDF, for sizing its cover.
pub fn page_count(path: &Path) -> Result<usize, String> {
    let doc = Document::load(path).map_err(|e| format!("{} is not a readable PDF: {e}", path.display()))?;
    Ok(doc.get_pages().len())
}

/// The trim of a PDF's first page (its TrimBox, else its MediaBox).
pub fn trim_of(path: &Path) -> Result<Trim, String> {
    let doc = Document::load(path).map_err(|e| format!("{} is not a readable PDF: {e}", path.display()))?;
    let pages: BTreeMap<u32, ObjectId> = doc.get_pages();
    let (_, id) = pages.iter().next().ok_or_else(|| format!("{} has no pages", path.display()))?;
    let page = doc.get_dictionary(*id).map_err(|e| e.to_string())?;
    let media = rect(inherited(&doc, page, b"MediaBox"), &doc);
    let trim = rect(page.get(b"TrimBox").ok(), &doc)
        .or(media)
        .ok_or_else(|| format!("{}: page 1 has no MediaBox", path.display()))?;
    Ok(Trim { width: trim.width(), height: trim.height() })
}

#[cfg(test)]
mod tests;
