//! Character folding for the `safety` matcher: every character of a prompt, term or allow
//! phrase becomes the lowercase Latin letters it reads as, so a rule matches however the prompt
//! spells its words. Words and leetspeak are `canonical.rs`'s business.
//!
//! 1. Default-ignorable characters (Unicode's Default_Ignorable_Code_Point: Hangul fillers,
//!    zero-width spaces and joiners, soft hyphens, variation selectors, bidi controls, tags) and
//!    apostrophes are dropped, so `nu\u{115F}de`, `nu\u{200B}de` and `‘nude’` read as `nude`.
//! 2. ASCII stays as it is (lowercased): what its digits and symbols stand for depends on the
//!    word around them.
//! 3. Anything else gets its compatibility decomposition (NFKD) with combining marks removed:
//!    fullwidth `ｎｕｄｅ`, mathematical `𝐧𝐮𝐝𝐞`, circled `ⓝⓤⓓⓔ`, squared `🄽`, parenthesized
//!    `⒩` and accented `nüdé` all become `nude`.
//! 4. What is still not ASCII is read by Unicode's confusables data (the UTS #39 skeleton, from
//!    the `unicode-security` crate): Cyrillic `nudе`, Greek `ρο`, Armenian `gսn` and `ոude`,
//!    Cherokee `ᏀᎾᏒᎬ` read as Latin. A letter whose skeleton is not Latin is tried by its
//!    capital (Cyrillic `в` is drawn like `ʙ`, its capital `В` like `B`); the small-capital
//!    prototypes (`ʙ`, `ᴛ`, `ɴ`...) read as their letter, and the prototype `rn` as the `m` it
//!    stands for. A letter that imitates nothing Latin stays itself, lowercased.
//! 5. Letters in a shape that Unicode does not decompose, negative circled `🅝`, negative squared
//!    `🅽` and regional indicators `🇳`, read as their letter.

use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};
use unicode_security::skeleton;

/// What a folded character is for splitting words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Class {
    Letter,
    Digit,
    /// `@` and `$`: part of a word wherever they are.
    Symbol,
    /// `!`, `|`, `+`: part of a word only between two letters or digits.
    Inner,
    /// `*`, `#`, `_`, `.`: a separator, or a masked letter inside a word (`p*rn`).
    Mask,
    Separator,
}

/// How a folded character may read as `i` or `l`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Stroke {
    /// Just the letter it is.
    Plain,
    /// An uppercase `I`: looks like `l` inside a word, but is the pronoun alone.
    CapitalI,
    /// A vertical stroke from another script (`ӏ`, `ǀ`) that Unicode reads as `l` but looks as
    /// much like `I`.
    Either,
}

/// One character after folding, with the original bytes it came from.
#[derive(Clone, Debug)]
pub(super) struct Folded {
    pub(super) ch: char,
    pub(super) origin: Range<usize>,
    pub(super) class: Class,
    pub(super) stroke: Stroke,
}

/// Folds every character of `text` as the module documentation says.
pub(super) fn fold(text: &str) -> Vec<Folded> {
    let mut out = Vec::with_capacity(text.len());
    for (start, ch) in text.char_indices() {
        let origin = start..start + ch.len_utf8();
        let mut push = |letter: char, stroke: Stroke| {
            out.push(Folded { ch: letter, origin: origin.clone(), class: classify(letter), stroke });
        };
        if ch.is_ascii() {
            if !is_apostrophe(ch) {
                push(ch.to_ascii_lowercase(), if ch == 'I' { Stroke::CapitalI } else { Stroke::Plain });
            }
            continue;
        }
        if is_apostrophe(ch) || is_default_ignorable(ch) {
            continue;
        }
        decompose_compatible(ch, |part| {
            // The parentheses of `⒩` are its drawing, not punctuation of the prompt.
            if is_combining_mark(part) || part == '(' || part == ')' {
                return;
            }
            if part.is_ascii() {
                push(part.to_ascii_lowercase(), Stroke::Plain);
                return;
            }
            let latin = latin_reading(part);
            match latin.as_deref() {
                Some("l") => push('l', Stroke::Either),
                Some(letters) => letters.chars().for_each(|c| push(c, Stroke::Plain)),
                None => part.to_lowercase().for_each(|c| push(c, Stroke::Plain)),
            }
        });
    }
    out
}

fn is_apostrophe(ch: char) -> bool {
    matches!(ch, '\'' | '\u{2018}' | '\u{2019}' | '\u{02BC}')
}

/// Whether `ch` is a Default_Ignorable_Code_Point. The UTS #39 skeleton removes exactly these,
/// so a character whose skeleton is empty is one (the crate keeps its table private).
fn is_default_ignorable(ch: char) -> bool {
    let mut buf = [0u8; 4];
    skeleton(ch.encode_utf8(&mut buf)).next().is_none()
}

/// The lowercase Latin letters or digits a non-ASCII character imitates, if any.
fn latin_reading(ch: char) -> Option<String> {
    let mut buf = [0u8; 4];
    prototype(ch.encode_utf8(&mut buf))
        .or_else(|| {
            let capital: String = ch.to_uppercase().collect();
            (capital.chars().ne([ch])).then(|| prototype(&capital)).flatten()
        })
        .or_else(|| enclosed_letter(ch).map(String::from))
}

/// The UTS #39 skeleton of `text` as lowercase ASCII letters and digits, or `None` when it has
/// anything else.
fn prototype(text: &str) -> Option<String> {
    let mut latin = String::new();
    for ch in skeleton(text).filter(|&c| !is_combining_mark(c)) {
        let ch = small_capital(ch).unwrap_or(ch);
        if !ch.is_ascii_alphanumeric() {
            return None;
        }
        latin.push(ch.to_ascii_lowercase());
    }
    match latin.as_str() {
        "" => None,
        // The skeleton writes every `m` look-alike as `rn`.
        "rn" => Some("m".to_owned()),
        _ => Some(latin),
    }
}

/// The letter a small-capital prototype of the confusables data stands for (`ʙ` for Cyrillic
/// `в`, `ᴛ` for `т` and Greek `τ`); UTS #39 keeps them apart from the Latin lowercase.
fn small_capital(ch: char) -> Option<char> {
    Some(match ch {
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ᴊ' => 'j',
        'ĸ' => 'k',
        'ʟ' => 'l',
        'ʍ' => 'm',
        'ɴ' => 'n',
        'ᴘ' => 'p',
        'ʀ' => 'r',
        'ᴛ' => 't',
        _ => return None,
    })
}

/// Negative circled (`🅝`), negative squared (`🅽`) and regional indicator (`🇳`) letters: each
/// is a block of A to Z in order, with no decomposition to its letter.
fn enclosed_letter(ch: char) -> Option<char> {
    const FIRST_A: [u32; 3] = [0x1F150, 0x1F170, 0x1F1E6];
    FIRST_A.iter().find_map(|&a| {
        let offset = (ch as u32).checked_sub(a).filter(|&i| i < 26)?;
        char::from_u32('a' as u32 + offset)
    })
}

fn classify(ch: char) -> Class {
    match ch {
        '0'..='9' => Class::Digit,
        '@' | '$' => Class::Symbol,
        '!' | '|' | '+' => Class::Inner,
        '*' | '#' | '_' | '.' => Class::Mask,
        c if c.is_alphanumeric() => Class::Letter,
        _ => Class::Separator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(text: &str) -> String {
        fold(text).iter().map(|f| f.ch).collect()
    }

    #[test]
    fn other_scripts_read_as_the_latin_letters_they_imitate() {
        for (text, latin) in [
            ("gսn ոude", "gun nude"),             // Armenian
            ("nudе пот", "nude пot"),             // Cyrillic е, and п which imitates nothing
            ("вот", "bot"),                       // Cyrillic small letters drawn like small capitals
            ("ρορn", "popn"),                     // Greek
            ("ᏀᎾᏒᎬ", "gore"),                     // Cherokee
            ("ꮐꮎꮢꭼ", "gore"),                     // Cherokee small letters, read by their capitals
            ("ɴᴜᴅᴇ", "nude"),                     // Latin small capitals
            ("🅽🆄🅳🅴 🅝🅤🅓🅔 🇳🇺🇩🇪", "nude nude nude"), // enclosed letters without decomposition
            ("⒩⒰⒟⒠ ⓝⓤⓓⓔ 🄽🅄🄳🄴", "nude nude nude"), // enclosed letters that decompose
            ("straße œuvre", "strasse oeuvre"),
        ] {
            assert_eq!(letters(text), latin, "{text}");
        }
    }

    #[test]
    fn default_ignorable_characters_vanish() {
        for filler in ['\u{115F}', '\u{1160}', '\u{3164}', '\u{FFA0}', '\u{200D}', '\u{FE0F}', '\u{E0041}'] {
            assert_eq!(letters(&format!("nu{filler}de")), "nude", "U+{:04X}", filler as u32);
        }
    }

    #[test]
    fn ascii_is_left_to_the_word_rules() {
        assert_eq!(letters("Mm 1I0|"), "mm 1i0|");
        assert_eq!(fold("I")[0].stroke, Stroke::CapitalI);
        assert_eq!(fold("ӏ")[0].stroke, Stroke::Either);
    }
}
