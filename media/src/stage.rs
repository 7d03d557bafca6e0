//! Threads that run one stage of a media path in real time: start one under a name, pace it
//! against the clock, join it with a panic turned into an error.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::Error;

/// Sleeps until `deadline` (returns at once if it has passed).
pub(crate) fn sleep_until(deadline: Instant) {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return;
        }
        thread::sleep(deadline - now);
    }
}

/// Starts one stage of a path on a thread of its own, named `name`.
pub(crate) fn spawn<T: Send + 'static>(
    name: &str,
    body: impl FnOnce() -> Result<T, Error> + Send + 'static,
) -> Result<JoinHandle<Result<T, Error>>, Error> {
    thread::Builder::new()
        .name(name.into())
        .spawn(body)
        .map_err(|e| Error::Config(format!("cannot start the {name} thread: {e}")))
}

/// Joins a stage thread, turning a panic inside it into an error.
pub(crate) fn join<T>(handle: JoinHandle<Result<T, Error>>, stage: &str) -> Result<T, Error> {
    handle
        .join()
        .map_err(|_| Error::Config(format!("the {stage} stage panicked")))?
}

/// A duration in milliseconds, for reports.
pub(crate) fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
