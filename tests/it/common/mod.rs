//! Small test kinds shared by the engine and journal tests: a counting source, a drawing
//! stage that fails chosen items, and a recording sink that can be slow.

pub mod binary;
pub mod browser;
pub mod fal_emulator;
pub mod fal_llm;
pub mod pdf_reader;
pub mod pipeline_text;
pub mod postgres;
pub mod s3;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use inkflow::engine::item::{Item, Prompt, State};
use inkflow::engine::media::{Media, Payload, Pixels, Raster};
use inkflow::engine::run_context::RunContext;
use inkflow::engine::stage::{
    BuildContext, Component, CpuStage, IoStage, Kind, KindInfo, Listing, OptionDoc, OptionsError,
    OutputMedia, Receipt, Registry, Role, Sink, Source, StageError, parse_options,
};
use inkflow::engine::summary::Summary;
use serde::Deserialize;
use serde_json::Value;

/// Counters the test kinds share with the test.
#[derive(Default)]
pub struct Probe {
    /// Items the `count` source's listing made (the engine makes each when it reaches it).
    pub made: AtomicU64,
    pub written: AtomicU64,
    pub max_in_flight: AtomicU64,
    pub seen: Mutex<Vec<(String, String)>>,
    pub sizes_seen: Mutex<Vec<usize>>,
    /// Set when the `record` sink has begun writing its first item.
    pub sink_started: tokio::sync::watch::Sender<bool>,
    /// Set when the `gate` stage has let its gated item through.
    pub gate_opened: tokio::sync::watch::Sender<bool>,
    /// Set when the `gate` stage has stopped the batch (it does so once per probe).
    pub stopped_batch: std::sync::atomic::AtomicBool,
    /// Every image a `draw` stage with `track: true` made, to count those still alive.
    pub drawn: Mutex<Vec<std::sync::Weak<Raster>>>,
    /// The most tracked images alive at once, counted each time one is made.
    pub max_drawn_alive: AtomicU64,
}

/// Waits until `flag` is set, or gives up after 20 s (only a broken runtime takes that long).
async fn wait_for(flag: &tokio::sync::watch::Sender<bool>) -> bool {
    let mut seen = flag.subscribe();
    tokio::time::timeout(Duration::from_secs(20), seen.wait_for(|set| *set)).await.is_ok()
}

fn info(name: &str, role: Role, accepts: &[Media], output: OutputMedia, options: Vec<OptionDoc>) -> KindInfo {
    KindInfo {
        name: name.into(),
        role,
        summary: format!("test kind {name}"),
        options,
        accepts: accepts.to_vec(),
        output,
    }
}

// ---- a source of N prompts ----
struct CountKind(KindInfo, Arc<Probe>);
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CountOptions {
    items: u32,
}
struct CountSource(u32, Arc<Probe>);
impl Kind for CountKind {
    fn info(&self) -> &KindInfo {
        &self.0
    }
    fn check(&self, o: &Value) -> Result<(), OptionsError> {
        parse_options::<CountOptions>(o).map(|_| ())
    }
    fn build(&self, o: &Value, _: &BuildContext) -> anyhow::Result<Component> {
        let o: CountOptions = parse_options(o)?;
        Ok(Component::Source(Arc::new(CountSource(o.items, self.1.clone()))))
    }
}
impl Source for CountSource {
    fn list(&self) -> anyhow::Result<Box<dyn Listing>> {
        Ok(Box::new(CountListing(self.0, self.1.clone())))
    }
    fn load(&self, _: &mut Item) -> Result<Payload, StageError> {
        Ok(Payload::Prompt)
    }
}
/// Makes prompt N+1 when asked for item N, counting it in `made`.
struct CountListing(u32, Arc<Probe>);
impl Listing for CountListing {
    fn len(&self) -> usize {
        self.0 as usize
    }
    fn item(&self, index: usize) -> Item {
        self.1.made.fetch_add(1, Ordering::SeqCst);
        let number = index as u32 + 1;
        let prompt =
            Prompt { section: "t".into(), number, image_prompt: format!("p{number}"), ..Prompt::default() };
        Item::new(0, prompt)
    }
}

// ---- a stage drawing a small gray image, failing item numbers listed in `fail` ----
struct DrawKind(KindInfo, Arc<Probe>);
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DrawOptions {
    #[serde(default)]
    fail: Vec<u32>,
    #[serde(default = "default_side")]
    side: u32,
    /// Keep count of this stage's images still alive.
    #[serde(default)]
    track: bool,
}
fn default_side() -> u32 {
    8
}
struct Draw(DrawOptions, Arc<Probe>);
impl Kind for DrawKind {
    fn info(&self) -> &KindInfo {
        &self.0
    }
    fn check(&self, o: &Value) -> Result<(), OptionsError> {
        let parsed = parse_options::<DrawOptions>(o)?;
        if parsed.side == 0 {
            return Err(OptionsError::at("side", "must be at least 1"));
        }
        Ok(())
    }
    fn build(&self, o: &Value, _: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(Draw(parse_options(o)?, self.1.clone()))))
    }
}
impl CpuStage for Draw {
    fn process(&self, item: &mut Item, _: Payload) -> Result<Payload, StageError> {
        if self.0.fail.contains(&item.prompt.number) {
            return Err(StageError::failed(format!("refused {}", item.prompt.number)));
        }
        let side = self.0.side;
        item.record("drawn", true);
        let raster = Arc::new(Raster::new(side, side, None, Pixels::Gray(vec![0; (side * side) as usize])));
        if self.0.track {
            let mut drawn = self.1.drawn.lock().unwrap();
            drawn.retain(|image| image.strong_count() > 0);
            drawn.push(Arc::downgrade(&raster));
            self.1.max_drawn_alive.fetch_max(drawn.len() as u64, Ordering::SeqCst);
        }
        Ok(Payload::Image(raster))
    }
}

// ---- a stage taking a gray image to another: slow, failing or panicking on chosen items ----
struct RetouchKind(KindInfo);
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RetouchOptions {
    #[serde(default)]
    fail: Vec<u32>,
    #[serde(default)]
    panic: Vec<u32>,
    /// CPU time each item takes (the pool thread sleeps).
    #[serde(default)]
    work_ms: u64,
}
struct Retouch(RetouchOptions);
impl Kind for RetouchKind {
    fn info(&self) -> &KindInfo {
        &self.0
    }
    fn check(&self, o: &Value) -> Result<(), OptionsError> {
        parse_options::<RetouchOptions>(o).map(|_| ())
    }
    fn build(&self, o: &Value, _: &BuildContext) -> anyhow::Result<Component> {
        Ok(Component::Cpu(Arc::new(Retouch(parse_options(o)?))))
    }
}
impl CpuStage for Retouch {
    fn process(&self, item: &mut Item, input: Payload) -> Result<Payload, StageError> {
        let number = item.prompt.number;
        assert!(!self.0.panic.contains(&number), "retouch broke on {number}");
        if self.0.fail.contains(&number) {
            return Err(StageError::failed(format!("cannot retouch {number}")));
        }
        std::thread::sleep(Duration::from_millis(self.0.work_ms));
        let Payload::Image(image) = input else { return Err(StageError::failed("not an image")) };
        Ok(Payload::Image(Arc::new(Raster::clone(&image))))
    }
}

// ---- an I/O stage passing items on; item `gated` waits until the sink has started ----
struct GateKind(KindInfo, Arc<Probe>);
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GateOptions {
    gated: u32,
    /// Stop the batch at this item (like Ctrl-C) and cut it short, once per probe.
    #[serde(default)]
    stop_at: Option<u32>,
    /// At `stop_at`, fail the item for a cause of its own instead, as the stop comes.
    #[serde(default)]
    fail_at_stop: bool,
}
struct Gate(GateOptions, Arc<Probe>);
impl Kind for GateKind {
    fn info(&self) -> &KindInfo {
        &self.0
    }
    fn check(&self, o: &Value) -> Result<(), OptionsError> {
        parse_options::<GateOptions>(o).map(|_| ())
    }
    fn build(&self, o: &Value, _: &BuildContext) -> anyhow::Result<Component> {
        let o: GateOptions = parse_options(o)?;
        Ok(Component::Io(Arc::new(Gate(o, self.1.clone()))))
    }
}
#[async_trait]
impl IoStage for Gate {
    async fn process(&self, item: &mut Item, input: Payload, cx: &RunContext) -> Result<Payload, StageError> {
        if self.0.stop_at == Some(item.prompt.number) && !self.1.stopped_batch.swap(true, Ordering::SeqCst) {
            cx.stop.cancel();
            if self.0.fail_at_stop {
                return Err(StageError::failed("the item's own error, as the batch stops"));
            }
            return Err(StageError::Interrupted("cut short: the batch is stopping".into()));
        }
        if item.prompt.number == self.0.gated {
            if !wait_for(&self.1.sink_started).await {
                return Err(StageError::failed("the sink never started"));
            }
            self.1.gate_opened.send_replace(true);
        }
        Ok(input)
    }
}

// ---- a sink that is slow and records what it sees ----
struct RecordKind(KindInfo, Arc<Probe>);
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RecordOptions {
    #[serde(default)]
    delay_ms: u64,
    /// Hold the first item until the `gate` stage has let its gated item through.
    #[serde(default)]
    hold_for_gate: bool,
}
struct Record(RecordOptions, Arc<Probe>);
impl Kind for RecordKind {
    fn info(&self) -> &KindInfo {
        &self.0
    }
    fn check(&self, o: &Value) -> Result<(), OptionsError> {
        parse_options::<RecordOptions>(o).map(|_| ())
    }
    fn build(&self, o: &Value, _: &BuildContext) -> anyhow::Result<Component> {
        let o: RecordOptions = parse_options(o)?;
        Ok(Component::Sink(Arc::new(Record(o, self.1.clone()))))
    }
}
#[async_trait]
impl Sink for Record {
    fn is_complete(&self, item: &Item, _recorded: Option<&Receipt>) -> bool {
        self.1.seen.lock().unwrap().iter().any(|(key, fate)| key == &item.key && !fate.contains("failed"))
    }

    async fn write(&self, item: &Item, states: Vec<State>) -> Result<Receipt, StageError> {
        let in_flight =
            self.1.made.load(Ordering::SeqCst).saturating_sub(self.1.written.load(Ordering::SeqCst));
        self.1.max_in_flight.fetch_max(in_flight, Ordering::SeqCst);
        if !self.1.sink_started.send_replace(true)
            && self.0.hold_for_gate
            && !wait_for(&self.1.gate_opened).await
        {
            return Err(StageError::failed("the gated item never came through: its stage stalled"));
        }
        tokio::time::sleep(Duration::from_millis(self.0.delay_ms)).await;
        let fate = states
            .iter()
            .map(|s| match s {
                State::Ready(p) => format!("{:?}", p.media()),
                State::Failed(f) => format!("failed at {}: {}", f.stage, f.error),
                State::Filtered { reason, .. } => format!("filtered: {reason}"),
            })
            .collect::<Vec<_>>()
            .join(" + ");
        self.1.seen.lock().unwrap().push((item.key.clone(), fate));
        for state in &states {
            if let State::Ready(Payload::Image(raster)) = state {
                self.1.sizes_seen.lock().unwrap().push(Arc::as_ptr(raster) as usize);
            }
        }
        self.1.written.fetch_add(1, Ordering::SeqCst);
        Ok(Receipt::default())
    }
    async fn finish(&self, _: &Summary) -> anyhow::Result<()> {
        Ok(())
    }
}

pub fn registry(probe: &Arc<Probe>) -> Registry {
    let mut r = Registry::new();
    let items = vec![OptionDoc::required("items", "integer", "how many")];
    r.register(Arc::new(CountKind(
        info("count", Role::Source, &[], OutputMedia::Fixed(Media::Prompt), items),
        probe.clone(),
    )));
    let draw_opts = vec![
        OptionDoc::new("fail", "list", "[]", "numbers to fail"),
        OptionDoc::new("side", "integer", "8", "size"),
        OptionDoc::new("track", "boolean", "false", "count its images alive"),
    ];
    r.register(Arc::new(DrawKind(
        info("draw", Role::Stage, &[Media::Prompt], OutputMedia::Fixed(Media::Gray), draw_opts),
        probe.clone(),
    )));
    let retouch_opts = vec![
        OptionDoc::new("fail", "list", "[]", "numbers to fail"),
        OptionDoc::new("panic", "list", "[]", "numbers to panic on"),
        OptionDoc::new("work_ms", "integer", "0", "time per item"),
    ];
    r.register(Arc::new(RetouchKind(info(
        "retouch",
        Role::Stage,
        &[Media::Gray],
        OutputMedia::Fixed(Media::Gray),
        retouch_opts,
    ))));
    r.register(Arc::new(GateKind(
        info(
            "gate",
            Role::Stage,
            &[Media::Prompt],
            OutputMedia::SameAsInput,
            vec![
                OptionDoc::required("gated", "integer", "the item number to hold"),
                OptionDoc::new("stop_at", "integer", "none", "stop the batch at this item, once"),
            ],
        ),
        probe.clone(),
    )));
    let record_opts = vec![
        OptionDoc::new("delay_ms", "integer", "0", "slowness"),
        OptionDoc::new("hold_for_gate", "boolean", "false", "hold the first item until the gate opens"),
    ];
    let accepts = [Media::Gray, Media::Prompt];
    r.register(Arc::new(RecordKind(
        info("record", Role::Sink, &accepts, OutputMedia::None, record_opts),
        probe.clone(),
    )));
    r
}

pub fn write_pipeline(dir: &Path, text: &str) -> PathBuf {
    let path = dir.join("p.yaml");
    std::fs::write(&path, text).unwrap();
    path
}
