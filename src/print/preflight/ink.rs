//! Where a page puts ink: its content stream walked operator by operator with the graphics
//! state, images as placed (the dark pixels inside them located, see `image`), text by its
//! fonts' advance widths, and painted paths one subpath at a time.
//!
//! The walk is bounded (see `limits`): every font, image and form is read once and what it
//! gave reused, and the walk of a page stops at a limit, saying which.

use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use lopdf::{Dictionary, Document, Object, ObjectId, Stream};

use super::fonts::FontFacts;
use super::image::{ImageInk, image_ink};
use super::limits::*;
use super::tokens::{Operand, Tokens};
use super::{PT_PER_IN, resolve};
use crate::print::area::Area;

/// Ink found on a page.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ink {
    pub(super) area: Area,
    pub(super) kind: InkKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) enum InkKind {
    /// An image: where it is placed (`placed`) and the dark pixels inside it (`area`).
    Image {
        dpi: f32,
        placed: Area,
    },
    Text,
    Path,
}

type Matrix = [f32; 6];

pub(super) const IDENTITY: Matrix = [1.0, 0.0, 0.0, 1.0, 0.0, 0.0];

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

fn transformed(m: Matrix, b: Area) -> Area {
    let corners = [(b.x0, b.y0), (b.x1, b.y0), (b.x0, b.y1), (b.x1, b.y1)].map(|p| apply(m, p));
    Area::from_points(corners).unwrap_or(b)
}

const UNIT: Area = Area { x0: 0.0, y0: 0.0, x1: 1.0, y1: 1.0 };

impl Ink {
    /// The same ink drawn through `m` (a form placed on a page).
    fn transformed(&self, m: Matrix) -> Ink {
        let area = transformed(m, self.area);
        let kind = match self.kind {
            InkKind::Image { dpi, placed } => {
                let moved = transformed(m, placed);
                let scale = ((moved.width() * moved.height()) / (placed.width() * placed.height())).sqrt();
                let dpi = if scale.is_finite() && scale > 0.0 { dpi / scale } else { dpi };
                InkKind::Image { dpi, placed: moved }
            }
            other => other,
        };
        Ink { area, kind }
    }
}

/// Text shown without a glyph: noted this many times per page, enough to say what is wrong.
const MAX_GLYPH_NOTES: usize = 8;

/// What a page's (or a form's) content draws.
#[derive(Debug, Default)]
pub(super) struct Drawn {
    pub(super) ink: Vec<Ink>,
    /// Fonts it uses without an embedded program.
    pub(super) unembedded: Vec<String>,
    /// Text it shows as .notdef: "code 0000 of ABCDEF+Font".
    pub(super) lacking_glyphs: Vec<String>,
    /// The limit that stopped the walk: then what it found is only part of what it draws.
    pub(super) limit: Option<String>,
}

impl Drawn {
    fn note_unembedded(&mut self, font: &str) {
        if !self.unembedded.iter().any(|f| f == font) {
            self.unembedded.push(font.to_owned());
        }
    }

    fn note_lacking(&mut self, what: String) {
        if self.lacking_glyphs.len() < MAX_GLYPH_NOTES && !self.lacking_glyphs.contains(&what) {
            self.lacking_glyphs.push(what);
        }
    }
}

/// What is left to spend on the document.
struct Budget {
    operators: u64,
    decoded: u64,
    image_bytes: u64,
    ink: usize,
}

/// What was found of the fonts, forms and images pages use, so each is read once however often
/// pages use it, and what is left to spend on the document. Each kind keeps at most
/// [`MAX_KEPT`] findings (then starts again), so a book's memory does not grow with its pages.
pub(super) struct Findings {
    fonts: HashMap<ObjectId, Rc<FontFacts>>,
    /// Forms by object and, for one without resources of its own, the resources it borrows.
    forms: HashMap<(ObjectId, Borrowed), Rc<Drawn>>,
    /// Images by object.
    images: HashMap<ObjectId, Result<ImageInk, String>>,
    /// Pages by their content streams and resources: pages drawn alike are walked once.
    pages: HashMap<(Vec<ObjectId>, Option<ObjectId>), Rc<Drawn>>,
    budget: Budget,
}

/// Findings of one kind kept at once.
const MAX_KEPT: usize = 512;

/// The resources a form draws with: its own, or those of where it is drawn (by the object
/// that holds them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Borrowed {
    Own,
    From(Option<ObjectId>),
}

/// A resource dictionary, and the object that holds it (its own when it is a reference, else
/// the page, node or form it is written in): what tells resources apart in the findings' keys.
#[derive(Clone, Copy)]
pub(super) struct Resources<'a> {
    pub(super) dict: Option<&'a Dictionary>,
    pub(super) holder: Option<ObjectId>,
}

impl Findings {
    pub(super) fn new() -> Self {
        Findings {
            fonts: HashMap::new(),
            forms: HashMap::new(),
            images: HashMap::new(),
            pages: HashMap::new(),
            budget: Budget {
                operators: MAX_OPERATORS_PER_DOCUMENT,
                decoded: MAX_DECODED_BYTES_PER_DOCUMENT,
                image_bytes: MAX_IMAGE_BYTES_PER_DOCUMENT,
                ink: MAX_INK_PER_DOCUMENT,
            },
        }
    }

    /// Objects whose findings are kept: a page drawing with them needs only their dictionaries.
    pub(super) fn known(&self, id: ObjectId) -> bool {
        self.fonts.contains_key(&id)
            || self.images.contains_key(&id)
            || self.forms.contains_key(&(id, Borrowed::Own))
    }

    /// Forgets the findings of a kind that holds more than [`MAX_KEPT`].
    fn bound(&mut self) {
        fn bound<K: Eq + std::hash::Hash, V>(map: &mut HashMap<K, V>) {
            if map.len() > MAX_KEPT {
                map.clear();
                map.shrink_to(MAX_KEPT);
            }
        }
        bound(&mut self.fonts);
        bound(&mut self.forms);
        bound(&mut self.images);
        bound(&mut self.pages);
    }
}

/// Reads one page of a document with the findings of the pages before.
pub(super) struct Walker<'a> {
    doc: &'a Document,
    found: &'a mut Findings,
    /// Forms being walked, so a form that draws itself is drawn once.
    open_forms: HashSet<ObjectId>,
}

/// The operators a page may still run.
struct PageBudget {
    operators: u64,
}

/// A named resource of a kind (`Font`, `XObject`) from a resource dictionary, with its object
/// number when it is a reference.
fn resource<'a>(
    doc: &'a Document,
    resources: Resources<'a>,
    kind: &[u8],
    name: &[u8],
) -> Option<(Option<ObjectId>, &'a Object)> {
    let group = resolve(doc, resources.dict?.get(kind).ok()?).as_dict().ok()?;
    let entry = group.get(name).ok()?;
    Some((entry.as_reference().ok(), resolve(doc, entry)))
}

impl<'a> Walker<'a> {
    pub(super) fn new(doc: &'a Document, found: &'a mut Findings) -> Self {
        found.bound();
        Walker { doc, found, open_forms: HashSet::new() }
    }

    /// What a page draws: its content streams `contents`, with `resources`.
    pub(super) fn page(&mut self, contents: Vec<ObjectId>, resources: Resources<'a>) -> Rc<Drawn> {
        let key = (contents, resources.holder);
        if let Some(drawn) = self.found.pages.get(&key) {
            return Rc::clone(drawn);
        }
        let mut drawn = Drawn::default();
        let mut page_budget = PageBudget { operators: MAX_OPERATORS_PER_PAGE };
        let walked = self
            .page_content(&key.0)
            .and_then(|content| self.walk(&content, resources, IDENTITY, 0, &mut drawn, &mut page_budget));
        if let Err(limit) = walked {
            drawn.limit = Some(limit);
        }
        let drawn = Rc::new(drawn);
        self.found.pages.insert(key, Rc::clone(&drawn));
        drawn
    }

    /// A page's content streams decoded and joined (a page may split its content anywhere
    /// between tokens).
    fn page_content(&mut self, contents: &[ObjectId]) -> Result<Vec<u8>, String> {
        let mut content = Vec::new();
        for &id in contents {
            let Ok(stream) = self.doc.get_object(id).and_then(Object::as_stream) else { continue };
            content.extend(self.decode(
                stream,
                "the page's content",
                MAX_DECODED_BYTES.saturating_sub(content.len()),
            )?);
            content.push(b'\n');
        }
        Ok(content)
    }

    /// A stream decoded, up to `limit` bytes and what is left of the document's budget.
    fn decode(&mut self, stream: &Stream, what: &str, limit: usize) -> Result<Vec<u8>, String> {
        let allowed = limit.min(usize::try_from(self.found.budget.decoded).unwrap_or(usize::MAX));
        match stream.decompressed_content_with_limit(allowed) {
            Ok(bytes) => {
                self.found.budget.decoded -= bytes.len() as u64;
                Ok(bytes)
            }
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. }))
                if allowed < limit =>
            {
                Err(format!(
                    "the document's streams decode to more than {} MB (the limit)",
                    MAX_DECODED_BYTES_PER_DOCUMENT >> 20
                ))
            }
            Err(lopdf::Error::Decompress(lopdf::DecompressError::MemoryLimitExceeded { .. })) => {
                Err(format!("{what} decodes to more than {} MB (the limit)", MAX_DECODED_BYTES >> 20))
            }
            Err(e) => Err(format!("{what} cannot be decoded: {e}")),
        }
    }

    fn push(&mut self, drawn: &mut Drawn, ink: Ink) -> Result<(), String> {
        if drawn.ink.len() >= MAX_INK_PER_PAGE {
            return Err(format!("more than {MAX_INK_PER_PAGE} marks of ink on a page (the limit)"));
        }
        if self.found.budget.ink == 0 {
            return Err(format!("more than {MAX_INK_PER_DOCUMENT} marks of ink in the document (the limit)"));
        }
        self.found.budget.ink -= 1;
        drawn.ink.push(ink);
        Ok(())
    }

    fn walk(
        &mut self,
        content: &[u8],
        resources: Resources<'a>,
        start: Matrix,
        depth: usize,
        drawn: &mut Drawn,
        page: &mut PageBudget,
    ) -> Result<(), String> {
        let mut tokens = Tokens::new(content);
        let mut operands: Vec<Operand> = Vec::new();
        let mut ctm = start;
        let mut stack = Vec::new();
        // The current path's points, and where each of its subpaths starts.
        let mut path: Vec<(f32, f32)> = Vec::new();
        let mut starts: Vec<usize> = Vec::new();
        let (mut tm, mut line, mut font_size, mut leading) = (IDENTITY, IDENTITY, 0.0, 0.0);
        let mut font: Option<Rc<FontFacts>> = None;
        let mut numbers = [0.0f32; 6];
        while let Some(operator) = tokens.next_operator(&mut operands) {
            if page.operators == 0 {
                return Err(format!(
                    "more than {MAX_OPERATORS_PER_PAGE} content operators on a page (the limit)"
                ));
            }
            if self.found.budget.operators == 0 {
                return Err(format!(
                    "more than {MAX_OPERATORS_PER_DOCUMENT} content operators in the document (the limit)"
                ));
            }
            page.operators -= 1;
            self.found.budget.operators -= 1;
            let count = operands.len().min(numbers.len());
            for (slot, operand) in numbers.iter_mut().zip(&operands) {
                *slot = operand.number().unwrap_or(0.0);
            }
            // Operators with more operands than any of these takes match none of the shapes.
            let args = if operands.len() <= numbers.len() { &numbers[..count] } else { &[] };
            match (operator, args) {
                (b"q", _) => {
                    if stack.len() >= MAX_SAVED_STATES {
                        return Err(format!(
                            "more than {MAX_SAVED_STATES} graphics states saved (q) at once (the limit)"
                        ));
                    }
                    stack.push(ctm);
                }
                (b"Q", _) => ctm = stack.pop().unwrap_or(start),
                (b"cm", &[a, b, c, d, e, f]) => ctm = multiply([a, b, c, d, e, f], ctm),
                (b"m", &[x, y]) => {
                    starts.push(path.len());
                    path.push((x, y));
                }
                (b"l", &[x, y]) => path.push((x, y)),
                (b"c", &[x1, y1, x2, y2, x3, y3]) => path.extend([(x1, y1), (x2, y2), (x3, y3)]),
                (b"v" | b"y", &[x1, y1, x2, y2]) => path.extend([(x1, y1), (x2, y2)]),
                (b"re", &[x, y, w, h]) => {
                    starts.push(path.len());
                    path.extend([(x, y), (x + w, y + h)]);
                }
                (b"S" | b"s" | b"f" | b"F" | b"f*" | b"B" | b"B*" | b"b" | b"b*", _) => {
                    // Each subpath apart: eight crop marks in one path are eight short lines,
                    // not one box over the whole page.
                    if starts.first() != Some(&0) && !path.is_empty() {
                        starts.insert(0, 0);
                    }
                    let ends = starts.iter().skip(1).copied().chain([path.len()]);
                    let spans: Vec<(usize, usize)> = starts.iter().copied().zip(ends).collect();
                    for (from, to) in spans {
                        let points = path[from..to].iter().map(|&p| apply(ctm, p));
                        if let Some(area) = Area::from_points(points) {
                            self.push(drawn, Ink { area, kind: InkKind::Path })?;
                        }
                    }
                    path.clear();
                    starts.clear();
                }
                (b"n", _) => {
                    path.clear();
                    starts.clear();
                }
                (b"BT", _) => (tm, line) = (IDENTITY, IDENTITY),
                (b"Tf", &[_, size]) => {
                    font_size = size;
                    let name = match operands.first() {
                        Some(Operand::Name(name)) => *name,
                        _ => b"",
                    };
                    font = self.font(resources, name);
                    if let Some(font) = font.as_ref().filter(|f| !f.embedded) {
                        drawn.note_unembedded(&font.name);
                    }
                }
                (b"TL", &[l]) => leading = l,
                (b"Td", &[x, y]) => {
                    line = multiply([1.0, 0.0, 0.0, 1.0, x, y], line);
                    tm = line;
                }
                (b"TD", &[x, y]) => {
                    leading = -y;
                    line = multiply([1.0, 0.0, 0.0, 1.0, x, y], line);
                    tm = line;
                }
                (b"Tm", &[a, b, c, d, e, f]) => (tm, line) = ([a, b, c, d, e, f], [a, b, c, d, e, f]),
                (b"T*", _) => {
                    line = multiply([1.0, 0.0, 0.0, 1.0, 0.0, -leading], line);
                    tm = line;
                }
                (b"Tj" | b"TJ" | b"'" | b"\"", _) => {
                    if operator == b"'" || operator == b"\"" {
                        line = multiply([1.0, 0.0, 0.0, 1.0, 0.0, -leading], line);
                        tm = line;
                    }
                    let em = shown(font.as_deref(), &operands, drawn);
                    if em > 0.0 {
                        let extent =
                            Area { x0: 0.0, y0: -0.25 * font_size, x1: em * font_size, y1: font_size };
                        let area = transformed(multiply(tm, ctm), extent);
                        self.push(drawn, Ink { area, kind: InkKind::Text })?;
                    }
                }
                (b"Do", _) => {
                    if let Some(Operand::Name(name)) = operands.first() {
                        self.x_object(resources, name, ctm, depth, drawn, page)?;
                    }
                }
                (b"BI" | b"sh", _) => {
                    self.push(drawn, Ink { area: transformed(ctm, UNIT), kind: InkKind::Path })?
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// The font a page names, read once per font object.
    fn font(&mut self, resources: Resources<'a>, name: &[u8]) -> Option<Rc<FontFacts>> {
        let (id, font) = resource(self.doc, resources, b"Font", name)?;
        if let Some(known) = id.and_then(|id| self.found.fonts.get(&id)) {
            return Some(Rc::clone(known));
        }
        let font = font.as_dict().ok()?;
        let facts = Rc::new(FontFacts::read(self.doc, font, name));
        if let Some(id) = id {
            self.found.fonts.insert(id, Rc::clone(&facts));
        }
        Some(facts)
    }

    fn x_object(
        &mut self,
        resources: Resources<'a>,
        name: &[u8],
        ctm: Matrix,
        depth: usize,
        drawn: &mut Drawn,
        page: &mut PageBudget,
    ) -> Result<(), String> {
        let doc = self.doc;
        let Some((id, Object::Stream(stream))) = resource(doc, resources, b"XObject", name) else {
            return Ok(());
        };
        match stream.dict.get(b"Subtype").and_then(Object::as_name).unwrap_or_default() {
            b"Image" => {
                let placed = transformed(ctm, UNIT);
                let int =
                    |key: &[u8]| stream.dict.get(key).and_then(Object::as_i64).unwrap_or(0).max(0) as f32;
                let (width, height) = (int(b"Width"), int(b"Height"));
                let dpi = (width / (placed.width() / PT_PER_IN)).min(height / (placed.height() / PT_PER_IN));
                let pixels = match id.and_then(|id| self.found.images.get(&id)) {
                    Some(known) => known.clone(),
                    None => {
                        let found = image_ink(stream, &mut self.found.budget.image_bytes);
                        if let Some(id) = id {
                            self.found.images.insert(id, found.clone());
                        }
                        found
                    }
                };
                let area = match pixels? {
                    ImageInk::Dark(inside) => transformed(ctm, inside),
                    ImageInk::White => return Ok(()),
                    ImageInk::Undecoded => placed,
                };
                self.push(drawn, Ink { area, kind: InkKind::Image { dpi, placed } })
            }
            b"Form" => {
                let own = stream.dict.get(b"Resources").ok();
                let borrowed = if own.is_some() { Borrowed::Own } else { Borrowed::From(resources.holder) };
                let key = id.map(|id| (id, borrowed));
                let form = match key.and_then(|key| self.found.forms.get(&key)) {
                    Some(known) => Rc::clone(known),
                    None => {
                        if depth >= MAX_FORM_DEPTH {
                            return Err(format!(
                                "forms drawn inside forms more than {MAX_FORM_DEPTH} deep (the limit)"
                            ));
                        }
                        // A form that draws itself, directly or not, is drawn once.
                        if id.is_some_and(|id| !self.open_forms.insert(id)) {
                            return Ok(());
                        }
                        let inner = match own {
                            Some(own) => Resources {
                                dict: resolve(doc, own).as_dict().ok(),
                                holder: own.as_reference().ok().or(id),
                            },
                            None => resources,
                        };
                        let walked = self.form(stream, inner, depth, page);
                        if let Some(id) = id {
                            self.open_forms.remove(&id);
                        }
                        let form = Rc::new(walked?);
                        if let Some(key) = key {
                            self.found.forms.insert(key, Rc::clone(&form));
                        }
                        form
                    }
                };
                for ink in &form.ink {
                    self.push(drawn, ink.transformed(ctm))?;
                }
                for font in &form.unembedded {
                    drawn.note_unembedded(font);
                }
                for lacking in &form.lacking_glyphs {
                    drawn.note_lacking(lacking.clone());
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    /// What a form draws in the space it is placed in (its own matrix applied).
    fn form(
        &mut self,
        stream: &Stream,
        resources: Resources<'a>,
        depth: usize,
        page: &mut PageBudget,
    ) -> Result<Drawn, String> {
        let matrix = stream.dict.get(b"Matrix").ok().and_then(|m| {
            let v: Vec<f32> = m.as_array().ok()?.iter().filter_map(|o| o.as_float().ok()).collect();
            <[f32; 6]>::try_from(v).ok()
        });
        let content = self.decode(stream, "a form's content", MAX_DECODED_BYTES)?;
        let mut drawn = Drawn::default();
        self.walk(&content, resources, matrix.unwrap_or(IDENTITY), depth + 1, &mut drawn, page)?;
        Ok(drawn)
    }
}

/// The width in em of what a text-showing operator shows, noting codes the font has no glyph for.
fn shown(font: Option<&FontFacts>, operands: &[Operand], drawn: &mut Drawn) -> f32 {
    let Some(font) = font else {
        // No font selected: an estimate, so the text still counts as ink.
        return operands.iter().map(|o| text_length(o) as f32 * 0.6).sum();
    };
    let mut em = 0.0;
    let mut show = |text: &[u8], drawn: &mut Drawn| {
        em += font.width(text);
        for code in font.codes(text).filter(|&c| font.lacks(c)) {
            let width = if font.two_byte { 4 } else { 2 };
            drawn.note_lacking(format!("code {code:0width$X} of {}", font.name));
        }
    };
    for operand in operands {
        match operand {
            Operand::Str(text) => show(text, drawn),
            Operand::Array(items) => {
                for item in items {
                    if let Operand::Str(text) = item {
                        show(text, drawn);
                    }
                }
            }
            _ => {}
        }
    }
    em
}

fn text_length(operand: &Operand) -> usize {
    match operand {
        Operand::Str(text) => text.len(),
        Operand::Array(items) => items.iter().map(text_length).sum(),
        _ => 0,
    }
}
