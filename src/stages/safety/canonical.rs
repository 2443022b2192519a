//! Normalisation for the `safety` matcher: terms, allow phrases and prompts are folded to one
//! canonical text of lowercase words, remembering where each byte came from.
//!
//! # Words
//!
//! Terms, allow phrases and prompts all go through the same folding, so a rule matches however
//! the prompt spells its words:
//!
//! 1. Each character is folded to the Latin letters it reads as (`fold.rs`: invisible
//!    characters dropped, compatibility decomposition, Unicode's confusables data).
//! 2. The text splits into words at every character that is not a letter or digit. `@` and `$`
//!    count as letters (`a$$`); `!`, `|` and `+` count only between two letters or digits
//!    (`k!ll`), so `gun!` still ends in `gun`.
//! 3. Inside a word holding at least one letter (or made only of `@` and `$`, like `@$$`),
//!    leetspeak digits and symbols become letters (`0`→o, `3`→e, `4`→a, `5`→s, `7`→t, `8`→b,
//!    `9`→g, `@`→a, `$`→s, `+`→t). `1`, `!`, `|`, a vertical stroke from another script (`ӏ`)
//!    and an uppercase `I` inside a word look like both `i` and `l`: when such a character
//!    occurs, the text is matched twice, once reading them as `i` and once as `l`. Words without
//!    a letter but with a digit (`1990`, `$5`) are left as they are, so `3 cats` stays `3 cats`.
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
//! # Masked letters
//!
//! `*`, `#`, `_` and `.` split words, but inside a word (`p*rn`, `f**k`, `k_ll`), like `@`
//! (`p@rn`), they may also stand for one letter each: such words are kept aside as
//! [`MaskedWord`]s for the matcher to compare with its terms letter by letter.
//!
//! # Not handled
//!
//! Letters repeated for emphasis (`nuude`) and partly spaced words (`nu de`) are the matcher's
//! look-alike readings of these words. Scripts written without spaces (a Chinese or Japanese
//! term matches only a whole run of such characters) are not split into words: list those
//! spellings as regex rules.

use std::ops::Range;

use super::fold::{Class, Folded, Stroke, fold};

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
    /// Words with masked letters (`p*rn`), which the text above splits at the masks.
    pub(super) masked: Vec<MaskedWord>,
}

/// A word with masked letters: each letter as read, `None` for a mask, and the canonical range
/// from its first to its last letter.
#[derive(Debug)]
pub(super) struct MaskedWord {
    pub(super) letters: Vec<Option<char>>,
    pub(super) span: Range<usize>,
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

/// The canonical form of a term or phrase, or `None` when nothing is left of it.
pub(super) fn canonical_term(term: &str) -> Option<String> {
    let text = canonicalize(term, Reading::AsI).text;
    (!text.is_empty()).then_some(text)
}

/// Folds `text` into its canonical form, reading `i`/`l` look-alikes as `reading` says.
pub(super) fn canonicalize(text: &str, reading: Reading) -> Canonical {
    let folded = fold(text);
    let mut canon = Canonical { boundary: vec![false], ..Canonical::default() };
    // Where each folded character landed in the canonical text, if it did.
    let mut landed: Vec<Option<Range<usize>>> = vec![None; folded.len()];
    let tokens = tokens(&folded);
    let is_single = |t: &Range<usize>| t.len() == 1;
    let mut i = 0;
    while i < tokens.len() {
        let run_end = (i..tokens.len()).find(|&j| !is_single(&tokens[j])).unwrap_or(tokens.len());
        let letters = tokens[i..run_end].iter().filter(|t| folded[t.start].class == Class::Letter).count();
        if run_end - i >= 2 && letters >= 2 {
            let chars: Vec<usize> = tokens[i..run_end].iter().map(|t| t.start).collect();
            emit_word(&mut canon, &mut landed, &folded, &chars, true, reading);
            i = run_end;
        } else {
            let chars: Vec<usize> = tokens[i].clone().collect();
            emit_word(&mut canon, &mut landed, &folded, &chars, false, reading);
            i += 1;
        }
    }
    canon.masked = masked_words(&folded, &landed, &canon.text);
    canon
}

/// Appends one word (the folded characters at `chars`), applying leetspeak when it holds a
/// letter or is all `@`/`$` (`@$$`). A joined run of spaced-out letters may be matched from any
/// joint, so each joint is a boundary.
fn emit_word(
    canon: &mut Canonical,
    landed: &mut [Option<Range<usize>>],
    folded: &[Folded],
    chars: &[usize],
    joined_run: bool,
    reading: Reading,
) {
    if let Some(last) = canon.origin.last().map(|r| r.end) {
        canon.push(' ', last..last);
    }
    canon.mark_boundary();
    let spelled = chars.iter().any(|&i| folded[i].class == Class::Letter)
        || chars.iter().all(|&i| folded[i].class == Class::Symbol);
    for (position, &i) in chars.iter().enumerate() {
        let f = &folded[i];
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
        let start = canon.text.len();
        canon.push(ch, f.origin.clone());
        landed[i] = Some(start..canon.text.len());
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
        'i' if f.stroke == Stroke::CapitalI && inside_word => return Leet::IOrL,
        'l' if f.stroke == Stroke::Either => return Leet::IOrL,
        c => c,
    })
}

/// Maximal runs of word characters, as index ranges into `folded`.
fn tokens(folded: &[Folded]) -> Vec<Range<usize>> {
    let is_alnum = |i: usize| folded.get(i).is_some_and(|f| matches!(f.class, Class::Letter | Class::Digit));
    let in_word = |i: usize| match folded[i].class {
        Class::Letter | Class::Digit | Class::Symbol => true,
        Class::Inner => i > 0 && is_alnum(i - 1) && is_alnum(i + 1),
        Class::Mask | Class::Separator => false,
    };
    runs(folded.len(), in_word)
}

/// Maximal runs of indices `0..len` for which `inside` holds.
fn runs(len: usize, inside: impl Fn(usize) -> bool) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let mut start = None;
    for i in 0..len {
        match (inside(i), start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                runs.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    if let Some(s) = start {
        runs.push(s..len);
    }
    runs
}

/// Words with masked letters inside (`p*rn`, `f**k`, `k_ll`, `p@rn`): a run of word and mask
/// characters with a mask between two other characters and at least two letters. Each mask
/// stands for one letter, `@` included (it may be the `a` it looks like, or a mask); the other
/// characters read as they do in the canonical text. Masks at the edges are punctuation.
fn masked_words(folded: &[Folded], landed: &[Option<Range<usize>>], text: &str) -> Vec<MaskedWord> {
    let is_mask = |f: &Folded| f.class == Class::Mask || f.ch == '@';
    let mut words = Vec::new();
    for run in runs(folded.len(), |i| folded[i].class != Class::Separator) {
        let chars = &folded[run.clone()];
        let Some(first) = chars.iter().position(|f| f.class != Class::Mask) else { continue };
        let last = chars.iter().rposition(|f| f.class != Class::Mask).unwrap_or(first);
        let chars = &chars[first..=last];
        let inner_mask = chars.len() > 2 && chars[1..chars.len() - 1].iter().any(is_mask);
        if !inner_mask || chars.iter().filter(|f| f.class == Class::Letter).count() < 2 {
            continue;
        }
        let at = run.start + first;
        let mut letters = Vec::with_capacity(chars.len());
        let mut span: Option<Range<usize>> = None;
        for (i, f) in chars.iter().enumerate() {
            match &landed[at + i] {
                Some(range) if !is_mask(f) => {
                    letters.extend(text[range.clone()].chars().map(Some));
                    span = Some(span.map_or(range.clone(), |s| s.start..range.end));
                }
                _ => letters.push(None),
            }
        }
        if let Some(span) = span {
            words.push(MaskedWord { letters, span });
        }
    }
    words
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
