//! The built `safety` stage: finds the first rule a prompt breaks and drops, fails or rewrites
//! the item as `on_reject` says.

use crate::engine::item::Item;
use crate::engine::media::Payload;
use crate::engine::stage::{CpuStage, StageError};

use super::OnReject;
use super::matcher::Matcher;

/// A built safety stage.
pub(super) struct SafetyStage {
    pub(super) matcher: Matcher,
    pub(super) max_prompt_chars: Option<usize>,
    pub(super) on_reject: OnReject,
    pub(super) rewrite_text: String,
}

/// The first rule a prompt breaks.
pub(super) struct Violation {
    /// The rule, stable across items so the summary can count by it.
    pub(super) rule: String,
    /// The rule and what in this prompt fired it.
    reason: String,
}

impl SafetyStage {
    pub(super) fn violation(&self, prompt: &str) -> Option<Violation> {
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
