//! Stages that break the rules on purpose, for inkflow's plugin host tests.

use inkflow_sdk::{Format, Image, ImageRef, PluginStage, export_plugin};

/// Panics on every image: the item must fail with the message and the stage stay disabled.
struct PanicsInProcess;

impl PluginStage for PanicsInProcess {
    const NAME: &'static str = "panics-in-process";
    const DESCRIPTION: &'static str = r#"{"summary": "panics on every image", "options": []}"#;

    fn new(_config: &str) -> Result<Self, String> {
        Ok(PanicsInProcess)
    }

    fn process(&mut self, image: ImageRef<'_>, _meta: &str) -> Result<Image, String> {
        panic!("the test plugin panicked on a {}x{} page", image.width, image.height)
    }
}

/// Panics while being made: building the pipeline must fail with the message.
struct PanicsInCreate;

impl PluginStage for PanicsInCreate {
    const NAME: &'static str = "panics-in-create";
    const DESCRIPTION: &'static str = r#"{"summary": "panics when created", "options": []}"#;

    fn new(_config: &str) -> Result<Self, String> {
        panic!("the test plugin panicked in create")
    }

    fn process(&mut self, image: ImageRef<'_>, _meta: &str) -> Result<Image, String> {
        Ok(image.to_image())
    }
}

/// Answers every image with a 1x1 RGB one: the host must refuse a format it did not ask for.
struct ChangesFormat;

impl PluginStage for ChangesFormat {
    const NAME: &'static str = "changes-format";
    const DESCRIPTION: &'static str = r#"{"summary": "returns RGB whatever it gets", "options": []}"#;

    fn new(_config: &str) -> Result<Self, String> {
        Ok(ChangesFormat)
    }

    fn process(&mut self, _image: ImageRef<'_>, _meta: &str) -> Result<Image, String> {
        Ok(Image::white(Format::Rgb, 1, 1))
    }
}

/// Panics on the page whose prompt asks for it ("panic here") and passes every other one on:
/// one bad page must fail alone, and the pages after it get a fresh instance.
struct PanicsOnOnePage;

impl PluginStage for PanicsOnOnePage {
    const NAME: &'static str = "panics-on-one-page";
    const DESCRIPTION: &'static str =
        r#"{"summary": "panics on a page whose prompt says panic here", "options": []}"#;

    fn new(_config: &str) -> Result<Self, String> {
        Ok(PanicsOnOnePage)
    }

    fn process(&mut self, image: ImageRef<'_>, meta: &str) -> Result<Image, String> {
        if meta.contains("panic here") {
            panic!("the test plugin panicked on the page that asked for it")
        }
        Ok(image.to_image())
    }
}

export_plugin!(PanicsInProcess, PanicsInCreate, ChangesFormat, PanicsOnOnePage);
