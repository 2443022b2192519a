//! What preflight reads of a font a page selects: its name, whether its program is embedded,
//! its advance widths (for where text puts ink) and which of its character codes print a real
//! glyph rather than .notdef, the empty box a font shows for what it has no glyph for.

use std::collections::BTreeMap;

use lopdf::{Dictionary, Document, Object};
use ttf_parser::{Face, GlyphId};

use super::limits::MAX_DECODED_BYTES;
use super::resolve;

/// A font as preflight checks it.
pub(super) struct FontFacts {
    /// Its BaseFont, for messages.
    pub(super) name: String,
    pub(super) embedded: bool,
    pub(super) two_byte: bool,
    widths: BTreeMap<u32, f32>,
    /// For codes `widths` lacks; `None` means an estimate of 0.6 em (a standard font with no
    /// `Widths`, or a missing font).
    default_width: Option<f32>,
    glyphs: Glyphs,
}

/// How a character code is known to reach a glyph.
enum Glyphs {
    /// Not checked: an encoding or font kind preflight does not map (a Type 3 font, a CMap other
    /// than Identity, a standard font with no program).
    Unknown,
    /// A simple font: codes outside `FirstChar..=LastChar` have no width, so no glyph; inside,
    /// `by_code` (from the embedded TrueType's own cmap, when it has a code-keyed one) gives
    /// the glyph.
    Simple { first: u32, last: u32, by_code: Option<Box<[u16; 256]>> },
    /// A CID font under Identity-H/V: the code is the CID; CID 0 is .notdef, and so is a CID
    /// mapped (CIDToGIDMap) to glyph 0 or past the font's last glyph.
    Cid { to_glyph: Option<Vec<u16>>, glyph_count: Option<u16> },
}

impl FontFacts {
    /// Reads a font dictionary.
    pub(super) fn read(doc: &Document, font: &Dictionary, fallback_name: &[u8]) -> FontFacts {
        let subtype = font.get(b"Subtype").and_then(Object::as_name).unwrap_or_default();
        let name =
            String::from_utf8_lossy(font.get(b"BaseFont").and_then(Object::as_name).unwrap_or(fallback_name))
                .into_owned();
        let two_byte = subtype == b"Type0";
        let descendant = two_byte
            .then(|| font.get(b"DescendantFonts").ok())
            .flatten()
            .map(|d| resolve(doc, d))
            .and_then(|d| d.as_array().ok())
            .and_then(|d| d.first())
            .map(|d| resolve(doc, d))
            .and_then(|d| d.as_dict().ok());
        let descriptor = descendant
            .unwrap_or(font)
            .get(b"FontDescriptor")
            .ok()
            .map(|d| resolve(doc, d))
            .and_then(|d| d.as_dict().ok());
        let program = |key: &[u8]| descriptor.and_then(|d| d.get(key).ok()).map(|f| resolve(doc, f));
        // Type 3 fonts are drawn by their own content: nothing to embed.
        let embedded = subtype == b"Type3"
            || [&b"FontFile"[..], b"FontFile2", b"FontFile3"].iter().any(|key| program(key).is_some());
        let font_data = program(b"FontFile2")
            .or_else(|| program(b"FontFile3"))
            .and_then(|f| f.as_stream().ok())
            .and_then(|s| s.decompressed_content_with_limit(MAX_DECODED_BYTES).ok());
        let face = font_data.as_deref().and_then(|data| Face::parse(data, 0).ok());

        let mut facts = FontFacts {
            name,
            embedded,
            two_byte,
            widths: BTreeMap::new(),
            default_width: None,
            glyphs: Glyphs::Unknown,
        };
        match descendant {
            Some(cid_font) => facts.read_cid(doc, font, cid_font, face.as_ref()),
            None if two_byte => {}
            None => facts.read_simple(doc, font, subtype, face.as_ref()),
        }
        facts
    }

    fn read_cid(&mut self, doc: &Document, font: &Dictionary, cid_font: &Dictionary, face: Option<&Face>) {
        let number = |o: &Object| resolve(doc, o).as_float().ok();
        self.default_width = Some(cid_font.get(b"DW").ok().and_then(number).unwrap_or(1000.0) / 1000.0);
        // W: `c [w1 w2 ...]` or `c_first c_last w` (ISO 32000-1, 9.7.4.3).
        let w = cid_font.get(b"W").ok().map(|w| resolve(doc, w)).and_then(|w| w.as_array().ok());
        let mut items = w.into_iter().flatten().map(|o| resolve(doc, o)).peekable();
        while let Some(first) = items.next() {
            let Ok(first) = first.as_i64() else { break };
            let Ok(first) = u32::try_from(first) else { break };
            match items.next() {
                Some(Object::Array(list)) => {
                    for (i, v) in list.iter().enumerate().take(65_536) {
                        self.widths.insert(first + i as u32, number(v).unwrap_or(0.0) / 1000.0);
                    }
                }
                Some(last) => {
                    let (Ok(last), Some(width)) = (last.as_i64(), items.next().and_then(number)) else {
                        break;
                    };
                    for code in i64::from(first)..=last.min(i64::from(first) + 65_535) {
                        self.widths.insert(code as u32, width / 1000.0);
                    }
                }
                None => break,
            }
        }
        let encoding = font.get(b"Encoding").and_then(Object::as_name).unwrap_or_default();
        if encoding != b"Identity-H" && encoding != b"Identity-V" {
            return;
        }
        let to_glyph = match cid_font.get(b"CIDToGIDMap").ok().map(|m| resolve(doc, m)) {
            Some(Object::Stream(map)) => {
                let Ok(bytes) = map.decompressed_content_with_limit(MAX_DECODED_BYTES) else { return };
                Some(bytes.chunks_exact(2).map(|p| u16::from_be_bytes([p[0], p[1]])).collect())
            }
            _ => None,
        };
        self.glyphs = Glyphs::Cid { to_glyph, glyph_count: face.map(Face::number_of_glyphs) };
    }

    fn read_simple(&mut self, doc: &Document, font: &Dictionary, subtype: &[u8], face: Option<&Face>) {
        let int = |key: &[u8]| font.get(key).ok().and_then(|f| resolve(doc, f).as_i64().ok());
        let widths: Vec<f32> = font
            .get(b"Widths")
            .ok()
            .map(|w| resolve(doc, w))
            .and_then(|w| w.as_array().ok())
            .map(|a| a.iter().take(256).map(|v| resolve(doc, v).as_float().unwrap_or(0.0)).collect())
            .unwrap_or_default();
        let first = int(b"FirstChar").and_then(|f| u32::try_from(f).ok()).unwrap_or(0).min(255);
        for (i, w) in widths.iter().enumerate() {
            self.widths.insert(first + i as u32, w / 1000.0);
        }
        if widths.is_empty() || subtype == b"Type3" {
            return;
        }
        let last = first + widths.len() as u32 - 1;
        // A symbolic TrueType maps codes through its (3,0) or (1,0) cmap (ISO 32000-1, 9.6.6.4);
        // a font keyed by Unicode would need the encoding's names, so only the width range counts.
        let by_code = face.filter(|_| subtype == b"TrueType").and_then(code_keyed_glyphs);
        self.glyphs = Glyphs::Simple { first, last, by_code };
    }

    /// The advance of a shown string, in em.
    pub(super) fn width(&self, text: &[u8]) -> f32 {
        self.codes(text).map(|c| self.widths.get(&c).copied().or(self.default_width).unwrap_or(0.6)).sum()
    }

    /// The character codes of a shown string: bytes, or pairs of them for a Type 0 font.
    pub(super) fn codes<'t>(&self, text: &'t [u8]) -> impl Iterator<Item = u32> + 't {
        let step = if self.two_byte { 2 } else { 1 };
        text.chunks(step).map(|c| c.iter().fold(0, |code, &b| code << 8 | u32::from(b)))
    }

    /// Whether `code` shows .notdef, or nothing at all, instead of a glyph; `false` when unknown.
    pub(super) fn lacks(&self, code: u32) -> bool {
        match &self.glyphs {
            Glyphs::Unknown => false,
            Glyphs::Simple { first, last, by_code } => {
                !(*first..=*last).contains(&code)
                    || by_code.as_ref().is_some_and(|glyphs| glyphs[(code & 0xff) as usize] == 0)
            }
            Glyphs::Cid { to_glyph, glyph_count } => {
                let glyph = match to_glyph {
                    Some(map) => map.get(code as usize).copied().unwrap_or(0),
                    None => u16::try_from(code).unwrap_or(0),
                };
                glyph == 0 || glyph_count.is_some_and(|count| glyph >= count)
            }
        }
    }
}

/// The glyph of each one-byte code through a TrueType font's (3,0) or (1,0) cmap, when it has one.
fn code_keyed_glyphs(face: &Face) -> Option<Box<[u16; 256]>> {
    let subtables = face.tables().cmap?.subtables;
    let table = subtables
        .into_iter()
        .find(|t| t.platform_id == ttf_parser::PlatformId::Windows && t.encoding_id == 0)
        .map(|t| (t, true))
        .or_else(|| {
            subtables
                .into_iter()
                .find(|t| t.platform_id == ttf_parser::PlatformId::Macintosh && t.encoding_id == 0)
                .map(|t| (t, false))
        });
    let (table, symbol) = table?;
    let mut glyphs = Box::new([0u16; 256]);
    for (code, glyph) in glyphs.iter_mut().enumerate() {
        let code = code as u32;
        let found = if symbol {
            table.glyph_index(0xF000 | code).or_else(|| table.glyph_index(code))
        } else {
            table.glyph_index(code)
        };
        *glyph = found.map_or(0, |GlyphId(g)| g);
    }
    Some(glyphs)
}
