//! Codecs: Opus for audio, H.264 (constrained baseline, on openh264) for video.

pub mod h264;
pub mod opus;
