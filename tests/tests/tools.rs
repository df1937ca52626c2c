//! The producers' tools against the real broker: `replay` publishes every
//! line of a JSON-lines file, keyed `<sku>|<store>`, bad lines included (the
//! pipeline dead-letters them), blank lines skipped.

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::ClientConfig;
use salescast_loadgen::{GenConfig, Generator, PublishConfig};
use salescast_tests::{brokers, unique};

#[tokio::test]
async fn replay_publishes_every_line_keyed() -> anyhow::Result<()> {
    let b = brokers();
    let topic = unique("replay");
    salescast::topics::ensure_topics(&b, &[(topic.as_str(), 2)]).await?;
    let mut file = tempfile::NamedTempFile::new()?;
    let gen = Generator::new(GenConfig {
        start_ms: 1_795_000_000_000,
        ..GenConfig::default()
    });
    let mut want: HashMap<Vec<u8>, Option<String>> = HashMap::new();
    for r in gen.take(500) {
        file.write_all(&r.payload)?;
        file.write_all(b"\n\n")?;
        want.insert(r.payload.clone(), Some(r.key.clone()));
    }
    file.write_all(b"{\"not\": \"an event\"}\n")?;
    want.insert(b"{\"not\": \"an event\"}".to_vec(), None);
    file.flush()?;
    let pc = PublishConfig::new(&b, &topic);
    let path = file.path().to_path_buf();
    let stats = tokio::task::spawn_blocking(move || {
        salescast_loadgen::replay_file(&pc, &path, || false).map_err(|e| anyhow::anyhow!("{e}"))
    })
    .await??;
    assert_eq!(stats.records, 501);

    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &b)
        .set("group.id", unique("g"))
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("heartbeat.interval.ms", "1000")
        .create()?;
    c.subscribe(&[&topic])?;
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut got = 0;
    while got < 501 {
        assert!(Instant::now() < deadline, "read {got} of 501");
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let payload = m.payload().unwrap_or_default().to_vec();
            let key = m.key().map(|k| String::from_utf8_lossy(k).into_owned());
            assert_eq!(
                want.get(&payload),
                Some(&key),
                "payload and key as in the file"
            );
            got += 1;
        }
    }
    Ok(())
}
