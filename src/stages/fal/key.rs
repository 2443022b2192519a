//! The fal API key and where it comes from. The key is wrapped so that it cannot reach a log,
//! an error or a metadata file by accident: its `Debug` prints `***` and it has no `Display`.

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;

use reqwest::header::HeaderValue;

/// Environment variables that may hold the key, in order of preference (`FAL_API_KEY` is the
/// name the original script used).
const KEY_VARIABLES: [&str; 2] = ["FAL_KEY", "FAL_API_KEY"];

/// The fal.ai API key. Only `ApiKey::authorization` reveals it, as a sensitive header value.
#[derive(Clone)]
pub struct ApiKey(String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl ApiKey {
    /// The `Authorization: Key ...` header value, marked sensitive so HTTP debug logs hide it.
    pub(super) fn authorization(&self) -> Result<HeaderValue, String> {
        let mut value = HeaderValue::from_str(&format!("Key {}", self.0))
            .map_err(|_| "the fal API key holds characters an HTTP header cannot carry".to_owned())?;
        value.set_sensitive(true);
        Ok(value)
    }

    /// `text` with every occurrence of the key replaced by `***`, for messages built from
    /// remote answers (a server could echo the header back).
    pub(super) fn redact(&self, text: &str) -> String {
        text.replace(&self.0, "***")
    }
}

/// Where the fal stage reads its settings (`FAL_KEY`, `FAL_API_KEY`, `FAL_QUEUE_BASE_URL`): the
/// process environment plus a `.env` file in the working directory, or a fixed set of variables
/// for tests and embedding (which never touches the process environment or the disk).
#[derive(Clone)]
pub struct Environment {
    fixed: Option<BTreeMap<String, String>>,
    dotenv: Option<PathBuf>,
}

impl fmt::Debug for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets: show only where they come from.
        let names = self.fixed.as_ref().map(|vars| vars.keys().collect::<Vec<_>>());
        write!(f, "Environment(fixed: {names:?}, dotenv: {:?})", self.dotenv)
    }
}

impl Environment {
    /// The process environment, then `.env` in the working directory for the key.
    pub fn process() -> Self {
        Environment { fixed: None, dotenv: Some(PathBuf::from(".env")) }
    }

    /// Exactly these variables, nothing from the process or the disk.
    pub fn fixed<'a>(vars: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let vars = vars.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect();
        Environment { fixed: Some(vars), dotenv: None }
    }

    /// A variable's value; empty values count as unset.
    pub(super) fn var(&self, name: &str) -> Option<String> {
        let value = match &self.fixed {
            Some(vars) => vars.get(name).cloned(),
            None => std::env::var(name).ok(),
        };
        value.filter(|v| !v.trim().is_empty())
    }

    /// The API key and the name of where it was found (for `inkflow check`), or `None`:
    /// `FAL_KEY` (or `FAL_API_KEY`), else `FAL_KEY_ID` and `FAL_KEY_SECRET` joined as
    /// `id:secret` the way fal's own clients do; the environment first, then `.env`.
    pub fn api_key(&self) -> Option<(ApiKey, String)> {
        let from_env = key_from(|name| self.var(name))
            .map(|(key, names)| (key, format!("environment variable {names}")));
        from_env.or_else(|| {
            // A missing or unreadable .env simply means no key from there.
            let dotenv = self.dotenv.as_ref()?;
            let vars = parse_dotenv(&std::fs::read_to_string(dotenv).ok()?);
            key_from(|name| vars.get(name).cloned())
                .map(|(key, names)| (key, format!("{names} in {}", dotenv.display())))
        })
    }
}

/// The key from the variables `var` reads, with the names it came from.
fn key_from(var: impl Fn(&str) -> Option<String>) -> Option<(ApiKey, String)> {
    if let Some((name, value)) = KEY_VARIABLES.iter().find_map(|name| var(name).map(|v| (*name, v))) {
        return Some((ApiKey(value.trim().to_owned()), name.to_owned()));
    }
    let (id, secret) = (var("FAL_KEY_ID")?, var("FAL_KEY_SECRET")?);
    Some((ApiKey(format!("{}:{}", id.trim(), secret.trim())), "FAL_KEY_ID and FAL_KEY_SECRET".to_owned()))
}

/// Reads `KEY=VALUE` lines the way shells and python-dotenv do for the simple cases: blank
/// lines and `#` comments are skipped, an `export ` prefix is allowed and one pair of matching
/// quotes around the value is removed. Hand-written instead of adding `dotenvy` because only
/// two variables are read and no interpolation is wanted.
fn parse_dotenv(text: &str) -> BTreeMap<String, String> {
    let mut vars = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else { continue };
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or_else(|| value.split(" #").next().unwrap_or(value).trim());
        if !unquoted.is_empty() {
            vars.insert(name.trim().to_owned(), unquoted.to_owned());
        }
    }
    vars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dotenv_lines_are_read_like_a_shell() {
        let vars = parse_dotenv(
            "# fal\n\nexport FAL_KEY=\"abc:def\"\nFAL_API_KEY='x y'\nOTHER = plain # note\nBROKEN\nEMPTY=\n",
        );
        assert_eq!(vars.get("FAL_KEY").map(String::as_str), Some("abc:def"));
        assert_eq!(vars.get("FAL_API_KEY").map(String::as_str), Some("x y"));
        assert_eq!(vars.get("OTHER").map(String::as_str), Some("plain"));
        assert!(!vars.contains_key("BROKEN") && !vars.contains_key("EMPTY"));
    }

    #[test]
    fn dotenv_file_supplies_the_key_when_the_environment_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let dotenv = dir.path().join(".env");
        std::fs::write(&dotenv, "FAL_API_KEY=from-file\n").unwrap();
        let env = Environment { fixed: Some(BTreeMap::new()), dotenv: Some(dotenv) };
        let (key, source) = env.api_key().unwrap();
        assert_eq!(key.redact("from-file"), "***");
        assert!(source.starts_with("FAL_API_KEY in") && source.ends_with(".env"), "{source}");
        let overridden = Environment { fixed: Some([("FAL_KEY".into(), "env".into())].into()), ..env };
        assert_eq!(overridden.api_key().unwrap().0.redact("env"), "***");
    }

    #[test]
    fn an_id_and_a_secret_make_one_key_as_in_fals_clients() {
        let env = Environment::fixed([("FAL_KEY_ID", "abc"), ("FAL_KEY_SECRET", "s3cret")]);
        let (key, source) = env.api_key().unwrap();
        assert_eq!(key.redact("Key abc:s3cret"), "Key ***");
        assert_eq!(source, "environment variable FAL_KEY_ID and FAL_KEY_SECRET");
        assert!(Environment::fixed([("FAL_KEY_ID", "abc")]).api_key().is_none(), "half a key is no key");
        let both = Environment::fixed([("FAL_KEY", "whole"), ("FAL_KEY_ID", "abc"), ("FAL_KEY_SECRET", "s")]);
        assert_eq!(both.api_key().unwrap().0.redact("whole"), "***");
    }

    #[test]
    fn fixed_environment_prefers_fal_key_and_hides_values() {
        let env = Environment::fixed([("FAL_API_KEY", "second"), ("FAL_KEY", "first")]);
        let (key, source) = env.api_key().unwrap();
        assert_eq!(key.redact("first second"), "*** second");
        assert_eq!(source, "environment variable FAL_KEY");
        assert_eq!(format!("{key:?}"), "***");
        assert!(!format!("{env:?}").contains("first"));
        assert!(Environment::fixed([("FAL_KEY", "  ")]).api_key().is_none());
    }
}
