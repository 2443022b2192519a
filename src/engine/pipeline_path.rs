//! The one path type of the options layer: a file or folder a component reads (a prompt file, a
//! deny list, a font, a plugin library), as a pipeline file names it. A relative path written
//! in the pipeline file is read against the file's own folder, as Cargo reads `path =`
//! dependencies and Docker Compose reads `build:` and `env_file:`, so a pipeline runs the same
//! from any working directory; a path given on the command line (`--set`, `--prompts`,
//! `--output`) stays relative to the working directory, where the user typed it. The checker
//! rewrites every option of this type before a kind sees it, so kinds only ever get the
//! resolved path.

use std::borrow::Cow;
use std::ops::Deref;
use std::path::{Component, Path, PathBuf};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::options::TYPE_EXTENSION;

/// Schema extension that marks an option as a [`PipelinePath`], so the checker knows which
/// options to resolve from the kind's schema alone.
pub const PATH_EXTENSION: &str = "x-inkflow-path";

/// A path to read, already resolved against the pipeline file's folder (see the module doc).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(transparent)]
pub struct PipelinePath(PathBuf);

impl PipelinePath {
    /// The path.
    pub fn as_path(&self) -> &Path {
        &self.0
    }
}

impl Deref for PipelinePath {
    type Target = Path;

    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for PipelinePath {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl From<&str> for PipelinePath {
    fn from(path: &str) -> Self {
        PipelinePath(PathBuf::from(path))
    }
}

impl JsonSchema for PipelinePath {
    fn schema_name() -> Cow<'static, str> {
        "PipelinePath".into()
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        let mut schema = schemars::json_schema!({"type": "string"});
        schema.insert(TYPE_EXTENSION.into(), "path".into());
        schema.insert(PATH_EXTENSION.into(), true.into());
        schema
    }
}

/// `written` as read from a pipeline file in `folder`: joined to the folder when relative, with
/// `.` and `name/..` steps taken out so messages show the path a user would type
/// (`pipelines/../output/book` reads `output/book`). An absolute path is kept as it is.
pub fn resolve(folder: &Path, written: &str) -> PathBuf {
    let written = Path::new(written);
    if written.is_absolute() {
        return written.to_owned();
    }
    let mut resolved = PathBuf::new();
    for part in folder.join(written).components() {
        match part {
            Component::CurDir => {}
            Component::ParentDir
                if matches!(resolved.components().next_back(), Some(Component::Normal(_))) =>
            {
                resolved.pop();
            }
            other => resolved.push(other),
        }
    }
    if resolved.as_os_str().is_empty() { PathBuf::from(".") } else { resolved }
}

/// The folder a pipeline file's relative paths are read against: the file's own folder
/// (`.` for a file named without one).
pub fn folder_of(pipeline_file: &Path) -> &Path {
    match pipeline_file.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_are_read_against_the_pipeline_folder() {
        let folder = folder_of(Path::new("books/forest/pipeline.yaml"));
        assert_eq!(resolve(folder, "prompts.json"), Path::new("books/forest/prompts.json"));
        assert_eq!(resolve(folder, "./fonts/a.ttf"), Path::new("books/forest/fonts/a.ttf"));
        assert_eq!(resolve(folder, "../../output/forest"), Path::new("output/forest"));
        assert_eq!(resolve(folder, "/abs/list.txt"), Path::new("/abs/list.txt"));
        assert_eq!(resolve(folder_of(Path::new("p.yaml")), "x/y.json"), Path::new("x/y.json"));
        assert_eq!(resolve(folder_of(Path::new("p.yaml")), "../y.json"), Path::new("../y.json"));
        assert_eq!(resolve(Path::new("a"), ".."), Path::new("."));
    }
}
