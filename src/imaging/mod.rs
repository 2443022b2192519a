//! Pixel operations shared by the stages and the benchmarks, free of any engine types but
//! [`crate::engine::media`].

pub mod decode;
pub mod fused;
pub mod gray;
pub mod jpeg;
pub mod pattern;
pub mod png;
pub mod quality;
pub mod resize;
pub mod svg;
pub mod threshold;

/// Why a pixel operation could not run; stages turn it into an item failure.
#[derive(Debug, thiserror::Error)]
pub enum ImagingError {
    /// The operation does not take this kind of pixels (e.g. resizing a bilevel page).
    #[error("{operation} does not take {media} pixels")]
    Unsupported {
        /// What was asked, for the message.
        operation: &'static str,
        /// The media it got.
        media: crate::engine::media::Media,
    },
    /// A size of zero or one too large to allocate.
    #[error("bad image size {width}x{height}: {reason}")]
    BadSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The codec or resizer refused the data.
    #[error("{operation}: {message}")]
    Codec {
        /// What was being done.
        operation: &'static str,
        /// The library's message.
        message: String,
    },
}

impl ImagingError {
    fn codec(operation: &'static str, error: impl std::fmt::Display) -> Self {
        ImagingError::Codec { operation, message: error.to_string() }
    }
}
