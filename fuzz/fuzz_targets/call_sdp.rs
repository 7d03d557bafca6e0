//! A live `CallSession` fed arbitrary signals through its public API: offers and answers whose
//! SDP is arbitrary text or a real description (a browser's offer, or one duet wrote) with lines
//! deleted, replaced and inserted; ICE candidates, raw or built from fuzzed fields; `start` and
//! `End` in any order.
//!
//! Every `handle_signal` must return (an error is fine) without panicking, the session must keep
//! answering `stats`, and hanging up must end it: the `Ended` event comes and `close` returns.
#![no_main]

use std::sync::OnceLock;
use std::time::Duration;

use arbitrary::Arbitrary;
use duet_media::call::{CallConfig, CallEvent, CallSession, CallSinks, Signal};
use duet_media::{AudioFormat, Channels, FrameDuration};
use libfuzzer_sys::fuzz_target;
use tokio::runtime::Runtime;

/// A browser's offer, trimmed (own payload types, VP8 besides H.264).
const BROWSER_OFFER: &str = "v=0\r
o=- 4611731400430051336 2 IN IP4 127.0.0.1\r
s=-\r
t=0 0\r
a=group:BUNDLE 0 1\r
a=msid-semantic: WMS stream\r
m=audio 9 UDP/TLS/RTP/SAVPF 109 0\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Wz4a\r
a=ice-pwd:ZYrJ3aI0c3BQ2c3Xz2Pq3fZs\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r
a=setup:actpass\r
a=mid:0\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=msid:stream audio0\r
a=rtcp-mux\r
a=rtpmap:109 opus/48000/2\r
a=rtcp-fb:109 transport-cc\r
a=fmtp:109 minptime=10;useinbandfec=1\r
a=rtpmap:0 PCMU/8000\r
a=ssrc:1111 cname:browser\r
m=video 9 UDP/TLS/RTP/SAVPF 96 106 107\r
c=IN IP4 0.0.0.0\r
a=rtcp:9 IN IP4 0.0.0.0\r
a=ice-ufrag:Wz4a\r
a=ice-pwd:ZYrJ3aI0c3BQ2c3Xz2Pq3fZs\r
a=ice-options:trickle\r
a=fingerprint:sha-256 6B:8B:5D:EA:59:04:20:23:29:C8:87:1C:CC:87:32:BE:DD:8C:66:A5:8E:50:55:EA:8C:D3:B6:5C:09:5E:D6:BC\r
a=setup:actpass\r
a=mid:1\r
a=extmap:3 http://www.ietf.org/id/draft-holmer-rmcat-transport-wide-cc-extensions-01\r
a=sendrecv\r
a=msid:stream video0\r
a=rtcp-mux\r
a=rtcp-rsize\r
a=rtpmap:96 VP8/90000\r
a=rtpmap:106 H264/90000\r
a=rtcp-fb:106 goog-remb\r
a=rtcp-fb:106 transport-cc\r
a=rtcp-fb:106 ccm fir\r
a=rtcp-fb:106 nack\r
a=rtcp-fb:106 nack pli\r
a=fmtp:106 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f\r
a=rtpmap:107 rtx/90000\r
a=fmtp:107 apt=106\r
a=ssrc:2222 cname:browser\r
";

#[derive(Debug, Arbitrary)]
struct Input {
    audio: Option<bool>,
    video: bool,
    steps: Vec<Step>,
}

#[derive(Debug, Arbitrary)]
enum Step {
    Start,
    Offer(Sdp),
    Answer(Sdp),
    Candidate {
        candidate: Candidate,
        sdp_mid: Option<String>,
        sdp_mline_index: Option<u16>,
    },
    End(String),
    Stats,
}

#[derive(Debug, Arbitrary)]
enum Sdp {
    Raw(String),
    /// A real description with edits.
    Edited {
        duet: bool,
        edits: Vec<Edit>,
    },
}

#[derive(Debug, Arbitrary)]
enum Edit {
    Delete(u8),
    Replace(u8, String),
    /// Keeps the line's `a=name:` (or `x=`) and replaces what follows.
    ReplaceValue(u8, String),
    Insert(u8, String),
    Duplicate(u8),
}

#[derive(Debug, Arbitrary)]
enum Candidate {
    Raw(String),
    Built {
        foundation: u32,
        component: u8,
        tcp: bool,
        priority: u32,
        /// Loopback only: the session must not send checks elsewhere.
        host: u8,
        port: u16,
        kind: u8,
        extra: String,
    },
}

impl Candidate {
    fn text(&self) -> String {
        match self {
            Candidate::Raw(s) => s.clone(),
            Candidate::Built {
                foundation,
                component,
                tcp,
                priority,
                host,
                port,
                kind,
                extra,
            } => {
                let proto = if *tcp { "tcp" } else { "udp" };
                let typ = ["host", "srflx", "prflx", "relay", "bogus"][usize::from(*kind % 5)];
                format!(
                    "candidate:{foundation} {component} {proto} {priority} 127.0.0.{host} {port} typ {typ}{extra}"
                )
            }
        }
    }
}

fn runtime() -> &'static Runtime {
    static RT: OnceLock<Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("tokio runtime")
    })
}

fn config(audio: Option<bool>, video: bool) -> CallConfig {
    let audio = audio.map(|stereo| AudioFormat {
        channels: if stereo {
            Channels::Stereo
        } else {
            Channels::Mono
        },
        frame: FrameDuration::Ms20,
    });
    CallConfig::new(audio, video || audio.is_none())
}

/// An offer that duet wrote, made once.
fn duet_offer() -> &'static str {
    static OFFER: OnceLock<String> = OnceLock::new();
    OFFER.get_or_init(|| {
        runtime().block_on(async {
            let (session, mut events) =
                CallSession::new(config(Some(false), true), CallSinks::default())
                    .await
                    .expect("session");
            session.start().await.expect("offer");
            let Some(CallEvent::Signal(Signal::Offer { sdp })) = events.recv().await else {
                panic!("the first event is the offer");
            };
            session.close().await.expect("close");
            sdp
        })
    })
}

fn sdp_text(sdp: &Sdp) -> String {
    match sdp {
        Sdp::Raw(s) => s.clone(),
        Sdp::Edited { duet, edits } => {
            let base = if *duet { duet_offer() } else { BROWSER_OFFER };
            let mut lines: Vec<String> = base.lines().map(|l| l.trim_end().to_string()).collect();
            for edit in edits {
                let at = |i: &u8, len: usize| usize::from(*i) % len.max(1);
                match edit {
                    Edit::Delete(i) if !lines.is_empty() => {
                        let i = at(i, lines.len());
                        lines.remove(i);
                    }
                    Edit::Replace(i, s) if !lines.is_empty() => {
                        let i = at(i, lines.len());
                        lines[i] = s.clone();
                    }
                    Edit::ReplaceValue(i, s) if !lines.is_empty() => {
                        let i = at(i, lines.len());
                        let line = &lines[i];
                        let keep = line
                            .find(':')
                            .or_else(|| line.find('='))
                            .map_or(0, |p| p + 1);
                        lines[i] = format!("{}{s}", &line[..keep]);
                    }
                    Edit::Insert(i, s) => {
                        let i = at(i, lines.len() + 1);
                        lines.insert(i, s.clone());
                    }
                    Edit::Duplicate(i) if !lines.is_empty() => {
                        let i = at(i, lines.len());
                        lines.insert(i, lines[i].clone());
                    }
                    _ => {}
                }
            }
            let mut text = lines.join("\r\n");
            text.push_str("\r\n");
            text
        }
    }
}

fuzz_target!(|input: Input| {
    if input.steps.len() > 16 {
        return;
    }
    // Made outside the runtime: making it blocks on the runtime.
    duet_offer();
    runtime().block_on(async {
        let config = config(input.audio, input.video);
        let (session, mut events) = CallSession::new(config, CallSinks::default())
            .await
            .expect("a session on 127.0.0.1");
        for step in &input.steps {
            let outcome = match step {
                Step::Start => session.start().await,
                Step::Offer(sdp) => {
                    session
                        .handle_signal(Signal::Offer { sdp: sdp_text(sdp) })
                        .await
                }
                Step::Answer(sdp) => {
                    session
                        .handle_signal(Signal::Answer { sdp: sdp_text(sdp) })
                        .await
                }
                Step::Candidate {
                    candidate,
                    sdp_mid,
                    sdp_mline_index,
                } => {
                    session
                        .handle_signal(Signal::Candidate {
                            candidate: candidate.text(),
                            sdp_mid: sdp_mid.clone(),
                            sdp_mline_index: *sdp_mline_index,
                        })
                        .await
                }
                Step::End(reason) => {
                    session
                        .handle_signal(Signal::End {
                            reason: reason.clone(),
                        })
                        .await
                }
                Step::Stats => {
                    let _ = session.stats();
                    Ok(())
                }
            };
            // An error is a refusal; it must leave a session that still answers.
            if outcome.is_err() {
                let _ = session.stats();
            }
        }
        session.hang_up("fuzz");
        assert!(session.end_reason().is_some(), "hanging up ends the call");
        let mut ended = false;
        while let Some(event) = events.try_recv() {
            ended |= matches!(event, CallEvent::Ended(_));
        }
        assert!(ended, "the Ended event comes");
        tokio::time::timeout(Duration::from_secs(5), session.close())
            .await
            .expect("close returns")
            .ok();
    });
});
