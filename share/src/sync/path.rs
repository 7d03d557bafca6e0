//! Relative paths inside a sharing folder: what is accepted, and the names of conflict copies.

use crate::transfer::files::QUARANTINE_DIR;
use crate::{Error, Result};

/// Name of the folder, at the root of a sharing folder, where duet keeps its state and
/// temporary files. It is never scanned nor synced.
pub const STATE_DIR: &str = ".duet";

/// Checks that `path` is a relative, '/'-separated path that stays inside the folder on
/// every platform ([`crate::names::safe_relative`]: no empty, `.` or `..` component, no leading
/// '/', no backslash, no NUL or control character, ...), is not inside [`STATE_DIR`], and is
/// not inside a quarantine folder ([`QUARANTINE_DIR`], at any depth: files received into a
/// subfolder wait there unchecked).
pub fn check(path: &str) -> Result<()> {
    let rel = crate::names::safe_relative(path)?;
    let reserved = |reason: &str| Error::UnsafeName {
        name: path.to_string(),
        reason: reason.into(),
    };
    if path == STATE_DIR || path.starts_with(".duet/") {
        return Err(reserved("reserved for duet"));
    }
    if rel.components().iter().any(|c| c == QUARANTINE_DIR) {
        return Err(reserved(
            "inside a quarantine folder, where received files wait unchecked",
        ));
    }
    Ok(())
}

/// The name under which a losing version of `path` is kept:
/// `dir/name.sync-conflict-YYYYMMDD-HHMMSS-USER.ext`, with the date and time of `mtime`
/// (nanoseconds since the Unix epoch, UTC) and `user` who made that version.
///
/// ```
/// let name = duet_share::sync::conflict_name("notes/plan.txt", 1_795_688_100_000_000_000, "bob");
/// assert_eq!(name, "notes/plan.sync-conflict-20261126-101500-bob.txt");
/// ```
pub fn conflict_name(path: &str, mtime: i64, user: &str) -> String {
    let (dir, file) = match path.rfind('/') {
        Some(i) => (&path[..=i], &path[i + 1..]),
        None => ("", path),
    };
    let (stem, ext) = match file.rfind('.') {
        Some(i) if i > 0 => (&file[..i], &file[i..]),
        _ => (file, ""),
    };
    let user: String = user
        .chars()
        .map(|c| {
            if c.is_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{dir}{stem}.sync-conflict-{}-{user}{ext}", utc_stamp(mtime))
}

/// `YYYYMMDD-HHMMSS` of a time in nanoseconds since the Unix epoch, UTC.
fn utc_stamp(nanos: i64) -> String {
    let secs = nanos.div_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Year, month, day of a count of days since 1970-01-01 (proleptic Gregorian calendar).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_escaping_and_odd_paths() {
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../b",
            "a//b",
            "a/./b",
            "a\\b",
            "a\0b",
            "a\nb",
            ".duet",
            ".duet/index.json",
            ".duet-quarantine",
            ".duet-quarantine/0123.part",
            "inbox/.duet-quarantine/0123.held",
            "a/",
        ] {
            assert!(check(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["a", "a/b.txt", ".hidden", "dir/.duet", "ünïcode/файл"] {
            assert!(check(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn conflict_names() {
        assert_eq!(utc_stamp(0), "19700101-000000");
        assert_eq!(utc_stamp(951_782_400_000_000_000), "20000229-000000");
        assert_eq!(
            conflict_name("Makefile", 0, "a b"),
            "Makefile.sync-conflict-19700101-000000-a_b"
        );
        assert_eq!(
            conflict_name(".bashrc", 0, "x"),
            ".bashrc.sync-conflict-19700101-000000-x"
        );
        assert_eq!(
            conflict_name("a.tar.gz", 0, "x"),
            "a.tar.sync-conflict-19700101-000000-x.gz"
        );
    }
}
