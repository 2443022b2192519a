//! A duration option such as `60s` or `10m`. It is checked when the options are parsed, so an
//! options struct writes its default once, as the text a user would write, and code reads a
//! [`std::time::Duration`] that is known to be valid instead of restating the default.

use std::borrow::Cow;
use std::fmt;
use std::ops::Deref;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::options::TYPE_EXTENSION;

/// A duration longer than zero, written like `60s`, `2m` or `1h 30m`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(try_from = "String", into = "String")]
pub struct PositiveDuration(Duration);

impl PositiveDuration {
    /// `secs` seconds, for an option's default; zero does not compile in a constant context.
    pub const fn from_secs(secs: u64) -> Self {
        assert!(secs > 0, "a PositiveDuration is longer than zero");
        PositiveDuration(Duration::from_secs(secs))
    }

    /// The duration.
    pub fn get(self) -> Duration {
        self.0
    }
}

impl Deref for PositiveDuration {
    type Target = Duration;

    fn deref(&self) -> &Duration {
        &self.0
    }
}

impl TryFrom<String> for PositiveDuration {
    type Error = String;

    fn try_from(text: String) -> Result<Self, String> {
        match humantime::parse_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(PositiveDuration(d)),
            Ok(_) => Err("must be longer than zero".to_owned()),
            Err(e) => Err(format!("{text:?} is not a duration like 60s or 2m: {e}")),
        }
    }
}

impl TryFrom<&str> for PositiveDuration {
    type Error = String;

    fn try_from(text: &str) -> Result<Self, String> {
        PositiveDuration::try_from(text.to_owned())
    }
}

impl From<PositiveDuration> for String {
    fn from(duration: PositiveDuration) -> String {
        duration.to_string()
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl JsonSchema for PositiveDuration {
    fn schema_name() -> Cow<'static, str> {
        "PositiveDuration".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({ "type": "string", TYPE_EXTENSION: "duration" })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<Duration, String> {
        serde_json::from_value::<PositiveDuration>(serde_json::json!(text))
            .map(|d| d.get())
            .map_err(|e| e.to_string())
    }

    #[test]
    fn reads_what_a_user_writes_and_refuses_the_rest() {
        assert_eq!(parsed("60s"), Ok(Duration::from_secs(60)));
        assert_eq!(parsed("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parsed("0s").unwrap_err().contains("longer than zero"));
        assert!(parsed("soon").unwrap_err().contains("is not a duration like 60s"));
    }

    #[test]
    fn writes_back_what_it_read() {
        let d = PositiveDuration::try_from("10m").unwrap();
        assert_eq!(serde_json::to_value(d).unwrap(), serde_json::json!("10m"));
    }
}
