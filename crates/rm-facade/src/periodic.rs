//! [`Periodic`]: a named thread that runs a function at an interval until dropped.

use std::thread::JoinHandle;
use std::time::Duration;

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};

/// Runs a function every interval on a thread of its own; dropping it stops the thread at
/// once (not at the next interval) and joins it.
#[derive(Debug)]
pub(crate) struct Periodic {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Periodic {
    pub(crate) fn start(
        name: &str,
        interval: Duration,
        mut work: impl FnMut() + Send + 'static,
    ) -> std::io::Result<Periodic> {
        let (stop, stopped) = bounded::<()>(0);
        let thread = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                // Dropping the sender disconnects the channel, which ends the wait at once.
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(interval) {
                    work();
                }
            })?;
        Ok(Periodic {
            stop: Some(stop),
            thread: Some(thread),
        })
    }
}

impl Drop for Periodic {
    fn drop(&mut self) {
        self.stop.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
