//! A small network laboratory in Linux network namespaces: a public segment with servers on
//! it, and homes behind NAT gateways of several kinds, built with veth pairs, bridges and
//! nftables. Everything lives in namespaces this module creates (named after the test
//! process) and uses documentation and private addresses only: 203.0.113.0/24 for the public
//! segment, 10.N.0.0/24 for home N. [`Lab`]'s `Drop` kills what it started and deletes every
//! namespace, also when a test fails.

#![allow(dead_code)]

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::common::netns::{remove_stale, run, Netns};

/// The public segment's servers listen here.
pub const PUBLIC_IP: &str = "203.0.113.1";

/// How a home's gateway translates and filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Nat {
    /// Endpoint-independent mapping: masquerade that keeps the source port, so one local
    /// port has one public port whatever the destination ("easy", full-cone-like mapping
    /// with address-and-port-dependent filtering, as most home routers do).
    Easy,
    /// Endpoint-dependent mapping: a new random public port per destination ("symmetric").
    Symmetric,
    /// Forwards TCP only: outgoing UDP is dropped.
    NoUdp,
}

/// One home: its gateway namespace and its LAN.
pub struct Home {
    pub gateway: String,
    /// N in 10.N.0.0/24.
    pub net: u8,
    hosts: u8,
}

/// The namespaces and processes of one test. Dropping it removes them all.
pub struct Lab {
    prefix: String,
    namespaces: Vec<Netns>,
    children: Vec<std::process::Child>,
    homes: u8,
    pub public: String,
}

/// Why namespaces cannot be used here, if they cannot.
pub fn unavailable() -> Option<String> {
    let uid = Command::new("id").arg("-u").output().ok()?;
    if String::from_utf8_lossy(&uid.stdout).trim() != "0" {
        return Some("the NAT lab needs root (network namespaces, nftables)".into());
    }
    for tool in ["ip", "nft", "turnserver", "conntrack"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .stdout(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !found {
            return Some(format!(
                "the NAT lab needs `{tool}` (scripts/setup.sh installs iproute2, nftables, coturn and conntrack)"
            ));
        }
    }
    let probe = format!("duetlab-probe-{}", std::process::id());
    let made = Command::new("ip")
        .args(["netns", "add", &probe])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !made {
        return Some("cannot create network namespaces here (`ip netns add` failed)".into());
    }
    let nft = Command::new("ip")
        .args([
            "netns", "exec", &probe, "nft", "add", "table", "ip", "probe",
        ])
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    let _ = Command::new("ip").args(["netns", "del", &probe]).status();
    if !nft {
        return Some("nftables does not work in a network namespace here".into());
    }
    None
}

/// `true` if the lab can run; otherwise fails the test when `CI` is set, and says why and
/// returns `false` (the caller skips) when it is not.
pub fn ready() -> bool {
    match unavailable() {
        None => true,
        Some(why) if std::env::var_os("CI").is_some() => panic!("NAT lab: {why}"),
        Some(why) => {
            eprintln!("skipped: {why}");
            false
        }
    }
}

fn run_in(ns: &str, args: &[&str]) {
    let mut all = vec!["ip", "netns", "exec", ns];
    all.extend_from_slice(args);
    run(&all);
}

fn nft(ns: &str, rules: &str) {
    let mut child = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("nft");
    std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), rules.as_bytes())
        .expect("write rules");
    drop(child.stdin.take());
    let out = child.wait_with_output().expect("nft");
    assert!(
        out.status.success(),
        "nft in {ns}: {}\n{rules}",
        String::from_utf8_lossy(&out.stderr)
    );
}

static LABS: AtomicUsize = AtomicUsize::new(0);

impl Lab {
    /// The public segment: a namespace with a bridge at 203.0.113.1/24.
    pub fn new() -> Lab {
        remove_stale("duetlab");
        let n = LABS.fetch_add(1, Ordering::Relaxed);
        let prefix = format!("duetlab{}x{n}", std::process::id());
        let public = format!("{prefix}-pub");
        let mut lab = Lab {
            prefix,
            namespaces: Vec::new(),
            children: Vec::new(),
            homes: 0,
            public: public.clone(),
        };
        lab.namespace(&public);
        run_in(
            &public,
            &["ip", "link", "add", "name", "br0", "type", "bridge"],
        );
        run_in(
            &public,
            &["ip", "addr", "add", "203.0.113.1/24", "dev", "br0"],
        );
        run_in(&public, &["ip", "link", "set", "br0", "up"]);
        // What the internet does with a packet for a private address: nothing. Without a
        // default route, coturn relaying towards a peer's host candidate would get an error
        // from the kernel at once and close the allocation.
        // The default route leads into a veth whose other end has no address (and a fixed
        // neighbour, so no ARP ever fails): packets go out and vanish.
        run_in(
            &public,
            &[
                "ip", "link", "add", "name", "void", "type", "veth", "peer", "name", "voidend",
            ],
        );
        run_in(
            &public,
            &["ip", "addr", "add", "192.0.2.1/30", "dev", "void"],
        );
        run_in(&public, &["ip", "link", "set", "void", "up"]);
        run_in(&public, &["ip", "link", "set", "voidend", "up"]);
        run_in(
            &public,
            &[
                "ip",
                "neigh",
                "add",
                "192.0.2.2",
                "lladdr",
                "02:00:00:00:00:02",
                "dev",
                "void",
                "nud",
                "permanent",
            ],
        );
        run_in(
            &public,
            &[
                "ip",
                "route",
                "add",
                "default",
                "via",
                "192.0.2.2",
                "dev",
                "void",
            ],
        );
        lab
    }

    fn namespace(&mut self, name: &str) {
        self.namespaces.push(Netns::named(name));
    }

    /// A home behind a gateway of `kind`: the gateway's WAN is 203.0.113.(10+N) on the
    /// public segment, its LAN 10.N.0.1/24.
    pub fn home(&mut self, kind: Nat) -> Home {
        self.homes += 1;
        let net = self.homes;
        let gateway = format!("{}-gw{net}", self.prefix);
        self.namespace(&gateway);
        let port = format!("gw{net}");
        run(&[
            "ip",
            "-n",
            &self.public,
            "link",
            "add",
            "name",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "wan",
            "netns",
            &gateway,
        ]);
        run(&[
            "ip",
            "-n",
            &self.public,
            "link",
            "set",
            &port,
            "master",
            "br0",
            "up",
        ]);
        let wan = format!("203.0.113.{}/24", 10 + u32::from(net));
        run_in(&gateway, &["ip", "addr", "add", &wan, "dev", "wan"]);
        run_in(&gateway, &["ip", "link", "set", "wan", "up"]);
        run_in(
            &gateway,
            &["ip", "link", "add", "name", "lan", "type", "bridge"],
        );
        let lan = format!("10.{net}.0.1/24");
        run_in(&gateway, &["ip", "addr", "add", &lan, "dev", "lan"]);
        run_in(&gateway, &["ip", "link", "set", "lan", "up"]);
        run_in(&gateway, &["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        // Traffic between two machines of the LAN is bridged, and with br_netfilter loaded it
        // would meet the forward chain below: keep it out where the kernel allows (else the
        // chain accepts it from port to port).
        let _ = Command::new("ip")
            .args(["netns", "exec", &gateway, "sysctl", "-qw"])
            .arg("net.bridge.bridge-nf-call-iptables=0")
            .stderr(Stdio::null())
            .status();
        let masquerade = match kind {
            Nat::Symmetric => "masquerade random",
            Nat::Easy | Nat::NoUdp => "masquerade",
        };
        let drop_udp = if kind == Nat::NoUdp {
            "iifname \"lan\" meta l4proto udp drop;"
        } else {
            ""
        };
        // Unsolicited packets to the gateway itself are dropped in its input chain: accepted,
        // conntrack would confirm an entry for them that takes the port an outgoing mapping
        // keeps, and hole punching would fail where a home router lets it through.
        nft(
            &gateway,
            &format!(
                "table ip nat {{
  chain post {{ type nat hook postrouting priority srcnat; policy accept; oifname \"wan\" {masquerade}; }}
}}
table inet filter {{
  chain input {{ type filter hook input priority filter; policy drop; iifname \"lo\" accept; iifname \"lan\" accept; ct state established,related accept; }}
  chain forward {{ type filter hook forward priority filter; policy drop; iifname \"h*\" oifname \"h*\" accept; {drop_udp} iifname \"lan\" oifname \"wan\" accept; iifname \"wan\" oifname \"lan\" ct state established,related accept; }}
}}
"
            ),
        );
        Home {
            gateway,
            net,
            hosts: 0,
        }
    }

    /// A machine on `home`'s LAN (10.N.0.(1+k)), its default route through the gateway.
    pub fn host(&mut self, home: &mut Home) -> String {
        home.hosts += 1;
        let k = home.hosts;
        let ns = format!("{}-h{}x{k}", self.prefix, home.net);
        self.namespace(&ns);
        let port = format!("h{k}");
        run(&[
            "ip",
            "-n",
            &home.gateway,
            "link",
            "add",
            "name",
            &port,
            "type",
            "veth",
            "peer",
            "name",
            "eth0",
            "netns",
            &ns,
        ]);
        run(&[
            "ip",
            "-n",
            &home.gateway,
            "link",
            "set",
            &port,
            "master",
            "lan",
            "up",
        ]);
        let addr = format!("10.{}.0.{}/24", home.net, 1 + k);
        run_in(&ns, &["ip", "addr", "add", &addr, "dev", "eth0"]);
        run_in(&ns, &["ip", "link", "set", "eth0", "up"]);
        let via = format!("10.{}.0.1", home.net);
        run_in(&ns, &["ip", "route", "add", "default", "via", &via]);
        ns
    }

    /// `program ARGS` inside namespace `ns`, as a command to finish configuring.
    pub fn command(ns: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns, program]);
        cmd
    }

    /// Starts a server in the lab; it is killed when the lab is dropped.
    pub fn keep(&mut self, child: std::process::Child) {
        self.children.push(child);
    }

    /// Forgets every NAT mapping of a gateway (its conntrack table), as a router that
    /// reboots or times mappings out would.
    pub fn flush_mappings(home: &Home) {
        run_in(&home.gateway, &["conntrack", "-F"]);
    }

    /// The gateway forgets its UDP mappings and maps UDP anew from other ports (20000 to
    /// 29999, where the kernel's own port choice never falls): the UDP path through it stops
    /// until the two ends find the new mapping. This is what a home router does when its UDP
    /// mappings time out, or it restarts, while TCP connections (the signaling) go on.
    pub fn remap_udp(home: &Home) {
        nft(
            &home.gateway,
            "flush chain ip nat post
add rule ip nat post oifname \"wan\" meta l4proto udp masquerade to :20000-29999
add rule ip nat post oifname \"wan\" masquerade
",
        );
        run_in(&home.gateway, &["conntrack", "-D", "-p", "udp"]);
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Hosts first, then gateways, then the public segment: deleting a namespace
        // deletes its end of every veth pair, and with it the other end.
        while let Some(ns) = self.namespaces.pop() {
            drop(ns);
        }
    }
}
