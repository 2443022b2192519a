//! The prompt matcher behind the `safety` stage: deny terms, allow phrases and regex rules,
//! matched on whole words of the prompt's canonical text (see `canonical.rs` for how it is
//! folded). Pure (no I/O) and compiled once.
//!
//! # Whole words
//!
//! The folded words are joined by single spaces into a canonical text, remembering for each
//! canonical byte the original bytes it came from. One Aho-Corasick automaton holds every term
//! and allow phrase; a match counts only when it starts and ends on a word boundary, so
//! `Scunthorpe`, `class`, `bass` and `assassin` do not contain `cunt` or `ass`. Each term also
//! matches its plural (`gun` → `guns`, `kiss` → `kisses`), and a multi-word term also matches
//! its words run together (`self harm` → `selfharm`) as well as any separators between them
//! (`self-harm`).
//!
//! # Compounds
//!
//! A `*` at a term's end lets it begin a longer word (`gun*`: `gunfight`, `gunshot`), at its
//! start end one (`*shit`: `bullshit`), at both lie anywhere inside one (`*fuck*`). The match
//! then stands for the whole word, so an allow phrase naming the word (`gunwale`) lets it pass.
//! Mark only terms that innocent words rarely begin or end with, and allow the exceptions.
//!
//! # Look-alike words
//!
//! Stretched letters (`nuude`, `nuuuude`: any run of a letter longer than the term has it),
//! partly spaced words (`nu de`) and masked letters (`p*rn`, `f**k`) are read word by word as
//! well ([`Matcher::look_alikes`], [`Matcher::masked`]).
//!
//! # Allow phrases and regex rules
//!
//! An allow phrase is a known false positive: a deny or regex match lying wholly inside an allow
//! match is ignored (`assassin bug` allowed while `assassin` is denied). Regex rules run on the
//! canonical text (lowercase words separated by single spaces, case-insensitive), so they
//! benefit from the same folding; they decide their own boundaries (`\b`).

use std::collections::HashMap;
use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};
use regex::Regex;

use super::canonical::{Canonical, Reading, canonical_term, canonicalize};

/// A deny term or allow phrase as written, with where it came from (`deny[3]`,
/// `pipelines/safety/children-deny.txt:12`) for rule labels and errors.
#[derive(Clone, Debug)]
pub struct Term {
    /// The term as the user wrote it.
    pub text: String,
    /// Where it was written.
    pub origin: String,
}

/// A compiled regex rule with the label that names it in rejections.
#[derive(Clone, Debug)]
pub struct RegexRule {
    /// How a rejection names this rule, e.g. `regex "weapons" /\bguns?\b/`.
    pub label: String,
    /// The compiled pattern, run on the canonical text.
    pub regex: Regex,
}

/// Why the rules could not be compiled.
#[derive(Debug, thiserror::Error)]
pub enum MatcherError {
    /// A term or phrase with nothing left to match after normalisation (e.g. `---`).
    #[error("{origin}: {text:?} has no letters or digits left after normalisation")]
    EmptyTerm {
        /// The term as written.
        text: String,
        /// Where it was written.
        origin: String,
    },
    /// The automaton would exceed the Aho-Corasick size limits.
    #[error("the deny and allow lists are too large to compile: {0}")]
    TooLarge(String),
}

/// A rule that fired on a prompt: which one, and where in the original text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    /// Index of the rule; [`Matcher::label`] names it.
    pub rule: usize,
    /// Byte range of the offending text in the original prompt.
    pub span: Range<usize>,
}

/// What one automaton pattern stands for: a deny rule, an allow phrase, or both, each with how
/// far into a word it reaches.
#[derive(Clone, Copy, Debug, Default)]
struct Meaning {
    deny: Option<(usize, Reach)>,
    allow: Option<Reach>,
}

/// Whether a term may match inside a longer word, as its `*` marks say: `gun*` is a compound
/// head (`gunfight`), `*shit` a compound tail (`bullshit`), `*fuck*` anywhere in a word. A plain
/// term matches whole words only, so `ass` is not found in `class` or `passage`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Reach {
    /// The match may start inside a word (`*term`).
    open_start: bool,
    /// The match may end inside a word (`term*`).
    open_end: bool,
}

impl Reach {
    /// The term without its `*` marks, and what they say.
    fn parse(term: &str) -> (&str, Reach) {
        let trimmed = term.trim();
        let core = trimmed.trim_start_matches('*');
        let open_start = core.len() < trimmed.len();
        let bare = core.trim_end_matches('*');
        (bare, Reach { open_start, open_end: bare.len() < core.len() })
    }

    /// Whether a match at `range` of `canon` starts and ends where this reach allows, and the
    /// range it stands for: widened to the whole word when it lies inside one.
    fn fit(self, canon: &Canonical, range: Range<usize>) -> Option<Range<usize>> {
        let (starts, ends) = (canon.boundary[range.start], canon.boundary[range.end]);
        if !(starts || self.open_start) || !(ends || self.open_end) {
            return None;
        }
        let text = canon.text.as_bytes();
        let start = if starts {
            range.start
        } else {
            text[..range.start].iter().rposition(|&b| b == b' ').map_or(0, |i| i + 1)
        };
        let end = if ends {
            range.end
        } else {
            text[range.end..].iter().position(|&b| b == b' ').map_or(text.len(), |i| range.end + i)
        };
        Some(start..end)
    }
}

/// Deny terms, allow phrases and regex rules compiled for fast matching of many prompts.
#[derive(Debug)]
pub struct Matcher {
    automaton: Option<AhoCorasick>,
    meanings: Vec<Meaning>,
    /// The automaton's patterns by slot.
    patterns: Vec<String>,
    /// One-word deny patterns by their text, for fragments read joined (`nu de`) and masked
    /// words (`p*rn`).
    words: HashMap<String, usize>,
    /// The same by their squeezed text (`kill` → `kil`), for stretched words (`kiill`).
    squeezed: HashMap<String, Vec<usize>>,
    regexes: Vec<Regex>,
    /// One label per rule: deny terms first, then regex rules.
    labels: Vec<String>,
}

impl Matcher {
    /// Compiles the rules. Fails on a term or phrase that folds to nothing, naming its origin.
    pub fn new(deny: &[Term], allow: &[Term], regexes: Vec<RegexRule>) -> Result<Matcher, MatcherError> {
        let mut patterns: Vec<String> = Vec::new();
        let mut meanings: Vec<Meaning> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        let mut add = |pattern: String, update: &dyn Fn(&mut Meaning)| {
            let slot = *index.entry(pattern.clone()).or_insert_with(|| {
                patterns.push(pattern);
                meanings.push(Meaning::default());
                meanings.len() - 1
            });
            update(&mut meanings[slot]);
        };
        let mut labels = Vec::with_capacity(deny.len() + regexes.len());
        for (rule, term) in deny.iter().enumerate() {
            let (patterns, reach) = term_patterns(term)?;
            for pattern in patterns {
                // The first rule listed keeps a pattern two rules share (e.g. `gun` and `guns`).
                add(pattern, &|m: &mut Meaning| {
                    m.deny.get_or_insert((rule, reach));
                });
            }
            labels.push(format!("deny term {:?} (from {})", term.text, term.origin));
        }
        for phrase in allow {
            let (patterns, reach) = term_patterns(phrase)?;
            for pattern in patterns {
                add(pattern, &|m: &mut Meaning| {
                    m.allow.get_or_insert(reach);
                });
            }
        }
        let automaton = if patterns.is_empty() {
            None
        } else {
            // Standard semantics are required for overlapping search, which lets a match that
            // fails the boundary test not hide one that passes.
            let built = AhoCorasick::builder().match_kind(MatchKind::Standard).build(&patterns);
            Some(built.map_err(|e| MatcherError::TooLarge(e.to_string()))?)
        };
        labels.extend(regexes.iter().map(|r| r.label.clone()));
        let mut words = HashMap::new();
        let mut squeezed: HashMap<String, Vec<usize>> = HashMap::new();
        for (slot, pattern) in patterns.iter().enumerate() {
            if meanings[slot].deny.is_some() && !pattern.contains(' ') {
                words.entry(pattern.clone()).or_insert(slot);
                squeezed.entry(squeeze(pattern)).or_default().push(slot);
            }
        }
        Ok(Matcher {
            automaton,
            meanings,
            patterns,
            words,
            squeezed,
            regexes: regexes.into_iter().map(|r| r.regex).collect(),
            labels,
        })
    }

    /// How rejections name rule `rule`, e.g. `deny term "nude" (from deny[0])`.
    pub fn label(&self, rule: usize) -> &str {
        &self.labels[rule]
    }

    /// Every rule match in `text` not covered by an allow phrase, ordered by position then rule.
    pub fn find_all(&self, text: &str) -> Vec<Hit> {
        let mut hits = Vec::new();
        let primary = canonicalize(text, Reading::AsI);
        self.collect_hits(&primary, &mut hits);
        if primary.ambiguous {
            self.collect_hits(&canonicalize(text, Reading::AsL), &mut hits);
        }
        hits.sort_by_key(|h| (h.span.start, h.rule, h.span.end));
        hits.dedup();
        hits
    }

    /// The first rule match in `text`, if any.
    pub fn first(&self, text: &str) -> Option<Hit> {
        self.find_all(text).into_iter().next()
    }

    fn collect_hits(&self, canon: &Canonical, hits: &mut Vec<Hit>) {
        let mut denied: Vec<(usize, Range<usize>)> = Vec::new();
        let mut allowed: Vec<Range<usize>> = Vec::new();
        if let Some(automaton) = &self.automaton {
            for m in automaton.find_overlapping_iter(&canon.text) {
                let meaning = self.meanings[m.pattern().as_usize()];
                if let Some(range) = meaning.allow.and_then(|reach| reach.fit(canon, m.range())) {
                    allowed.push(range);
                }
                if let Some((rule, reach)) = meaning.deny
                    && let Some(range) = reach.fit(canon, m.range())
                {
                    denied.push((rule, range));
                }
            }
        }
        denied.extend(self.look_alikes(canon));
        denied.extend(self.masked(canon));
        let first_regex_rule = self.labels.len() - self.regexes.len();
        for (i, regex) in self.regexes.iter().enumerate() {
            denied.extend(
                regex
                    .find_iter(&canon.text)
                    .filter(|m| !m.is_empty())
                    .map(|m| (first_regex_rule + i, m.range())),
            );
        }
        hits.extend(
            denied
                .into_iter()
                .filter(|(_, r)| !allowed.iter().any(|a| a.start <= r.start && r.end <= a.end))
                .map(|(rule, r)| Hit { rule, span: canon.original(r) }),
        );
    }
}

impl Matcher {
    /// Spellings the automaton cannot see, read word by word: a stretched word (`nuude`,
    /// `bloood`: [`Matcher::stretched`]); and two or three short fragments (`nu de`, `se x y`)
    /// read joined, which must then be a whole term (so `a class` or `I am` stay apart) or a
    /// term stretched three times (`nu uu de`).
    fn look_alikes(&self, canon: &Canonical) -> Vec<(usize, Range<usize>)> {
        const FRAGMENT: usize = 4;
        let mut words: Vec<Range<usize>> = Vec::new();
        let mut start = 0;
        for (at, ch) in canon.text.char_indices().chain([(canon.text.len(), ' ')]) {
            if ch == ' ' {
                if at > start {
                    words.push(start..at);
                }
                start = at + 1;
            }
        }
        let mut found = Vec::new();
        for first in 0..words.len() {
            let mut joined = String::new();
            for (n, word) in words[first..].iter().take(3).enumerate() {
                let text = &canon.text[word.clone()];
                if n > 0 && (text.chars().count() > FRAGMENT || joined.chars().count() > FRAGMENT * 2) {
                    break;
                }
                joined.push_str(text);
                let span = words[first].start..word.end;
                let slot = if n == 0 {
                    self.stretched(&joined, 2)
                } else if canon.text[words[first].clone()].chars().count() <= FRAGMENT {
                    self.words.get(&joined).copied().or_else(|| self.stretched(&joined, 3))
                } else {
                    None
                };
                if let Some((rule, _)) = slot.and_then(|slot| self.meanings[slot].deny) {
                    found.push((rule, span));
                }
            }
        }
        found
    }

    /// The deny pattern `word` stretches: the same letters in the same order, each run of one
    /// letter at least as long as in the pattern and some longer (`nuude` for `nude`, `asss`
    /// for `ass`), with some run reaching `min_run`. A run never shrinks, so `as` is not `ass`
    /// and a term's own double letters (`balloon`, `good`) must be there. A lengthened run is a
    /// doubled vowel or any letter three times: English doubles consonants in ordinary words
    /// (`assess` is no stretched `asses`, `riffle` no `rifle`), seldom vowels.
    fn stretched(&self, word: &str, min_run: usize) -> Option<usize> {
        let runs = letter_runs(word);
        if !runs.iter().any(|&(_, n)| n >= min_run) {
            return None;
        }
        let slots = self.squeezed.get(&squeeze(word))?;
        let lengthened = |p: &(char, usize), w: &(char, usize)| p.1 < w.1;
        let stretchable = |w: &(char, usize)| w.1 >= 3 || matches!(w.0, 'a' | 'e' | 'i' | 'o' | 'u' | 'y');
        slots.iter().copied().find(|&slot| {
            let pattern = letter_runs(&self.patterns[slot]);
            pattern.len() == runs.len()
                && pattern.iter().zip(&runs).all(|(p, w)| p.0 == w.0 && p.1 <= w.1)
                && pattern.iter().zip(&runs).any(|(p, w)| lengthened(p, w))
                && pattern.iter().zip(&runs).all(|(p, w)| !lengthened(p, w) || stretchable(w))
        })
    }

    /// Deny terms matching a word with masked letters (`p*rn`, `f**k`): as long as the term,
    /// with every letter that is not masked in its place.
    fn masked(&self, canon: &Canonical) -> Vec<(usize, Range<usize>)> {
        let mut found = Vec::new();
        for masked in &canon.masked {
            for (pattern, &slot) in &self.words {
                let fits = pattern.chars().count() == masked.letters.len()
                    && pattern.chars().zip(&masked.letters).all(|(p, m)| m.is_none_or(|m| m == p));
                if fits && let Some((rule, _)) = self.meanings[slot].deny {
                    found.push((rule, masked.span.clone()));
                }
            }
        }
        found
    }
}

/// A word as runs of one character: `bloood` → b1 l1 o3 d1.
fn letter_runs(word: &str) -> Vec<(char, usize)> {
    let mut runs: Vec<(char, usize)> = Vec::new();
    for ch in word.chars() {
        match runs.last_mut() {
            Some((last, n)) if *last == ch => *n += 1,
            _ => runs.push((ch, 1)),
        }
    }
    runs
}

/// A word with every run of one character cut to one (`bloood` → `blod`).
fn squeeze(word: &str) -> String {
    letter_runs(word).into_iter().map(|(ch, _)| ch).collect()
}

/// The automaton patterns for one term: the term, its plural, and, for several words, the
/// same run together; with how far into a word they reach.
fn term_patterns(term: &Term) -> Result<(Vec<String>, Reach), MatcherError> {
    let (bare, reach) = Reach::parse(&term.text);
    let canonical = canonical_term(bare)
        .ok_or_else(|| MatcherError::EmptyTerm { text: term.text.clone(), origin: term.origin.clone() })?;
    let mut forms = vec![canonical.clone()];
    if canonical.contains(' ') {
        forms.push(canonical.replace(' ', ""));
    }
    let plurals: Vec<String> = forms.iter().map(|f| plural(f)).collect();
    forms.extend(plurals);
    Ok((forms, reach))
}

/// The regular English plural of a canonical term's last word.
fn plural(word: &str) -> String {
    let sibilant = ["s", "x", "z", "ch", "sh"].iter().any(|end| word.ends_with(end));
    if sibilant { format!("{word}es") } else { format!("{word}s") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn term(text: &str) -> Term {
        Term { text: text.into(), origin: "test".into() }
    }

    fn matcher(deny: &[&str], allow: &[&str]) -> Matcher {
        let deny: Vec<Term> = deny.iter().map(|t| term(t)).collect();
        let allow: Vec<Term> = allow.iter().map(|t| term(t)).collect();
        Matcher::new(&deny, &allow, Vec::new()).unwrap()
    }

    /// The original text the first hit covers, if any.
    fn first_match<'a>(m: &Matcher, text: &'a str) -> Option<&'a str> {
        m.first(text).map(|h| &text[h.span])
    }

    #[test]
    fn catches_case_and_plain_words() {
        let m = matcher(&["nude"], &[]);
        assert_eq!(first_match(&m, "a NUDE figure"), Some("NUDE"));
        assert_eq!(first_match(&m, "Nude."), Some("Nude"));
    }

    #[test]
    fn catches_cyrillic_and_greek_homoglyphs() {
        let m = matcher(&["nude", "poker"], &[]);
        // Cyrillic е (U+0435) and Greek ο (U+03BF), р (Cyrillic U+0440), к (U+043A).
        assert_eq!(first_match(&m, "a nud\u{0435} statue"), Some("nud\u{0435}"));
        assert_eq!(first_match(&m, "\u{0440}\u{03BF}\u{043A}er night"), Some("\u{0440}\u{03BF}\u{043A}er"));
        assert_eq!(first_match(&m, "ɴᴜᴅᴇ"), Some("ɴᴜᴅᴇ"));
    }

    #[test]
    fn catches_leetspeak() {
        let m = matcher(&["nude", "sex", "kill", "ass"], &[]);
        assert_eq!(first_match(&m, "a n00d3 model"), None, "n00d3 reads noode, not nude");
        assert_eq!(first_match(&m, "a nud3 model"), Some("nud3"));
        assert_eq!(first_match(&m, "$3x"), Some("$3x"));
        assert_eq!(first_match(&m, "k1ll them"), Some("k1ll"));
        assert_eq!(first_match(&m, "ki11 them"), Some("ki11"), "1 read as l");
        assert_eq!(first_match(&m, "kiIl them"), Some("kiIl"), "capital I inside a word read as l");
        assert_eq!(first_match(&m, "k!ll"), Some("k!ll"));
        assert_eq!(first_match(&m, "kick @$$"), Some("@$$"));
    }

    #[test]
    fn symbols_at_word_edges_do_not_hide_a_word() {
        let m = matcher(&["gun"], &[]);
        assert_eq!(first_match(&m, "a gun!"), Some("gun"));
        assert_eq!(first_match(&m, "(gun)"), Some("gun"));
    }

    #[test]
    fn catches_fullwidth_mathematical_and_accented_letters() {
        let m = matcher(&["nude"], &[]);
        assert_eq!(first_match(&m, "ａ ｎｕｄｅ ｍｏｄｅｌ"), Some("ｎｕｄｅ"));
        assert_eq!(first_match(&m, "𝐍𝐔𝐃𝐄"), Some("𝐍𝐔𝐃𝐄"));
        assert_eq!(first_match(&m, "nüdé"), Some("nüdé"));
        assert_eq!(first_match(&m, "nu\u{200B}de"), Some("nu\u{200B}de"));
    }

    #[test]
    fn catches_spaced_dotted_and_hyphenated_letters() {
        let m = matcher(&["nude", "sex"], &[]);
        assert_eq!(first_match(&m, "a n u d e woman"), Some("n u d e"));
        assert_eq!(first_match(&m, "N.U.D.E"), Some("N.U.D.E"));
        assert_eq!(first_match(&m, "n-u-d-e"), Some("n-u-d-e"));
        assert_eq!(first_match(&m, "draw a n u d e"), Some("n u d e"), "run joined with the article");
        assert_eq!(first_match(&m, "s 3 x"), Some("s 3 x"));
    }

    #[test]
    fn innocent_words_containing_a_term_pass() {
        let m = matcher(&["cunt", "ass", "sex"], &[]);
        for innocent in [
            "Scunthorpe United",
            "a class of kids",
            "a bass guitar",
            "classic car",
            "assassin",
            "Sussex",
            "I a m",
        ] {
            assert_eq!(m.first(innocent), None, "{innocent}");
        }
    }

    #[test]
    fn stretched_letters_and_partly_spaced_words_are_caught() {
        let m = matcher(&["nude", "blood", "kill", "ass", "sex"], &["assassin bug"]);
        for (prompt, caught) in [
            ("a nuuude model", "nuuude"),
            ("NUUUUDE", "NUUUUDE"),
            ("b l o o o d on the floor", "b l o o o d"),
            ("kiiill them", "kiiill"),
            ("a nu de figure", "nu de"),
            ("nud e", "nud e"),
            ("se x", "se x"),
            ("bl oo d", "bl oo d"),
            ("kick asss", "asss"),
        ] {
            assert_eq!(first_match(&m, prompt), Some(caught), "{prompt}");
        }
        for innocent in [
            "Scunthorpe United",
            "an assassin bug on a leaf",
            "a class of kids",
            "as big as a bus",
            "a good book",
            "I am a bee",
            "zzz the sleepy cat",
            "a bass guitar, sooo loud",
        ] {
            assert_eq!(first_match(&m, innocent), None, "{innocent}");
        }
    }

    #[test]
    fn allow_phrases_cover_false_positives_only() {
        let m = matcher(&["assassin"], &["assassin bug"]);
        assert_eq!(m.first("an assassin bug on a leaf"), None);
        assert_eq!(first_match(&m, "an assassin with a bug"), Some("assassin"));
        assert_eq!(first_match(&m, "assassin bugs and an assassin"), Some("assassin"));
        assert_eq!(m.find_all("assassin bugs and an assassin").len(), 1);
    }

    #[test]
    fn plurals_and_multi_word_terms() {
        let m = matcher(&["gun", "kiss", "self harm"], &[]);
        assert_eq!(first_match(&m, "two guns"), Some("guns"));
        assert_eq!(first_match(&m, "kisses"), Some("kisses"));
        assert_eq!(first_match(&m, "about self-harm"), Some("self-harm"));
        assert_eq!(first_match(&m, "selfharm"), Some("selfharm"));
        assert_eq!(first_match(&m, "self  HARM"), Some("self  HARM"));
        assert_eq!(m.first("gunner"), None);
        assert_eq!(m.first("self portrait, no harm"), None);
    }

    #[test]
    fn regex_rules_run_on_the_canonical_text() {
        let rule =
            RegexRule { label: "regex \"age\"".into(), regex: Regex::new(r"\b\d+ years? old\b").unwrap() };
        let m = Matcher::new(&[term("nude")], &[], vec![rule]).unwrap();
        let hit = m.first("She is 12   YEARS-old").unwrap();
        assert_eq!(m.label(hit.rule), "regex \"age\"");
        assert_eq!(&"She is 12   YEARS-old"[hit.span], "12   YEARS-old");
        assert_eq!(m.label(0), "deny term \"nude\" (from test)");
    }

    #[test]
    fn hits_are_ordered_and_the_first_listed_rule_wins_a_shared_pattern() {
        let m = matcher(&["gun", "guns", "knife"], &[]);
        let hits = m.find_all("a knife and guns");
        let rules: Vec<usize> = hits.iter().map(|h| h.rule).collect();
        assert_eq!(rules, vec![2, 0]);
    }

    #[test]
    fn a_term_with_nothing_left_is_an_error_naming_its_origin() {
        let err = Matcher::new(&[Term { text: "--".into(), origin: "words.txt:3".into() }], &[], Vec::new())
            .unwrap_err();
        assert_eq!(err.to_string(), "words.txt:3: \"--\" has no letters or digits left after normalisation");
    }

    #[test]
    fn digits_alone_are_not_leetspeak() {
        let m = matcher(&["ease", "ie"], &[]);
        assert_eq!(m.first("3 4 5 cats in 1990"), None);
        assert_eq!(m.first("costs $5"), None);
    }

    #[test]
    fn masked_letters_inside_a_word_stand_for_one_letter_each() {
        let m = matcher(&["porn", "fuck", "kill", "naked", "sex"], &[]);
        for (prompt, caught) in [
            ("a p*rn site", "p*rn"),
            ("f**k", "f**k"),
            ("f#ck you", "f#ck"),
            ("k_ll", "k_ll"),
            ("n.ked", "n.ked"),
            ("p@rn", "p@rn"),
            ("s*x", "s*x"),
            ("k*lls", "k*lls"),
        ] {
            assert_eq!(first_match(&m, prompt), Some(caught), "{prompt}");
        }
        for innocent in ["**bold**", "p*r", "f***", "5*x", "x*y", "a fork", "p**rn", "pi*rn"] {
            assert_eq!(first_match(&m, innocent), None, "{innocent}");
        }
    }

    #[test]
    fn a_doubled_vowel_or_a_tripled_letter_is_a_stretch() {
        let m = matcher(&["nude", "ass", "balloon", "blood", "sex", "rifle", "gun"], &[]);
        for (prompt, caught) in [
            ("nuude", "nuude"),
            ("a nudee", "nudee"),
            ("seex", "seex"),
            ("asss", "asss"),
            ("bloood", "bloood"),
            ("ballooon", "ballooon"),
            ("gunnn", "gunnn"),
        ] {
            assert_eq!(first_match(&m, prompt), Some(caught), "{prompt}");
        }
        for innocent in ["as", "blod", "balon", "assess", "riffle", "Gunn", "see x"] {
            assert_eq!(first_match(&m, innocent), None, "{innocent}");
        }
    }

    #[test]
    fn marked_terms_match_compounds_and_plain_terms_do_not() {
        let m = matcher(&["gun*", "*shit", "*fuck*", "ass"], &["gunwale"]);
        for (prompt, caught) in [
            ("a gunfight", "gunfight"),
            ("GUNSHOT", "GUNSHOT"),
            ("gun", "gun"),
            ("bullshit", "bullshit"),
            ("motherfuckers", "motherfuckers"),
        ] {
            assert_eq!(first_match(&m, prompt), Some(caught), "{prompt}");
        }
        for innocent in ["begun", "a shotgun", "a gunwale", "grass", "class", "bass", "passage", "shitake"] {
            assert_eq!(first_match(&m, innocent), None, "{innocent}");
        }
    }
}
