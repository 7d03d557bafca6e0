//! How calls and data links find a path between two networks: the STUN and TURN servers they
//! gather candidates from, the relay-only policy, and which path a connection took.
//!
//! ```
//! use duet_media::ice::{IceServer, IceSetup};
//! let setup = IceSetup {
//!     servers: vec![IceServer::new(["turn:203.0.113.5:3478"], Some(("1764892800:alice", "c2VjcmV0")))],
//!     relay_only: true,
//! };
//! assert!(setup.has_turn());
//! ```

use std::sync::OnceLock;

use rtc::ice::mdns::MulticastDnsMode;
use webrtc::peer_connection::{
    RTCConfiguration, RTCConfigurationBuilder, RTCIceServer, RTCIceTransportPolicy, RTCStatsReport,
    RTCStatsReportEntry,
};

/// One STUN or TURN server.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceServer {
    /// `stun:HOST:PORT` or `turn:HOST:PORT` URLs.
    pub urls: Vec<String>,
    /// The TURN username; empty for STUN.
    pub username: String,
    /// The TURN password; empty for STUN.
    pub credential: String,
}

impl IceServer {
    /// A server at `urls`, with TURN credentials `(username, password)` if given.
    pub fn new<S: Into<String>>(
        urls: impl IntoIterator<Item = S>,
        credentials: Option<(&str, &str)>,
    ) -> IceServer {
        let (username, credential) = credentials.unwrap_or_default();
        IceServer {
            urls: urls.into_iter().map(Into::into).collect(),
            username: username.into(),
            credential: credential.into(),
        }
    }
}

/// Where a connection gathers its candidates.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IceSetup {
    /// STUN and TURN servers; empty gathers host candidates only (enough on one network).
    pub servers: Vec<IceServer>,
    /// Use TURN relays only (ICE transport policy `relay`): no host or server-reflexive
    /// candidate is gathered, so the peer never learns this side's addresses.
    pub relay_only: bool,
}

impl IceSetup {
    /// Whether any TURN server is configured.
    pub fn has_turn(&self) -> bool {
        self.servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("turn:") || u.starts_with("turns:"))
    }

    /// Whether any STUN server is configured.
    pub fn has_stun(&self) -> bool {
        self.servers
            .iter()
            .flat_map(|s| &s.urls)
            .any(|u| u.starts_with("stun:"))
    }

    /// The stack's configuration for this setup.
    pub(crate) fn configuration(&self) -> RTCConfiguration {
        let servers = self
            .servers
            .iter()
            .map(|s| RTCIceServer {
                urls: s.urls.clone(),
                username: s.username.clone(),
                credential: s.credential.clone(),
            })
            .collect();
        let policy = if self.relay_only {
            RTCIceTransportPolicy::Relay
        } else {
            RTCIceTransportPolicy::All
        };
        RTCConfigurationBuilder::new()
            .with_ice_servers(servers)
            .with_ice_transport_policy(policy)
            .build()
    }

    /// The likely reason a connection with this setup could not be made, for a person,
    /// given the candidates this side gathered: a server-reflexive candidate means UDP
    /// reached the STUN/TURN server and it answered; no relay candidate then means the TURN
    /// server refused the allocation (its credentials).
    pub fn failure_hint(&self, gathered: &Gathered) -> String {
        if self.relay_only && !self.has_turn() {
            return "relay-only needs a TURN server, and the signaling server named none".into();
        }
        if !self.has_turn() {
            return "no TURN server is configured (the signaling server names none), and the two \
                    networks cannot reach each other directly (symmetric NAT or a firewall)"
                .into();
        }
        if gathered.relay > 0 {
            return "no path even through the TURN relay: the peer's network may block UDP, or \
                    the relay refused the peer"
                .into();
        }
        if gathered.srflx > 0 {
            return "the TURN server refused the credentials: UDP gets through (a STUN answer \
                    came back) but no relay was allocated (or the TURN server, on another host \
                    than the STUN server, does not answer)"
                .into();
        }
        if self.relay_only || !self.has_stun() {
            return "no relay allocation: the TURN server refused the credentials, or UDP is \
                    blocked (this engine's TURN client speaks UDP only, not TURN over TCP or TLS)"
                .into();
        }
        "UDP is blocked: neither the STUN nor the TURN server answered over UDP, and this \
         engine's TURN client speaks UDP only (not TURN over TCP or TLS)"
            .into()
    }
}

/// How many candidates of each type this side gathered (and signalled) for a connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Gathered {
    /// Host candidates: this machine's own addresses.
    pub host: u32,
    /// Server-reflexive candidates: the NAT's public mapping, learned from a STUN answer.
    pub srflx: u32,
    /// Relay candidates: TURN allocations.
    pub relay: u32,
}

impl Gathered {
    /// Counts one local candidate line (`candidate:... typ TYPE ...`).
    pub(crate) fn count(&mut self, candidate: &str) {
        match candidate_type(candidate) {
            Some("host") => self.host += 1,
            Some("srflx") => self.srflx += 1,
            Some("relay") => self.relay += 1,
            _ => {}
        }
    }
}

/// Which path a connection took, as W3C `RTCIceCandidateStats` name candidate types.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CandidatePath {
    /// This side's candidate of the selected pair: `host`, `srflx`, `prflx` or `relay`.
    pub local_candidate_type: String,
    /// The peer's candidate of the selected pair.
    pub remote_candidate_type: String,
    /// How this side reaches its TURN server (`udp`, `tcp`, `tls`) when the local candidate
    /// is relayed (`relayProtocol`).
    pub relay_protocol: Option<String>,
}

impl CandidatePath {
    /// `host/srflx`, `relay(udp)/srflx`: local, then remote.
    pub fn short(&self) -> String {
        let relay = self
            .relay_protocol
            .as_deref()
            .map(|p| format!("({p})"))
            .unwrap_or_default();
        format!(
            "{}{relay}/{}",
            self.local_candidate_type, self.remote_candidate_type
        )
    }
}

/// The selected candidate pair's path in a stats report: the transport's selected pair, else
/// a nominated one that succeeded.
pub(crate) fn selected_path(report: &RTCStatsReport) -> Option<CandidatePath> {
    let selected_id = report.iter().find_map(|e| match e {
        RTCStatsReportEntry::Transport(t) if !t.selected_candidate_pair_id.is_empty() => {
            Some(t.selected_candidate_pair_id.clone())
        }
        _ => None,
    });
    let pair = report
        .candidate_pairs()
        .find(|p| Some(&p.stats.id) == selected_id.as_ref())
        .or_else(|| report.candidate_pairs().find(|p| p.nominated))?;
    // The stack names a candidate's stats `RTCLocalIceCandidate_ID` / `RTCRemoteIceCandidate_ID`
    // and the pair refers to it by ID.
    let candidate = |id: &str, local: bool| {
        let matches = |stats_id: &str| stats_id == id || stats_id.ends_with(&format!("_{id}"));
        report.iter().find_map(|e| match e {
            RTCStatsReportEntry::LocalCandidate(c) if local && matches(&c.stats.id) => Some(c),
            RTCStatsReportEntry::RemoteCandidate(c) if !local && matches(&c.stats.id) => Some(c),
            _ => None,
        })
    };
    let local = candidate(&pair.local_candidate_id, true)?;
    let local_type = local.candidate_type.to_string();
    // A remote candidate the peer never signalled was learned from its checks: peer-reflexive.
    let remote_type = candidate(&pair.remote_candidate_id, false)
        .map_or_else(|| "prflx".to_owned(), |c| c.candidate_type.to_string());
    let relay_protocol = (local_type == "relay").then(|| {
        match format!("{:?}", local.relay_protocol)
            .to_ascii_lowercase()
            .as_str()
        {
            // The stack's TURN client allocates over UDP only.
            "unspecified" => "udp".to_owned(),
            other => other.to_owned(),
        }
    });
    Some(CandidatePath {
        local_candidate_type: local_type,
        remote_candidate_type: remote_type,
        relay_protocol,
    })
}

/// A relay candidate as the peer may see it: its related address (the local address the
/// allocation was made from, RFC 8445 §5.1.3) becomes `0.0.0.0 0`, as browsers send it. The
/// related address is for diagnostics only; the peer needs the relay address alone, and a
/// relay-only user must not reveal the machine's address through it. Other candidates are
/// returned as they are.
pub fn redact_related_address(candidate: &str) -> String {
    if candidate_type(candidate) != Some("relay") {
        return candidate.to_owned();
    }
    let mut words: Vec<&str> = candidate.split_whitespace().collect();
    for i in 0..words.len().saturating_sub(1) {
        match words[i] {
            "raddr" => words[i + 1] = "0.0.0.0",
            "rport" => words[i + 1] = "0",
            _ => {}
        }
    }
    words.join(" ")
}

/// The type of a candidate line (`candidate:... typ relay ...`), if it names one.
pub fn candidate_type(candidate: &str) -> Option<&str> {
    let mut words = candidate.split_whitespace();
    words.find(|w| *w == "typ")?;
    words.next()
}

/// How the WebRTC stack uses mDNS on this machine: query-only (a peer's `.local` host
/// candidates, as browsers send them, are asked for on the local network) when a socket can
/// join the mDNS group, else disabled, so a machine with no multicast-capable interface (only
/// loopback, as in a bare network namespace) still makes calls, with `.local` candidates
/// dropped. Probed once per process, with a warning when mDNS is off.
pub(crate) fn multicast_dns_mode() -> MulticastDnsMode {
    static MODE: OnceLock<MulticastDnsMode> = OnceLock::new();
    *MODE.get_or_init(|| mdns_mode_after(rtc::mdns::MulticastSocket::new().into_std().map(drop)))
}

/// The mDNS mode after trying to join the mDNS group (`probe`).
fn mdns_mode_after(probe: std::io::Result<()>) -> MulticastDnsMode {
    match probe {
        Ok(()) => MulticastDnsMode::QueryOnly,
        Err(e) => {
            tracing::warn!(
                "mDNS is off: cannot join its multicast group ({e}); a peer's `.local` \
                 candidates will not be resolved"
            );
            MulticastDnsMode::Disabled
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mdns_is_off_where_its_group_cannot_be_joined() {
        // What joining fails with in a network namespace that has only loopback.
        let no_device = std::io::Error::from_raw_os_error(19);
        assert_eq!(mdns_mode_after(Err(no_device)), MulticastDnsMode::Disabled);
        assert_eq!(mdns_mode_after(Ok(())), MulticastDnsMode::QueryOnly);
    }

    #[test]
    fn candidate_types_are_read_from_candidate_lines() {
        let line =
            "candidate:1 1 udp 16777215 192.0.2.9 50000 typ relay raddr 198.51.100.2 rport 4000";
        assert_eq!(candidate_type(line), Some("relay"));
        assert_eq!(
            candidate_type("candidate:1 1 udp 1 10.0.0.1 1 typ host"),
            Some("host")
        );
        assert_eq!(candidate_type("garbage"), None);
    }

    #[test]
    fn relay_candidates_hide_the_address_they_were_allocated_from() {
        let relay =
            "candidate:1 1 udp 16777215 203.0.113.1 49668 typ relay raddr 10.1.0.2 rport 33074";
        assert_eq!(
            redact_related_address(relay),
            "candidate:1 1 udp 16777215 203.0.113.1 49668 typ relay raddr 0.0.0.0 rport 0"
        );
        let srflx =
            "candidate:2 1 udp 1694498815 203.0.113.11 5000 typ srflx raddr 10.1.0.2 rport 5000";
        assert_eq!(redact_related_address(srflx), srflx);
    }

    #[test]
    fn the_hint_names_what_is_missing() {
        let nothing = Gathered::default();
        let none = IceSetup::default();
        assert!(none.failure_hint(&nothing).contains("no TURN server"));
        let relay_only = IceSetup {
            relay_only: true,
            ..IceSetup::default()
        };
        assert!(relay_only
            .failure_hint(&nothing)
            .contains("relay-only needs a TURN server"));
        let turn = IceSetup {
            servers: vec![IceServer::new(
                ["stun:192.0.2.1:3478", "turn:192.0.2.1:3478"],
                Some(("u", "p")),
            )],
            relay_only: false,
        };
        let mut reflexive = Gathered::default();
        reflexive.count("candidate:1 1 udp 1 10.0.0.2 5000 typ host");
        reflexive.count("candidate:2 1 udp 1 203.0.113.11 5000 typ srflx raddr 0.0.0.0 rport 0");
        assert_eq!(reflexive.srflx, 1);
        assert!(turn
            .failure_hint(&reflexive)
            .contains("the TURN server refused the credentials"));
        let host_only = Gathered {
            host: 1,
            ..Gathered::default()
        };
        assert!(turn.failure_hint(&host_only).starts_with("UDP is blocked"));
        let relayed = Gathered {
            relay: 1,
            ..reflexive
        };
        assert!(turn
            .failure_hint(&relayed)
            .contains("even through the TURN relay"));
    }

    #[test]
    fn the_configuration_carries_servers_and_policy() {
        let setup = IceSetup {
            servers: vec![IceServer::new(["stun:192.0.2.1:3478"], None)],
            relay_only: true,
        };
        let config = setup.configuration();
        assert_eq!(config.ice_servers().len(), 1);
        assert_eq!(config.ice_transport_policy(), RTCIceTransportPolicy::Relay);
    }
}
