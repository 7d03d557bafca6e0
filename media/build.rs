//! Refuses to build duet-media on x86 when `nasm` is missing.
//!
//! openh264's build compiles its SIMD assembly with nasm and, when nasm cannot be found, quietly
//! falls back to plain C: H.264 encode and decode then cost two to three times as much. duet does
//! not run that slow path silently. `scripts/setup.sh` installs nasm; setting `OPENH264_NO_ASM`
//! asks for the plain C build on purpose.

use std::process::{Command, ExitCode};

fn main() -> ExitCode {
    println!("cargo::rerun-if-env-changed=NASM");
    println!("cargo::rerun-if-env-changed=OPENH264_NO_ASM");
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    if arch != "x86_64" && arch != "x86" {
        return ExitCode::SUCCESS;
    }
    if std::env::var_os("OPENH264_NO_ASM").is_some() {
        println!(
            "cargo::warning=OPENH264_NO_ASM is set: openh264 is built without its SIMD assembly \
             (H.264 encode and decode 2-3x slower)"
        );
        return ExitCode::SUCCESS;
    }
    let nasm = std::env::var_os("NASM").unwrap_or_else(|| "nasm".into());
    match Command::new(&nasm).arg("-v").output() {
        Ok(out) if out.status.success() => ExitCode::SUCCESS,
        _ => {
            eprintln!(
                "error: `{}` was not found or does not run. openh264 needs nasm for its SIMD \
                 assembly and would otherwise fall back to plain C, 2-3x slower. Install it with \
                 `scripts/setup.sh` (Debian package `nasm`), or set OPENH264_NO_ASM=1 to build the \
                 slow path on purpose.",
                nasm.to_string_lossy()
            );
            ExitCode::FAILURE
        }
    }
}
