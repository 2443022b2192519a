//! The metadata JSON of an item: the original script's fields, the outputs written and the
//! item's facts, with how the item ended (written, failed or filtered).

use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::engine::item::{Item, State};

/// The metadata the original script wrote per image, plus the outputs and the item's facts.
pub(super) fn metadata(
    item: &Item,
    output_filename: Option<&str>,
    outputs: Map<String, Value>,
    fate: &Fate,
) -> Value {
    let prompt = &item.prompt;
    let (success, error_message) = match fate {
        Fate::Written => (true, Value::Null),
        Fate::Failed { stage, error, attempts } => {
            (false, format!("stage \"{stage}\" failed after {attempts} attempt(s): {error}").into())
        }
        Fate::Filtered { stage, reason } => {
            (false, format!("filtered by stage \"{stage}\": {reason}").into())
        }
    };
    let mut meta = json!({
        "section": prompt.section,
        "image_number": prompt.number,
        "image_prompt": prompt.image_prompt,
        "description": prompt.description,
        "output_filename": output_filename,
        "generation_time": item.generation_time.map(|t| t.as_secs_f64()),
        "timestamp": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
        "model": item.facts.get("model").cloned().unwrap_or(Value::Null),
        "resolution": item.facts.get("resolution").cloned().unwrap_or(Value::Null),
        "success": success,
        "error_message": error_message,
        "retry_count": item.retries,
        "key": item.key,
        "outputs": outputs,
    });
    if let Value::Object(fields) = &mut meta {
        match fate {
            Fate::Failed { stage, .. } => {
                fields.insert("failed_stage".into(), stage.clone().into());
            }
            Fate::Filtered { stage, reason } => {
                fields.insert("filtered_stage".into(), stage.clone().into());
                fields.insert("filtered_reason".into(), reason.clone().into());
            }
            Fate::Written => {}
        }
        if item.judgement.is_some() {
            fields.insert("candidate".into(), item.trial.number.into());
        }
        for (name, value) in &item.facts {
            fields.entry(name.clone()).or_insert_with(|| value.clone());
        }
    }
    meta
}

/// How an item ended, as the metadata records it.
pub(super) enum Fate {
    Written,
    Failed { stage: String, error: String, attempts: u32 },
    Filtered { stage: String, reason: String },
}

pub(super) fn fate(states: &[State]) -> Fate {
    for state in states {
        match state {
            State::Failed(f) => {
                return Fate::Failed { stage: f.stage.clone(), error: f.error.clone(), attempts: f.attempts };
            }
            State::Filtered { stage, reason } => {
                return Fate::Filtered { stage: stage.clone(), reason: reason.clone() };
            }
            State::Ready(_) => {}
        }
    }
    Fate::Written
}
