//! The `safety` stage: checks every prompt against deny lists, regex rules and a length limit
//! before a paid generation, because these books are often for children. What it matches and
//! how is in [`matcher`] (on text folded by `fold.rs` and `canonical.rs`); `stage.rs` turns a
//! match into the item's fate, and this file reads the options and the term files.
//!
//! Only `image_prompt` is checked: it is the text sent to the model. NSFW images flagged by fal
//! after generation are the generator's business (its stage filters them).

mod canonical;
mod fold;
pub mod matcher;
mod stage;
#[cfg(test)]
mod tests;

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use regex::RegexBuilder;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::media::Media;
use crate::engine::options::parse_declared;
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::{BuildContext, Component, OptionsError, OutputMedia, Role};
use matcher::{Matcher, RegexRule, Term};
use stage::SafetyStage;

/// The `safety` kind: rejects, or rewrites, prompts that break the configured rules.
pub struct Safety;

/// What to do with a prompt that breaks a rule. `drop` is the default: the item costs nothing,
/// shows up as filtered in the summary (counted by rule), and the batch goes on.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum OnReject {
    #[default]
    Drop,
    Fail,
    Rewrite,
}

/// The `safety` options, as a pipeline file writes them.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// Terms denied as whole words, after normalisation; `gun*` also begins a longer word
    /// (gunfight), `*shit` also ends one (bullshit), `*fuck*` lies anywhere in one.
    #[serde(default)]
    deny: Vec<String>,
    /// Files of deny terms, one per line, `#` starts a comment (e.g. pipelines/safety/children-deny.txt).
    #[serde(default)]
    deny_files: Vec<PipelinePath>,
    /// Known false positives, idioms and place names: a match wholly inside an allowed phrase is
    /// ignored (e.g. "assassin bug", "kill two birds", "Kill Devil Hills").
    #[serde(default)]
    allow: Vec<String>,
    /// Files of allowed phrases, same format as deny_files.
    #[serde(default)]
    allow_files: Vec<PipelinePath>,
    /// Regular expressions run on the normalised prompt (lowercase words, single spaces).
    #[serde(default)]
    regex: Vec<RegexOption>,
    /// Longest prompt accepted, in characters.
    #[serde(default)]
    #[schemars(range(min = 1))]
    max_prompt_chars: Option<usize>,
    /// drop: record the item as filtered and skip it; fail: record it as failed; rewrite:
    /// replace offending text with rewrite_text (and cut an over-long prompt) and go on.
    #[serde(default)]
    on_reject: OnReject,
    /// With on_reject: rewrite, the text that replaces each offending span (empty removes it).
    #[serde(default)]
    rewrite_text: Option<String>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct RegexOption {
    name: Option<String>,
    pattern: String,
}

/// Options checked without touching files: inline terms and regexes compiled.
pub struct Checked {
    options: Options,
    deny: Vec<Term>,
    allow: Vec<Term>,
    regexes: Vec<RegexRule>,
}

fn check_options(value: &Value) -> Result<Checked, OptionsError> {
    let options: Options = parse_declared(value)?;
    if options.deny.is_empty()
        && options.deny_files.is_empty()
        && options.regex.is_empty()
        && options.max_prompt_chars.is_none()
    {
        return Err(OptionsError::at(
            "",
            "no rules: give at least one of deny, deny_files, regex or max_prompt_chars",
        ));
    }
    if options.rewrite_text.is_some() && options.on_reject != OnReject::Rewrite {
        return Err(OptionsError::at("rewrite_text", "is used only with on_reject: rewrite"));
    }
    let deny = inline_terms(&options.deny, "deny")?;
    let allow = inline_terms(&options.allow, "allow")?;
    let regexes = options
        .regex
        .iter()
        .enumerate()
        .map(|(i, rule)| compile_regex(i, rule))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Checked { options, deny, allow, regexes })
}

/// Terms written in the pipeline file, each checked to keep something after normalisation.
fn inline_terms(list: &[String], field: &str) -> Result<Vec<Term>, OptionsError> {
    list.iter()
        .enumerate()
        .map(|(i, text)| match canonical::canonical_term(text) {
            Some(_) => Ok(Term { text: text.clone(), origin: format!("{field}[{i}]") }),
            None => Err(OptionsError::at(
                &format!("{field}.{i}"),
                format!("{text:?} has no letters or digits left after normalisation"),
            )),
        })
        .collect()
}

fn compile_regex(index: usize, rule: &RegexOption) -> Result<RegexRule, OptionsError> {
    let regex = RegexBuilder::new(&rule.pattern)
        .case_insensitive(true)
        .build()
        .map_err(|e| OptionsError::at(&format!("regex.{index}.pattern"), e.to_string()))?;
    if regex.is_match("") {
        return Err(OptionsError::at(
            &format!("regex.{index}.pattern"),
            "matches the empty string, so it would match every prompt",
        ));
    }
    let label = match &rule.name {
        Some(name) => format!("regex {name:?} /{}/", rule.pattern),
        None => format!("regex[{index}] /{}/", rule.pattern),
    };
    Ok(RegexRule { label, regex })
}

/// Reads a term file: one term per line, `#` to the end of the line is a comment. Each term's
/// origin is `path:line`, so a rejection points at the line to edit.
fn file_terms(path: &Path, field: &str, index: usize) -> anyhow::Result<Vec<Term>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("{field}[{index}]: cannot read {}", path.display()))?;
    Ok(text
        .lines()
        .enumerate()
        .filter_map(|(n, line)| {
            let term = line.split('#').next().unwrap_or("").trim();
            (!term.is_empty())
                .then(|| Term { text: term.to_owned(), origin: format!("{}:{}", path.display(), n + 1) })
        })
        .collect())
}

impl TypedKind for Safety {
    const NAME: &'static str = "safety";
    const ROLE: Role = Role::Stage;
    const SUMMARY: &'static str =
        "rejects or rewrites prompts matching deny lists, regex rules or a length limit";
    const ACCEPTS: &'static [Media] = &[Media::Prompt];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Prompt);
    type Options = Options;
    type Parsed = Checked;

    fn parse(&self, options: &Value) -> Result<Checked, OptionsError> {
        check_options(options)
    }

    fn build_from(
        &self,
        Checked { options, mut deny, mut allow, regexes }: Checked,
        _ctx: &BuildContext,
    ) -> anyhow::Result<Component> {
        for (i, path) in options.deny_files.iter().enumerate() {
            deny.extend(file_terms(path, "deny_files", i)?);
        }
        for (i, path) in options.allow_files.iter().enumerate() {
            allow.extend(file_terms(path, "allow_files", i)?);
        }
        let matcher = Matcher::new(&deny, &allow, regexes)?;
        let stage = SafetyStage {
            matcher,
            max_prompt_chars: options.max_prompt_chars,
            on_reject: options.on_reject,
            rewrite_text: options.rewrite_text.unwrap_or_default(),
        };
        if let Some(violation) = stage.violation(&stage.rewrite_text) {
            anyhow::bail!("rewrite_text {:?} itself breaks {}", stage.rewrite_text, violation.rule);
        }
        Ok(Component::Cpu(Arc::new(stage)))
    }
}
