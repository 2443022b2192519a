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

/// `inkflow ARGS` run to its end, with its peak resident memory in KiB.
///
/// Linux keeps a process's peak across `fork` and `execve`, so a child forked straight from
/// the test process (which holds other tests' pages) reports the test's peak, not its own. A
/// small Python process starts inkflow instead and reports its child's peak alone.
pub fn run_peak_rss(args: &[&str]) -> (Output, i64) {
    const MEASURE: &str = "import resource, subprocess, sys\n\
        done = subprocess.run(sys.argv[1:], stdout=subprocess.PIPE)\n\
        sys.stdout.buffer.write(done.stdout)\n\
        print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, file=sys.stderr)\n\
        sys.exit(done.returncode)";
    let out = Command::new("python3")
        .args(["-c", MEASURE, env!("CARGO_BIN_EXE_inkflow")])
        .args(args)
        .output()
        .expect("python3 runs the measured child");
    let stderr = text(&out.stderr);
    let peak = stderr.lines().last().and_then(|l| l.trim().parse().ok());
    let peak = peak.unwrap_or_else(|| panic!("no peak RSS from the measuring process: {stderr}"));
    (out, peak)
}
