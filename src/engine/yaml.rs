//! A YAML tree that remembers where every node came from, so each config error can name its
//! line and column, plus the two edits applied before validation: `${VAR}` interpolation and
//! `--set path=value` overrides.

use std::fmt;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use super::diagnostic::{Diagnostic, Pos};

/// A YAML value whose children keep their positions.
#[derive(Clone, Debug, PartialEq)]
pub enum Yaml {
    /// `~` or nothing.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A string.
    Str(String),
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in file order.
    Map(Vec<(Key, Node)>),
}

/// A value and where it is.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// The value.
    pub value: Yaml,
    /// Its position.
    pub pos: Pos,
}

/// A mapping key and where it is (errors about unknown fields point at the key).
#[derive(Clone, Debug, PartialEq)]
pub struct Key {
    /// The key text.
    pub name: String,
    /// Its position.
    pub pos: Pos,
}

impl Node {
    /// The entries of a mapping, or `None` for other values.
    pub fn as_map(&self) -> Option<&[(Key, Node)]> {
        match &self.value {
            Yaml::Map(entries) => Some(entries),
            _ => None,
        }
    }

    /// The entry of a mapping with this key.
    pub fn get(&self, key: &str) -> Option<&Node> {
        self.as_map()?.iter().find(|(k, _)| k.name == key).map(|(_, v)| v)
    }

    /// True for a value given on the command line (`--set`, `--prompts`), which has no place
    /// in the file.
    pub fn from_command_line(&self) -> bool {
        self.pos == Pos::default()
    }

    /// What kind of value this is, for "expected a map, found a string" messages.
    pub fn type_name(&self) -> &'static str {
        match self.value {
            Yaml::Null => "nothing",
            Yaml::Bool(_) => "a boolean",
            Yaml::Int(_) => "an integer",
            Yaml::Float(_) => "a number",
            Yaml::Str(_) => "a string",
            Yaml::Seq(_) => "a list",
            Yaml::Map(_) => "a map",
        }
    }

    /// The same value as JSON, which kinds deserialize their typed options from.
    pub fn to_json(&self) -> Value {
        match &self.value {
            Yaml::Null => Value::Null,
            Yaml::Bool(b) => Value::Bool(*b),
            Yaml::Int(i) => Value::from(*i),
            Yaml::Float(f) => serde_json::Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Yaml::Str(s) => Value::String(s.clone()),
            Yaml::Seq(items) => Value::Array(items.iter().map(Node::to_json).collect()),
            Yaml::Map(entries) => {
                Value::Object(entries.iter().map(|(k, v)| (k.name.clone(), v.to_json())).collect())
            }
        }
    }

    /// The position of the key of the last segment of `path` (for "unknown field" errors);
    /// the deepest position found when the path leaves the tree.
    pub fn key_position_of(&self, path: &[String]) -> Pos {
        let Some((last, parent)) = path.split_last() else { return self.pos };
        let mut node = self;
        for segment in parent {
            match node.get(segment) {
                Some(child) => node = child,
                None => return node.pos,
            }
        }
        node.as_map()
            .and_then(|entries| entries.iter().find(|(k, _)| &k.name == last))
            .map_or(node.pos, |(k, _)| k.pos)
    }

    /// The position of the value (or, for the last segment of a map path, of its key) at `path`
    /// below this node; the deepest position found when the path leaves the tree.
    pub fn position_of(&self, path: &[String]) -> Pos {
        let Some((first, rest)) = path.split_first() else { return self.pos };
        let child = match &self.value {
            Yaml::Map(entries) => entries.iter().find(|(k, _)| &k.name == first).map(|(k, v)| (k.pos, v)),
            Yaml::Seq(items) => first.parse::<usize>().ok().and_then(|i| items.get(i)).map(|v| (v.pos, v)),
            _ => None,
        };
        match child {
            Some((key_pos, value)) if rest.is_empty() => {
                if matches!(value.value, Yaml::Map(_) | Yaml::Seq(_)) { key_pos } else { value.pos }
            }
            Some((_, value)) => value.position_of(rest),
            None => self.pos,
        }
    }
}

fn pos_of(loc: &serde_saphyr::Location) -> Pos {
    Pos::new(loc.line(), loc.column())
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = Spanned::<Yaml>::deserialize(deserializer)?;
        Ok(Node { pos: pos_of(&spanned.referenced), value: spanned.value })
    }
}

impl<'de> Deserialize<'de> for Yaml {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlVisitor)
    }
}

struct YamlVisitor;

impl<'de> Visitor<'de> for YamlVisitor {
    type Value = Yaml;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_unit<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_none<E>(self) -> Result<Yaml, E> {
        Ok(Yaml::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Yaml, D::Error> {
        Yaml::deserialize(d)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Yaml, E> {
        Ok(Yaml::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Yaml, E> {
        Ok(Yaml::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Yaml, E> {
        i64::try_from(v).map(Yaml::Int).map_err(|_| E::custom(format!("integer {v} is too large")))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Yaml, E> {
        Ok(Yaml::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Yaml, E> {
        Ok(Yaml::Str(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Yaml, E> {
        Ok(Yaml::Str(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Yaml, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Node>()? {
            items.push(item);
        }
        Ok(Yaml::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Yaml, A::Error> {
        let mut entries: Vec<(Key, Node)> = Vec::new();
        while let Some(key) = map.next_key::<Spanned<String>>()? {
            let value = map.next_value::<Node>()?;
            let key = Key { name: key.value, pos: pos_of(&key.referenced) };
            if entries.iter().any(|(k, _)| k.name == key.name) {
                return Err(de::Error::custom(format!(
                    "duplicate key \"{}\" at line {}",
                    key.name, key.pos.line
                )));
            }
            entries.push((key, value));
        }
        Ok(Yaml::Map(entries))
    }
}

/// Parses YAML text; a syntax error becomes a diagnostic with the parser's position.
pub fn parse(file: &Path, text: &str) -> Result<Node, Diagnostic> {
    serde_saphyr::from_str::<Node>(text).map_err(|e| {
        let message = e.to_string();
        let pos = e.location().map(|loc| pos_of(&loc)).unwrap_or_default();
        Diagnostic::new(file, pos, first_line(&message))
    })
}

fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_owned()
}

/// Replaces `${NAME}` and `${NAME:-default}` in every string with the environment's values
/// (`$${` stays a literal `${`). A string that was only a reference and now reads as a number
/// or boolean becomes one, so `level: ${LEVEL:-128}` is an integer.
pub fn interpolate(
    node: &mut Node,
    file: &Path,
    lookup: &dyn Fn(&str) -> Option<String>,
    errors: &mut Vec<Diagnostic>,
) {
    match &mut node.value {
        Yaml::Str(s) if s.contains("${") => match expand(s, lookup) {
            Ok(expanded) => {
                let whole_reference = s.starts_with("${") && s.ends_with('}') && s.matches("${").count() == 1;
                node.value = if whole_reference { scalar(&expanded) } else { Yaml::Str(expanded) };
            }
            Err(message) => errors.push(Diagnostic::new(file, node.pos, message)),
        },
        Yaml::Seq(items) => items.iter_mut().for_each(|n| interpolate(n, file, lookup, errors)),
        Yaml::Map(entries) => entries.iter_mut().for_each(|(_, n)| interpolate(n, file, lookup, errors)),
        _ => {}
    }
}

fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let after = &rest[start..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail.find('}').ok_or_else(|| format!("unclosed \"${{\" in {text:?}"))?;
            let reference = &tail[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("bad variable name {name:?} in {text:?}"));
            }
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(format!(
                        "environment variable {name} is not set (write ${{{name}:-default}} to give a default)"
                    ));
                }
            }
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// Reads a plain scalar the way YAML would (integers, floats, booleans, null, else text).
fn scalar(text: &str) -> Yaml {
    let trimmed = text.trim();
    if let Ok(i) = trimmed.parse::<i64>() {
        Yaml::Int(i)
    } else if let Ok(f) = trimmed.parse::<f64>()
        && trimmed.chars().any(|c| c.is_ascii_digit())
    {
        Yaml::Float(f)
    } else {
        match trimmed {
            "true" => Yaml::Bool(true),
            "false" => Yaml::Bool(false),
            "null" | "~" => Yaml::Null,
            _ => Yaml::Str(text.to_owned()),
        }
    }
}

/// Applies one `--set path.to.field=value` override. The value is read as YAML, so
/// `--set stages.draw.size={width: 512, height: 512}` and `--set x=[a, b]` work too.
pub fn apply_override(root: &mut Node, assignment: &str) -> Result<(), String> {
    let (path, value) = assignment
        .split_once('=')
        .ok_or_else(|| format!("--set {assignment:?}: expected PATH=VALUE, e.g. stages.lineart.level=140"))?;
    let segments: Vec<&str> = path.trim().split('.').collect();
    if segments.iter().any(|s| s.is_empty()) {
        return Err(format!("--set {assignment:?}: the path {path:?} has an empty segment"));
    }
    let value = match serde_saphyr::from_str::<Node>(value) {
        Ok(node) if value.trim_start().starts_with(['{', '[']) => strip_positions(node),
        _ => Node { value: scalar(value), pos: Pos::default() },
    };
    let mut current = root;
    for (depth, segment) in segments.iter().enumerate() {
        let found = current.type_name();
        let Yaml::Map(entries) = &mut current.value else {
            let here = segments[..depth].join(".");
            return Err(format!("--set {assignment:?}: {here} is {found}, not a map"));
        };
        let index = match entries.iter().position(|(k, _)| k.name == *segment) {
            Some(i) => i,
            None => {
                let empty = Node { value: Yaml::Map(Vec::new()), pos: Pos::default() };
                entries.push((Key { name: (*segment).to_owned(), pos: Pos::default() }, empty));
                entries.len() - 1
            }
        };
        current = &mut entries[index].1;
    }
    *current = value;
    Ok(())
}

/// Marks an override's nodes as coming from the command line.
fn strip_positions(mut node: Node) -> Node {
    node.pos = Pos::default();
    node.value = match node.value {
        Yaml::Seq(items) => Yaml::Seq(items.into_iter().map(strip_positions).collect()),
        Yaml::Map(entries) => Yaml::Map(
            entries
                .into_iter()
                .map(|(k, v)| (Key { name: k.name, pos: Pos::default() }, strip_positions(v)))
                .collect(),
        ),
        other => other,
    };
    node
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        match name {
            "LEVEL" => Some("140".into()),
            "DIR" => Some("out".into()),
            _ => None,
        }
    }

    fn load(text: &str) -> Node {
        parse(Path::new("p.yaml"), text).unwrap()
    }

    #[test]
    fn nodes_keep_line_and_column() {
        let root = load("a:\n  b: 5\n  c: [x, y]\n");
        let b = root.get("a").unwrap().get("b").unwrap();
        assert_eq!((b.value.clone(), b.pos), (Yaml::Int(5), Pos::new(2, 6)));
        assert_eq!(root.position_of(&["a".into(), "c".into()]), Pos::new(3, 3));
    }

    #[test]
    fn interpolation_fills_types_and_defaults() {
        let mut root = load("level: ${LEVEL}\ndir: ${DIR}/x\nq: ${MISSING:-85}\nlit: $${HOME}\n");
        let mut errors = Vec::new();
        interpolate(&mut root, Path::new("p.yaml"), &env, &mut errors);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(root.get("level").unwrap().value, Yaml::Int(140));
        assert_eq!(root.get("dir").unwrap().value, Yaml::Str("out/x".into()));
        assert_eq!(root.get("q").unwrap().value, Yaml::Int(85));
        assert_eq!(root.get("lit").unwrap().value, Yaml::Str("${HOME}".into()));
    }

    #[test]
    fn a_missing_variable_is_an_error_at_its_position() {
        let mut root = load("a: 1\nkey: ${FAL_KEY}\n");
        let mut errors = Vec::new();
        interpolate(&mut root, Path::new("p.yaml"), &env, &mut errors);
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].pos, Pos::new(2, 6));
        assert!(errors[0].message.contains("FAL_KEY is not set"), "{}", errors[0].message);
    }

    #[test]
    fn overrides_replace_and_create_values() {
        let mut root = load("stages:\n  lineart: { kind: threshold, level: 128 }\n");
        apply_override(&mut root, "stages.lineart.level=140").unwrap();
        apply_override(&mut root, "stages.draw.size={width: 512, height: 256}").unwrap();
        let lineart = root.get("stages").unwrap().get("lineart").unwrap();
        assert_eq!(lineart.get("level").unwrap().value, Yaml::Int(140));
        let size = root.get("stages").unwrap().get("draw").unwrap().get("size").unwrap();
        assert_eq!(size.get("height").unwrap().value, Yaml::Int(256));
        assert!(apply_override(&mut root, "stages.lineart.level.x=1").unwrap_err().contains("not a map"));
        assert!(apply_override(&mut root, "no-equals-sign").is_err());
    }

    #[test]
    fn syntax_errors_have_a_position() {
        let err = parse(Path::new("p.yaml"), "a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.pos.line >= 1, "{err}");
    }

    #[test]
    fn duplicate_keys_are_refused() {
        assert!(parse(Path::new("p.yaml"), "a: 1\na: 2\n").is_err());
    }
}
