//! Errors across the C boundary: the status codes functions return, the per-thread message
//! of the last failure ([`duet_last_error`](crate::duet_last_error)), and the guard that turns
//! a panic into an error return instead of letting it cross into C.

use std::any::Any;
use std::cell::RefCell;
use std::ffi::{CStr, CString};
use std::fmt;
use std::os::raw::c_char;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// What a duet function that can fail returns: `DUET_STATUS_OK` (0) on success, a negative
/// value on failure, with the message from `duet_last_error()`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DuetStatus {
    /// It worked.
    Ok = 0,
    /// A pointer argument that must not be NULL was NULL.
    NullArgument = -1,
    /// An argument was not usable: not UTF-8, not the JSON expected, or a value out of range.
    InvalidArgument = -2,
    /// The call refused the request: a signal that cannot be applied (bad SDP or candidate,
    /// an answer without an offer), a call started twice, or a call that has ended.
    Rejected = -3,
    /// Something failed inside duet (a thread or runtime that would not start, or a bug);
    /// the call may be unusable.
    Internal = -4,
}

/// A failure on the Rust side of a C function: the status it returns and the message it
/// leaves for `duet_last_error()`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    pub status: DuetStatus,
    pub message: String,
}

impl Failure {
    /// A NULL pointer where `what` was expected.
    pub fn null(what: &str) -> Self {
        Self {
            status: DuetStatus::NullArgument,
            message: format!("{what} is NULL"),
        }
    }

    /// An argument that cannot be used.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: DuetStatus::InvalidArgument,
            message: message.into(),
        }
    }

    /// A request the call refused.
    pub fn rejected(message: impl Into<String>) -> Self {
        Self {
            status: DuetStatus::Rejected,
            message: message.into(),
        }
    }

    /// A failure inside duet.
    pub fn internal(message: impl Into<String>) -> Self {
        Self {
            status: DuetStatus::Internal,
            message: message.into(),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

thread_local! {
    /// The message of the last failure of a duet function on this thread.
    static LAST_ERROR: RefCell<Option<CString>> = const { RefCell::new(None) };
}

/// Forgets the last failure of this thread: every entry point starts with this.
fn clear_last_error() {
    LAST_ERROR.with(|e| *e.borrow_mut() = None);
}

/// Notes `message` as this thread's last failure.
pub(crate) fn set_last_error(message: &str) {
    let text = c_string_lossy(message);
    LAST_ERROR.with(|e| *e.borrow_mut() = Some(text));
}

/// This thread's last failure message, a pointer that stays valid until the next duet call on
/// this thread; NULL when the last call succeeded.
pub(crate) fn last_error_ptr() -> *const c_char {
    LAST_ERROR.with(|e| {
        e.borrow()
            .as_ref()
            .map_or(std::ptr::null(), |text| text.as_ptr())
    })
}

/// A copy of this thread's last failure message that C owns (free it with
/// `duet_string_free`); NULL when the last call succeeded.
pub(crate) fn last_error_copy() -> *mut c_char {
    LAST_ERROR.with(|e| {
        e.borrow()
            .as_ref()
            .map_or(std::ptr::null_mut(), |text| text.clone().into_raw())
    })
}

/// A C string of `text`, with any NUL byte (which C cannot hold) replaced.
fn c_string_lossy(text: &str) -> CString {
    CString::new(text.replace('\0', "\u{fffd}")).unwrap_or_default()
}

/// The message a panic carried.
fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_string()
    }
}

/// Runs the body of an entry point: clears the last error, catches any panic, and turns a
/// failure into its status plus the message for `duet_last_error()` (a panic is
/// [`DuetStatus::Internal`]).
fn run<T>(body: impl FnOnce() -> Result<T, Failure>) -> Result<T, DuetStatus> {
    clear_last_error();
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(failure)) => {
            set_last_error(&failure.message);
            Err(failure.status)
        }
        Err(payload) => {
            set_last_error(&format!(
                "internal error in duet: {}",
                panic_message(payload.as_ref())
            ));
            Err(DuetStatus::Internal)
        }
    }
}

/// [`run`] for functions that return a value: `fallback` (NULL, say) on any failure.
pub(crate) fn guard<T>(fallback: T, body: impl FnOnce() -> Result<T, Failure>) -> T {
    run(body).unwrap_or(fallback)
}

/// Runs `body`, catching a panic, without touching the last error: for the functions that
/// free, so that freeing a string or a call does not lose the message the app is about to
/// read.
pub(crate) fn guard_quiet(body: impl FnOnce()) {
    let _ = catch_unwind(AssertUnwindSafe(body));
}

/// [`run`] for functions that return a [`DuetStatus`].
pub(crate) fn guard_status(body: impl FnOnce() -> Result<(), Failure>) -> DuetStatus {
    match run(body) {
        Ok(()) => DuetStatus::Ok,
        Err(status) => status,
    }
}

/// Hands `text` to C as a string it owns (free it with `duet_string_free`).
pub(crate) fn owned_c_string(text: String) -> Result<*mut c_char, Failure> {
    CString::new(text)
        .map(CString::into_raw)
        .map_err(|_| Failure::internal("a returned string held a NUL byte"))
}

/// Reads the C string `text` (`what` names it in errors) as UTF-8.
///
/// # Safety
///
/// `text` is NULL or points to a NUL-terminated string that stays valid and unchanged for
/// `'a`.
pub(crate) unsafe fn read_c_str<'a>(text: *const c_char, what: &str) -> Result<&'a str, Failure> {
    if text.is_null() {
        return Err(Failure::null(what));
    }
    // SAFETY: `text` is not NULL, and the caller promises it is a NUL-terminated string that
    // lives for 'a.
    let bytes = unsafe { CStr::from_ptr(text) };
    bytes
        .to_str()
        .map_err(|e| Failure::invalid(format!("{what} is not valid UTF-8: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last() -> Option<String> {
        LAST_ERROR.with(|e| {
            e.borrow()
                .as_ref()
                .map(|t| t.to_string_lossy().into_owned())
        })
    }

    #[test]
    fn a_panic_becomes_the_fallback_and_a_message() {
        let value = guard(-1, || -> Result<i32, Failure> { panic!("boom") });
        assert_eq!(value, -1);
        assert_eq!(last().as_deref(), Some("internal error in duet: boom"));
    }

    #[test]
    fn a_success_clears_the_last_error() {
        set_last_error("old");
        assert_eq!(guard(0, || Ok(7)), 7);
        assert_eq!(last(), None);
        assert!(last_error_ptr().is_null());
    }

    #[test]
    fn statuses_follow_the_failure() {
        assert_eq!(guard_status(|| Ok(())), DuetStatus::Ok);
        assert_eq!(
            guard_status(|| Err(Failure::rejected("no"))),
            DuetStatus::Rejected
        );
        assert_eq!(last().as_deref(), Some("no"));
        assert_eq!(
            guard_status(|| -> Result<(), Failure> { panic!("x") }),
            DuetStatus::Internal
        );
    }

    #[test]
    fn a_nul_byte_in_a_message_is_replaced() {
        set_last_error("a\0b");
        assert_eq!(last().as_deref(), Some("a\u{fffd}b"));
    }
}
