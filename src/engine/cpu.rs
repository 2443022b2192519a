//! The bridge from async tasks to the rayon pool, so pixel work never blocks a tokio worker.
//!
//! Jobs wait in one queue that hands the pool the job of the highest rank first (oldest first
//! among equals). In a pipeline that only computes, the runtime ranks a component by its depth
//! in the graph, so items finish before new ones start: finishing an item frees its buffers,
//! starting one allocates them. With plain FIFO order a 1 ms threshold job could wait behind
//! every queued decode and upscale while the 8.4 MB pages it would shrink piled up in front of it.

use std::cmp::Ordering;
use std::collections::BinaryHeap;
use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;

use tokio::sync::oneshot;

tokio::task_local! {
    /// The running component's rank: its CPU jobs run before those of lower ranks.
    static RANK: u32;
}

/// Runs `task` as the work of a component of this rank, so the CPU jobs it starts with
/// [`run`] take their turn by it.
pub async fn ranked<F: Future>(rank: u32, task: F) -> F::Output {
    RANK.scope(rank, task).await
}

/// A job waiting for a pool thread.
struct Job {
    rank: u32,
    /// Arrival order, so equals run first come, first served.
    seq: u64,
    work: Box<dyn FnOnce() + Send>,
}

impl PartialEq for Job {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Job {}

impl PartialOrd for Job {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Job {
    /// The greatest job runs next: the highest rank, then the oldest.
    fn cmp(&self, other: &Self) -> Ordering {
        self.rank.cmp(&other.rank).then(other.seq.cmp(&self.seq))
    }
}

/// Jobs not yet started, the greatest first.
struct JobQueue {
    jobs: BinaryHeap<Job>,
    arrivals: u64,
}

impl JobQueue {
    const fn new() -> Self {
        JobQueue { jobs: BinaryHeap::new(), arrivals: 0 }
    }

    fn push(&mut self, rank: u32, work: Box<dyn FnOnce() + Send>) {
        self.jobs.push(Job { rank, seq: self.arrivals, work });
        self.arrivals += 1;
    }

    fn pop(&mut self) -> Option<Job> {
        self.jobs.pop()
    }
}

/// The queue of the global pool. Every push is followed by one `rayon::spawn` that pops one
/// job, so each job runs exactly once, whichever spawn takes it.
static WAITING: Mutex<JobQueue> = Mutex::new(JobQueue::new());

fn waiting() -> std::sync::MutexGuard<'static, JobQueue> {
    // No job runs while the lock is held, so a poisoned lock still guards a sound heap.
    WAITING.lock().unwrap_or_else(|e| e.into_inner())
}

/// The rank set by the enclosing [`ranked`], 0 outside any.
fn current_rank() -> u32 {
    RANK.try_with(|r| *r).unwrap_or(0)
}

/// Runs `work` on rayon's global pool (`--threads` sizes it) and waits for it without
/// blocking the async runtime.
/// A panic in `work` comes back as an error message instead of tearing the batch down.
pub async fn run<T, F>(work: F) -> Result<T, String>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    let job = move || {
        let outcome = catch_unwind(AssertUnwindSafe(work)).map_err(panic_message);
        // The receiver is gone only when the batch was torn down; nothing is waiting then.
        let _ = tx.send(outcome);
    };
    waiting().push(current_rank(), Box::new(job));
    rayon::spawn(|| {
        let next = waiting().pop();
        if let Some(job) = next {
            (job.work)();
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Jobs of a higher rank overtake waiting jobs of lower ones; equals keep their order.
    #[test]
    fn the_highest_ranked_waiting_job_runs_first() {
        let ran = std::sync::Arc::new(Mutex::new(Vec::new()));
        let mut queue = JobQueue::new();
        for (rank, name) in [(0, "decode a"), (3, "threshold"), (0, "decode b"), (5, "write"), (3, "thumb")] {
            let ran = ran.clone();
            queue.push(rank, Box::new(move || ran.lock().unwrap().push(name)));
        }
        while let Some(job) = queue.pop() {
            (job.work)();
        }
        assert_eq!(*ran.lock().unwrap(), ["write", "threshold", "thumb", "decode a", "decode b"]);
    }

    #[tokio::test]
    async fn jobs_take_the_rank_of_the_component_that_starts_them() {
        assert_eq!(current_rank(), 0);
        assert_eq!(ranked(4, async { current_rank() }).await, 4);
    }
}
