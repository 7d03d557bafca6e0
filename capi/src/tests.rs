//! The C functions' error paths, called as C would: NULL pointers, text that is not UTF-8 or
//! not JSON, signals the call cannot apply. Each is an error return with a message, never a
//! panic, and the call stays usable.

use std::ffi::{CStr, CString};
use std::ptr;

use super::*;

/// The last error of this thread, as Rust text.
fn last_error() -> Option<String> {
    let text = duet_last_error();
    if text.is_null() {
        return None;
    }
    // SAFETY: a non-NULL pointer from duet_last_error is a NUL-terminated string valid until
    // the next duet call on this thread; it is copied at once.
    let message = unsafe { CStr::from_ptr(text) };
    Some(message.to_string_lossy().into_owned())
}

/// Takes a string duet returned, freeing it.
fn take(text: *mut c_char) -> Option<String> {
    if text.is_null() {
        return None;
    }
    // SAFETY: `text` is a live string returned by duet; it is copied, then freed once.
    let copy = unsafe { CStr::from_ptr(text) }
        .to_string_lossy()
        .into_owned();
    // SAFETY: as above; not used afterwards.
    unsafe { duet_string_free(text) };
    Some(copy)
}

/// A call with audio only (lighter), or the message why it could not be made.
fn new_call(options: &str) -> Result<*mut DuetCall, String> {
    let options = CString::new(options).unwrap();
    let mut error = ptr::null_mut();
    // SAFETY: a valid C string and a writable error slot.
    let call = unsafe { duet_call_new(options.as_ptr(), &mut error) };
    if call.is_null() {
        Err(take(error).unwrap_or_default())
    } else {
        assert!(error.is_null(), "no error string on success");
        Ok(call)
    }
}

fn handle(call: *mut DuetCall, json: &str) -> DuetStatus {
    let json = CString::new(json).unwrap();
    // SAFETY: a live call and a valid C string.
    unsafe { duet_call_handle_signal(call, json.as_ptr()) }
}

#[test]
fn null_pointers_are_errors_not_crashes() {
    let signal = CString::new(r#"{"type":"end","reason":"x"}"#).unwrap();
    // SAFETY: every function is documented to accept NULL for the call.
    unsafe {
        assert_eq!(duet_call_start(ptr::null_mut()), DuetStatus::NullArgument);
        assert_eq!(last_error().as_deref(), Some("the call is NULL"));
        assert!(duet_call_poll_signal(ptr::null_mut(), 0).is_null());
        assert_eq!(last_error().as_deref(), Some("the call is NULL"));
        assert_eq!(
            duet_call_handle_signal(ptr::null_mut(), signal.as_ptr()),
            DuetStatus::NullArgument
        );
        assert_eq!(duet_call_state(ptr::null_mut()), DuetCallState::Ended);
        assert_eq!(last_error().as_deref(), Some("the call is NULL"));
        assert!(duet_call_stats_json(ptr::null_mut()).is_null());
        assert_eq!(
            duet_call_hang_up(ptr::null_mut(), ptr::null()),
            DuetStatus::NullArgument
        );
        duet_call_free(ptr::null_mut());
        duet_string_free(ptr::null_mut());
        // Freeing keeps the message for the app to read.
        assert_eq!(last_error().as_deref(), Some("the call is NULL"));
    }
}

#[test]
fn bad_options_give_no_call_and_say_why() {
    for (options, needle) in [
        ("{", "call options"),
        ("[1, 2]", "invalid type"),
        (r#"{"widht":640}"#, "unknown field `widht`"),
        (r#"{"audio":false,"video":false}"#, "audio, video or both"),
        (r#"{"bind":"not an address"}"#, "bind address"),
    ] {
        let message = new_call(options).unwrap_err();
        assert!(message.contains(needle), "{options}: {message}");
        assert_eq!(last_error().as_deref(), Some(message.as_str()));
    }
    let not_utf8 = [b'{', 0xff, b'}', 0];
    // SAFETY: a NUL-terminated byte string; NULL for error_out is allowed.
    let call = unsafe { duet_call_new(not_utf8.as_ptr().cast(), ptr::null_mut()) };
    assert!(call.is_null());
    assert!(last_error().unwrap().contains("not valid UTF-8"));
}

#[test]
fn bad_signals_are_refused_and_the_call_goes_on() {
    let call = new_call(r#"{"video":false}"#).unwrap();
    let mut error = ptr::null_mut();
    for (json, status, needle) in [
        ("not json", DuetStatus::InvalidArgument, "not a duet signal"),
        (r#"{"type":"bogus"}"#, DuetStatus::InvalidArgument, "bogus"),
        (r#"{"type":"offer"}"#, DuetStatus::InvalidArgument, "sdp"),
        (
            r#"{"type":"offer","sdp":"v=0\r\nthis is not SDP"}"#,
            DuetStatus::Rejected,
            "offer",
        ),
        (
            r#"{"type":"answer","sdp":"v=0\r\n"}"#,
            DuetStatus::Rejected,
            "no offer was made",
        ),
    ] {
        assert_eq!(handle(call, json), status, "{json}");
        let message = last_error().unwrap();
        assert!(message.contains(needle), "{json}: {message}");
    }
    let not_utf8 = [b'"', 0xc3, 0x28, b'"', 0];
    // SAFETY: a live call and NUL-terminated bytes; NULL signal text is allowed.
    unsafe {
        assert_eq!(
            duet_call_handle_signal(call, not_utf8.as_ptr().cast()),
            DuetStatus::InvalidArgument
        );
        assert_eq!(
            duet_call_handle_signal(call, ptr::null()),
            DuetStatus::NullArgument
        );
        assert_eq!(last_error().as_deref(), Some("signal_json is NULL"));
        assert_eq!(duet_call_state(call), DuetCallState::Connecting);
        // Nothing to carry yet: NULL, and no error.
        assert!(duet_call_poll_signal(call, 0).is_null());
        assert_eq!(last_error(), None);
        duet_call_free(call);
    }
    // The error slot of a successful call is cleared.
    let options = CString::new("{}").unwrap();
    // SAFETY: a valid C string and a writable error slot.
    let call = unsafe { duet_call_new(options.as_ptr(), &mut error) };
    assert!(!call.is_null() && error.is_null());
    // SAFETY: a live call, freed once.
    unsafe { duet_call_free(call) };
}

#[test]
fn the_offer_then_the_hang_up_come_out_as_signals() {
    let call = new_call(r#"{"video":false}"#).unwrap();
    // SAFETY: a live call, used on this thread and freed once at the end.
    unsafe {
        assert_eq!(duet_call_start(call), DuetStatus::Ok);
        let offer = take(duet_call_poll_signal(call, 2000)).expect("the offer");
        let value: serde_json::Value = serde_json::from_str(&offer).unwrap();
        assert_eq!(value["type"], "offer");
        assert!(value["sdp"].as_str().unwrap().contains("opus/48000/2"));
        // A second start is refused.
        assert_eq!(duet_call_start(call), DuetStatus::Rejected);
        assert!(last_error().unwrap().contains("already"));

        assert_eq!(duet_call_hang_up(call, ptr::null()), DuetStatus::Ok);
        assert_eq!(duet_call_state(call), DuetCallState::Ended);
        // Candidates may come before the end; the end is the last signal.
        let mut last = None;
        while let Some(signal) = take(duet_call_poll_signal(call, 2000)) {
            last = Some(signal);
        }
        assert_eq!(
            last.as_deref(),
            Some(r#"{"type":"end","reason":"hang-up"}"#)
        );
        assert_eq!(last_error(), None);
        // Once over, waiting without a limit returns at once.
        assert!(duet_call_poll_signal(call, -1).is_null());

        let stats = take(duet_call_stats_json(call)).expect("stats");
        let value: serde_json::Value = serde_json::from_str(&stats).unwrap();
        assert_eq!(value["state"], "ended");
        assert_eq!(value["end_reason"], "hung up (hang-up)");
        assert_eq!(value["sent"]["audio_frames"], 0);
        duet_call_free(call);
    }
}

#[test]
fn a_call_may_be_used_from_several_threads() {
    fn send_and_sync<T: Send + Sync>() {}
    send_and_sync::<DuetCall>();
}

#[test]
fn calling_from_inside_a_tokio_runtime_is_an_error_not_a_panic() {
    let made_outside = new_call(r#"{"video":false}"#).unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Inside the runtime: creating a call is refused, and says why.
        let refused = new_call(r#"{"video":false}"#).expect_err("no call inside a runtime");
        assert!(refused.contains("inside a tokio runtime"), "{refused}");
        assert!(!refused.contains("internal error"), "{refused}");
        // SAFETY: a live call, used on this thread, freed once below.
        unsafe {
            assert_eq!(duet_call_start(made_outside), DuetStatus::Rejected);
            let message = last_error().unwrap();
            assert!(message.contains("inside a tokio runtime"), "{message}");
            assert_eq!(
                handle(made_outside, r#"{"type":"end","reason":"bye"}"#),
                DuetStatus::Rejected
            );
            // What does not wait still works, and freeing closes the call.
            assert!(take(duet_call_stats_json(made_outside)).is_some());
            assert_eq!(last_error(), None);
            assert_eq!(duet_call_hang_up(made_outside, ptr::null()), DuetStatus::Ok);
            duet_call_free(made_outside);
        }
    });
}

/// Passes every signal waiting on either side to the other, for up to `rounds` rounds.
fn exchange(a: *mut DuetCall, b: *mut DuetCall, rounds: usize) {
    for _ in 0..rounds {
        // SAFETY: two live calls, used on this thread.
        let connected = unsafe {
            for (from, to) in [(a, b), (b, a)] {
                while let Some(signal) = take(duet_call_poll_signal(from, 20)) {
                    assert_eq!(handle(to, &signal), DuetStatus::Ok, "{signal}");
                }
            }
            duet_call_state(a) == DuetCallState::Connected
                && duet_call_state(b) == DuetCallState::Connected
        };
        if connected {
            return;
        }
    }
    panic!("the two calls did not connect");
}

#[test]
fn audio_processing_is_asked_for_in_the_options_and_reports_its_figures() {
    let options = r#"{"video":false,"aec":true,"ns":true,"agc":false}"#;
    let caller = new_call(options).unwrap();
    let callee = new_call(r#"{"video":false}"#).unwrap();
    // SAFETY: live calls, used on this thread and freed once at the end.
    unsafe {
        assert_eq!(duet_call_start(caller), DuetStatus::Ok);
        exchange(caller, callee, 500);
        std::thread::sleep(std::time::Duration::from_millis(1500));
        let figures = |call| {
            let text = take(duet_call_stats_json(call)).expect("stats");
            serde_json::from_str::<serde_json::Value>(&text).unwrap()
        };
        let processed = figures(caller);
        let p = &processed["processing"];
        // The tone sent went through the stage, and what came back was its echo reference.
        assert!(p["capture_chunks"].as_u64().unwrap() > 50, "{processed}");
        assert!(p["render_chunks"].as_u64().unwrap() > 50, "{processed}");
        assert!(figures(callee)["processing"].is_null());
        duet_call_free(caller);
        duet_call_free(callee);
    }
}
