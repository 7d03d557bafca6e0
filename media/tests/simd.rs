//! openh264 is linked with its SIMD assembly, not the plain C fallback that a build without nasm
//! gets silently (2-3x slower encode and decode).

#[cfg(any(target_arch = "x86_64", target_arch = "x86"))]
#[test]
fn openh264_is_linked_with_its_simd_assembly() {
    use duet_media::codec::h264::{H264Config, H264Encoder};
    use std::process::Command;

    if std::env::var_os("OPENH264_NO_ASM").is_some() {
        eprintln!("skipped: OPENH264_NO_ASM asks for openh264 without its assembly");
        return;
    }
    // Creating an encoder runs openh264's CPU feature detection, which keeps the assembly's
    // `WelsCPUId` in the test binary when openh264 was built with it.
    let encoder = H264Encoder::new(H264Config {
        width: 64,
        height: 64,
        bitrate_bps: 100_000,
        fps: 30.0,
        keyframe_interval: 0,
    });
    assert!(encoder.is_ok(), "openh264 encoder: {:?}", encoder.err());

    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new("nm")
        .arg(&exe)
        .output()
        .expect("`nm` (binutils) lists the test binary's symbols");
    assert!(out.status.success(), "nm failed on {}", exe.display());
    let symbols = String::from_utf8_lossy(&out.stdout);
    let has = |name: &str| {
        symbols
            .lines()
            .any(|l| l.split_whitespace().last() == Some(name))
    };
    assert!(
        has("WelsCPUId") && has("WelsSampleSad16x16_sse2"),
        "openh264 was compiled without its SIMD assembly (nasm missing when it was built): \
         run scripts/setup.sh, then `cargo clean -p openh264-sys2` and build again"
    );
}
