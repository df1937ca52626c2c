//! The live chart in a real browser: headless Chromium (Debian's
//! `chromium`, which scripts/test.sh installs; `SALESCAST_TEST_CHROMIUM`
//! names another binary) opens the gateway's page for the total while the
//! pipeline consumes generated sales on the test broker. Driven over the
//! DevTools protocol, the page must go live, show the newest total window's
//! units exactly as the pipeline emitted them, and have drawn the actual
//! line and the forecast band on its canvas.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures::{SinkExt, StreamExt};
use salescast_loadgen::GenConfig;
use salescast_tests::{http_get, publish_drained, spawn_tool, start_pipeline};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const EVENTS: u64 = 8_000;

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The value of `expression` evaluated in the page (DevTools
/// `Runtime.evaluate`, by value).
async fn eval(cdp: &mut Ws, id: &mut u64, expression: &str) -> anyhow::Result<serde_json::Value> {
    *id += 1;
    let req = serde_json::json!({
        "id": *id,
        "method": "Runtime.evaluate",
        "params": { "expression": expression, "returnByValue": true },
    });
    cdp.send(WsMessage::text(req.to_string())).await?;
    while let Some(m) = cdp.next().await {
        if let WsMessage::Text(t) = m? {
            let v: serde_json::Value = serde_json::from_str(t.as_str())?;
            if v["id"] == *id {
                anyhow::ensure!(
                    v["result"]["exceptionDetails"].is_null(),
                    "{expression}: {v}"
                );
                return Ok(v["result"]["result"]["value"].clone());
            }
        }
    }
    anyhow::bail!("the DevTools connection closed")
}

/// Evaluate `expression` until `ok` holds for its value, or fail after
/// `timeout` with the last value.
async fn eval_until(
    cdp: &mut Ws,
    id: &mut u64,
    expression: &str,
    timeout: Duration,
    ok: impl Fn(&serde_json::Value) -> bool,
) -> anyhow::Result<serde_json::Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let v = eval(cdp, id, expression).await?;
        if ok(&v) {
            return Ok(v);
        }
        anyhow::ensure!(Instant::now() < deadline, "{expression}: last value {v}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Pixels of the chart canvas within a few levels of the colour `rgb`.
fn pixels_of(rgb: [u8; 3]) -> String {
    format!(
        "(() => {{ const c = document.getElementById('chart'); \
         const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data; \
         let n = 0; for (let i = 0; i < d.length; i += 4) {{ \
         if (d[i + 3] > 0 && Math.abs(d[i] - {}) < 12 && Math.abs(d[i + 1] - {}) < 12 && Math.abs(d[i + 2] - {}) < 12) n++; }} \
         return n; }})()",
        rgb[0], rgb[1], rgb[2]
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_live_chart_shows_the_pipelines_windows_in_chromium() -> anyhow::Result<()> {
    let (cfg, metrics, running) = start_pipeline(2, 3_000).await?;
    let gateway = running.gateway_addr;

    // The browser, on the total's chart.
    let profile = tempfile::tempdir()?;
    let _browser = spawn_tool("chromium", "SALESCAST_TEST_CHROMIUM", |c| {
        c.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--window-size=1280,800",
            "--remote-debugging-port=0",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("http://{gateway}/?level=total&key=total"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
    })?;
    // Its DevTools port, then the page's DevTools socket.
    let deadline = Instant::now() + Duration::from_secs(30);
    let port: u16 = loop {
        let f = std::fs::read_to_string(profile.path().join("DevToolsActivePort"));
        if let Some(p) = f.ok().and_then(|f| f.lines().next()?.parse().ok()) {
            break p;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "Chromium wrote no DevToolsActivePort"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let page_ws = loop {
        // Until the page is up, the list may come empty or not at all.
        let list = http_get(port, "/json/list").unwrap_or_default();
        let targets: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
        let page = targets.as_array().and_then(|t| {
            t.iter().find(|t| {
                t["type"] == "page"
                    && t["url"]
                        .as_str()
                        .is_some_and(|u| u.contains(&gateway.to_string()))
            })
        });
        if let Some(u) = page.and_then(|p| p["webSocketDebuggerUrl"].as_str()) {
            break u.to_string();
        }
        anyhow::ensure!(Instant::now() < deadline, "no page target: {targets}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let (mut cdp, _) = tokio_tungstenite::connect_async(page_ws.as_str()).await?;
    let mut id = 0;
    let t = Duration::from_secs(60);
    eval_until(
        &mut cdp,
        &mut id,
        "document.getElementById('status')?.textContent ?? null",
        t,
        |v| v == "live",
    )
    .await?;

    // Our own client on the same channel, to know what the page should show.
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{gateway}/ws")).await?;
    ws.send(WsMessage::text(
        r#"{"op":"subscribe","channel":"windows","level":"total","key":"total"}"#,
    ))
    .await?;
    // (window start, units) of every total window, revisions after.
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::<(i64, i64)>::new()));
    let sink = seen.clone();
    let watcher = tokio::spawn(async move {
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "window" {
                    let d = &v["data"];
                    sink.lock().expect("not poisoned").push((
                        d["window_start_ms"].as_i64().expect("start"),
                        d["actual"]["units"].as_i64().expect("units"),
                    ));
                }
            }
        }
    });

    // Sales, produced once both are watching; then every window closes.
    let gen_cfg = GenConfig {
        seed: 5,
        start_ms: 1_795_000_000_000,
        events_per_second: 10.0,
        ..GenConfig::default()
    };
    publish_drained(&cfg, gen_cfg, EVENTS, &metrics).await?;
    // What the page must show: the newest total window's units (its last
    // revision), and one point per window (it keeps the newest 120).
    tokio::time::sleep(Duration::from_secs(2)).await;
    watcher.abort();
    let seen = seen.lock().expect("not poisoned").clone();
    let newest = seen
        .iter()
        .map(|w| w.0)
        .max()
        .context("no total window reached our client")?;
    let units = seen
        .iter()
        .rev()
        .find(|w| w.0 == newest)
        .map(|w| w.1)
        .expect("newest");
    let mut starts: Vec<i64> = seen.iter().map(|w| w.0).collect();
    starts.sort_unstable();
    starts.dedup();
    eval_until(
        &mut cdp,
        &mut id,
        "document.getElementById('k-actual')?.textContent ?? null",
        t,
        |v| v.as_str() == Some(units.to_string().as_str()),
    )
    .await?;
    let points = eval(&mut cdp, &mut id, "state.points.size").await?;
    assert_eq!(
        points,
        serde_json::json!(starts.len().min(120)),
        "{} windows",
        starts.len()
    );
    assert!(
        starts.len() >= 5,
        "only {} total windows closed",
        starts.len()
    );
    let model = eval(
        &mut cdp,
        &mut id,
        "document.getElementById('k-model').textContent",
    )
    .await?;
    assert_eq!(model, serde_json::json!(cfg.inference.model));
    // Drawn: the actual line (#58a6ff) and the forecast's p50 (#f0883e).
    let actual_px = eval(&mut cdp, &mut id, &pixels_of([0x58, 0xa6, 0xff])).await?;
    let forecast_px = eval(&mut cdp, &mut id, &pixels_of([0xf0, 0x88, 0x3e])).await?;
    assert!(
        actual_px.as_u64().is_some_and(|n| n > 200),
        "actual line pixels: {actual_px}"
    );
    assert!(
        forecast_px.as_u64().is_some_and(|n| n > 100),
        "forecast pixels: {forecast_px}"
    );

    drop(cdp);
    running.shutdown().await?;
    Ok(())
}
