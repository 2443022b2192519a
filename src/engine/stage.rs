//! The contract between the engine and stage kinds. A stage kind implements [`Kind`] (usually
//! by declaring itself a [`TypedKind`](super::declared_kind::TypedKind)) in one file under
//! `src/stages/` and is listed in the [`Registry`]; the engine never names a kind.

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::item::{Item, State};
use super::media::{Media, Payload};
use super::output_path::Claim;
use super::run_context::RunContext;
use super::summary::Summary;

/// Where a component sits in the pipeline file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Makes items (listed under `sources:`).
    Source,
    /// Transforms items (listed under `stages:`).
    Stage,
    /// Writes items out (listed under `sinks:`).
    Sink,
}

impl Role {
    /// The section name in the pipeline file, singular, for messages.
    pub fn noun(self) -> &'static str {
        match self {
            Role::Source => "source",
            Role::Stage => "stage",
            Role::Sink => "sink",
        }
    }
}

/// What a stage gives for what it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMedia {
    /// Always this media.
    Fixed(Media),
    /// The same media as its input (e.g. upscale keeps gray as gray).
    SameAsInput,
    /// Nothing: a sink.
    None,
}

impl OutputMedia {
    /// The media produced for an input media.
    pub fn for_input(self, input: Media) -> Option<Media> {
        match self {
            OutputMedia::Fixed(m) => Some(m),
            OutputMedia::SameAsInput => Some(input),
            OutputMedia::None => None,
        }
    }
}

/// One documented option of a kind, shown by `inkflow stages KIND`.
#[derive(Clone, Debug)]
pub struct OptionDoc {
    /// The field name in the pipeline file.
    pub name: String,
    /// Its type, as a user would write it (`integer 0-255`, `string`, `contain|cover|stretch`).
    pub ty: String,
    /// The default, or `None` when the option is required.
    pub default: Option<String>,
    /// What it is for.
    pub doc: String,
    /// True for a file or folder to read (a [`PipelinePath`](super::pipeline_path::PipelinePath)
    /// or a list of them): written in a pipeline file, it is read against the file's folder.
    pub path: bool,
}

impl OptionDoc {
    /// An optional field with a default.
    pub fn new(name: &str, ty: &str, default: &str, doc: &str) -> Self {
        OptionDoc {
            name: name.into(),
            ty: ty.into(),
            default: Some(default.into()),
            doc: doc.into(),
            path: false,
        }
    }

    /// A field the user must give.
    pub fn required(name: &str, ty: &str, doc: &str) -> Self {
        OptionDoc { name: name.into(), ty: ty.into(), default: None, doc: doc.into(), path: false }
    }
}

/// Everything the engine knows about a kind without building it: enough for `validate`,
/// `graph` and `inkflow stages` to work offline and instantly.
#[derive(Clone, Debug)]
pub struct KindInfo {
    /// The `kind:` name.
    pub name: String,
    /// Whether it is a source, stage or sink.
    pub role: Role,
    /// One line for `inkflow stages`.
    pub summary: String,
    /// Its options.
    pub options: Vec<OptionDoc>,
    /// Media it takes (empty for sources).
    pub accepts: Vec<Media>,
    /// Media it gives.
    pub output: OutputMedia,
}

/// What the engine hands a kind when building a component.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// The component's id in the pipeline file.
    pub id: String,
    /// The ids it reads from, in order.
    pub inputs: Vec<String>,
    /// The batch's output directory; sinks resolve relative paths against it.
    pub output_dir: PathBuf,
    /// The pipeline file, for messages.
    pub pipeline_file: PathBuf,
    /// True for `--dry-run` and `validate`: build must not touch the network.
    pub dry_run: bool,
    /// How many items the components reading this one can hold at once (their queues plus
    /// the items they work on): an I/O stage need not fetch further ahead than this, since
    /// anything more would only wait in memory.
    pub room_below: usize,
}

/// An option value a kind rejected, with the path inside its options (e.g. `["size", "width"]`)
/// so the engine can point at the line and column.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct OptionsError {
    /// Path of the offending field within the component's options; empty for the whole component.
    pub path: Vec<String>,
    /// What is wrong, for humans.
    pub message: String,
}

impl OptionsError {
    /// An error about the option at `path` (a dotted field path within the component).
    pub fn at(path: &str, message: impl Into<String>) -> Self {
        let path = path.split('.').filter(|s| !s.is_empty()).map(str::to_owned).collect();
        OptionsError { path, message: message.into() }
    }

    /// `option a.b: message`, or the message alone when it is about the whole component: how a
    /// build step reports options that `check` did not see (without a file position).
    pub fn qualified(&self) -> String {
        if self.path.is_empty() {
            self.message.clone()
        } else {
            format!("option {}: {}", self.path.join("."), self.message)
        }
    }
}

/// Deserializes a kind's typed options, keeping the path of the field that failed.
/// Kinds use `#[serde(deny_unknown_fields)]` so typos are caught with the list of expected fields.
pub fn parse_options<T: DeserializeOwned>(options: &Value) -> Result<T, OptionsError> {
    serde_path_to_error::deserialize(options).map_err(|e| {
        let path = e
            .path()
            .iter()
            .filter_map(|seg| match seg {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        OptionsError { path, message: e.into_inner().to_string() }
    })
}

/// A stage kind: its description, a pure check of its options and the build step.
pub trait Kind: Send + Sync {
    /// The kind's description.
    fn info(&self) -> &KindInfo;
    /// Checks options without side effects (no files, no network): `validate` runs only this.
    fn check(&self, options: &Value) -> Result<(), OptionsError>;
    /// Options that are accepted but worth a word (e.g. an input the chosen model does not
    /// take), each with its option path; `validate` prints them as warnings.
    fn warnings(&self, _options: &Value) -> Vec<OptionsError> {
        Vec::new()
    }
    /// Builds a runnable component; may read files and the environment.
    fn build(&self, options: &Value, ctx: &BuildContext) -> anyhow::Result<Component>;
    /// The places in the output folder it writes, given its options and input ids, so `check`
    /// can refuse two components writing one place; a place that breaks the output-path rule is
    /// an error at its option. Pure, like `check`; nothing by default.
    fn writes(&self, _options: &Value, _inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        Ok(Vec::new())
    }
}

/// Why a stage did not pass an item on.
#[derive(Debug, thiserror::Error)]
pub enum StageError {
    /// The item failed; the batch goes on.
    #[error("{message}")]
    Failed {
        /// What went wrong, naming the cause.
        message: String,
        /// Attempts made, counting the first.
        attempts: u32,
    },
    /// The item was removed on purpose (e.g. an unsafe prompt); not an error.
    #[error("filtered: {reason}")]
    Filtered {
        /// Why, for metadata and the summary.
        reason: String,
    },
    /// Nothing else can succeed (e.g. the API key was refused): stop the batch.
    #[error("{0}")]
    Fatal(String),
    /// The batch is stopping (Ctrl-C) and cut the item short: not submitted, or its paid
    /// request left open to collect. Not a failure: the next run takes the item up again.
    #[error("{0}")]
    Interrupted(String),
}

impl StageError {
    /// An item failure after one attempt.
    pub fn failed(message: impl Into<String>) -> Self {
        StageError::Failed { message: message.into(), attempts: 1 }
    }
}

/// A source lists its items up front (cheap: prompts or file paths) as a [`Listing`] that makes
/// each item when the batch reaches it, and loads each payload on demand.
pub trait Source: Send + Sync {
    /// Lists the items; errors name the file and line.
    fn list(&self) -> anyhow::Result<Box<dyn Listing>>;
    /// Produces an item's payload. Runs on the CPU pool (decoding a file is CPU work).
    fn load(&self, item: &mut Item) -> Result<Payload, StageError>;
}

/// A source's items in order, each made when the batch reaches it: a folder of 10,000 images
/// stays 10,000 paths rather than 10,000 items, so memory does not grow with the batch.
pub trait Listing: Send + Sync {
    /// How many items there are.
    fn len(&self) -> usize;
    /// True when there are none (the pair clippy expects of a `len`).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The item at `index` (from 0). The engine numbers it (`seq`) over all sources.
    fn item(&self, index: usize) -> Item;
}

impl dyn Listing {
    /// The items in order, each made as the iterator reaches it.
    pub fn iter(&self) -> impl Iterator<Item = Item> + Send + '_ {
        (0..self.len()).map(|index| self.item(index))
    }
}

/// Items already made (prompts carry their text anyway): each is handed out as a copy.
impl Listing for Vec<Item> {
    fn len(&self) -> usize {
        Vec::len(self)
    }

    fn item(&self, index: usize) -> Item {
        self[index].clone()
    }
}

/// A stage whose work is CPU-bound (pixels): the engine runs it on the rayon pool.
pub trait CpuStage: Send + Sync {
    /// Transforms one item's payload; may record facts on the item.
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError>;

    /// For a stage that judges pages (sets [`Item::judgement`]): how many candidates of a page
    /// it wants, which makes the batch run in rounds ([`super::candidates`]).
    fn candidate_policy(&self) -> Option<super::candidates::CandidatePolicy> {
        None
    }

    /// What it does, for a stage that a fused kernel can do together with its neighbour in a
    /// chain ([`super::fusion::kernels`]).
    fn step(&self) -> Option<super::fusion::Step> {
        None
    }

    /// For a stage whose step is [`Step::Check`](super::fusion::Step::Check): judges the page
    /// from what a fused kernel measured in its pass, the 1-bit `page` and the gray page's
    /// `blocks`, and from the gray `source` image the page was upscaled from, as `process`
    /// judges the gray page (which the kernel never makes).
    fn check_fused(
        &self,
        item: &mut Item,
        page: &crate::engine::media::Raster,
        blocks: &crate::imaging::quality::tones::Blocks,
        source: &crate::engine::media::Raster,
    ) -> Result<(), StageError> {
        let _ = (item, page, blocks, source);
        Err(StageError::failed("this stage judges no fused page"))
    }
}

/// A paid stage's estimate for a batch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CostEstimate {
    /// US dollars for the items it could price.
    pub usd: f64,
    /// The items it could not price, each with why: the estimate is then a lower bound and a
    /// budget cannot be enforced.
    pub unpriced: Vec<String>,
}

/// A stage whose work is I/O-bound (network): the engine runs it as futures on tokio.
#[async_trait]
pub trait IoStage: Send + Sync {
    /// Transforms one item's payload; may record facts on the item.
    async fn process(&self, item: &mut Item, input: Payload, cx: &RunContext) -> Result<Payload, StageError>;

    /// What running `items` through this stage would cost, for `--dry-run` and the budget;
    /// `None` for a stage that costs nothing.
    fn estimate_cost(&self, _items: &mut dyn Iterator<Item = Item>) -> Option<CostEstimate> {
        None
    }

    /// The most this stage may spend in one batch, in US dollars (its budget option); `None`
    /// for a stage without a limit. The batch's budget is the sum.
    fn budget_usd(&self) -> Option<f64> {
        None
    }

    /// Called once when the batch stops early (Ctrl-C), to cancel remote work still queued.
    async fn cancel_pending(&self) {}

    /// What this stage reads for `item` beyond its options and the item's prompt, which name
    /// files but not their content (a reference image's hash): the engine puts it in the
    /// item's fingerprint, so replacing such a file makes the item again. `None` when it reads
    /// nothing else.
    fn input_revision(&self, _item: &Item) -> Option<String> {
        None
    }
}

/// What a sink stored for one item, each object with its content hash. The engine keeps it in
/// the journal under the item's fingerprint, so a sink whose outputs are remote (a bucket) can
/// tell a resume the item is complete without asking the store object by object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Receipt {
    /// The objects, in the order they were stored.
    pub objects: Vec<StoredObject>,
}

/// One stored object of a [`Receipt`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredObject {
    /// Where it is, as the sink names it (an object key).
    pub name: String,
    /// SHA-256 of its bytes, in hex.
    pub sha256: String,
    /// Its size.
    pub bytes: u64,
}

/// A sink writes each item out. It sees every item once, whatever its fate, so it can record
/// failures; `states` holds one state per input, in the order of the sink's `inputs`.
#[async_trait]
pub trait Sink: Send + Sync {
    /// True when this item's outputs already exist and are complete, so a re-run can skip it.
    /// `recorded` is the receipt of this sink's last write of the item as it is now (same
    /// fingerprint), if the journal has one.
    fn is_complete(&self, _item: &Item, _recorded: Option<&Receipt>) -> bool {
        false
    }

    /// Called once before the first item with every listed item (including those that will be
    /// skipped as complete), so a sink that assembles a whole batch (a book) knows its order.
    async fn begin(&self, _items: &mut (dyn Iterator<Item = Item> + Send)) -> anyhow::Result<()> {
        Ok(())
    }

    /// Writes one item. The sink owns its states, so it can drop each image once encoded.
    /// CPU work (encoding) belongs on the pool ([`super::cpu::run`]), waiting on a network on
    /// tokio. A sink whose `is_complete` reads receipts returns what it stored; others return
    /// an empty one.
    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError>;

    /// Keeps a candidate that is not the page ([`super::item::Placement::SetAside`]: a
    /// rejected re-roll, a best-of-N runner-up). A sink that keeps files keeps it aside; one
    /// that assembles the book (pdf) leaves it out. When it is the page's last candidate
    /// ([`super::item::Trial::last`]) a sink that held the page back (r2) stores it now, and
    /// returns what it stored, as `write` does.
    async fn write_aside(&self, _item: &Item, _states: Vec<State>) -> Result<Receipt, StageError> {
        Ok(Receipt::default())
    }

    /// Called once after the last item with the batch summary (also after Ctrl-C).
    async fn finish(&self, summary: &Summary) -> anyhow::Result<()>;

    /// A line for the run's summary once `finish` succeeded, such as a book's preflight verdict.
    fn note(&self) -> Option<String> {
        None
    }

    /// When this sink finishes: in rising rank, each seeing the notes and errors of those
    /// before in its summary. Sinks that assemble (a book, a cover) are 0; one that writes
    /// the summary (disk) is later, so the book's verdict is in it; one that uploads the
    /// written files (r2) later still.
    fn finish_rank(&self) -> u8 {
        0
    }
}

/// A built component, ready to run.
pub enum Component {
    /// A source.
    Source(Arc<dyn Source>),
    /// A CPU stage.
    Cpu(Arc<dyn CpuStage>),
    /// An I/O stage.
    Io(Arc<dyn IoStage>),
    /// A sink.
    Sink(Arc<dyn Sink>),
}

/// The set of kinds a pipeline may use: the built-in ones plus any plugins.
#[derive(Clone, Default)]
pub struct Registry {
    kinds: Vec<Arc<dyn Kind>>,
}

impl Registry {
    /// An empty registry (tests add their own kinds).
    pub fn new() -> Self {
        Registry::default()
    }

    /// Adds a kind; a later kind with the same name replaces the earlier one.
    pub fn register(&mut self, kind: Arc<dyn Kind>) {
        let name = kind.info().name.clone();
        self.kinds.retain(|k| k.info().name != name);
        self.kinds.push(kind);
    }

    /// The kind with this name.
    pub fn get(&self, name: &str) -> Option<&Arc<dyn Kind>> {
        self.kinds.iter().find(|k| k.info().name == name)
    }

    /// The names of the kinds of one role, sorted, for "known kinds" messages.
    pub fn names(&self, role: Role) -> Vec<String> {
        let mut names: Vec<String> =
            self.kinds.iter().filter(|k| k.info().role == role).map(|k| k.info().name.clone()).collect();
        names.sort();
        names
    }

    /// Every kind, sorted by role then name, for `inkflow stages`.
    pub fn all(&self) -> Vec<&Arc<dyn Kind>> {
        let mut all: Vec<_> = self.kinds.iter().collect();
        all.sort_by_key(|k| (k.info().role as u8, k.info().name.clone()));
        all
    }
}
