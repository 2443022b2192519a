//! The fonts of a book's text: a TrueType or OpenType file, measured with ttf-parser and
//! embedded as a subset of the glyphs the document used (subsetter), as a CID font so any script
//! the font covers prints (KDP rejects a PDF whose fonts are not embedded).
//!
//! A character the pipeline's font lacks is set in the first bundled fallback that has it
//! ([`Fonts`]), so an author named `Ada 字 🎨` prints in full; one no font has prints as the
//! empty .notdef box, and is warned about before the run (see `coverage`) and failed by preflight.
//!
//! Text is set glyph by glyph from the font's cmap, without shaping: right for Latin, Greek,
//! Cyrillic, Chinese, Japanese kana and other scripts whose letters need no joining or
//! reordering.

pub mod coverage;
mod subset;

pub use subset::FontUse;

use std::path::Path;
use std::sync::{Arc, LazyLock};

use ttf_parser::{Face, GlyphId};

/// Liberation Sans 2.1.5 (SIL Open Font License 1.1, `fonts/LICENSE-LiberationSans.txt`): the
/// font used when a pipeline names none.
static BUILTIN: &[u8] = include_bytes!("../../../fonts/LiberationSans-Regular.ttf");

/// The fallbacks, in the order they are tried after the pipeline's font (SIL Open Font License
/// 1.1; `fonts/README.md` says where each comes from and what it covers):
/// Noto Sans CJK SC cut to GB 2312 (6,763 hanzi), kana, CJK punctuation and full-width forms;
/// Noto Emoji, outline emoji that print in one ink.
static FALLBACK_FILES: [(&[u8], &str); 2] = [
    (
        include_bytes!("../../../fonts/NotoSansCJKsc-Regular-Subset.otf"),
        "the bundled Noto Sans CJK SC subset",
    ),
    (include_bytes!("../../../fonts/NotoEmoji-Regular.ttf"), "the bundled Noto Emoji"),
];

/// The fallbacks, parsed once.
static FALLBACKS: LazyLock<Vec<Font>> = LazyLock::new(|| {
    FALLBACK_FILES
        .iter()
        .map(|(data, origin)| {
            // Bundled files are known good; a failure here is a build defect the tests catch.
            Font::from_bytes(Arc::from(*data), origin)
                .unwrap_or_else(|e| unreachable!("a bundled font is broken: {e}"))
        })
        .collect()
});

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
        subsetter::subset(&data, 0, &subsetter::GlyphRemapper::new())
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
}

/// The fonts text is set in: the pipeline's own (or the built-in) font first, then the bundled
/// fallbacks; each character is set in the first that has a glyph for it.
#[derive(Clone)]
pub struct Fonts {
    fonts: Vec<Font>,
}

/// Which font of a [`Fonts`] sets a character, and its glyph there (0, .notdef, when none has it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pick {
    pub font: usize,
    pub glyph: u16,
}

impl Fonts {
    /// `primary`, then the bundled fallbacks.
    pub fn with_fallbacks(primary: Font) -> Fonts {
        let mut fonts = vec![primary];
        fonts.extend(FALLBACKS.iter().cloned());
        Fonts { fonts }
    }

    /// The fonts in the order they are tried.
    pub fn all(&self) -> &[Font] {
        &self.fonts
    }

    /// Each font parsed, for a run of lookups.
    fn faces(&self) -> Vec<Face<'_>> {
        self.fonts.iter().map(Font::face).collect()
    }

    /// The first font with a glyph for `c`; a space or control character, and a character no
    /// font has, go to the first font (which shows the latter as .notdef).
    fn pick_in(faces: &[Face], c: char) -> Pick {
        faces
            .iter()
            .enumerate()
            .find_map(|(font, face)| face.glyph_index(c).map(|GlyphId(glyph)| Pick { font, glyph }))
            .unwrap_or(Pick { font: 0, glyph: 0 })
    }

    /// Which font sets `c`, and with which glyph.
    pub fn pick(&self, c: char) -> Pick {
        Fonts::pick_in(&self.faces(), c)
    }

    /// The characters of `text` no font has a glyph for (spaces and controls aside), once each.
    pub fn uncovered(&self, text: &str) -> Vec<char> {
        let faces = self.faces();
        let mut missing: Vec<char> = Vec::new();
        for c in text.chars() {
            let printable = !c.is_whitespace() && !c.is_control();
            if printable && Fonts::pick_in(&faces, c).glyph == 0 && !missing.contains(&c) {
                missing.push(c);
            }
        }
        missing
    }

    /// The printed width of `text` at `size` points, each character in the font that sets it.
    pub fn width(&self, text: &str, size: f32) -> f32 {
        let faces = self.faces();
        text.chars()
            .map(|c| {
                let pick = Fonts::pick_in(&faces, c);
                let units = faces[pick.font].glyph_hor_advance(GlyphId(pick.glyph)).unwrap_or(0);
                f32::from(units) * size / self.fonts[pick.font].units_per_em
            })
            .sum()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_builtin_font_covers_latin_greek_and_cyrillic_and_the_fallbacks_cjk_and_emoji() {
        let fonts = Fonts::with_fallbacks(Font::builtin());
        let picks = |text: &str| text.chars().map(|c| fonts.pick(c).font).collect::<Vec<_>>();
        assert_eq!(picks("Café – naïve Ωμέγα Жираф"), vec![0; 24]);
        // Each character in the first font that has it: Latin in Liberation Sans, hanzi and
        // kana in the CJK subset, the palette in Noto Emoji.
        assert_eq!(picks("Ada 字 か 🎨"), [0, 0, 0, 0, 1, 0, 1, 0, 2]);
        assert!(fonts.pick('字').glyph != 0 && fonts.pick('🎨').glyph != 0);
        assert!(fonts.uncovered("Ada 字 🎨 かな").is_empty());
    }

    #[test]
    fn a_character_no_font_has_is_uncovered_and_falls_to_the_first_font() {
        let fonts = Fonts::with_fallbacks(Font::builtin());
        // Hangul and Linear B are in none of the bundled fonts.
        assert_eq!(fonts.uncovered("Ada 한 𐀀 한"), ['한', '𐀀']);
        assert_eq!(fonts.pick('한'), Pick { font: 0, glyph: 0 });
    }

    #[test]
    fn a_pipelines_own_font_comes_before_the_fallbacks() {
        // The CJK subset named as the pipeline's font sets the Latin letters it has, too.
        let cjk = FALLBACKS[0].clone();
        let fonts = Fonts::with_fallbacks(cjk);
        assert_eq!(fonts.pick('A').font, 0);
        assert_eq!(fonts.pick('é').font, 0);
        assert_eq!(fonts.all().len(), 3);
    }

    #[test]
    fn widths_follow_the_font_metrics() {
        let fonts = Fonts::with_fallbacks(Font::builtin());
        // Liberation Sans is metric-compatible with Arial/Helvetica: "i" is 222/1000 em, "W" 944.
        assert!((fonts.width("i", 10.0) - 2.22).abs() < 0.01, "{}", fonts.width("i", 10.0));
        assert!((fonts.width("W", 10.0) - 9.44).abs() < 0.01, "{}", fonts.width("W", 10.0));
        // A hanzi is one em wide in Noto Sans CJK.
        assert!((fonts.width("字", 10.0) - 10.0).abs() < 0.01, "{}", fonts.width("字", 10.0));
    }

    #[test]
    fn wrap_keeps_every_line_within_the_width() {
        let fonts = Fonts::with_fallbacks(Font::builtin());
        let text =
            "a cheerful fox with a very long tail in a forest of supercalifragilisticexpialidocious trees";
        let lines = fonts.wrap(text, 12.0, 100.0);
        assert!(lines.len() > 3);
        assert!(lines.iter().all(|l| fonts.width(l, 12.0) <= 100.0), "{lines:?}");
        assert_eq!(lines.join("").replace(' ', ""), text.replace(' ', ""));
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
