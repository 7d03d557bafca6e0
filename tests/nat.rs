//! The NAT lab: real `duet` processes in homes behind NAT gateways built in network
//! namespaces (see `nat/lab.rs`), with `duet serve` over TLS and coturn on a public segment.
//! Each test builds its own small network and removes it when done, also when it fails.
//!
//! Needs root, iproute2, nftables and coturn (scripts/setup.sh). Without them a test fails
//! with the reason when `CI` is set, and is skipped with the reason otherwise. The tests run
//! one at a time: each holds the lab lock, so calls never compete for the two cores.

mod common;
#[path = "nat/lab.rs"]
mod lab;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{json, spawn, Proc, DUET};
use lab::{Home, Lab, Nat, PUBLIC_IP};
use serde_json::Value;

/// One lab test at a time.
static LAB: Mutex<()> = Mutex::new(());

const SIGNALING_PORT: u16 = 7443;
/// duet's usual log filter, and every call signal the peer sent.
const SIGNAL_LOG: &str =
    "warn,rtc=error,rtc_ice=error,rtc_dtls=error,rtc_srtp=error,rtc_sctp=error,webrtc=error,duet::signals=debug";
const TURN_PORT: u16 = 3478;

/// What a test's network holds besides the namespaces: the server, coturn, the accounts.
struct World {
    // Declared first, dropped first: processes end before their namespaces go.
    _servers: Vec<Proc>,
    lab: Lab,
    dir: tempfile::TempDir,
    /// (user, namespace, token)
    users: Vec<(String, String, String)>,
    homes: Vec<Home>,
}

/// Whether the signaling server hands out a TURN server.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Turn {
    Yes,
    No,
    /// Yes, with credentials made from another secret than coturn's: coturn refuses them.
    WrongSecret,
}

/// A private CA, and a certificate for the public server signed by it.
fn certificates(dir: &std::path::Path) -> PathBuf {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "duet lab CA");
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).expect("CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let params = rcgen::CertificateParams::new(vec![PUBLIC_IP.to_owned()]).expect("params");
    let cert = params.signed_by(&key, &ca).expect("server certificate");
    std::fs::write(dir.join("ca.pem"), ca.pem()).expect("write CA");
    std::fs::write(dir.join("cert.pem"), cert.pem()).expect("write certificate");
    std::fs::write(dir.join("key.pem"), key.serialize_pem()).expect("write key");
    dir.join("ca.pem")
}

impl World {
    /// Homes of the given kinds, with the named users on machines of their LAN; every two
    /// users are contacts. `duet serve` (TLS, STUN, and TURN if `turn`) and coturn run on
    /// the public segment.
    fn new(homes: &[(Nat, &[&str])], turn: Turn) -> World {
        let mut lab = Lab::new();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut built = Vec::new();
        let mut users = Vec::new();
        let db = dir.path().join("duet.db");
        for (kind, names) in homes {
            let mut home = lab.home(*kind);
            for name in *names {
                let ns = lab.host(&mut home);
                let out = Command::new(DUET)
                    .args(["user", "add", name, "--db"])
                    .arg(&db)
                    .output()
                    .expect("user add");
                assert!(out.status.success(), "{out:?}");
                let token = String::from_utf8_lossy(&out.stdout).trim().to_owned();
                users.push((name.to_string(), ns, token));
            }
            built.push(home);
        }
        let ca = certificates(dir.path());
        let mut servers = Vec::new();
        let secret = format!("{:016x}", rand_u64());
        let stun = format!("stun:{PUBLIC_IP}:{TURN_PORT}");
        let turn_url = format!("turn:{PUBLIC_IP}:{TURN_PORT}");
        let mut coturn = Lab::command(&lab.public, "turnserver");
        coturn.args([
            "-n",
            "--listening-ip",
            PUBLIC_IP,
            "--relay-ip",
            PUBLIC_IP,
            "--listening-port",
            &TURN_PORT.to_string(),
            "--use-auth-secret",
            "--static-auth-secret",
            &secret,
            "--realm",
            "duet.lab",
            "--fingerprint",
            "--no-tls",
            "--no-dtls",
            "--no-cli",
            "--no-software-attribute",
            "--min-port",
            "49152",
            "--max-port",
            "49999",
            "--no-stdout-log",
            "--simple-log",
            "--log-file",
        ]);
        coturn.arg(dir.path().join("turn.log"));
        let mut coturn = spawn(coturn);
        // coturn logs to stdout, which nobody reads: give it a moment to bind instead.
        std::thread::sleep(Duration::from_millis(300));
        if let Ok(Some(status)) = coturn.child.try_wait() {
            panic!("turnserver exited at once: {status}");
        }
        servers.push(coturn);
        let mut serve = Lab::command(&lab.public, DUET);
        serve
            .args(["serve", "--listen"])
            .arg(format!("{PUBLIC_IP}:{SIGNALING_PORT}"))
            .arg("--db")
            .arg(&db)
            .arg("--tls-cert")
            .arg(dir.path().join("cert.pem"))
            .arg("--tls-key")
            .arg(dir.path().join("key.pem"))
            .args(["--stun", &stun]);
        match turn {
            Turn::Yes => {
                serve.args(["--turn", &turn_url, "--turn-secret", &secret]);
            }
            Turn::WrongSecret => {
                let wrong = format!("{secret}-not-coturns");
                serve.args(["--turn", &turn_url, "--turn-secret", &wrong]);
            }
            Turn::No => {}
        }
        let mut server = spawn(serve);
        server.wait_line("signaling on wss://", Duration::from_secs(20));
        servers.push(server);
        let world = World {
            _servers: servers,
            lab,
            dir,
            users,
            homes: built,
        };
        let _ = ca;
        let names: Vec<String> = world.users.iter().map(|u| u.0.clone()).collect();
        for (i, a) in names.iter().enumerate() {
            for b in &names[i + 1..] {
                world.ok(a, &["contact", "add", b]);
                world.ok(b, &["contact", "accept", a]);
            }
        }
        world
    }

    fn user(&self, name: &str) -> &(String, String, String) {
        self.users.iter().find(|u| u.0 == name).expect("known user")
    }

    /// `duet ARGS` as `user`, on the user's machine.
    fn cmd(&self, user: &str, args: &[&str]) -> Command {
        let (_, ns, token) = self.user(user);
        let mut cmd = Lab::command(ns, DUET);
        cmd.args(args)
            .env(
                "DUET_SERVER",
                format!("wss://{PUBLIC_IP}:{SIGNALING_PORT}/"),
            )
            .env("DUET_USER", user)
            .env("DUET_TOKEN", token)
            .env("DUET_CA", self.dir.path().join("ca.pem"))
            .env("DUET_CONFIG", self.dir.path().join("no-login.json"))
            .env(
                "ALSA_CONFIG_PATH",
                concat!(env!("CARGO_MANIFEST_DIR"), "/media/testdata/asoundrc-null"),
            );
        cmd
    }

    fn ok(&self, user: &str, args: &[&str]) {
        let out = self.cmd(user, args).output().expect("run duet");
        assert!(out.status.success(), "{user} {args:?}: {out:?}");
    }

    /// `duet answer --auto` as `callee` with `callee_args`, then `duet call` from `caller`
    /// for `seconds` with `caller_args`. Returns both reports, the callee's stderr and the
    /// time from starting `duet call` to its "connected" line.
    fn call(
        &self,
        caller: &str,
        caller_args: &[&str],
        callee: &str,
        callee_args: &[&str],
        seconds: u32,
    ) -> CallResult {
        self.call_while(caller, caller_args, callee, callee_args, seconds, || {})
    }

    /// [`call`](Self::call), running `during` once the call is connected.
    fn call_while(
        &self,
        caller: &str,
        caller_args: &[&str],
        callee: &str,
        callee_args: &[&str],
        seconds: u32,
        during: impl FnOnce(),
    ) -> CallResult {
        let mut answer = vec![
            "answer",
            "--auto",
            "--json",
            "--size",
            "320x240",
            "--video-kbps",
            "300",
        ];
        answer.extend_from_slice(callee_args);
        let mut answering = self.cmd(callee, &answer);
        if std::env::var_os("DUET_LOG").is_none() {
            answering.env("DUET_LOG", SIGNAL_LOG);
        }
        let mut bob = spawn(answering);
        bob.wait_line("waiting for a call", Duration::from_secs(20));
        let secs = seconds.to_string();
        let mut call = vec![
            "call",
            callee,
            "--seconds",
            &secs,
            "--json",
            "--size",
            "320x240",
            "--video-kbps",
            "300",
        ];
        call.extend_from_slice(caller_args);
        let started = Instant::now();
        let mut alice = spawn(self.cmd(caller, &call));
        let waited = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            alice.wait_line("accepted", Duration::from_secs(40));
        }));
        if let Err(e) = waited {
            // Show the callee's side of a call that did not connect, then fail.
            let _ = bob.child.kill();
            let (_, _, callee_stderr) = bob.finish(Duration::from_secs(5));
            eprintln!("{callee}'s side:\n{callee_stderr}");
            std::panic::resume_unwind(e);
        }
        let connect = started.elapsed();
        during();
        let (status, stdout, stderr) = alice.finish(Duration::from_secs(u64::from(seconds) + 30));
        assert!(status.success(), "{caller}: {status:?}\n{stderr}");
        assert!(
            stderr
                .lines()
                .any(|l| l.contains("rtt ") && l.contains('/')),
            "the status line shows no path: {stderr}"
        );
        let caller_report = json(&stdout);
        let (status, stdout, callee_stderr) = bob.finish(Duration::from_secs(20));
        assert_eq!(status.code(), Some(0), "{callee}: {callee_stderr}");
        CallResult {
            caller: caller_report,
            callee: json(&stdout),
            callee_stderr,
            connect,
        }
    }
}

impl Drop for World {
    /// A failed test shows the end of coturn's log.
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("turn.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(40)..].join("\n");
            eprintln!("coturn's log ends:\n{tail}");
        }
    }
}

struct CallResult {
    caller: Value,
    callee: Value,
    callee_stderr: String,
    connect: Duration,
}

impl CallResult {
    /// Media flowed both ways; returns (local, remote) candidate types of both sides.
    fn check_media(&self) -> [(String, String); 2] {
        let mut types = Vec::new();
        for (who, report) in [("caller", &self.caller), ("callee", &self.callee)] {
            let shown = report["video"]["frames_shown"].as_u64().unwrap_or(0);
            assert!(shown > 60, "{who} saw {shown} pictures: {report}");
            let played = report["audio"]["frames"].as_u64().unwrap_or(0);
            assert!(played > 100, "{who} played {played} audio frames: {report}");
            let t = &report["transport"];
            let local = t["local_candidate_type"]
                .as_str()
                .unwrap_or("none")
                .to_owned();
            let remote = t["remote_candidate_type"]
                .as_str()
                .unwrap_or("none")
                .to_owned();
            if local == "relay" {
                assert_eq!(t["relay_protocol"], "udp", "{who}: {t}");
            } else {
                assert!(t["relay_protocol"].is_null(), "{who}: {t}");
            }
            types.push((local, remote));
        }
        eprintln!(
            "connected in {:?}: caller {:?}, callee {:?}",
            self.connect, types[0], types[1]
        );
        [types[0].clone(), types[1].clone()]
    }
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(Instant::now().elapsed().as_nanos());
    h.finish()
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    LAB.lock().unwrap_or_else(|e| e.into_inner())
}

#[test]
fn two_machines_on_one_lan_connect_directly() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(&[(Nat::Easy, &["alice", "bob"])], Turn::Yes);
    let result = world.call("alice", &[], "bob", &[], 10);
    for (local, remote) in result.check_media() {
        // Direct: the peer's host candidate, or the same address learned from its checks
        // when they came before its candidate did.
        assert_eq!(local, "host");
        assert!(remote == "host" || remote == "prflx", "remote {remote}");
    }
}

#[test]
fn two_homes_behind_easy_nats_connect_server_reflexive() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(&[(Nat::Easy, &["alice"]), (Nat::Easy, &["bob"])], Turn::Yes);
    let result = world.call("alice", &[], "bob", &[], 10);
    for (local, remote) in result.check_media() {
        // The peer is reached at its NAT's public mapping: server- or peer-reflexive.
        assert!(
            remote == "srflx" || remote == "prflx",
            "remote {remote} (local {local})"
        );
        assert_ne!(local, "relay");
    }
}

#[test]
fn two_homes_behind_symmetric_nats_connect_through_the_relay() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(
        &[(Nat::Symmetric, &["alice"]), (Nat::Symmetric, &["bob"])],
        Turn::Yes,
    );
    let result = world.call("alice", &[], "bob", &[], 10);
    let types = result.check_media();
    assert!(
        types
            .iter()
            .any(|(local, remote)| local == "relay" || remote == "relay"),
        "{types:?}"
    );
}

#[test]
fn a_relay_only_caller_reveals_none_of_its_addresses() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(&[(Nat::Easy, &["alice"]), (Nat::Easy, &["bob"])], Turn::Yes);
    let result = world.call("alice", &["--relay-only"], "bob", &[], 10);
    let types = result.check_media();
    assert_eq!(types[0].0, "relay", "alice's own side: {types:?}");
    assert_eq!(
        types[1].1, "relay",
        "bob sees alice at the relay: {types:?}"
    );
    // Alice is 10.1.0.2 behind 203.0.113.11 (home 1); bob must have seen neither.
    let received: Vec<&str> = result
        .callee_stderr
        .lines()
        .filter(|l| l.contains("from the peer:"))
        .collect();
    assert!(
        received.iter().any(|l| l.contains("\"type\":\"offer\"")),
        "bob's log shows no offer: {}",
        result.callee_stderr
    );
    let mut relayed = 0;
    for line in &received {
        assert!(!line.contains("10.1.0.2"), "alice's address leaked: {line}");
        assert!(
            !line.contains("203.0.113.11"),
            "alice's public address leaked: {line}"
        );
        for (i, _) in line.match_indices(" typ ") {
            let kind = line[i + 5..].split_whitespace().next().unwrap_or_default();
            assert!(
                kind.starts_with("relay"),
                "alice sent a {kind} candidate: {line}"
            );
            relayed += 1;
        }
    }
    assert!(relayed > 0, "no relay candidate reached bob: {received:?}");
}

#[test]
fn a_call_survives_its_nat_forgetting_the_mapping_through_an_ice_restart() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(&[(Nat::Easy, &["alice"]), (Nat::Easy, &["bob"])], Turn::Yes);
    let mut flushed = None;
    // Four seconds into the call, bob's router forgets its UDP mappings and maps anew: what
    // alice sends to bob's old public port is dropped, and bob's packets leave from a new one.
    let result = world.call_while("alice", &[], "bob", &[], 14, || {
        std::thread::sleep(Duration::from_secs(4));
        Lab::remap_udp(&world.homes[1]);
        flushed = Some(Instant::now());
    });
    assert!(flushed.is_some());
    result.check_media();
    for (who, report) in [("alice", &result.caller), ("bob", &result.callee)] {
        let t = &report["transport"];
        assert!(
            t["ice_restarts"].as_u64().unwrap_or(0) >= 1,
            "{who} went through no ICE restart: {t}"
        );
        assert!(
            report["call"]["end"]
                .as_str()
                .is_some_and(|e| e.contains("hung up") || e.contains("peer hung up")),
            "{who}'s call ended otherwise: {}",
            report["call"]
        );
    }
    // Media flows again within 5 s of the mapping going: the longest stretch without a
    // packet from the peer, on both sides, and the video freeze the restart caused.
    for (who, report) in [("alice", &result.caller), ("bob", &result.callee)] {
        let outage = report["transport"]["longest_outage_ms"].as_f64();
        let freezes = report["video"]["freeze_count"].as_u64().unwrap_or(0);
        let frozen = report["video"]["total_freeze_ms"].as_f64().unwrap_or(0.0);
        eprintln!(
            "RECOVERY {who}: restarts {}, longest outage {outage:?} ms, video freezes {freezes} ({frozen:.0} ms)",
            report["transport"]["ice_restarts"]
        );
        if let Some(outage) = outage {
            assert!(outage < 5000.0, "{who}: media came back after {outage} ms");
        }
        assert!(frozen < 5000.0, "{who}: video froze {frozen} ms");
    }
    // Whichever side saw the outage measured it, and its video froze meanwhile.
    let outages: Vec<f64> = [&result.caller, &result.callee]
        .iter()
        .filter_map(|r| r["transport"]["longest_outage_ms"].as_f64())
        .collect();
    assert!(!outages.is_empty(), "neither side saw an outage");
    let froze = [&result.caller, &result.callee]
        .iter()
        .any(|r| r["video"]["freeze_count"].as_u64().unwrap_or(0) >= 1);
    assert!(froze, "no video freeze shows the gap");
}

#[test]
fn symmetric_nats_without_turn_fail_within_30_s_naming_the_cause() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(
        &[(Nat::Symmetric, &["alice"]), (Nat::Symmetric, &["bob"])],
        Turn::No,
    );
    let mut bob = spawn(world.cmd("bob", &["answer", "--auto", "--size", "320x240"]));
    bob.wait_line("waiting for a call", Duration::from_secs(20));
    let started = Instant::now();
    let alice = spawn(world.cmd(
        "alice",
        &["call", "bob", "--seconds", "5", "--size", "320x240"],
    ));
    let (status, _, stderr) = alice.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    assert!(stderr.contains("no TURN server is configured"), "{stderr}");
    drop(bob);
}

#[test]
fn an_easy_nat_and_a_symmetric_nat_connect_through_the_relay() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(
        &[(Nat::Easy, &["alice"]), (Nat::Symmetric, &["bob"])],
        Turn::Yes,
    );
    let result = world.call("alice", &[], "bob", &[], 10);
    let types = result.check_media();
    // No direct pair works. Bob's NAT maps a new port for each destination, so the port
    // alice learns as his server-reflexive candidate (mapped towards the STUN server) leads
    // nowhere; and alice's NAT, easy in its mapping, filters by address and port, so it
    // drops bob's checks from the ports his NAT picks towards her. A relay carries the call:
    // what the lab gives is bob's relay, alice at her host address on her side
    // (`host/relay`), and on bob's the relay towards alice's server-reflexive address
    // (`relay/srflx`): her mapping is the same for every destination, so the relay reaches
    // her at the address she signalled, once her own packets to the relay opened her NAT.
    // Alice's relay towards bob's peer-reflexive address would do as well; either way each
    // side has the relay at one end of its pair.
    for (side, (local, remote)) in ["alice", "bob"].iter().zip(&types) {
        assert!(
            local == "relay" || remote == "relay",
            "{side}'s pair is {local}/{remote}, not through the relay: {types:?}"
        );
    }
}

#[test]
fn a_turn_server_that_refuses_the_credentials_fails_within_30_s_naming_the_cause() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    // Symmetric NATs need the relay; the signaling server's TURN secret is not coturn's.
    let world = World::new(
        &[(Nat::Symmetric, &["alice"]), (Nat::Symmetric, &["bob"])],
        Turn::WrongSecret,
    );
    let mut bob = spawn(world.cmd("bob", &["answer", "--auto", "--size", "320x240"]));
    bob.wait_line("waiting for a call", Duration::from_secs(20));
    let started = Instant::now();
    let alice = spawn(world.cmd(
        "alice",
        &["call", "bob", "--seconds", "5", "--size", "320x240"],
    ));
    let (status, _, stderr) = alice.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    assert!(
        stderr.contains("the TURN server refused the credentials"),
        "{stderr}"
    );
    drop(bob);
}

#[test]
fn a_home_that_blocks_udp_fails_within_30_s_naming_the_cause() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(
        &[(Nat::NoUdp, &["alice"]), (Nat::Easy, &["bob"])],
        Turn::Yes,
    );
    let mut bob = spawn(world.cmd("bob", &["answer", "--auto", "--size", "320x240"]));
    bob.wait_line("waiting for a call", Duration::from_secs(20));
    let started = Instant::now();
    // Signaling crosses over TCP; the call's UDP does not, not even to the relay.
    let alice = spawn(world.cmd(
        "alice",
        &["call", "bob", "--seconds", "5", "--size", "320x240"],
    ));
    let (status, _, stderr) = alice.finish(Duration::from_secs(60));
    let took = started.elapsed();
    assert!(!status.success(), "{stderr}");
    assert!(took < Duration::from_secs(30), "took {took:?}: {stderr}");
    assert!(stderr.contains("UDP is blocked"), "{stderr}");
    drop(bob);
}

#[test]
fn a_20_mb_file_crosses_a_relayed_link_identical() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let world = World::new(
        &[(Nat::Symmetric, &["alice"]), (Nat::Symmetric, &["bob"])],
        Turn::Yes,
    );
    let file = world.dir.path().join("twenty.bin");
    let data: Vec<u8> = (0..20_000_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(&file, &data).expect("write file");
    let inbox = world.dir.path().join("inbox");
    std::fs::create_dir_all(&inbox).expect("inbox");
    let mut bob = spawn(world.cmd(
        "bob",
        &[
            "answer",
            "--accept-files",
            inbox.to_str().unwrap(),
            "--json",
        ],
    ));
    bob.wait_line("waiting for a call", Duration::from_secs(20));
    let alice = spawn(world.cmd("alice", &["send", "bob", file.to_str().unwrap(), "--json"]));
    let (status, stdout, stderr) = alice.finish(Duration::from_secs(120));
    assert!(status.success(), "alice: {stderr}");
    let sent = json(&stdout);
    let (status, stdout, stderr) = bob.finish(Duration::from_secs(30));
    assert!(status.success(), "bob: {stderr}");
    assert_eq!(sent["outcome"], "delivered", "{sent}");
    // Both reports say the bytes went through the relay.
    let received = json(&stdout);
    assert_eq!(received["outcome"], "delivered", "{received}");
    for (who, report) in [("alice", &sent), ("bob", &received)] {
        let t = &report["transport"];
        assert!(
            t["local_candidate_type"] == "relay" || t["remote_candidate_type"] == "relay",
            "{who}'s link did not go through the relay: {t}"
        );
        if t["local_candidate_type"] == "relay" {
            assert_eq!(t["relay_protocol"], "udp", "{who}: {t}");
        }
        eprintln!("{who}'s path: {t}");
    }
    let arrived = std::fs::read(inbox.join("twenty.bin")).expect("the file arrived");
    assert!(arrived == data, "the file arrived changed");
    eprintln!(
        "20 MB over the relay: {:.2} MB/s ({} s)",
        sent["mb_per_s"].as_f64().unwrap_or(0.0),
        sent["seconds"]
    );
    let _ = (&world.homes, &world.lab);
}

/// CPU seconds a process has used (user + system), from /proc.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name and state.
    (ticks(11) + ticks(12)) / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// A named network, and the caller's extra flags.
type Topology = (
    &'static str,
    Vec<(Nat, &'static [&'static str])>,
    &'static [&'static str],
);

/// The closing figures: time to connect per topology (median of 5 calls of 3 s), and a
/// relayed call's round trip, latency and coturn's CPU. Not run by default (about two
/// minutes): `cargo test --release --test nat figures -- --ignored --nocapture`.
#[test]
#[ignore]
fn figures() {
    let _one = lock();
    if !lab::ready() {
        return;
    }
    let topologies: [Topology; 4] = [
        ("same LAN", vec![(Nat::Easy, &["alice", "bob"])], &[]),
        (
            "easy NATs",
            vec![(Nat::Easy, &["alice"]), (Nat::Easy, &["bob"])],
            &[],
        ),
        (
            "symmetric NATs",
            vec![(Nat::Symmetric, &["alice"]), (Nat::Symmetric, &["bob"])],
            &[],
        ),
        (
            "relay-only",
            vec![(Nat::Easy, &["alice"]), (Nat::Easy, &["bob"])],
            &["--relay-only"],
        ),
    ];
    for (name, homes, args) in topologies {
        let world = World::new(&homes, Turn::Yes);
        let turn_pid = world._servers[0].child.id();
        // connect_ms: from the call's WebRTC session being created to connected (ICE and
        // DTLS), as the caller's report gives it; setup: from starting `duet call` to its
        // "accepted" line (log in, ring, answer, connect).
        let (mut connects, mut setups) = (Vec::new(), Vec::new());
        for _ in 0..5 {
            let result = world.call("alice", args, "bob", &[], 3);
            connects.push(result.caller["connect_ms"].as_f64().unwrap_or(f64::NAN));
            setups.push(result.connect.as_secs_f64() * 1000.0);
        }
        let cpu_before = cpu_seconds(turn_pid);
        let result = world.call("alice", args, "bob", &[], 10);
        let turn_cpu = cpu_seconds(turn_pid) - cpu_before;
        let types = result.check_media();
        let t = &result.caller["transport"];
        let v = &result.callee["video"];
        eprintln!(
            "FIGURES {name}: connect_ms median {:.0} of {:?}; setup median {:.0} ms; path {types:?}; 10 s call: rtt {} ms, callee's video latency p50 {} ms, coturn CPU {:.2} s",
            median(connects.clone()),
            connects.iter().map(|c| c.round()).collect::<Vec<_>>(),
            median(setups),
            t["rtt_ms"],
            v["latency_ms"]["p50"],
            turn_cpu
        );
    }
}
