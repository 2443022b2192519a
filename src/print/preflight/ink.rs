//! Where a page puts ink: its content stream walked with the graphics state, images as placed
//! (the dark pixels of 1-bit CCITT and 8-bit Flate images located one by one), text by its
//! fonts' advance widths, and painted paths one subpath at a time.

use std::collections::BTreeMap;

use lopdf::content::Content;
use lopdf::{Dictionary, Document, Object, Stream};

use super::{Box2, PT_PER_IN, resolve};

/// Ink found on a page.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ink {
    pub(super) area: Box2,
    pub(super) kind: InkKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum InkKind {
    /// An image: where it is placed (`placed`) and the dark pixels inside it (`area`).
    Image {
        dpi: f32,
        placed: Box2,
    },
    Text,
    Path,
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

pub(super) const UNIT: Box2 = Box2 { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };

/// Walks a content stream, keeping the graphics state that places ink.
pub(super) struct Walker<'a> {
    pub(super) doc: &'a Document,
    pub(super) ink: Vec<Ink>,
    pub(super) unembedded: Vec<String>,
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
    pub(super) fn walk(
        &mut self,
        content: &Content,
        resources: Option<&'a Dictionary>,
        start: Matrix,
        depth: u32,
    ) {
        let number = |o: &Object| o.as_float().unwrap_or(0.0);
        let mut ctm = start;
        let mut stack = Vec::new();
        // The current path's points, and where each of its subpaths starts.
        let mut path: Vec<(f32, f32)> = Vec::new();
        let mut starts: Vec<usize> = Vec::new();
        let (mut tm, mut line, mut font_size, mut leading) = (IDENTITY, IDENTITY, 0.0, 0.0);
        let mut metrics = Metrics::default();
        for op in &content.operations {
            let args: Vec<f32> = op.operands.iter().map(number).collect();
            match (op.operator.as_str(), args.as_slice()) {
                ("q", _) => stack.push(ctm),
                ("Q", _) => ctm = stack.pop().unwrap_or(start),
                ("cm", &[a, b, c, d, e, f]) => ctm = multiply([a, b, c, d, e, f], ctm),
                ("m", &[x, y]) => {
                    starts.push(path.len());
                    path.push((x, y));
                }
                ("l", &[x, y]) => path.push((x, y)),
                ("c", &[x1, y1, x2, y2, x3, y3]) => path.extend([(x1, y1), (x2, y2), (x3, y3)]),
                ("v" | "y", &[x1, y1, x2, y2]) => path.extend([(x1, y1), (x2, y2)]),
                ("re", &[x, y, w, h]) => {
                    starts.push(path.len());
                    path.extend([(x, y), (x + w, y + h)]);
                }
                ("S" | "s" | "f" | "F" | "f*" | "B" | "B*" | "b" | "b*", _) => {
                    // Each subpath apart: eight crop marks in one path are eight short lines,
                    // not one box over the whole page.
                    if starts.first() != Some(&0) && !path.is_empty() {
                        starts.insert(0, 0);
                    }
                    let ends = starts.iter().skip(1).copied().chain([path.len()]);
                    for (start, end) in starts.iter().copied().zip(ends) {
                        let points = path[start..end].iter().map(|&p| apply(ctm, p));
                        if let Some(area) = Box2::from_points(points) {
                            self.ink.push(Ink { area, kind: InkKind::Path });
                        }
                    }
                    path.clear();
                    starts.clear();
                }
                ("n", _) => {
                    path.clear();
                    starts.clear();
                }
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

pub(super) const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

/// The dark pixels' extent inside an image, in the image's unit square: `Some(None)` when it has
/// none, `None` when the image is not one preflight decodes (then all of it counts as ink).
pub(super) fn image_ink(stream: &Stream) -> Option<Option<Box2>> {
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
