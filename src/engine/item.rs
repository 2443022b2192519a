//! One unit of work (a prompt becoming a page) and the envelope it travels in.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::media::Payload;

/// The fact where a source puts what it knows of an item's content beyond its prompt (a file's
/// size and modification time): part of the item's fingerprint, so an edited input runs again.
pub const REVISION_FACT: &str = "source_revision";

/// What a source knows about an item: the fields of the original prompt files.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Prompt {
    /// The book section (e.g. "animals"); empty when the source has none.
    pub section: String,
    /// The image or page number, used for ordering and filenames.
    pub number: u32,
    /// The text sent to the image model.
    pub image_prompt: String,
    /// A short human description, used in filenames.
    pub description: String,
    /// Any other fields the prompt file carried, kept for templates and metadata.
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub extra: Map<String, Value>,
}

/// An item as it moves through the pipeline: its identity, its prompt and what stages learned
/// about it (model, seed, timings...), which sinks write into the metadata JSON.
#[derive(Clone, Debug)]
pub struct Item {
    /// Stable key of the item within its batch (unique), used to join the inputs of a sink
    /// and to resume. Not a file name: it may hold `/` (a `files` item's relative path), so
    /// sinks sanitize it or name files by its hash.
    pub key: String,
    /// Position in the source, from 0.
    pub seq: u64,
    /// The prompt this item came from.
    pub prompt: Prompt,
    /// Facts recorded by stages (e.g. `model`, `seed`, `request_id`), merged into metadata.
    pub facts: Map<String, Value>,
    /// Retries spent on this item so far, over all stages.
    pub retries: u32,
    /// Time spent generating this item, when a generator stage ran.
    pub generation_time: Option<Duration>,
    /// Money paid stages spent on this item in this run, in US dollars.
    pub cost_usd: f64,
}

impl Item {
    /// A fresh item for the prompt at position `seq`.
    pub fn new(seq: u64, prompt: Prompt) -> Self {
        let key = item_key(seq, &prompt);
        Item { key, seq, prompt, facts: Map::new(), retries: 0, generation_time: None, cost_usd: 0.0 }
    }

    /// A fresh item with a key its source chose (the `files` source keys by relative path).
    pub fn with_key(key: String, seq: u64, prompt: Prompt) -> Self {
        Item { key, ..Item::new(seq, prompt) }
    }

    /// Records a fact about this item for the metadata file.
    pub fn record(&mut self, name: &str, value: impl Into<Value>) {
        self.facts.insert(name.to_owned(), value.into());
    }
}

/// `section-number`, or `item-seq` when the source gave neither: stable across runs of the same file.
fn item_key(seq: u64, prompt: &Prompt) -> String {
    let section: String = prompt
        .section
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '-' })
        .collect();
    if section.is_empty() && prompt.number == 0 {
        format!("item-{seq:05}")
    } else if section.is_empty() {
        format!("{:05}", prompt.number)
    } else {
        format!("{section}-{:05}", prompt.number)
    }
}

/// Why an item stopped before reaching a sink.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Failure {
    /// The id of the stage that failed it.
    pub stage: String,
    /// The error, for humans.
    pub error: String,
    /// How many attempts the stage made.
    pub attempts: u32,
}

/// The state of an item on an edge. Failed and filtered items still travel to the sinks
/// (without payload), so every sink sees every item exactly once and can record its fate.
#[derive(Clone, Debug)]
pub enum State {
    /// Processed so far; carries the data.
    Ready(Payload),
    /// A stage failed the item.
    Failed(Failure),
    /// A stage removed the item on purpose (e.g. the safety check); the reason says why.
    Filtered {
        /// The stage that filtered it.
        stage: String,
        /// Why, for metadata and the summary.
        reason: String,
    },
}

/// An item together with its state: the message type of every channel.
#[derive(Clone, Debug)]
pub struct Envelope {
    /// The item.
    pub item: Item,
    /// Its state after the last stage.
    pub state: State,
}
