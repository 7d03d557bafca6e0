//! The ICE servers (STUN and TURN) the server hands its clients, with short-lived TURN
//! credentials in the REST-API scheme that coturn implements with `use-auth-secret`:
//! the username is `EXPIRY:USER` (EXPIRY in Unix seconds) and the password is the base64
//! HMAC-SHA1 of that username under the secret the server shares with the TURN server.
//!
//! The server sends an `ice_servers` message after `welcome`, and again whenever a client asks;
//! a client asks again before the credentials expire (see
//! [`SignalingClient::ice_servers`](crate::SignalingClient::ice_servers)).
//!
//! ```
//! use duet_signaling::ice::turn_credentials;
//! let (user, password) = turn_credentials("s3cret", "alice", 1_700_000_000);
//! assert_eq!(user, "1700000000:alice");
//! assert_eq!(password.len(), 28); // base64 of a 20-byte HMAC-SHA1
//! ```

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};

use crate::Error;

/// One ICE server as WebRTC's `RTCIceServer` describes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IceServer {
    /// `stun:HOST:PORT` or `turn:HOST:PORT[?transport=udp|tcp]` URLs.
    pub urls: Vec<String>,
    /// The TURN username (absent for STUN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    /// The TURN password (absent for STUN).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
}

/// What the server knows of its STUN and TURN servers.
#[derive(Clone)]
pub struct IceConfig {
    /// STUN URLs, `stun:HOST:PORT`.
    pub stun: Vec<String>,
    /// TURN URLs, `turn:HOST:PORT`.
    pub turn: Vec<String>,
    /// The secret shared with the TURN server (coturn's `static-auth-secret`).
    pub secret: String,
    /// How long a TURN credential is valid.
    pub ttl: Duration,
    /// The Unix time, in seconds, at a given instant: the hub never reads a clock, and
    /// credentials carry wall-clock expiry times.
    pub epoch: (Instant, u64),
}

impl std::fmt::Debug for IceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IceConfig")
            .field("stun", &self.stun)
            .field("turn", &self.turn)
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// The default lifetime of TURN credentials: one day.
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);

impl IceConfig {
    /// Checks the URLs (`stun:`/`turn:` with a host and port) and the secret, and anchors the
    /// Unix clock at the current instant.
    pub fn new(
        stun: Vec<String>,
        turn: Vec<String>,
        secret: String,
        ttl: Duration,
    ) -> Result<IceConfig, Error> {
        for url in &stun {
            check_url(url, "stun:")?;
        }
        for url in &turn {
            check_url(url, "turn:")?;
        }
        if !turn.is_empty() && secret.is_empty() {
            return Err(Error::Invalid {
                what: "TURN configuration",
                problem: "a TURN server needs its shared secret (--turn-secret)".into(),
            });
        }
        if ttl < Duration::from_secs(60) {
            return Err(Error::Invalid {
                what: "TURN credential lifetime",
                problem: "must be at least 60 s".into(),
            });
        }
        let unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        Ok(IceConfig {
            stun,
            turn,
            secret,
            ttl,
            epoch: (Instant::now(), unix),
        })
    }

    /// The servers for `user` at `now`, TURN credentials expiring `ttl` later.
    pub fn servers_for(&self, user: &str, now: Instant) -> Vec<IceServer> {
        let mut servers = Vec::new();
        if !self.stun.is_empty() {
            servers.push(IceServer {
                urls: self.stun.clone(),
                username: None,
                credential: None,
            });
        }
        if !self.turn.is_empty() {
            let unix_now = self.epoch.1 + now.saturating_duration_since(self.epoch.0).as_secs();
            let (username, credential) =
                turn_credentials(&self.secret, user, unix_now + self.ttl.as_secs());
            servers.push(IceServer {
                urls: self.turn.clone(),
                username: Some(username),
                credential: Some(credential),
            });
        }
        servers
    }
}

fn check_url(url: &str, scheme: &str) -> Result<(), Error> {
    let invalid = |problem: &str| Error::Invalid {
        what: "ICE server URL",
        problem: format!("{url:?}: {problem}"),
    };
    let rest = url
        .strip_prefix(scheme)
        .ok_or_else(|| invalid(&format!("must start with {scheme}")))?;
    let hostport = rest.split('?').next().unwrap_or_default();
    let (host, port) = hostport
        .rsplit_once(':')
        .ok_or_else(|| invalid("needs HOST:PORT"))?;
    if host.is_empty() || port.parse::<u16>().map(|p| p == 0).unwrap_or(true) {
        return Err(invalid("needs HOST:PORT"));
    }
    Ok(())
}

/// TURN REST-API credentials for `user`, valid until `expiry` (Unix seconds): the username
/// `EXPIRY:USER` and the base64 HMAC-SHA1 of it under `secret`.
pub fn turn_credentials(secret: &str, user: &str, expiry: u64) -> (String, String) {
    let username = format!("{expiry}:{user}");
    // HMAC takes a key of any length.
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC accepts every key length"));
    mac.update(username.as_bytes());
    let password = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    (username, password)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_match_the_rest_api_scheme() {
        // Reference: `printf '1700000000:alice' | openssl dgst -sha1 -hmac s3cret -binary | base64`
        let (user, password) = turn_credentials("s3cret", "alice", 1_700_000_000);
        assert_eq!(user, "1700000000:alice");
        assert_eq!(password, "TtElzSjT0GdnTQ9xdcRNxx96yQs=");
    }

    #[test]
    fn servers_expire_ttl_after_now() {
        let t0 = Instant::now();
        let mut config = IceConfig::new(
            vec!["stun:192.0.2.1:3478".into()],
            vec!["turn:192.0.2.1:3478".into()],
            "k".into(),
            Duration::from_secs(600),
        )
        .unwrap();
        config.epoch = (t0, 1_000_000);
        let servers = config.servers_for("bob", t0 + Duration::from_secs(30));
        assert_eq!(servers.len(), 2);
        assert_eq!(servers[0].username, None);
        assert_eq!(servers[1].username.as_deref(), Some("1000630:bob"));
        let (_, password) = turn_credentials("k", "bob", 1_000_630);
        assert_eq!(servers[1].credential.as_deref(), Some(password.as_str()));
    }

    #[test]
    fn bad_urls_and_missing_secrets_are_refused() {
        let ttl = DEFAULT_TTL;
        assert!(IceConfig::new(vec!["192.0.2.1:3478".into()], vec![], "".into(), ttl).is_err());
        assert!(IceConfig::new(vec![], vec!["turn:192.0.2.1".into()], "k".into(), ttl).is_err());
        assert!(IceConfig::new(vec![], vec!["turn:h:3478".into()], "".into(), ttl).is_err());
        assert!(IceConfig::new(vec![], vec!["turn:h:3478".into()], "k".into(), ttl).is_ok());
    }
}
