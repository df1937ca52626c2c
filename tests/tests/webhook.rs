//! Webhook delivery against a local HTTP receiver that is down at first and
//! comes back: every alert arrives once it is back, none twice, each signed;
//! a webhook that stays down dead-letters its alerts without delaying the
//! other one.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use salescast::webhook::{signature, Config, HookConfig, Webhooks};
use salescast_alerting::{Alert, Severity};
use salescast_metrics::Metrics;
use salescast_tests::free_port;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn alert(i: usize) -> Alert {
    serde_json::from_value(serde_json::json!({
        "id": format!("store:web-uk:spike:{i}"), "status": "open", "level": "store",
        "key": "web-uk", "kind": "spike", "direction": "up", "severity": "high",
        "window_start_ms": i, "window_end_ms": i + 60_000, "observed": 90.0,
        "expected": 40.0, "band": [30.0, 50.0], "score": 2.0, "robust_z": 9.0,
        "revenue_at_stake": 500.0, "children": [], "model": "ensemble",
        "model_version": 1, "explanation": "spike"
    }))
    .expect("alert json")
}

/// Minimal HTTP/1.1 receiver: records (alert id, signature ok) per request.
async fn receiver(port: u16, secret: &'static [u8], got: Arc<Mutex<Vec<(String, bool)>>>) {
    let l = TcpListener::bind(("127.0.0.1", port)).await.unwrap();
    loop {
        let (mut s, _) = l.accept().await.unwrap();
        let got = got.clone();
        tokio::spawn(async move {
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            let (head_end, len) = loop {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
                if let Some(p) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..p]).to_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    break (p + 4, len);
                }
            };
            while buf.len() < head_end + len {
                let n = s.read(&mut chunk).await.unwrap_or(0);
                if n == 0 {
                    return;
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let header = |name: &str| {
                head.lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
                    })
                    .unwrap_or_default()
            };
            let body = &buf[head_end..head_end + len];
            let ts: u64 = header("x-salescast-timestamp").parse().unwrap_or(0);
            let ok = header("x-salescast-signature") == signature(secret, ts, body);
            got.lock()
                .unwrap()
                .push((header("x-salescast-alert-id"), ok));
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .await;
        });
    }
}

#[tokio::test]
async fn alerts_reach_a_webhook_that_comes_back_exactly_once() {
    let port = free_port().expect("free port");
    let dead_port = free_port().expect("free port");
    let dir = tempfile::tempdir().unwrap();
    let dlq = dir.path().join("dlq.jsonl");
    std::env::set_var("SALESCAST_TEST_WEBHOOK_SECRET", "s3cret");
    let hook = |port: u16, attempts: u32| HookConfig {
        url: format!("http://127.0.0.1:{port}/hook"),
        secret_env: Some("SALESCAST_TEST_WEBHOOK_SECRET".into()),
        queue_capacity: 64,
        max_attempts: attempts,
        initial_backoff_ms: 20,
        max_backoff_ms: 200,
        timeout_ms: 1_000,
        min_severity: Severity::Low,
    };
    let cfg = Config {
        hook: vec![hook(port, 1_000), hook(dead_port, 3)],
        dead_letter_file: dlq.clone(),
    };
    let metrics = Metrics::new();
    let cancel = CancellationToken::new();
    let hooks = Webhooks::start(&cfg, metrics.clone(), cancel.clone()).unwrap();
    let alerts: Vec<Alert> = (0..5).map(alert).collect();
    for a in &alerts {
        hooks.offer(a, &serde_json::to_string(a).unwrap());
    }
    // The receiver is down for a while: deliveries are being retried.
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert!(metrics.webhook_retries.get() > 0);
    assert_eq!(metrics.webhook_deliveries.get(), 0);
    let got = Arc::new(Mutex::new(Vec::new()));
    tokio::spawn(receiver(port, b"s3cret", got.clone()));
    let t = Instant::now();
    while got.lock().unwrap().len() < 5 && t.elapsed() < Duration::from_secs(15) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Give a duplicate the chance to show up.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let got = got.lock().unwrap().clone();
    let ids: Vec<String> = got.iter().map(|g| g.0.clone()).collect();
    let want: Vec<String> = alerts.iter().map(|a| a.id.clone()).collect();
    assert_eq!(ids, want, "each alert once, in order");
    assert!(got.iter().all(|g| g.1), "signatures verify");
    assert_eq!(metrics.webhook_deliveries.get(), 5);
    // The webhook that stayed down dead-lettered all five, with reasons.
    let t = Instant::now();
    let lines = loop {
        let text = std::fs::read_to_string(&dlq).unwrap_or_default();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if lines.len() >= 5 || t.elapsed() > Duration::from_secs(10) {
            break lines;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(lines.len(), 5, "{lines:?}");
    for (l, a) in lines.iter().zip(&alerts) {
        assert_eq!(l["webhook"], format!("http://127.0.0.1:{dead_port}/hook"));
        assert!(l["reason"]
            .as_str()
            .unwrap()
            .starts_with("retries exhausted"));
        assert_eq!(l["alert"]["id"], a.id.as_str());
    }
    cancel.cancel();
}
