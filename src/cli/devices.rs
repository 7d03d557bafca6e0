//! `duet devices`: the microphones, speakers and cameras duet can open.

use anyhow::{Context, Result};

/// Lists audio inputs and outputs (with their native formats) and cameras.
pub fn run() -> Result<()> {
    let list = duet_media::audio::device::list_devices().context("listing audio devices")?;
    print_audio("Audio inputs", &list.inputs);
    print_audio("Audio outputs", &list.outputs);
    print_cameras();
    Ok(())
}

fn print_audio(title: &str, devices: &[duet_media::audio::device::DeviceInfo]) {
    println!("{title}:");
    if devices.is_empty() {
        println!("  none found");
    }
    for d in devices {
        println!("  {d}");
    }
}

#[cfg(feature = "webcam")]
fn print_cameras() {
    println!("Cameras:");
    match duet_media::video::webcam::list_cameras() {
        Ok(cams) if cams.is_empty() => println!("  none found"),
        Ok(cams) => {
            for c in cams {
                println!("  [{}] {} ({})", c.index, c.name, c.description);
            }
        }
        Err(e) => println!("  cannot list cameras: {e}"),
    }
}

#[cfg(not(feature = "webcam"))]
fn print_cameras() {
    println!("Cameras:\n  webcam support is not built in (build with the `webcam` feature)");
}
