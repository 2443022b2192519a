//! The font of a book's text: a TrueType or OpenType file, measured with ttf-parser and embedded
//! as a subset of the glyphs the document used (subsetter), as a CID font so any script the
//! font covers prints (KDP rejects a PDF whose fonts are not embedded).
//!
//! Text is set glyph by glyph from the font's cmap, without shaping: right for Latin, Greek,
//! Cyrillic and other scripts whose letters need no joining or reordering.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Chunk, Content, Filter, Finish, Name, Rect, Ref, Str};
use sha2::{Digest, Sha256};
use subsetter::GlyphRemapper;
use ttf_parser::{Face, GlyphId, Tag};

/// Liberation Sans 2.1.5 (SIL Open Font License 1.1, `fonts/LICENSE-LiberationSans.txt`): the
/// font used when a pipeline names none.
static BUILTIN: &[u8] = include_bytes!("../../fonts/LiberationSans-Regular.ttf");

/// A parsed font file, cheap to clone.
#[derive(Clone)]
pub struct Font {
    data: Arc<[u8]>,
    /// Where it came from, for messages.
    origin: String,
    postscript_name: String,
    units_per_em: f32,
}

impl Font {
    /// The bundled Liberation Sans.
    pub fn builtin() -> Font {
        // The bundled file is known good; a failure here is a build defect the tests catch.
        Font::from_bytes(Arc::from(BUILTIN), "the built-in Liberation Sans")
            .unwrap_or_else(|e| unreachable!("the bundled font is broken: {e}"))
    }

    /// Reads a `.ttf` or `.otf` file (the first face of a collection).
    pub fn load(path: &Path) -> Result<Font, String> {
        let data =
            std::fs::read(path).map_err(|e| format!("cannot read the font {}: {e}", path.display()))?;
        Font::from_bytes(Arc::from(data), &path.display().to_string())
    }

    fn from_bytes(data: Arc<[u8]>, origin: &str) -> Result<Font, String> {
        let face = Face::parse(&data, 0).map_err(|e| format!("{origin} is not a usable font: {e}"))?;
        if face.tables().cmap.is_none() {
            return Err(format!("{origin} has no character map (cmap)"));
        }
        // Refused now rather than after a whole batch: subsetter cannot cut CFF2 fonts.
        subsetter::subset(&data, 0, &GlyphRemapper::new())
            .map_err(|e| format!("{origin} cannot be embedded as a subset: {e}"))?;
        let postscript_name = face
            .names()
            .into_iter()
            .filter(|n| n.name_id == ttf_parser::name_id::POST_SCRIPT_NAME)
            .find_map(|n| n.to_string())
            .map(|n| n.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect::<String>())
            .filter(|n| !n.is_empty())
            .unwrap_or_else(|| "Font".to_owned());
        let units_per_em = f32::from(face.units_per_em());
        Ok(Font { data, origin: origin.to_owned(), postscript_name, units_per_em })
    }

    fn face(&self) -> Face<'_> {
        // Parsed once in `from_bytes`; the same bytes parse again.
        Face::parse(&self.data, 0).unwrap_or_else(|e| unreachable!("{} parsed before: {e}", self.origin))
    }

    /// Where the font came from, for messages.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// True when the font has a glyph for every character of `text` (spaces aside).
    pub fn covers(&self, text: &str) -> bool {
        let face = self.face();
        text.chars().all(|c| c.is_whitespace() || face.glyph_index(c).is_some())
    }

    /// The printed width of `text` at `size` points.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let face = self.face();
        let units: u32 = text
            .chars()
            .map(|c| {
                u32::from(face.glyph_hor_advance(face.glyph_index(c).unwrap_or(GlyphId(0))).unwrap_or(0))
            })
            .sum();
        units as f32 * size / self.units_per_em
    }

    /// Greedy word wrap; a word wider than the line is broken between characters.
    pub fn wrap(&self, text: &str, size: f32, max_width: f32) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in text.split_whitespace() {
            let candidate = if line.is_empty() { word.to_owned() } else { format!("{line} {word}") };
            if self.width(&candidate, size) <= max_width {
                line = candidate;
                continue;
            }
            if !line.is_empty() {
                lines.push(std::mem::take(&mut line));
            }
            for c in word.chars() {
                line.push(c);
                if self.width(&line, size) > max_width && line.chars().count() > 1 {
                    line.pop();
                    lines.push(std::mem::replace(&mut line, c.to_string()));
                }
            }
        }
        if !line.is_empty() {
            lines.push(line);
        }
        lines
    }
}

/// The glyphs one document shows, collected while its pages are written, then embedded once
/// at the end as a subset under the resource name [`FONT_NAME`].
pub struct FontUse {
    font: Font,
    remapper: GlyphRemapper,
    /// The text each subset glyph stands for, for copy and search (ToUnicode).
    unicode: BTreeMap<u16, char>,
    /// Characters the font has no glyph for: they print as the font's empty box.
    missing: BTreeSet<char>,
}

/// The resource name pages give the font.
pub const FONT_NAME: &[u8] = b"F1";

impl FontUse {
    pub fn new(font: Font) -> Self {
        // Holds glyph 0 (.notdef) from the start, as every font program expects.
        let remapper = GlyphRemapper::new();
        FontUse { font, remapper, unicode: BTreeMap::new(), missing: BTreeSet::new() }
    }

    pub fn font(&self) -> &Font {
        &self.font
    }

    /// Characters the text used that the font lacks.
    pub fn missing(&self) -> &BTreeSet<char> {
        &self.missing
    }

    /// Shows `text` at (`x`, `y`), baseline left, at `size` points.
    pub fn show(&mut self, content: &mut Content, text: &str, size: f32, x: f32, y: f32) {
        let face = self.font.face();
        let mut codes = Vec::with_capacity(text.len() * 2);
        for c in text.chars() {
            let glyph = match face.glyph_index(c) {
                Some(glyph) => glyph.0,
                None => {
                    if !c.is_control() {
                        self.missing.insert(c);
                    }
                    0
                }
            };
            let cid = self.remapper.remap(glyph);
            if glyph != 0 {
                self.unicode.entry(cid).or_insert(c);
            }
            codes.extend_from_slice(&cid.to_be_bytes());
        }
        content.begin_text();
        content.set_font(Name(FONT_NAME), size);
        content.next_line(x, y);
        content.show(Str(&codes));
        content.end_text();
    }

    /// `text` wrapped to `width` with each line centred on it, from the baseline `y` down;
    /// returns the baseline after the last line.
    pub fn centred(
        &mut self,
        content: &mut Content,
        text: &str,
        size: f32,
        x0: f32,
        width: f32,
        mut y: f32,
    ) -> f32 {
        for line in self.font.wrap(text, size, width) {
            let x = x0 + (width - self.font.width(&line, size)) / 2.0;
            self.show(content, &line, size, x, y);
            y -= size * 1.25;
        }
        y
    }

    /// The font's objects, one per chunk: the Type 0 font at `font_ref` and what it points to,
    /// numbered with `alloc`.
    pub fn write(&self, font_ref: Ref, mut alloc: impl FnMut() -> Ref) -> Result<Vec<Chunk>, String> {
        let face = self.font.face();
        let origin = &self.font.origin;
        let subset = subsetter::subset(&self.font.data, 0, &self.remapper)
            .map_err(|e| format!("cannot subset {origin}: {e}"))?;
        let is_cff = face.raw_face().table(Tag::from_bytes(b"CFF ")).is_some();
        let scale = 1000.0 / self.font.units_per_em;

        // Subset fonts are named with a tag of six capitals (ISO 32000-1, 9.6.4).
        let mut hasher = Sha256::new();
        for glyph in self.remapper.remapped_gids() {
            hasher.update(glyph.to_be_bytes());
        }
        let tag: String = hasher.finalize().iter().take(6).map(|b| char::from(b'A' + b % 26)).collect();
        let base_font = format!("{tag}+{}", self.font.postscript_name);
        let base_font = Name(base_font.as_bytes());

        let (cid_ref, descriptor_ref, cmap_ref, file_ref) = (alloc(), alloc(), alloc(), alloc());
        let mut chunks = Vec::with_capacity(5);

        let mut chunk = Chunk::new();
        chunk
            .type0_font(font_ref)
            .base_font(base_font)
            .encoding_predefined(Name(b"Identity-H"))
            .descendant_font(cid_ref)
            .to_unicode(cmap_ref);
        chunks.push(chunk);

        let mut chunk = Chunk::new();
        let mut cid = chunk.cid_font(cid_ref);
        cid.subtype(if is_cff { CidFontType::Type0 } else { CidFontType::Type2 });
        cid.base_font(base_font);
        cid.system_info(SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"Identity"), supplement: 0 });
        cid.font_descriptor(descriptor_ref);
        let widths: Vec<f32> = self
            .remapper
            .remapped_gids()
            .map(|glyph| f32::from(face.glyph_hor_advance(GlyphId(glyph)).unwrap_or(0)) * scale)
            .collect();
        cid.widths().consecutive(0, widths);
        if !is_cff {
            cid.cid_to_gid_map_predefined(Name(b"Identity"));
        }
        cid.finish();
        chunks.push(chunk);

        let bbox = face.global_bounding_box();
        let mut flags = FontFlags::SYMBOLIC;
        if face.is_italic() {
            flags |= FontFlags::ITALIC;
        }
        if face.is_monospaced() {
            flags |= FontFlags::FIXED_PITCH;
        }
        let ascent = f32::from(face.ascender()) * scale;
        let mut chunk = Chunk::new();
        let mut descriptor = chunk.font_descriptor(descriptor_ref);
        descriptor
            .name(base_font)
            .flags(flags)
            .bbox(Rect::new(
                f32::from(bbox.x_min) * scale,
                f32::from(bbox.y_min) * scale,
                f32::from(bbox.x_max) * scale,
                f32::from(bbox.y_max) * scale,
            ))
            .italic_angle(face.italic_angle())
            .ascent(ascent)
            .descent(f32::from(face.descender()) * scale)
            .cap_height(face.capital_height().map_or(ascent, |h| f32::from(h) * scale))
            .stem_v(80.0);
        if is_cff {
            descriptor.font_file3(file_ref);
        } else {
            descriptor.font_file2(file_ref);
        }
        descriptor.finish();
        chunks.push(chunk);

        let mut cmap = UnicodeCmap::new(
            Name(b"Adobe-Identity-UCS"),
            SystemInfo { registry: Str(b"Adobe"), ordering: Str(b"UCS"), supplement: 0 },
        );
        for (&cid, &c) in &self.unicode {
            cmap.pair(cid, c);
        }
        let cmap = cmap.finish();
        let mut chunk = Chunk::new();
        chunk.cmap(cmap_ref, &cmap);
        chunks.push(chunk);

        let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&subset, 6);
        let mut chunk = Chunk::new();
        let mut stream = chunk.stream(file_ref, &compressed);
        stream.filter(Filter::FlateDecode);
        if is_cff {
            stream.pair(Name(b"Subtype"), Name(b"OpenType"));
        } else {
            let length =
                i32::try_from(subset.len()).map_err(|_| format!("the subset of {origin} is too large"))?;
            stream.pair(Name(b"Length1"), length);
        }
        stream.finish();
        chunks.push(chunk);
        Ok(chunks)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_font_covers_latin_greek_and_cyrillic() {
        let font = Font::builtin();
        assert!(font.covers("Café – naïve Ωμέγα Жираф"));
        assert!(!font.covers("猫"));
    }

    #[test]
    fn widths_follow_the_font_metrics() {
        let font = Font::builtin();
        // Liberation Sans is metric-compatible with Arial/Helvetica: "i" is 222/1000 em, "W" 944.
        assert!((font.width("i", 10.0) - 2.22).abs() < 0.01, "{}", font.width("i", 10.0));
        assert!((font.width("W", 10.0) - 9.44).abs() < 0.01, "{}", font.width("W", 10.0));
    }

    #[test]
    fn wrap_keeps_every_line_within_the_width() {
        let font = Font::builtin();
        let text =
            "a cheerful fox with a very long tail in a forest of supercalifragilisticexpialidocious trees";
        let lines = font.wrap(text, 12.0, 100.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| font.width(l, 12.0) <= 100.0), "{lines:?}");
        assert_eq!(lines.join("").replace(' ', ""), text.replace(' ', ""));
    }

    #[test]
    fn shown_text_is_two_byte_subset_glyph_ids_and_missing_characters_are_noted() {
        let mut fonts = FontUse::new(Font::builtin());
        let mut content = Content::new();
        fonts.show(&mut content, "aba猫", 12.0, 0.0, 0.0);
        let bytes = content.finish().into_vec();
        // a -> 1, b -> 2, a -> 1, 猫 -> .notdef 0 (glyph 0 was remapped first).
        let shown = br"(\000\001\000\002\000\001\000\000) Tj";
        assert!(bytes.windows(shown.len()).any(|w| w == shown), "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(fonts.missing().iter().collect::<String>(), "猫");
        let chunks = fonts.write(Ref::new(1), {
            let mut next = 1;
            move || {
                next += 1;
                Ref::new(next)
            }
        });
        let chunks = chunks.unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(chunks.len(), 5);
        let font_dict = String::from_utf8_lossy(chunks[0].as_bytes()).into_owned();
        assert!(font_dict.contains("+LiberationSans") && font_dict.contains("/Identity-H"), "{font_dict}");
    }

    #[test]
    fn a_file_that_is_no_font_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let path = dir.path().join("not-a-font.ttf");
        std::fs::write(&path, b"hello").unwrap_or_else(|e| panic!("{e}"));
        let message = Font::load(&path).err().unwrap_or_default();
        assert!(message.contains("not-a-font.ttf") && message.contains("not a usable font"), "{message}");
    }
}
