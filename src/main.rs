//! The `inkflow` command line: run, validate, graph and inspect pipelines.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_large_buffers_out_of_the_heap();
    cli::main()
}

/// Pages are allocated and freed on different threads, thousands of times per batch. glibc
/// serves a freed mmap-sized block's successors from its heaps instead (it raises its mmap
/// threshold on every such free, up to 32 MiB), where they fragment: peak RSS then grew 22%
/// from 100 to 1,000 postprocessed pages. A fixed threshold keeps blocks of 4 MiB and more
/// (the 8.4 MB gray print pages) in their own mappings, returned to the system when freed.
fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 4 << 20);
    }
}
