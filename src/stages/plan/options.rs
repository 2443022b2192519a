//! The `plan` source's options.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::options::parse_declared;
use crate::engine::output_path::OutputPath;
use crate::engine::stage::OptionsError;

/// The `plan` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// What the book is about, e.g. "ocean animals".
    pub theme: String,
    /// How many pages to plan.
    #[schemars(range(min = 1, max = 1000))]
    pub pages: u32,
    /// Who colors the book: toddler, kids, teens or adults. It sets how simple each page is
    /// drawn (words added to every prompt).
    #[serde(default)]
    pub audience: Audience,
    /// Words added to every image prompt, after the scene and the audience's words.
    #[serde(default = "default_style")]
    pub style: String,
    /// Section names; the pages are shared out over them in order (the first sections get one
    /// page more when they do not divide evenly). One section, "pages", when not given.
    #[serde(default)]
    pub sections: Vec<String>,
    /// Who writes the scenes: auto (an LLM on fal when a fal key is set, else the built-in
    /// planner), fal, or offline (the built-in planner: bundled word lists, no network).
    #[serde(default)]
    pub planner: Planner,
    /// Varies the built-in planner's scenes; the same seed always gives the same plan.
    #[serde(default)]
    pub seed: u64,
    /// The plan file in the output folder, in the prompts format. An existing one is used as
    /// it is (edit it to change pages; delete it to plan again).
    #[serde(default = "default_file")]
    pub file: OutputPath,
    /// Two scenes whose words (lower-cased, stemmed, without small words) overlap this much
    /// (Jaccard similarity, 0-1) are near-duplicates: the later one is asked for again.
    #[serde(default = "default_similarity")]
    #[schemars(range(min = 0, max = 1))]
    pub max_similarity: f64,
    /// The fal LLM endpoint that writes the scenes. One ending in /chat/completions takes
    /// OpenAI-style messages and is asked for JSON by schema (structured output); others
    /// (fal-ai/any-llm) take a prompt and are asked for JSON in words.
    #[serde(default = "default_endpoint")]
    pub endpoint: String,
    /// The model the endpoint runs (its `model` input).
    #[serde(default = "default_llm")]
    pub llm: String,
    /// What one request to the endpoint costs, in US dollars: counted in the journal and
    /// against `max_cost_usd`. Set it from the endpoint's price on fal.
    #[serde(default = "default_price")]
    #[schemars(range(min = 0))]
    pub price_usd: f64,
    /// The most requests the plan may take: the first, and those asking again after a
    /// malformed answer or for near-duplicate scenes. Each is paid for.
    #[serde(default = "default_max_requests")]
    #[schemars(range(min = 1, max = 20))]
    pub max_requests: u32,
    /// The most the plan's requests may cost together, in US dollars (none: only
    /// `max_requests` bounds them).
    #[serde(default)]
    #[schemars(range(min = 0))]
    pub max_cost_usd: Option<f64>,
    /// The queue host (default: FAL_QUEUE_BASE_URL, else fal's).
    #[serde(default)]
    pub base_url: Option<String>,
    /// How often to ask fal whether the request has finished, in milliseconds.
    #[serde(default = "default_poll_interval_ms")]
    #[schemars(range(min = 10, max = 60000))]
    pub poll_interval_ms: u64,
}

/// Who colors the book.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Audience {
    /// Ages 2-4: a few big shapes, extra thick outlines.
    Toddler,
    /// Ages 4-8: simple scenes, bold outlines, large areas.
    #[default]
    Kids,
    /// Ages 9-16: more detail.
    Teens,
    /// Intricate linework and patterns.
    Adults,
}

impl Audience {
    /// Words for the image prompt, so the model draws for this age.
    pub fn prompt_words(self) -> &'static str {
        match self {
            Audience::Toddler => {
                "very simple coloring page for toddlers, a few big shapes, extra thick outlines, no small details"
            }
            Audience::Kids => "simple coloring page for children, bold clean outlines, large areas to color",
            Audience::Teens => "detailed coloring page for teens, clean outlines, moderate detail",
            Audience::Adults => {
                "intricate coloring page for adults, fine detailed linework, decorative patterns"
            }
        }
    }

    /// Who it is, for the LLM.
    pub fn reader(self) -> &'static str {
        match self {
            Audience::Toddler => "toddlers (ages 2-4)",
            Audience::Kids => "children (ages 4-8)",
            Audience::Teens => "teens (ages 9-16)",
            Audience::Adults => "adults",
        }
    }
}

/// Who writes the scenes.
#[derive(Deserialize, Serialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Planner {
    /// fal when a key is set, else offline.
    #[default]
    Auto,
    /// An LLM on fal (needs a key).
    Fal,
    /// The built-in planner.
    Offline,
}

fn default_style() -> String {
    "black and white line art, no shading, no text, white background".into()
}

fn default_file() -> OutputPath {
    OutputPath::new("plan.json").expect("a plain file name is an output path")
}

fn default_similarity() -> f64 {
    0.6
}

fn default_endpoint() -> String {
    "fal-ai/any-llm".into()
}

fn default_llm() -> String {
    "google/gemini-flash-1.5".into()
}

fn default_price() -> f64 {
    0.01
}

fn default_max_requests() -> u32 {
    4
}

fn default_poll_interval_ms() -> u64 {
    500
}

impl Options {
    /// Parses and checks the options.
    pub fn parse(options: &Value) -> Result<Self, OptionsError> {
        let options: Options = parse_declared(options)?;
        if options.theme.trim().is_empty() {
            return Err(OptionsError::at("theme", "the theme is empty: say what the book is about"));
        }
        for (index, section) in options.sections.iter().enumerate() {
            if section.trim().is_empty() {
                return Err(OptionsError::at(&format!("sections.{index}"), "a section name is empty"));
            }
            if options.sections[..index].contains(section) {
                return Err(OptionsError::at(
                    &format!("sections.{index}"),
                    format!("section {section:?} is named twice"),
                ));
            }
        }
        if options.sections.len() > options.pages as usize {
            return Err(OptionsError::at(
                "sections",
                format!(
                    "{} sections for {} pages: every section needs a page",
                    options.sections.len(),
                    options.pages
                ),
            ));
        }
        if options.endpoint.trim().is_empty() || options.endpoint.starts_with('/') {
            return Err(OptionsError::at("endpoint", "an endpoint id such as fal-ai/any-llm"));
        }
        if let Some(url) = &options.base_url {
            reqwest::Url::parse(url)
                .map_err(|e| OptionsError::at("base_url", format!("{url:?} is not a URL: {e}")))?;
        }
        Ok(options)
    }

    /// The sections and how many pages each has, in book order.
    pub fn layout(&self) -> Vec<(String, u32)> {
        let sections =
            if self.sections.is_empty() { vec!["pages".to_owned()] } else { self.sections.clone() };
        let count = sections.len() as u32;
        sections
            .into_iter()
            .enumerate()
            .map(|(index, name)| (name, self.pages / count + u32::from((index as u32) < self.pages % count)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(options: Value) -> OptionsError {
        Options::parse(&options).err().expect("the options are refused")
    }

    #[test]
    fn pages_are_shared_out_over_the_sections_in_order() {
        let options =
            Options::parse(&json!({"theme": "sea", "pages": 7, "sections": ["a", "b", "c"]})).unwrap();
        assert_eq!(options.layout(), [("a".to_owned(), 3), ("b".to_owned(), 2), ("c".to_owned(), 2)]);
        let options = Options::parse(&json!({"theme": "sea", "pages": 2})).unwrap();
        assert_eq!(options.layout(), [("pages".to_owned(), 2)]);
    }

    #[test]
    fn bad_options_are_refused_at_their_path() {
        assert_eq!(error(json!({"theme": " ", "pages": 2})).path, ["theme"]);
        assert_eq!(error(json!({"theme": "sea", "pages": 0})).path, ["pages"]);
        assert_eq!(
            error(json!({"theme": "sea", "pages": 4, "sections": ["a", "b", "a"]})).path,
            ["sections", "2"]
        );
        let err = error(json!({"theme": "sea", "pages": 1, "sections": ["a", "b"]}));
        assert!(err.message.contains("every section needs a page"), "{}", err.message);
        assert_eq!(error(json!({"theme": "sea", "pages": 1, "audience": "babies"})).path, ["audience"]);
        assert_eq!(
            error(json!({"theme": "sea", "pages": 1, "max_similarity": 1.5})).path,
            ["max_similarity"]
        );
    }
}
