//! Data channel throughput on 127.0.0.1: a bare ordered, reliable data channel of the `webrtc`
//! crate between two peer connections in one process, then the same amount through duet's
//! [`DataLink`], 16 KiB messages as fast as flow control allows; prints MB/s for each and
//! their ratio. The two alternate for a few rounds and their medians are compared, as the
//! machine may be busy with other work.
//!
//! The bare channel runs with the crate's defaults; `--bare-socket-buffer BYTES` gives its
//! UDP sockets the larger buffers a [`DataLink`] asks for, to see what they alone change.
//!
//! ```text
//! cargo run --release -p duet-bench --bin datachannel -- [--mib 200] [--rounds 3]
//!     [--receive-window BYTES] [--bare-socket-buffer BYTES] [--json]
//! ```

use std::process::ExitCode;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use duet_media::link::{
    DataLink, LinkConfig, LinkEvent, LinkEvents, HIGH_WATER, LOW_WATER, RECEIVE_WINDOW,
};
use duet_media::transport::BufferedRuntime;
use tokio::sync::mpsc::{unbounded_channel, UnboundedSender};
use webrtc::data_channel::{DataChannel, DataChannelEvent, RTCDataChannelInit};
use webrtc::peer_connection::{
    MediaEngine, PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler,
    RTCConfigurationBuilder, RTCIceGatheringState, Registry, SettingEngineBuilder,
};

/// Size of every message, bytes.
const MESSAGE: usize = 16 * 1024;
/// Longest either run may take before it is called a failure.
const LIMIT: Duration = Duration::from_secs(300);

struct Args {
    mib: usize,
    rounds: usize,
    /// The DataLink's SCTP receive window, bytes.
    window: usize,
    /// UDP socket buffers for the bare channel, bytes; `None` leaves the kernel's default.
    bare_buffer: Option<usize>,
    json: bool,
}

fn parse() -> Result<Args, String> {
    let mut args = Args {
        mib: 200,
        rounds: 3,
        window: RECEIVE_WINDOW as usize,
        bare_buffer: None,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut number = |name: &str| -> Result<usize, String> {
            let value = it.next().ok_or(format!("{name} needs a value"))?;
            match value.parse() {
                Ok(n) if n > 0 => Ok(n),
                _ => Err(format!(
                    "bad value for {name}: {value:?} (a whole number, at least 1)"
                )),
            }
        };
        match flag.as_str() {
            "--mib" => args.mib = number("--mib")?,
            "--rounds" => args.rounds = number("--rounds")?,
            "--receive-window" => args.window = number("--receive-window")?,
            "--bare-socket-buffer" => args.bare_buffer = Some(number("--bare-socket-buffer")?),
            "--json" => args.json = true,
            _ => {
                return Err(format!(
                    "unknown option {flag}; use [--mib N] [--rounds R] [--receive-window BYTES] \
                     [--bare-socket-buffer BYTES] [--json]"
                ))
            }
        }
    }
    Ok(args)
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("datachannel: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The median of `values` (not empty).
fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn run() -> Result<(), String> {
    let args = parse()?;
    let window = u32::try_from(args.window)
        .map_err(|_| format!("--receive-window {} is too large", args.window))?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("tokio runtime: {e}"))?;
    let messages = (args.mib * 1024 * 1024).div_ceil(MESSAGE);
    let total = (messages * MESSAGE) as f64;
    // The two alternate, round after round, so that a machine busy with something else
    // for a while slows both alike; the medians are compared.
    let (mut bare, mut link) = (Vec::new(), Vec::new());
    for _ in 0..args.rounds {
        let (b, l) = rt.block_on(async {
            let bare = tokio::time::timeout(LIMIT, bare_channel(messages, args.bare_buffer))
                .await
                .map_err(|_| "the bare data channel run timed out".to_string())??;
            let link = tokio::time::timeout(LIMIT, data_link(messages, window))
                .await
                .map_err(|_| "the data link run timed out".to_string())??;
            Ok::<_, String>((bare, link))
        })?;
        bare.push(total / b.as_secs_f64() / 1e6);
        link.push(total / l.as_secs_f64() / 1e6);
    }
    let rounds = |v: &[f64]| {
        v.iter()
            .map(|x| format!("{x:.2}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let (bare_rounds, link_rounds) = (rounds(&bare), rounds(&link));
    let bare_mbs = median(&mut bare);
    let link_mbs = median(&mut link);
    let ratio = link_mbs / bare_mbs;
    if args.json {
        println!(
            "{{\"mib\":{},\"message_bytes\":{MESSAGE},\"rounds\":{},\"bare_mb_s\":{bare_mbs:.2},\"link_mb_s\":{link_mbs:.2},\"ratio\":{ratio:.3},\"bare_rounds\":[{bare_rounds}],\"link_rounds\":[{link_rounds}]}}",
            args.mib, args.rounds
        );
    } else {
        println!(
            "{} MiB in {MESSAGE}-byte messages on 127.0.0.1, median of {} rounds",
            args.mib, args.rounds
        );
        println!("  bare webrtc data channel  {bare_mbs:8.2} MB/s  ({bare_rounds})");
        println!("  duet DataLink             {link_mbs:8.2} MB/s  ({link_rounds})");
        println!("  DataLink / bare           {ratio:8.3}");
    }
    Ok(())
}

/// The bare run's peer connection events: gathering done, and the answerer's channel.
struct Handler {
    gathered: UnboundedSender<()>,
    channel: Option<UnboundedSender<Arc<dyn DataChannel>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.gathered.send(());
        }
    }

    async fn on_data_channel(&self, channel: Arc<dyn DataChannel>) {
        if let Some(tx) = &self.channel {
            let _ = tx.send(channel);
        }
    }
}

async fn peer(handler: Handler, buffer: Option<usize>) -> Result<Arc<dyn PeerConnection>, String> {
    let mut builder = PeerConnectionBuilder::new()
        .with_configuration(RTCConfigurationBuilder::new().build())
        .with_media_engine(MediaEngine::default())
        .with_setting_engine(
            SettingEngineBuilder::new()
                .with_include_loopback_candidate(true)
                .build(),
        )
        .with_interceptor_registry(Registry::new())
        .with_handler(Arc::new(handler))
        .with_udp_addrs(vec!["127.0.0.1:0".to_string()]);
    if let Some(bytes) = buffer {
        let runtime = BufferedRuntime::new(bytes).map_err(|e| e.to_string())?;
        builder = builder.with_runtime(Arc::new(runtime));
    }
    let pc = builder
        .build()
        .await
        .map_err(|e| format!("peer connection: {e}"))?;
    Ok(Arc::new(pc))
}

/// `messages` messages over a bare channel, paced on the buffered-amount-low event; the time
/// from the first send to the last byte received.
async fn bare_channel(messages: usize, buffer: Option<usize>) -> Result<Duration, String> {
    let e = |what: &'static str| move |err: webrtc::error::Error| format!("{what}: {err}");
    let (offer_gathered, mut offer_gathered_rx) = unbounded_channel();
    let (answer_gathered, mut answer_gathered_rx) = unbounded_channel();
    let (channel_tx, mut channel_rx) = unbounded_channel();
    let offerer = peer(
        Handler {
            gathered: offer_gathered,
            channel: None,
        },
        buffer,
    )
    .await?;
    let answerer = peer(
        Handler {
            gathered: answer_gathered,
            channel: Some(channel_tx),
        },
        buffer,
    )
    .await?;
    let init = RTCDataChannelInit {
        ordered: true,
        ..Default::default()
    };
    let dc = offerer
        .create_data_channel("bench", Some(init))
        .await
        .map_err(e("data channel"))?;
    dc.set_buffered_amount_low_threshold(LOW_WATER as u32)
        .await
        .map_err(e("low-water mark"))?;

    let offer = offerer.create_offer(None).await.map_err(e("offer"))?;
    offerer
        .set_local_description(offer)
        .await
        .map_err(e("offer"))?;
    offer_gathered_rx.recv().await;
    let offer = offerer
        .local_description()
        .await
        .ok_or("the offerer has no description")?;
    answerer
        .set_remote_description(offer)
        .await
        .map_err(e("remote offer"))?;
    let answer = answerer.create_answer(None).await.map_err(e("answer"))?;
    answerer
        .set_local_description(answer)
        .await
        .map_err(e("answer"))?;
    answer_gathered_rx.recv().await;
    let answer = answerer
        .local_description()
        .await
        .ok_or("the answerer has no description")?;
    offerer
        .set_remote_description(answer)
        .await
        .map_err(e("remote answer"))?;

    let remote = channel_rx.recv().await.ok_or("no data channel arrived")?;
    let total = messages * MESSAGE;
    let receiver = tokio::spawn(async move {
        let mut received = 0usize;
        while received < total {
            match remote.poll().await {
                Some(DataChannelEvent::OnMessage(m)) => received += m.data.len(),
                Some(DataChannelEvent::OnClose) | None => break,
                Some(_) => {}
            }
        }
        (received, Instant::now())
    });
    loop {
        match dc.poll().await {
            Some(DataChannelEvent::OnOpen) => break,
            Some(DataChannelEvent::OnClose) | None => return Err("the channel closed".into()),
            Some(_) => {}
        }
    }
    let chunk = BytesMut::from(&[0xa5u8; MESSAGE][..]);
    let start = Instant::now();
    // The buffered amount is asked for only when what was sent since the last answer could
    // have filled the buffer past the high-water mark: asking costs a trip through the
    // connection's driver, which per message would cap the channel well below its rate.
    let mut unchecked = 0usize;
    for _ in 0..messages {
        if unchecked >= HIGH_WATER - LOW_WATER {
            unchecked = 0;
            while dc.outstanding_bytes().await.map_err(e("buffered"))? > HIGH_WATER {
                match dc.poll().await {
                    Some(DataChannelEvent::OnBufferedAmountLow) => break,
                    Some(DataChannelEvent::OnClose) | None => {
                        return Err("the channel closed while sending".into())
                    }
                    Some(_) => {}
                }
            }
        }
        dc.send(chunk.clone()).await.map_err(e("send"))?;
        unchecked += MESSAGE;
    }
    let (received, end) = receiver.await.map_err(|err| format!("receiver: {err}"))?;
    if received != total {
        return Err(format!("received {received} of {total} bytes"));
    }
    let _ = offerer.close().await;
    let _ = answerer.close().await;
    Ok(end.duration_since(start))
}

/// Carries one link's signals to the other and reports when it is open.
fn relay(mut events: LinkEvents, to: Weak<DataLink>, open: UnboundedSender<()>) {
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            match event {
                LinkEvent::Signal(signal) => {
                    let Some(to) = to.upgrade() else { break };
                    if let Err(e) = to.handle_signal(signal).await {
                        eprintln!("datachannel: signal refused: {e}");
                    }
                }
                LinkEvent::Open => {
                    let _ = open.send(());
                }
                LinkEvent::Ended(_) => break,
            }
        }
    });
}

/// `messages` messages through a pair of [`DataLink`]s; the time from the first send to the
/// last byte received.
async fn data_link(messages: usize, window: u32) -> Result<Duration, String> {
    let e = |err: duet_media::Error| err.to_string();
    let config = LinkConfig {
        receive_window: window,
        ..LinkConfig::default()
    };
    let (a, a_events) = DataLink::new(config.clone()).await.map_err(e)?;
    let (b, b_events) = DataLink::new(config).await.map_err(e)?;
    let (a, b) = (Arc::new(a), Arc::new(b));
    let (open_tx, mut open_rx) = unbounded_channel();
    relay(a_events, Arc::downgrade(&b), open_tx.clone());
    relay(b_events, Arc::downgrade(&a), open_tx);
    a.start().await.map_err(e)?;
    for _ in 0..2 {
        open_rx
            .recv()
            .await
            .ok_or("a link ended before it opened")?;
    }
    let total = messages * MESSAGE;
    let reader = b.clone();
    let receiver = tokio::spawn(async move {
        let mut received = 0usize;
        while received < total {
            match reader.recv().await {
                Some(m) => received += m.len(),
                None => break,
            }
        }
        (received, Instant::now())
    });
    let chunk = [0xa5u8; MESSAGE];
    let start = Instant::now();
    for _ in 0..messages {
        a.send(&chunk).await.map_err(e)?;
    }
    let (received, end) = receiver.await.map_err(|err| format!("receiver: {err}"))?;
    if received != total {
        return Err(format!("received {received} of {total} bytes"));
    }
    a.hang_up("bench done");
    Ok(end.duration_since(start))
}
