//! Collects a batch from disk: the journal's items in book order, joined by key with the
//! metadata JSON that disk sinks wrote and the candidate and rejected images beside them.
//! A first pass over the journal counts what every page file shows at its top (the batch, the
//! page files and their problems); a second one makes the cards, one page file at a time.

use std::collections::BTreeMap;
use std::path::Path;

use super::RunFacts;
use super::index::{Metadata, MetadataIndex};
use crate::engine::journal::{ItemRecord, Journal, Status};

/// Cards per page file: one page of a huge batch stays quick to open and to print.
pub const CARDS_PER_PAGE: usize = 1_000;
/// Failed and filtered items listed at the top of `report.html`; each page file lists its own.
pub const PROBLEMS_LISTED: usize = 1_000;

/// What every page file shows above its cards.
#[derive(Debug)]
pub struct Overview {
    /// The output folder, as given.
    pub output_dir: String,
    /// Items per journal state, sorted by state.
    pub states: BTreeMap<String, u64>,
    /// Money spent over every run of the batch, from the journal.
    pub spent_usd: f64,
    /// Money spent per model (from the items' metadata; "unknown" when none says).
    pub spent_by_model: BTreeMap<String, f64>,
    /// What the run passed in.
    pub facts: RunFacts,
    /// The page files, in book order: at least one, even for an empty batch.
    pub pages: Vec<PageSummary>,
    /// The first [`PROBLEMS_LISTED`] failed or filtered items, in book order.
    pub problems: Vec<Problem>,
    /// Every failed or filtered item.
    pub problem_count: u64,
    /// The book's difficulty spread in words, when a judging stage measured its pages.
    pub difficulty: Option<String>,
}

/// One page file: which items it holds and how many of them need a look.
#[derive(Debug, Default, Clone)]
pub struct PageSummary {
    /// The place in the book of its first item (from 1) and how many cards it holds.
    pub first: u64,
    pub cards: u64,
    /// Cards per filter tag (failed, warn, reject).
    pub tagged: BTreeMap<String, u64>,
}

/// A failed or filtered item, listed on its own or on another page file.
#[derive(Debug)]
pub struct Problem {
    pub card: Card,
    /// The page file holding its card (0 for `report.html`).
    pub page: usize,
}

/// One item of the batch. Paths are relative to the output folder.
#[derive(Debug, Default, Clone)]
pub struct Card {
    pub key: String,
    pub description: String,
    /// The page's file name when it was written, else the key.
    pub name: String,
    /// The journal state: written, failed, filtered, pending...
    pub state: String,
    /// The stage that failed or filtered it.
    pub stage: Option<String>,
    /// The failure message or filter reason.
    pub message: Option<String>,
    pub attempts: u32,
    pub retries: u64,
    pub cost_usd: f64,
    pub page: Option<String>,
    pub thumbnail: Option<String>,
    pub metadata: Option<String>,
    /// The quality check's verdict (e.g. pass, warn, reject) when the pipeline has one.
    pub verdict: Option<String>,
    pub problems: Vec<String>,
    pub candidates: Vec<String>,
    pub rejected: Vec<String>,
}

impl Card {
    fn new(record: ItemRecord, found: Option<Metadata>) -> Card {
        let mut card = Card {
            name: record.key.clone(),
            key: record.key,
            description: record.description,
            state: record.state,
            stage: record.stage,
            message: record.error,
            attempts: record.attempts,
            cost_usd: record.cost_usd,
            ..Card::default()
        };
        let Some(found) = found else { return card };
        card.metadata = Some(found.path);
        card.retries = found.retries;
        card.message = card.message.or(found.message);
        card.page = found.page;
        card.thumbnail = found.thumbnail;
        card.name = found.name.unwrap_or(card.name);
        card.verdict = found.verdict;
        card.problems = found.problems;
        card.candidates = found.candidates;
        card.rejected = found.rejected;
        card
    }

    /// Whether the item failed or was filtered out.
    pub fn is_failed(&self) -> bool {
        is_failed(&self.state)
    }

    /// The filter tags the card answers to.
    pub fn tags(&self) -> Vec<String> {
        tags(&self.state, self.verdict.as_deref())
    }
}

fn is_failed(state: &str) -> bool {
    state == "failed" || state == "filtered"
}

/// The filter tags of an item in `state` with `verdict`.
fn tags(state: &str, verdict: Option<&str>) -> Vec<String> {
    let mut tags = Vec::new();
    if is_failed(state) {
        tags.push("failed".to_owned());
    }
    if let Some(verdict) = verdict {
        tags.push(verdict.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect());
    }
    tags
}

/// A batch on disk, ready to be read page file by page file.
pub struct Batch<'a> {
    output_dir: &'a Path,
    /// The journal's counts, made in SQL.
    status: Status,
    index: MetadataIndex,
}

impl<'a> Batch<'a> {
    /// Indexes the metadata the sinks left in `output_dir`.
    pub fn open(output_dir: &'a Path) -> anyhow::Result<Self> {
        // The journal first: a folder without one is refused before its files are walked.
        let status = Journal::status(output_dir)?;
        Ok(Batch { output_dir, status, index: MetadataIndex::build(output_dir)? })
    }

    /// Pages per verdict, over the items whose metadata has one.
    pub fn verdicts(&self) -> anyhow::Result<BTreeMap<String, u64>> {
        let mut counts = BTreeMap::new();
        Journal::each_item(self.output_dir, None, |record| {
            if let Some(verdict) = self.index.brief(&record.key)?.and_then(|brief| brief.verdict) {
                *counts.entry(verdict).or_insert(0) += 1;
            }
            Ok(())
        })?;
        Ok(counts)
    }

    /// The first pass: counts, money and the page files.
    pub fn overview(&self, facts: RunFacts) -> anyhow::Result<Overview> {
        let mut overview = Overview {
            output_dir: self.output_dir.display().to_string(),
            states: self.status.states.iter().cloned().collect(),
            spent_usd: self.status.spent_usd,
            spent_by_model: BTreeMap::new(),
            facts,
            pages: Vec::new(),
            problems: Vec::new(),
            problem_count: 0,
            difficulty: difficulty(self.output_dir),
        };
        let mut position = 0u64;
        Journal::each_item(self.output_dir, None, |record| {
            let page = position as usize / CARDS_PER_PAGE;
            position += 1;
            if page == overview.pages.len() {
                overview.pages.push(PageSummary { first: position, ..PageSummary::default() });
            }
            let brief = self.index.brief(&record.key)?;
            let verdict = brief.as_ref().and_then(|b| b.verdict.as_deref());
            let summary = &mut overview.pages[page];
            summary.cards += 1;
            for tag in tags(&record.state, verdict) {
                *summary.tagged.entry(tag).or_default() += 1;
            }
            if record.cost_usd > 0.0 {
                let model = brief.and_then(|b| b.model).unwrap_or_else(|| "unknown".to_owned());
                *overview.spent_by_model.entry(model).or_default() += record.cost_usd;
            }
            if is_failed(&record.state) {
                overview.problem_count += 1;
                if overview.problems.len() < PROBLEMS_LISTED {
                    overview.problems.push(Problem { card: self.card(record)?, page });
                }
            }
            Ok(())
        })?;
        if overview.pages.is_empty() {
            overview.pages.push(PageSummary { first: 1, ..PageSummary::default() });
        }
        Ok(overview)
    }

    /// The second pass: hands `page` every page file's cards in book order, one file at a time.
    pub fn each_page(
        &self,
        mut page: impl FnMut(usize, &[Card]) -> anyhow::Result<()>,
    ) -> anyhow::Result<()> {
        let (mut cards, mut number) = (Vec::with_capacity(CARDS_PER_PAGE), 0);
        Journal::each_item(self.output_dir, None, |record| {
            cards.push(self.card(record)?);
            if cards.len() == CARDS_PER_PAGE {
                page(number, &cards)?;
                cards.clear();
                number += 1;
            }
            Ok(())
        })?;
        if !cards.is_empty() || number == 0 {
            page(number, &cards)?;
        }
        Ok(())
    }

    fn card(&self, record: ItemRecord) -> anyhow::Result<Card> {
        let found = self.index.get(&record.key)?;
        Ok(Card::new(record, found))
    }
}

/// The difficulty spread of the batch in `output_dir` in words (see
/// [`DifficultySpread::describe`](crate::engine::journal::DifficultySpread::describe)); a journal
/// that cannot say is logged, since the rest of the report is still worth writing.
pub fn difficulty(output_dir: &Path) -> Option<String> {
    match crate::engine::journal::difficulty_spread(output_dir) {
        Ok(spread) => spread.describe(),
        Err(e) => {
            tracing::warn!("report: cannot read the pages' difficulty: {e:#}");
            None
        }
    }
}
