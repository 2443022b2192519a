//! `inkflow bakeoff PIPELINE --models a,b --sample N`: the same first N prompts through each
//! model, every page judged by the pipeline's `lineart-check`, and a table tying what each model
//! costs to how many of its pages are usable. Each model's run is an ordinary `inkflow run` of
//! the pipeline into its own folder (OUT/bakeoff/MODEL), so it is paid once, journaled and
//! resumed like any batch; every model is checked before any is paid.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::SystemTime;

use anyhow::Context as _;
use inkflow::engine::atomic_file::write_atomically;
use inkflow::engine::diagnostic::{ConfigErrors, Diagnostic, Pos};
use inkflow::engine::journal::Journal;
use inkflow::engine::pipeline::{self, LoadOptions};
use inkflow::engine::yaml::{Node, Yaml};
use inkflow::report::{Card, esc, url};
use inkflow::stages::fal::{Environment, find_model};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::PipelineArgs;

/// The pipeline's top-level field holding the bake-off's defaults (`models:`, `sample:`).
const FIELD: &str = "bakeoff";
/// The folder under the output folder holding every model's batch and the tables.
const FOLDER: &str = "bakeoff";

/// Arguments of `inkflow bakeoff`.
#[derive(clap::Args)]
pub struct BakeoffArgs {
    #[command(flatten)]
    pipeline: PipelineArgs,
    /// The fal models to compare, e.g. fal-ai/flux/dev,fal-ai/flux/schnell (default: the
    /// pipeline's `bakeoff: {models: [...]}`).
    #[arg(long, value_delimiter = ',', value_name = "MODEL,...")]
    models: Vec<String>,
    /// How many prompts (the source's first N) each model makes (default: `bakeoff: {sample: N}`).
    #[arg(long, value_name = "N")]
    sample: Option<usize>,
    /// Output directory; the bake-off goes to DIR/bakeoff (default: the pipeline's `output:`,
    /// else output/NAME).
    #[arg(long, value_name = "DIR")]
    output: Option<PathBuf>,
    /// Check every model and show what each one's run would pay for, without paying or
    /// writing anything (each model's `inkflow run --dry-run`).
    #[arg(long)]
    dry_run: bool,
}

/// What the bake-off runs: the models, the sample and the components whose options it sets.
struct Plan {
    /// Each model with where the pipeline names it (no position when the flag does).
    models: Vec<(String, Pos)>,
    sample: usize,
    /// The `fal` stage whose `model` is swapped.
    fal_stage: String,
    /// The `prompts` source whose `limit` is the sample.
    prompts_source: String,
}

/// One model's line of the table (also its entry in bakeoff.json).
#[derive(Serialize, Deserialize, Clone, Debug, Default)]
struct ModelResult {
    model: String,
    /// Its batch folder, relative to the bake-off folder.
    folder: String,
    pages: u64,
    pass: u64,
    warn: u64,
    reject: u64,
    failed: u64,
    /// Money the journal counts as spent, re-rolls included.
    spent_usd: f64,
    /// Pages judged pass or warn.
    accepted: u64,
    cost_per_accepted_page_usd: Option<f64>,
    /// Wall time of the runs that made its pages, summed over reruns.
    seconds: f64,
    seconds_per_page: Option<f64>,
    /// The exit code of its last run, when it did not succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    exit_code: Option<i32>,
}

/// bakeoff.json.
#[derive(Serialize, Deserialize, Default)]
struct Table {
    pipeline: String,
    sample: usize,
    models: Vec<ModelResult>,
}

/// Checks every model, then runs them one after the other and writes the tables and the page.
pub fn run(args: &BakeoffArgs) -> anyhow::Result<ExitCode> {
    let file = &args.pipeline.pipeline;
    let root = pipeline::read_tree(file, &LoadOptions { overrides: args.pipeline.overrides.clone() })?;
    let plan = plan(file, &root, args)?;
    let checked = check_every_model(file, args, &plan)?;
    let output =
        args.output.clone().or(checked.output).unwrap_or_else(|| PathBuf::from("output").join(&checked.name));
    let folder = output.join(FOLDER);
    if args.dry_run {
        return dry_run(file, args, &plan, &folder);
    }
    std::fs::create_dir_all(&folder).with_context(|| format!("cannot create {}", folder.display()))?;
    let earlier: Table = std::fs::read(folder.join("bakeoff.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default();
    let exe = inkflow_binary()?;
    let mut table = Table { pipeline: file.display().to_string(), sample: plan.sample, models: Vec::new() };
    let mut all_rows: Vec<BTreeMap<String, Card>> = Vec::new();
    for (model, _) in &plan.models {
        let name = folder_name(model);
        let dir = folder.join(&name);
        println!("bake-off: {model} -> {}", dir.display());
        let launched = SystemTime::now();
        let status = model_run(&exe, file, args, &plan, model, &dir)
            .status()
            .with_context(|| format!("cannot start `inkflow run` for {model}"))?;
        let before = earlier.models.iter().find(|m| m.model == *model).map_or(0.0, |m| m.seconds);
        let (mut result, cards) = tally(model, &name, &dir, before + seconds_worked(&dir, launched))?;
        result.exit_code = (!status.success()).then(|| status.code().unwrap_or(-1));
        table.models.push(result);
        all_rows.push(cards);
        if status.code() == Some(super::run::EXIT_INTERRUPTED.into()) {
            eprintln!("bake-off stopped: the run of {model} was interrupted");
            break;
        }
    }
    write_tables(&folder, &table, &all_rows)?;
    print_table(&table);
    println!("\n  review page: {}", folder.join("bakeoff.html").display());
    let all_ran =
        table.models.len() == plan.models.len() && table.models.iter().all(|m| m.exit_code.is_none());
    Ok(if all_ran { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// This binary, which runs each model's batch.
fn inkflow_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("cannot find the inkflow binary to run each model")
}

/// `inkflow run` of the pipeline with `model` swapped in, into `dir`.
fn model_run(exe: &Path, file: &Path, args: &BakeoffArgs, plan: &Plan, model: &str, dir: &Path) -> Command {
    let mut command = Command::new(exe);
    command
        .arg("run")
        .arg(file)
        .args(run_overrides(args, plan, model).iter().flat_map(|set| ["--set", set]))
        .arg("--output")
        .arg(dir);
    command
}

/// `--dry-run`: each model's `inkflow run --dry-run`, which prints what it would pay for.
fn dry_run(file: &Path, args: &BakeoffArgs, plan: &Plan, folder: &Path) -> anyhow::Result<ExitCode> {
    let exe = inkflow_binary()?;
    let mut all_checked = true;
    for (model, _) in &plan.models {
        println!("bake-off (dry run): {model}");
        let status = model_run(&exe, file, args, plan, model, &folder.join(folder_name(model)))
            .arg("--dry-run")
            .status()
            .with_context(|| format!("cannot start `inkflow run --dry-run` for {model}"))?;
        all_checked &= status.success();
    }
    println!("\n  dry run: nothing was paid for or written");
    Ok(if all_checked { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// The models and sample (flags over the pipeline's `bakeoff:`), the fal stage and the prompts
/// source; a pipeline the bake-off cannot judge is refused here.
fn plan(file: &Path, root: &Node, args: &BakeoffArgs) -> Result<Plan, ConfigErrors> {
    let mut errors = Vec::new();
    let here = |pos: Pos, message: String| Diagnostic::new(file, pos, message);
    let (mut models, mut sample) = (Vec::new(), None);
    if let Some(settings) = root.get(FIELD) {
        match settings.as_map() {
            None => {
                errors.push(here(settings.pos, format!("{FIELD}: expected a map with models and sample")))
            }
            Some(entries) => {
                for (key, node) in entries {
                    match (key.name.as_str(), &node.value) {
                        ("models", Yaml::Seq(items)) => {
                            for item in items {
                                match &item.value {
                                    Yaml::Str(id) => models.push((id.clone(), item.pos)),
                                    _ => errors.push(here(
                                        item.pos,
                                        format!(
                                            "{FIELD}.models: expected a model id, found {}",
                                            item.type_name()
                                        ),
                                    )),
                                }
                            }
                        }
                        ("sample", Yaml::Int(n)) if *n > 0 => sample = Some(*n as usize),
                        ("models", _) => errors.push(here(
                            node.pos,
                            format!("{FIELD}.models: expected a list of fal model ids"),
                        )),
                        ("sample", _) => errors
                            .push(here(node.pos, format!("{FIELD}.sample: expected a whole number above 0"))),
                        (other, _) => errors.push(here(
                            key.pos,
                            format!("{FIELD}: unknown field \"{other}\" (expected: models, sample)"),
                        )),
                    }
                }
            }
        }
    }
    if !args.models.is_empty() {
        models = args
            .models
            .iter()
            .filter(|m| !m.trim().is_empty())
            .map(|m| (m.trim().to_owned(), Pos::default()))
            .collect();
    }
    let sample = args.sample.or(sample);
    let stages_pos = root.key_position_of(&["stages".to_owned()]);
    let fal = of_kind(root, "stages", "fal");
    if fal.len() != 1 {
        errors.push(here(
            stages_pos,
            format!(
                "the bake-off swaps the model of the pipeline's fal stage: it has {} ({})",
                fal.len(),
                fal.join(", ")
            ),
        ));
    }
    if of_kind(root, "stages", "lineart-check").is_empty() {
        errors.push(here(
            stages_pos,
            "the bake-off judges every page with lineart-check: the pipeline has no stage of kind \
             lineart-check; add one after the page is made (see pipelines/coloring-book.yaml)"
                .to_owned(),
        ));
    }
    let prompts = of_kind(root, "sources", "prompts");
    if prompts.len() != 1 {
        errors.push(here(
            root.key_position_of(&["sources".to_owned()]),
            format!(
                "the bake-off samples the pipeline's prompts source: it has {} of kind prompts",
                prompts.len()
            ),
        ));
    }
    let ids: Vec<&str> = models.iter().map(|(id, _)| id.as_str()).collect();
    let mut unique = ids.clone();
    unique.sort();
    unique.dedup();
    if ids.len() < 2 || unique.len() != ids.len() {
        errors.push(here(root.get(FIELD).map_or(Pos::default(), |n| n.pos), format!(
            "the bake-off compares two or more different models (--models a,b or {FIELD}: {{models: [a, b]}}), got {ids:?}"
        )));
    }
    if sample.is_none() {
        errors.push(here(
            Pos::default(),
            format!("the bake-off needs a sample size: --sample N or {FIELD}: {{sample: N}}"),
        ));
    }
    if args.sample == Some(0) {
        errors.push(here(Pos::default(), "--sample: expected a whole number above 0".to_owned()));
    }
    if !errors.is_empty() {
        return Err(ConfigErrors(errors));
    }
    Ok(Plan {
        models,
        sample: sample.unwrap_or(1),
        fal_stage: fal[0].clone(),
        prompts_source: prompts[0].clone(),
    })
}

/// The ids of the components of `section` (sources, stages) of this kind.
fn of_kind(root: &Node, section: &str, kind: &str) -> Vec<String> {
    let Some(entries) = root.get(section).and_then(Node::as_map) else { return Vec::new() };
    entries
        .iter()
        .filter(|(_, node)| matches!(node.get("kind").map(|k| &k.value), Some(Yaml::Str(k)) if k == kind))
        .map(|(key, _)| key.name.clone())
        .collect()
}

/// The `--set`s of a model's run: the user's, then the model and the sample, exactly as
/// `--set stages.<fal>.model=M` would swap it by hand.
fn run_overrides(args: &BakeoffArgs, plan: &Plan, model: &str) -> Vec<String> {
    let mut sets = args.pipeline.overrides.clone();
    sets.push(format!("stages.{}.model={model}", plan.fal_stage));
    sets.push(format!("sources.{}.limit={}", plan.prompts_source, plan.sample));
    sets
}

/// Checks the pipeline with every model swapped in, against the catalogue, before any model is
/// run: one bad model or input stops the whole bake-off with nothing paid. Returns the pipeline
/// as checked with the first model.
fn check_every_model(file: &Path, args: &BakeoffArgs, plan: &Plan) -> anyhow::Result<pipeline::Pipeline> {
    let env = Environment::process();
    let mut errors = Vec::new();
    let mut first = None;
    for (model, pos) in &plan.models {
        let named_by = if pos.line > 0 { format!("{FIELD}.models") } else { "--models".to_owned() };
        match find_model(model, &env) {
            Ok(Some(_)) => {}
            Ok(None) => errors.push(Diagnostic::new(file, *pos, format!(
                "{named_by}: {model:?} is not in the catalogue, so its inputs and price cannot be checked before paying; \
                 `inkflow models` lists the known ones, `inkflow models {model} --refresh` adds it from fal"
            ))),
            Err(e) => errors.push(Diagnostic::new(file, *pos, format!("{named_by}: {model}: {e}"))),
        }
        let options = LoadOptions { overrides: run_overrides(args, plan, model) };
        match super::load_with(file, &options) {
            Ok((checked, _)) => {
                first.get_or_insert(checked);
            }
            Err(e) => match e.downcast::<ConfigErrors>() {
                Ok(config) => errors.extend(config.0.into_iter().map(|mut d| {
                    d.message = format!("with {model}: {}", d.message);
                    d
                })),
                Err(other) => return Err(other.context(format!("with {model}"))),
            },
        }
    }
    match first {
        Some(checked) if errors.is_empty() => Ok(checked),
        _ => Err(ConfigErrors(errors).into()),
    }
}

/// A model id as one path-safe folder name (`fal-ai/flux/dev` -> `fal-ai__flux__dev`).
fn folder_name(model: &str) -> String {
    model
        .replace('/', "__")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || "-_.".contains(c) { c } else { '_' })
        .collect::<String>()
        .trim_start_matches('.')
        .to_owned()
}

/// Seconds the run just made spent on items: its summary's wall time when the summary is its
/// own (started after `launched`, to the second) and it made anything, else 0.
fn seconds_worked(dir: &Path, launched: SystemTime) -> f64 {
    let Some(summary) = super::report::last_summary(dir) else { return 0.0 };
    let number = |name: &str| summary.get(name).and_then(Value::as_f64).unwrap_or(0.0);
    let started =
        summary.get("started_at").and_then(Value::as_str).and_then(|s| humantime::parse_rfc3339_weak(s).ok());
    let launched_second = launched
        - std::time::Duration::from_nanos(u64::from(
            launched.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos()),
        ));
    let own = started.is_some_and(|s| s >= launched_second);
    if own && number("skipped") < number("total_items") { number("elapsed_seconds") } else { 0.0 }
}

/// A model's line from its batch (journal and page metadata, every run of it) and its pages by key.
fn tally(
    model: &str,
    name: &str,
    dir: &Path,
    seconds: f64,
) -> anyhow::Result<(ModelResult, BTreeMap<String, Card>)> {
    let mut result =
        ModelResult { model: model.to_owned(), folder: name.to_owned(), seconds, ..ModelResult::default() };
    let mut cards = BTreeMap::new();
    if !dir.join("journal.sqlite").is_file() {
        return Ok((result, cards));
    }
    result.spent_usd = Journal::status(dir)?.spent_usd;
    inkflow::report::each_card(dir, |card| {
        if card.is_failed() {
            result.failed += 1;
        }
        if card.page.is_some() {
            result.pages += 1;
        }
        match card.verdict.as_deref() {
            Some("pass") => result.pass += 1,
            Some("warn") => result.warn += 1,
            Some("reject") => result.reject += 1,
            _ => {}
        }
        cards.insert(card.key.clone(), card.clone());
    })?;
    result.accepted = result.pass + result.warn;
    result.cost_per_accepted_page_usd =
        (result.accepted > 0).then(|| result.spent_usd / result.accepted as f64);
    result.seconds_per_page = (result.pages > 0).then(|| result.seconds / result.pages as f64);
    Ok((result, cards))
}

fn money(usd: Option<f64>) -> String {
    usd.map_or_else(|| "n/a".to_owned(), |usd| format!("${usd:.4}"))
}

fn seconds(s: Option<f64>) -> String {
    s.map_or_else(|| "n/a".to_owned(), |s| format!("{s:.2} s"))
}

/// The table's header and one row per model, as cells.
fn rows(table: &Table) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["model", "pages", "pass", "warn", "reject", "failed", "spent", "per accepted page", "time per page"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for m in &table.models {
        let mut model = m.model.clone();
        if let Some(code) = m.exit_code {
            let _ = write!(model, " (run exited {code})");
        }
        rows.push(vec![
            model,
            m.pages.to_string(),
            m.pass.to_string(),
            m.warn.to_string(),
            m.reject.to_string(),
            m.failed.to_string(),
            money(Some(m.spent_usd)),
            money(m.cost_per_accepted_page_usd),
            seconds(m.seconds_per_page),
        ]);
    }
    rows
}

fn print_table(table: &Table) {
    let rows = rows(table);
    let widths: Vec<usize> =
        (0..rows[0].len()).map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    println!("\nbake-off of {} prompt(s) ({})", table.sample, table.pipeline);
    for row in &rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        println!("  {}", cells.join("  ").trim_end());
    }
}

/// bakeoff.json, bakeoff.md and bakeoff.html in the bake-off folder.
fn write_tables(folder: &Path, table: &Table, cards: &[BTreeMap<String, Card>]) -> anyhow::Result<()> {
    let write = |name: &str, bytes: &[u8]| {
        let path = folder.join(name);
        write_atomically(&path, bytes).with_context(|| format!("cannot write {}", path.display()))
    };
    write("bakeoff.json", &serde_json::to_vec_pretty(table)?)?;
    let mut md = format!("# Model bake-off: {} prompt(s) of {}\n\n", table.sample, table.pipeline);
    for (i, row) in rows(table).iter().enumerate() {
        let cells: Vec<String> = row.iter().map(|c| c.replace('|', "\\|")).collect();
        let _ = writeln!(md, "| {} |", cells.join(" | "));
        if i == 0 {
            let _ = writeln!(md, "|{}", "---|".repeat(row.len()));
        }
    }
    md.push_str("\nCost per accepted page: spend (re-rolls included) / pages judged pass or warn.\n");
    write("bakeoff.md", md.as_bytes())?;
    write("bakeoff.html", html(table, cards).as_bytes())
}

const STYLE: &str = "body{font:1rem/1.4 system-ui,sans-serif;margin:1rem;color:#111}\
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .5rem;text-align:left;vertical-align:top}\
td img{display:block;width:12rem;height:auto;background:#f4f4f4}.pass{background:#dfd}.warn{background:#ffe8a8}\
.reject,.failed{background:#fcc}p.note{color:#444}";

/// The review page: the table, then one row per prompt and one column per model.
fn html(table: &Table, cards: &[BTreeMap<String, Card>]) -> String {
    let mut out = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>inkflow bake-off: {}</title>\
         <style>{STYLE}</style></head><body><h1>Model bake-off</h1><p>{} prompt(s) of {}</p><table>",
        esc(&table.pipeline),
        table.sample,
        esc(&table.pipeline)
    );
    for (i, row) in rows(table).iter().enumerate() {
        let cell = if i == 0 { "th" } else { "td" };
        out.push_str("<tr>");
        for text in row {
            let _ = write!(out, "<{cell}>{}</{cell}>", esc(text));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table><p class=\"note\">Cost per accepted page: spend (re-rolls included) / pages judged pass or warn.</p>");
    out.push_str("<h2>Pages side by side</h2><table><tr><th>prompt</th>");
    for m in &table.models {
        let _ = write!(out, "<th><a href=\"{}/report.html\">{}</a></th>", url(&m.folder), esc(&m.model));
    }
    out.push_str("</tr>");
    let mut keys: Vec<(&str, &str)> = Vec::new();
    for card in cards.iter().flat_map(BTreeMap::values) {
        if !keys.iter().any(|(k, _)| *k == card.key) {
            keys.push((&card.key, &card.description));
        }
    }
    for (key, description) in keys {
        let _ = write!(out, "<tr><th>{}<br><small>{}</small></th>", esc(description), esc(key));
        for (m, by_key) in table.models.iter().zip(cards) {
            out.push_str(&cell_html(&m.folder, by_key.get(key)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</table></body></html>\n");
    out
}

/// One model's page for a prompt: its thumbnail linked to the page, its verdict and cost.
fn cell_html(folder: &str, card: Option<&Card>) -> String {
    let Some(card) = card else { return "<td>not run</td>".to_owned() };
    let verdict = card.verdict.clone().unwrap_or_else(|| card.state.clone());
    let class: String = verdict.to_lowercase().chars().filter(char::is_ascii_alphanumeric).collect();
    let mut out = format!("<td class=\"{class}\">");
    let image = card.thumbnail.as_ref().or(card.page.as_ref());
    if let (Some(image), Some(page)) = (image, card.page.as_ref().or(image)) {
        let _ = write!(
            out,
            "<a href=\"{}\"><img src=\"{}\" alt=\"{}\" loading=\"lazy\"></a>",
            url(&format!("{folder}/{page}")),
            url(&format!("{folder}/{image}")),
            esc(&card.description)
        );
    }
    let _ = write!(out, "<b>{}</b> ${:.4}", esc(&verdict), card.cost_usd);
    if !card.problems.is_empty() {
        let _ = write!(out, "<br><small>{}</small>", esc(&card.problems.join(", ")));
    }
    if let Some(message) = card.message.as_ref().filter(|_| card.is_failed()) {
        let _ = write!(out, "<br><small>{}</small>", esc(message));
    }
    out.push_str("</td>");
    out
}
