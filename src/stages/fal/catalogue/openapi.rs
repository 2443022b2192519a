//! A catalogue entry from fal's OpenAPI schema of an endpoint
//! (`{FAL_API_BASE_URL}/api/openapi/queue/openapi.json?endpoint_id=ID`): the input schema of
//! its POST, with every property's type, range, enum and default.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::input::{Input, InputType};
use super::{ImageInput, Model, ReferenceKind, VectorOutputs};
use crate::stages::fal::pricing::Price;

/// The catalogue entry of endpoint `id` from its OpenAPI document, priced at `price`; what a
/// schema cannot say (surcharges, vector outputs, an aspect-ratio model's megapixels, notes)
/// is kept from `previous`, the entry it refreshes.
pub fn from_openapi(
    id: &str,
    openapi: &Value,
    previous: Option<&Model>,
    price: Price,
) -> Result<Model, String> {
    let schemas = openapi.pointer("/components/schemas").and_then(Value::as_object);
    let schemas = schemas.ok_or("the OpenAPI document has no components.schemas")?;
    let input_ref = openapi
        .get("paths")
        .and_then(Value::as_object)
        .and_then(|paths| {
            paths.get(&format!("/{id}")).or_else(|| paths.values().find(|p| p.get("post").is_some()))
        })
        .and_then(|path| path.pointer("/post/requestBody/content/application~1json/schema"))
        .ok_or_else(|| format!("the OpenAPI document has no POST /{id} with a JSON body"))?;
    let input_schema = resolve(input_ref, schemas);
    let properties = input_schema.get("properties").and_then(Value::as_object);
    let properties = properties.ok_or("the model's input schema has no properties")?;
    let mut inputs = BTreeMap::new();
    for (name, schema) in properties.iter().filter(|(name, _)| name.as_str() != "prompt") {
        inputs.insert(name.clone(), input_of(name, schema, schemas));
    }
    let outputs = match inputs.get("output_format").and_then(|i| i.choices.clone()) {
        Some(formats) => formats.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        None => previous.map_or_else(|| vec!["png".to_owned(), "jpeg".to_owned()], |p| p.outputs.clone()),
    };
    let title = openapi.pointer("/info/title").and_then(Value::as_str).unwrap_or(id).to_owned();
    let image_inputs: Vec<ImageInput> = inputs
        .keys()
        .filter(|name| name.ends_with("image_url") || name.ends_with("image_urls"))
        .map(|name| ImageInput { input: name.clone(), kind: ReferenceKind::guess(name) })
        .collect();
    let vector_outputs: Option<VectorOutputs> = previous.and_then(|p| p.vector_outputs.clone());
    Ok(Model {
        id: id.to_owned(),
        title: previous.map_or(title, |p| p.title.clone()),
        source: format!("fal's OpenAPI schema of {id}"),
        notes: previous.and_then(|p| p.notes.clone()),
        price,
        outputs,
        loras: inputs.contains_key("loras"),
        image_inputs,
        megapixels: previous.and_then(|p| p.megapixels),
        vector_outputs,
        inputs,
    })
}

/// A schema with its `$ref` (and a single `allOf`) followed.
fn resolve<'a>(schema: &'a Value, schemas: &'a Map<String, Value>) -> &'a Value {
    if let Some(name) = schema.get("$ref").and_then(Value::as_str).and_then(|r| r.rsplit('/').next()) {
        return schemas.get(name).map_or(schema, |s| resolve(s, schemas));
    }
    match schema.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        Some([only]) => resolve(only, schemas),
        _ => schema,
    }
}

/// One property as an input: `anyOf` alternatives (a size: presets or `ImageSize`; an
/// optional value: the type or null) are merged into one.
fn input_of(name: &str, schema: &Value, schemas: &Map<String, Value>) -> Input {
    let own = resolve(schema, schemas);
    let alternatives: Vec<&Value> = match own.get("anyOf").and_then(Value::as_array) {
        Some(any) => any
            .iter()
            .map(|a| resolve(a, schemas))
            .filter(|a| a.get("type") != Some(&"null".into()))
            .collect(),
        None => vec![own],
    };
    let number =
        |key: &str| alternatives.iter().chain([&own]).find_map(|a| a.get(key).and_then(Value::as_f64));
    let choices = alternatives.iter().find_map(|a| a.get("enum").and_then(Value::as_array).cloned());
    let is_size = alternatives
        .iter()
        .any(|a| a.pointer("/properties/width").is_some() && a.pointer("/properties/height").is_some());
    let declared =
        alternatives.iter().find_map(|a| a.get("type").and_then(Value::as_str)).unwrap_or("string");
    let kind = if is_size || name == "image_size" && choices.is_some() {
        InputType::ImageSize
    } else {
        match declared {
            "integer" => InputType::Integer,
            "number" => InputType::Number,
            "boolean" => InputType::Boolean,
            "array" => InputType::Array,
            "object" => InputType::Object,
            _ => InputType::String,
        }
    };
    Input {
        kind,
        min: number("minimum"),
        max: number("maximum"),
        choices,
        default: own.get("default").or_else(|| schema.get("default")).cloned(),
        custom: (kind == InputType::ImageSize).then_some(is_size),
        examples: Vec::new(),
        items: None,
        doc: None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::stages::fal::pricing::Unit;

    #[test]
    fn an_openapi_schema_becomes_an_entry_with_ranges_enums_and_sizes() {
        let openapi = json!({
            "info": {"title": "queue.fal.run"},
            "paths": {"/fal-ai/new-model": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/NewInput"}}}}}}},
            "components": {"schemas": {
                "NewInput": {"properties": {
                    "prompt": {"type": "string"},
                    "num_inference_steps": {"type": "integer", "minimum": 1, "maximum": 12, "default": 4},
                    "image_size": {"anyOf": [{"$ref": "#/components/schemas/ImageSize"},
                                             {"type": "string", "enum": ["square_hd", "portrait_4_3"]}],
                                   "default": "square_hd"},
                    "output_format": {"allOf": [{"$ref": "#/components/schemas/Format"}], "default": "png"},
                    "seed": {"anyOf": [{"type": "integer"}, {"type": "null"}]},
                    "num_images": {"type": "integer", "minimum": 1, "maximum": 4},
                    "loras": {"type": "array"}
                }},
                "ImageSize": {"properties": {"width": {"type": "integer"}, "height": {"type": "integer"}}},
                "Format": {"enum": ["jpeg", "png", "webp"], "type": "string"}
            }}
        });
        let price = Price { unit: Unit::Image, usd: 0.01, tiers: None, surcharges: Vec::new() };
        let model = from_openapi("fal-ai/new-model", &openapi, None, price).unwrap();
        assert_eq!(model.inputs["num_inference_steps"].max, Some(12.0));
        assert_eq!(model.inputs["image_size"].kind, InputType::ImageSize);
        assert_eq!(model.inputs["image_size"].custom, Some(true));
        assert!(model.inputs["image_size"].check("m", "image_size", &json!("portrait_4_3")).is_ok());
        assert_eq!(model.inputs["seed"].kind, InputType::Integer);
        assert_eq!(model.outputs, ["jpeg", "png", "webp"]);
        assert_eq!(model.images_per_request(), 4);
        assert!(model.loras && model.takes_seed() && !model.inputs.contains_key("prompt"));
        assert!(from_openapi("x", &json!({}), None, model.price.clone()).is_err());
    }
}
