//! The web client in headless Chromium, driven through chromedriver's W3C WebDriver API, against
//! a real `duet serve`, with a native duet client on the other side: sign-in, chat both ways with
//! delivery receipts, presence, and chat shown as text; and calls both ways between duet.js in the
//! browser (Chromium's fake camera and microphone) and native `duet call` / `duet answer`, with
//! media flowing as both sides' statistics show.
//!
//! Needs Debian's `chromium` and `chromium-driver` (scripts/setup.sh installs them; the
//! `DUET_CHROMIUM` and `DUET_CHROMEDRIVER` variables name other binaries). Without them the test
//! fails when `CI` is set and is skipped otherwise.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use std::sync::{Mutex, MutexGuard};

use base64::Engine;
use common::netns::{self, Inside, Netns};
use common::World;
use duet::client::{Client, ClientConfig, ClientEvent, ClientEvents};
use duet_media::audio::synth::Tone;
use duet_media::audio::wav::WavSource;
use duet_media::audio::AudioSource;
use duet_media::call::pump::{LocalAudio, LocalMedia, LocalVideo, MediaPump};
use duet_media::call::{
    CallConfig, CallEvent, CallEvents, CallSession, CallSinks, EndReason, Signal,
};
use duet_media::codec::h264::H264Config;
use duet_media::codec::opus::OpusConfig;
use duet_media::frame::{AudioFrame, VideoFrame};
use duet_media::video::pattern::TestPattern;
use duet_media::video::stamp::wall_epoch;
use duet_media::video::y4m::Y4mSource;
use duet_media::video::VideoSource;
use duet_media::{AudioFormat, Channels, FrameDuration, Read as Got};
use duet_signaling::protocol::{Status, UserName};
use serde_json::{json, Value};

/// The longest any single wait in this test may take.
const WAIT: Duration = Duration::from_secs(10);

fn find_binary(var: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(var) {
        return Some(PathBuf::from(path));
    }
    let dirs = std::env::var_os("PATH")?;
    std::env::split_paths(&dirs)
        .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
        .find(|p| p.is_file())
}

/// chromedriver, ended when dropped.
struct ChromeDriver {
    child: Child,
    addr: SocketAddr,
}

impl Drop for ChromeDriver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 exchange with chromedriver; returns the `value` of its JSON answer.
fn webdriver(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> Result<Value, String> {
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let mut s = TcpStream::connect(addr).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let (head, body) = read_response(&mut s)?;
    let payload = body.as_str();
    let v: Value = serde_json::from_str(payload).map_err(|e| format!("{e}: {payload}"))?;
    let value = v.get("value").cloned().unwrap_or(Value::Null);
    if head.starts_with("HTTP/1.1 200") {
        Ok(value)
    } else {
        Err(format!("{method} {path}: {value}"))
    }
}

/// Reads one response: chromedriver keeps the connection open, so the body ends at its
/// `Content-Length` (or at the last chunk).
fn read_response(s: &mut TcpStream) -> Result<(String, String), String> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let lower = head.to_ascii_lowercase();
            let body = &raw[end + 4..];
            let length = lower.lines().find_map(|l| {
                l.strip_prefix("content-length:")
                    .and_then(|n| n.trim().parse::<usize>().ok())
            });
            match length {
                Some(n) if body.len() >= n => {
                    return Ok((head, String::from_utf8_lossy(&body[..n]).into_owned()))
                }
                None if lower.contains("transfer-encoding: chunked")
                    && body.ends_with(b"0\r\n\r\n") =>
                {
                    return Ok((head, dechunk(&String::from_utf8_lossy(body))))
                }
                _ => {}
            }
        }
        let n = s.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!(
                "connection closed: {}",
                String::from_utf8_lossy(&raw)
            ));
        }
        raw.extend_from_slice(&buf[..n]);
    }
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// A WebDriver session in headless Chromium.
struct Browser {
    driver: ChromeDriver,
    session: String,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium inside `netns`; the calling thread must be
    /// inside it too (see [`Stage`]).
    fn start(netns: &Netns, chromium: PathBuf, chromedriver: PathBuf) -> Result<Browser, String> {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| e.to_string())?
            .port();
        let child = netns
            .command(&chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", chromedriver.display()))?;
        let driver = ChromeDriver {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let deadline = Instant::now() + WAIT;
        loop {
            match webdriver(driver.addr, "GET", "/status", None) {
                Ok(v) if v["ready"] == true => break,
                _ if Instant::now() > deadline => {
                    return Err(format!("{} did not become ready", chromedriver.display()))
                }
                _ => std::thread::sleep(Duration::from_millis(100)),
            }
        }
        let profile = tempfile::tempdir().map_err(|e| e.to_string())?;
        let args = [
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1000,640",
            // Calls: the fake camera and microphone, granted without asking; remote audio plays
            // without a click; host candidates carry addresses rather than mDNS `.local` names,
            // and the loopback interface (the only one in the test's namespace) is used for them.
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            "--autoplay-policy=no-user-gesture-required",
            "--disable-features=WebRtcHideLocalIpsWithMdns",
            "--allow-loopback-in-peer-connection",
        ]
        .map(String::from)
        .into_iter()
        .chain([format!("--user-data-dir={}", profile.path().display())])
        .collect::<Vec<_>>();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let session = webdriver(driver.addr, "POST", "/session", Some(caps))?["sessionId"]
            .as_str()
            .ok_or("no session id")?
            .to_owned();
        Ok(Browser {
            driver,
            session,
            _profile: profile,
        })
    }

    fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let path = format!("/session/{}{path}", self.session);
        webdriver(self.driver.addr, method, &path, body).unwrap_or_else(|e| panic!("{e}"))
    }

    fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({ "url": url })));
    }

    fn element(&self, css: &str) -> String {
        let v = self.cmd(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        v["element-6066-11e4-a52e-4f735466cecf"]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    fn click(&self, css: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/click"), Some(json!({})));
    }

    fn type_into(&self, css: &str, text: &str) {
        let id = self.element(css);
        self.cmd("POST", &format!("/element/{id}/clear"), Some(json!({})));
        self.cmd(
            "POST",
            &format!("/element/{id}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// Runs `script` (a function body) in the page and returns what it returns.
    fn eval(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Runs `script` (a function body whose last argument is the callback to call with the
    /// result) in the page and returns what it passes to the callback.
    fn eval_async(&self, script: &str) -> Value {
        self.cmd(
            "POST",
            "/execute/async",
            Some(json!({"script": script, "args": []})),
        )
    }

    /// Evaluates `script` until it returns `true`; panics with `what` after `within`.
    fn wait_for(&self, what: &str, script: &str, within: Duration) -> Duration {
        let start = Instant::now();
        loop {
            if self.eval(script) == Value::Bool(true) {
                return start.elapsed();
            }
            assert!(start.elapsed() < within, "not within {within:?}: {what}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn screenshot(&self, path: &std::path::Path) {
        let png = self.cmd("GET", "/screenshot", None);
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(png.as_str().expect("base64"))
            .expect("valid base64");
        std::fs::write(path, bytes).expect("write screenshot");
    }

    /// Whether an alert dialog is open.
    fn alert_open(&self) -> bool {
        let path = format!("/session/{}/alert/text", self.session);
        webdriver(self.driver.addr, "GET", &path, None).is_ok()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let path = format!("/session/{}", self.session);
        let _ = webdriver(self.driver.addr, "DELETE", &path, None);
    }
}

fn next_event(
    rt: &tokio::runtime::Runtime,
    events: &mut ClientEvents,
    what: &str,
    pred: impl Fn(&ClientEvent) -> bool,
) {
    rt.block_on(async {
        tokio::time::timeout(WAIT, async {
            while let Some(e) = events.recv().await {
                if pred(&e) {
                    return;
                }
            }
            panic!("bob's client stopped before {what}");
        })
        .await
        .unwrap_or_else(|_| panic!("bob never saw {what}"))
    })
}

/// One browser test at a time: each runs a browser, a server and duet processes on two cores,
/// and the figures they measure would be those of the machine's load.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// A browser test's world, all of it inside a network namespace of its own whose only
/// interface is `lo`: chromedriver and Chromium, `duet serve` and the `duet` processes. The
/// test's thread is inside it too while the stage lives (its WebDriver connections and
/// in-process clients are made there), so nothing the test starts can reach the host's own
/// interfaces. Dropped (also when the test fails), the browser quits, the processes end, the
/// thread goes back to its namespace and the namespace is deleted.
struct Stage {
    browser: Browser,
    world: World,
    _inside: Inside,
    netns: Netns,
    _one: MutexGuard<'static, ()>,
}

impl Stage {
    /// A stage with `users` on its server; `None` (the test is skipped, saying why) when
    /// there is no Chromium or no namespaces outside CI.
    fn new(users: &[&str]) -> Option<Stage> {
        let one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        match Stage::try_new(users, one) {
            Ok(stage) => Some(stage),
            Err(why) if std::env::var_os("CI").is_some() => {
                panic!("the browser test needs headless Chromium in a network namespace: {why}")
            }
            Err(why) => {
                eprintln!("skipping the browser test: {why}");
                None
            }
        }
    }

    fn try_new(users: &[&str], one: MutexGuard<'static, ()>) -> Result<Stage, String> {
        let chromium = find_binary("DUET_CHROMIUM", &["chromium", "chromium-browser"])
            .ok_or("chromium is not installed (scripts/setup.sh installs it)")?;
        let chromedriver = find_binary("DUET_CHROMEDRIVER", &["chromedriver"])
            .ok_or("chromedriver is not installed (scripts/setup.sh installs chromium-driver)")?;
        if let Some(why) = netns::unavailable() {
            return Err(why);
        }
        let netns = Netns::new("duet-br");
        let inside = netns.enter();
        let world = World::inside(users, &netns);
        let browser = Browser::start(&netns, chromium, chromedriver)?;
        Ok(Stage {
            browser,
            world,
            _inside: inside,
            netns,
            _one: one,
        })
    }

    /// The page of the stage's server.
    fn page(&self) -> String {
        self.world.url.replacen("ws://", "http://", 1)
    }

    /// A runtime whose threads make their sockets inside the stage's namespace.
    fn runtime(&self) -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(self.netns.thread_hook())
            .build()
            .expect("a runtime")
    }
}

#[test]
fn the_web_client_chats_with_a_native_contact() {
    let Some(stage) = Stage::new(&["alice", "bob", "carol"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());

    let rt = stage.runtime();
    let config = ClientConfig::new(
        world.url.clone(),
        UserName::new("bob").unwrap(),
        world.token("bob"),
    );
    let (bob, mut events) = rt.block_on(Client::connect(config)).expect("bob logs in");

    // A wrong token gets a clear message and no session.
    browser.goto(&page);
    browser.type_into("#user", "alice");
    browser.type_into("#token", "not-the-token");
    browser.click("#signin-button");
    browser.wait_for(
        "the bad-token message",
        "return document.getElementById('signin-error').textContent.includes('Wrong name or token')",
        WAIT,
    );

    // Signed in without "remember me": the token is not kept.
    browser.type_into("#token", &world.token("alice"));
    browser.click("#signin-button");
    browser.wait_for(
        "bob in alice's contact list",
        "return !!document.querySelector('#contacts li[data-user=\"bob\"] .dot.online')",
        WAIT,
    );
    assert_eq!(
        browser.eval("return localStorage.getItem('duet.token')"),
        Value::Null
    );

    // Browser to native, with a delivery receipt shown in the browser.
    browser.click("#contacts li[data-user=\"bob\"]");
    browser.type_into("#message", "hello from the browser");
    browser.click("#composer button");
    next_event(&rt, &mut events, "alice's message", |e| {
        matches!(e, ClientEvent::Chat { from, text, .. }
            if from.as_str() == "alice" && text == "hello from the browser")
    });
    browser.wait_for(
        "the delivery receipt in the browser",
        "return !!document.querySelector('#messages .msg.mine .receipt.delivered')",
        WAIT,
    );

    // Native to browser, with a delivery receipt back to bob.
    rt.block_on(bob.chat("alice", "hello from duet")).unwrap();
    browser.wait_for(
        "bob's message in the browser",
        "return [...document.querySelectorAll('#messages .msg.theirs .text')]\
         .some((m) => m.textContent === 'hello from duet')",
        WAIT,
    );
    next_event(
        &rt,
        &mut events,
        "alice's receipt",
        |e| matches!(e, ClientEvent::Receipt { from, .. } if from.as_str() == "alice"),
    );

    // A presence change shows within a second.
    let sent = Instant::now();
    rt.block_on(bob.set_presence(Status::Busy, Some("in a meeting".into())))
        .unwrap();
    browser.wait_for(
        "bob's presence in the browser",
        "const li = document.querySelector('#contacts li[data-user=\"bob\"]');\
         return !!li && !!li.querySelector('.dot.busy') && li.textContent.includes('in a meeting')",
        Duration::from_secs(1),
    );
    eprintln!(
        "presence shown in the browser {:?} after it was set",
        sent.elapsed()
    );

    // Markup in a message is text.
    let xss = "<img src=x onerror=alert(1)>";
    rt.block_on(bob.chat("alice", xss)).unwrap();
    browser.wait_for(
        "the markup message as text",
        &format!(
            "return [...document.querySelectorAll('#messages .msg.theirs .text')]\
             .some((m) => m.textContent === {})",
            json!(xss)
        ),
        WAIT,
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#messages img').length"),
        json!(0)
    );
    assert!(!browser.alert_open(), "a chat message ran script");

    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-chat.png");
    browser.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
    let png = std::fs::read(&shot).unwrap();
    assert!(
        png.starts_with(b"\x89PNG") && png.len() > 10_000,
        "a real picture"
    );

    // Contacts: a request from carol is accepted in the browser, then carol is blocked; adding
    // a name nobody has says so.
    world.ok("carol", &["contact", "remove", "alice"]);
    world.ok("carol", &["contact", "add", "alice"]);
    let carol = "document.querySelector('#contacts li[data-user=\"carol\"]')";
    browser.wait_for(
        "carol's request in the browser",
        &format!("const li = {carol}; return !!li && li.textContent.includes('wants to be your contact')"),
        WAIT,
    );
    browser.click("#contacts li[data-user=\"carol\"] button");
    browser.wait_for(
        "carol accepted",
        &format!("const li = {carol}; return !!li && !li.querySelector('button') && li.textContent.includes('Offline')"),
        WAIT,
    );
    browser.click("#contacts li[data-user=\"carol\"]");
    browser.click("#block");
    browser.wait_for(
        "carol blocked",
        &format!("const li = {carol}; return !!li && li.textContent.includes('blocked')"),
        WAIT,
    );
    browser.type_into("#add-name", "nobody");
    browser.click("#add-form button");
    // The server answers an unknown name as it does a known one who has not accepted: the
    // request waits in the list, and nothing tells which names exist.
    browser.wait_for(
        "an unknown name shown as a pending request",
        "return !!document.querySelector('#contacts li[data-user=\"nobody\"]')",
        WAIT,
    );

    // Signed out, then in again with "remember me": now the token is kept.
    browser.click("#signout");
    browser.wait_for(
        "the sign-in form after signing out",
        "return !document.getElementById('signin-view').hidden",
        WAIT,
    );
    browser.type_into("#token", &world.token("alice"));
    browser.click("#remember");
    browser.click("#signin-button");
    browser.wait_for(
        "signed in again",
        "return !document.getElementById('app-view').hidden",
        WAIT,
    );
    assert_eq!(
        browser.eval("return localStorage.getItem('duet.token')"),
        json!(world.token("alice"))
    );
    rt.block_on(bob.close());
}

/// The browser's `inbound-rtp` statistics of `kind` (`audio` or `video`).
fn inbound<'a>(stats: &'a Value, kind: &str) -> &'a Value {
    stats
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["type"] == "inbound-rtp" && s["kind"] == kind)
        })
        .unwrap_or_else(|| panic!("no inbound {kind} in the browser's statistics: {stats}"))
}

fn number(v: &Value) -> f64 {
    v.as_f64().unwrap_or(0.0)
}

/// Asserts that media flowed both ways, from the browser's statistics (taken just before the end
/// of the call) and duet's report, and prints the figures that compare them.
fn media_flowed_both_ways(stats: &Value, report: &Value) {
    let audio = inbound(stats, "audio");
    let video = inbound(stats, "video");
    assert!(
        number(&audio["packetsReceived"]) > 0.0 && number(&audio["totalSamplesReceived"]) > 0.0,
        "the browser got no audio: {audio}"
    );
    assert!(
        number(&video["packetsReceived"]) > 0.0 && number(&video["framesDecoded"]) > 0.0,
        "the browser decoded no video: {video}"
    );
    let shown = report["video"]["frames_shown"].as_u64().unwrap_or(0);
    let played = report["audio"]["frames"].as_u64().unwrap_or(0);
    assert!(
        shown > 0,
        "duet showed no picture from the browser: {report}"
    );
    assert!(
        played > 0,
        "duet played no audio from the browser: {report}"
    );

    let sent = number(&report["video"]["frames_sent"]);
    let decoded = number(&video["framesDecoded"]);
    let browser_concealed =
        number(&audio["concealedSamples"]) / number(&audio["totalSamplesReceived"]);
    eprintln!(
        "browser: {decoded} frames decoded of duet's {sent} sent ({:.1} %), {} x {}, \
         audio concealed {:.3} % (concealedSamples / totalSamplesReceived)",
        100.0 * decoded / sent.max(1.0),
        video["frameWidth"],
        video["frameHeight"],
        100.0 * browser_concealed,
    );
    eprintln!(
        "duet: {shown} pictures shown ({} decoded), latency source {}, {played} audio frames \
         played, audio concealed {:.3} % (concealed_ratio), jitter_buffer_ms {}, \
         current_delay_ms p95 {}, latency source {}",
        report["video"]["frames_decoded"],
        report["video"]["latency_source"],
        100.0 * number(&report["audio"]["concealed_ratio"]),
        report["audio"]["jitter_buffer_ms"],
        report["audio"]["current_delay_ms"]["p95"],
        report["audio"]["latency_source"],
    );
    assert!(
        decoded >= 0.8 * sent,
        "the browser decoded {decoded} of {sent} frames duet sent"
    );
}

/// Checks what bob saved of alice's call: her fake microphone's beeps (every half second) and
/// her pattern before she muted and turned the camera off, silence and black pictures in the
/// last second after.
fn muted_and_black_at_the_end(wav: &std::path::Path, y4m: &std::path::Path) {
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let mut source = WavSource::open(wav, format).expect("bob's recording");
    let mut frame = AudioFrame::silent(format, Instant::now());
    let mut samples: Vec<i16> = Vec::new();
    while let Ok(Got::Frame) = source.read(Instant::now(), &mut frame) {
        samples.extend_from_slice(&frame.samples);
    }
    let second = 48_000;
    assert!(samples.len() > 5 * second, "{} samples", samples.len());
    let peak = |part: &[i16]| part.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
    // The recording may begin with the ringing; the mute comes 3 s or more before the end.
    let (before, after) = (
        peak(&samples[..samples.len() - 7 * second / 2]),
        peak(&samples[samples.len() - second..]),
    );
    eprintln!(
        "bob heard: peak {before} until 3.5 s before the end, {after} in the last second (muted)"
    );
    assert!(before > 1000, "no beeps before muting: peak {before}");
    assert!(after < 100, "sound after muting: peak {after}");

    let mut source = Y4mSource::open(y4m).expect("bob's video");
    let (w, h) = source.size();
    let mut picture = VideoFrame::black(w, h, Instant::now()).expect("a picture");
    // Mean luma below the stamp band of each picture.
    let band = duet_media::video::stamp::stamp_band_height(w, h) as usize;
    let mut means = Vec::new();
    while let Ok(Got::Frame) = source.read(Instant::now(), &mut picture) {
        let luma = &picture.data[band * w as usize..(w * h) as usize];
        means.push(luma.iter().map(|&p| f64::from(p)).sum::<f64>() / luma.len() as f64);
    }
    let first = means[..means.len() / 2].iter().copied().fold(0.0, f64::max);
    let last = means[means.len() - 1];
    eprintln!(
        "bob saw: mean luma up to {first:.0} in the first half, {last:.0} at the end (camera off)"
    );
    assert!(first > 40.0, "the pattern is not there before: {first}");
    assert!(last < 25.0, "the picture is not black after: {last}");
}

/// The browser's `outbound-rtp` statistics of `kind`.
fn outbound<'a>(stats: &'a Value, kind: &str) -> &'a Value {
    stats
        .as_array()
        .and_then(|all| {
            all.iter()
                .find(|s| s["type"] == "outbound-rtp" && s["kind"] == kind)
        })
        .unwrap_or_else(|| panic!("no outbound {kind} in the browser's statistics: {stats}"))
}

/// Why the machine is too busy for a call's figures to say anything about duet, if it is: its
/// load average over the last minute is above twice its processors (other jobs, not the test,
/// then decide when the browser's and duet's threads run: stalls of 50 to 150 ms, and the
/// audio concealed and video delayed behind them, are theirs). On a machine running only the
/// tests the figures are held to the limits.
fn busy_machine() -> Option<String> {
    let load: f64 = std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (load > 2.0 * cpus).then(|| {
        format!("the load average is {load:.1} on {cpus} processors, more than twice their number")
    })
}

/// Asserts that a call on loopback was clean both ways, and prints its figures: video latency
/// p50 at most 40 ms each way, from the stamps in the pixels (duet's pattern read by
/// `Duet.readStamps` in the browser up to the moment Chromium hands the picture to its
/// compositor, as duet's figure ends when a picture is handed to its sink; the browser's `Duet.stampedPattern` read by duet, its
/// report's `latency_source` saying `stamps`), with one wall clock for both (same machine);
/// at least 95 % of the frames each side sent decoded by the other; at most 2 % of the audio
/// concealed by each side (the aim is 0.5 %, which a quiet 2-core machine running Chromium
/// beside duet does not always meet: 0.3 to 0.8 % measured there). On a machine busy with other
/// jobs ([`busy_machine`]) it only prints them.
fn clean_both_ways(stats: &Value, report: &Value, stamps: &Value) {
    let to_browser = stamps["p50"]
        .as_f64()
        .unwrap_or_else(|| panic!("the browser read no stamps from duet's video: {stamps}"));
    let video = &report["video"];
    assert_eq!(video["latency_source"], "stamps", "{video}");
    let to_duet = number(&video["latency_ms"]["p50"]);
    let audio = inbound(stats, "audio");
    let browser_concealed =
        number(&audio["concealedSamples"]) / number(&audio["totalSamplesReceived"]);
    let duet_concealed = number(&report["audio"]["concealed_ratio"]);
    let (sent, decoded) = (
        number(&report["video"]["frames_sent"]),
        number(&inbound(stats, "video")["framesDecoded"]),
    );
    let (browser_sent, duet_decoded) = (
        number(&outbound(stats, "video")["framesSent"]),
        number(&video["frames_decoded"]),
    );
    eprintln!(
        "video latency p50 (stamps): duet -> browser {to_browser:.1} ms (its last packet in the \
         browser after {}; {} stamps read, {} pictures without), browser -> duet {to_duet:.1} ms ({} stamp errors); frames decoded: \
         browser {decoded} of {sent}, duet {duet_decoded} of {browser_sent}; audio concealed: \
         browser {:.3} %, duet {:.3} %",
        stamps["received"]
            .as_f64()
            .map_or("an unreported time".to_string(), |ms| format!("{ms:.1} ms")),
        stamps["count"],
        stamps["errors"],
        video["stamp_errors"],
        100.0 * browser_concealed,
        100.0 * duet_concealed,
    );
    if let Some(busy) = busy_machine() {
        eprintln!("these figures are not held to the limits: {busy}");
        return;
    }
    assert!(
        to_browser <= 40.0,
        "duet -> browser latency p50 {to_browser} ms"
    );
    assert!(to_duet <= 40.0, "browser -> duet latency p50 {to_duet} ms");
    assert!(
        decoded >= 0.95 * sent,
        "the browser decoded {decoded} of {sent}"
    );
    assert!(
        duet_decoded >= 0.95 * browser_sent,
        "duet decoded {duet_decoded} of the browser's {browser_sent}"
    );
    assert!(
        browser_concealed <= 0.02,
        "the browser concealed {browser_concealed}"
    );
    assert!(duet_concealed <= 0.02, "duet concealed {duet_concealed}");
}

/// Asserts that every ICE candidate of the call, Chromium's own (`local-candidate`) and duet's
/// as Chromium learned them (`remote-candidate`, signaled or peer-reflexive), is on the
/// loopback interface (or an mDNS name): the call never touched another interface.
fn only_loopback_candidates(stats: &Value) {
    let all = stats.as_array().expect("statistics");
    let mut seen = Vec::new();
    for kind in ["local-candidate", "remote-candidate"] {
        let addresses: Vec<String> = all
            .iter()
            .filter(|s| s["type"] == kind)
            .map(|s| {
                s["address"]
                    .as_str()
                    .or(s["ip"].as_str())
                    .unwrap_or_default()
                    .to_owned()
            })
            .collect();
        assert!(
            !addresses.is_empty(),
            "no {kind} in the browser's statistics"
        );
        for a in &addresses {
            assert!(
                a == "127.0.0.1" || a == "::1" || a.ends_with(".local"),
                "a {kind} off the loopback interface: {a} (all: {addresses:?})"
            );
        }
        seen.push(format!("{kind}s {addresses:?}"));
    }
    eprintln!("ICE candidates: {}", seen.join(", "));
}

/// Checks what the call negotiated, from the browser's side: Opus and H.264 constrained baseline
/// (42e01f, packetization-mode 1) in use as the browser's statistics name them, and prints the
/// DTLS roles of both descriptions.
fn negotiated_opus_and_h264(browser: &Browser, call: &str, stats: &Value) {
    for (kind, mime) in [("audio", "audio/opus"), ("video", "video/H264")] {
        let codec_id = &inbound(stats, kind)["codecId"];
        let codec = stats
            .as_array()
            .and_then(|all| {
                all.iter()
                    .find(|s| s["type"] == "codec" && &s["id"] == codec_id)
            })
            .unwrap_or_else(|| panic!("no codec {codec_id} in the browser's statistics"));
        assert_eq!(codec["mimeType"], json!(mime), "{codec}");
        if kind == "video" {
            let fmtp = codec["sdpFmtpLine"].as_str().unwrap_or_default();
            assert!(
                fmtp.contains("profile-level-id=42e01f") && fmtp.contains("packetization-mode=1"),
                "H.264 as negotiated: {fmtp}"
            );
        }
    }
    let setup = browser.eval(&format!(
        "const pc = {call}.peerConnection;
         const role = (d) => (d.sdp.match(/a=setup:(\\w+)/) || [])[1];
         return `browser ${{role(pc.currentLocalDescription)}}, duet ${{role(pc.currentRemoteDescription)}}`;"
    ));
    eprintln!("DTLS setup: {setup}");
}

/// Loads duet.js into the page and logs in as `user`; the page's `t` holds the client and the
/// stream it sends: the fake microphone and duet's stamped test pattern (`Duet.stampedPattern`).
fn duet_js_login(browser: &Browser, user: &str, token: &str) {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const {{ Duet }} = await import('/duet.js');
           const client = await Duet.connect({{ user: {user}, token: {token} }});
           const mic = await navigator.mediaDevices.getUserMedia({{ audio: true }});
           const pattern = Duet.stampedPattern({{ width: 320, height: 240, fps: 30 }});
           const stream = new MediaStream([...mic.getAudioTracks(), ...pattern.getVideoTracks()]);
           window.t = {{ Duet, client, stream, result: null, call: null, reader: null }};
           return 'ok';
         }})().then(done, (e) => done(`failed: ${{e.message}}`));",
        user = json!(user),
        token = json!(token),
    );
    assert_eq!(browser.eval_async(&script), json!("ok"));
}

/// The call's statistics, from the browser's getStats.
fn call_stats(browser: &Browser, call: &str) -> Value {
    browser.eval_async(&format!(
        "const done = arguments[arguments.length - 1];
         {call}.stats().then(done, (e) => done(`failed: ${{e.message}}`));"
    ))
}

#[test]
fn the_browser_calls_native_duet() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    let bob = world.answer("bob", &["--auto", "--json"]);
    browser.goto(&page);
    duet_js_login(browser, "alice", &world.token("alice"));

    let started = Instant::now();
    browser.eval(
        "t.client.call('bob', { stream: t.stream }).then((call) => {
           const video = document.createElement('video');
           video.autoplay = true;
           video.srcObject = call.remoteStream;
           document.body.append(video);
           t.reader = t.Duet.readStamps(video);
           t.call = call;
           t.result = 'connected';
         }, (e) => { t.result = `failed: ${e.code}: ${e.message}`; });",
    );
    browser.wait_for(
        "the call connected",
        "return t.result !== null",
        Duration::from_secs(25),
    );
    let result = browser.eval("return t.result");
    if result != json!("connected") {
        let (_, _, stderr) = bob.finish(Duration::from_secs(30));
        panic!("the call did not connect: {result}\nduet answer: {stderr}");
    }
    eprintln!("connected {:?} after calling", started.elapsed());

    std::thread::sleep(Duration::from_secs(10));
    let stamps = browser
        .eval("return { p50: t.reader.p50(), received: t.reader.receivedP50(), count: t.reader.count, errors: t.reader.errors }");
    let stats = call_stats(browser, "t.call");
    negotiated_opus_and_h264(browser, "t.call", &stats);
    only_loopback_candidates(&stats);
    browser.eval("t.call.hangUp()");
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(20));
    assert!(status.success(), "duet answer: {status:?}\n{stderr}");
    assert!(stderr.contains("the peer hung up"), "{stderr}");
    let report = common::json(&stdout);
    media_flowed_both_ways(&stats, &report);
    clean_both_ways(&stats, &report, &stamps);
}

#[test]
fn native_duet_calls_the_web_client() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    // The web client sends duet's stamped test pattern instead of a camera.
    browser.goto(&format!("{page}?camera=pattern"));
    browser.type_into("#user", "alice");
    browser.type_into("#token", &world.token("alice"));
    browser.click("#signin-button");
    browser.wait_for(
        "bob online in alice's contact list",
        "return !!document.querySelector('#contacts li[data-user=\"bob\"]')",
        WAIT,
    );

    // Declined in the browser: duet says so.
    let bob = world.call("bob", "alice", &["--seconds", "8"]);
    browser.wait_for(
        "the first incoming call",
        "return !document.getElementById('incoming').hidden",
        Duration::from_secs(20),
    );
    browser.click("#decline-call");
    let (status, _, stderr) = bob.finish(Duration::from_secs(20));
    assert_eq!(status.code(), Some(3), "duet call, declined: {stderr}");
    assert!(stderr.contains("declined"), "{stderr}");
    assert_eq!(browser.eval("return duet.call"), Value::Null);

    let (wav, y4m) = (world.path("bob.wav"), world.path("bob.y4m"));
    let bob = world.call(
        "bob",
        "alice",
        &[
            "--seconds",
            "9",
            "--json",
            "--save-audio",
            wav.to_str().unwrap(),
            "--save-video",
            y4m.to_str().unwrap(),
        ],
    );
    browser.wait_for(
        "the incoming call",
        "return !document.getElementById('incoming').hidden \
         && document.getElementById('incoming-text').textContent.includes('bob is calling')",
        Duration::from_secs(20),
    );
    browser.click("#accept-call");
    browser.wait_for(
        "the call connected",
        "return !!duet.call && duet.call.state === 'connected'",
        Duration::from_secs(20),
    );
    // The statistics as they were last before bob hangs up: read every 100 ms until the end.
    browser.eval(
        "const call = duet.call;
         window.lastStats = null;
         const timer = setInterval(() => {
           if (call.state !== 'connected') { clearInterval(timer); return; }
           call.stats().then((s) => {
             if (call.state !== 'connected') return;
             window.lastStats = s;
             const r = duet.stamps;
             window.lastStamps = { p50: r.p50(), received: r.receivedP50(), count: r.count, errors: r.errors };
           });
         }, 100);",
    );
    std::thread::sleep(Duration::from_secs(5));
    let stats = call_stats(browser, "duet.call");
    negotiated_opus_and_h264(browser, "duet.call", &stats);
    only_loopback_candidates(&stats);
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-call.png");
    browser.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());

    // Mute and camera off for the rest of the call: bob hears silence and sees black.
    browser.click("#mute");
    browser.click("#camera");
    assert_eq!(
        browser.eval(
            "return [document.getElementById('mute').textContent, \
             ...duet.call.localStream.getTracks().map((t) => `${t.kind} ${t.enabled}`)]"
        ),
        json!(["Unmute", "audio false", "video false"])
    );

    let (status, stdout, stderr) = bob.finish(Duration::from_secs(30));
    assert!(status.success(), "duet call: {status:?}\n{stderr}");
    browser.wait_for(
        "the call view closed after bob hung up",
        "return document.getElementById('call-view').hidden && !duet.call",
        WAIT,
    );
    let stats = browser.eval("return window.lastStats");
    let stamps = browser.eval("return window.lastStamps");
    let report = common::json(&stdout);
    media_flowed_both_ways(&stats, &report);
    clean_both_ways(&stats, &report, &stamps);
    muted_and_black_at_the_end(&wav, &y4m);
}

/// Asserts that every candidate a signal carries (a candidate signal, or `a=candidate` lines
/// of a description) names a loopback address (or an mDNS name).
fn on_loopback(signal: &Signal, whose: &str) {
    let candidates: Vec<&str> = match signal {
        Signal::Candidate { candidate, .. } => vec![candidate.as_str()],
        Signal::Offer { sdp } | Signal::Answer { sdp } => sdp
            .lines()
            .filter_map(|l| l.trim().strip_prefix("a="))
            .filter(|l| l.starts_with("candidate:"))
            .collect(),
        _ => Vec::new(),
    };
    for candidate in candidates {
        // candidate:FOUNDATION COMPONENT PROTOCOL PRIORITY ADDRESS PORT typ TYPE ...
        let address = candidate.split_whitespace().nth(4).unwrap_or_default();
        assert!(
            address == "127.0.0.1" || address == "::1" || address.ends_with(".local"),
            "{whose} candidate is off the loopback interface: {candidate}"
        );
    }
}

/// Moves the signals between the page's `t.out` (what the browser's session emitted) and the
/// in-process session, both ways, once; returns the Rust side's other events.
fn carry_signals(
    rt: &tokio::runtime::Runtime,
    browser: &Browser,
    session: &CallSession,
    events: &mut CallEvents,
) -> Vec<CallEvent> {
    let mut other = Vec::new();
    while let Some(event) = events.try_recv() {
        match event {
            CallEvent::Signal(signal) => {
                on_loopback(&signal, "duet's");
                let text = serde_json::to_string(&signal).expect("a signal as JSON");
                // As text, as a messenger's channel would carry it.
                browser.eval(&format!("t.session.handleSignal({});", json!(text)));
            }
            event => other.push(event),
        }
    }
    let out = browser.eval("return t.out.splice(0)");
    for signal in out.as_array().expect("the page's signals") {
        let signal: Signal = serde_json::from_value(signal.clone()).unwrap_or_else(|e| {
            panic!("the browser sent a signal duet does not read ({e}): {signal}")
        });
        on_loopback(&signal, "the browser's");
        rt.block_on(session.handle_signal(signal))
            .expect("duet takes the browser's signal");
    }
    other
}

#[test]
fn duet_js_call_session_reaches_a_native_call_session_over_signals_the_test_carries() {
    let Some(stage) = Stage::new(&["alice"]) else {
        return;
    };
    let browser = &stage.browser;
    browser.goto(&stage.page());
    // The page's session, its signals collected in `t.out` for the test to carry.
    let ready = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         (async () => {
           const { Duet } = await import('/duet.js');
           const mic = await navigator.mediaDevices.getUserMedia({ audio: true });
           const pattern = Duet.stampedPattern({ width: 320, height: 240, fps: 30 });
           const stream = new MediaStream([...mic.getAudioTracks(), ...pattern.getVideoTracks()]);
           const out = [];
           const session = Duet.callSession({ stream, onSignal: (s) => out.push(s) });
           window.t = { session, out, ended: null };
           session.on('ended', (e) => { t.ended = e; });
           return 'ok';
         })().then(done, (e) => done(`failed: ${e.message}`));",
    );
    assert_eq!(ready, json!("ok"));

    // The native side, in this process (inside the stage's namespace): duet-media's
    // CallSession, the caller.
    let rt = stage.runtime();
    let format = AudioFormat {
        channels: Channels::Mono,
        frame: FrameDuration::Ms20,
    };
    let (session, mut events) = rt
        .block_on(CallSession::new(
            CallConfig::new(Some(format), true),
            CallSinks::default(),
        ))
        .expect("a native session");
    rt.block_on(session.start()).expect("the offer");
    let deadline = Instant::now() + WAIT;
    let mut connected = false;
    while !(connected && browser.eval("return t.session.state") == json!("connected")) {
        for event in carry_signals(&rt, browser, &session, &mut events) {
            match event {
                CallEvent::Connected => connected = true,
                CallEvent::Ended(reason) => panic!("the native session ended: {reason}"),
                CallEvent::Signal(_) => {}
            }
        }
        assert!(
            Instant::now() < deadline,
            "not connected within {WAIT:?} (native: {connected}, browser: {})",
            browser.eval("return t.session.state")
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // duet sends a tone and its test pattern; the browser its fake microphone and pattern.
    let now = Instant::now();
    let media = LocalMedia {
        audio: Some(LocalAudio {
            source: Box::new(Tone::new(format, 440.0, 0.3, now)),
            opus: OpusConfig::voice(format),
        }),
        video: Some(LocalVideo {
            source: Box::new(
                TestPattern::new(320, 240, 30, now)
                    .expect("a pattern")
                    .with_epoch(wall_epoch()),
            ),
            h264: H264Config {
                width: 320,
                height: 240,
                bitrate_bps: 300_000,
                fps: 30.0,
                keyframe_interval: 0,
            },
        }),
    };
    let pump = {
        let _in_runtime = rt.enter();
        MediaPump::start(session.sender(), media).expect("media flows")
    };
    browser.eval(
        "const video = document.createElement('video');
         video.autoplay = true;
         video.muted = true;
         video.srcObject = t.session.remoteStream;
         document.body.append(video);",
    );
    std::thread::sleep(Duration::from_secs(4));
    let stats = call_stats(browser, "t.session");
    let native = rt.block_on(session.refresh_stats());
    pump.stop().expect("the pump stops");

    only_loopback_candidates(&stats);
    let audio = inbound(&stats, "audio");
    let video = inbound(&stats, "video");
    eprintln!(
        "browser: {} audio packets, {} frames decoded; duet: {} audio packets, {} frames decoded",
        audio["packetsReceived"],
        video["framesDecoded"],
        native.audio.jitter.packets_received,
        native.video.frames_decoded,
    );
    assert!(number(&audio["packetsReceived"]) > 50.0, "{audio}");
    assert!(number(&video["framesDecoded"]) > 30.0, "{video}");
    assert!(native.audio.jitter.packets_received > 50, "{native:?}");
    assert!(native.video.frames_decoded > 30, "{native:?}");

    // The browser hangs up: its end signal, carried like the others, ends the native session.
    browser.eval("t.session.hangUp('bye')");
    let deadline = Instant::now() + WAIT;
    loop {
        let ended = carry_signals(&rt, browser, &session, &mut events)
            .into_iter()
            .find_map(|e| match e {
                CallEvent::Ended(reason) => Some(reason),
                _ => None,
            });
        if let Some(reason) = ended {
            assert_eq!(reason, EndReason::RemoteHungUp("bye".into()));
            break;
        }
        assert!(Instant::now() < deadline, "the native session did not end");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A file of `len` pseudo-random bytes (seeded xorshift64*), and its SHA-256 in hex.
fn random_file(path: &std::path::Path, len: usize, seed: u64) -> String {
    let mut state = seed | 1;
    let mut data = Vec::with_capacity(len + 8);
    while data.len() < len {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        data.extend_from_slice(&state.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    data.truncate(len);
    std::fs::write(path, &data).expect("write file");
    sha256_hex(&data)
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The size of the files the transfer tests move.
const FILE_BYTES: usize = 20_000_000;

/// Loads duet.js into the page and logs in as `user`; the page's `t` holds the client.
fn duet_js_files_login(browser: &Browser, user: &str, token: &str) {
    let script = format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const {{ Duet }} = await import('/duet.js');
           const client = await Duet.connect({{ user: {user}, token: {token} }});
           window.t = {{ Duet, client, result: null, error: null, progress: 0, transfer: null }};
           return 'ok';
         }})().then(done, (e) => done(`failed: ${{e.message}}`));",
        user = json!(user),
        token = json!(token),
    );
    assert_eq!(browser.eval_async(&script), json!("ok"));
}

/// The SHA-256 of the page's `t.result.blob`, computed by the browser (`crypto.subtle`).
fn browser_blob_sha256(browser: &Browser) -> Value {
    browser.eval_async(
        "const done = arguments[arguments.length - 1];
         t.result.blob.arrayBuffer()
           .then((b) => crypto.subtle.digest('SHA-256', b))
           .then((d) => done(Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, '0')).join('')),
                 (e) => done(`failed: ${e.message}`));",
    )
}

#[test]
fn native_duet_sends_a_file_to_the_browser() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    browser.goto(&page);
    duet_js_files_login(browser, "alice", &world.token("alice"));

    // duet.js's streaming SHA-256 (the whole-file check) agrees with the browser's own.
    let agree = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         (async () => {
           const bad = [];
           for (const n of [0, 1, 55, 56, 63, 64, 65, 1000, (1 << 20) + 3]) {
             const data = new Uint8Array(n);
             for (let i = 0; i < n; i++) data[i] = (i * 7919 + (i >> 8)) & 255;
             const streamed = new t.Duet.Sha256();
             for (let at = 0; at < n; at += 333) streamed.update(data.subarray(at, at + 333));
             const mine = Array.from(streamed.digest()).join();
             const theirs = Array.from(new Uint8Array(await crypto.subtle.digest('SHA-256', data))).join();
             if (mine !== theirs) bad.push(n);
           }
           return bad;
         })().then(done, (e) => done(`failed: ${e.message}`));",
    );
    assert_eq!(agree, json!([]), "lengths where duet.js's SHA-256 is wrong");

    // The browser accepts what is offered and keeps the result.
    browser.eval(
        "t.client.on('fileOffer', (offer) => {
           t.offer = { name: offer.name, size: offer.size, from: offer.from };
           offer.accept().then((transfer) => {
             t.transfer = transfer;
             transfer.on('progress', () => { t.progress += 1; });
             transfer.done.then((r) => { t.result = r; }, (e) => { t.error = `${e.code}: ${e.message}`; });
           }, (e) => { t.error = `${e.code}: ${e.message}`; });
         });",
    );
    let file = world.path("twenty.bin");
    let sha256 = random_file(&file, FILE_BYTES, 20);
    let bob = common::spawn(world.cmd("bob", &["send", "alice", file.to_str().unwrap(), "--json"]));
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(60));
    assert!(status.success(), "duet send: {status:?}\n{stderr}");
    browser.wait_for(
        "the file whole in the browser",
        "return t.result !== null || t.error !== null",
        WAIT,
    );
    assert_eq!(browser.eval("return t.error"), Value::Null);
    assert_eq!(
        browser.eval("return t.offer"),
        json!({"name": "twenty.bin", "size": FILE_BYTES, "from": "bob"})
    );
    let result = browser.eval(
        "const r = t.result; return { size: r.blob.size, sha256: r.sha256, seconds: r.seconds, \
         moved: r.bytesMoved, blocks: r.blocksMoved, progress: t.progress, \
         stats: t.transfer.stats }",
    );
    assert_eq!(result["size"], json!(FILE_BYTES), "{result}");
    assert_eq!(result["sha256"], json!(sha256), "{result}");
    assert_eq!(browser_blob_sha256(browser), json!(sha256));
    assert!(
        number(&result["progress"]) >= 100.0,
        "progress events: {result}"
    );
    let sent = common::json(&stdout);
    assert_eq!(sent["outcome"], "delivered", "{sent}");
    let seconds = number(&result["seconds"]);
    eprintln!(
        "duet -> browser: {:.1} MB in {seconds:.2} s, {:.1} MB/s in the browser (duet send: \
         {:.2} s, {:.1} MB/s); {} blocks, hash failures {}, re-requests {}",
        FILE_BYTES as f64 / 1e6,
        FILE_BYTES as f64 / 1e6 / seconds,
        number(&sent["seconds"]),
        number(&sent["mb_per_s"]),
        result["blocks"],
        result["stats"]["hashFailures"],
        result["stats"]["rerequests"],
    );
}

#[test]
fn the_browser_sends_a_file_to_native_duet() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    let inbox = world.path("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let bob = world.answer(
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json"],
    );
    browser.goto(&page);
    duet_js_files_login(browser, "alice", &world.token("alice"));
    browser.wait_for(
        "bob online in the browser",
        "const c = t.client.contacts.get('bob'); return !!c && c.status !== 'offline'",
        WAIT,
    );

    // 20 MB of seeded bytes made in the page, hashed there by crypto.subtle, then sent.
    let sha256 = browser.eval_async(&format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const data = new Uint8Array({FILE_BYTES});
           let s = 0x9e3779b9;
           for (let i = 0; i < data.length; i++) {{
             s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
             data[i] = s & 255;
           }}
           const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
           const file = new Blob([data]);
           const transfer = t.client.sendFile('bob', file, {{ fileName: 'from-the-browser.bin' }});
           t.transfer = transfer;
           transfer.on('progress', () => {{ t.progress += 1; }});
           transfer.done.then((r) => {{ t.result = r; }}, (e) => {{ t.error = `${{e.code}}: ${{e.message}}`; }});
           return Array.from(digest, (x) => x.toString(16).padStart(2, '0')).join('');
         }})().then(done, (e) => done(`failed: ${{e.message}}`));"
    ));
    let sha256 = sha256.as_str().expect("the browser's SHA-256").to_owned();
    assert_eq!(sha256.len(), 64, "{sha256}");
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(60));
    assert!(status.success(), "duet answer: {status:?}\n{stderr}");
    browser.wait_for(
        "the browser told the file arrived",
        "return t.result !== null || t.error !== null",
        WAIT,
    );
    assert_eq!(browser.eval("return t.error"), Value::Null);
    let received = common::json(&stdout);
    assert_eq!(received["outcome"], "delivered", "{received}");
    let path = PathBuf::from(received["path"].as_str().expect("where the file is"));
    assert_eq!(path, inbox.join("from-the-browser.bin"));
    let bytes = std::fs::read(&path).expect("the received file");
    assert_eq!(bytes.len(), FILE_BYTES);
    assert_eq!(
        sha256_hex(&bytes),
        sha256,
        "the file on disk is not the browser's"
    );
    let result = browser.eval(
        "const r = t.result; return { sha256: r.sha256, seconds: r.seconds, moved: r.bytesMoved, \
         blocks: r.blocksMoved, progress: t.progress }",
    );
    assert_eq!(result["sha256"], json!(sha256), "{result}");
    assert!(
        number(&result["progress"]) >= 100.0,
        "progress events: {result}"
    );
    let seconds = number(&received["seconds"]);
    eprintln!(
        "browser -> duet: {:.1} MB in {seconds:.2} s, {:.1} MB/s at duet (the browser: {:.2} s); \
         {} blocks",
        FILE_BYTES as f64 / 1e6,
        number(&received["mb_per_s"]),
        number(&result["seconds"]),
        result["blocks"],
    );
}

#[test]
fn the_web_client_offers_files_to_accept_and_sends_one() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    browser.goto(&page);
    browser.type_into("#user", "alice");
    browser.type_into("#token", &world.token("alice"));
    browser.click("#signin-button");
    browser.wait_for(
        "bob in alice's contact list",
        "return !!document.querySelector('#contacts li[data-user=\"bob\"]')",
        WAIT,
    );
    browser.click("#contacts li[data-user=\"bob\"]");

    // Offered by duet, accepted with a click; the name is markup, shown as text.
    let name = "<img src=x onerror=alert(1)>.bin";
    let file = world.path(name);
    let sha256 = random_file(&file, 1_000_000, 7);
    let bob = common::spawn(world.cmd("bob", &["send", "alice", file.to_str().unwrap()]));
    browser.wait_for(
        "the offer in bob's conversation",
        "return !!document.querySelector('#messages .msg.file.theirs .accept-file')",
        WAIT,
    );
    assert_eq!(
        browser.eval(
            "return document.querySelector('#messages .msg.file.theirs .file-name').textContent"
        ),
        json!(name)
    );
    assert_eq!(
        browser.eval("return document.querySelectorAll('#messages img').length"),
        json!(0)
    );
    browser.click("#messages .msg.file.theirs .accept-file");
    browser.wait_for(
        "the file received and checked",
        "return !!document.querySelector('#messages .msg.file.theirs[data-state=\"done\"] a.save-file')",
        WAIT,
    );
    let (status, _, stderr) = bob.finish(Duration::from_secs(20));
    assert!(status.success(), "duet send: {stderr}");
    // The Save link names the file and holds the received Blob (the page's CSP lets no script
    // fetch it back: its bytes are read from the transfer the link was made from).
    let saved = browser.eval_async(
        "const done = arguments[arguments.length - 1];
         const a = document.querySelector('#messages a.save-file');
         const [m] = duet.files;
         m.transfer.blob.arrayBuffer().then((b) => crypto.subtle.digest('SHA-256', b))
           .then((d) => done({ download: a.download, blobUrl: a.href === m.url && a.href.startsWith('blob:'),
             sha256: Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, '0')).join('') }),
             (e) => done(`failed: ${e.message}`));",
    );
    assert_eq!(
        saved,
        json!({"download": name, "blobUrl": true, "sha256": sha256})
    );
    assert!(!browser.alert_open(), "a file name ran script");

    // Sent from the file picker to `duet answer`, with its progress shown until delivered.
    let inbox = world.path("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let bob = world.answer(
        "bob",
        &["--accept-files", inbox.to_str().unwrap(), "--json"],
    );
    let picked = world.path("picked.bin");
    let sha256 = random_file(&picked, 1_000_000, 8);
    let input = browser.element("#file-input");
    browser.cmd(
        "POST",
        &format!("/element/{input}/value"),
        Some(json!({ "text": picked.to_str().unwrap() })),
    );
    browser.wait_for(
        "the file delivered",
        "return !!document.querySelector('#messages .msg.file.mine[data-state=\"done\"]')",
        Duration::from_secs(20),
    );
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(20));
    assert!(status.success(), "duet answer: {stderr}");
    let received = common::json(&stdout);
    let bytes = std::fs::read(inbox.join("picked.bin")).expect("the received file");
    assert_eq!(sha256_hex(&bytes), sha256, "{received}");
    let status = browser
        .eval("return document.querySelector('#messages .msg.file.mine .file-status').textContent");
    assert!(
        status
            .as_str()
            .unwrap_or_default()
            .starts_with("Delivered in"),
        "{status}"
    );
    let shot = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser-files.png");
    browser.screenshot(&shot);
    eprintln!("screenshot: {}", shot.display());
}

#[test]
fn the_browser_resumes_a_file_cut_midway_from_its_verified_blocks() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    browser.goto(&page);
    duet_js_files_login(browser, "alice", &world.token("alice"));
    // The first offer is cut by the browser once 5 MB are verified; the second is taken whole.
    browser.eval(
        "t.offers = 0;
         t.client.on('fileOffer', (offer) => {
           const first = t.offers++ === 0;
           offer.accept().then((transfer) => {
             t.transfer = transfer;
             transfer.on('progress', (p) => {
               if (first && p.bytes >= 5000000 && transfer.state === 'moving') transfer.cancel('cut for the test');
             });
             transfer.done.then((r) => { t.result = r; }, (e) => { t.error = `${e.code}: ${e.message}`; });
           }, (e) => { t.error = `${e.code}: ${e.message}`; });
         });",
    );
    let file = world.path("cut.bin");
    let sha256 = random_file(&file, FILE_BYTES, 21);
    let send =
        || common::spawn(world.cmd("bob", &["send", "alice", file.to_str().unwrap(), "--json"]));
    let (status, stdout, stderr) = send().finish(Duration::from_secs(60));
    assert!(!status.success(), "the cut transfer succeeded: {stderr}");
    assert!(stderr.contains("cut for the test"), "{stderr}");
    let cut = common::json(&stdout);
    assert_eq!(cut["outcome"], "failed", "{cut}");
    assert_eq!(
        browser.eval("const e = t.error; t.error = null; return e"),
        json!("cancelled: the transfer was cancelled: cut for the test")
    );

    let (status, stdout, stderr) = send().finish(Duration::from_secs(60));
    assert!(status.success(), "duet send, again: {stderr}");
    browser.wait_for(
        "the file whole in the browser",
        "return t.result !== null || t.error !== null",
        WAIT,
    );
    assert_eq!(browser.eval("return t.error"), Value::Null);
    let result = browser.eval(
        "const r = t.result; return { sha256: r.sha256, size: r.blob.size, moved: r.bytesMoved, \
         blocks: r.blocksMoved, resumed: r.blocksResumed }",
    );
    assert_eq!(result["sha256"], json!(sha256), "{result}");
    assert_eq!(browser_blob_sha256(browser), json!(sha256));
    let (blocks, resumed) = (number(&result["blocks"]), number(&result["resumed"]));
    let total = (FILE_BYTES as f64 / 131_072.0).ceil();
    assert_eq!(blocks + resumed, total, "{result}");
    assert!(resumed >= 5e6 / 131_072.0, "{result}");
    let again = common::json(&stdout);
    assert!(
        number(&again["blocks_moved"]) <= total - resumed,
        "duet sent verified blocks again: {again}"
    );
    eprintln!(
        "resumed: {resumed} of {total} blocks kept from the cut transfer, {blocks} moved again \
         ({:.1} MB); duet send served {} blocks",
        number(&result["moved"]) / 1e6,
        again["blocks_moved"],
    );
}

#[test]
fn native_duet_resumes_a_file_from_the_browser_cut_midway() {
    let Some(stage) = Stage::new(&["alice", "bob"]) else {
        return;
    };
    let (browser, world, page) = (&stage.browser, &stage.world, stage.page());
    let inbox = world.path("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let answer = || {
        world.answer(
            "bob",
            &["--accept-files", inbox.to_str().unwrap(), "--json"],
        )
    };
    let bob = answer();
    browser.goto(&page);
    duet_js_files_login(browser, "alice", &world.token("alice"));
    browser.wait_for(
        "bob online in the browser",
        "const c = t.client.contacts.get('bob'); return !!c && c.status !== 'offline'",
        WAIT,
    );
    // The same 20 MB Blob is sent twice: the first time the browser cuts it once 8 MB are read.
    let sha256 = browser.eval_async(&format!(
        "const done = arguments[arguments.length - 1];
         (async () => {{
           const data = new Uint8Array({FILE_BYTES});
           let s = 0x2545f491;
           for (let i = 0; i < data.length; i++) {{
             s ^= s << 13; s ^= s >>> 17; s ^= s << 5;
             data[i] = s & 255;
           }}
           t.file = new Blob([data]);
           t.send = (cut) => {{
             t.result = null;
             t.error = null;
             const transfer = t.client.sendFile('bob', t.file, {{ fileName: 'resumed.bin' }});
             transfer.on('progress', (p) => {{
               if (cut && transfer.state === 'moving' && p.bytes >= 8000000) transfer.cancel('cut for the test');
             }});
             transfer.done.then((r) => {{ t.result = r; }}, (e) => {{ t.error = `${{e.code}}: ${{e.message}}`; }});
           }};
           t.send(true);
           const digest = new Uint8Array(await crypto.subtle.digest('SHA-256', data));
           return Array.from(digest, (x) => x.toString(16).padStart(2, '0')).join('');
         }})().then(done, (e) => done(`failed: ${{e.message}}`));"
    ));
    let sha256 = sha256.as_str().expect("the browser's SHA-256").to_owned();
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(60));
    assert!(!status.success(), "the cut transfer succeeded: {stderr}");
    assert!(stderr.contains("cut for the test"), "{stderr}");
    assert_eq!(common::json(&stdout)["outcome"], "failed", "{stdout}");
    browser.wait_for(
        "the cut seen in the browser",
        "return t.error !== null",
        WAIT,
    );

    let bob = answer();
    browser.eval("t.send(false)");
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(60));
    assert!(status.success(), "duet answer, again: {stderr}");
    let received = common::json(&stdout);
    let bytes = std::fs::read(inbox.join("resumed.bin")).expect("the received file");
    assert_eq!(sha256_hex(&bytes), sha256, "{received}");
    let total = (FILE_BYTES as f64 / 131_072.0).ceil();
    let (moved, resumed) = (
        number(&received["blocks_moved"]),
        number(&received["blocks_resumed"]),
    );
    assert!(resumed >= 1.0, "nothing resumed: {received}");
    assert_eq!(moved, total - resumed, "{received}");
    browser.wait_for(
        "the browser told the file arrived",
        "return t.result !== null || t.error !== null",
        WAIT,
    );
    assert_eq!(browser.eval("return t.error"), Value::Null);
    let served = number(&browser.eval("return t.result.blocksMoved"));
    assert_eq!(
        served,
        total - resumed,
        "the browser sent verified blocks again"
    );
    eprintln!(
        "resumed at duet: {resumed} of {total} blocks kept from the cut transfer, {moved} moved \
         again; the browser served {served}"
    );
}

#[test]
fn duet_js_fetches_a_block_again_when_its_sha256_fails_and_gives_up_after_three() {
    let Some(stage) = Stage::new(&["alice"]) else {
        return;
    };
    let browser = &stage.browser;
    browser.goto(&stage.page());
    // duet.js's two sides in one page, joined by a channel that flips one byte in the first
    // chunk of the first `bad` copies of block 3 (the link's WebRTC part, tested above, is left
    // out: the objects' internal `_attach` takes the channel).
    let run = |bad: u32| {
        browser.eval_async(&format!(
            "const done = arguments[arguments.length - 1];
             (async () => {{
               const {{ Duet }} = await import('/duet.js');
               const client = {{ _partials: new Map(), iceServers: [], _send() {{}}, _release() {{}},
                 _claim() {{}}, _request: async () => ({{ id: 1 }}) }};
               const data = new Uint8Array(1000000).map((_, i) => (i * 31 + (i >> 10)) & 255);
               const tx = new Duet.FileTransfer(client, {{ direction: 'send', peer: 'bob', name: 'x.bin',
                 size: data.length, file: new Blob([data]) }});
               await tx._send();
               const rx = new Duet.FileTransfer(client, {{ direction: 'receive', peer: 'alice',
                 name: 'x.bin', size: data.length, sha256: tx.sha256 }});
               let bad = {bad};
               const channel = (corrupt) => ({{
                 readyState: 'open', bufferedAmount: 0, peer: null,
                 send(bytes) {{
                   const copy = bytes.slice();
                   const block = copy[0] === 4 ? new DataView(copy.buffer).getUint32(1) : null;
                   const first = block === 3 && new DataView(copy.buffer).getUint32(5) === 0;
                   if (corrupt && first && bad > 0) {{ bad -= 1; copy[20] ^= 1; }}
                   setTimeout(() => this.peer.onmessage({{ data: copy.buffer }}), 0);
                 }},
                 addEventListener() {{}}, removeEventListener() {{}}, close() {{}},
               }});
               const a = channel(true);
               const b = channel(false);
               a.peer = b;
               b.peer = a;
               tx._pc = rx._pc = {{ close() {{}} }};
               tx.id = rx.id = 1;
               tx._attach(a);
               rx._attach(b);
               a.onopen();
               b.onopen();
               const [got, sent] = await Promise.allSettled([rx.done, tx.done]);
               const hex = (d) => Array.from(new Uint8Array(d), (x) => x.toString(16).padStart(2, '0')).join('');
               return {{
                 received: got.status === 'fulfilled'
                   ? hex(await crypto.subtle.digest('SHA-256', await got.value.blob.arrayBuffer()))
                   : `${{got.reason.code}}: ${{got.reason.message}}`,
                 sender: sent.status === 'fulfilled' ? 'done' : `${{sent.reason.code}}: ${{sent.reason.message}}`,
                 expected: tx.sha256,
                 hashFailures: rx.stats.hashFailures,
               }};
             }})().then(done, (e) => done(`failed: ${{e.message}}`));"
        ))
    };

    // Two bad copies of block 3: fetched again each time, then the file is whole.
    let twice = run(2);
    assert_eq!(twice["received"], twice["expected"], "{twice}");
    assert_eq!(twice["sender"], json!("done"), "{twice}");
    assert_eq!(twice["hashFailures"], json!(2), "{twice}");

    // Three: the receiver gives up, and the sender is told why.
    let thrice = run(3);
    let why = "block 3 failed its SHA-256 check 3 times";
    assert_eq!(
        thrice["received"],
        json!(format!("integrity: {why}")),
        "{thrice}"
    );
    assert_eq!(
        thrice["sender"],
        json!(format!("cancelled: bob: {why}")),
        "{thrice}"
    );
}
