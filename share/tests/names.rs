//! Names from the peer: what is refused and why, symlinks, free names, and a property test
//! that no accepted name leaves the folder.

use std::path::{Component, Path};

use duet_share::names::{safe_file_name, safe_join, safe_relative, unclobbered};
use duet_share::Error;
use proptest::prelude::*;

fn reason(name: &str) -> String {
    match safe_relative(name) {
        Err(Error::UnsafeName { name: n, reason }) => {
            assert_eq!(n, name);
            reason
        }
        other => panic!("{name:?} was not refused: {other:?}"),
    }
}

#[test]
fn each_kind_of_unsafe_name_is_refused_with_its_reason() {
    let cases = [
        ("", "empty"),
        ("../secret", "'..'"),
        ("a/../../b", "'..'"),
        ("/etc/passwd", "absolute"),
        ("C:/Windows/evil.dll", "drive letter"),
        ("C:evil", "drive letter"),
        ("a\\..\\b", "backslash"),
        ("a//b", "empty path component"),
        ("a/", "empty path component"),
        ("./a", "'.'"),
        ("a/./b", "'.'"),
        ("nul\0byte", "U+0000"),
        ("bell\u{7}", "U+0007"),
        ("new\nline", "U+000A"),
        ("CON", "device"),
        ("docs/prn.txt", "device"),
        ("Com7.tar.gz", "device"),
        ("lpt1", "device"),
        ("aux .md", "device"),
        ("trailing.", "dot or a space"),
        ("trailing ", "dot or a space"),
        ("dir./file", "dot or a space"),
    ];
    for (name, why) in cases {
        let r = reason(name);
        assert!(r.contains(why), "{name:?}: reason {r:?} lacks {why:?}");
    }
}

#[test]
fn ordinary_names_are_accepted() {
    for name in [
        "report.pdf",
        "photos/2024/été plage.jpg",
        ".hidden",
        "a..b",
        "...x",
        "con_notes.txt",
        "COM10",
        "データ/ファイル.bin",
        " leading space",
    ] {
        let rel = safe_relative(name).unwrap_or_else(|e| panic!("{name:?}: {e}"));
        assert_eq!(rel.to_string(), name);
    }
}

#[test]
fn length_limits_are_bytes_per_component_and_in_total() {
    let c255 = "é".repeat(127) + "x"; // 255 bytes
    assert_eq!(c255.len(), 255);
    assert!(safe_relative(&c255).is_ok());
    assert!(reason(&(c255.clone() + "x")).contains("256 bytes"));
    let long = vec!["d".repeat(200); 20].join("/"); // 4019 bytes
    assert!(safe_relative(&long).is_ok());
    let too_long = vec!["d".repeat(200); 21].join("/"); // 4220 bytes
    assert!(reason(&too_long).contains("longer than 4096"));
}

#[test]
fn a_file_name_is_one_component() {
    assert!(safe_file_name("report.pdf").is_ok());
    match safe_file_name("dir/report.pdf") {
        Err(Error::UnsafeName { reason, .. }) => assert!(reason.contains("'/'")),
        other => panic!("{other:?}"),
    }
    assert!(safe_file_name("..").is_err());
}

#[cfg(unix)]
#[test]
fn joining_through_a_symlink_is_refused() {
    let root = tempfile::tempdir().unwrap();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("f"), root.path().join("dangling")).unwrap();
    std::fs::create_dir(root.path().join("real")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", root.path().join("real/passwd")).unwrap();
    for name in ["link/x.txt", "link", "dangling", "real/passwd"] {
        match safe_join(root.path(), &safe_relative(name).unwrap()) {
            Err(Error::UnsafeName { reason, .. }) => assert!(reason.contains("symlink"), "{name}"),
            other => panic!("{name}: {other:?}"),
        }
    }
    let ok = safe_join(root.path(), &safe_relative("real/new/file.txt").unwrap()).unwrap();
    assert_eq!(ok, root.path().join("real/new/file.txt"));
}

#[test]
fn joining_under_a_file_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("plain"), b"x").unwrap();
    match safe_join(root.path(), &safe_relative("plain/inner").unwrap()) {
        Err(Error::UnsafeName { reason, .. }) => assert!(reason.contains("not a folder")),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unclobbered_numbers_names_that_exist() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    assert_eq!(unclobbered(d, "report.pdf"), d.join("report.pdf"));
    std::fs::write(d.join("report.pdf"), b"1").unwrap();
    assert_eq!(unclobbered(d, "report.pdf"), d.join("report (1).pdf"));
    std::fs::write(d.join("report (1).pdf"), b"2").unwrap();
    assert_eq!(unclobbered(d, "report.pdf"), d.join("report (2).pdf"));
    std::fs::write(d.join("README"), b"r").unwrap();
    assert_eq!(unclobbered(d, "README"), d.join("README (1)"));
    std::fs::write(d.join(".bashrc"), b"b").unwrap();
    assert_eq!(unclobbered(d, ".bashrc"), d.join(".bashrc (1)"));
    std::fs::write(d.join("a.tar.gz"), b"t").unwrap();
    assert_eq!(unclobbered(d, "a.tar.gz"), d.join("a.tar (1).gz"));
}

fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("CON".to_owned()),
        Just("C:".to_owned()),
        "[a-c./\\\\: \\x00\\x1f~é]{0,6}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn no_accepted_name_leaves_the_root(segs in prop::collection::vec(segment(), 1..6), sep in "[/\\\\]") {
        let name = segs.join(&sep);
        let root = Path::new("/srv/duet/inbox");
        if let Ok(rel) = safe_relative(&name) {
            let joined = safe_join(root, &rel).unwrap();
            let inside = joined.strip_prefix(root).unwrap();
            prop_assert!(inside.components().count() == rel.components().len());
            for c in inside.components() {
                prop_assert!(matches!(c, Component::Normal(_)), "{name:?} -> {c:?}");
            }
            for c in rel.components() {
                prop_assert!(!c.is_empty() && c != "." && c != "..");
                prop_assert!(!c.contains(['\\', ':', '\0', '/']));
            }
        }
    }
}

#[test]
fn bidi_and_zero_width_characters_are_refused() {
    for (name, code) in [
        ("invoice\u{202E}fdp.exe", "U+202E"),
        ("a/\u{2067}b.txt", "U+2067"),
        ("report\u{200F}.pdf", "U+200F"),
        ("pay\u{200B}pal.html", "U+200B"),
        ("zero\u{200D}joiner", "U+200D"),
        ("\u{FEFF}bom.txt", "U+FEFF"),
        ("word\u{2060}joiner", "U+2060"),
        ("arabic\u{061C}mark", "U+061C"),
    ] {
        let why = reason(name);
        assert!(
            why.contains(code) && why.contains("bidirectional"),
            "{name:?}: {why}"
        );
        assert!(safe_file_name(name).is_err(), "{name:?}");
    }
    // Other non-ASCII names stay accepted.
    for name in [
        "café.txt",
        "日本語/ファイル.txt",
        "מסמך.pdf",
        "emoji 🎉.png",
    ] {
        assert!(safe_relative(name).is_ok(), "{name:?}");
    }
}
