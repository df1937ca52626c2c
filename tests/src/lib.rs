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
    _child: Option<KillOnDrop>,
}

/// A child process (a broker, a Prometheus server, a browser), killed and
/// reaped when dropped.
pub struct KillOnDrop(pub Child);

impl Drop for KillOnDrop {
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
    let port = free_port().expect("free port");
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
        let spawned = cmd.spawn().map(KillOnDrop);
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

/// The body of `GET path` from `127.0.0.1:port` (HTTP/1.1, read to its
/// `Content-Length`, or to the end of the connection without one); an error
/// unless the status is 200.
pub fn http_get(port: u16, path: &str) -> std::io::Result<String> {
    use std::io::{BufRead, BufReader, Error, Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status)?;
    if status.split(' ').nth(1) != Some("200") {
        return Err(Error::other(format!("GET {path}: {}", status.trim_end())));
    }
    let mut length = None;
    loop {
        let mut line = String::new();
        if r.read_line(&mut line)? == 0 || line.trim_end().is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            if k.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse::<usize>().ok();
            }
        }
    }
    let mut body = Vec::new();
    match length {
        Some(n) => {
            body.resize(n, 0);
            r.read_exact(&mut body)?;
        }
        None => {
            r.read_to_end(&mut body)?;
        }
    }
    String::from_utf8(body).map_err(Error::other)
}

/// A port nothing listens on just now.
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A pipeline configuration on the test broker with topics of its own
/// (created: `partitions` each for the input and forecasts, one for alerts
/// and dead letters), a short consumer-group session, windows flushed after
/// `idle_timeout_ms` without input, and the gateway on a free port.
pub async fn pipeline_config(
    partitions: i32,
    idle_timeout_ms: u64,
) -> anyhow::Result<salescast::config::Config> {
    let b = brokers();
    let mut cfg = salescast::config::Config::default();
    cfg.ingest.brokers = b.clone();
    cfg.ingest.topic = unique("sales");
    cfg.ingest.group_id = unique("group");
    cfg.ingest.session_timeout_ms = 6_000;
    cfg.ingest.idle_timeout_ms = idle_timeout_ms;
    cfg.output.forecasts_topic = unique("forecasts");
    cfg.output.alerts_topic = unique("alerts");
    cfg.output.dlq_topic = unique("dlq");
    cfg.gateway.listen = "127.0.0.1:0".into();
    salescast::topics::ensure_topics(
        &b,
        &[
            (cfg.ingest.topic.as_str(), partitions),
            (cfg.output.forecasts_topic.as_str(), partitions),
            (cfg.output.alerts_topic.as_str(), 1),
            (cfg.output.dlq_topic.as_str(), 1),
        ],
    )
    .await?;
    Ok(cfg)
}

/// A pipeline on a configuration from [`pipeline_config`], started with
/// metrics of its own.
pub async fn start_pipeline(
    partitions: i32,
    idle_timeout_ms: u64,
) -> anyhow::Result<(
    salescast::config::Config,
    salescast_metrics::Metrics,
    salescast::pipeline::Running,
)> {
    let cfg = pipeline_config(partitions, idle_timeout_ms).await?;
    let metrics = salescast_metrics::Metrics::new();
    let running = salescast::pipeline::start(cfg.clone(), metrics.clone()).await?;
    Ok((cfg, metrics, running))
}

/// Start Debian's `package` (the binary the environment variable `env`
/// names instead, when set), as `configure` sets up its arguments and
/// output; scripts/test.sh installs it.
pub fn spawn_tool(
    package: &str,
    env: &str,
    configure: impl FnOnce(&mut Command) -> &mut Command,
) -> anyhow::Result<KillOnDrop> {
    let bin = std::env::var(env).unwrap_or_else(|_| package.into());
    let child = configure(&mut Command::new(&bin)).spawn().map_err(|e| {
        anyhow::anyhow!(
            "cannot start {package} ({bin}): {e}; run scripts/test.sh, which installs Debian's {package}, or set {env}"
        )
    })?;
    Ok(KillOnDrop(child))
}

/// Wait until the pipeline has taken `events` messages through its window
/// engine (see `salescast::pipeline::events_processed`: received is not
/// enough, the engine may not have seen them yet) and closed every window;
/// fails after `timeout`.
pub async fn drained(
    metrics: &salescast_metrics::Metrics,
    events: u64,
    timeout: Duration,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + timeout;
    let processed = salescast::pipeline::events_processed;
    while processed(metrics) < events || metrics.open_windows.get() > 0 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "the pipeline received {} and processed {} of {events} events, {} windows open",
            metrics.events_received.get(),
            processed(metrics),
            metrics.open_windows.get()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}

/// Publish the first `events` records of the generator `gen` to the
/// pipeline's input topic, then wait until the pipeline has processed them
/// all and closed every window (see [`drained`], two minutes at most).
pub async fn publish_drained(
    cfg: &salescast::config::Config,
    gen: salescast_loadgen::GenConfig,
    events: u64,
    metrics: &salescast_metrics::Metrics,
) -> anyhow::Result<()> {
    let pc = salescast_loadgen::PublishConfig {
        limit: Some(events),
        ..salescast_loadgen::PublishConfig::new(&cfg.ingest.brokers, &cfg.ingest.topic)
    };
    tokio::task::spawn_blocking(move || {
        salescast_loadgen::publish(
            &pc,
            salescast_loadgen::Generator::new(gen),
            || false,
            |_| {},
        )
    })
    .await??;
    drained(metrics, events, Duration::from_secs(120)).await
}
