//! The webcam on a machine without one: listing finds nothing and opening says so plainly.
#![cfg(feature = "webcam")]

use duet_media::video::webcam::{list_cameras, Webcam};
use duet_media::{DeviceError, Error};

/// Camera nodes as V4L2 lists them (none on CI machines).
fn video_nodes() -> usize {
    std::fs::read_dir("/dev")
        .map(|dir| {
            dir.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("video"))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn list_matches_the_video_devices() {
    let cameras = list_cameras().expect("listing cameras never fails for lack of one");
    if cfg!(target_os = "linux") {
        assert_eq!(cameras.len(), video_nodes(), "{cameras:?}");
    }
}

#[test]
fn opening_a_missing_camera_names_it() {
    // Camera 0 on a machine without cameras; otherwise an index past the last one.
    let index = list_cameras()
        .unwrap()
        .iter()
        .map(|c| c.index + 1)
        .max()
        .unwrap_or(0);
    let e = Webcam::open(index, 640, 480, 30).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Device(DeviceError::NotFound { kind: "camera", .. })
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        format!("no camera found named \"camera {index}\"")
    );
    assert!(!e.is_recoverable());
}

#[test]
fn bad_requests_fail_before_any_device_is_touched() {
    let e = Webcam::open(0, 641, 480, 30).unwrap_err();
    assert!(e.to_string().contains("641x480"), "{e}");
    let e = Webcam::open(0, 640, 480, 0).unwrap_err();
    assert!(e.to_string().contains("0 fps"), "{e}");
}
