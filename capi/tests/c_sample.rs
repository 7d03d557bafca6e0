//! The C sample, `samples/c/call.c`, built with the system C compiler against the generated
//! header and the shared library cargo built for these tests, then run: two calls in one
//! process carry each other's signals, connect, exchange a tone and the test pattern for
//! about three seconds, print their stats and hang up.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Longest the sample may run (it needs about four seconds).
const RUN_LIMIT: Duration = Duration::from_secs(60);

/// The folder holding `libduet_capi.so` (or `.dylib`): beside this test executable, in
/// `deps/`, or the profile folder above it, wherever `CARGO_TARGET_DIR` put them.
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("the test knows its own path");
    let name = format!(
        "{}duet_capi{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_SUFFIX
    );
    exe.ancestors()
        .skip(1)
        .take(2)
        .find(|dir| dir.join(&name).is_file())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| panic!("{name} is not beside {} or above it", exe.display()))
}

/// The JSON printed after `label` on a line of `stdout`.
fn stats(stdout: &str, label: &str) -> serde_json::Value {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix(label))
        .unwrap_or_else(|| panic!("no `{label}` line in:\n{stdout}"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{label} is not JSON ({e}): {line}"))
}

#[test]
fn the_c_sample_connects_two_calls_and_media_flows() {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = manifest.join("../samples/c/call.c");
    let lib_dir = library_dir();
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("duet_c_call");
    let compiler = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let built = Command::new(&compiler)
        .arg("-std=c11")
        .arg("-Wall")
        .arg("-Wextra")
        .arg("-Werror")
        .arg(&source)
        .arg("-I")
        .arg(env!("OUT_DIR"))
        .arg("-L")
        .arg(&lib_dir)
        .arg("-lduet_capi")
        .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap_or_else(|e| panic!("cannot run the C compiler `{compiler}`: {e}"));
    assert!(
        built.status.success(),
        "{compiler} failed on {}:\n{}",
        source.display(),
        String::from_utf8_lossy(&built.stderr)
    );

    let mut child = Command::new(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sample starts");
    let started = Instant::now();
    while child
        .try_wait()
        .expect("the sample can be waited for")
        .is_none()
    {
        if started.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            panic!("the sample ran longer than {RUN_LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(50));
    }
    let output = child.wait_with_output().expect("the sample's output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the sample failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    assert!(stdout.contains("connected: yes"), "{stdout}");
    assert!(
        stdout.contains("after hang-up: caller ended, callee ended"),
        "{stdout}"
    );

    let callee = stats(&stdout, "callee stats: ");
    let caller = stats(&stdout, "caller stats: ");
    for (side, figures) in [("callee", &callee), ("caller", &caller)] {
        assert_eq!(figures["state"], "connected", "{side}: {figures}");
        let decoded = figures["video_received"]["frames_decoded"].as_u64();
        let played = figures["audio_received"]["periods_played"].as_u64();
        let sent = figures["sent"]["video_frames"].as_u64();
        assert!(decoded > Some(0), "{side} decoded no video: {figures}");
        assert!(played > Some(0), "{side} played no audio: {figures}");
        assert!(sent > Some(0), "{side} sent no video: {figures}");
        assert!(
            figures["transport"]["packets_received"].as_u64() > Some(0),
            "{side}: {figures}"
        );
    }
}
