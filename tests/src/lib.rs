//! Helpers for the integration tests: a real Kafka-protocol broker (tansu)
//! in its own process, shared by the tests of one test binary, and unique
//! topic names per test.
//!
//! The broker is the one at `SALESCAST_TEST_BROKERS` if set; otherwise the
//! `tansu` binary (`SALESCAST_TANSU_BIN`, or `tansu` on `PATH`, or
//! `~/.local/bin/tansu`) is started on a free port with in-memory storage.
//! `scripts/test.sh` installs tansu when it is missing.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Broker {
    bootstrap: String,
    _child: Option<ChildGuard>,
}

struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn tansu_bin() -> String {
    if let Ok(b) = std::env::var("SALESCAST_TANSU_BIN") {
        return b;
    }
    let home_bin = std::env::var("HOME")
        .map(|h| format!("{h}/.local/bin/tansu"))
        .unwrap_or_default();
    if which("tansu") {
        "tansu".into()
    } else {
        home_bin
    }
}

fn which(cmd: &str) -> bool {
    std::env::var("PATH")
        .unwrap_or_default()
        .split(':')
        .any(|d| std::path::Path::new(d).join(cmd).is_file())
}

fn start() -> Broker {
    if let Ok(b) = std::env::var("SALESCAST_TEST_BROKERS") {
        return Broker {
            bootstrap: b,
            _child: None,
        };
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port");
    let url = format!("tcp://127.0.0.1:{port}");
    let bin = tansu_bin();
    // The broker is spawned from a thread that lives as long as the test
    // process, with a parent-death signal: it goes away with the tests.
    let (tx, rx) = std::sync::mpsc::channel();
    let b = bin.clone();
    std::thread::spawn(move || {
        let mut cmd = Command::new(&b);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
            "--storage-engine",
            "memory://tansu/",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: prctl is async-signal-safe and touches no Rust state.
        unsafe {
            use std::os::unix::process::CommandExt;
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let spawned = cmd.spawn().map(ChildGuard);
        let ok = spawned.is_ok();
        let _ = tx.send(spawned);
        if ok {
            loop {
                std::thread::park();
            }
        }
    });
    let guard = rx
        .recv()
        .expect("broker thread")
        .unwrap_or_else(|e| {
            panic!("cannot start the tansu broker ({bin}): {e}. Run scripts/test.sh, which installs it, or set SALESCAST_TEST_BROKERS")
        });
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "tansu did not start listening");
        std::thread::sleep(Duration::from_millis(50));
    }
    Broker {
        bootstrap: format!("127.0.0.1:{port}"),
        _child: Some(guard),
    }
}

static BROKER: OnceLock<Broker> = OnceLock::new();

/// Bootstrap address of the test broker (started on first use).
pub fn brokers() -> String {
    BROKER.get_or_init(start).bootstrap.clone()
}

/// A name no other test uses.
pub fn unique(prefix: &str) -> String {
    let n = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("{prefix}-{}-{n}", std::process::id())
}

/// Read `n` messages from `topic` with a fresh consumer group, counting
/// messages (tansu's high-watermarks can fall short of what it stores), and
/// then keep reading for `linger` to catch any extra. Panics after `timeout`.
pub fn read_messages(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
    linger: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let c: BaseConsumer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", unique("reader"))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()
        .expect("reader");
    c.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + timeout;
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        assert!(
            Instant::now() < deadline,
            "read only {} of {n} messages from {topic}",
            out.len()
        );
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    let end = Instant::now() + linger;
    while Instant::now() < end {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            out.push(m.detach());
        }
    }
    out
}

/// Lines and net units per series, keyed by (level, key).
pub type Totals = std::collections::BTreeMap<(salescast_stream_core::Level, String), (i64, i64)>;

/// What the windows must add up to: every valid generated event counted once
/// at every level.
pub fn expected_totals<'a>(
    expects: impl IntoIterator<Item = &'a salescast_loadgen::Expect>,
) -> Totals {
    use salescast_stream_core::{series_key, Level};
    let mut want = Totals::new();
    for e in expects {
        if let salescast_loadgen::Expect::Valid(v) = e {
            for l in Level::ALL {
                let t = want
                    .entry((l, series_key(l, &v.sku, &v.store, &v.category)))
                    .or_default();
                t.0 += 1;
                t.1 += v.qty;
            }
        }
    }
    want
}

/// What the published windows add up to, read as an idempotent consumer
/// would: the last message per id, then the highest revision per window.
pub fn window_totals(forecasts: impl IntoIterator<Item = salescast_inference::Forecast>) -> Totals {
    use std::collections::HashMap;
    let mut by_id = HashMap::new();
    for f in forecasts {
        by_id.insert(f.id.clone(), f);
    }
    let mut latest: HashMap<_, salescast_inference::Forecast> = HashMap::new();
    for f in by_id.into_values() {
        let k = (f.level, f.key.to_string(), f.window_start_ms);
        if latest.get(&k).is_none_or(|p| p.revision < f.revision) {
            latest.insert(k, f);
        }
    }
    let mut got = Totals::new();
    for ((l, key, _), f) in latest {
        let t = got.entry((l, key)).or_default();
        t.0 += f.actual.lines;
        t.1 += f.actual.units;
    }
    got
}
