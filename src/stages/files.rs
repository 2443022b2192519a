//! The `files` source: existing PNG, JPEG and WebP images become items, so users can
//! post-process their own line art and benchmarks can feed fixed inputs. A file is read only
//! as far as it needs to be: one too large is refused from its size, one that does not start
//! like an image from its first bytes.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use anyhow::{Context, bail};
use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value;

use crate::engine::declared_kind::TypedKind;
use crate::engine::item::{Item, Prompt, REVISION_FACT};
use crate::engine::media::{Media, Payload};
use crate::engine::options::parse_declared;
use crate::engine::pipeline_path::PipelinePath;
use crate::engine::stage::{
    BuildContext, Component, Listing, OptionsError, OutputMedia, Role, Source, StageError,
};
use crate::imaging::decode;

/// The fact naming the file an item came from.
pub const SOURCE_PATH: &str = "source_path";

/// Kind `files`: one item per image file of a folder or glob pattern.
pub struct Files;

/// The `files` options.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Options {
    /// A folder (every .png/.jpg/.jpeg/.webp in it, sorted) or a glob pattern such as art/**/*.png.
    #[schemars(extend("x-inkflow-type" = "path or glob"))]
    path: PipelinePath,
}

/// The checked `files` options: the folder or glob pattern, as text for the glob crate.
pub struct Checked {
    path: String,
}

fn parse(options: &Value) -> Result<Checked, OptionsError> {
    let options: Options = parse_declared(options)?;
    let path = options.path.to_string_lossy().into_owned();
    if path.trim().is_empty() {
        return Err(OptionsError::at("path", "the path is empty"));
    }
    glob::Pattern::new(&path)
        .map_err(|e| OptionsError::at("path", format!("{path:?} is not a valid glob pattern: {e}")))?;
    Ok(Checked { path })
}

impl TypedKind for Files {
    const NAME: &'static str = "files";
    const ROLE: Role = Role::Source;
    const SUMMARY: &'static str = "Reads existing PNG/JPEG/WebP images from a folder or glob pattern";
    const ACCEPTS: &'static [Media] = &[];
    const OUTPUT: OutputMedia = OutputMedia::Fixed(Media::Rgb);
    type Options = Options;
    type Parsed = Checked;

    fn parse(&self, options: &Value) -> Result<Checked, OptionsError> {
        parse(options)
    }

    fn build_from(&self, options: Checked, _ctx: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Source(Arc::new(FileSource { path: options.path, listed: Mutex::new(Arc::new([])) })))
    }
}

/// A built `files` source.
struct FileSource {
    path: String,
    /// The files found by `list`, in item order (item number N is entry N-1). Kept here rather
    /// than as a fact on every item: a fact map costs ~0.6 KB per listed item.
    listed: Mutex<Arc<[Listed]>>,
}

/// One file found: where it is, and its path relative to the folder (or to the glob's fixed
/// leading folders), which is its item's key.
struct Listed {
    path: PathBuf,
    relative: String,
    /// Size and modification time when listed: an edited file runs again.
    revision: String,
}

/// The files a `files` source found; item N-1 is made from entry N when the batch reaches it.
/// Each item is keyed by its file's relative path, so adding or removing a file changes
/// nothing for the others (a key by position would hand one file's journal entry to another).
struct FileListing(Arc<[Listed]>);

impl Listing for FileListing {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn item(&self, index: usize) -> Item {
        let relative = &self.0[index].relative;
        let description = relative.rsplit_once('.').map_or(relative.as_str(), |(stem, _)| stem).to_owned();
        let prompt = Prompt { number: index as u32 + 1, description, ..Prompt::default() };
        let mut item = Item::with_key(relative.clone(), index as u64, prompt);
        item.record(REVISION_FACT, self.0[index].revision.as_str());
        item
    }
}

fn is_image(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| ["png", "jpg", "jpeg", "webp"].contains(&e.to_ascii_lowercase().as_str()))
}

impl FileSource {
    /// Every image of the folder, or every file the glob matches, sorted, each with its path
    /// relative to the folder or to the glob's leading folders without wildcards.
    fn list_files(&self) -> anyhow::Result<Vec<Listed>> {
        let folder = Path::new(&self.path);
        let base = if folder.is_dir() { folder.to_owned() } else { glob_base(&self.path) };
        let mut listed: Vec<Listed> = self
            .paths()?
            .into_iter()
            .map(|path| {
                let relative = path.strip_prefix(&base).unwrap_or(&path);
                let relative = relative.to_string_lossy().replace('\\', "/");
                Listed { revision: revision(&path), path, relative }
            })
            .collect();
        listed.sort_by(|a, b| a.relative.cmp(&b.relative));
        Ok(listed)
    }

    /// Every image of the folder, or every file the glob matches.
    fn paths(&self) -> anyhow::Result<Vec<PathBuf>> {
        let folder = Path::new(&self.path);
        let paths = if folder.is_dir() {
            let entries =
                std::fs::read_dir(folder).with_context(|| format!("cannot list folder {}", self.path))?;
            let mut paths = Vec::new();
            for entry in entries {
                let path = entry.with_context(|| format!("cannot list folder {}", self.path))?.path();
                // Not only regular files: a dangling link, a link loop or a FIFO named like an
                // image becomes an item that fails with the reason, instead of vanishing.
                if is_image(&path) && !path.is_dir() {
                    paths.push(path);
                }
            }
            paths
        } else {
            let matches = glob::glob(&self.path)
                .with_context(|| format!("{:?} is not a valid glob pattern", self.path))?;
            let mut paths = Vec::new();
            for found in matches {
                let path = found.with_context(|| format!("cannot read a match of {:?}", self.path))?;
                if !path.is_dir() {
                    paths.push(path);
                }
            }
            paths
        };
        if paths.is_empty() {
            bail!("no PNG, JPEG or WebP images match {:?}", self.path);
        }
        Ok(paths)
    }
}

/// `size-mtime` of a file (in nanoseconds since the epoch), or empty when unknown.
fn revision(path: &Path) -> String {
    let Ok(meta) = std::fs::metadata(path) else { return String::new() };
    let modified = meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok());
    format!("{}-{}", meta.len(), modified.map_or(0, |d| d.as_nanos()))
}

/// The leading folders of a glob pattern before its first wildcard: `art` for `art/**/*.png`.
fn glob_base(pattern: &str) -> PathBuf {
    let mut base = PathBuf::new();
    let segments: Vec<&str> = pattern.split(['/', '\\']).collect();
    for (i, segment) in segments.iter().enumerate() {
        if i + 1 == segments.len() || segment.contains(['*', '?', '[']) {
            break;
        }
        base.push(if segment.is_empty() && i == 0 { "/" } else { segment });
    }
    base
}

impl Source for FileSource {
    fn list(&self) -> anyhow::Result<Box<dyn Listing>> {
        let listed: Arc<[Listed]> = self.list_files()?.into();
        *self.listed.lock().unwrap_or_else(|e| e.into_inner()) = listed.clone();
        Ok(Box::new(FileListing(listed)))
    }

    fn load(&self, item: &mut Item) -> Result<Payload, StageError> {
        let path = (item.prompt.number as usize)
            .checked_sub(1)
            .and_then(|i| {
                let listed = self.listed.lock().unwrap_or_else(|e| e.into_inner());
                listed.get(i).filter(|entry| entry.relative == item.key).map(|entry| entry.path.clone())
            })
            .ok_or_else(|| StageError::failed(format!("item {} is not one this source listed", item.key)))?;
        item.record(SOURCE_PATH, path.to_string_lossy().into_owned());
        let shown = path.display();
        // Checked before opening: opening a FIFO would wait for a writer forever.
        let meta =
            std::fs::metadata(&path).map_err(|e| StageError::failed(format!("cannot open {shown}: {e}")))?;
        if !meta.is_file() {
            return Err(StageError::failed(format!(
                "{shown} is not a regular file (a FIFO, device or socket)"
            )));
        }
        let bytes = read_image_file(&path, meta.len())
            .map_err(|e| StageError::failed(format!("cannot read {shown}: {e}")))?;
        let raster = decode::decode_rgb(&bytes)
            .map_err(|e| StageError::failed(format!("cannot decode {shown}: {e}")))?;
        Ok(Payload::Image(Arc::new(raster)))
    }
}

/// The bytes of an image file of `size` bytes (from its metadata), refusing one over
/// [`decode::MAX_FILE_BYTES`] before reading it, and one whose first bytes are not an image's
/// before reading the rest; the read stops at the limit even if the file grows meanwhile.
fn read_image_file(path: &Path, size: u64) -> Result<Vec<u8>, String> {
    let limit = decode::MAX_FILE_BYTES;
    let too_large = |size: &str| {
        format!(
            "the file is {size} bytes, over the limit of {limit} bytes for an image (its pixel limit, stored uncompressed)"
        )
    };
    if size > limit {
        return Err(too_large(&size.to_string()));
    }
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut reader = file.take(limit + 1);
    let mut head = [0u8; 32];
    let got = read_up_to(&mut reader, &mut head).map_err(|e| e.to_string())?;
    if !decode::looks_like_an_image(&head[..got]) {
        return Err(decode::DecodeError::NotAnImage("the file does not start like one".into()).to_string());
    }
    let mut bytes = Vec::with_capacity(usize::try_from(size).unwrap_or(0));
    bytes.extend_from_slice(&head[..got]);
    reader.read_to_end(&mut bytes).map_err(|e| e.to_string())?;
    if bytes.len() as u64 > limit {
        return Err(too_large(&format!("more than {limit}")));
    }
    Ok(bytes)
}

/// Fills `buf` as far as the reader goes.
fn read_up_to(reader: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::media::{Pixels, Raster};
    use crate::engine::stage::Kind;
    use image::{ImageFormat, Rgb, RgbImage};
    use serde_json::json;

    fn source(path: &str) -> Arc<dyn Source> {
        let ctx = BuildContext {
            id: "art".into(),
            inputs: vec![],
            output_dir: "out".into(),
            pipeline_file: "p.yaml".into(),
            dry_run: false,
            room_below: 4,
        };
        match Files.build(&json!({ "path": path }), &ctx) {
            Ok(Component::Source(source)) => source,
            Ok(_) => panic!("files must build a source"),
            Err(e) => panic!("valid options were refused: {e}"),
        }
    }

    /// A folder with a PNG, a JPEG, a corrupt PNG and a text file.
    fn folder() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut png = RgbImage::new(4, 3);
        png.put_pixel(1, 2, Rgb([10, 20, 30]));
        png.save_with_format(dir.path().join("b_page.png"), ImageFormat::Png).expect("write png");
        RgbImage::from_pixel(8, 6, Rgb([250, 250, 250]))
            .save_with_format(dir.path().join("a_cover.JPG"), ImageFormat::Jpeg)
            .expect("write jpeg");
        std::fs::write(dir.path().join("c_broken.png"), b"\x89PNG\r\n\x1a\nnot really")
            .expect("write corrupt");
        std::fs::write(dir.path().join("notes.txt"), b"not an image").expect("write text");
        dir
    }

    fn rgb(payload: Payload) -> Arc<Raster> {
        match payload {
            Payload::Image(raster) => raster,
            other => panic!("expected an image, got {other:?}"),
        }
    }

    #[test]
    fn a_folder_gives_its_images_sorted_and_decodes_them() {
        let dir = folder();
        let source = source(&dir.path().to_string_lossy());
        let mut items: Vec<Item> = source.list().expect("lists").iter().collect();
        let names: Vec<&str> = items.iter().map(|i| i.prompt.description.as_str()).collect();
        assert_eq!(names, ["a_cover", "b_page", "c_broken"]);
        assert_eq!(items.iter().map(|i| i.prompt.number).collect::<Vec<_>>(), [1, 2, 3]);
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(keys, ["a_cover.JPG", "b_page.png", "c_broken.png"], "keyed by relative path");

        let jpeg = rgb(source.load(&mut items[0]).expect("decodes the jpeg"));
        assert_eq!((jpeg.width, jpeg.height), (8, 6));
        let png = rgb(source.load(&mut items[1]).expect("decodes the png"));
        assert!(items[1].facts[SOURCE_PATH].as_str().is_some_and(|p| p.ends_with("b_page.png")));
        assert_eq!((png.width, png.height), (4, 3));
        let Pixels::Rgb(pixels) = &png.pixels else { panic!("RGB expected") };
        let at = (2 * 4 + 1) * 3;
        assert_eq!(&pixels[at..at + 3], &[10, 20, 30]);

        let err = source.load(&mut items[2]).expect_err("the corrupt file fails").to_string();
        assert!(err.contains("c_broken.png"), "{err}");
    }

    #[test]
    fn a_glob_selects_files() {
        let dir = folder();
        let pattern = dir.path().join("*.png");
        let items: Vec<Item> = source(&pattern.to_string_lossy()).list().expect("lists").iter().collect();
        let names: Vec<&str> = items.iter().map(|i| i.prompt.description.as_str()).collect();
        assert_eq!(names, ["b_page", "c_broken"]);
    }

    #[cfg(unix)]
    #[test]
    fn links_that_lead_nowhere_and_fifos_fail_each_with_its_reason() {
        let dir = folder();
        std::os::unix::fs::symlink("missing.png", dir.path().join("d_dangling.png")).unwrap();
        std::os::unix::fs::symlink("e_loop.png", dir.path().join("e_loop.png")).unwrap();
        assert!(
            std::process::Command::new("mkfifo")
                .arg(dir.path().join("f_fifo.png"))
                .status()
                .unwrap()
                .success()
        );
        let source = source(&dir.path().to_string_lossy());
        let mut items: Vec<Item> = source.list().expect("lists").iter().collect();
        let keys: Vec<&str> = items.iter().map(|i| i.key.as_str()).collect();
        assert_eq!(
            keys,
            ["a_cover.JPG", "b_page.png", "c_broken.png", "d_dangling.png", "e_loop.png", "f_fifo.png"]
        );
        for (item, why) in items[3..].iter_mut().zip(["No such file", "symbolic links", "not a regular file"])
        {
            let err = source.load(item).expect_err("fails alone").to_string();
            assert!(err.contains(&item.key) && err.contains(why), "{err}");
        }
    }

    #[test]
    fn a_globs_leading_folders_are_the_base_of_its_keys() {
        assert_eq!(glob_base("art/**/*.png"), Path::new("art"));
        assert_eq!(glob_base("/data/art/p*/x.png"), Path::new("/data/art"));
        assert_eq!(glob_base("*.png"), Path::new(""));
    }

    #[test]
    fn no_match_and_bad_patterns_are_errors() {
        let dir = folder();
        let pattern = dir.path().join("*.webp").to_string_lossy().into_owned();
        let err = source(&pattern).list().map(|_| ()).expect_err("nothing matches").to_string();
        assert!(err.contains(&pattern), "{err}");
        let empty = tempfile::tempdir().expect("temp dir");
        assert!(source(&empty.path().to_string_lossy()).list().is_err());
        let err = Files.check(&json!({ "path": "art/[" })).expect_err("unclosed bracket");
        assert_eq!(err.path, ["path"]);
        assert!(Files.check(&json!({})).is_err());
    }
}
