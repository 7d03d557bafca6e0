//! Listing the audio inputs and outputs and the setups they accept.

use std::fmt;

use cpal::traits::{DeviceTrait, HostTrait};

use super::{device_name, host, DeviceConfig, SampleFormat};
use crate::error::{DeviceError, Error};

/// A range of setups a device accepts: one channel count and sample encoding over a range
/// of rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFormat {
    /// Interleaved channels.
    pub channels: u16,
    /// Lowest rate, Hz.
    pub min_rate: u32,
    /// Highest rate, Hz.
    pub max_rate: u32,
    /// Encoding of each sample.
    pub sample_format: SampleFormat,
}

/// An audio input or output as [`list_devices`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// The name to open it by (ALSA's PCM name on Linux, such as `default` or `hw:CARD=0,DEV=0`).
    pub name: String,
    /// What the system says it is.
    pub description: String,
    /// True for the system's default device of its direction.
    pub default: bool,
    /// The setup duet opens it with; `None` when it cannot be opened now.
    pub native: Option<DeviceConfig>,
    /// Every setup it accepts (empty when it cannot be opened now).
    pub formats: Vec<DeviceFormat>,
}

impl fmt::Display for DeviceInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.name)?;
        if self.default {
            write!(f, " (default)")?;
        }
        if !self.description.is_empty() && self.description != self.name {
            write!(f, ": {}", self.description)?;
        }
        match &self.native {
            Some(native) => write!(f, "; opens as {native}")?,
            None => write!(f, "; cannot be opened now")?,
        }
        let channels = self.formats.iter().map(|r| r.channels);
        let (Some(min_ch), Some(max_ch)) = (channels.clone().min(), channels.max()) else {
            return Ok(());
        };
        let min_rate = self.formats.iter().map(|r| r.min_rate).min().unwrap_or(0);
        let max_rate = self.formats.iter().map(|r| r.max_rate).max().unwrap_or(0);
        let mut encodings: Vec<SampleFormat> = Vec::new();
        for r in &self.formats {
            if !encodings.contains(&r.sample_format) {
                encodings.push(r.sample_format);
            }
        }
        let encodings: Vec<String> = encodings.iter().map(ToString::to_string).collect();
        write!(
            f,
            "; accepts {min_ch}-{max_ch} ch, {min_rate}-{max_rate} Hz, {}",
            encodings.join("/")
        )
    }
}

/// The audio inputs and outputs of this machine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    /// Devices that can capture.
    pub inputs: Vec<DeviceInfo>,
    /// Devices that can play.
    pub outputs: Vec<DeviceInfo>,
}

/// Lists the audio inputs and outputs with the setups they accept. Listing opens each device
/// briefly; one that cannot be opened is listed without formats. No devices is an empty list.
pub fn list_devices() -> Result<DeviceList, Error> {
    let host = host()?;
    let default_in = host.default_input_device().and_then(|d| d.id().ok());
    let default_out = host.default_output_device().and_then(|d| d.id().ok());
    let enumerate = |e: cpal::Error| DeviceError::Open {
        kind: "audio host",
        name: host.id().name().to_string(),
        reason: e.to_string(),
    };
    let inputs = host
        .input_devices()
        .map_err(enumerate)?
        .map(|d| describe(&d, true, default_in.as_ref()))
        .collect();
    let outputs = host
        .output_devices()
        .map_err(enumerate)?
        .map(|d| describe(&d, false, default_out.as_ref()))
        .collect();
    Ok(DeviceList { inputs, outputs })
}

fn describe(device: &cpal::Device, input: bool, default: Option<&cpal::DeviceId>) -> DeviceInfo {
    let ranges = if input {
        device
            .supported_input_configs()
            .map(|r| r.collect::<Vec<_>>())
    } else {
        device
            .supported_output_configs()
            .map(|r| r.collect::<Vec<_>>())
    };
    let native = if input {
        device.default_input_config()
    } else {
        device.default_output_config()
    };
    DeviceInfo {
        name: device_name(device),
        description: device
            .description()
            .map(|d| d.name().to_string())
            .unwrap_or_default(),
        default: default.is_some_and(|id| device.id().ok().as_ref() == Some(id)),
        native: native.ok().map(|c| DeviceConfig {
            sample_rate: c.sample_rate(),
            channels: c.channels(),
            sample_format: c.sample_format(),
        }),
        formats: ranges
            .unwrap_or_default()
            .into_iter()
            .map(|r| DeviceFormat {
                channels: r.channels(),
                min_rate: r.min_sample_rate(),
                max_rate: r.max_sample_rate(),
                sample_format: r.sample_format(),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_info_prints_on_one_line() {
        let info = DeviceInfo {
            name: "hw:CARD=0,DEV=0".into(),
            description: "HDA Intel PCH, ALC257 Analog".into(),
            default: true,
            native: Some(DeviceConfig {
                sample_rate: 48_000,
                channels: 2,
                sample_format: SampleFormat::I16,
            }),
            formats: vec![
                DeviceFormat {
                    channels: 2,
                    min_rate: 44_100,
                    max_rate: 192_000,
                    sample_format: SampleFormat::I16,
                },
                DeviceFormat {
                    channels: 4,
                    min_rate: 8_000,
                    max_rate: 48_000,
                    sample_format: SampleFormat::I32,
                },
            ],
        };
        assert_eq!(
            info.to_string(),
            "hw:CARD=0,DEV=0 (default): HDA Intel PCH, ALC257 Analog; opens as 2 ch, 48000 Hz, i16; \
             accepts 2-4 ch, 8000-192000 Hz, i16/i32"
        );
        let closed = DeviceInfo {
            native: None,
            formats: Vec::new(),
            default: false,
            ..info
        };
        assert_eq!(
            closed.to_string(),
            "hw:CARD=0,DEV=0: HDA Intel PCH, ALC257 Analog; cannot be opened now"
        );
    }
}
