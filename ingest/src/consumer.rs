//! The consumer-group consumer: polls on its own thread, decodes micro-batches
//! and sends them downstream over a bounded channel.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::statistics::Statistics;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use salescast_metrics::Metrics;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::decode::{BatchDecoder, Decoded};
use crate::dedup::Dedup;
use crate::{Config, Error};

/// One decoded micro-batch.
#[derive(Debug)]
pub struct IngestBatch {
    /// The events, dead letters and raw bytes of the batch.
    pub decoded: Decoded,
    /// Newest Kafka message timestamp in the batch (epoch ms), for the
    /// end-to-end latency metric.
    pub newest_message_ms: Option<i64>,
}

/// What the ingest stage sends downstream, in order.
#[derive(Debug)]
pub enum IngestEvent {
    /// A micro-batch of events.
    Batch(Box<IngestBatch>),
    /// Partitions newly assigned to this instance, each with the watermark
    /// recorded with its committed offset (if salescast committed it).
    Assigned(Vec<(i32, Option<i64>)>),
    /// Partitions taken away from this instance.
    Revoked(Vec<i32>),
    /// Partitions the consumer has read to the end and that stayed there for
    /// `idle-timeout-ms`: they stop holding the watermark back.
    Idle(Vec<i32>),
    /// Idle partitions made active again: data started flowing after every
    /// partition had been idle, so each gets `idle-timeout-ms` to show its
    /// data before it may be idle again.
    Active(Vec<i32>),
    /// Every assigned partition is idle: the input is drained for now.
    Drained,
}

enum RebalanceEvent {
    Assigned(Vec<i32>),
    Revoked(Vec<i32>),
}

struct Ctx {
    topic: String,
    events: Mutex<Vec<RebalanceEvent>>,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    metrics: Metrics,
}

impl ClientContext for Ctx {
    fn stats(&self, s: Statistics) {
        let lag: i64 = s
            .topics
            .get(&self.topic)
            .map(|t| {
                t.partitions
                    .values()
                    .filter(|p| p.partition >= 0 && p.consumer_lag >= 0)
                    .map(|p| p.consumer_lag)
                    .sum()
            })
            .unwrap_or(0);
        self.metrics.consumer_lag.set(lag);
    }
}

fn partitions_of(tpl: &TopicPartitionList) -> Vec<i32> {
    tpl.elements().iter().map(|e| e.partition()).collect()
}

impl ConsumerContext for Ctx {
    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        let ev = match r {
            Rebalance::Assign(tpl) => {
                let ps = partitions_of(tpl);
                self.assigned
                    .lock()
                    .expect("lock")
                    .extend(ps.iter().copied());
                info!(partitions = ?ps, "partitions assigned");
                RebalanceEvent::Assigned(ps)
            }
            Rebalance::Revoke(tpl) => {
                let ps = partitions_of(tpl);
                let mut a = self.assigned.lock().expect("lock");
                for p in &ps {
                    a.remove(p);
                }
                info!(partitions = ?ps, "partitions revoked");
                RebalanceEvent::Revoked(ps)
            }
            Rebalance::Error(e) => {
                warn!(error = %e, "rebalance error");
                return;
            }
        };
        self.events.lock().expect("lock").push(ev);
    }
}

type Client = BaseConsumer<Ctx>;

/// Commits offsets for the consumer group. Cheap to clone; usable from any
/// task. Only partitions currently assigned to this instance are committed.
#[derive(Clone)]
pub struct Committer {
    consumer: Arc<Client>,
    topic: String,
    assigned: Arc<Mutex<BTreeSet<i32>>>,
    metrics: Metrics,
}

impl std::fmt::Debug for Committer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Committer")
            .field("topic", &self.topic)
            .finish()
    }
}

impl Committer {
    /// Commit `positions` (partition, next offset to read), asynchronously,
    /// recording the engine `watermark` with them (see [`watermark_metadata`]).
    pub fn commit(&self, positions: &[(i32, i64)], watermark: Option<i64>) -> Result<(), Error> {
        self.commit_with(positions, watermark, CommitMode::Async)
    }

    /// Like [`Committer::commit`], waiting for the broker's answer (at shutdown).
    pub fn commit_sync(
        &self,
        positions: &[(i32, i64)],
        watermark: Option<i64>,
    ) -> Result<(), Error> {
        self.commit_with(positions, watermark, CommitMode::Sync)
    }

    fn commit_with(
        &self,
        positions: &[(i32, i64)],
        watermark: Option<i64>,
        mode: CommitMode,
    ) -> Result<(), Error> {
        let assigned = self.assigned.lock().expect("lock").clone();
        let mut tpl = TopicPartitionList::new();
        let meta = watermark.map(watermark_metadata).unwrap_or_default();
        for (p, o) in positions.iter().filter(|(p, _)| assigned.contains(p)) {
            tpl.add_partition_offset(&self.topic, *p, Offset::Offset(*o))?;
            if let Some(mut e) = tpl.find_partition(&self.topic, *p) {
                e.set_metadata(meta.clone());
            }
        }
        if tpl.count() == 0 {
            return Ok(());
        }
        debug!(?positions, "commit");
        self.consumer.commit(&tpl, mode)?;
        self.metrics.offset_commits.inc();
        Ok(())
    }
}

/// Offset-commit metadata carrying the engine watermark.
pub fn watermark_metadata(watermark: i64) -> String {
    format!("salescast:wm={watermark}")
}

/// Parse [`watermark_metadata`].
pub fn parse_watermark_metadata(meta: &str) -> Option<i64> {
    meta.strip_prefix("salescast:wm=")?.parse().ok()
}

/// Build the librdkafka consumer configuration used by salescast (also by
/// `salescast bench` for its plain consumer, so both read alike).
pub fn consumer_config(cfg: &Config) -> ClientConfig {
    let mut c = ClientConfig::new();
    let hb = (cfg.session_timeout_ms / 3).clamp(100, 3_000);
    c.set("bootstrap.servers", &cfg.brokers)
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "true")
        .set("session.timeout.ms", cfg.session_timeout_ms.to_string())
        .set("heartbeat.interval.ms", hb.to_string())
        .set("queued.min.messages", "200000")
        .set("fetch.wait.max.ms", "100")
        // When the local queue is above queued.min.messages, librdkafka waits
        // this long before fetching again (default 1 s): a consumer that does
        // real work drains the queue well before that and would sit idle.
        .set("fetch.queue.backoff.ms", "20")
        .set(
            "statistics.interval.ms",
            cfg.statistics_interval_ms.to_string(),
        );
    for (k, v) in &cfg.client {
        c.set(k, v);
    }
    c
}

/// A running ingest stage.
pub struct Ingest {
    committer: Committer,
    done: oneshot::Receiver<Result<(), Error>>,
}

impl std::fmt::Debug for Ingest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ingest").finish_non_exhaustive()
    }
}

impl Ingest {
    /// Subscribe to the topic and start consuming on a dedicated thread.
    pub fn start(
        cfg: &Config,
        tx: mpsc::Sender<IngestEvent>,
        cancel: CancellationToken,
        metrics: Metrics,
    ) -> Result<Ingest, Error> {
        if cfg.brokers.is_empty() {
            return Err(Error::Config("ingest.brokers is empty".into()));
        }
        if cfg.batch_max_messages == 0 {
            return Err(Error::Config(
                "ingest.batch-max-messages must be > 0".into(),
            ));
        }
        let assigned = Arc::new(Mutex::new(BTreeSet::new()));
        let ctx = Ctx {
            topic: cfg.topic.clone(),
            events: Mutex::new(Vec::new()),
            assigned: assigned.clone(),
            metrics: metrics.clone(),
        };
        let consumer: Client = consumer_config(cfg).create_with_context(ctx)?;
        consumer.subscribe(&[&cfg.topic])?;
        let consumer = Arc::new(consumer);
        let committer = Committer {
            consumer: consumer.clone(),
            topic: cfg.topic.clone(),
            assigned,
            metrics: metrics.clone(),
        };
        let (done_tx, done) = oneshot::channel();
        // Polling and decoding run on separate threads, so fetching never
        // waits for JSON parsing. Partitions are spread over the decode
        // threads (partition mod n), so each partition stays in order and its
        // duplicates meet the same de-duplication state.
        let n = cfg.decode_threads.max(1);
        let mut work = Vec::with_capacity(n);
        let mut decode_threads = Vec::with_capacity(n);
        // Decoded batches' buffers go back to the poll thread for reuse, so
        // it does not fault in fresh pages for every micro-batch. Bounded:
        // a full queue drops the buffer.
        let (spare_tx, spare_rx) = std::sync::mpsc::sync_channel::<RawBatch>(2 * n);
        for i in 0..n {
            let (work_tx, work_rx) = std::sync::mpsc::sync_channel::<Work>(2);
            let mut decode = DecodeWorker {
                decoder: BatchDecoder::new(cfg.batch_max_messages, cfg.max_payload_bytes)?,
                dedup: Dedup::new(cfg.dedup_capacity.div_ceil(n)),
                tx: tx.clone(),
                metrics: metrics.clone(),
                spare: spare_tx.clone(),
            };
            let h = std::thread::Builder::new()
                .name(format!("ingest-decode-{i}"))
                .spawn(move || decode.run(work_rx))
                .map_err(|e| Error::Config(format!("cannot spawn ingest thread: {e}")))?;
            work.push(work_tx);
            decode_threads.push(h);
        }
        let mut worker = Worker {
            cfg: cfg.clone(),
            consumer,
            work,
            tx,
            cancel,
            raw: (0..n).map(|_| RawBatch::default()).collect(),
            spare: spare_rx,
            assigned: BTreeSet::new(),
            eof_since: BTreeMap::new(),
            idle: BTreeSet::new(),
            drained: false,
        };
        std::thread::Builder::new()
            .name("ingest".into())
            .spawn(move || {
                let polled = worker.run();
                // Closing the queues lets the decoders finish what they have.
                worker.work.clear();
                let mut r = polled;
                for h in decode_threads {
                    let decoded = h
                        .join()
                        .unwrap_or_else(|_| Err(Error::Decode("decode thread panicked".into())));
                    match decoded {
                        Err(Error::Closed) | Ok(()) => {}
                        Err(e) => {
                            if matches!(r, Ok(()) | Err(Error::Closed)) {
                                r = Err(e);
                            }
                        }
                    }
                }
                if let Err(e) = &r {
                    warn!(error = %e, "ingest stopped with an error");
                }
                let _ = done_tx.send(r);
            })
            .map_err(|e| Error::Config(format!("cannot spawn ingest thread: {e}")))?;
        Ok(Ingest { committer, done })
    }

    /// A handle to commit offsets.
    pub fn committer(&self) -> Committer {
        self.committer.clone()
    }

    /// Wait for the consumer thread to finish (after cancellation or an error).
    pub async fn join(self) -> Result<(), Error> {
        self.done.await.unwrap_or(Err(Error::Closed))
    }
}

/// A byte range in [`RawBatch::data`].
type Span = Option<(usize, usize)>;

/// Messages of one micro-batch, copied off librdkafka's buffers.
#[derive(Default)]
struct RawBatch {
    data: Vec<u8>,
    /// (partition, offset, key range, payload range) into `data`.
    msgs: Vec<(i32, i64, Span, Span)>,
    newest_ms: Option<i64>,
}

impl RawBatch {
    fn push(&mut self, partition: i32, offset: i64, key: Option<&[u8]>, payload: Option<&[u8]>) {
        let mut put = |b: &[u8]| {
            let s = self.data.len();
            self.data.extend_from_slice(b);
            (s, self.data.len())
        };
        let k = key.map(&mut put);
        let p = payload.map(&mut put);
        self.msgs.push((partition, offset, k, p));
    }

    fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Empty it, keeping its allocations.
    fn clear(&mut self) {
        self.data.clear();
        self.msgs.clear();
        self.newest_ms = None;
    }
}

enum Work {
    Batch(RawBatch),
    /// Answer once everything sent before has been forwarded downstream.
    Sync(std::sync::mpsc::SyncSender<()>),
}

struct DecodeWorker {
    decoder: BatchDecoder,
    dedup: Dedup,
    tx: mpsc::Sender<IngestEvent>,
    metrics: Metrics,
    /// Where emptied raw batches go back to the poll thread.
    spare: std::sync::mpsc::SyncSender<RawBatch>,
}

impl DecodeWorker {
    fn run(&mut self, rx: std::sync::mpsc::Receiver<Work>) -> Result<(), Error> {
        while let Ok(w) = rx.recv() {
            let ev = match w {
                Work::Sync(ack) => {
                    let _ = ack.send(());
                    continue;
                }
                Work::Batch(mut raw) => {
                    let slice = |r: Span| r.map(|(a, b)| &raw.data[a..b]);
                    for (p, o, k, v) in &raw.msgs {
                        self.decoder.push(*p, *o, slice(*k), slice(*v))?;
                    }
                    let newest_message_ms = raw.newest_ms;
                    raw.clear();
                    let _ = self.spare.try_send(raw);
                    let decoded = self.decoder.finish(&mut self.dedup)?;
                    self.metrics.events_received.inc_by(decoded.messages as u64);
                    self.metrics.ingest_bytes.inc_by(decoded.bytes as u64);
                    self.metrics
                        .events_duplicate
                        .inc_by(decoded.duplicates as u64);
                    IngestEvent::Batch(Box::new(IngestBatch {
                        decoded,
                        newest_message_ms,
                    }))
                }
            };
            self.tx.blocking_send(ev).map_err(|_| Error::Closed)?;
        }
        Ok(())
    }
}

struct Worker {
    cfg: Config,
    consumer: Arc<Client>,
    /// One queue per decode thread.
    work: Vec<std::sync::mpsc::SyncSender<Work>>,
    /// Downstream, for control events (after a barrier).
    tx: mpsc::Sender<IngestEvent>,
    cancel: CancellationToken,
    /// The micro-batch being filled for each decode thread.
    raw: Vec<RawBatch>,
    /// Emptied batches handed back by the decode threads.
    spare: std::sync::mpsc::Receiver<RawBatch>,
    assigned: BTreeSet<i32>,
    /// Partitions read to their end, and since when.
    eof_since: BTreeMap<i32, Instant>,
    idle: BTreeSet<i32>,
    drained: bool,
}

impl Worker {
    fn flush_one(&mut self, i: usize) -> Result<(), Error> {
        if self.raw[i].is_empty() {
            return Ok(());
        }
        let next = match self.spare.try_recv() {
            Ok(b) => b,
            Err(_) => {
                let mut b = RawBatch::default();
                b.data.reserve(self.raw[i].data.capacity());
                b.msgs.reserve(self.raw[i].msgs.capacity());
                b
            }
        };
        let raw = std::mem::replace(&mut self.raw[i], next);
        self.work[i]
            .send(Work::Batch(raw))
            .map_err(|_| Error::Closed)
    }

    fn flush(&mut self) -> Result<(), Error> {
        for i in 0..self.raw.len() {
            self.flush_one(i)?;
        }
        Ok(())
    }

    fn is_empty(&self) -> bool {
        self.raw.iter().all(RawBatch::is_empty)
    }

    /// Send a control event downstream after every batch polled before it:
    /// flush, wait until every decode thread has forwarded its queue, send.
    fn control(&mut self, ev: IngestEvent) -> Result<(), Error> {
        self.flush()?;
        let mut acks = Vec::with_capacity(self.work.len());
        for w in &self.work {
            let (ack_tx, ack_rx) = std::sync::mpsc::sync_channel(1);
            w.send(Work::Sync(ack_tx)).map_err(|_| Error::Closed)?;
            acks.push(ack_rx);
        }
        for a in acks {
            a.recv().map_err(|_| Error::Closed)?;
        }
        self.tx.blocking_send(ev).map_err(|_| Error::Closed)
    }

    /// The watermark committed with each partition's offset, if any.
    fn restored_watermarks(&self, ps: &[i32]) -> Vec<(i32, Option<i64>)> {
        let mut tpl = TopicPartitionList::new();
        for p in ps {
            tpl.add_partition(&self.cfg.topic, *p);
        }
        let committed = match self
            .consumer
            .committed_offsets(tpl, Duration::from_secs(10))
        {
            Ok(c) => c,
            Err(e) => {
                warn!(error = %e, "cannot read committed offsets; replays may re-emit windows");
                return ps.iter().map(|p| (*p, None)).collect();
            }
        };
        ps.iter()
            .map(|p| {
                let wm = committed
                    .find_partition(&self.cfg.topic, *p)
                    .and_then(|e| parse_watermark_metadata(e.metadata()));
                (*p, wm)
            })
            .collect()
    }

    fn run(&mut self) -> Result<(), Error> {
        let max_wait = Duration::from_millis(self.cfg.batch_max_wait_ms);
        let idle_after = Duration::from_millis(self.cfg.idle_timeout_ms);
        let max_msgs = self.cfg.batch_max_messages;
        let mut batch_started = Instant::now();
        let mut last_idle_check = Instant::now();
        let mut since_clock = 0u32;
        // The token takes a lock to read: while messages stream in, look
        // at it with the clock, every 256 messages.
        let mut cancelled = false;
        while !cancelled {
            let timeout = if self.is_empty() {
                Duration::from_millis(100)
            } else {
                max_wait.saturating_sub(batch_started.elapsed())
            };
            let mut got_message = false;
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    got_message = true;
                    if self.is_empty() {
                        batch_started = Instant::now();
                    }
                    let p = m.partition();
                    let i = p.rem_euclid(self.raw.len() as i32) as usize;
                    let raw = &mut self.raw[i];
                    if let Some(ts) = m.timestamp().to_millis() {
                        raw.newest_ms = Some(raw.newest_ms.map_or(ts, |n| n.max(ts)));
                    }
                    raw.push(p, m.offset(), m.key(), m.payload());
                    if raw.msgs.len() >= max_msgs {
                        self.flush_one(i)?;
                    }
                    if !self.eof_since.is_empty() {
                        self.eof_since.remove(&p);
                    }
                    if !self.idle.is_empty() {
                        self.idle.remove(&p);
                    }
                    if self.drained {
                        // Resuming after a quiet spell: the other partitions
                        // probably have data too, not fetched yet. Let them
                        // hold the watermark again until they show it or sit
                        // at their end for the idle timeout.
                        self.drained = false;
                        let now = Instant::now();
                        let woken: Vec<i32> = std::mem::take(&mut self.idle).into_iter().collect();
                        for q in &woken {
                            self.eof_since.insert(*q, now);
                        }
                        self.control(IngestEvent::Active(woken))?;
                    }
                }
                Some(Err(KafkaError::PartitionEOF(p))) => {
                    self.eof_since.entry(p).or_insert_with(Instant::now);
                }
                Some(Err(e)) => {
                    // librdkafka retries transient errors itself; report and go on.
                    warn!(error = %e, "consumer error");
                }
                None => {}
            }
            // Look at the clock only every so often while messages stream in.
            since_clock += 1;
            if got_message && since_clock < 256 {
                continue;
            }
            since_clock = 0;
            cancelled = self.cancel.is_cancelled();
            if !self.is_empty() && batch_started.elapsed() >= max_wait {
                self.flush()?;
            }
            let rebalances =
                std::mem::take(&mut *self.consumer.context().events.lock().expect("lock"));
            for ev in rebalances {
                match ev {
                    RebalanceEvent::Assigned(ps) => {
                        self.assigned.extend(ps.iter().copied());
                        self.drained = false;
                        let restored = self.restored_watermarks(&ps);
                        self.control(IngestEvent::Assigned(restored))?;
                    }
                    RebalanceEvent::Revoked(ps) => {
                        for p in &ps {
                            self.assigned.remove(p);
                            self.eof_since.remove(p);
                            self.idle.remove(p);
                        }
                        self.control(IngestEvent::Revoked(ps))?;
                    }
                }
            }
            if last_idle_check.elapsed() >= Duration::from_millis(100) {
                last_idle_check = Instant::now();
                let newly: Vec<i32> = self
                    .eof_since
                    .iter()
                    .filter(|(p, t)| {
                        t.elapsed() >= idle_after
                            && !self.idle.contains(p)
                            && self.assigned.contains(p)
                    })
                    .map(|(p, _)| *p)
                    .collect();
                if !newly.is_empty() {
                    self.idle.extend(newly.iter().copied());
                    debug!(partitions = ?newly, "partitions idle");
                    self.control(IngestEvent::Idle(newly))?;
                }
                if self.cfg.flush_when_idle
                    && !self.drained
                    && !self.assigned.is_empty()
                    && self.assigned.iter().all(|p| self.idle.contains(p))
                {
                    self.drained = true;
                    self.control(IngestEvent::Drained)?;
                }
            }
        }
        self.flush().or_else(|e| match e {
            Error::Closed => Ok(()),
            e => Err(e),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_metadata_round_trips() {
        assert_eq!(parse_watermark_metadata(&watermark_metadata(-5)), Some(-5));
        assert_eq!(parse_watermark_metadata(""), None);
        assert_eq!(parse_watermark_metadata("other"), None);
    }
}

#[cfg(test)]
mod mock_tests {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::mocking::MockCluster;
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    use rdkafka::ClientConfig;
    use std::time::Duration;

    #[test]
    fn commit_metadata_round_trips_on_the_mock_cluster() {
        let mock = MockCluster::new(1).unwrap();
        mock.create_topic("t", 1, 1).unwrap();
        let c: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", mock.bootstrap_servers())
            .set("group.id", "g")
            .create()
            .unwrap();
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset("t", 0, Offset::Offset(5)).unwrap();
        tpl.find_partition("t", 0)
            .unwrap()
            .set_metadata(super::watermark_metadata(42));
        c.assign(&tpl).unwrap();
        c.commit(&tpl, CommitMode::Sync).unwrap();
        let mut q = TopicPartitionList::new();
        q.add_partition("t", 0);
        let got = c.committed_offsets(q, Duration::from_secs(10)).unwrap();
        let e = got.find_partition("t", 0).unwrap();
        assert_eq!(e.offset(), Offset::Offset(5));
        assert_eq!(super::parse_watermark_metadata(e.metadata()), Some(42));
    }
}
