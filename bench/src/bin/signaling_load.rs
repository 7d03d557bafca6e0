//! Load test of duet's signaling server: N authenticated clients on loopback, pairs of contacts
//! chatting at a fixed total rate; reports round-trip percentiles and the server's RSS and CPU.
//!
//! ```text
//! cargo run --release -p duet-bench --bin signaling_load -- --clients 10000 --rate 2000 --seconds 10
//! ```
//!
//! The server runs in a child process (this binary with `--serve DB`), so its memory and CPU are
//! measured apart from the clients'. Three latencies are measured for every message, on this
//! process's clock: `ack` (sender -> server -> sender), `delivery` (sender -> server -> recipient)
//! and `receipt` (sender -> server -> recipient, whose client confirms -> server -> sender).

use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use duet_signaling::client::{ClientConfig, Event, Events, SignalingClient};
use duet_signaling::protocol::{Link, ServerMessage, UserName};
use duet_signaling::server::{Server, ServerConfig};
use duet_signaling::store::{Relation, SqliteStore, Store};
use futures_util::StreamExt;

struct Args {
    clients: usize,
    rate: f64,
    seconds: f64,
    json: bool,
}

fn parse_args() -> Result<Result<Args, PathBuf>, String> {
    let mut args = Args {
        clients: 10_000,
        rate: 2000.0,
        seconds: 10.0,
        json: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |what: &str| it.next().ok_or(format!("{what} needs a value"));
        match flag.as_str() {
            "--serve" => return Ok(Err(PathBuf::from(value("--serve")?))),
            "--clients" => {
                args.clients = value("--clients")?
                    .parse()
                    .map_err(|e| format!("--clients: {e}"))?
            }
            "--rate" => {
                args.rate = value("--rate")?
                    .parse()
                    .map_err(|e| format!("--rate: {e}"))?
            }
            "--seconds" => {
                args.seconds = value("--seconds")?
                    .parse()
                    .map_err(|e| format!("--seconds: {e}"))?
            }
            "--json" => args.json = true,
            "-h" | "--help" => {
                println!("signaling_load [--clients N] [--rate MSGS_PER_S] [--seconds S] [--json]");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    let positive = |x: f64| x.is_finite() && x > 0.0;
    if args.clients < 2
        || !args.clients.is_multiple_of(2)
        || !positive(args.rate)
        || !positive(args.seconds)
    {
        return Err("--clients must be even and at least 2; --rate and --seconds positive".into());
    }
    Ok(Ok(args))
}

fn main() -> Result<(), String> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    match parse_args()? {
        Err(db) => rt.block_on(serve(&db)),
        Ok(args) => rt.block_on(run(args)),
    }
}

/// The server side: runs until stdin closes.
async fn serve(db: &Path) -> Result<(), String> {
    let config = ServerConfig::new(
        "127.0.0.1:0".parse().map_err(|_| "address")?,
        Some(db.to_owned()),
    );
    let server = Server::start(config).await.map_err(|e| e.to_string())?;
    println!("listening {}", server.local_addr());
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let _ = tokio::task::spawn_blocking(|| std::io::stdin().read_to_end(&mut Vec::new())).await;
    server.shutdown().await.map_err(|e| e.to_string())
}

fn user(i: usize) -> UserName {
    // Names of the form u00042 are always valid.
    UserName::new(&format!("u{i:05}")).unwrap_or_else(|_| unreachable!())
}

/// Creates `n` accounts, paired as contacts (0 with 1, 2 with 3...); returns their tokens.
fn populate(db: &Path, n: usize) -> Result<Vec<String>, String> {
    let mut store = SqliteStore::open(db).map_err(|e| e.to_string())?;
    store
        .batch(|s| {
            let mut tokens = Vec::with_capacity(n);
            for i in 0..n {
                tokens.push(s.create_user(&user(i))?);
            }
            let friends = Some(Relation {
                link: Link::Accepted,
                blocked: false,
            });
            for i in (0..n).step_by(2) {
                s.set_relation(&user(i), &user(i + 1), friends)?;
                s.set_relation(&user(i + 1), &user(i), friends)?;
            }
            Ok(tokens)
        })
        .map_err(|e| e.to_string())
}

/// The server's resident memory (KiB) and CPU time so far.
fn probe(pid: u32) -> (u64, Duration) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime and stime are the 12th and 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    // Linux reports CPU time in units of USER_HZ, 100 a second on every mainstream platform.
    (rss, Duration::from_millis(ticks * 10))
}

fn start_server(db: &Path) -> Result<(Child, String), String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut child = Command::new(exe)
        .arg("--serve")
        .arg(db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start the server: {e}"))?;
    let out = child.stdout.take().ok_or("no stdout")?;
    let mut line = String::new();
    BufReader::new(out)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    let addr = line
        .trim()
        .strip_prefix("listening ")
        .ok_or(format!("server said {line:?}"))?;
    Ok((child, format!("ws://{addr}/")))
}

#[derive(Default)]
struct Latencies {
    ack: Vec<Duration>,
    delivery: Vec<Duration>,
    receipt: Vec<Duration>,
}

/// Percentiles of a sample, in milliseconds: p50, p90, p99, p99.9, max.
fn percentiles(v: &mut [Duration]) -> [f64; 5] {
    v.sort_unstable();
    let at = |q: f64| {
        let i = ((v.len() as f64 - 1.0) * q).round() as usize;
        v.get(i).map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    };
    [at(0.5), at(0.9), at(0.99), at(0.999), at(1.0)]
}

/// Reads a client's events: chat stamps give the delivery latency, receipts the round trip.
async fn watch(mut events: Events, base: Instant, lat: Arc<Mutex<Latencies>>) {
    while let Some(e) = events.recv().await {
        let Event::Message(msg) = e else { continue };
        let (stamp, is_receipt) = match &msg {
            ServerMessage::Chat { text, .. } => (text.as_str(), false),
            ServerMessage::Receipt { id, .. } => (id.split('-').next().unwrap_or(""), true),
            _ => continue,
        };
        let Ok(nanos) = stamp.parse::<u64>() else {
            continue;
        };
        let took = base.elapsed().saturating_sub(Duration::from_nanos(nanos));
        let mut l = lat.lock().unwrap_or_else(|e| e.into_inner());
        if is_receipt {
            l.receipt.push(took);
        } else {
            l.delivery.push(took);
        }
    }
}

async fn run(args: Args) -> Result<(), String> {
    let dir = std::env::temp_dir().join(format!("duet-signaling-load-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let db = dir.join("load.db");
    let t = Instant::now();
    let tokens = populate(&db, args.clients)?;
    eprintln!(
        "created {} accounts in {:.1} s",
        args.clients,
        t.elapsed().as_secs_f64()
    );
    let (mut child, url) = start_server(&db)?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rss_empty, _) = probe(child.id());

    let t = Instant::now();
    let clients: Vec<Result<(SignalingClient, Events), String>> =
        futures_util::stream::iter(0..args.clients)
            .map(|i| {
                let mut config = ClientConfig::new(url.clone(), user(i), tokens[i].clone());
                config.request_timeout = Duration::from_secs(30);
                async move {
                    SignalingClient::connect(config)
                        .await
                        .map_err(|e| format!("client {i}: {e}"))
                }
            })
            .buffered(128)
            .collect()
            .await;
    let clients: Vec<(SignalingClient, Events)> = clients.into_iter().collect::<Result<_, _>>()?;
    let connect_s = t.elapsed().as_secs_f64();
    eprintln!("{} clients logged in in {connect_s:.1} s", clients.len());

    let base = Instant::now();
    let lat = Arc::new(Mutex::new(Latencies::default()));
    let mut senders = Vec::with_capacity(clients.len());
    for (client, events) in clients {
        tokio::spawn(watch(events, base, lat.clone()));
        senders.push(client);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (rss_idle, cpu0) = probe(child.id());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (_, cpu1) = probe(child.id());
    let idle_cpu = (cpu1 - cpu0).as_secs_f64() / 2.0;
    let per_conn_kib = rss_idle.saturating_sub(rss_empty) as f64 / args.clients as f64;

    // Chat: round robin over pairs, alternating direction, at a fixed total rate.
    let total = (args.rate * args.seconds).round() as usize;
    let period = Duration::from_secs_f64(1.0 / args.rate);
    let (_, cpu_start) = probe(child.id());
    let t_chat = Instant::now();
    let failures = Arc::new(Mutex::new(0usize));
    for k in 0..total {
        tokio::time::sleep_until((t_chat + period.mul_f64(k as f64)).into()).await;
        let pair = k % (args.clients / 2);
        let (from, to) = if (k / (args.clients / 2)).is_multiple_of(2) {
            (2 * pair, 2 * pair + 1)
        } else {
            (2 * pair + 1, 2 * pair)
        };
        let client = senders[from].clone();
        let (to, lat, failures) = (user(to), lat.clone(), failures.clone());
        tokio::spawn(async move {
            let stamp = base.elapsed().as_nanos() as u64;
            let sent = Instant::now();
            match client
                .chat_with_id(&to, &format!("{stamp}-{k}"), &stamp.to_string())
                .await
            {
                Ok(_) => lat
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .ack
                    .push(sent.elapsed()),
                Err(e) => {
                    eprintln!("chat {k}: {e}");
                    *failures.lock().unwrap_or_else(|e| e.into_inner()) += 1;
                }
            }
        });
    }
    let chat_s = t_chat.elapsed().as_secs_f64();
    let (rss_busy, cpu_end) = probe(child.id());
    let busy_cpu = (cpu_end - cpu_start).as_secs_f64() / chat_s;
    // Let the last receipts come back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lat.lock().unwrap_or_else(|e| e.into_inner()).receipt.len() < total
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut l = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
    let failures = *failures.lock().unwrap_or_else(|e| e.into_inner());
    let (ack, delivery, receipt) = (
        percentiles(&mut l.ack),
        percentiles(&mut l.delivery),
        percentiles(&mut l.receipt),
    );

    drop(child.stdin.take());
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);

    let achieved = total as f64 / chat_s;
    let fmt = |p: [f64; 5]| {
        format!(
            "p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2} ms",
            p[0], p[1], p[2], p[3], p[4]
        )
    };
    if args.json {
        let j = |p: [f64; 5]| {
            format!(
                "{{\"p50\":{:.3},\"p90\":{:.3},\"p99\":{:.3},\"p999\":{:.3},\"max\":{:.3}}}",
                p[0], p[1], p[2], p[3], p[4]
            )
        };
        println!(
            "{{\"clients\":{},\"connect_s\":{connect_s:.2},\"rate\":{achieved:.0},\"messages\":{total},\"failed\":{failures},\
             \"acked\":{},\"delivered\":{},\"receipted\":{},\"ack_ms\":{},\"delivery_ms\":{},\"receipt_ms\":{},\
             \"rss_empty_kib\":{rss_empty},\"rss_idle_kib\":{rss_idle},\"rss_busy_kib\":{rss_busy},\
             \"rss_per_conn_kib\":{per_conn_kib:.2},\"cpu_idle\":{idle_cpu:.3},\"cpu_busy\":{busy_cpu:.3}}}",
            args.clients,
            l.ack.len(),
            l.delivery.len(),
            l.receipt.len(),
            j(ack),
            j(delivery),
            j(receipt)
        );
    } else {
        println!(
            "clients          {} logged in, in {connect_s:.1} s",
            args.clients
        );
        println!("chat             {total} messages at {achieved:.0}/s, {failures} failed");
        println!(
            "acked/delivered/receipted  {}/{}/{}",
            l.ack.len(),
            l.delivery.len(),
            l.receipt.len()
        );
        println!("ack              {}", fmt(ack));
        println!("delivery         {}", fmt(delivery));
        println!("receipt (round trip) {}", fmt(receipt));
        println!("server RSS       {rss_empty} KiB empty, {rss_idle} KiB idle with clients, {rss_busy} KiB after chat");
        println!("RSS per idle connection  {per_conn_kib:.1} KiB");
        println!(
            "server CPU       {:.1}% of a core idle, {:.1}% while chatting",
            idle_cpu * 100.0,
            busy_cpu * 100.0
        );
    }
    Ok(())
}
