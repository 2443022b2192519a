//! The fonts one document shows, each cut to the glyphs it used and embedded once at the end.

use std::collections::{BTreeMap, BTreeSet};

use pdf_writer::types::{CidFontType, FontFlags, SystemInfo, UnicodeCmap};
use pdf_writer::{Chunk, Content, Filter, Finish, Name, Rect, Ref, Str};
use sha2::{Digest, Sha256};
use subsetter::GlyphRemapper;
use ttf_parser::{GlyphId, Tag};

use super::{Font, Fonts};

/// One font's share of a document: the glyphs it showed.
struct Subset {
    remapper: GlyphRemapper,
    /// The text each subset glyph stands for, for copy and search (ToUnicode).
    unicode: BTreeMap<u16, char>,
    /// Whether any text was set in it: only those are embedded.
    shown: bool,
}

/// The glyphs one document shows, collected while its pages are written, then embedded once
/// at the end. Pages name their fonts through one shared font dictionary (see [`FontUse::write`]),
/// since which fallbacks a book needs is known only once all of it is set.
pub struct FontUse {
    fonts: Fonts,
    subsets: Vec<Subset>,
    /// Characters no font has a glyph for: they print as the first font's empty box.
    missing: BTreeSet<char>,
}

/// The resource name of the font at `index` in the chain: `F1`, `F2`, ...
fn resource_name(index: usize) -> String {
    format!("F{}", index + 1)
}

impl FontUse {
    /// Text set in `font`, then in the bundled fallbacks.
    pub fn new(font: Font) -> Self {
        let fonts = Fonts::with_fallbacks(font);
        // Each holds glyph 0 (.notdef) from the start, as every font program expects.
        let subsets = fonts
            .all()
            .iter()
            .map(|_| Subset { remapper: GlyphRemapper::new(), unicode: BTreeMap::new(), shown: false })
            .collect();
        FontUse { fonts, subsets, missing: BTreeSet::new() }
    }

    /// The fonts text is set in, for measuring it.
    pub fn fonts(&self) -> &Fonts {
        &self.fonts
    }

    /// Characters the text used that no font has.
    pub fn missing(&self) -> &BTreeSet<char> {
        &self.missing
    }

    /// Shows `text` at (`x`, `y`), baseline left, at `size` points: each run of characters in
    /// the first font that has them.
    pub fn show(&mut self, content: &mut Content, text: &str, size: f32, x: f32, y: f32) {
        content.begin_text();
        content.next_line(x, y);
        let mut run: Option<usize> = None;
        let mut codes = Vec::with_capacity(text.len() * 2);
        let faces = self.fonts.faces();
        for c in text.chars() {
            let pick = Fonts::pick_in(&faces, c);
            if pick.glyph == 0 && !c.is_control() && !c.is_whitespace() {
                self.missing.insert(c);
            }
            if run != Some(pick.font) {
                if !codes.is_empty() {
                    content.show(Str(&codes));
                    codes.clear();
                }
                content.set_font(Name(resource_name(pick.font).as_bytes()), size);
                run = Some(pick.font);
            }
            let subset = &mut self.subsets[pick.font];
            subset.shown = true;
            let cid = subset.remapper.remap(pick.glyph);
            if pick.glyph != 0 {
                subset.unicode.entry(cid).or_insert(c);
            }
            codes.extend_from_slice(&cid.to_be_bytes());
        }
        if !codes.is_empty() {
            content.show(Str(&codes));
        }
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
        for line in self.fonts.wrap(text, size, width) {
            let x = x0 + (width - self.fonts.width(&line, size)) / 2.0;
            self.show(content, &line, size, x, y);
            y -= size * 1.25;
        }
        y
    }

    /// The font dictionary pages name as their `/Font` resource, at `dictionary`, naming every
    /// font text was set in; then each of those fonts' objects, one per chunk, numbered with
    /// `alloc`.
    pub fn write(&self, dictionary: Ref, mut alloc: impl FnMut() -> Ref) -> Result<Vec<Chunk>, String> {
        let mut chunks = Vec::new();
        let mut named = Vec::new();
        for (index, (font, subset)) in self.fonts.all().iter().zip(&self.subsets).enumerate() {
            if subset.shown {
                let font_ref = alloc();
                chunks.extend(write_font(font, subset, font_ref, &mut alloc)?);
                named.push((resource_name(index), font_ref));
            }
        }
        let mut chunk = Chunk::new();
        let mut dict = chunk.indirect(dictionary).dict();
        for (name, font_ref) in &named {
            dict.pair(Name(name.as_bytes()), *font_ref);
        }
        dict.finish();
        chunks.insert(0, chunk);
        Ok(chunks)
    }
}

/// One font's objects: the Type 0 font at `font_ref` and what it points to.
fn write_font(
    font: &Font,
    subset: &Subset,
    font_ref: Ref,
    mut alloc: impl FnMut() -> Ref,
) -> Result<Vec<Chunk>, String> {
    let face = font.face();
    let origin = &font.origin;
    let remapper = &subset.remapper;
    let data =
        subsetter::subset(&font.data, 0, remapper).map_err(|e| format!("cannot subset {origin}: {e}"))?;
    let is_cff = face.raw_face().table(Tag::from_bytes(b"CFF ")).is_some();
    let scale = 1000.0 / font.units_per_em;

    // Subset fonts are named with a tag of six capitals (ISO 32000-1, 9.6.4).
    let mut hasher = Sha256::new();
    for glyph in remapper.remapped_gids() {
        hasher.update(glyph.to_be_bytes());
    }
    let tag: String = hasher.finalize().iter().take(6).map(|b| char::from(b'A' + b % 26)).collect();
    let base_font = format!("{tag}+{}", font.postscript_name);
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
    let widths: Vec<f32> = remapper
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
    for (&cid, &c) in &subset.unicode {
        cmap.pair(cid, c);
    }
    let cmap = cmap.finish();
    let mut chunk = Chunk::new();
    chunk.cmap(cmap_ref, &cmap);
    chunks.push(chunk);

    let compressed = miniz_oxide::deflate::compress_to_vec_zlib(&data, 6);
    let mut chunk = Chunk::new();
    let mut stream = chunk.stream(file_ref, &compressed);
    stream.filter(Filter::FlateDecode);
    if is_cff {
        stream.pair(Name(b"Subtype"), Name(b"OpenType"));
    } else {
        let length = i32::try_from(data.len()).map_err(|_| format!("the subset of {origin} is too large"))?;
        stream.pair(Name(b"Length1"), length);
    }
    stream.finish();
    chunks.push(chunk);
    Ok(chunks)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbered() -> impl FnMut() -> Ref {
        let mut next = 1;
        move || {
            next += 1;
            Ref::new(next)
        }
    }

    #[test]
    fn shown_text_is_two_byte_subset_glyph_ids_and_missing_characters_are_noted() {
        let mut fonts = FontUse::new(Font::builtin());
        let mut content = Content::new();
        fonts.show(&mut content, "aba한", 12.0, 0.0, 0.0);
        let bytes = content.finish().into_vec();
        // a -> 1, b -> 2, a -> 1, 한 (in no font) -> .notdef 0 (glyph 0 was remapped first).
        let shown = b"/F1 12 Tf\n(\\000\\001\\000\\002\\000\\001\\000\\000) Tj";
        assert!(bytes.windows(shown.len()).any(|w| w == shown), "{}", String::from_utf8_lossy(&bytes));
        assert_eq!(fonts.missing().iter().collect::<String>(), "한");
        let chunks = fonts.write(Ref::new(1), numbered()).unwrap_or_else(|e| panic!("{e}"));
        // The font dictionary naming the one font used, then its five objects.
        assert_eq!(chunks.len(), 6);
        let dictionary = String::from_utf8_lossy(chunks[0].as_bytes()).into_owned();
        assert!(dictionary.contains("/F1 2 0 R") && !dictionary.contains("/F2"), "{dictionary}");
        let font_dict = String::from_utf8_lossy(chunks[1].as_bytes()).into_owned();
        assert!(font_dict.contains("+LiberationSans") && font_dict.contains("/Identity-H"), "{font_dict}");
    }

    #[test]
    fn a_character_the_font_lacks_is_set_in_the_first_fallback_that_has_it() {
        let mut fonts = FontUse::new(Font::builtin());
        let mut content = Content::new();
        fonts.show(&mut content, "Ada 字 🎨", 18.0, 0.0, 0.0);
        let bytes = String::from_utf8_lossy(&content.finish().into_vec()).into_owned();
        let switches: Vec<&str> = bytes.split_whitespace().filter(|w| w.starts_with("/F")).collect();
        assert_eq!(switches, ["/F1", "/F2", "/F1", "/F3"], "{bytes}");
        assert!(fonts.missing().is_empty());
        let chunks = fonts.write(Ref::new(1), numbered()).unwrap_or_else(|e| panic!("{e}"));
        let names: Vec<String> = chunks
            .iter()
            .map(|c| String::from_utf8_lossy(c.as_bytes()).into_owned())
            .filter(|c| c.contains("/Type /Font") && c.contains("/Type0"))
            .collect();
        assert_eq!(names.len(), 3, "{names:?}");
        for family in ["LiberationSans", "NotoSansCJKsc-Regular", "NotoEmoji-Regular"] {
            assert!(names.iter().any(|n| n.contains(&format!("+{family}"))), "{family}: {names:?}");
        }
    }
}
