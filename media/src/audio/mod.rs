//! Audio sources and sinks: microphone and speaker (cpal), tone, WAV files, silence, sources
//! anchored to the wall clock and the meter that hears their latency.

use std::time::{Duration, Instant};

use crate::audio::reference::EchoReference;
use crate::error::Error;
use crate::frame::{AudioFormat, AudioFrame, Read};

pub mod anchor;
pub mod device;
pub mod meter;
pub mod process;
pub mod reference;
pub mod resample;
pub mod room;
pub mod speakerphone;
pub mod synth;
pub mod wav;

/// Something that produces 48 kHz audio frames: a microphone, a tone, a file.
///
/// Sources are not paced: a file or a tone returns the next frame at once, and the caller
/// decides when to ask. A device source returns [`Read::Pending`] until a whole frame is buffered.
pub trait AudioSource: Send {
    /// The format of every frame this source fills.
    fn format(&self) -> AudioFormat;

    /// Fills `frame` (resized as needed) with the next frame. `now` is the time of the call;
    /// the source sets `frame.capture` to when its first sample was captured and `frame.seq`.
    fn read(&mut self, now: Instant, frame: &mut AudioFrame) -> Result<Read, Error>;

    /// True for a device that captures in real time (its reads are paced by the hardware);
    /// false for a synthetic or file source, which the caller paces.
    fn is_live(&self) -> bool {
        false
    }

    /// How much earlier than its raw samples the source stamps each frame's capture time:
    /// the delay of its own processing, whose output lags its input. A frame read at `t`
    /// then carries audio captured before `t - processing_delay`, and a caller pacing a
    /// source that is not live releases the frame at `frame.capture + processing_delay +`
    /// its duration, when its raw samples exist. Zero by default.
    fn processing_delay(&self) -> Duration {
        Duration::ZERO
    }

    /// For a microphone that knows what its own speaker plays and when (a simulated room):
    /// keeps `reference` and feeds it every sample the speaker plays as it plays it, in step
    /// with what the microphone captures. Any other source gives it back (the default), and
    /// the caller feeds it with what it hands to the speaker.
    fn feed_echo_reference(&mut self, reference: EchoReference) -> Option<EchoReference> {
        Some(reference)
    }
}

/// Something that consumes 48 kHz audio frames: a speaker, a WAV file, nothing.
pub trait AudioSink: Send {
    /// Takes one frame. `now` is the time of the call.
    fn write(&mut self, now: Instant, frame: &AudioFrame) -> Result<(), Error>;

    /// Flushes and closes (a file's header is written here). Called once at the end.
    fn finish(&mut self) -> Result<(), Error> {
        Ok(())
    }
}

/// A sink that discards every frame.
#[derive(Debug, Default)]
pub struct NullAudioSink {
    /// Frames written so far.
    pub frames: u64,
}

impl AudioSink for NullAudioSink {
    fn write(&mut self, _now: Instant, _frame: &AudioFrame) -> Result<(), Error> {
        self.frames += 1;
        Ok(())
    }
}
