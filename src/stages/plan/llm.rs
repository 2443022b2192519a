//! Planning with an LLM on fal: the request for the scenes the book still needs, the reading
//! of its answer, and the loop that pays for as few requests as it can. Every request is in
//! the journal before it is sent; a resumed run reads again what earlier runs were answered
//! and collects what they left open, so a plan is paid for once. A malformed answer is a
//! failed, paid request, asked again while `max_requests` and `max_cost_usd` allow.

use anyhow::bail;
use serde::Deserialize;
use serde_json::{Value, json};

use super::book::{Book, Offer, Scene};
use super::options::Options;
use crate::engine::journal::{PlanRequest, PlanRequests};
use crate::stages::fal::llm::{LlmClient, LlmError};

/// The line of the request that states, as JSON, how many scenes each section needs.
pub const WANTED_LINE: &str = "Scenes wanted per section:";
/// The line of the request before the scenes it must not repeat, one per line after "- ".
pub const AVOID_LINE: &str = "Already in the book, do not repeat or reword:";

/// The planner's instructions.
const SYSTEM: &str = "You plan coloring books. Each scene you write is one picture a person colors: a clear main \
subject, what it does and where, in one plain sentence, with no colors, no text and no shading. Every scene is a \
different picture. You answer with JSON only.";

/// The answer asked for.
#[derive(Deserialize)]
struct Answer {
    scenes: Vec<AnswerScene>,
}

#[derive(Deserialize, Debug)]
struct AnswerScene {
    #[serde(default)]
    section: Option<String>,
    #[serde(default)]
    description: Option<String>,
    scene: String,
}

/// The plan loop's state: the book, what the requests cost, and the last thing that went wrong.
pub struct Planning<'a> {
    options: &'a Options,
    client: &'a LlmClient,
    journal: &'a PlanRequests,
    requests: u32,
    problem: Option<String>,
}

impl<'a> Planning<'a> {
    /// A planning of `options` through `client`, journaled in `journal`.
    pub fn new(options: &'a Options, client: &'a LlmClient, journal: &'a PlanRequests) -> Self {
        Planning { options, client, journal, requests: 0, problem: None }
    }

    /// Fills `book`: first from the requests earlier runs made (read again, or collected),
    /// then with new requests while the book is short of scenes and the limits allow.
    pub async fn fill(&mut self, book: &mut Book) -> anyhow::Result<()> {
        for (row, recorded) in self.journal.recorded()? {
            self.requests += 1;
            match recorded {
                PlanRequest::Uncertain => bail!(
                    "plan request #{} may have been charged: an earlier run stopped while sending it, before fal \
                     answered. Nothing more is asked for, so nothing is paid twice; `inkflow run --retry-failed` \
                     counts it as spent and asks again",
                    self.requests
                ),
                PlanRequest::Unusable => {
                    self.problem =
                        Some(format!("request #{} of an earlier run had no usable answer", self.requests));
                }
                PlanRequest::Open(handle) | PlanRequest::Answered(handle) => {
                    self.collect(book, row, &handle).await?;
                }
            }
        }
        while !book.is_complete() {
            self.check_limits(book)?;
            let input = self.request(book);
            let row = self.journal.submitting(self.options.price_usd)?;
            let handle = match self.client.submit(&self.options.endpoint, &input).await {
                Ok(handle) => handle,
                Err(LlmError::Uncertain(message)) => {
                    bail!(
                        "{message}; the journal keeps it as possibly charged: the next run asks for nothing until `inkflow run --retry-failed`"
                    )
                }
                Err(error) => {
                    self.journal.not_submitted(row)?;
                    bail!("the plan was not asked for: {error}");
                }
            };
            self.journal.submitted(row, &handle)?;
            self.requests += 1;
            self.collect(book, row, &handle).await?;
        }
        Ok(())
    }

    /// How many requests the plan took, over every run, for the log.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// Refuses another request past `max_requests` or `max_cost_usd`, saying what is missing
    /// and why the last answer was not enough.
    fn check_limits(&self, book: &Book) -> anyhow::Result<()> {
        let spent = self.journal.spent_usd()?;
        let over_budget = self.options.max_cost_usd.filter(|max| spent + self.options.price_usd > max + 1e-9);
        if self.requests < self.options.max_requests && over_budget.is_none() {
            return Ok(());
        }
        let missing: Vec<String> = book.missing().iter().map(|(s, n)| format!("{n} for {s:?}")).collect();
        let limit = match over_budget {
            Some(max) => format!("max_cost_usd ${max} allows no other request"),
            None => format!("max_requests ({}) is reached", self.options.max_requests),
        };
        let last = self.problem.as_deref().unwrap_or("the answers held too few distinct scenes");
        bail!(
            "the plan still needs scenes ({}) after {} paid request(s) (${spent:.3}) and {limit}; the last problem: {last}",
            missing.join(", "),
            self.requests
        )
    }

    /// Waits for the request `handle` (journaled as `row`) and offers its scenes to the book.
    async fn collect(&mut self, book: &mut Book, row: i64, handle: &Value) -> anyhow::Result<()> {
        let id = handle.get("request_id").and_then(Value::as_str).unwrap_or("?").to_owned();
        match self.client.answer(handle).await {
            Ok(answer) => match scenes_in(&answer, self.options.endpoint.ends_with("/chat/completions")) {
                Ok(scenes) => {
                    self.journal.answered(row)?;
                    self.offer(book, scenes);
                }
                Err(why) => {
                    let problem = format!("the answer to plan request {id} is malformed: {why}");
                    tracing::warn!("{problem}; it is paid for, and asked again if the limits allow");
                    self.journal.unusable(row, "failed", None)?;
                    self.problem = Some(problem);
                }
            },
            Err(LlmError::Failed { message, charged }) => {
                tracing::warn!("{message}");
                self.journal.unusable(
                    row,
                    "failed",
                    Some(if charged { self.options.price_usd } else { 0.0 }),
                )?;
                self.problem = Some(message);
            }
            Err(error) => bail!("{error}; the request is in the journal, and the next run collects it"),
        }
        Ok(())
    }

    /// Offers answered scenes: a scene naming no section goes to the first one still short.
    fn offer(&mut self, book: &mut Book, scenes: Vec<AnswerScene>) {
        for answered in scenes {
            let Some(section) =
                answered.section.or_else(|| book.missing().first().map(|(s, _)| (*s).to_owned()))
            else {
                break;
            };
            let description = answered.description.unwrap_or_else(|| short(&answered.scene));
            let scene = Scene { section, description, scene: answered.scene };
            match book.offer(scene.clone()) {
                Offer::Kept => {}
                Offer::NearDuplicate => {
                    tracing::info!(
                        "plan: {:?} is a near-duplicate of a planned scene; asking again",
                        scene.scene
                    );
                    self.problem = Some(format!("near-duplicate scenes such as {:?}", scene.scene));
                }
                Offer::NotWanted => {
                    tracing::info!(
                        "plan: no page wanted in section {:?} for {:?}",
                        scene.section,
                        scene.scene
                    );
                }
            }
        }
    }

    /// The request for what `book` still needs, in the endpoint's shape.
    fn request(&self, book: &Book) -> Value {
        let missing = book.missing();
        let total: u32 = missing.iter().map(|(_, n)| n).sum();
        let wanted: serde_json::Map<String, Value> =
            missing.iter().map(|(s, n)| ((*s).to_owned(), json!(n))).collect();
        let mut prompt = format!(
            "Plan {total} pages of a coloring book about {:?} for {}.\n{WANTED_LINE} {}\n",
            self.options.theme.trim(),
            self.options.audience.reader(),
            Value::Object(wanted)
        );
        let avoid: Vec<&str> = book
            .kept()
            .map(|s| s.scene.as_str())
            .chain(book.turned_away.iter().map(String::as_str))
            .collect();
        if !avoid.is_empty() {
            prompt.push_str(&format!("{AVOID_LINE}\n"));
            for scene in avoid {
                prompt.push_str(&format!("- {scene}\n"));
            }
        }
        prompt.push_str(
            "Answer with this JSON and nothing else: {\"scenes\": [{\"section\": \"<one of the sections above>\", \
             \"description\": \"<two to four words>\", \"scene\": \"<one sentence>\"}]}",
        );
        let model = &self.options.llm;
        if self.options.endpoint.ends_with("/chat/completions") {
            json!({
                "model": model,
                "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                "response_format": {"type": "json_schema", "json_schema": {"name": "book_plan", "strict": true, "schema": schema(&missing)}},
            })
        } else {
            json!({"model": model, "system_prompt": SYSTEM, "prompt": prompt})
        }
    }
}

/// The JSON schema of the answer, for endpoints that take one (structured output).
fn schema(missing: &[(&str, u32)]) -> Value {
    let sections: Vec<&str> = missing.iter().map(|(s, _)| *s).collect();
    json!({
        "type": "object", "additionalProperties": false, "required": ["scenes"],
        "properties": {"scenes": {"type": "array", "items": {
            "type": "object", "additionalProperties": false, "required": ["section", "description", "scene"],
            "properties": {
                "section": {"type": "string", "enum": sections},
                "description": {"type": "string"},
                "scene": {"type": "string"}
            }
        }}}
    })
}

/// The scenes of an answer, or what is wrong with it. A prompt endpoint answers its text in
/// `output` (and its failure in `error`); a chat endpoint in `choices[0].message.content`.
fn scenes_in(answer: &Value, chat: bool) -> Result<Vec<AnswerScene>, String> {
    if let Some(error) = answer.get("error").filter(|e| !e.is_null()) {
        return Err(format!("the endpoint reports an error: {error}"));
    }
    let text = if chat { answer.pointer("/choices/0/message/content") } else { answer.get("output") };
    let text = text.and_then(Value::as_str).ok_or_else(|| {
        let field = if chat { "choices[0].message.content" } else { "output" };
        format!("it has no {field} text")
    })?;
    // Models often wrap JSON in a Markdown fence or a sentence: read from the first brace to the last.
    let json = match (text.find('{'), text.rfind('}')) {
        (Some(start), Some(end)) if start < end => &text[start..=end],
        _ => return Err(format!("no JSON object in {:?}", clip(text))),
    };
    let answer: Answer = serde_json::from_str(json)
        .map_err(|e| format!("the JSON does not hold the plan asked for ({e}) in {:?}", clip(text)))?;
    let scenes: Vec<AnswerScene> = answer.scenes.into_iter().filter(|s| !s.scene.trim().is_empty()).collect();
    if scenes.is_empty() {
        return Err("it holds no scene".into());
    }
    Ok(scenes)
}

/// At most 120 characters of an answer, for messages.
fn clip(text: &str) -> String {
    let clipped: String = text.chars().take(120).collect();
    if clipped.len() < text.len() { format!("{clipped}...") } else { clipped }
}

/// The first words of a scene, when the answer gave no description.
fn short(scene: &str) -> String {
    scene.split_whitespace().take(4).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_read_from_either_shape_and_malformed_ones_say_what_is_wrong() {
        let text = "Sure!\n```json\n{\"scenes\": [{\"section\": \"a\", \"description\": \"crab\", \"scene\": \"a crab\"}]}\n```";
        let scenes = scenes_in(&json!({"output": text}), false).unwrap();
        assert_eq!((scenes[0].section.as_deref(), scenes[0].scene.as_str()), (Some("a"), "a crab"));
        let chat = json!({"choices": [{"message": {"content": "{\"scenes\": [{\"scene\": \"a whale\"}]}"}}]});
        assert_eq!(scenes_in(&chat, true).unwrap()[0].scene, "a whale");
        let err = scenes_in(&json!({"output": "I cannot help with that."}), false).unwrap_err();
        assert!(err.contains("no JSON object"), "{err}");
        let err = scenes_in(&json!({"output": "{\"pages\": []}"}), false).unwrap_err();
        assert!(err.contains("missing field `scenes`"), "{err}");
        let err = scenes_in(&json!({"output": "{\"scenes\": []}"}), false).unwrap_err();
        assert!(err.contains("no scene"), "{err}");
        assert!(scenes_in(&json!({"images": []}), false).unwrap_err().contains("no output text"));
        assert!(
            scenes_in(&json!({"output": "", "error": "overloaded"}), false)
                .unwrap_err()
                .contains("overloaded")
        );
    }
}
