//! Options declared once. A kind's options struct is the whole declaration: serde parses it,
//! its doc comments and serde defaults become what `inkflow stages KIND` prints (through the
//! struct's JSON Schema, derived with schemars), and the ranges declared on its fields
//! (`#[schemars(range(min = 1))]`) are checked when it is parsed. Nothing is written twice, so
//! the docs cannot drift from the parser. The models are Vector's `configurable_component`
//! and Benthos's `ConfigSpec`.

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use super::pipeline_path::PATH_EXTENSION;
use super::stage::{OptionDoc, OptionsError, parse_options};

/// Schema extension naming an option's type in the user's words where the schema's own type
/// says too little (`duration` for a string like `60s`, `URL`).
pub const TYPE_EXTENSION: &str = "x-inkflow-type";

/// The options of `T` as `inkflow stages` lists them: name, type, default and doc comment, in
/// name order.
pub fn documented<T: JsonSchema>() -> Vec<OptionDoc> {
    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    let required: Vec<&str> = root
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    let Some(properties) = root.get("properties").and_then(Value::as_object) else { return Vec::new() };
    properties
        .iter()
        .map(|(name, property)| {
            let property = resolve(root, property);
            let doc = property.get("description").and_then(Value::as_str).unwrap_or_default();
            let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
            let ty = type_words(root, property);
            let mut option = match property.get("default") {
                Some(default) => OptionDoc::new(name, &ty, &default_words(default), &doc),
                None if required.contains(&name.as_str()) => OptionDoc::required(name, &ty, &doc),
                None => OptionDoc::new(name, &ty, "none", &doc),
            };
            option.path = is_path(root, property);
            option
        })
        .collect()
}

/// Whether a property is a [`PipelinePath`], an optional one or a list of them (its schema, or
/// the one it refers to, carries [`PATH_EXTENSION`]).
fn is_path(root: &Value, property: &Value) -> bool {
    if property.get(PATH_EXTENSION).and_then(Value::as_bool) == Some(true) {
        return true;
    }
    let referred = property
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name));
    let alternatives =
        ["anyOf", "oneOf"].into_iter().filter_map(|key| property.get(key)?.as_array()).flatten();
    referred.into_iter().chain(property.get("items")).chain(alternatives).any(|inner| is_path(root, inner))
}

/// Parses `T` from a component's options and checks the ranges its schema declares for its
/// fields, pointing at the field that is out of range.
pub fn parse_declared<T: DeserializeOwned + JsonSchema>(options: &Value) -> Result<T, OptionsError> {
    let parsed = parse_options(options)?;
    let schema = schemars::schema_for!(T);
    let root = schema.as_value();
    if let (Some(properties), Some(given)) =
        (root.get("properties").and_then(Value::as_object), options.as_object())
    {
        for (name, value) in given {
            if let Some(property) = properties.get(name) {
                check_range(name, resolve(root, property), value)?;
            }
        }
    }
    Ok(parsed)
}

/// A number outside the `minimum`/`maximum` its property declares is an error at `name`.
fn check_range(name: &str, property: &Value, value: &Value) -> Result<(), OptionsError> {
    let Some(number) = value.as_f64() else { return Ok(()) };
    let bound = |key: &str| property.get(key).and_then(Value::as_f64);
    let (min, max) = (bound("minimum"), bound("maximum"));
    let words = |b: f64| Value::from(b).to_string().trim_end_matches(".0").to_owned();
    match (min, max) {
        (Some(min), Some(max)) if !(min..=max).contains(&number) => {
            Err(OptionsError::at(name, format!("must be between {} and {}", words(min), words(max))))
        }
        (Some(min), None) if number < min => {
            Err(OptionsError::at(name, format!("must be at least {}", words(min))))
        }
        (None, Some(max)) if number > max => {
            Err(OptionsError::at(name, format!("must be at most {}", words(max))))
        }
        _ => Ok(()),
    }
}

/// A property with a `$ref` replaced by its definition (keeping the property's own
/// description and default, which sit beside the reference).
fn resolve<'a>(root: &'a Value, property: &'a Value) -> &'a Value {
    let target = property
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .and_then(|name| root.get("$defs")?.get(name));
    match target {
        Some(definition) if property.get("description").is_none() && property.get("default").is_none() => {
            definition
        }
        _ => property,
    }
}

/// An option's type in the user's words: `integer 1-255`, `png|jpeg`, `list of string`.
fn type_words(root: &Value, property: &Value) -> String {
    if let Some(words) = property.get(TYPE_EXTENSION).and_then(Value::as_str) {
        return words.to_owned();
    }
    if let Some(reference) = property.get("$ref").and_then(Value::as_str) {
        let name = reference.trim_start_matches("#/$defs/");
        return match root.get("$defs").and_then(|d| d.get(name)) {
            Some(definition) => type_words(root, definition),
            None => name.to_owned(),
        };
    }
    if let Some(values) = property.get("enum").and_then(Value::as_array) {
        return values.iter().map(default_words).collect::<Vec<_>>().join("|");
    }
    if let Some(value) = property.get("const") {
        return default_words(value);
    }
    for alternatives in ["anyOf", "oneOf"] {
        if let Some(choices) = property.get(alternatives).and_then(Value::as_array) {
            let words: Vec<String> = choices
                .iter()
                .filter(|c| c.get("type").and_then(Value::as_str) != Some("null"))
                .map(|c| type_words(root, c))
                .collect();
            return words.join("|");
        }
    }
    let ty = match property.get("type") {
        Some(Value::String(ty)) => ty.as_str(),
        Some(Value::Array(types)) => {
            types.iter().filter_map(Value::as_str).find(|t| *t != "null").unwrap_or("any")
        }
        _ => "any",
    };
    match ty {
        "integer" | "number" => with_range(ty, property),
        "array" => {
            let items = property.get("items").map_or_else(|| "any".to_owned(), |i| type_words(root, i));
            format!("list of {items}")
        }
        "object" if property.get("properties").is_some() => {
            let fields: Vec<&String> =
                property["properties"].as_object().into_iter().flat_map(|p| p.keys()).collect();
            format!("{{{}}}", fields.iter().map(|f| f.as_str()).collect::<Vec<_>>().join(", "))
        }
        "object" => match property.get("additionalProperties") {
            Some(values @ Value::Object(_)) => format!("map of {}", type_words(root, values)),
            _ => "map".to_owned(),
        },
        other => other.to_owned(),
    }
}

/// `integer 0-255`, `number >= 0`, or the bare type when no range is declared.
fn with_range(ty: &str, property: &Value) -> String {
    let bound = |key: &str| property.get(key).and_then(Value::as_f64).map(|b| default_words(&Value::from(b)));
    match (bound("minimum"), bound("maximum")) {
        (Some(min), Some(max)) => format!("{ty} {min}-{max}"),
        (Some(min), None) => format!("{ty} >= {min}"),
        (None, Some(max)) => format!("{ty} <= {max}"),
        (None, None) => ty.to_owned(),
    }
}

/// A default as a user would write it in YAML: strings bare, whole numbers without `.0`,
/// lists and maps as JSON.
fn default_words(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        Value::Null => "none".to_owned(),
        other => other.to_string(),
    }
}

/// The value a documented default stands for, read back the way the pipeline file would
/// give it: JSON when it parses as JSON, else the bare string.
pub fn default_value(words: &str) -> Value {
    serde_json::from_str(words).unwrap_or_else(|_| Value::String(words.to_owned()))
}

/// Options `{name: default}` for one documented option: what a user writing that default
/// out would give.
pub fn with_default(option: &OptionDoc) -> Option<Value> {
    let default = option.default.as_deref().filter(|d| *d != "none")?;
    let mut map = Map::new();
    map.insert(option.name.clone(), default_value(default));
    Some(Value::Object(map))
}

#[cfg(test)]
mod tests {
    use serde::{Deserialize, Serialize};
    use serde_json::json;

    use super::*;

    /// What an example stage takes.
    #[derive(Deserialize, Serialize, JsonSchema)]
    #[serde(deny_unknown_fields)]
    struct Example {
        /// Pixels darker than this become black.
        #[serde(default = "level")]
        #[schemars(range(min = 1, max = 254))]
        level: u8,
        /// How to fit.
        #[serde(default)]
        fit: Fit,
        /// Where to read.
        path: String,
        /// How long to wait.
        #[serde(default)]
        #[schemars(extend("x-inkflow-type" = "duration"))]
        wait: Option<String>,
        /// Names to keep.
        #[serde(default = "names")]
        keep: Vec<String>,
    }

    fn level() -> u8 {
        128
    }

    fn names() -> Vec<String> {
        vec!["seed".into()]
    }

    #[derive(Deserialize, Serialize, JsonSchema, Default)]
    #[serde(rename_all = "lowercase")]
    enum Fit {
        #[default]
        Contain,
        Cover,
    }

    #[test]
    fn the_struct_is_the_documentation() {
        let docs = documented::<Example>();
        let row = |name: &str| docs.iter().find(|d| d.name == name).unwrap();
        assert_eq!(
            (row("level").ty.as_str(), row("level").default.as_deref(), row("level").doc.as_str()),
            ("integer 1-254", Some("128"), "Pixels darker than this become black.")
        );
        assert_eq!(
            (row("fit").ty.as_str(), row("fit").default.as_deref()),
            ("contain|cover", Some("contain"))
        );
        assert_eq!((row("path").ty.as_str(), row("path").default.as_deref()), ("string", None));
        assert_eq!((row("wait").ty.as_str(), row("wait").default.as_deref()), ("duration", Some("none")));
        assert_eq!(
            (row("keep").ty.as_str(), row("keep").default.as_deref()),
            ("list of string", Some("[\"seed\"]"))
        );
    }

    /// Options of the one path type, alone, optional or listed, and nothing else.
    #[derive(Deserialize, JsonSchema)]
    #[allow(dead_code)]
    struct Reads {
        /// A file.
        file: crate::engine::pipeline_path::PipelinePath,
        /// Maybe a font.
        #[serde(default)]
        font: Option<crate::engine::pipeline_path::PipelinePath>,
        /// Lists.
        #[serde(default)]
        lists: Vec<crate::engine::pipeline_path::PipelinePath>,
        /// A name that is no path.
        #[serde(default)]
        name: String,
    }

    #[test]
    fn path_options_are_known_by_their_type() {
        let docs = documented::<Reads>();
        let paths: Vec<(&str, bool, &str)> =
            docs.iter().map(|d| (d.name.as_str(), d.path, d.ty.as_str())).collect();
        assert_eq!(
            paths,
            [
                ("file", true, "path"),
                ("font", true, "path"),
                ("lists", true, "list of path"),
                ("name", false, "string")
            ]
        );
    }

    #[test]
    fn declared_ranges_are_checked_at_their_field() {
        let parsed: Example = parse_declared(&json!({"path": "p", "level": 200})).unwrap();
        assert_eq!(parsed.level, 200);
        let error = parse_declared::<Example>(&json!({"path": "p", "level": 255})).err().unwrap();
        assert_eq!(
            (error.path, error.message.as_str()),
            (vec!["level".to_owned()], "must be between 1 and 254")
        );
        let error = parse_declared::<Example>(&json!({"path": "p", "levl": 2})).err().unwrap();
        assert!(error.message.contains("level"), "{}", error.message);
    }

    #[test]
    fn every_documented_default_reads_back_as_the_default() {
        for option in documented::<Example>() {
            let Some(mut options) = with_default(&option) else { continue };
            options["path"] = json!("p");
            let parsed: Example = parse_declared(&options).unwrap();
            let defaults: Example = parse_declared(&json!({"path": "p"})).unwrap();
            assert_eq!(
                serde_json::to_value(parsed).unwrap(),
                serde_json::to_value(defaults).unwrap(),
                "{}",
                option.name
            );
        }
    }
}
