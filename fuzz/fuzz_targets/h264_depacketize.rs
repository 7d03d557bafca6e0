//! RTP payloads from a peer into the H.264 depacketizer: no sequence of payloads may panic,
//! every failed call is counted exactly once and leaves the output as it was, and an access
//! unit that comes back out packetizes and depacketizes to itself.
#![no_main]

use arbitrary::Arbitrary;
use duet_media::codec::h264::nal_units;
use duet_media::packetize::{
    is_keyframe_payload, H264Depacketizer, H264Packetizer, MIN_MTU_PAYLOAD,
};
use libfuzzer_sys::fuzz_target;

/// One call on the depacketizer.
#[derive(Debug, Arbitrary)]
enum Op {
    /// Appends one payload to the access unit being built.
    Push(Vec<u8>),
    /// Closes the access unit being built.
    Finish,
    /// Forgets the access unit being built.
    Reset,
    /// Rebuilds a whole access unit, then packetizes it again at this payload size.
    Assemble(Vec<Vec<u8>>, u16),
}

const START_CODE: [u8; 4] = [0, 0, 0, 1];

fuzz_target!(|ops: Vec<Op>| {
    let mut d = H264Depacketizer::new();
    let mut out = Vec::new();
    let (mut payloads, mut errors, mut units) = (0u64, 0u64, 0u64);
    for op in ops {
        match op {
            Op::Push(payload) => {
                let before = out.clone();
                let _ = is_keyframe_payload(&payload);
                match d.push(&payload, &mut out) {
                    Ok(()) => {
                        payloads += 1;
                        assert!(out.len() > before.len() && out.starts_with(&before));
                    }
                    Err(_) => {
                        errors += 1;
                        assert_eq!(out, before, "a failed push changed the output");
                    }
                }
            }
            Op::Finish => {
                match d.finish(&out) {
                    Ok(()) => units += 1,
                    Err(_) => errors += 1,
                }
                out.clear();
            }
            Op::Reset => {
                d.reset();
                out.clear();
            }
            Op::Assemble(list, mtu) => {
                let before = d.stats();
                let ok = d.assemble(list.iter().map(|p| &p[..]), &mut out).is_ok();
                let after = d.stats();
                assert_eq!(after.access_units - before.access_units, u64::from(ok));
                // A failure stops at the first bad payload or at finish: one error.
                assert_eq!(after.errors - before.errors, u64::from(!ok));
                payloads = after.payloads;
                errors += u64::from(!ok);
                units += u64::from(ok);
                if ok {
                    assert!(out.starts_with(&START_CODE));
                    round_trip(&out, mtu);
                }
                out.clear();
            }
        }
        let stats = d.stats();
        assert_eq!(
            (stats.payloads, stats.errors, stats.access_units),
            (payloads, errors, units)
        );
    }
});

/// An access unit whose NAL units hold no `00 00` (so no start code can hide in them) and do
/// not end in a zero byte comes back unchanged through the packetizer and a fresh
/// depacketizer, when every NAL unit header is one a receiver takes; otherwise the packetizer
/// refuses it.
fn round_trip(au: &[u8], mtu: u16) {
    let nals: Vec<&[u8]> = nal_units(au).collect();
    let rebuilt: Vec<u8> = nals
        .iter()
        .flat_map(|n| START_CODE.iter().chain(n.iter()).copied())
        .collect();
    let plain = nals
        .iter()
        .all(|n| !n.is_empty() && n.last() != Some(&0) && !n.windows(2).any(|w| w == [0, 0]));
    if rebuilt != au || !plain {
        return;
    }
    let mtu = MIN_MTU_PAYLOAD + usize::from(mtu) % 1400;
    let mut packetizer = H264Packetizer::new(mtu).expect("a valid payload size");
    let mut payloads = Vec::new();
    // A start code inside a payload leaves behind it a NAL unit no receiver takes.
    let takeable = nals
        .iter()
        .all(|n| n[0] & 0x80 == 0 && (1..=23).contains(&(n[0] & 0x1F)));
    if !takeable {
        assert!(packetizer.packetize(au, &mut payloads).is_err());
        assert!(payloads.is_empty());
        return;
    }
    packetizer
        .packetize(au, &mut payloads)
        .expect("an access unit with NAL units packetizes");
    assert!(
        payloads.iter().all(|p| p.len() <= mtu),
        "payload above {mtu}"
    );
    let mut again = Vec::new();
    H264Depacketizer::new()
        .assemble(payloads.iter().map(|p| &p[..]), &mut again)
        .expect("our own payloads depacketize");
    assert_eq!(
        again, au,
        "round trip at {mtu} bytes changed the access unit"
    );
}
