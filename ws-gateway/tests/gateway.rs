//! The gateway over real sockets: subscriptions and filters, history
//! backfill, a slow client that is made to skip and then closed while the
//! publisher never waits, and the HTTP endpoints.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use salescast_alerting::{Alert, AlertKind, Direction, Severity, Status};
use salescast_inference::{Actual, Forecast, HorizonPoint};
use salescast_metrics::Metrics;
use salescast_stream_core::Level;
use salescast_ws_gateway::{Config, Gateway, Publisher};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

fn forecast(level: Level, key: &str, start: i64, points: usize) -> Forecast {
    Forecast {
        id: format!("{level}:{key}:{start}:0"),
        level,
        key: key.into(),
        window_start_ms: start,
        window_end_ms: start + 60_000,
        revision: 0,
        actual: Actual {
            units: 3,
            returns: 0,
            lines: 3,
            revenue: 9.0,
            avg_price: Some(3.0),
            promo_share: 0.0,
        },
        expected: None,
        history_windows: 1,
        model: "ewma".into(),
        model_version: 0,
        parent: None,
        horizon: (0..points)
            .map(|h| HorizonPoint {
                start_ms: start + 60_000 * (h as i64 + 1),
                end_ms: start + 60_000 * (h as i64 + 2),
                p10: 1.0,
                p50: 2.0,
                p90: 3.0,
            })
            .collect(),
    }
}

fn publish_window(p: &Publisher, f: &Forecast) {
    p.window(f, &serde_json::to_string(f).unwrap(), 0);
}

async fn start(cfg: Config) -> (std::net::SocketAddr, Publisher, Metrics, CancellationToken) {
    let metrics = Metrics::new();
    let g = Gateway::bind(&cfg, metrics.clone()).await.unwrap();
    let addr = g.local_addr();
    let p = g.publisher();
    let cancel = CancellationToken::new();
    tokio::spawn(g.run(cancel.clone()));
    (addr, p, metrics, cancel)
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn connect(addr: std::net::SocketAddr) -> Ws {
    let (ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    ws
}

async fn next_json(ws: &mut Ws) -> serde_json::Value {
    loop {
        let m = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("a message in time")
            .expect("open")
            .expect("ok");
        if let Message::Text(t) = m {
            return serde_json::from_str(t.as_str()).unwrap();
        }
    }
}

async fn subscribe(ws: &mut Ws, req: &str) -> u64 {
    ws.send(Message::text(req)).await.unwrap();
    loop {
        let v = next_json(ws).await;
        if v["type"] == "subscribed" {
            return v["id"].as_u64().unwrap();
        }
    }
}

#[tokio::test]
async fn subscriptions_filter_and_backfill() {
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let (addr, p, _m, cancel) = start(cfg).await;
    // History exists before anyone subscribes.
    publish_window(&p, &forecast(Level::Store, "web-uk", 0, 2));
    publish_window(&p, &forecast(Level::Store, "web-uk", 60_000, 2));

    let mut a = connect(addr).await;
    assert_eq!(next_json(&mut a).await["type"], "hello");
    subscribe(
        &mut a,
        r#"{"op":"subscribe","level":"store","key":"web-uk"}"#,
    )
    .await;
    // Backfill of the exact series, oldest first.
    assert_eq!(next_json(&mut a).await["data"]["window_start_ms"], 0);
    assert_eq!(next_json(&mut a).await["data"]["window_start_ms"], 60_000);

    let mut b = connect(addr).await;
    next_json(&mut b).await;
    subscribe(
        &mut b,
        r#"{"op":"subscribe","channel":"alerts","key":"web-*","min_severity":"medium"}"#,
    )
    .await;
    let mut bad = connect(addr).await;
    next_json(&mut bad).await;
    bad.send(Message::text(r#"{"op":"subscribe","level":"planet"}"#))
        .await
        .unwrap();
    assert_eq!(next_json(&mut bad).await["type"], "error");

    publish_window(&p, &forecast(Level::Store, "app-de", 120_000, 2)); // a: no (key), b: no (channel)
    publish_window(&p, &forecast(Level::Total, "total", 120_000, 2)); // a: no (level)
    let alert = |sev| Alert {
        id: "x".into(),
        level: Level::Store,
        key: "web-uk".into(),
        kind: AlertKind::Spike,
        severity: sev,
        window_start_ms: 0,
        window_end_ms: 60_000,
        observed: 9.0,
        expected: 2.0,
        band: [1.0, 3.0],
        score: 3.0,
        model: "ewma".into(),
        model_version: 0,
        status: Status::Open,
        direction: Direction::Up,
        robust_z: 5.0,
        revenue_at_stake: 70.0,
        children: Vec::new(),
        explanation: "spike".into(),
    };
    let low = alert(Severity::Low);
    p.alert(&low, &serde_json::to_string(&low).unwrap()); // b: no (severity)
    let high = alert(Severity::High);
    p.alert(&high, &serde_json::to_string(&high).unwrap()); // b: yes
    publish_window(&p, &forecast(Level::Store, "web-uk", 120_000, 2)); // a: yes

    let got_a = next_json(&mut a).await;
    assert_eq!(got_a["type"], "window");
    assert_eq!(got_a["data"]["key"], "web-uk");
    assert_eq!(got_a["data"]["window_start_ms"], 120_000);
    let got_b = next_json(&mut b).await;
    assert_eq!(got_b["type"], "alert");
    assert_eq!(got_b["data"]["severity"], "high");
    cancel.cancel();
}

#[tokio::test]
async fn a_client_behind_the_ring_skips_ahead_and_is_told() {
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        channel_capacity: 16,
        ..Config::default()
    };
    let (addr, p, metrics, cancel) = start(cfg).await;
    let mut ws = connect(addr).await;
    next_json(&mut ws).await;
    subscribe(&mut ws, r#"{"op":"subscribe","level":"store","key":"*"}"#).await;
    // A burst larger than the ring, published without yielding.
    for i in 0..100 {
        publish_window(&p, &forecast(Level::Store, "web-uk", i * 60_000, 1));
    }
    let first = next_json(&mut ws).await;
    assert_eq!(first["type"], "lagged");
    let skipped = first["skipped"].as_u64().unwrap();
    assert!(skipped >= 100 - 16, "skipped {skipped}");
    // Then the newest updates, in order, ending with the last one.
    let mut last = 0;
    for _ in 0..(100 - skipped) {
        let v = next_json(&mut ws).await;
        last = v["data"]["window_start_ms"].as_i64().unwrap();
    }
    assert_eq!(last, 99 * 60_000);
    assert_eq!(metrics.ws_messages_skipped.get(), skipped);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_is_dropped_and_never_slows_the_publisher() {
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        channel_capacity: 64,
        send_timeout_ms: 300,
        ..Config::default()
    };
    let (addr, p, metrics, cancel) = start(cfg).await;
    let mut stuck = connect(addr).await;
    next_json(&mut stuck).await;
    subscribe(&mut stuck, r#"{"op":"subscribe"}"#).await;
    let mut fast = connect(addr).await;
    next_json(&mut fast).await;
    subscribe(&mut fast, r#"{"op":"subscribe","level":"total"}"#).await;

    // Keep publishing bursts until the socket buffers are full and the
    // stuck client (which reads nothing) is dropped; no burst ever waits.
    let big = forecast(Level::Store, "web-uk", 0, 300);
    let json = serde_json::to_string(&big).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut i = 0;
    while metrics.ws_disconnects_lagging.get() == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stuck client was not dropped"
        );
        let t = std::time::Instant::now();
        for _ in 0..200 {
            p.window(&big, &json, i);
            i += 1;
        }
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "publishing never waits for clients"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The other client is still served.
    publish_window(&p, &forecast(Level::Total, "total", 0, 1));
    let v = loop {
        let v = next_json(&mut fast).await;
        if v["type"] == "window" {
            break v;
        }
    };
    assert_eq!(v["data"]["key"], "total");
    assert_eq!(metrics.ws_clients.get(), 1);
    drop(stuck);
    cancel.cancel();
}

async fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

#[tokio::test]
async fn http_endpoints() {
    let cfg = Config {
        listen: "127.0.0.1:0".into(),
        ..Config::default()
    };
    let (addr, p, _m, cancel) = start(cfg).await;
    publish_window(&p, &forecast(Level::Store, "web-uk", 0, 1));
    let page = http_get(addr, "/").await;
    assert!(page.starts_with("HTTP/1.1 200"));
    assert!(page.contains("<canvas id=\"chart\">"));
    let m = http_get(addr, "/metrics").await;
    assert!(m.contains("salescast_ws_clients"));
    let api = http_get(addr, "/api/series?level=store").await;
    assert!(api.contains(r#"{"key":"web-uk","level":"store"}"#), "{api}");
    assert!(http_get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
    assert!(http_get(addr, "/ws").await.starts_with("HTTP/1.1 400"));
    cancel.cancel();
}
