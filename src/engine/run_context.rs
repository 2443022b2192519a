//! Shared state of a running batch that stages may consult.

use tokio_util::sync::CancellationToken;

/// Handed to I/O stages: lets long waits (polling, retries) end promptly on Ctrl-C.
#[derive(Clone, Debug, Default)]
pub struct RunContext {
    /// Cancelled when the user asks the batch to stop.
    pub stop: CancellationToken,
}
