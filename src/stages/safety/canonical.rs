//! Normalisation for the `safety` matcher: terms, allow phrases and prompts are folded to one
//! canonical text of lowercase words, remembering where each byte came from.
//!
//! # Folding
//!
//! Terms, allow phrases and prompts all go through the same folding, so a rule matches however
//! the prompt spells its words:
//!
//! 1. Invisible characters (zero-width spaces and joiners, soft hyphens, bidi controls) and
//!    apostrophes are dropped, so `nu\u{200B}de` and `‘nude’` read as `nude`.
//! 2. Each character gets its Unicode compatibility decomposition (NFKD, the decomposing half of
//!    NFKC) with combining marks removed, then lowercase: fullwidth `ｎｕｄｅ`, mathematical
//!    `𝐧𝐮𝐝𝐞`, circled letters and accented `nüdé` all become `nude`. `ß`, `æ` and `œ` expand to
//!    `ss`, `ae` and `oe` as full case folding does.
//! 3. Look-alike letters from Cyrillic, Greek and the Latin small capitals map to the Latin
//!    letter they imitate (`nudе` with a Cyrillic `е`, small capitals `ɴᴜᴅᴇ`).
//! 4. The text splits into words at every character that is not a letter or digit. `@` and `$`
//!    count as letters (`a$$`); `!`, `|` and `+` count only between two letters or digits
//!    (`k!ll`), so `gun!` still ends in `gun`.
//! 5. Inside a word holding at least one letter (or made only of `@` and `$`, like `@$$`),
//!    leetspeak digits and symbols become letters (`0`→o, `3`→e, `4`→a, `5`→s, `7`→t, `8`→b,
//!    `9`→g, `@`→a, `$`→s, `+`→t). `1`, `!`, `|` and an uppercase `I` inside a word look like
//!    both `i` and `l`: when such a character occurs, the text is matched twice, once reading
//!    them as `i` and once as `l`. Words without a letter but with a digit (`1990`, `$5`) are
//!    left as they are, so `3 cats` stays `3 cats`.
//!
//! # Spaced-out letters
//!
//! `n u d e`, `n.u.d.e` and `n-u-d-e` are runs of one-character words. A run of two or more
//! one-character words holding at least two letters is joined into one word (leetspeak applies,
//! so `s 3 x` reads `sex`), and a match may start or end at any joint inside the run, because
//! nothing tells where the spelled word begins: `draw a n u d e` joins to `anude` and still
//! matches `nude`. Only single characters are joined, never longer words, so whole-word matching
//! is unaffected elsewhere: `class` never becomes a place where `ass` can start. Ordinary text
//! rarely has two one-letter words in a row, and when it does (`plan a i`), the joined run only
//! adds places a term could match; it hides nothing.
//!
//!
//! # Not handled
//!
//! Letters repeated for emphasis (`nuuude`) and partly spaced words (`nu de`) are the
//! matcher's look-alike readings of these words. Masking with `*` and scripts written without
//! spaces (a Chinese or Japanese term matches only a whole run of such characters) are not
//! read: list those spellings as terms or regex rules.

use std::ops::Range;

use unicode_normalization::char::{decompose_compatible, is_combining_mark};

/// How to read characters that look like both `i` and `l`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Reading {
    AsI,
    AsL,
}

/// A prompt folded to lowercase words separated by single spaces, with the way back to the
/// original text and the positions where a match may start or end.
#[derive(Debug, Default)]
pub(super) struct Canonical {
    pub(super) text: String,
    /// For each byte of `text`, the original bytes it came from.
    origin: Vec<Range<usize>>,
    /// For each position `0..=text.len()`, whether a match may start or end there.
    pub(super) boundary: Vec<bool>,
    /// Whether an `i`/`l` look-alike was read, so the other reading is worth trying.
    pub(super) ambiguous: bool,
}

impl Canonical {
    fn push(&mut self, ch: char, origin: Range<usize>) {
        self.text.push(ch);
        for _ in 0..ch.len_utf8() {
            self.origin.push(origin.clone());
            self.boundary.push(false);
        }
    }

    fn mark_boundary(&mut self) {
        let end = self.text.len();
        self.boundary[end] = true;
    }

    /// The original byte range behind a canonical range.
    pub(super) fn original(&self, range: Range<usize>) -> Range<usize> {
        self.origin[range.start].start..self.origin[range.end - 1].end
    }
}

/// What a folded character is for splitting words.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Class {
    Letter,
    Digit,
    /// `@` and `$`: part of a word wherever they are.
    Symbol,
    /// `!`, `|`, `+`: part of a word only between two letters or digits.
    Inner,
    Separator,
}

/// One character after folding, with the original bytes it came from.
#[derive(Clone, Debug)]
struct Folded {
    ch: char,
    origin: Range<usize>,
    class: Class,
    /// The original was an uppercase `I`, which looks like `l` inside a word.
    capital_i: bool,
}

/// The canonical form of a term or phrase, or `None` when nothing is left of it.
pub(super) fn canonical_term(term: &str) -> Option<String> {
    let text = canonicalize(term, Reading::AsI).text;
    (!text.is_empty()).then_some(text)
}

/// Folds `text` into its canonical form, reading `i`/`l` look-alikes as `reading` says.
pub(super) fn canonicalize(text: &str, reading: Reading) -> Canonical {
    let folded = fold(text);
    let mut canon = Canonical { boundary: vec![false], ..Canonical::default() };
    let tokens = tokens(&folded);
    let is_single = |t: &Range<usize>| t.len() == 1;
    let mut i = 0;
    while i < tokens.len() {
        let run_end = (i..tokens.len()).find(|&j| !is_single(&tokens[j])).unwrap_or(tokens.len());
        let letters = tokens[i..run_end].iter().filter(|t| folded[t.start].class == Class::Letter).count();
        if run_end - i >= 2 && letters >= 2 {
            let chars: Vec<&Folded> = tokens[i..run_end].iter().map(|t| &folded[t.start]).collect();
            emit_word(&mut canon, &chars, true, reading);
            i = run_end;
        } else {
            let chars: Vec<&Folded> = folded[tokens[i].clone()].iter().collect();
            emit_word(&mut canon, &chars, false, reading);
            i += 1;
        }
    }
    canon
}

/// Appends one word, applying leetspeak when it holds a letter or is all `@`/`$` (`@$$`). A joined run of spaced-out
/// letters may be matched from any joint, so each joint is a boundary.
fn emit_word(canon: &mut Canonical, chars: &[&Folded], joined_run: bool, reading: Reading) {
    if let Some(last) = canon.origin.last().map(|r| r.end) {
        canon.push(' ', last..last);
    }
    canon.mark_boundary();
    let spelled =
        chars.iter().any(|f| f.class == Class::Letter) || chars.iter().all(|f| f.class == Class::Symbol);
    for (position, f) in chars.iter().enumerate() {
        let ch = if spelled {
            match leet(f, position > 0 && !joined_run) {
                Leet::Plain(c) => c,
                Leet::IOrL => {
                    canon.ambiguous = true;
                    if reading == Reading::AsI { 'i' } else { 'l' }
                }
            }
        } else {
            f.ch
        };
        canon.push(ch, f.origin.clone());
        if joined_run {
            canon.mark_boundary();
        }
    }
    canon.mark_boundary();
}

enum Leet {
    Plain(char),
    IOrL,
}

fn leet(f: &Folded, inside_word: bool) -> Leet {
    Leet::Plain(match f.ch {
        '0' => 'o',
        '3' => 'e',
        '4' => 'a',
        '5' => 's',
        '7' | '+' => 't',
        '8' => 'b',
        '9' => 'g',
        '@' => 'a',
        '$' => 's',
        '1' | '!' | '|' => return Leet::IOrL,
        'i' if f.capital_i && inside_word => return Leet::IOrL,
        c => c,
    })
}

/// Maximal runs of word characters, as index ranges into `folded`.
fn tokens(folded: &[Folded]) -> Vec<Range<usize>> {
    let is_alnum = |i: usize| folded.get(i).is_some_and(|f| matches!(f.class, Class::Letter | Class::Digit));
    let in_word = |i: usize| match folded[i].class {
        Class::Letter | Class::Digit | Class::Symbol => true,
        Class::Inner => i > 0 && is_alnum(i - 1) && is_alnum(i + 1),
        Class::Separator => false,
    };
    let mut tokens = Vec::new();
    let mut start = None;
    for i in 0..folded.len() {
        match (in_word(i), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                tokens.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        tokens.push(s..folded.len());
    }
    tokens
}

/// Folds every character of `text`: drops invisibles, decomposes (NFKD), strips marks,
/// lowercases and maps look-alikes.
fn fold(text: &str) -> Vec<Folded> {
    let mut out = Vec::with_capacity(text.len());
    for (start, ch) in text.char_indices() {
        if is_ignored(ch) {
            continue;
        }
        let origin = start..start + ch.len_utf8();
        let capital_i = ch == 'I';
        decompose_compatible(ch, |decomposed| {
            for lower in decomposed.to_lowercase() {
                if is_combining_mark(lower) {
                    continue;
                }
                for &mapped in expand(lower).iter().flatten() {
                    out.push(Folded {
                        ch: mapped,
                        origin: origin.clone(),
                        class: classify(mapped),
                        capital_i,
                    });
                }
            }
        });
    }
    out
}

/// Characters that change nothing a reader sees, or only glue a word together.
fn is_ignored(ch: char) -> bool {
    matches!(
        ch,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{061C}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}'
            | '\u{FEFF}'
            | '\''
            | '\u{2018}'
            | '\u{2019}'
            | '\u{02BC}'
    )
}

/// A lowercase character as at most two Latin letters: expansions of full case folding and
/// ligatures, then look-alikes.
fn expand(ch: char) -> [Option<char>; 2] {
    let pair = |a, b| [Some(a), Some(b)];
    match ch {
        'ß' => pair('s', 's'),
        'æ' => pair('a', 'e'),
        'œ' => pair('o', 'e'),
        _ => [Some(homoglyph(ch)), None],
    }
}

/// The Latin letter a Cyrillic, Greek or small-capital look-alike imitates.
fn homoglyph(ch: char) -> char {
    match ch {
        // Cyrillic (after lowercasing, so `В`/`в`, `Н`/`н`, `Т`/`т` map by their capital shape).
        'а' => 'a',
        'в' | 'ь' => 'b',
        'с' => 'c',
        'ԁ' => 'd',
        'е' | 'ё' | 'є' => 'e',
        'һ' | 'н' => 'h',
        'і' | 'ї' | 'ӏ' => 'i',
        'ј' => 'j',
        'к' => 'k',
        'м' => 'm',
        'п' => 'n',
        'о' => 'o',
        'р' => 'p',
        'ԛ' => 'q',
        'г' => 'r',
        'ѕ' => 's',
        'т' => 't',
        'у' | 'ү' => 'y',
        'ԝ' | 'ш' => 'w',
        'х' => 'x',
        // Greek.
        'α' => 'a',
        'β' => 'b',
        'ε' => 'e',
        'η' => 'n',
        'ι' => 'i',
        'κ' => 'k',
        'μ' => 'u',
        'ν' => 'v',
        'ο' | 'σ' => 'o',
        'ρ' => 'p',
        'τ' => 't',
        'υ' => 'u',
        'χ' => 'x',
        'ω' => 'w',
        'γ' => 'y',
        'ζ' => 'z',
        // Latin letters that have no decomposition to their base letter.
        'ı' => 'i',
        'ȷ' => 'j',
        'ø' => 'o',
        'đ' => 'd',
        'ł' => 'l',
        'ħ' => 'h',
        'ŧ' => 't',
        'ɡ' => 'g',
        // Latin small capitals.
        'ᴀ' => 'a',
        'ʙ' => 'b',
        'ᴄ' => 'c',
        'ᴅ' => 'd',
        'ᴇ' => 'e',
        'ғ' => 'f',
        'ɢ' => 'g',
        'ʜ' => 'h',
        'ɪ' => 'i',
        'ᴊ' => 'j',
        'ᴋ' => 'k',
        'ʟ' => 'l',
        'ᴍ' => 'm',
        'ɴ' => 'n',
        'ᴏ' => 'o',
        'ᴘ' => 'p',
        'ʀ' => 'r',
        'ꜱ' => 's',
        'ᴛ' => 't',
        'ᴜ' => 'u',
        'ᴠ' => 'v',
        'ᴡ' => 'w',
        'ʏ' => 'y',
        'ᴢ' => 'z',
        c => c,
    }
}

fn classify(ch: char) -> Class {
    match ch {
        '0'..='9' => Class::Digit,
        '@' | '$' => Class::Symbol,
        '!' | '|' | '+' => Class::Inner,
        c if c.is_alphanumeric() => Class::Letter,
        _ => Class::Separator,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_text_is_lowercase_words_separated_by_single_spaces() {
        assert_eq!(
            canonicalize("  A Cat,\tSLEEPING -- on a MAT!! ", Reading::AsI).text,
            "a cat sleeping on a mat"
        );
        assert_eq!(canonical_term("---"), None);
    }
}
