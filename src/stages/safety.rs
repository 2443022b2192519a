//! The `safety` stage: checks every prompt against deny lists, regex rules and a length limit
//! before a paid generation, because these books are often for children. What it matches and
//! how is in [`matcher`]; this file turns a match into the item's fate.
//!
//! Only `image_prompt` is checked: it is the text sent to the model. NSFW images flagged by fal
//! after generation are the generator's business (its stage filters them).

pub mod matcher;

use std::path::{Path, PathBuf};
use std::sync::{Arc, LazyLock};

use anyhow::Context;
use regex::RegexBuilder;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::item::Item;
use crate::engine::media::{Media, Payload};
use crate::engine::stage::{
    BuildContext, Component, CpuStage, KindInfo, OptionDoc, OptionsError, OutputMedia, Role, StageError,
    TypedKind, parse_options,
};
use matcher::{Matcher, RegexRule, Term};

/// The `safety` kind: rejects, or rewrites, prompts that break the configured rules.
pub struct Safety;

/// What to do with a prompt that breaks a rule. `drop` is the default: the item costs nothing,
/// shows up as filtered in the summary (counted by rule), and the batch goes on.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
enum OnReject {
    #[default]
    Drop,
    Fail,
    Rewrite,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Options {
    #[serde(default)]
    deny: Vec<String>,
    #[serde(default)]
    deny_files: Vec<PathBuf>,
    #[serde(default)]
    allow: Vec<String>,
    #[serde(default)]
    allow_files: Vec<PathBuf>,
    #[serde(default)]
    regex: Vec<RegexOption>,
    max_prompt_chars: Option<usize>,
    #[serde(default)]
    on_reject: OnReject,
    rewrite_text: Option<String>,
}

#[derive(Deserialize)]
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
    let options: Options = parse_options(value)?;
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
    if options.max_prompt_chars == Some(0) {
        return Err(OptionsError::at("max_prompt_chars", "must be at least 1"));
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
        .map(|(i, text)| match matcher::canonical_term(text) {
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
    type Options = Checked;

    fn describe(&self) -> &KindInfo {
        static INFO: LazyLock<KindInfo> = LazyLock::new(|| KindInfo {
            name: "safety".into(),
            role: Role::Stage,
            summary: "rejects or rewrites prompts matching deny lists, regex rules or a length limit".into(),
            options: vec![
                OptionDoc::new(
                    "deny",
                    "list of strings",
                    "[]",
                    "terms denied as whole words, after normalisation",
                ),
                OptionDoc::new(
                    "deny_files",
                    "list of paths",
                    "[]",
                    "files of deny terms, one per line, `#` starts a comment (e.g. pipelines/safety/children-deny.txt)",
                ),
                OptionDoc::new(
                    "allow",
                    "list of strings",
                    "[]",
                    "known false positives: a match wholly inside an allowed phrase is ignored (e.g. \"assassin bug\")",
                ),
                OptionDoc::new(
                    "allow_files",
                    "list of paths",
                    "[]",
                    "files of allowed phrases, same format as deny_files",
                ),
                OptionDoc::new(
                    "regex",
                    "list of {name?, pattern}",
                    "[]",
                    "regular expressions run on the normalised prompt (lowercase words, single spaces)",
                ),
                OptionDoc::new(
                    "max_prompt_chars",
                    "integer >= 1",
                    "none",
                    "longest prompt accepted, in characters",
                ),
                OptionDoc::new(
                    "on_reject",
                    "drop|fail|rewrite",
                    "drop",
                    "drop: record the item as filtered and skip it; fail: record it as failed; \
             rewrite: replace offending text with rewrite_text (and cut an over-long prompt) and go on",
                ),
                OptionDoc::new(
                    "rewrite_text",
                    "string",
                    "\"\"",
                    "with on_reject: rewrite, the text that replaces each offending span (empty removes it)",
                ),
            ],
            accepts: vec![Media::Prompt],
            output: OutputMedia::Fixed(Media::Prompt),
        });
        &INFO
    }

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

/// A built safety stage.
struct SafetyStage {
    matcher: Matcher,
    max_prompt_chars: Option<usize>,
    on_reject: OnReject,
    rewrite_text: String,
}

/// The first rule a prompt breaks.
struct Violation {
    /// The rule, stable across items so the summary can count by it.
    rule: String,
    /// The rule and what in this prompt fired it.
    reason: String,
}

impl SafetyStage {
    fn violation(&self, prompt: &str) -> Option<Violation> {
        if let Some(max) = self.max_prompt_chars {
            let chars = prompt.chars().count();
            if chars > max {
                let rule = format!("max_prompt_chars {max}");
                return Some(Violation {
                    reason: format!("prompt has {chars} characters, over {rule}"),
                    rule,
                });
            }
        }
        self.matcher.first(prompt).map(|hit| {
            let rule = self.matcher.label(hit.rule).to_owned();
            Violation { reason: format!("{:?} matched {rule}", &prompt[hit.span]), rule }
        })
    }

    /// The prompt with every offending span replaced by `rewrite_text`, then cut to
    /// `max_prompt_chars` at a word boundary.
    fn rewrite(&self, prompt: &str) -> String {
        let mut spans: Vec<std::ops::Range<usize>> = Vec::new();
        for hit in self.matcher.find_all(prompt) {
            match spans.last_mut() {
                Some(last) if hit.span.start <= last.end => last.end = last.end.max(hit.span.end),
                _ => spans.push(hit.span),
            }
        }
        let mut out = String::with_capacity(prompt.len());
        let mut rest = 0;
        for span in spans {
            out.push_str(&prompt[rest..span.start.max(rest)]);
            rest = rest.max(span.end);
            if self.rewrite_text.is_empty() {
                // Removing a word should not leave a double space or a space before punctuation.
                let after = prompt[rest..].trim_start();
                rest = prompt.len() - after.len();
                out.truncate(out.trim_end().len());
                if !out.is_empty() && after.starts_with(char::is_alphanumeric) {
                    out.push(' ');
                }
            } else {
                out.push_str(&self.rewrite_text);
            }
        }
        out.push_str(&prompt[rest..]);
        match self.max_prompt_chars {
            Some(max) if out.chars().count() > max => cut_at_word(&out, max),
            _ => out,
        }
    }
}

/// The longest prefix of `text` of at most `max` characters ending at a word boundary (or
/// exactly `max` characters when the first word is longer).
fn cut_at_word(text: &str, max: usize) -> String {
    let end = text.char_indices().nth(max).map_or(text.len(), |(i, _)| i);
    let prefix = &text[..end];
    let at_boundary = text[end..].starts_with(char::is_whitespace);
    let kept = match prefix.rfind(char::is_whitespace) {
        Some(space) if !at_boundary => &prefix[..space],
        _ => prefix,
    };
    kept.trim_end().to_owned()
}

impl CpuStage for SafetyStage {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let Some(violation) = self.violation(&item.prompt.image_prompt) else {
            return Ok(input);
        };
        item.record("safety_rule", violation.rule.clone());
        item.record("safety_reason", violation.reason.clone());
        match self.on_reject {
            OnReject::Drop => Err(StageError::Filtered { reason: violation.rule }),
            OnReject::Fail => Err(StageError::failed(format!("unsafe prompt: {}", violation.reason))),
            OnReject::Rewrite => {
                let rewritten = self.rewrite(&item.prompt.image_prompt);
                if rewritten.trim().is_empty() {
                    return Err(StageError::failed(format!(
                        "unsafe prompt: nothing left after rewriting ({})",
                        violation.reason
                    )));
                }
                if let Some(left) = self.violation(&rewritten) {
                    return Err(StageError::failed(format!(
                        "unsafe prompt: still unsafe after rewriting: {}",
                        left.reason
                    )));
                }
                let original = std::mem::replace(&mut item.prompt.image_prompt, rewritten);
                item.record("safety_rewritten", true);
                item.record("safety_original_prompt", original);
                Ok(input)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::engine::item::Prompt;
    use crate::engine::stage::Kind;

    fn ctx() -> BuildContext {
        BuildContext {
            id: "safe".into(),
            inputs: vec!["prompts".into()],
            output_dir: PathBuf::from("output"),
            pipeline_file: PathBuf::from("pipeline.yaml"),
            dry_run: false,
        }
    }

    fn build(options: Value) -> Arc<dyn CpuStage> {
        match Safety.build(&options, &ctx()) {
            Ok(Component::Cpu(stage)) => stage,
            Ok(_) => panic!("safety must build a CPU stage"),
            Err(e) => panic!("build failed: {e:#}"),
        }
    }

    fn item(text: &str) -> Item {
        Item::new(0, Prompt { image_prompt: text.into(), number: 1, ..Prompt::default() })
    }

    /// Runs one prompt through the stage, giving the item (with its facts) and the outcome.
    fn run(stage: &Arc<dyn CpuStage>, text: &str) -> (Item, Result<Payload, StageError>) {
        let mut item = item(text);
        let outcome = stage.process(&mut item, Payload::Prompt);
        (item, outcome)
    }

    fn filtered_reason(outcome: Result<Payload, StageError>) -> String {
        match outcome {
            Err(StageError::Filtered { reason }) => reason,
            other => panic!("expected Filtered, got {other:?}"),
        }
    }

    fn check_error(options: Value) -> OptionsError {
        Safety.check(&options).expect_err("check should reject these options")
    }

    #[test]
    fn a_clean_prompt_passes_untouched() {
        let stage = build(json!({ "deny": ["nude"] }));
        let (item, outcome) = run(&stage, "a cute bunny in a garden");
        assert!(matches!(outcome, Ok(Payload::Prompt)));
        assert!(item.facts.is_empty());
        assert_eq!(item.prompt.image_prompt, "a cute bunny in a garden");
    }

    #[test]
    fn drop_filters_and_records_the_rule_and_reason() {
        let stage = build(json!({ "deny": ["gun", "nude"] }));
        let (item, outcome) = run(&stage, "a N.U.D.E statue");
        let rule = "deny term \"nude\" (from deny[1])";
        assert_eq!(filtered_reason(outcome), rule);
        assert_eq!(item.facts["safety_rule"], rule);
        assert_eq!(item.facts["safety_reason"], format!("\"N.U.D.E\" matched {rule}"));
    }

    #[test]
    fn fail_fails_the_item_naming_the_rule() {
        let stage = build(json!({ "deny": ["gun"], "on_reject": "fail" }));
        let (item, outcome) = run(&stage, "a boy with a g-u-n");
        match outcome {
            Err(StageError::Failed { message, attempts }) => {
                assert_eq!(message, "unsafe prompt: \"g-u-n\" matched deny term \"gun\" (from deny[0])");
                assert_eq!(attempts, 1);
            }
            other => panic!("expected Failed, got {other:?}"),
        }
        assert_eq!(item.facts["safety_rule"], "deny term \"gun\" (from deny[0])");
    }

    #[test]
    fn rewrite_replaces_each_offending_span_and_passes_the_item_on() {
        let stage = build(json!({ "deny": ["gun"], "on_reject": "rewrite", "rewrite_text": "flower" }));
        let (item, outcome) = run(&stage, "a cowboy holding a GUN and two g u n s");
        assert!(matches!(outcome, Ok(Payload::Prompt)));
        assert_eq!(item.prompt.image_prompt, "a cowboy holding a flower and two flower");
        assert_eq!(item.facts["safety_rewritten"], true);
        assert_eq!(item.facts["safety_original_prompt"], "a cowboy holding a GUN and two g u n s");
        assert_eq!(item.facts["safety_rule"], "deny term \"gun\" (from deny[0])");
    }

    #[test]
    fn rewrite_with_empty_text_removes_words_and_tidies_spaces() {
        let stage = build(json!({ "deny": ["bloody", "gun"], "on_reject": "rewrite" }));
        let (item, outcome) = run(&stage, "a bloody knight with a gun, smiling");
        assert!(outcome.is_ok());
        assert_eq!(item.prompt.image_prompt, "a knight with a, smiling");
    }

    #[test]
    fn rewrite_that_leaves_nothing_fails() {
        let stage = build(json!({ "deny": ["gore"], "on_reject": "rewrite" }));
        let (_, outcome) = run(&stage, "GORE");
        assert!(
            matches!(outcome, Err(StageError::Failed { message, .. }) if message.contains("nothing left"))
        );
    }

    #[test]
    fn rewrite_cuts_an_over_long_prompt_at_a_word() {
        let stage = build(json!({ "max_prompt_chars": 12, "on_reject": "rewrite" }));
        let (item, outcome) = run(&stage, "a happy cat sitting on a mat");
        assert!(outcome.is_ok());
        assert_eq!(item.prompt.image_prompt, "a happy cat");
        assert_eq!(item.facts["safety_rule"], "max_prompt_chars 12");
    }

    #[test]
    fn max_prompt_chars_counts_characters_not_bytes() {
        let stage = build(json!({ "max_prompt_chars": 5 }));
        assert!(run(&stage, "ééééé").1.is_ok());
        let (item, outcome) = run(&stage, "éééééé");
        assert_eq!(filtered_reason(outcome), "max_prompt_chars 5");
        assert_eq!(item.facts["safety_reason"], "prompt has 6 characters, over max_prompt_chars 5");
    }

    #[test]
    fn regex_rule_fires_with_its_name() {
        let stage = build(json!({
            "regex": [
                { "pattern": "\\bzzz\\b" },
                { "name": "ages", "pattern": "\\b\\d+ years? old\\b" }
            ]
        }));
        let (item, outcome) = run(&stage, "a girl, 9 Years-Old");
        assert_eq!(filtered_reason(outcome), "regex \"ages\" /\\b\\d+ years? old\\b/");
        assert_eq!(
            item.facts["safety_reason"],
            "\"9 Years-Old\" matched regex \"ages\" /\\b\\d+ years? old\\b/"
        );
        assert_eq!(filtered_reason(run(&stage, "ZZZ").1), "regex[0] /\\bzzz\\b/");
    }

    #[test]
    fn allow_list_lets_a_false_positive_through() {
        let stage = build(json!({ "deny": ["assassin"], "allow": ["assassin bug"] }));
        assert!(run(&stage, "an assassin bug on a rose").1.is_ok());
        assert!(run(&stage, "an assassin").1.is_err());
    }

    #[test]
    fn deny_file_terms_are_named_by_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "# comment\n\nnude   # trailing comment\n  gore \n").unwrap();
        let stage = build(json!({ "deny_files": [path] }));
        let reason = filtered_reason(run(&stage, "gory GORE").1);
        assert_eq!(reason, format!("deny term \"gore\" (from {}:4)", path.display()));
        assert!(run(&stage, "comment").1.is_ok(), "comments are not terms");
    }

    #[test]
    fn a_missing_deny_file_is_a_build_error_naming_it() {
        let options = json!({ "deny_files": ["pipelines/safety/no-such-list.txt"] });
        let err = Safety.build(&options, &ctx()).err().expect("build should fail");
        let message = format!("{err:#}");
        assert!(
            message.starts_with("deny_files[0]: cannot read pipelines/safety/no-such-list.txt"),
            "{message}"
        );
    }

    #[test]
    fn a_file_term_with_nothing_left_is_a_build_error_naming_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("words.txt");
        std::fs::write(&path, "gun\n---\n").unwrap();
        let err = Safety.build(&json!({ "deny_files": [path] }), &ctx()).err().expect("build should fail");
        assert!(format!("{err:#}").starts_with(&format!("{}:2: \"---\"", path.display())), "{err:#}");
    }

    #[test]
    fn a_bad_regex_is_a_check_error_at_its_option_path() {
        let err =
            check_error(json!({ "regex": [{ "pattern": "ok" }, { "name": "x", "pattern": "(unclosed" }] }));
        assert_eq!(err.path, vec!["regex", "1", "pattern"]);
        assert!(err.message.contains("unclosed"), "{}", err.message);
        let err = check_error(json!({ "regex": [{ "pattern": "a*" }] }));
        assert_eq!(err.path, vec!["regex", "0", "pattern"]);
    }

    #[test]
    fn check_rejects_bad_options_at_their_path() {
        assert_eq!(check_error(json!({ "deny": ["ok", "!!"] })).path, vec!["deny", "1"]);
        assert_eq!(check_error(json!({ "allow": ["..."], "deny": ["x"] })).path, vec!["allow", "0"]);
        assert_eq!(check_error(json!({ "max_prompt_chars": 0 })).path, vec!["max_prompt_chars"]);
        assert_eq!(check_error(json!({ "deny": ["x"], "rewrite_text": "y" })).path, vec!["rewrite_text"]);
        assert_eq!(check_error(json!({ "deny": ["x"], "on_reject": "ignore" })).path, vec!["on_reject"]);
        assert!(check_error(json!({ "deny": ["x"], "denny": ["y"] })).message.contains("unknown field"));
        assert!(check_error(json!({ "allow": ["x"] })).message.starts_with("no rules"));
    }

    #[test]
    fn a_rewrite_text_that_breaks_a_rule_is_a_build_error() {
        let options = json!({ "deny": ["gun"], "on_reject": "rewrite", "rewrite_text": "toy gun" });
        let err = Safety.build(&options, &ctx()).err().expect("build should fail");
        assert_eq!(
            err.to_string(),
            "rewrite_text \"toy gun\" itself breaks deny term \"gun\" (from deny[0])"
        );
    }

    /// The shipped lists, read from the repository as a pipeline would.
    fn children_stage() -> Arc<dyn CpuStage> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("pipelines/safety");
        build(json!({
            "deny_files": [dir.join("children-deny.txt")],
            "allow_files": [dir.join("children-allow.txt")],
        }))
    }

    #[test]
    fn the_children_list_passes_ordinary_coloring_pages() {
        let stage = children_stage();
        for prompt in [
            "A friendly dragon reading a book under a tree, simple line art",
            "A knight with a sword and shield in front of a castle",
            "A classic car parked by the sea in Scunthorpe",
            "An assassin bug on a leaf, coloring page",
            "A killer whale jumping over the waves",
            "Kids having a water gun fight in the garden",
            "A bass guitar and a drum kit",
            "A pirate ship under a shooting star",
            "A glass of orange juice and a blood orange",
            "Sussex countryside with sheep",
        ] {
            let (item, outcome) = run(&stage, prompt);
            assert!(outcome.is_ok(), "{prompt}: {:?}", item.facts.get("safety_reason"));
        }
    }

    #[test]
    fn the_children_list_catches_evasions() {
        let stage = children_stage();
        for prompt in [
            "a nаked woman",      // Cyrillic а
            "a N4K3D woman",      // leetspeak
            "ｎａｋｅｄ",         // fullwidth
            "a man with a g u n", // spaced letters
            "a soldier holding a h.a.n.d.g.u.n",
            "people dr1nking b33r",
            "a Sw4st1ka flag",
        ] {
            let (_, outcome) = run(&stage, prompt);
            assert!(matches!(outcome, Err(StageError::Filtered { .. })), "{prompt} passed");
        }
        let (_, outcome) = run(&stage, "a bloody battle");
        assert!(filtered_reason(outcome).starts_with("deny term \"bloody\" (from "));
    }
}
