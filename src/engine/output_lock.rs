//! One run per output folder: `inkflow run` holds an exclusive OS lock on `OUTPUT/inkflow.lock`
//! for its whole life, so a second run on the same folder stops before it writes anything
//! (two runs would pay twice for the same prompts and write over each other's pages).
//!
//! The lock is the operating system's (`flock` on Unix, `LockFileEx` on Windows, through
//! `std::fs::File::try_lock`), not the file's existence: it goes away with the process, so a
//! crashed or killed run never leaves the folder locked. The file only tells the next run who
//! holds it (pid and start time), for the message.

use std::fs::{File, OpenOptions};
use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;
use std::time::{Duration, Instant};

use super::output_path::LOCK_FILE;

/// A held lock on an output folder; dropping it (or the process ending) releases it.
#[derive(Debug)]
pub struct OutputLock {
    _file: File,
}

/// Why an output folder could not be locked.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds the lock.
    #[error("{output} is in use by another inkflow run ({holder})")]
    Busy {
        /// The output folder, as given.
        output: String,
        /// `pid N, started T`, from the lock file (or what is known of it).
        holder: String,
    },
    /// The lock file could not be opened or locked at all.
    #[error("cannot lock {path}: {source}")]
    Io {
        /// The lock file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// How long [`OutputLock::acquire`] waits for a lock that may be held only for an instant (the
/// review page asking whether the folder is free, or recording a decision) before it calls the
/// folder busy: a run started at that instant is not turned away.
const BRIEF_HOLD: Duration = Duration::from_millis(500);

impl OutputLock {
    /// Takes the lock of `output_dir`, which must exist, waiting up to [`BRIEF_HOLD`] for a
    /// holder to let go; then records this process in the lock file.
    pub fn acquire(output_dir: &Path) -> Result<Self, LockError> {
        let deadline = Instant::now() + BRIEF_HOLD;
        loop {
            match Self::try_acquire(output_dir) {
                Err(LockError::Busy { .. }) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                taken_or_refused => return taken_or_refused,
            }
        }
    }

    /// [`Self::acquire`] without waiting: for asking whether a run holds the folder now.
    pub fn try_acquire(output_dir: &Path) -> Result<Self, LockError> {
        let path = output_dir.join(LOCK_FILE);
        let io = |source| LockError::Io { path: path.display().to_string(), source };
        // Opened without truncating: the holder's pid must stay readable until we hold the lock.
        let mut file =
            OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path).map_err(io)?;
        match file.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::WouldBlock) => {
                let mut holder = String::new();
                // The holder writes its line right after locking; a read in between finds it empty.
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                return Err(LockError::Busy {
                    output: output_dir.display().to_string(),
                    holder: if holder.is_empty() { "pid unknown".to_owned() } else { holder.to_owned() },
                });
            }
            Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
        }
        let started = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
        file.set_len(0)
            .and_then(|()| file.rewind())
            .and_then(|()| writeln!(file, "pid {}, started {started}", std::process::id()))
            .map_err(io)?;
        Ok(OutputLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_one_folder_is_refused_with_the_holder_named_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = OutputLock::acquire(dir.path()).unwrap();
        let err = OutputLock::acquire(dir.path()).unwrap_err().to_string();
        let pid = format!("pid {}, started ", std::process::id());
        assert!(err.contains("is in use by another inkflow run") && err.contains(&pid), "{err}");
        drop(first);
        OutputLock::acquire(dir.path()).expect("free again once dropped");
    }

    /// A lock held for an instant (the review page asking whether a run holds the folder) does
    /// not turn a starting run away: it waits for it, up to BRIEF_HOLD.
    #[test]
    fn a_lock_held_for_an_instant_is_waited_for() {
        let dir = tempfile::tempdir().unwrap();
        let brief = OutputLock::try_acquire(dir.path()).unwrap();
        let path = dir.path().to_owned();
        let (started, waiting) = std::sync::mpsc::channel();
        let run = std::thread::spawn(move || {
            started.send(()).unwrap();
            OutputLock::acquire(&path)
        });
        waiting.recv().unwrap();
        std::thread::sleep(BRIEF_HOLD / 5);
        drop(brief);
        run.join().unwrap().expect("a lock let go within BRIEF_HOLD is taken");
        // A probe does not wait: it says at once that the folder is held.
        let held = OutputLock::acquire(dir.path()).unwrap();
        assert!(matches!(OutputLock::try_acquire(dir.path()), Err(LockError::Busy { .. })));
        drop(held);
    }
}
