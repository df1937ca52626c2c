//! `/metrics` as a real Prometheus server sees it: the pipeline runs on the
//! test broker, a Prometheus server (Debian's `prometheus`, which
//! scripts/test.sh installs; `SALESCAST_TEST_PROMETHEUS` names another
//! binary) scrapes the gateway every second, and its query API must return
//! the pipeline's own counts: the exposition parses, the names and labels
//! are what docs/metrics.md says, and the counters carry exact values.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::Context;
use salescast_loadgen::GenConfig;
use salescast_tests::{free_port, http_get, publish_drained, spawn_tool, start_pipeline};

const EVENTS: u64 = 6_000;

/// The instant vector Prometheus returns for `query`, as (labels, value).
fn query(port: u16, query: &str) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
    let q: String = query
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect();
    let v: serde_json::Value =
        serde_json::from_str(&http_get(port, &format!("/api/v1/query?query={q}"))?)?;
    anyhow::ensure!(v["status"] == "success", "query {query}: {v}");
    v["data"]["result"]
        .as_array()
        .context("no result array")?
        .iter()
        .map(|r| {
            let value = r["value"][1]
                .as_str()
                .context("no sample value")?
                .parse::<f64>()?;
            Ok((r["metric"].clone(), value))
        })
        .collect()
}

/// Poll `query` until `ok` holds for its result, or fail after `timeout`
/// with the last result.
async fn wait_for(
    port: u16,
    q: &str,
    timeout: Duration,
    ok: impl Fn(&[(serde_json::Value, f64)]) -> bool,
) -> anyhow::Result<Vec<(serde_json::Value, f64)>> {
    let deadline = Instant::now() + timeout;
    loop {
        let got = query(port, q);
        if let Ok(r) = &got {
            if ok(r) {
                return got;
            }
        }
        anyhow::ensure!(Instant::now() < deadline, "{q}: last result {got:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prometheus_server_scrapes_the_pipelines_own_counts() -> anyhow::Result<()> {
    let (cfg, metrics, running) = start_pipeline(2, 3_000).await?;
    let target = running.gateway_addr;

    // Some sales, 2% of them malformed, then wait until all are through.
    let gen_cfg = GenConfig {
        seed: 11,
        start_ms: 1_795_000_000_000,
        events_per_second: 50.0,
        malformed_rate: 0.02,
        ..GenConfig::default()
    };
    publish_drained(&cfg, gen_cfg, EVENTS, &metrics).await?;
    let accepted = metrics.events_accepted.get() as f64;
    let dead = metrics
        .events_dead_lettered
        .with_label_values(&["bad_json"])
        .get() as f64;
    anyhow::ensure!(accepted > 0.0, "nothing accepted");

    // A Prometheus server scraping the gateway every second.
    let dir = tempfile::tempdir()?;
    let dir = dir.path();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: salescast\n    static_configs:\n      - targets: ['{target}']\n"
        ),
    )?;
    let port = free_port()?;
    let log = std::fs::File::create(dir.join("prometheus.log"))?;
    let _server = spawn_tool("prometheus", "SALESCAST_TEST_PROMETHEUS", |c| {
        c.arg(format!("--config.file={}", config.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(Stdio::null())
            .stderr(log)
    })?;
    let t = Duration::from_secs(60);

    // The target is up: the exposition parsed.
    let up = wait_for(port, "up{job=\"salescast\"}", t, |r| {
        r.len() == 1 && r[0].1 == 1.0
    })
    .await?;
    assert_eq!(up[0].0["instance"], target.to_string());
    // Counters carry the pipeline's own counts.
    wait_for(port, "salescast_events_received_total", t, |r| {
        r.len() == 1 && r[0].1 == EVENTS as f64
    })
    .await?;
    wait_for(port, "salescast_events_accepted_total", t, |r| {
        r.len() == 1 && r[0].1 == accepted
    })
    .await?;
    // Labels: one series per dead-letter reason, the generator's malformed
    // JSON among them.
    let by_reason = wait_for(port, "salescast_events_dead_lettered_total", t, |r| {
        r.iter().any(|(l, _)| l["reason"] == "bad_json")
    })
    .await?;
    let bad_json = by_reason
        .iter()
        .find(|(l, _)| l["reason"] == "bad_json")
        .map(|(_, v)| *v);
    assert_eq!(bad_json, Some(dead));
    // Windows closed at every level, and a histogram Prometheus can take a
    // quantile of.
    let levels = wait_for(
        port,
        "sum by (level) (salescast_windows_closed_total)",
        t,
        |r| r.len() == 4,
    )
    .await?;
    assert!(levels.iter().all(|(_, v)| *v > 0.0), "{levels:?}");
    let p99 = wait_for(
        port,
        "histogram_quantile(0.99, salescast_end_to_end_latency_seconds_bucket)",
        t,
        |r| r.len() == 1 && r[0].1.is_finite(),
    )
    .await?;
    assert!(p99[0].1 >= 0.0, "{p99:?}");

    running.shutdown().await?;
    Ok(())
}
