//! The built-in stage kinds, one file each, and the helpers they share.
//!
//! # Adding a kind
//!
//! A kind is one file (a folder when it is big) and one line in [`builtin`]:
//!
//! 1. An options struct deriving `Deserialize` (with `deny_unknown_fields`) and `JsonSchema`.
//!    Its doc comments, serde defaults and `#[schemars(range(..))]` are the documentation
//!    `inkflow stages KIND` prints and the checks `validate` runs: write each once, there.
//! 2. A unit struct implementing [`TypedKind`]: the constants `NAME`, `ROLE`, `SUMMARY`,
//!    `ACCEPTS` and `OUTPUT`, `type Options` (the struct above), `type Parsed` (what `parse`
//!    returns: the options, or more once they are checked), `parse` (pure: no files, no
//!    network; usually `parse_declared(options)`) and `build_from` (may read files and the
//!    environment). Add `writes_from` when the kind writes files under the output folder.
//! 3. `registry.register(Arc::new(my_kind::MyKind));` below, and a row in the README's table of
//!    kinds (a test checks it is there).
//!
//! The engine builds each kind's [`KindInfo`](crate::engine::stage::KindInfo) from the
//! declaration once. A kind implements [`Kind`](crate::engine::stage::Kind) by hand only when
//! the declaration cannot say it: `fal` warns about options its model ignores, and `r2`/`s3`
//! are one implementation under two names with different default regions.
//!
//! [`TypedKind`]: crate::engine::declared_kind::TypedKind

use std::sync::Arc;

use crate::engine::stage::Registry;

pub mod disk;
pub mod fal;
pub mod files;
pub mod grayscale;
pub mod lineart_check;
pub mod lineart_cleanup;
pub mod naming;
pub mod pattern;
pub mod pdf;
pub mod plan;
pub mod plugin;
pub mod prompts;
pub mod r2;
pub mod safety;
pub mod seen_pages;
pub mod threshold;
pub mod thumbnail;
pub mod upscale;

/// The registry of every built-in kind.
pub fn builtin() -> Registry {
    let mut registry = Registry::new();
    registry.register(Arc::new(prompts::Prompts));
    registry.register(Arc::new(files::Files));
    registry.register(Arc::new(pattern::Pattern));
    registry.register(Arc::new(plan::Plan::new()));
    registry.register(Arc::new(safety::Safety));
    registry.register(Arc::new(fal::Fal::new()));
    registry.register(Arc::new(grayscale::Grayscale));
    registry.register(Arc::new(threshold::Threshold));
    registry.register(Arc::new(lineart_check::LineartCheck));
    registry.register(Arc::new(lineart_cleanup::LineartCleanup));
    registry.register(Arc::new(upscale::Upscale));
    registry.register(Arc::new(thumbnail::Thumbnail));
    registry.register(Arc::new(plugin::Plugin));
    registry.register(Arc::new(disk::Disk));
    registry.register(Arc::new(pdf::PdfBook));
    registry.register(Arc::new(pdf::cover::Cover));
    registry.register(Arc::new(r2::R2::new()));
    registry.register(Arc::new(r2::R2::s3()));
    registry
}

#[cfg(test)]
mod tests {
    use crate::engine::options::with_default;

    /// The README's table of kinds: the lines between its heading and the next section.
    fn readme_table() -> String {
        let readme = include_str!("../../README.md");
        let start = readme.find("## Stage kinds").expect("the README has a table of kinds");
        let end = readme[start + 1..].find("\n## ").map_or(readme.len(), |e| start + 1 + e);
        readme[start..end].to_owned()
    }

    #[test]
    fn every_kind_is_in_the_readme_and_every_documented_default_parses() {
        let table = readme_table();
        for kind in super::builtin().all() {
            let info = kind.info();
            assert!(
                table.contains(&format!("`{}`", info.name)),
                "kind {:?} is missing from the README",
                info.name
            );
            for option in &info.options {
                assert!(!option.doc.is_empty(), "{}.{} has no doc comment", info.name, option.name);
                let Some(options) = with_default(option) else { continue };
                if let Err(e) = kind.check(&options) {
                    assert_ne!(
                        e.path.first(),
                        Some(&option.name),
                        "{}.{}: the documented default {:?} does not parse: {}",
                        info.name,
                        option.name,
                        option.default,
                        e.message
                    );
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use std::path::Path;
    use std::sync::Arc;

    use serde_json::Value;

    use crate::engine::stage::{BuildContext, Component, CpuStage, Kind, Sink};

    /// A build context for a component `id` reading `inputs`, writing under `output_dir`.
    pub fn context(id: &str, inputs: &[&str], output_dir: &Path) -> BuildContext {
        BuildContext {
            id: id.into(),
            inputs: inputs.iter().map(|s| (*s).to_owned()).collect(),
            output_dir: output_dir.to_owned(),
            pipeline_file: "test.yaml".into(),
            dry_run: false,
            room_below: 4,
        }
    }

    /// Checks and builds a CPU stage kind with `options`.
    pub fn build_cpu(kind: &dyn Kind, options: Value) -> Arc<dyn CpuStage> {
        kind.check(&options).unwrap();
        match kind.build(&options, &context("stage", &["input"], Path::new("."))).unwrap() {
            Component::Cpu(stage) => stage,
            _ => panic!("{} is not a CPU stage", kind.info().name),
        }
    }

    /// Checks and builds a sink kind with `options`.
    pub fn build_sink(kind: &dyn Kind, options: Value, ctx: &BuildContext) -> Arc<dyn Sink> {
        kind.check(&options).unwrap();
        match kind.build(&options, ctx).unwrap() {
            Component::Sink(sink) => sink,
            _ => panic!("{} is not a sink", kind.info().name),
        }
    }
}
