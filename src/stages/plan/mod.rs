//! The `plan` source: a book's pages planned from a theme. It writes the plan once, as
//! `plan.json` in the output folder in the prompts format, and from then on reads that file,
//! so a person can review and edit it; the journal's fingerprints then make again only the
//! pages whose prompt changed.
//!
//! The scenes come from an LLM on fal (paid, journaled, resumed: see [`llm`]) or, without a
//! key, from the built-in planner's word lists ([`offline`]). Near-duplicate scenes are turned
//! away and asked for again ([`similarity`]).

mod book;
mod llm;
mod offline;
mod options;
mod similarity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use serde_json::{Map, Value};

use self::book::{Book, PlanFile};
use self::options::{Options, Planner};
use crate::engine::atomic_file::write_atomically;
use crate::engine::declared_kind::TypedKind;
use crate::engine::item::{Item, Prompt};
use crate::engine::journal::PlanRequests;
use crate::engine::media::{Media, Payload};
use crate::engine::output_path::Claim;
use crate::engine::stage::{
    BuildContext, Component, Listing, OptionsError, OutputMedia, Role, Source, StageError,
};
use crate::stages::fal::Environment;
use crate::stages::fal::llm::LlmClient;
use crate::stages::prompts::{items, read_prompts};

/// Kind `plan`: pages planned from a theme.
pub struct Plan {
    env: Environment,
}

impl Default for Plan {
    fn default() -> Self {
        Plan::new()
    }
}

impl Plan {
    /// The kind reading the fal key and queue host from the process environment and `.env`.
    pub fn new() -> Self {
        Plan::with_environment(Environment::process())
    }

    /// The kind reading the fal key and queue host from `env` (tests, embedding).
    pub fn with_environment(env: Environment) -> Self {
        Plan { env }
    }
}

impl TypedKind for Plan {
    const NAME: &'static str = "plan";
    const ROLE: Role = Role::Source;
    const SUMMARY: &'static str =
        "Plans a book's pages from a theme (an LLM on fal, or built-in word lists) into plan.json";
    const ACCEPTS: &'static [Media] = &[];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Prompt);
    type Options = Options;
    type Parsed = Options;

    fn parse(&self, options: &Value) -> Result<Options, OptionsError> {
        Options::parse(options)
    }

    fn build_from(&self, options: Options, ctx: &BuildContext) -> anyhow::Result<Component> {
        let poll_interval = Duration::from_millis(options.poll_interval_ms);
        let client = match options.planner {
            Planner::Offline => None,
            Planner::Auto | Planner::Fal => {
                LlmClient::new(&self.env, options.base_url.as_deref(), poll_interval)
                    .map_err(anyhow::Error::msg)?
            }
        };
        if options.planner == Planner::Fal && client.is_none() {
            anyhow::bail!(
                "option planner: fal needs a fal key: set FAL_KEY (or FAL_KEY_ID and FAL_KEY_SECRET), or use planner: offline"
            );
        }
        Ok(Component::Source(Arc::new(PlanSource {
            file: options.file.under(&ctx.output_dir),
            output_dir: ctx.output_dir.clone(),
            id: ctx.id.clone(),
            dry_run: ctx.dry_run,
            client,
            options,
        })))
    }

    fn writes_from(&self, options: &Options, _inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        Ok(vec![Claim::new("file", options.file.clone())])
    }
}

/// A built `plan` source.
struct PlanSource {
    options: Options,
    /// The plan file, in the output folder.
    file: PathBuf,
    output_dir: PathBuf,
    id: String,
    dry_run: bool,
    /// The LLM on fal, when it plans (a key is set and the planner is not offline).
    client: Option<LlmClient>,
}

impl Source for PlanSource {
    fn list(&self) -> anyhow::Result<Box<dyn Listing>> {
        if self.file.exists() {
            let prompts = read_prompts(&self.file)?;
            if prompts.len() != self.options.pages as usize {
                tracing::warn!(
                    "{} holds {} pages and `pages` asks for {}: the file is the book (delete it to plan again)",
                    self.file.display(),
                    prompts.len(),
                    self.options.pages
                );
            }
            return Ok(Box::new(items(prompts)));
        }
        let prompts = match &self.client {
            None => self.plan_offline()?,
            Some(_) if self.dry_run => return Ok(Box::new(items(self.not_yet_planned()))),
            Some(client) => self.plan_with_fal(client)?,
        };
        Ok(Box::new(items(prompts)))
    }

    fn load(&self, _item: &mut Item) -> Result<Payload, StageError> {
        Ok(Payload::Prompt)
    }
}

impl PlanSource {
    fn book(&self) -> Book {
        Book::new(self.options.layout(), self.options.max_similarity)
    }

    /// Plans with the built-in word lists; written to the plan file unless this is a dry run.
    fn plan_offline(&self) -> anyhow::Result<Vec<Prompt>> {
        let mut book = self.book();
        let family = offline::fill(&mut book, &self.options.theme, self.options.seed)?;
        tracing::info!("planned {} pages from the built-in \"{family}\" word lists", self.options.pages);
        self.keep(&book, "offline")
    }

    /// Plans with the LLM, paying for as few requests as it can.
    fn plan_with_fal(&self, client: &LlmClient) -> anyhow::Result<Vec<Prompt>> {
        std::fs::create_dir_all(&self.output_dir)
            .with_context(|| format!("cannot create the output directory {}", self.output_dir.display()))?;
        let mut book = self.book();
        // The batch is built before its runtime starts (and maybe inside one): a runtime of its own.
        let (requests, spent) = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    let journal = PlanRequests::open(&self.output_dir, &self.id)?;
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .context("cannot start the planner's runtime")?;
                    let mut planning = llm::Planning::new(&self.options, client, &journal);
                    runtime.block_on(planning.fill(&mut book))?;
                    anyhow::Ok((planning.requests(), journal.spent_usd()?))
                })
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the planner stopped unexpectedly")))
        })?;
        tracing::info!(
            "planned {} pages with {} on fal in {requests} request(s) (${spent:.3})",
            self.options.pages,
            self.options.endpoint
        );
        self.keep(&book, &self.options.endpoint)
    }

    /// The book's pages as prompts, written to the plan file unless this is a dry run.
    fn keep(&self, book: &Book, planner: &str) -> anyhow::Result<Vec<Prompt>> {
        let prompts = book.prompts(self.options.audience, &self.options.style);
        if !self.dry_run {
            write_plan(
                &self.file,
                &PlanFile::new(&self.options.theme, self.options.audience, planner, &prompts),
            )?;
            tracing::info!("the plan is in {}: review it, edit it, and run again", self.file.display());
        }
        Ok(prompts)
    }

    /// Stand-ins for the pages of a plan a dry run does not pay for: one per page, so the
    /// page count and their cost show.
    fn not_yet_planned(&self) -> Vec<Prompt> {
        tracing::warn!(
            "no plan yet ({} is missing): a run asks {} for it, at ${} a request and at most {} request(s)",
            self.file.display(),
            self.options.endpoint,
            self.options.price_usd,
            self.options.max_requests
        );
        let mut number = 0;
        self.options
            .layout()
            .into_iter()
            .flat_map(|(section, pages)| (0..pages).map(move |_| section.clone()))
            .map(|section| {
                number += 1;
                Prompt {
                    image_prompt: format!(
                        "page {number} of a book about {}, not planned yet",
                        self.options.theme
                    ),
                    description: format!("page {number} (not planned yet)"),
                    section,
                    number,
                    extra: Map::new(),
                }
            })
            .collect()
    }
}

/// Writes the plan file whole or not at all.
fn write_plan(path: &Path, plan: &PlanFile<'_>) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let text = serde_json::to_string_pretty(plan).context("cannot encode the plan")?;
    write_atomically(path, format!("{text}\n").as_bytes())
}
