//! The pages a `lineart-check` has seen, for finding near-duplicates: this run's, and earlier
//! runs' from the journal. Each item's page is its best candidate as the engine picks it
//! (acceptable first, then the higher score, the earlier among equals), so a re-rolled
//! duplicate or a best-of-N runner-up is never what a new page is compared with.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;

use crate::engine::item::Item;
use crate::engine::journal::{PageHashRow, PageHashes};
use crate::imaging::quality::likeness::PageHash;

/// A page found like another.
#[derive(Clone, Debug, PartialEq)]
pub struct Twin {
    /// The other item's key.
    pub key: String,
    /// How alike they are (see [`PageHash::likeness`]).
    pub likeness: f64,
}

/// What a judge says of a candidate, once it knows the candidate's twin.
pub struct Word {
    /// Whether it may be printed.
    pub acceptable: bool,
    /// Higher is better.
    pub score: f64,
    /// The audience the page suits, and its difficulty score (kept for `status`).
    pub difficulty: (&'static str, f64),
}

/// One hashed candidate.
struct Seen {
    number: u32,
    seq: u64,
    hash: PageHash,
    acceptable: bool,
    score: f64,
    duplicate_of: Option<String>,
}

#[derive(Default)]
struct State {
    /// True once the journal's rows are read (on the first page: the run opens the journal
    /// after the stages are built).
    loaded: bool,
    store: Option<PageHashes>,
    /// Per item key, its candidates in number order.
    pages: BTreeMap<String, Vec<Seen>>,
}

/// The pages one judging stage has seen.
pub struct SeenPages {
    stage: String,
    output_dir: PathBuf,
    state: Mutex<State>,
}

impl SeenPages {
    /// The pages stage `stage` has seen in the batch writing to `output_dir`.
    pub fn new(stage: &str, output_dir: PathBuf) -> SeenPages {
        SeenPages { stage: stage.to_owned(), output_dir, state: Mutex::new(State::default()) }
    }

    /// Compares candidate `item` hashed `hash` with every other item's page, and records it
    /// with the word `judge` gives once told its twin (the most alike page at or above
    /// `max_likeness`, if any). Checking and recording under one lock, two near-identical pages
    /// judged at once cannot both miss each other: the later one is the duplicate.
    pub fn judge(
        &self,
        item: &Item,
        hash: Option<PageHash>,
        max_likeness: f64,
        judge: impl FnOnce(Option<&Twin>) -> Word,
    ) -> Option<Twin> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !state.loaded {
            state.loaded = true;
            self.load(&mut state);
        }
        let twin = hash.as_ref().and_then(|hash| twin_of(&state.pages, &item.key, hash, max_likeness));
        let word = judge(twin.as_ref());
        let Some(hash) = hash else { return twin };
        let number = item.trial.number;
        let duplicate_of = twin.as_ref().map(|t| t.key.clone());
        if let Some(store) = &state.store {
            let row = PageHashRow {
                key: item.key.clone(),
                number,
                seq: item.seq,
                hash: hash.to_hex(),
                acceptable: word.acceptable,
                score: word.score,
                duplicate_of: duplicate_of.clone(),
                suits: word.difficulty.0.to_owned(),
                difficulty: word.difficulty.1,
            };
            if let Err(e) = store.record(&self.stage, &row) {
                tracing::warn!("stage \"{}\": {e:#}; the page hash is kept for this run only", self.stage);
            }
        }
        let candidates = state.pages.entry(item.key.clone()).or_default();
        // Candidates from this number up are of an older version of the page.
        candidates.retain(|c| c.number < number);
        let (acceptable, score) = (word.acceptable, word.score);
        candidates.push(Seen { number, seq: item.seq, hash, acceptable, score, duplicate_of });
        twin
    }

    fn load(&self, state: &mut State) {
        let rows = PageHashes::open(&self.output_dir).and_then(|store| {
            let rows = match &store {
                Some(store) => store.of_stage(&self.stage)?,
                None => Vec::new(),
            };
            Ok((store, rows))
        });
        match rows {
            Ok((store, rows)) => {
                state.store = store;
                for row in rows {
                    let Some(hash) = PageHash::from_hex(&row.hash) else { continue };
                    state.pages.entry(row.key).or_default().push(Seen {
                        number: row.number,
                        seq: row.seq,
                        hash,
                        acceptable: row.acceptable,
                        score: row.score,
                        duplicate_of: row.duplicate_of,
                    });
                }
            }
            Err(e) => tracing::warn!(
                "stage \"{}\": cannot read the earlier pages' hashes: {e:#}; comparing with this run's only",
                self.stage
            ),
        }
    }
}

/// The page most like `hash` among the items other than `key`, at or above `max_likeness`
/// (the earlier in the book among equals). An item whose page was itself found a duplicate is
/// passed over: its original is compared with directly, and the two never flag each other.
fn twin_of(
    pages: &BTreeMap<String, Vec<Seen>>,
    key: &str,
    hash: &PageHash,
    max_likeness: f64,
) -> Option<Twin> {
    let mut best: Option<(f64, u64, &str)> = None;
    for (other, candidates) in pages {
        if other == key {
            continue;
        }
        let Some(page) = page_of(candidates) else { continue };
        if page.duplicate_of.is_some() {
            continue;
        }
        let likeness = hash.likeness(&page.hash);
        let better = best.is_none_or(|(l, seq, _)| likeness > l || (likeness == l && page.seq < seq));
        if likeness >= max_likeness && better {
            best = Some((likeness, page.seq, other));
        }
    }
    best.map(|(likeness, _, key)| Twin { key: key.to_owned(), likeness })
}

/// The candidate that is an item's page: the best, the earliest among equals.
fn page_of(candidates: &[Seen]) -> Option<&Seen> {
    candidates.iter().fold(None, |best: Option<&Seen>, c| match best {
        Some(b) if (c.acceptable, c.score) <= (b.acceptable, b.score) => Some(b),
        _ => Some(c),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::item::Prompt;

    fn hash_of(seed: u8) -> PageHash {
        let mut rng = fastrand::Rng::with_seed(u64::from(seed));
        PageHash::from_hex(&(0..256).map(|_| format!("{:02x}", rng.u8(..))).collect::<String>()).unwrap()
    }

    fn item(key: &str, number: u32) -> Item {
        let mut item = Item::with_key(key.into(), 0, Prompt::default());
        item.trial.number = number;
        item
    }

    fn judge(seen: &SeenPages, key: &str, number: u32, hash: u8, acceptable: bool) -> Option<String> {
        let twin = seen.judge(&item(key, number), Some(hash_of(hash)), 0.95, |twin| Word {
            acceptable: acceptable && twin.is_none(),
            score: 1.0,
            difficulty: ("kids", 30.0),
        });
        twin.map(|t| t.key)
    }

    #[test]
    fn a_page_is_compared_with_the_other_items_pages_only() {
        let seen = SeenPages::new("quality", PathBuf::from("/nonexistent"));
        assert_eq!(judge(&seen, "a", 0, 1, true), None);
        assert_eq!(judge(&seen, "b", 0, 2, true), None, "an unlike page");
        assert_eq!(judge(&seen, "c", 0, 1, true), Some("a".into()), "a's picture again");
        // c's re-roll draws something new; a's own next candidate is no duplicate of itself.
        assert_eq!(judge(&seen, "c", 1, 3, true), None);
        assert_eq!(judge(&seen, "a", 0, 1, true), None, "a again (a resume) is not c's duplicate");
        // c's page is now candidate 1: a page like it is its duplicate, and one like c's
        // rejected first candidate is a's.
        assert_eq!(judge(&seen, "d", 0, 3, true), Some("c".into()));
        assert_eq!(judge(&seen, "e", 0, 1, true), Some("a".into()));
    }
}
