//! End to end on a real broker: 100,000+ generated events with 1% malformed
//! records and some redelivered duplicates go through the whole pipeline.
//! Every valid event must be in the window totals exactly once, every
//! malformed record in the dead-letter topic with the right reason, every
//! closed window must have its forecast, and a WebSocket client must receive
//! the updates it subscribed to.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use rdkafka::message::{Headers, Message};
use salescast_inference::Forecast;
use salescast_loadgen::{Expect, GenConfig, Generator, PublishConfig};
use salescast_stream_core::{Level, RejectReason};
use salescast_tests::{brokers, drained, start_pipeline};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const EVENTS: u64 = 110_000;

fn read_topic(
    brokers: &str,
    topic: &str,
    n: usize,
    timeout: Duration,
) -> Vec<rdkafka::message::OwnedMessage> {
    salescast_tests::read_messages(brokers, topic, n, timeout, Duration::from_secs(2))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_thousand_events_end_to_end() -> anyhow::Result<()> {
    let b = brokers();
    // An idle timeout long enough that a stalled producer (a loaded CI
    // machine) does not look like the end of the input and close the
    // windows early.
    let (cfg, metrics, running) = start_pipeline(4, 4_000).await?;

    // A WebSocket client watching every store.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/ws", running.gateway_addr)).await?;
    ws.send(WsMessage::text(
        r#"{"op":"subscribe","channel":"windows","level":"store","key":"*"}"#,
    ))
    .await?;
    let ws_task = tokio::spawn(async move {
        let mut windows = Vec::new();
        while let Some(Ok(m)) = ws.next().await {
            if let WsMessage::Text(t) = m {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "window" {
                    windows.push(v);
                }
            }
        }
        windows
    });

    // Produce, remembering what each record should become.
    let gen_cfg = GenConfig {
        seed: 7,
        start_ms: 1_795_000_000_000,
        events_per_second: 100.0,
        malformed_rate: 0.01,
        duplicate_rate: 0.002,
        ..GenConfig::default()
    };
    let pc = PublishConfig {
        limit: Some(EVENTS),
        ..PublishConfig::new(&b, &cfg.ingest.topic)
    };
    let (expects, payload_reason) = tokio::task::spawn_blocking(move || {
        let mut expects = Vec::new();
        let mut payload_reason: HashMap<Vec<u8>, &'static str> = HashMap::new();
        salescast_loadgen::publish(
            &pc,
            Generator::new(gen_cfg),
            || false,
            |r| {
                if let Expect::Malformed(reason) = &r.expect {
                    payload_reason.insert(r.payload.clone(), reason);
                }
                expects.push(r.expect.clone());
            },
        )
        .expect("publish");
        (expects, payload_reason)
    })
    .await?;
    assert_eq!(expects.len() as u64, EVENTS);

    // What the windows must add up to.
    let want = salescast_tests::expected_totals(&expects);
    let (mut valid, mut dups) = (0u64, 0u64);
    for e in &expects {
        match e {
            Expect::Valid(_) => valid += 1,
            Expect::Duplicate => dups += 1,
            Expect::Malformed(_) => {}
        }
    }
    let malformed = payload_reason.len() as u64;
    assert!(malformed >= EVENTS / 200, "about 1% malformed: {malformed}");
    assert!(dups > 0);

    // Wait until every record is accounted for and the drained input closed
    // every window, and the outputs stopped changing.
    drained(&metrics, EVENTS, Duration::from_secs(300)).await?;
    let mut last = u64::MAX;
    while metrics
        .output_records
        .with_label_values(&["forecasts"])
        .get()
        != last
    {
        last = metrics
            .output_records
            .with_label_values(&["forecasts"])
            .get();
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let by_reason: Vec<(&str, u64)> = RejectReason::ALL
        .iter()
        .map(|r| {
            (
                r.code(),
                metrics
                    .events_dead_lettered
                    .with_label_values(&[r.code()])
                    .get(),
            )
        })
        .collect();
    let mut want_reasons: BTreeMap<&str, u64> = BTreeMap::new();
    for r in payload_reason.values() {
        *want_reasons.entry(r).or_default() += 1;
    }
    assert_eq!(
        metrics.events_accepted.get(),
        valid,
        "dead letters by reason {by_reason:?}, expected {want_reasons:?}"
    );
    assert_eq!(metrics.events_duplicate.get(), dups);
    assert_eq!(salescast::pipeline::dead_lettered(&metrics), malformed);

    // Dead letters: every malformed record, with its reason, nothing else.
    let dlq_topic = cfg.output.dlq_topic.clone();
    let bb = b.clone();
    let dlq = tokio::task::spawn_blocking(move || {
        read_topic(
            &bb,
            &dlq_topic,
            malformed as usize,
            Duration::from_secs(120),
        )
    })
    .await?;
    assert_eq!(dlq.len() as u64, malformed, "no extra dead letters");
    for m in &dlq {
        let payload = m.payload().expect("payload").to_vec();
        let want_reason = payload_reason.get(&payload).unwrap_or_else(|| {
            panic!(
                "unexpected dead letter {}",
                String::from_utf8_lossy(&payload[..payload.len().min(200)])
            )
        });
        let headers = m.headers().expect("headers");
        let reason = headers
            .iter()
            .find(|h| h.key == "reason")
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned());
        assert_eq!(reason.as_deref(), Some(*want_reason));
    }

    // Forecasts: one per emitted window (first emissions and revisions).
    let emitted = metrics
        .output_records
        .with_label_values(&["forecasts"])
        .get() as usize;
    let fc_topic = cfg.output.forecasts_topic.clone();
    let bb = b.clone();
    let fcs = tokio::task::spawn_blocking(move || {
        read_topic(&bb, &fc_topic, emitted, Duration::from_secs(120))
    })
    .await?;
    assert_eq!(fcs.len(), emitted);
    let mut forecasts = Vec::with_capacity(fcs.len());
    for m in &fcs {
        let f: Forecast = serde_json::from_slice(m.payload().expect("payload"))?;
        assert_eq!(
            f.horizon.len(),
            cfg.inference.horizon,
            "a forecast for every closed window"
        );
        assert!(f.horizon.iter().all(|p| p.p10 <= p.p50 && p.p50 <= p.p90));
        forecasts.push(f);
    }
    let got = salescast_tests::window_totals(forecasts);
    assert_eq!(got.len(), want.len(), "same series");
    assert_eq!(
        got, want,
        "every valid event in the window totals exactly once"
    );
    let total_lines: i64 = got
        .iter()
        .filter(|((l, _), _)| *l == Level::Total)
        .map(|(_, t)| t.0)
        .sum();
    assert_eq!(total_lines as u64, valid);

    // Offsets were committed up to the end of every partition.
    running.shutdown().await?;
    let ws_windows = ws_task.await?;
    assert!(
        !ws_windows.is_empty(),
        "the WebSocket client received updates"
    );
    assert!(ws_windows.iter().all(|v| v["data"]["level"] == "store"));
    Ok(())
}
