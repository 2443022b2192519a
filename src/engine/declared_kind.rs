//! A kind declared in one place: constants for its name, role, summary and media, and one
//! options type whose doc comments, defaults and ranges are its documentation (as the SDK's
//! `PluginStage` declares a plugin, and Vector's `configurable_component` a component). The
//! [`KindInfo`] the engine and `inkflow stages` read is built from the declaration once per
//! kind, so nothing about a kind is written twice.

use std::any::TypeId;
use std::collections::HashMap;
use std::sync::{LazyLock, Mutex, PoisonError};

use schemars::JsonSchema;
use serde::de::DeserializeOwned;
use serde_json::Value;

use super::media::Media;
use super::options::documented;
use super::output_path::Claim;
use super::stage::{BuildContext, Component, Kind, KindInfo, OptionsError, OutputMedia, Role};

/// The shape of nearly every kind: a fixed declaration, and options that parse into one typed
/// value which `check` validates and `build` consumes, so `validate` and `run` can never
/// disagree about what is valid. Every `TypedKind` is a [`Kind`].
pub trait TypedKind: Send + Sync + 'static {
    /// The `kind:` name.
    const NAME: &'static str;
    /// Whether it is a source, stage or sink.
    const ROLE: Role;
    /// One line for `inkflow stages`.
    const SUMMARY: &'static str;
    /// Media it takes (none for a source).
    const ACCEPTS: &'static [Media];
    /// Media it gives.
    const OUTPUT: OutputMedia;
    /// The options as a pipeline file writes them: the declaration `inkflow stages KIND` prints.
    type Options: DeserializeOwned + JsonSchema;
    /// The options once parsed and checked (often [`Self::Options`] itself).
    type Parsed;
    /// Parses and checks the options without side effects (no files, no network).
    fn parse(&self, options: &Value) -> Result<Self::Parsed, OptionsError>;
    /// Builds a runnable component from checked options; may read files and the environment.
    fn build_from(&self, options: Self::Parsed, ctx: &BuildContext) -> anyhow::Result<Component>;
    /// [`Kind::writes`] from checked options.
    fn writes_from(&self, _options: &Self::Parsed, _inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        Ok(Vec::new())
    }
}

/// The description of kind `K`, built from its declaration the first time it is asked for.
fn declared_info<K: TypedKind>() -> &'static KindInfo {
    static BUILT: LazyLock<Mutex<HashMap<TypeId, &'static KindInfo>>> = LazyLock::new(Mutex::default);
    let mut built = BUILT.lock().unwrap_or_else(PoisonError::into_inner);
    built.entry(TypeId::of::<K>()).or_insert_with(|| {
        // Kinds are few and live as long as the program: each description is made once.
        Box::leak(Box::new(KindInfo {
            name: K::NAME.into(),
            role: K::ROLE,
            summary: K::SUMMARY.into(),
            options: documented::<K::Options>(),
            accepts: K::ACCEPTS.to_vec(),
            output: K::OUTPUT,
        }))
    })
}

impl<K: TypedKind> Kind for K {
    fn info(&self) -> &KindInfo {
        declared_info::<K>()
    }

    fn check(&self, options: &Value) -> Result<(), OptionsError> {
        self.parse(options).map(drop)
    }

    fn build(&self, options: &Value, ctx: &BuildContext) -> anyhow::Result<Component> {
        let options = self.parse(options).map_err(|e| anyhow::anyhow!(e.qualified()))?;
        self.build_from(options, ctx)
    }

    fn writes(&self, options: &Value, inputs: &[String]) -> Result<Vec<Claim>, OptionsError> {
        // Options that do not parse were reported by `check`.
        self.parse(options).map_or(Ok(Vec::new()), |options| self.writes_from(&options, inputs))
    }
}
