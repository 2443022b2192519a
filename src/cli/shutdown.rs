//! Requests to stop from outside: Ctrl-C (SIGINT), and SIGTERM, which `docker stop`, systemd
//! and Kubernetes send. Both mean the same: stop taking new work, collect what is paid for,
//! write what a finished run writes. A second one of either kind quits at once. Any
//! long-running command (a batch run, a cluster worker) stops on [`StopSignals`].

use std::io;

use tokio_util::sync::CancellationToken;

/// One request to stop, by the signal that carried it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopSignal {
    /// Ctrl-C at the terminal.
    Interrupt,
    /// A service manager or container runtime asking the process to end.
    Terminate,
}

impl StopSignal {
    /// The name a user knows it by.
    pub fn name(self) -> &'static str {
        match self {
            StopSignal::Interrupt => "Ctrl-C",
            StopSignal::Terminate => "SIGTERM",
        }
    }

    /// The shell's exit code for a process ended by this signal (128 + its number).
    pub fn exit_code(self) -> u8 {
        match self {
            StopSignal::Interrupt => 128 + 2,
            StopSignal::Terminate => 128 + 15,
        }
    }
}

/// The stop requests a process receives once these are installed: from then on neither signal
/// ends the process by itself, so install them before the work starts.
pub struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Takes over SIGINT and SIGTERM. Needs a running tokio runtime.
    pub fn install() -> io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next request to stop; `None` when signals can no longer be received.
    pub async fn next(&mut self) -> Option<StopSignal> {
        #[cfg(unix)]
        {
            tokio::select! {
                interrupt = self.interrupt.recv() => interrupt.map(|()| StopSignal::Interrupt),
                terminate = self.terminate.recv() => terminate.map(|()| StopSignal::Terminate),
            }
        }
        #[cfg(not(unix))]
        {
            tokio::signal::ctrl_c().await.ok().map(|()| StopSignal::Interrupt)
        }
    }

    /// The first request cancels `stop` (the work winds down as `what_stops` says); a second
    /// one quits at once with its signal's exit code.
    pub async fn stop_on_request(mut self, stop: CancellationToken, what_stops: &str) {
        let Some(first) = self.next().await else { return };
        eprintln!("\nstopping: {}: {what_stops} (Ctrl-C or SIGTERM again quits at once)", first.name());
        tracing::warn!("{}: {what_stops}", first.name());
        stop.cancel();
        if let Some(second) = self.next().await {
            tracing::warn!("{} again: quitting at once", second.name());
            std::process::exit(i32::from(second.exit_code()));
        }
    }
}
