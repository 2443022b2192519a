//! The `inkflow` command line: run, validate, graph and inspect pipelines.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    keep_large_buffers_out_of_the_heap();
    cli::main()
}

/// Pixel buffers are allocated and freed on different threads, thousands of times per batch.
/// glibc serves a freed mmap-sized block's successors from its heaps instead (it raises its
/// mmap threshold on every such free, up to 32 MiB), where they fragment: peak RSS then grew
/// 22% from 100 to 1,000 postprocessed pages. A fixed threshold of 256 KiB keeps every pixel
/// buffer (decoded inputs, gray and 1-bit pages, thumbnails) in its own mapping, returned to
/// the system when freed; the heaps hold only small, short-lived allocations. It costs page
/// faults on fresh mappings (~3 ms of system time per page), for peak RSS flat within 2% from
/// 100 to 1,000 pages.
fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
