//! At-least-once across a restart (fault injection): stop the pipeline half
//! way with windows still open, start a new one in the same consumer group,
//! and the windows published by both runs together (last message per id,
//! highest revision per window) still count every valid event exactly once,
//! and the group's committed offsets reach the end.
//!
//! This runs on librdkafka's mock cluster, not tansu: resuming needs the
//! watermark that salescast stores in the offset-commit metadata (as Kafka
//! Streams stores stream time), and tansu 0.6.0 returns empty commit metadata.
//! `commit_metadata_is_dropped_by_tansu` below records that, so the day tansu
//! keeps it, that test fails and this one can move to tansu.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::mocking::MockCluster;
use rdkafka::ClientConfig;
use salescast::config::Config;
use salescast_inference::Forecast;
use salescast_loadgen::{Expect, GenConfig, Generator, PublishConfig};
use salescast_metrics::Metrics;
use salescast_tests::{brokers, unique};

const EVENTS: u64 = 30_000;

fn config(b: &str, topic: &str, group: &str, out: &str) -> Config {
    let mut cfg = Config::default();
    cfg.ingest.brokers = b.to_string();
    cfg.ingest.topic = topic.to_string();
    cfg.ingest.group_id = group.to_string();
    cfg.ingest.session_timeout_ms = 6_000;
    cfg.ingest.idle_timeout_ms = 1_500;
    cfg.ingest.batch_max_messages = 512;
    cfg.output.forecasts_topic = format!("{out}-forecasts");
    cfg.output.alerts_topic = format!("{out}-alerts");
    cfg.output.dlq_topic = format!("{out}-dlq");
    cfg.gateway.listen = "127.0.0.1:0".into();
    cfg.pipeline.commit_interval_ms = 100;
    cfg
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_committed_offsets_without_loss() -> anyhow::Result<()> {
    let mock = MockCluster::new(1)?;
    let b = mock.bootstrap_servers();
    let topic = unique("sales");
    let group = unique("group");
    let out = unique("out");
    let cfg = config(&b, &topic, &group, &out);
    mock.create_topic(&topic, 3, 1)?;
    mock.create_topic(&cfg.output.forecasts_topic, 6, 1)?;
    mock.create_topic(&cfg.output.alerts_topic, 1, 1)?;
    mock.create_topic(&cfg.output.dlq_topic, 1, 1)?;

    // The generated stream, published in two halves: the first before the
    // first run, the second while the pipeline is down.
    let gen_cfg = GenConfig {
        seed: 11,
        start_ms: 1_795_000_000_000,
        events_per_second: 50.0,
        // Few SKUs: the mock cluster keeps only a few MB per partition.
        skus: 100,
        ..GenConfig::default()
    };
    let records: Vec<_> = Generator::new(gen_cfg).take(EVENTS as usize).collect();
    let expects: Vec<Expect> = records.iter().map(|r| r.expect.clone()).collect();
    let half = records.len() / 2;
    let second: Vec<_> = records[half..].to_vec();
    let first: Vec<_> = records[..half].to_vec();
    let publish = |recs: Vec<salescast_loadgen::GenRecord>| {
        let pc = PublishConfig::new(&b, &topic);
        tokio::task::spawn_blocking(move || {
            salescast_loadgen::publish(&pc, recs, || false, |_| {}).expect("publish")
        })
    };
    publish(first).await?;
    let want = salescast_tests::expected_totals(&expects);

    // First run: read the first half, then stop with windows still open
    // (no flush on idle), as a crash or a deploy would.
    let m1 = Metrics::new();
    let mut cfg1 = cfg.clone();
    cfg1.ingest.flush_when_idle = false;
    let run1 = salescast::pipeline::start(cfg1, m1.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while m1.events_accepted.get() < half as u64 - 10 * (EVENTS / 1000) {
        assert!(Instant::now() < deadline, "first run made no progress");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    run1.shutdown().await?;
    publish(second).await?;
    let first_run = m1.events_accepted.get();
    let resume_from = committed_total(&b, &group, &topic)?;
    assert!(resume_from > 0, "the first run committed progress");
    assert!(first_run < EVENTS, "stopped before the end ({first_run})");

    // Second run, same group: resumes from the committed offsets.
    let m2 = Metrics::new();
    let run2 = salescast::pipeline::start(cfg.clone(), m2.clone()).await?;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        let seen = m2.events_accepted.get() + m2.events_replayed.get() + m2.events_duplicate.get();
        let ok = m2.open_windows.get() == 0
            && m2.windows_closed.with_label_values(&["total"]).get() > 0
            && seen + resume_from >= EVENTS;
        if ok {
            break;
        }
        assert!(Instant::now() < deadline, "second run did not finish");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    run2.shutdown().await?;
    // The second run did not start from scratch.
    assert!(m2.events_accepted.get() < EVENTS, "resumed, not restarted");
    assert_eq!(
        m2.events_accepted.get() + m2.events_replayed.get() + resume_from,
        EVENTS,
        "the second run read exactly what was not committed"
    );

    let published = m1.output_records.with_label_values(&["forecasts"]).get()
        + m2.output_records.with_label_values(&["forecasts"]).get();
    {
        // The mock cluster trims partitions beyond a few MB: make sure it did not.
        let c: BaseConsumer = ClientConfig::new().set("bootstrap.servers", &b).create()?;
        for p in 0..6 {
            let (lo, _) =
                c.fetch_watermarks(&cfg.output.forecasts_topic, p, Duration::from_secs(5))?;
            assert_eq!(lo, 0, "mock cluster trimmed forecasts partition {p}");
        }
    }
    let fcs = tokio::task::spawn_blocking({
        let b = b.clone();
        let t = cfg.output.forecasts_topic.clone();
        move || {
            salescast_tests::read_messages(
                &b,
                &t,
                published as usize,
                Duration::from_secs(120),
                Duration::ZERO,
            )
        }
    })
    .await?;
    let mut forecasts = Vec::with_capacity(fcs.len());
    for m in &fcs {
        forecasts.push(serde_json::from_slice::<Forecast>(
            m.payload().expect("payload"),
        )?);
    }
    let got = salescast_tests::window_totals(forecasts);
    let dead: Vec<(&str, u64)> = salescast_stream_core::RejectReason::ALL
        .iter()
        .map(|r| {
            (
                r.code(),
                m2.events_dead_lettered.with_label_values(&[r.code()]).get(),
            )
        })
        .filter(|(_, n)| *n > 0)
        .collect();
    eprintln!(
        "run 2: accepted {} replayed {} dead {dead:?}",
        m2.events_accepted.get(),
        m2.events_replayed.get()
    );
    let diff: Vec<_> = want
        .iter()
        .filter(|(k, v)| got.get(*k) != Some(*v))
        .take(5)
        .map(|(k, v)| (k.clone(), *v, got.get(k).copied()))
        .collect();
    assert!(
        diff.is_empty(),
        "every valid event counted once across the restart; differences (key, want, got): {diff:?}"
    );
    assert_eq!(got, want);

    // Committed offsets reach the end of every partition.
    assert_eq!(
        committed_total(&b, &group, &topic)?,
        EVENTS,
        "offsets committed to the end"
    );
    Ok(())
}

/// Sum over partitions of the group's committed offsets.
fn committed_total(b: &str, group: &str, topic: &str) -> anyhow::Result<u64> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", b)
        .set("group.id", group)
        .create()?;
    let md = c.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition(topic, p.id());
    }
    let committed = c.committed_offsets(tpl, Duration::from_secs(10))?;
    Ok(committed
        .elements()
        .iter()
        .filter_map(|e| e.offset().to_raw())
        .filter(|o| *o >= 0)
        .sum::<i64>() as u64)
}

/// tansu 0.6.0 accepts offset commits but returns their metadata empty.
#[test]
fn commit_metadata_is_dropped_by_tansu() -> anyhow::Result<()> {
    use rdkafka::consumer::CommitMode;
    use rdkafka::topic_partition_list::Offset;
    let b = brokers();
    let topic = unique("meta");
    let rt = tokio::runtime::Runtime::new()?;
    rt.block_on(salescast::topics::ensure_topics(&b, &[(topic.as_str(), 1)]))?;
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", unique("g"))
        .create()?;
    let mut tpl = rdkafka::TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(0))?;
    tpl.find_partition(&topic, 0)
        .expect("partition")
        .set_metadata(salescast_ingest::consumer::watermark_metadata(42));
    c.assign(&tpl)?;
    c.commit(&tpl, CommitMode::Sync)?;
    let mut q = rdkafka::TopicPartitionList::new();
    q.add_partition(&topic, 0);
    let got = c.committed_offsets(q, Duration::from_secs(10))?;
    let e = got.find_partition(&topic, 0).expect("partition");
    assert_eq!(e.offset(), Offset::Offset(0), "the offset is stored");
    assert_eq!(
        e.metadata(),
        "",
        "tansu now keeps commit metadata: move restart_resumes_... to tansu"
    );
    Ok(())
}
