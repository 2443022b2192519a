//! The `inkflow` binary as a user runs it, started from the crate's root so that the shipped
//! `pipelines/` resolve as they do in the README.

use std::process::{Command, Output};

/// The fal key the emulated fal.ai accepts; a real key never appears in a test.
pub const TEST_FAL_KEY: &str = "test-key-not-a-secret";

/// `inkflow`, ready for arguments, run from the crate's root.
pub fn inkflow() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_inkflow"));
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"));
    cmd
}

/// [`inkflow`] holding [`TEST_FAL_KEY`] as its only fal key, for runs against the emulator.
pub fn inkflow_with_test_key() -> Command {
    let mut cmd = inkflow();
    cmd.env("FAL_KEY", TEST_FAL_KEY).env_remove("FAL_API_KEY");
    cmd
}

/// `inkflow ARGS`, run to its end with its output captured.
pub fn run(args: &[&str]) -> Output {
    inkflow().args(args).output().expect("inkflow runs")
}

/// Captured output as text, for assertions and failure messages.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}
