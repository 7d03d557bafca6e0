//! `wss://` end to end with a private CA made here: a client that trusts the CA logs in and
//! gets its ICE servers; one that trusts another CA, or reaches the server under a name its
//! certificate does not carry, is refused with one line naming the problem; a client that
//! stalls in the handshake does not hold up the others.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::{TestServer, WAIT};
use duet_signaling::ice::IceConfig;
use duet_signaling::tls::{ClientTls, ServerTls};
use duet_signaling::{ClientConfig, Error, SignalingClient};

/// A CA, and a certificate for `names` signed by it, written as PEM files into `dir`.
/// Returns (CA file, certificate file, key file).
fn issue(dir: &Path, tag: &str, names: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("duet test CA {tag}"));
    let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
    let cert = rcgen::CertificateParams::new(names)
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let paths = (
        dir.join(format!("{tag}-ca.pem")),
        dir.join(format!("{tag}-cert.pem")),
        dir.join(format!("{tag}-key.pem")),
    );
    std::fs::write(&paths.0, ca.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

async fn tls_server(users: &[&str], cert: &Path, key: &Path) -> TestServer {
    let tls = ServerTls::from_pem_files(cert, key).unwrap();
    TestServer::start_with(users, |c| {
        c.tls = Some(tls);
        c.hub.ice = Some(
            IceConfig::new(
                vec!["stun:192.0.2.7:3478".into()],
                vec!["turn:192.0.2.7:3478".into()],
                "lab-secret".into(),
                Duration::from_secs(600),
            )
            .unwrap(),
        );
    })
    .await
}

fn config(ts: &TestServer, user: &str, ca: &Path) -> ClientConfig {
    let mut config = ClientConfig::new(
        format!("wss://127.0.0.1:{}/", ts.addr().port()),
        common::name(user),
        ts.token(user),
    );
    config.tls = ClientTls {
        ca: Some(ca.to_owned()),
        insecure: false,
    };
    config.reconnect = false;
    config
}

#[tokio::test]
async fn a_client_trusting_the_ca_logs_in_over_wss_and_gets_ice_servers() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue(dir.path(), "good", &["127.0.0.1", "localhost"]);
    let ts = tls_server(&["alice"], &cert, &key).await;
    assert!(ts.server().url().starts_with("wss://"));
    let (client, _events) = SignalingClient::connect(config(&ts, "alice", &ca))
        .await
        .unwrap();
    let servers = client.ice_servers().await.unwrap();
    assert_eq!(servers.len(), 2, "{servers:?}");
    let turn = &servers[1];
    assert_eq!(turn.urls, vec!["turn:192.0.2.7:3478".to_string()]);
    let username = turn.username.as_deref().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "alice");
    let expiry: u64 = expiry.parse().unwrap();
    let (_, password) = duet_signaling::ice::turn_credentials("lab-secret", "alice", expiry);
    assert_eq!(turn.credential.as_deref(), Some(password.as_str()));
    // A plain connection to the TLS port gets nowhere.
    let plain = tokio::time::timeout(
        WAIT,
        tokio_tungstenite::connect_async(format!("ws://127.0.0.1:{}/", ts.addr().port())),
    )
    .await
    .unwrap();
    assert!(plain.is_err());
    client.close().await;
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_in_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let (_, cert, key) = issue(dir.path(), "server", &["127.0.0.1"]);
    let (other_ca, _, _) = issue(dir.path(), "other", &["127.0.0.1"]);
    let ts = tls_server(&["alice"], &cert, &key).await;
    let err = SignalingClient::connect(config(&ts, "alice", &other_ca))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, Error::Certificate(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("not signed by a CA this client trusts"),
        "{text}"
    );
    assert!(text.contains("--ca"), "{text}");
    assert_eq!(text.lines().count(), 1, "{text}");
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue(dir.path(), "named", &["duet.example.org"]);
    let ts = tls_server(&["alice"], &cert, &key).await;
    let err = SignalingClient::connect(config(&ts, "alice", &ca))
        .await
        .err()
        .expect("refused");
    assert!(
        err.to_string().contains("certificate is for another name"),
        "{err}"
    );
}

#[tokio::test]
async fn a_stalled_handshake_does_not_hold_up_other_clients() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = issue(dir.path(), "stall", &["127.0.0.1"]);
    let ts = tls_server(&["alice"], &cert, &key).await;
    // Connections that never say a word.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(tokio::net::TcpStream::connect(ts.addr()).await.unwrap());
    }
    let (client, _events) =
        tokio::time::timeout(WAIT, SignalingClient::connect(config(&ts, "alice", &ca)))
            .await
            .expect("logged in while others stall")
            .unwrap();
    client.close().await;
}

#[tokio::test]
async fn plain_ws_beyond_loopback_is_refused_before_connecting() {
    let mut config = ClientConfig::new("ws://192.0.2.1:7878/", common::name("alice"), "token");
    config.reconnect = false;
    let err = SignalingClient::connect(config)
        .await
        .err()
        .expect("refused");
    let text = err.to_string();
    assert!(text.contains("in clear"), "{text}");
    assert!(text.contains("wss://"), "{text}");
}
