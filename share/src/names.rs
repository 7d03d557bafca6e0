//! Names that came from the peer, made safe to use under a target folder.
//!
//! A name in an offer or a sync message is text the peer chose. [`safe_relative`] (a
//! `/`-separated relative path) and [`safe_file_name`] (one component, for a single-file offer)
//! accept only names that stay inside the folder on every platform duet runs on; [`safe_join`]
//! then builds the path and refuses to go through a symlink; [`unclobbered`] picks a free name so
//! that an arriving file never silently replaces one that is already there.
//!
//! ```
//! use duet_share::names::{safe_join, safe_relative};
//! let dir = tempfile::tempdir().unwrap();
//! let rel = safe_relative("photos/2024/beach.jpg").unwrap();
//! assert_eq!(safe_join(dir.path(), &rel).unwrap(), dir.path().join("photos/2024/beach.jpg"));
//! assert!(safe_relative("../etc/passwd").is_err());
//! assert!(safe_relative("photos/CON.txt").is_err());
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The longest component accepted, in bytes (the limit of common file systems).
pub const MAX_COMPONENT_BYTES: usize = 255;
/// The longest relative path accepted, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Windows device names: a component whose stem is one of these opens a device there.
const DEVICE_NAMES: [&str; 22] = [
    "CON", "PRN", "AUX", "NUL", "COM1", "COM2", "COM3", "COM4", "COM5", "COM6", "COM7", "COM8",
    "COM9", "LPT1", "LPT2", "LPT3", "LPT4", "LPT5", "LPT6", "LPT7", "LPT8", "LPT9",
];

/// Characters that reorder or hide text where a name is shown: the bidirectional controls
/// (U+061C, U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069), which make `exe.txt` look like
/// `txt.exe`, and the zero-width ones (U+200B to U+200D, U+2060, U+FEFF), which make two
/// different names look alike.
fn is_deceptive(ch: char) -> bool {
    matches!(
        ch,
        '\u{061C}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'
            | '\u{2066}'..='\u{2069}'
            | '\u{FEFF}'
    )
}

/// A relative path checked by [`safe_relative`] or [`safe_file_name`]: one or more components,
/// none of which can leave the folder it is joined to. Displayed with `/` separators.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RelPath {
    components: Vec<String>,
}

impl RelPath {
    /// The components, outermost first.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The last component: the file's own name.
    pub fn file_name(&self) -> &str {
        self.components
            .last()
            .map(String::as_str)
            .unwrap_or_default()
    }
}

impl fmt::Display for RelPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.components.join("/"))
    }
}

fn unsafe_name(name: &str, reason: impl Into<String>) -> Error {
    Error::UnsafeName {
        name: name.to_owned(),
        reason: reason.into(),
    }
}

/// Checks a `/`-separated relative path from the peer.
///
/// Refused: absolute paths, drive letters, backslashes, empty, `.` and `..` components, NUL and
/// control characters, bidirectional controls and zero-width characters, Windows device names (`CON`, `com1.txt`, ...), components ending in a dot
/// or a space, components over [`MAX_COMPONENT_BYTES`] and paths over [`MAX_PATH_BYTES`]. The
/// error is [`Error::UnsafeName`] with the reason.
pub fn safe_relative(name: &str) -> Result<RelPath> {
    if name.is_empty() {
        return Err(unsafe_name(name, "empty name"));
    }
    if name.len() > MAX_PATH_BYTES {
        return Err(unsafe_name(
            name,
            format!("{} bytes is longer than {MAX_PATH_BYTES}", name.len()),
        ));
    }
    if name.starts_with('/') {
        return Err(unsafe_name(name, "absolute path"));
    }
    if name.contains('\\') {
        return Err(unsafe_name(name, "backslash (a Windows separator)"));
    }
    let components = name
        .split('/')
        .map(|c| check_component(name, c).map(|()| c.to_owned()))
        .collect::<Result<Vec<_>>>()?;
    Ok(RelPath { components })
}

/// Checks a plain file name from the peer (a single-file offer): the rules of [`safe_relative`],
/// and it must be exactly one component.
pub fn safe_file_name(name: &str) -> Result<RelPath> {
    if name.contains('/') {
        return Err(unsafe_name(name, "a file name cannot contain '/'"));
    }
    safe_relative(name)
}

fn check_component(name: &str, c: &str) -> Result<()> {
    match c {
        "" => return Err(unsafe_name(name, "empty path component")),
        "." => return Err(unsafe_name(name, "'.' component")),
        ".." => return Err(unsafe_name(name, "'..' component (leaves the folder)")),
        _ => {}
    }
    if c.len() > MAX_COMPONENT_BYTES {
        return Err(unsafe_name(
            name,
            format!(
                "component of {} bytes is longer than {MAX_COMPONENT_BYTES}",
                c.len()
            ),
        ));
    }
    if let Some(ch) = c.chars().find(|ch| ch.is_control()) {
        return Err(unsafe_name(
            name,
            format!("control character U+{:04X}", u32::from(ch)),
        ));
    }
    if let Some(ch) = c.chars().find(|&ch| is_deceptive(ch)) {
        return Err(unsafe_name(
            name,
            format!(
                "U+{:04X}, a bidirectional or zero-width character that disguises a name",
                u32::from(ch)
            ),
        ));
    }
    if c.contains(':') {
        return Err(unsafe_name(
            name,
            "':' (a drive letter or a Windows stream name)",
        ));
    }
    if c.ends_with('.') || c.ends_with(' ') {
        return Err(unsafe_name(
            name,
            format!("component {c:?} ends with a dot or a space"),
        ));
    }
    let stem = c.split('.').next().unwrap_or(c).trim_end_matches(' ');
    if DEVICE_NAMES.iter().any(|d| d.eq_ignore_ascii_case(stem)) {
        return Err(unsafe_name(
            name,
            format!("{stem:?} is a Windows device name"),
        ));
    }
    Ok(())
}

/// Joins a checked name to `root`, refusing to pass through a symlink: every component of `rel`
/// that already exists under `root` must be a real folder (or, for the last one, not a symlink).
/// `root` itself may be a symlink; it is the user's choice.
///
/// Call it right before creating or writing the file.
pub fn safe_join(root: &Path, rel: &RelPath) -> Result<PathBuf> {
    let mut path = root.to_path_buf();
    let last = rel.components.len().saturating_sub(1);
    let mut exists = true;
    for (i, c) in rel.components.iter().enumerate() {
        path.push(c);
        if !exists {
            continue;
        }
        match std::fs::symlink_metadata(&path) {
            Ok(meta) if meta.file_type().is_symlink() => {
                return Err(unsafe_name(
                    &rel.to_string(),
                    format!("{} is a symlink", path.display()),
                ));
            }
            Ok(meta) if i < last && !meta.is_dir() => {
                return Err(unsafe_name(
                    &rel.to_string(),
                    format!("{} is not a folder", path.display()),
                ));
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => exists = false,
            Err(e) => return Err(Error::io(path, e)),
        }
    }
    Ok(path)
}

/// A path in `dir` for `name` that does not exist yet: `name` itself when it is free, else
/// `"report (1).pdf"`, `"report (2).pdf"`, ... (the number goes before the last extension).
///
/// A dangling symlink counts as taken. Another process may create the name after this returns:
/// create the file with a call that fails when it exists (see `transfer::files`).
pub fn unclobbered(dir: &Path, name: &str) -> PathBuf {
    let taken = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let first = dir.join(name);
    if !taken(&first) {
        return first;
    }
    let (stem, ext) = match name.rfind('.') {
        Some(i) if i > 0 => name.split_at(i),
        _ => (name, ""),
    };
    let mut n: u64 = 1;
    loop {
        let candidate = dir.join(format!("{stem} ({n}){ext}"));
        if !taken(&candidate) {
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_in_any_case_and_with_extension_are_refused() {
        for n in ["con", "Con.txt", "lpt9.tar.gz", "NUL", "aux .txt", "COM1"] {
            assert!(safe_relative(n).is_err(), "{n}");
        }
        for n in ["console", "com10", "lpt", "nul_", "auxiliary.txt"] {
            assert!(safe_relative(n).is_ok(), "{n}");
        }
    }

    #[test]
    fn display_joins_with_slashes() {
        let rel = safe_relative("a/b/c.txt").unwrap();
        assert_eq!(rel.to_string(), "a/b/c.txt");
        assert_eq!(rel.file_name(), "c.txt");
        assert_eq!(rel.components().len(), 3);
    }
}
