//! The built-in planner: scenes composed from bundled word lists (subjects, actions, settings)
//! of the theme's family, drawn with a seeded generator, so the same options always give the
//! same plan, with no key and no network.

use std::sync::LazyLock;

use anyhow::bail;
use serde::Deserialize;

use super::book::{Book, Offer, Scene};

/// Draws per page before the planner gives up finding a scene unlike the others.
const DRAWS_PER_PAGE: usize = 64;

/// The word lists of one theme family.
#[derive(Deserialize)]
struct Family {
    name: String,
    /// Words of a theme that pick this family.
    keywords: Vec<String>,
    subjects: Vec<String>,
    actions: Vec<String>,
    settings: Vec<String>,
}

#[derive(Deserialize)]
struct WordLists {
    /// The last family has no keywords: it serves any other theme.
    families: Vec<Family>,
}

static WORDS: LazyLock<WordLists> = LazyLock::new(|| {
    serde_json::from_str(include_str!("words.json")).expect("the bundled word lists are valid JSON")
});

/// The family whose keywords the theme names most often, else the last (everyday) one.
fn family_for(theme: &str) -> &'static Family {
    let words: Vec<String> =
        theme.to_lowercase().split(|c: char| !c.is_alphanumeric() && c != '-').map(str::to_owned).collect();
    let hits = |family: &Family| family.keywords.iter().filter(|k| words.contains(k)).count();
    let families = &WORDS.families;
    families
        .iter()
        .filter(|family| hits(family) > 0)
        .max_by_key(|family| (hits(family), std::cmp::Reverse(family.name.len())))
        .unwrap_or_else(|| families.last().expect("there is a fallback family"))
}

/// "an" before a vowel, else "a".
fn article(word: &str) -> &'static str {
    if word.starts_with(['a', 'e', 'i', 'o', 'u']) { "an" } else { "a" }
}

/// Fills `book` from the theme's family: page after page, the next subject (in an order the
/// seed shuffles) doing a drawn action in a drawn setting, drawn again while it is a
/// near-duplicate of a page already planned.
/// Returns the family's name.
pub fn fill(book: &mut Book, theme: &str, seed: u64) -> anyhow::Result<&'static str> {
    let family = family_for(theme);
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut subjects: Vec<&str> = family.subjects.iter().map(String::as_str).collect();
    rng.shuffle(&mut subjects);
    // A theme outside every family still shows in each scene.
    let topic = if family.keywords.is_empty() { format!(", {}", theme.trim()) } else { String::new() };
    let mut page = 0;
    while let Some(section) = book.missing().first().map(|(name, _)| (*name).to_owned()) {
        let kept = (0..DRAWS_PER_PAGE).any(|draw| {
            let subject = subjects[(page + draw) % subjects.len()];
            let action = &family.actions[rng.usize(..family.actions.len())];
            let setting = &family.settings[rng.usize(..family.settings.len())];
            let scene = Scene {
                section: section.clone(),
                description: format!("{subject} {action}"),
                scene: format!("{} {subject} {action} {setting}{topic}", article(subject)),
            };
            book.offer(scene) == Offer::Kept
        });
        if !kept {
            bail!(
                "the built-in planner found only {page} distinct \"{}\" scenes for theme {theme:?}: ask for fewer pages, \
                 raise max_similarity, or plan with fal",
                family.name
            );
        }
        page += 1;
    }
    Ok(family.name.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(theme: &str, pages: u32, seed: u64) -> Vec<Scene> {
        let mut book = Book::new(vec![("a".into(), pages / 2), ("b".into(), pages - pages / 2)], 0.6);
        fill(&mut book, theme, seed).unwrap();
        book.kept().cloned().collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_plan_and_another_seed_another() {
        let first = plan("ocean animals", 20, 7);
        assert_eq!(first, plan("ocean animals", 20, 7));
        assert_ne!(first, plan("ocean animals", 20, 8));
        assert_eq!(first.len(), 20);
        assert!(first.iter().all(|s| !s.scene.contains("barn")), "ocean words only: {first:?}");
        assert_eq!(first.iter().filter(|s| s.section == "b").count(), 10);
    }

    #[test]
    fn themes_pick_their_family_and_any_other_theme_still_shows() {
        assert_eq!(family_for("Dinosaurs for little ones").name, "dinosaurs");
        assert_eq!(family_for("a trip to the farm").name, "farm");
        let scenes = plan("cheese", 4, 1);
        assert!(scenes.iter().all(|s| s.scene.ends_with(", cheese")), "{scenes:?}");
    }

    #[test]
    fn a_family_too_small_for_the_book_is_an_error_naming_it() {
        let mut book = Book::new(vec![("a".into(), 1000)], 0.3);
        let err = fill(&mut book, "space", 1).unwrap_err().to_string();
        assert!(err.contains("distinct \"space\" scenes"), "{err}");
    }
}
