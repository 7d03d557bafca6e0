//! The in-process loopback without a network: each medium's call sender (capture, pace,
//! encode) hands its frames straight to a decoder and a sink on threads of their own.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::{audio, rss_mb, video, DirectFigures, DirectLive};
use super::{LoopbackConfig, LoopbackReport, MemoryReport};
use crate::call::pump::{Live, Window};
use crate::error::Error;

/// Runs the loopback for `config.duration` (or until every source ends) and reports.
///
/// Sources are paced in real time unless they are live devices, which pace themselves.
pub fn run(config: LoopbackConfig) -> Result<LoopbackReport, Error> {
    run_with_live(config, None)
}

/// [`run`], sending the figures so far to `live` once a second while it runs.
pub fn run_with_live(
    config: LoopbackConfig,
    live: Option<Sender<DirectFigures>>,
) -> Result<LoopbackReport, Error> {
    if config.audio.is_none() && config.video.is_none() {
        return Err(Error::Config(
            "nothing to run: no audio and no video".into(),
        ));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let start = config.start;
    let rss_start = rss_mb();
    let counters = Arc::new(DirectLive::default());
    let sent = Arc::new(Live::default());
    let window = Window {
        from: start,
        until: Some(start + config.duration),
    };

    let audio = config
        .audio
        .map(|a| audio::spawn(a, window, stop.clone(), sent.clone(), counters.clone()))
        .transpose()?;
    let video = config
        .video
        .map(|v| video::spawn(v, window, stop.clone(), sent.clone(), counters.clone()))
        .transpose()?;

    let end = start + config.duration;
    let ten = start + Duration::from_secs(10);
    let mut rss_10s = None;
    let mut report_due = start + Duration::from_secs(1);
    let mut last_latency = (0, 0);
    loop {
        let now = Instant::now();
        if rss_10s.is_none() && now >= ten {
            rss_10s = Some(rss_mb());
        }
        if let Some(to) = live.as_ref().filter(|_| now >= report_due) {
            report_due += Duration::from_secs(1);
            // Nobody listening is no reason to stop the run.
            let _ = to.send(counters.figures(sent.counters(), &mut last_latency));
        }
        let sources_done = audio.as_ref().is_none_or(|a| a.is_finished())
            && video.as_ref().is_none_or(|v| v.is_finished());
        if now >= end || sources_done {
            break;
        }
        thread::sleep(Duration::from_millis(20).min(end.saturating_duration_since(now)));
    }
    let rss_end = rss_mb();
    stop.store(true, Ordering::Relaxed);
    let seconds = start.elapsed().as_secs_f64();

    let audio = audio.map(|a| a.join()).transpose()?;
    let video = video.map(|v| v.join()).transpose()?;
    Ok(LoopbackReport {
        seconds,
        audio,
        video,
        memory: MemoryReport {
            rss_start_mb: rss_start,
            rss_10s_mb: rss_10s,
            rss_end_mb: rss_end,
        },
        network: None,
    })
}
