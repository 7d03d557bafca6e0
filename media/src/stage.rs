//! Threads that run one stage of a media path in real time: start one under a name, pace it
//! against the clock, join it with a panic turned into an error.

use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use thread_priority::ThreadSchedulePolicy;

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

/// What scheduling a thread got from [`prioritize_audio`] or [`prioritize_network`] (for its
/// log line).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Granted {
    /// Real-time round-robin scheduling.
    Realtime,
    /// A raised priority (nice -10).
    Raised,
    /// The scheduling it had (the system refused a change).
    Unchanged,
}

/// Real-time priority asked for audio threads (1 to 99): low among real-time threads, above
/// every normal one.
const AUDIO_REALTIME_PRIORITY: u8 = 10;
/// The `ThreadPriorityValue` the crate maps to nice -10 under normal scheduling.
const RAISED: u8 = 73;

/// Gives the calling audio thread (sending or playing audio every 10 to 20 ms, where a thread
/// kept waiting is a late packet or a gap at the speaker) precedence over the rest of the
/// machine: real-time round-robin scheduling, as the audio threads of libwebrtc and of the
/// sound servers have, or else a raised priority. Both need privileges (root, `CAP_SYS_NICE`,
/// or an `RLIMIT_RTPRIO` / `RLIMIT_NICE` the user was granted); without them the thread keeps
/// what it has. Called once, when the thread starts.
pub(crate) fn prioritize_audio() {
    use thread_priority::{NormalThreadSchedulePolicy, RealtimeThreadSchedulePolicy};
    let realtime = ThreadSchedulePolicy::Realtime(RealtimeThreadSchedulePolicy::RoundRobin);
    let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    let granted = if set_priority(AUDIO_REALTIME_PRIORITY, realtime) {
        Granted::Realtime
    } else if set_priority(RAISED, normal) {
        Granted::Raised
    } else {
        Granted::Unchanged
    };
    tracing::debug!("audio thread scheduling: {granted:?}");
}

/// Raises the calling thread's priority (nice -10, normal scheduling) where the system allows
/// it, for the threads that move a call's packets between the sockets and the media threads:
/// on a busy machine a thread at the default priority waits its turn behind every other job,
/// and each wait is a late packet. Unlike [`prioritize_audio`], never real-time: these threads
/// also run work of any length. Called once, when the thread starts.
pub(crate) fn prioritize_network() {
    use thread_priority::NormalThreadSchedulePolicy;
    let normal = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Other);
    let granted = if set_priority(RAISED, normal) {
        Granted::Raised
    } else {
        Granted::Unchanged
    };
    tracing::debug!("network thread scheduling: {granted:?}");
}

fn set_priority(value: u8, policy: ThreadSchedulePolicy) -> bool {
    use thread_priority::{
        set_thread_priority_and_policy, thread_native_id, ThreadPriority, ThreadPriorityValue,
    };
    ThreadPriorityValue::try_from(value).is_ok_and(|value| {
        let priority = ThreadPriority::Crossplatform(value);
        set_thread_priority_and_policy(thread_native_id(), priority, policy).is_ok()
    })
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
