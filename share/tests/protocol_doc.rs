//! Every message example in PROTOCOL.md decodes and encodes back to the same bytes, every
//! message type has one, and the resume-state example is the state of the file it names.

use std::collections::BTreeSet;

use duet_share::transfer::{Manifest, Message, ResumeState};

fn doc() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/PROTOCOL.md")).unwrap()
}

/// The bodies of the code blocks opened with "```" followed by `kind`.
fn blocks(kind: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in doc().lines() {
        match &mut current {
            None if line.trim_end() == format!("```{kind}") => current = Some(String::new()),
            Some(_) if line.starts_with("```") => out.extend(current.take()),
            Some(body) => {
                body.push_str(line);
                body.push('\n');
            }
            None => {}
        }
    }
    out
}

fn bytes_of(hex: &str) -> Vec<u8> {
    let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
    hex::decode(&digits).unwrap_or_else(|e| panic!("{e}: {hex}"))
}

#[test]
fn every_message_example_round_trips_and_every_type_has_one() {
    let mut tags = BTreeSet::new();
    for example in blocks("hex") {
        let bytes = bytes_of(&example);
        let message = Message::decode(&bytes).unwrap_or_else(|e| panic!("{e}: {example}"));
        assert_eq!(message.to_bytes(), bytes, "{message:?} encodes otherwise");
        tags.insert(bytes[0]);
    }
    assert_eq!(tags, (1..=6).collect(), "a message type without an example");
}

#[test]
fn the_manifest_example_describes_the_file_test() {
    let manifest = Manifest::from_bytes(b"test", 128 * 1024);
    let shown = blocks("hex")
        .into_iter()
        .map(|e| Message::decode(&bytes_of(&e)).unwrap())
        .find(|m| matches!(m, Message::Manifest { .. }))
        .expect("a manifest example");
    assert_eq!(
        shown,
        Message::Manifest {
            file_size: manifest.file_size,
            block_size: manifest.block_size,
            sha256: manifest.sha256,
            first: 0,
            hashes: manifest.block_hashes.clone(),
        }
    );
}

#[test]
fn the_resume_example_is_the_state_of_the_file_test() {
    let [example] = blocks("json resume")
        .try_into()
        .expect("one resume example");
    let state: ResumeState = serde_json::from_str(&example).unwrap();
    let manifest = Manifest::from_bytes(b"test", 128 * 1024);
    assert_eq!(state.sha256, manifest.sha256);
    assert_eq!(state.manifest_id, manifest.id());
    assert_eq!(state.block_count, 1);
    assert_eq!(state.verified, vec![(0, 1)]);
}
