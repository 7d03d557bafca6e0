//! Text for the terminal: words for a contact's status, and text from other people made safe
//! to print.
//!
//! Chat text, personal messages, reasons and names come from the network. Printed as they are,
//! control characters could move the cursor, clear the screen or retitle the window, and
//! bidirectional overrides could make a line read differently from what it holds. [`safe`]
//! writes each such character as a visible escape (`\u{1b}`) and leaves everything else alone.
//!
//! ```
//! assert_eq!(duet::cli::term::safe("hi\u{1b}[2J"), "hi\\u{1b}[2J");
//! assert_eq!(duet::cli::term::safe("abc\u{202e}fed"), "abc\\u{202e}fed");
//! assert_eq!(duet::cli::term::safe("café ☕"), "café ☕");
//! ```

use std::borrow::Cow;
use std::fmt::Write;

use duet_signaling::protocol::Shown;

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL, and the Unicode
/// bidirectional marks, embeddings, overrides and isolates.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// `text` with every [unsafe](is_unsafe) character written as `\u{hex}`.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if is_unsafe(c) {
            // Writing to a String cannot fail.
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A status as words.
pub fn shown_text(s: Shown) -> &'static str {
    match s {
        Shown::Online => "online",
        Shown::Away => "away",
        Shown::Busy => "busy",
        Shown::Offline => "offline",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_bidi_marks_are_escaped_and_nothing_else() {
        for c in [
            '\0', '\n', '\r', '\t', '\u{7}', '\u{1b}', '\u{7f}', '\u{85}', '\u{9b}',
        ] {
            let shown = safe(&format!("a{c}b")).into_owned();
            assert!(!shown.contains(c), "{c:?} got through");
            assert_eq!(shown, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{202e}', '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}',
        ] {
            assert!(!safe(&format!("x{c}")).contains(c), "{c:?} got through");
        }
        for plain in ["hello", "Grüße, 世界 🎉", "שלום", "a\\u{1b}b", ""] {
            assert!(matches!(safe(plain), Cow::Borrowed(_)), "{plain}");
        }
    }
}
