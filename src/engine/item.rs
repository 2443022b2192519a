//! One unit of work (a prompt becoming a page) and the envelope it travels in.

use std::time::Duration;

use serde::Serialize;
use serde_json::{Map, Value};

use super::media::Payload;

/// The fact where a source puts what it knows of an item's content beyond its prompt (a file's
/// size and modification time): part of the item's fingerprint, so an edited input runs again.
pub const REVISION_FACT: &str = "source_revision";

/// The fact where the engine puts what stages read for an item besides its options and prompt
/// (the content of a reference image a stage sends), by stage id: part of the item's
/// fingerprint, so a changed input file makes the pages that read it again, and only those.
pub const INPUTS_FACT: &str = "stage_inputs";

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

impl Prompt {
    /// The field that marks a prompt as the cover's front art (`"cover": true`).
    pub const COVER_FIELD: &str = "cover";

    /// The prompt for the cover's front art: drawn like any page, left out of the book's
    /// interior, and used by a `cover` sink.
    pub fn is_cover(&self) -> bool {
        self.extra.get(Self::COVER_FIELD) == Some(&Value::Bool(true))
    }
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
    /// Which candidate of its page this is, and where the sinks put it.
    pub trial: Trial,
    /// What a judging stage thought of this candidate, when one ran.
    pub judgement: Option<Judgement>,
}

/// One generation of a page among the candidates a judging stage may ask for (re-rolls of a
/// rejected page, or best of N). Generators make candidate `number` deterministically, so a
/// candidate made before is served from the raw cache, never paid twice.
#[derive(Clone, Debug, PartialEq)]
pub struct Trial {
    /// 0 for the first generation, then 1, 2, ...
    pub number: u32,
    /// How many candidates one paid request may make at once (best of N with `num_images`).
    pub per_request: u32,
    /// Where the sinks put this candidate.
    pub placement: Placement,
    /// True when no later candidate of this page comes in this batch: its rounds are over, so
    /// the page (this candidate, or an earlier one when this one is set aside) is final. A sink
    /// that publishes pages (r2) holds a page back until then.
    pub last: bool,
}

impl Default for Trial {
    fn default() -> Self {
        Trial { number: 0, per_request: 1, placement: Placement::Page, last: true }
    }
}

impl Trial {
    /// Which request of the item makes this candidate, and which of its images it is.
    pub fn request_and_image(&self) -> (u32, u32) {
        let per_request = self.per_request.max(1);
        (self.number / per_request, self.number % per_request)
    }

    /// The seed of request `request` of item `key`: the configured one (or none: the service
    /// picks) for the first, then one derived from the key, that seed and the request, so
    /// every later request asks for a new image and asking again gives the same one.
    pub fn seed(key: &str, configured: Option<u64>, request: u32) -> Option<u64> {
        if request == 0 {
            return configured;
        }
        use sha2::Digest as _;
        let digest = sha2::Sha256::digest(format!("{key}\0{configured:?}\0{request}").as_bytes());
        // 31 bits: every image service takes it as a seed.
        Some(u64::from(u32::from_le_bytes([digest[0], digest[1], digest[2], digest[3]]) >> 1))
    }
}

/// Where the sinks put a candidate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Placement {
    /// It is the page: written in place (moving aside the candidate it replaces).
    Page,
    /// Another candidate is the page: kept aside (`rejected/` or `candidates/`), never lost.
    SetAside,
}

/// A judging stage's word on a candidate: the engine compares candidates by it.
#[derive(Clone, Debug, PartialEq)]
pub struct Judgement {
    /// The verdict's name, as metadata and summaries count it (e.g. pass, warn, reject).
    pub verdict: String,
    /// False when the page should not be printed: another candidate is wanted.
    pub acceptable: bool,
    /// Higher is better; an acceptable candidate beats any unacceptable one.
    pub score: f64,
}

impl Judgement {
    /// Whether this candidate is better than `other`.
    pub fn beats(&self, other: &Judgement) -> bool {
        (self.acceptable, self.score) > (other.acceptable, other.score)
    }
}

impl Item {
    /// A fresh item for the prompt at position `seq`.
    pub fn new(seq: u64, prompt: Prompt) -> Self {
        let key = item_key(seq, &prompt);
        Item {
            key,
            seq,
            prompt,
            facts: Map::new(),
            retries: 0,
            generation_time: None,
            cost_usd: 0.0,
            trial: Trial::default(),
            judgement: None,
        }
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
    /// The batch's stop cut the item short (Ctrl-C: [`StageError::Interrupted`], or the fatal
    /// error that stopped the batch): it did not fail, and the journal leaves it for the next
    /// run.
    ///
    /// [`StageError::Interrupted`]: super::stage::StageError::Interrupted
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
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
