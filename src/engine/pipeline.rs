//! A pipeline file turned into a checked graph: every component's kind, options and wiring,
//! with all problems collected (not just the first) and each pinned to its line and column.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::diagnostic::{ConfigErrors, Diagnostic, Pos};
use super::media::Media;
use super::output_path::Claim;
use super::pipeline_path;
use super::stage::{Registry, Role};
use super::yaml::{self, Key, Node, Yaml};

/// Fields every component has besides its kind's own options.
const WIRING_FIELDS: &[&str] = &["kind", "inputs", "concurrency", "capacity"];
/// Top-level fields of a pipeline file (`bakeoff` is read by `inkflow bakeoff` alone).
const TOP_FIELDS: &[&str] =
    &["version", "name", "output", "defaults", "plugins", "sources", "stages", "sinks", "bakeoff"];
/// Channel capacity when neither the component nor `defaults` sets one: small, so memory stays flat.
pub const DEFAULT_CAPACITY: usize = 4;

/// Items a CPU stage works on at once when neither it nor `defaults` sets `concurrency`: one
/// per thread of the CPU pool (the machine's cores, or `--threads`), so a chain of CPU stages
/// keeps every core busy. Any other component works on one item at a time unless told: an I/O
/// stage's `concurrency` is requests to a paid service, a limit its account sets.
pub fn default_cpu_concurrency() -> usize {
    rayon::current_num_threads().max(1)
}

/// How a pipeline file is loaded: the edits applied before checking.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// `--set path=value` overrides, applied in order after interpolation.
    pub overrides: Vec<String>,
}

/// One component of a checked pipeline.
#[derive(Clone, Debug)]
pub struct ComponentSpec {
    /// Its id (a map key in the file).
    pub id: String,
    /// Source, stage or sink.
    pub role: Role,
    /// Its `kind`.
    pub kind: String,
    /// Indexes (into [`Pipeline::components`]) of the components it reads, in order.
    pub inputs: Vec<usize>,
    /// Indexes of the components that read it.
    pub consumers: Vec<usize>,
    /// Capacity of each of its input channels.
    pub capacity: usize,
    /// Items it may work on at once: as set, else 1 until [`ComponentSpec::settle_concurrency`].
    pub concurrency: usize,
    /// Whether the file (the component or `defaults`) set `concurrency`.
    pub concurrency_set: bool,
    /// Its kind's own options, as JSON.
    pub options: Value,
    /// The media it gives (None for sinks).
    pub output: Option<Media>,
    /// Where it is defined.
    pub pos: Pos,
}

/// A pipeline that passed every check, in a topological order (inputs before consumers).
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file it came from.
    pub file: PathBuf,
    /// Its `name`, or the file stem.
    pub name: String,
    /// The output directory from the file (`output:`), if any.
    pub output: Option<PathBuf>,
    /// Plugin libraries or folders to load (`plugins:`).
    pub plugins: Vec<PathBuf>,
    /// Components in topological order.
    pub components: Vec<ComponentSpec>,
}

impl ComponentSpec {
    /// Gives a component whose `concurrency` the file left unset its default, once building it
    /// told whether it does CPU work ([`default_cpu_concurrency`]).
    pub fn settle_concurrency(&mut self, cpu: bool) {
        if cpu && !self.concurrency_set {
            self.concurrency = default_cpu_concurrency();
        }
    }

    /// The most items it can work on at once, known before it is built: what a component
    /// built ahead of it makes room for.
    pub fn most_at_once(&self) -> usize {
        if self.concurrency_set { self.concurrency } else { self.concurrency.max(default_cpu_concurrency()) }
    }
}

impl Pipeline {
    /// The component with this id.
    pub fn component(&self, id: &str) -> Option<&ComponentSpec> {
        self.components.iter().find(|c| c.id == id)
    }
}

/// Reads, interpolates, overrides and parses a pipeline file into its YAML tree.
pub fn read_tree(file: &Path, options: &LoadOptions) -> Result<Node, ConfigErrors> {
    let text = std::fs::read_to_string(file).map_err(|e| {
        ConfigErrors(vec![Diagnostic::new(
            file,
            Pos::default(),
            format!("cannot read the pipeline file: {e}"),
        )])
    })?;
    let mut root = yaml::parse(file, &text).map_err(|d| ConfigErrors(vec![d]))?;
    let mut errors = Vec::new();
    yaml::interpolate(&mut root, file, &|name| std::env::var(name).ok(), &mut errors);
    for assignment in &options.overrides {
        if let Err(message) = yaml::apply_override(&mut root, assignment) {
            errors.push(Diagnostic::new(file, Pos::default(), message));
        }
    }
    if errors.is_empty() { Ok(root) } else { Err(ConfigErrors(errors)) }
}

/// The `plugins:` entries of a pipeline tree, so plugin kinds can be registered before checking;
/// each resolved like every path of the pipeline file `file` (see [`pipeline_path`]).
pub fn plugin_paths(file: &Path, root: &Node) -> Vec<PathBuf> {
    let resolved = |node: &Node| match &node.value {
        Yaml::Str(written) => Some(read_path(file, node, written)),
        _ => None,
    };
    match root.get("plugins") {
        Some(node @ Node { value: Yaml::Str(_), .. }) => resolved(node).into_iter().collect(),
        Some(Node { value: Yaml::Seq(items), .. }) => items.iter().filter_map(resolved).collect(),
        _ => Vec::new(),
    }
}

/// A path `written` at `node` of the pipeline file `file`: against the file's folder when the
/// file says it, against the working directory when the command line does (an override's
/// nodes have no position).
fn read_path(file: &Path, node: &Node, written: &str) -> PathBuf {
    if node.from_command_line() {
        PathBuf::from(written)
    } else {
        pipeline_path::resolve(pipeline_path::folder_of(file), written)
    }
}

/// Whether [`check`] also looks for the files a pipeline reads (`validate` and `run` do, so a
/// missing prompt file is named at its line, resolved); checking alone stays pure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reads {
    /// Only the file's text is checked.
    Unchecked,
    /// Every path option's file or folder must exist.
    MustExist,
}

/// Checks a pipeline tree against the registry: structure, kinds, options, inputs, cycles,
/// consumers and media. Returns every problem found.
pub fn check(file: &Path, root: &Node, registry: &Registry) -> Result<Pipeline, ConfigErrors> {
    check_reads(file, root, registry, Reads::Unchecked)
}

/// [`check`], and with [`Reads::MustExist`] a missing file or folder a path option names is an
/// error at its position, naming the path as resolved.
pub fn check_reads(
    file: &Path,
    root: &Node,
    registry: &Registry,
    reads: Reads,
) -> Result<Pipeline, ConfigErrors> {
    let mut checker = Checker { file, registry, reads, errors: Vec::new() };
    let pipeline = checker.pipeline(root);
    if checker.errors.is_empty() {
        Ok(pipeline)
    } else {
        checker.errors.sort_by_key(|d| (d.pos.line, d.pos.column));
        Err(ConfigErrors(checker.errors))
    }
}

struct Checker<'a> {
    file: &'a Path,
    registry: &'a Registry,
    reads: Reads,
    errors: Vec<Diagnostic>,
}

/// A component before its inputs are resolved.
struct Draft {
    spec: ComponentSpec,
    input_names: Vec<(String, Pos)>,
    /// What it writes in the output folder, each with the position of the option that says so.
    claims: Vec<(Claim, Pos)>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        self.errors.push(Diagnostic::new(self.file, pos, message));
        self.errors.last_mut().expect("just pushed")
    }

    fn pipeline(&mut self, root: &Node) -> Pipeline {
        let name_from_file =
            self.file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let mut pipeline = Pipeline {
            file: self.file.to_owned(),
            name: name_from_file,
            output: None,
            plugins: Vec::new(),
            components: Vec::new(),
        };
        let Some(entries) = root.as_map() else {
            self.error(
                root.pos,
                format!(
                    "a pipeline file is a map with {}; found {}",
                    TOP_FIELDS.join(", "),
                    root.type_name()
                ),
            );
            return pipeline;
        };
        for (key, _) in entries {
            if !TOP_FIELDS.contains(&key.name.as_str()) {
                let msg = format!("unknown field \"{}\" (expected: {})", key.name, TOP_FIELDS.join(", "));
                self.error(key.pos, msg);
            }
        }
        match root.get("version") {
            Some(Node { value: Yaml::Int(1), .. }) => {}
            Some(node) => {
                self.error(node.pos, "unsupported version: this inkflow reads version 1");
            }
            None => {
                self.error(root.pos, "missing field \"version\" (write `version: 1`)");
            }
        }
        if let Some(node) = root.get("name")
            && let Some(name) = self.string(node, "name")
        {
            pipeline.name = name;
        }
        if let Some(node) = root.get("output") {
            pipeline.output = self.string(node, "output").map(|written| read_path(self.file, node, &written));
        }
        pipeline.plugins = plugin_paths(self.file, root);
        let defaults = self.defaults(root.get("defaults"));

        let mut drafts = Vec::new();
        for (section, role) in [("sources", Role::Source), ("stages", Role::Stage), ("sinks", Role::Sink)] {
            match root.get(section) {
                Some(node) => match node.as_map() {
                    Some(entries) => {
                        for (key, value) in entries {
                            if let Some(draft) = self.component(key, value, role, defaults) {
                                drafts.push(draft);
                            }
                        }
                    }
                    None if matches!(node.value, Yaml::Null) => {}
                    None => {
                        let msg =
                            format!("\"{section}\" is a map of id to component; found {}", node.type_name());
                        self.error(node.pos, msg);
                    }
                },
                None if role != Role::Stage => {
                    self.error(
                        root.pos,
                        format!("missing field \"{section}\": a pipeline needs at least one {}", role.noun()),
                    );
                }
                None => {}
            }
        }
        self.check_claims(&drafts);
        pipeline.components = self.wire(drafts);
        pipeline
    }

    fn string(&mut self, node: &Node, what: &str) -> Option<String> {
        match &node.value {
            Yaml::Str(s) => Some(s.clone()),
            _ => {
                self.error(node.pos, format!("\"{what}\" must be a string, found {}", node.type_name()));
                None
            }
        }
    }

    fn count(&mut self, node: &Node, what: &str) -> Option<usize> {
        match node.value {
            Yaml::Int(n) if (1..=10_000).contains(&n) => Some(n as usize),
            _ => {
                self.error(node.pos, format!("\"{what}\" must be a whole number from 1 to 10000"));
                None
            }
        }
    }

    fn defaults(&mut self, node: Option<&Node>) -> (usize, Option<usize>) {
        let mut defaults = (DEFAULT_CAPACITY, None);
        let Some(node) = node else { return defaults };
        let Some(entries) = node.as_map() else {
            self.error(node.pos, "\"defaults\" must be a map with capacity and concurrency");
            return defaults;
        };
        for (key, value) in entries {
            match key.name.as_str() {
                "capacity" => defaults.0 = self.count(value, "capacity").unwrap_or(defaults.0),
                "concurrency" => defaults.1 = self.count(value, "concurrency").or(defaults.1),
                other => {
                    self.error(
                        key.pos,
                        format!("unknown field \"{other}\" in defaults (expected: capacity, concurrency)"),
                    );
                }
            }
        }
        defaults
    }

    fn component(
        &mut self,
        key: &Key,
        node: &Node,
        role: Role,
        defaults: (usize, Option<usize>),
    ) -> Option<Draft> {
        let id = key.name.clone();
        let about = |d: &mut Diagnostic| d.subject = Some(format!("{} \"{id}\"", role.noun()));
        let Some(entries) = node.as_map() else {
            let msg =
                format!("a {} is a map with a kind and its options; found {}", role.noun(), node.type_name());
            about(self.error(node.pos, msg));
            return None;
        };
        let known = self.registry.names(role).join(", ");
        let kind_name = match node.get("kind") {
            Some(Node { value: Yaml::Str(s), .. }) => s.clone(),
            Some(other) => {
                about(self.error(other.pos, format!("\"kind\" must be a string (known kinds: {known})")));
                return None;
            }
            None => {
                about(self.error(key.pos, format!("missing field \"kind\" (known kinds: {known})")));
                return None;
            }
        };
        let kind_pos = node.get("kind").map_or(key.pos, |n| n.pos);
        let Some(kind) = self.registry.get(&kind_name).filter(|k| k.info().role == role).cloned() else {
            let hint = match self.registry.get(&kind_name) {
                Some(other) => {
                    format!("\"{kind_name}\" is a {} kind, not a {}", other.info().role.noun(), role.noun())
                }
                None => format!("unknown kind \"{kind_name}\""),
            };
            about(self.error(kind_pos, format!("{hint} (known {} kinds: {known})", role.noun())));
            return None;
        };

        let mut input_names = Vec::new();
        match node.get("inputs") {
            Some(Node { value: Yaml::Seq(items), .. }) => {
                for item in items {
                    match &item.value {
                        Yaml::Str(s) => input_names.push((s.clone(), item.pos)),
                        _ => about(self.error(item.pos, "each input is the id of a source or stage")),
                    }
                }
            }
            Some(Node { value: Yaml::Str(s), pos }) => input_names.push((s.clone(), *pos)),
            Some(other) => about(self.error(other.pos, "\"inputs\" is a list of ids, e.g. [prompts]")),
            None => {}
        }
        if role == Role::Source && !input_names.is_empty() {
            about(self.error(node.get("inputs").map_or(key.pos, |n| n.pos), "a source takes no inputs"));
        }
        if role != Role::Source && input_names.is_empty() && node.get("inputs").is_none() {
            about(self.error(key.pos, "missing field \"inputs\" (the ids it reads from)"));
        }
        if role == Role::Stage && input_names.len() > 1 {
            let msg = "a stage reads exactly one input; a sink may read several";
            about(self.error(node.get("inputs").map_or(key.pos, |n| n.pos), msg));
        }
        let capacity = node.get("capacity").and_then(|n| self.count(n, "capacity")).unwrap_or(defaults.0);
        let concurrency = node.get("concurrency").and_then(|n| self.count(n, "concurrency")).or(defaults.1);

        let mut options_entries: Vec<(Key, Node)> =
            entries.iter().filter(|(k, _)| !WIRING_FIELDS.contains(&k.name.as_str())).cloned().collect();
        for (key, value) in &mut options_entries {
            if kind.info().options.iter().any(|o| o.path && o.name == key.name) {
                self.resolve_paths(value, &key.name, &format!("{} \"{id}\"", role.noun()));
            }
        }
        let options_node = Node { value: Yaml::Map(options_entries), pos: node.pos };
        let options = options_node.to_json();
        if let Err(e) = kind.check(&options) {
            let expected: Vec<&str> = kind.info().options.iter().map(|o| o.name.as_str()).collect();
            let (pos, message) = option_error_position(&options_node, key.pos, &e.path, &e.message);
            let message = if message.starts_with("unknown field") || message.starts_with("missing field") {
                format!(
                    "{} (expected: {})",
                    message.split(", expected").next().unwrap_or(&message),
                    expected.join(", ")
                )
            } else if e.path.is_empty() {
                message
            } else {
                format!("{}: {message}", e.path.join("."))
            };
            about(self.error(pos, message));
        }
        let inputs: Vec<String> = input_names.iter().map(|(name, _)| name.clone()).collect();
        let claims = match kind.writes(&options, &inputs) {
            Ok(claims) => claims
                .into_iter()
                .map(|claim| {
                    let pos = node.position_of(std::slice::from_ref(&claim.option));
                    (claim, if pos == node.pos { key.pos } else { pos })
                })
                .collect(),
            Err(e) => {
                let pos = node.position_of(&e.path);
                let pos = if pos == node.pos { key.pos } else { pos };
                about(self.error(pos, format!("{}: {}", e.path.join("."), e.message)));
                Vec::new()
            }
        };
        let info = kind.info();
        Some(Draft {
            spec: ComponentSpec {
                id,
                role,
                kind: kind_name,
                inputs: Vec::new(),
                consumers: Vec::new(),
                capacity,
                concurrency: concurrency.unwrap_or(1),
                concurrency_set: concurrency.is_some(),
                options,
                output: if role == Role::Source { info.output.for_input(Media::Prompt) } else { None },
                pos: key.pos,
            },
            input_names,
            claims,
        })
    }

    /// Rewrites the path (or each path of the list or map; a URL stays) of the path option `option` to the path it
    /// names (see [`read_path`]); with [`Reads::MustExist`], one naming nothing is an error at
    /// its value.
    fn resolve_paths(&mut self, node: &mut Node, option: &str, subject: &str) {
        let written = match &mut node.value {
            // A URL where a kind takes one instead of a file (fal's `references`) is no path.
            Yaml::Str(written) if ["http://", "https://", "data:"].iter().any(|s| written.starts_with(s)) => {
                return;
            }
            Yaml::Str(written) => written.clone(),
            Yaml::Seq(items) => {
                items.iter_mut().for_each(|item| self.resolve_paths(item, option, subject));
                return;
            }
            // Paths grouped by name (fal's `references: {style: [...]}`).
            Yaml::Map(entries) => {
                entries.iter_mut().for_each(|(_, item)| self.resolve_paths(item, option, subject));
                return;
            }
            _ => return,
        };
        let resolved = read_path(self.file, node, &written);
        node.value = Yaml::Str(resolved.to_string_lossy().into_owned());
        let glob = written.contains(['*', '?', '[']);
        if self.reads == Reads::MustExist && !glob && !resolved.exists() {
            let against = if node.from_command_line() {
                "the working directory, as given on the command line"
            } else {
                "the pipeline file's folder"
            };
            let msg = format!("{option}: {} does not exist (read against {against})", resolved.display());
            self.error(node.pos, msg).subject = Some(subject.to_owned());
        }
    }

    /// Refuses two components writing one place of the output folder (two books on one path, a
    /// book over a disk sink's `batch_metadata.json` or inside its `metadata/`): the later one is
    /// named, at its option.
    fn check_claims(&mut self, drafts: &[Draft]) {
        for (later, draft) in drafts.iter().enumerate() {
            for (claim, pos) in &draft.claims {
                let earlier = drafts[..later].iter().find_map(|other| {
                    other.claims.iter().find(|(c, _)| c.overlaps(claim)).map(|(c, _)| (other, c))
                });
                if let Some((other, theirs)) = earlier {
                    let msg = format!(
                        "{}: {} is written by {} too ({}: {}); give each its own place",
                        claim.option,
                        claim.path,
                        subject(&other.spec),
                        theirs.option,
                        theirs.path
                    );
                    self.error(*pos, msg).subject = Some(subject(&draft.spec));
                }
            }
        }
    }

    /// Resolves input ids, rejects cycles and components nobody reads, and checks media
    /// along every edge; returns the components in topological order.
    fn wire(&mut self, drafts: Vec<Draft>) -> Vec<ComponentSpec> {
        let index: HashMap<String, usize> =
            drafts.iter().enumerate().map(|(i, d)| (d.spec.id.clone(), i)).collect();
        let mut specs: Vec<ComponentSpec> = Vec::with_capacity(drafts.len());
        let mut edges: Vec<Vec<usize>> = Vec::with_capacity(drafts.len());
        for draft in &drafts {
            let mut inputs = Vec::new();
            for (name, pos) in &draft.input_names {
                match index.get(name) {
                    Some(&i) if drafts[i].spec.role == Role::Sink => {
                        let msg = format!("input \"{name}\" is a sink; sinks give no output to read");
                        self.error(*pos, msg).subject = Some(subject(&draft.spec));
                    }
                    Some(&i) => inputs.push(i),
                    None => {
                        let known: Vec<&str> = drafts
                            .iter()
                            .filter(|d| d.spec.role != Role::Sink)
                            .map(|d| d.spec.id.as_str())
                            .collect();
                        let msg = format!(
                            "input \"{name}\" doesn't match any source or stage (known: {})",
                            known.join(", ")
                        );
                        self.error(*pos, msg).subject = Some(subject(&draft.spec));
                    }
                }
            }
            edges.push(inputs);
            specs.push(draft.spec.clone());
        }
        for (i, inputs) in edges.iter().enumerate() {
            for &input in inputs {
                specs[input].consumers.push(i);
            }
        }
        for spec in &specs {
            if spec.role != Role::Sink && spec.consumers.is_empty() {
                let msg = format!(
                    "{} \"{}\" has no consumer: no stage or sink lists it in its inputs",
                    spec.role.noun(),
                    spec.id
                );
                self.error(spec.pos, msg).subject = Some(subject(spec));
            }
        }
        let (order, complete) = self.topological_order(&specs, &edges);
        // Media can still be checked along the parts of a graph that are not in a cycle.
        for &i in &order {
            self.check_media(i, &mut specs, &edges);
        }
        if !complete {
            return Vec::new();
        }
        let position: BTreeMap<usize, usize> =
            order.iter().enumerate().map(|(new, &old)| (old, new)).collect();
        order
            .iter()
            .map(|&old| {
                let mut spec = specs[old].clone();
                spec.inputs = edges[old].iter().map(|i| position[i]).collect();
                spec.consumers = spec.consumers.iter().map(|i| position[i]).collect();
                spec
            })
            .collect()
    }

    /// The components in an order where inputs come first, and whether that covers them all
    /// (it does not when there is a cycle, which is reported).
    fn topological_order(&mut self, specs: &[ComponentSpec], edges: &[Vec<usize>]) -> (Vec<usize>, bool) {
        let mut pending: Vec<usize> = edges.iter().map(Vec::len).collect();
        // Among the ready components the one declared first goes first, so the order (and the
        // order in which sinks finish, which `upload_files` relies on) follows the file.
        let mut ready: BTreeSet<usize> = (0..specs.len()).filter(|&i| pending[i] == 0).collect();
        let mut order = Vec::with_capacity(specs.len());
        while let Some(i) = ready.pop_first() {
            order.push(i);
            for &c in &specs[i].consumers {
                pending[c] -= 1;
                if pending[c] == 0 {
                    ready.insert(c);
                }
            }
        }
        if order.len() == specs.len() {
            return (order, true);
        }
        // Left are the cycles and what they feed; the latter are peeled off (a component none
        // of the rest reads) so the message names only the components in a cycle.
        let mut left: BTreeSet<usize> = (0..specs.len()).filter(|i| !order.contains(i)).collect();
        while let Some(&fed) = left.iter().find(|&&i| !specs[i].consumers.iter().any(|c| left.contains(c))) {
            left.remove(&fed);
        }
        let cycle: Vec<&str> = left.iter().map(|&i| specs[i].id.as_str()).collect();
        let first = left.first().copied().unwrap_or(0);
        let msg = format!("the inputs form a cycle through {}", cycle.join(" -> "));
        self.error(specs[first].pos, msg).subject = Some(subject(&specs[first]));
        (order, false)
    }

    fn check_media(&mut self, i: usize, specs: &mut [ComponentSpec], edges: &[Vec<usize>]) {
        let Some(kind) = self.registry.get(&specs[i].kind).cloned() else { return };
        let info = kind.info();
        if specs[i].role == Role::Source {
            return;
        }
        let mut output = None;
        for &input in &edges[i] {
            let Some(media) = specs[input].output else { continue };
            if !info.accepts.contains(&media) {
                let accepts: Vec<String> = info.accepts.iter().map(Media::to_string).collect();
                let msg = format!(
                    "kind \"{}\" cannot take a {media} from \"{}\" (it takes: {})",
                    info.name,
                    specs[input].id,
                    accepts.join(", ")
                );
                self.error(specs[i].pos, msg).subject = Some(subject(&specs[i]));
            } else {
                output = info.output.for_input(media);
            }
        }
        specs[i].output = output;
    }
}

fn subject(spec: &ComponentSpec) -> String {
    format!("{} \"{}\"", spec.role.noun(), spec.id)
}

/// Where an option error points: the offending field's value (or key), or the unknown key
/// named in the message, or the component itself.
fn option_error_position(options: &Node, component: Pos, path: &[String], message: &str) -> (Pos, String) {
    if let Some(name) = message.strip_prefix("unknown field `").and_then(|rest| rest.split('`').next()) {
        let mut full: Vec<String> = path.to_vec();
        if full.last().map(String::as_str) != Some(name) {
            full.push(name.to_owned());
        }
        let pos = options.key_position_of(&full);
        return (if pos == options.pos { component } else { pos }, message.replace('`', "\""));
    }
    let pos = if path.is_empty() { component } else { options.position_of(path) };
    (if pos == options.pos { component } else { pos }, message.replace('`', "\""))
}

/// Loads and checks a pipeline file in one go.
pub fn load(file: &Path, options: &LoadOptions, registry: &Registry) -> Result<Pipeline, ConfigErrors> {
    let root = read_tree(file, options)?;
    check(file, &root, registry)
}
