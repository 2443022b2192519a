//! The bridge from async tasks to the rayon pool, so pixel work never blocks a tokio worker.

use std::panic::{AssertUnwindSafe, catch_unwind};

use tokio::sync::oneshot;

/// Runs `work` on the current rayon pool and waits for it without blocking the async runtime.
/// A panic in `work` comes back as an error message instead of tearing the batch down.
pub async fn run<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    rayon::spawn(move || {
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(panic_message);
        // The receiver is gone only when the batch was torn down; nothing is waiting then.
        let _ = tx.send(outcome);
    });
    rx.await.unwrap_or_else(|_| Err("the CPU pool dropped the job".to_owned()))
}

/// The text of a panic payload.
pub fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}
