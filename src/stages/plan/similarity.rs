//! Near-duplicate scenes by normalised text similarity: each scene becomes the set of its
//! words, lower-cased, stemmed, without the small words that carry no picture ("a", "the",
//! "in"), and two scenes are compared by the Jaccard index of their sets (shared words over all
//! words). "A dolphin jumping over the waves" and "the dolphin jumps over a wave" are the same
//! picture; "a dolphin in a coral reef" is another.

use std::collections::BTreeSet;

/// Words that say nothing about what is drawn.
const SMALL_WORDS: [&str; 32] = [
    "a", "an", "the", "and", "or", "of", "in", "on", "at", "to", "by", "with", "for", "from", "into", "its",
    "it", "is", "are", "his", "her", "their", "some", "very", "this", "that", "while", "as", "up", "out",
    "one", "two",
];

/// A scene's words, ready to compare.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Words(BTreeSet<String>);

impl Words {
    /// The normalised words of `text`.
    pub fn of(text: &str) -> Self {
        let words = text
            .to_lowercase()
            .split(|c: char| !c.is_alphanumeric())
            .filter(|w| !w.is_empty() && !SMALL_WORDS.contains(w))
            .map(stem)
            .collect();
        Words(words)
    }

    /// The Jaccard index of two word sets, from 0 (nothing shared) to 1 (the same words).
    pub fn similarity(&self, other: &Words) -> f64 {
        let union = self.0.union(&other.0).count();
        if union == 0 {
            return 1.0;
        }
        self.0.intersection(&other.0).count() as f64 / union as f64
    }
}

/// A crude English stem, enough to match "jumps", "jumping" and "jumped", "waves" and "wave",
/// "hides" and "hiding", "berries" and "berry", "happily" and "happy".
fn stem(word: &str) -> String {
    const SUFFIXES: [(&str, &str, usize); 6] =
        [("ies", "y", 4), ("ily", "y", 5), ("ing", "", 5), ("ed", "", 4), ("ly", "", 5), ("s", "", 4)];
    let mut stem = word.to_owned();
    if let Some((suffix, replacement, _)) = SUFFIXES.iter().find(|(suffix, _, min_len)| {
        word.len() >= *min_len && word.ends_with(suffix) && !word.ends_with("ss")
    }) {
        stem.truncate(word.len() - suffix.len());
        stem.push_str(replacement);
    }
    // "wave" and "hide" lose their silent e, as "waves" and "hiding" did.
    if stem.len() >= 4 && stem.ends_with('e') {
        stem.pop();
    }
    // "swimm" (from "swimming") is "swim"; "ball" and "grass" keep theirs.
    let bytes = stem.as_bytes();
    if let [.., a, b] = bytes
        && a == b
        && !b"aeiouls".contains(b)
    {
        stem.pop();
    }
    stem
}

/// Scenes kept so far, to find a new one's near-duplicate among them.
#[derive(Debug, Default)]
pub struct Distinct {
    kept: Vec<Words>,
    max_similarity: f64,
}

impl Distinct {
    /// An empty set judging with `max_similarity` (a pair this similar or more is a
    /// near-duplicate).
    pub fn new(max_similarity: f64) -> Self {
        Distinct { kept: Vec::new(), max_similarity }
    }

    /// The index of a kept scene `text` is a near-duplicate of, if any.
    pub fn duplicate_of(&self, text: &str) -> Option<usize> {
        let words = Words::of(text);
        self.kept.iter().position(|kept| kept.similarity(&words) >= self.max_similarity)
    }

    /// Keeps `text` unless it is a near-duplicate of a kept scene; true when kept.
    pub fn keep(&mut self, text: &str) -> bool {
        if self.duplicate_of(text).is_some() {
            return false;
        }
        self.kept.push(Words::of(text));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewordings_of_one_picture_are_near_duplicates_and_other_pictures_are_not() {
        let a = Words::of("A dolphin jumping over the waves");
        assert_eq!(a.similarity(&Words::of("the Dolphin jumps over a wave!")), 1.0);
        assert!(a.similarity(&Words::of("a dolphin resting in a coral reef")) < 0.3);
        assert_eq!(Words::of("berries happily"), Words::of("berry happy"));
        assert_eq!(Words::of("swimming hides boxes"), Words::of("swim hiding box"));
        let mut distinct = Distinct::new(0.6);
        assert!(distinct.keep("a sea turtle swimming near a sunken ship"));
        assert!(!distinct.keep("sea turtles swim near the sunken ship"));
        assert!(distinct.keep("an octopus hiding in a treasure chest"));
        assert_eq!(distinct.duplicate_of("the octopus hides inside a treasure chest"), Some(1));
    }
}
