//! A book's plan as it is being made: the scenes each section still needs, the scenes kept,
//! and the near-duplicates turned away; once complete, its pages in the prompts format.

use serde::Serialize;
use serde_json::Map;

use super::options::Audience;
use super::similarity::Distinct;
use crate::engine::item::Prompt;

/// One planned page before it is a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct Scene {
    /// The section it belongs to.
    pub section: String,
    /// A few words naming it (file names, the review page).
    pub description: String,
    /// What is drawn, in a sentence.
    pub scene: String,
}

/// What became of a scene offered to the book.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Kept as a page.
    Kept,
    /// Too close to a kept scene: asked for again.
    NearDuplicate,
    /// Its section is not one of the book's, or already has its pages.
    NotWanted,
}

/// The plan being made.
pub struct Book {
    sections: Vec<(String, u32, Vec<Scene>)>,
    distinct: Distinct,
    /// Scenes turned away as near-duplicates, so a re-ask can name them.
    pub turned_away: Vec<String>,
}

impl Book {
    /// An empty plan of `layout` (section names and page counts), judging near-duplicates at
    /// `max_similarity`.
    pub fn new(layout: Vec<(String, u32)>, max_similarity: f64) -> Self {
        Book {
            sections: layout.into_iter().map(|(name, pages)| (name, pages, Vec::new())).collect(),
            distinct: Distinct::new(max_similarity),
            turned_away: Vec::new(),
        }
    }

    /// The sections still short of scenes, with how many each needs.
    pub fn missing(&self) -> Vec<(&str, u32)> {
        self.sections
            .iter()
            .map(|(name, pages, kept)| (name.as_str(), pages - kept.len() as u32))
            .filter(|(_, wanted)| *wanted > 0)
            .collect()
    }

    /// Whether every section has its pages.
    pub fn is_complete(&self) -> bool {
        self.missing().is_empty()
    }

    /// Every scene kept so far, in book order.
    pub fn kept(&self) -> impl Iterator<Item = &Scene> {
        self.sections.iter().flat_map(|(_, _, kept)| kept)
    }

    /// Offers a scene: kept unless its section is full or unknown, or it is a near-duplicate
    /// of a kept scene (then remembered as turned away).
    pub fn offer(&mut self, scene: Scene) -> Offer {
        let Some((_, pages, kept)) = self.sections.iter_mut().find(|(name, _, _)| *name == scene.section)
        else {
            return Offer::NotWanted;
        };
        if kept.len() as u32 >= *pages {
            return Offer::NotWanted;
        }
        if !self.distinct.keep(&scene.scene) {
            self.turned_away.push(scene.scene);
            return Offer::NearDuplicate;
        }
        kept.push(scene);
        Offer::Kept
    }

    /// The pages as prompts, numbered through the book: the scene, then the audience's words,
    /// then the style.
    pub fn prompts(&self, audience: Audience, style: &str) -> Vec<Prompt> {
        self.kept()
            .enumerate()
            .map(|(index, scene)| {
                let mut parts = vec![scene.scene.trim().trim_end_matches('.'), audience.prompt_words()];
                if !style.trim().is_empty() {
                    parts.push(style.trim());
                }
                Prompt {
                    section: scene.section.clone(),
                    number: index as u32 + 1,
                    image_prompt: parts.join(", "),
                    description: scene.description.clone(),
                    extra: Map::new(),
                }
            })
            .collect()
    }
}

/// The plan file: the prompts format (`{"prompts": [...]}`, which the `prompts` source reads
/// too), with what it was planned from on top for the reader. A struct, so its fields keep
/// this order in the file.
#[derive(Serialize)]
pub struct PlanFile<'a> {
    theme: &'a str,
    audience: Audience,
    planner: &'a str,
    prompts: Vec<PlanPage<'a>>,
}

/// One page of the plan file, in the prompts format.
#[derive(Serialize)]
struct PlanPage<'a> {
    section: &'a str,
    image_number: u32,
    description: &'a str,
    image_prompt: &'a str,
}

impl<'a> PlanFile<'a> {
    /// The plan of `prompts`, made by `planner`.
    pub fn new(theme: &'a str, audience: Audience, planner: &'a str, prompts: &'a [Prompt]) -> Self {
        let prompts = prompts
            .iter()
            .map(|p| PlanPage {
                section: &p.section,
                image_number: p.number,
                description: &p.description,
                image_prompt: &p.image_prompt,
            })
            .collect();
        PlanFile { theme, audience, planner, prompts }
    }
}
