//! One input of a model's schema (type, range, enum, default) and the check of a value against
//! it, so a value fal would refuse with a 422 (after running, and charging, the request) is
//! refused before anything is submitted.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The JSON type of an input, as fal's schemas name them.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum InputType {
    /// A whole number.
    Integer,
    /// Any number.
    Number,
    /// true or false.
    Boolean,
    /// Text.
    String,
    /// fal's `ImageSize | Enum`: a preset name or `{width, height}`.
    ImageSize,
    /// A list (LoRAs, image URLs, colors).
    Array,
    /// An object.
    Object,
}

impl InputType {
    /// The word used in `inkflow models MODEL`.
    pub fn word(self) -> &'static str {
        match self {
            InputType::Integer => "integer",
            InputType::Number => "number",
            InputType::Boolean => "boolean",
            InputType::String => "string",
            InputType::ImageSize => "size",
            InputType::Array => "list",
            InputType::Object => "object",
        }
    }

    /// The word with its article, for messages.
    fn with_article(self) -> String {
        match self {
            InputType::Integer | InputType::Object => format!("an {}", self.word()),
            other => format!("a {}", other.word()),
        }
    }
}

/// One input of a model, from its published schema.
#[derive(Clone, Debug, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Input {
    /// Its JSON type.
    #[serde(rename = "type")]
    pub kind: InputType,
    /// The smallest value fal accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<f64>,
    /// The largest value fal accepts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<f64>,
    /// The only values fal accepts (for a size: its preset names).
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub choices: Option<Vec<Value>>,
    /// What the model uses when the input is not sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    /// For a size: whether `{width, height}` is taken besides the presets (default: yes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom: Option<bool>,
    /// Values the model page shows, when the schema lists too many to check here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Value>,
    /// What the items of a list are.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub items: Option<String>,
    /// A word on the input when its name does not say enough.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

impl Input {
    /// Checks `value` for input `name` of `model`; the error names the input, the model and
    /// the limit, e.g. `num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12`.
    pub fn check(&self, model: &str, name: &str, value: &Value) -> Result<(), String> {
        let shown = show(value);
        let wrong_type =
            || format!("{name} {shown} is not {}, as {model} takes it", self.kind.with_article());
        match self.kind {
            InputType::Integer if value.as_i64().is_none() && value.as_u64().is_none() => {
                return Err(wrong_type());
            }
            InputType::Number if !value.is_number() => return Err(wrong_type()),
            InputType::Boolean if !value.is_boolean() => return Err(wrong_type()),
            InputType::String if !value.is_string() => return Err(wrong_type()),
            InputType::Array if !value.is_array() => return Err(wrong_type()),
            InputType::Object if !value.is_object() => return Err(wrong_type()),
            InputType::ImageSize => return self.check_size(model, name, value),
            InputType::Array => return self.check_length(model, name, value),
            _ => {}
        }
        if let Some(number) = value.as_f64() {
            if let Some(min) = self.min.filter(|min| number < *min) {
                return Err(format!("{name} {shown} is under {model}'s minimum {}", show_number(min)));
            }
            if let Some(max) = self.max.filter(|max| number > *max) {
                return Err(format!("{name} {shown} is over {model}'s maximum {}", show_number(max)));
            }
        }
        self.check_choice(model, name, value)
    }

    /// A list of at most `max` items, where the schema bounds it (Ideogram's character takes
    /// one reference image).
    fn check_length(&self, model: &str, name: &str, value: &Value) -> Result<(), String> {
        let given = value.as_array().map_or(0, Vec::len);
        match self.max_count() {
            Some(max) if given > max as usize => {
                Err(format!("{name} has {given} items, over {model}'s maximum of {max}"))
            }
            _ => Ok(()),
        }
    }

    /// A preset among the model's, or `{width, height}` where the model takes it.
    fn check_size(&self, model: &str, name: &str, value: &Value) -> Result<(), String> {
        match value {
            Value::String(_) => self.check_choice(model, name, value),
            Value::Object(fields) if self.custom != Some(false) => {
                let side = |key: &str| fields.get(key).and_then(Value::as_u64).filter(|v| *v > 0);
                match (side("width"), side("height")) {
                    (Some(_), Some(_)) if fields.len() == 2 => Ok(()),
                    _ => Err(format!(
                        "{name} {} is not a size: give a preset or {{width, height}} in pixels",
                        show(value)
                    )),
                }
            }
            _ => Err(format!("{name} {} is not one of {model}'s sizes: {}", show(value), self.choice_list())),
        }
    }

    fn check_choice(&self, model: &str, name: &str, value: &Value) -> Result<(), String> {
        match &self.choices {
            Some(choices) if !choices.contains(value) => {
                Err(format!("{name} {} is not one of {model}'s choices: {}", show(value), self.choice_list()))
            }
            _ => Ok(()),
        }
    }

    /// The choices as `a, b, c`.
    pub fn choice_list(&self) -> String {
        let choices = self.choices.iter().flatten().map(show);
        let mut listed: Vec<String> = choices.collect();
        if self.kind == InputType::ImageSize && self.custom != Some(false) {
            listed.push("{width, height}".into());
        }
        listed.join(", ")
    }

    /// The maximum as a whole number, for counts such as `num_images` (for a list: its most
    /// items).
    pub fn max_count(&self) -> Option<u32> {
        self.max.filter(|max| *max >= 1.0).map(|max| max.min(f64::from(u32::MAX)) as u32)
    }
}

/// A value as a user wrote it: strings without quotes would hide `"28"` versus `28`.
pub fn show(value: &Value) -> String {
    match value {
        Value::Number(n) => n.as_f64().map_or_else(|| n.to_string(), show_number),
        other => other.to_string(),
    }
}

fn show_number(number: f64) -> String {
    if number.fract() == 0.0 && number.abs() < 1e15 {
        format!("{}", number as i64)
    } else {
        number.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn input(value: Value) -> Input {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn ranges_types_and_choices_name_the_model_and_the_limit() {
        let steps = input(json!({"type": "integer", "min": 1, "max": 12, "default": 4}));
        let m = "fal-ai/flux/schnell";
        assert_eq!(
            steps.check(m, "num_inference_steps", &json!(28)).unwrap_err(),
            "num_inference_steps 28 is over fal-ai/flux/schnell's maximum 12"
        );
        assert_eq!(
            steps.check(m, "num_inference_steps", &json!(0)).unwrap_err(),
            "num_inference_steps 0 is under fal-ai/flux/schnell's minimum 1"
        );
        assert!(
            steps.check(m, "num_inference_steps", &json!("4")).unwrap_err().contains("is not an integer")
        );
        assert!(steps.check(m, "num_inference_steps", &json!(4.5)).is_err());
        assert!(steps.check(m, "num_inference_steps", &json!(12)).is_ok());
        let format = input(json!({"type": "string", "enum": ["jpeg", "png"]}));
        let message = format.check(m, "output_format", &json!("gif")).unwrap_err();
        assert_eq!(
            message,
            "output_format \"gif\" is not one of fal-ai/flux/schnell's choices: \"jpeg\", \"png\""
        );
        let guidance = input(json!({"type": "number", "min": 1, "max": 20}));
        assert!(guidance.check(m, "guidance_scale", &json!(3.5)).is_ok());
        assert!(guidance.check(m, "guidance_scale", &json!(20.5)).unwrap_err().contains("maximum 20"));
    }

    #[test]
    fn sizes_take_the_models_presets_or_pixels() {
        let size = input(json!({"type": "image_size", "enum": ["square_hd", "portrait_4_3"]}));
        assert!(size.check("m", "image_size", &json!("portrait_4_3")).is_ok());
        assert!(size.check("m", "image_size", &json!({"width": 640, "height": 480})).is_ok());
        assert!(size.check("m", "image_size", &json!("auto_2K")).unwrap_err().contains("{width, height}"));
        assert!(size.check("m", "image_size", &json!({"width": 0, "height": 480})).is_err());
        let presets_only = input(json!({"type": "image_size", "enum": ["square_hd"], "custom": false}));
        assert!(presets_only.check("m", "image_size", &json!({"width": 640, "height": 480})).is_err());
    }

    #[test]
    fn a_list_holds_at_most_its_maximum() {
        let one = input(json!({"type": "array", "max": 1}));
        assert!(one.check("m", "reference_image_urls", &json!(["a"])).is_ok());
        let message = one.check("m", "reference_image_urls", &json!(["a", "b"])).unwrap_err();
        assert_eq!(message, "reference_image_urls has 2 items, over m's maximum of 1");
        assert!(input(json!({"type": "array"})).check("m", "loras", &json!([1, 2, 3])).is_ok());
    }
}
