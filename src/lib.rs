//! inkflow runs YAML-declared image-generation pipelines: sources of prompts or images, stages
//! that generate and post-process pages, and sinks that write them out.
//!
//! The crate is split the way a stage author needs it: [`engine`] (config, graph, runtime) knows
//! no stage by name; [`stages`] holds one file per built-in kind; [`imaging`] holds the pixel
//! operations those stages and the benchmarks share.

pub mod cluster;
pub mod engine;
pub mod imaging;
pub mod print;
pub mod report;
pub mod review;
pub mod stages;
pub mod tls;

/// Pixel buffers are allocated and freed on different threads, thousands of times per batch.
/// glibc serves a freed mmap-sized block's successors from its heaps instead (it raises its
/// mmap threshold on every such free, up to 32 MiB), where they fragment: peak RSS then grew
/// 22% from 100 to 1,000 postprocessed pages. A fixed threshold of 256 KiB keeps every pixel
/// buffer (decoded inputs, gray and 1-bit pages, thumbnails) in its own mapping, returned to
/// the system when freed; the heaps hold only small, short-lived allocations. It costs page
/// faults on fresh mappings (~3 ms of system time per page), for peak RSS flat within 2% from
/// 100 to 1,000 pages. The binary calls it first thing, and so do the benchmarks, so they
/// measure what a user runs.
pub fn keep_large_buffers_out_of_the_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only changes allocator tuning; it is called before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 << 10);
    }
}
