//! # salescast-ws-gateway
//!
//! Pushes live windows, forecasts and alerts to browsers over WebSocket
//! (tokio-tungstenite on a hyper HTTP/1 server), and serves the live chart
//! page, `/metrics` and a small JSON API on the same port.
//!
//! The pipeline hands updates to a [`Publisher`], which never blocks: updates
//! go into a bounded broadcast ring. A client that falls behind the ring skips
//! what it missed (it is told how many with a `lagged` message: its stream is
//! conflated), and one whose socket stops accepting data for
//! `send-timeout-ms` is dropped, so no screen can slow the pipeline. The
//! protocol is documented in `docs/websocket.md`.
#![warn(missing_docs)]

mod http;
mod protocol;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use rustc_hash::FxHashMap;
use salescast_alerting::{Alert, Severity};
use salescast_inference::Forecast;
use salescast_metrics::Metrics;
use salescast_stream_core::Level;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

pub use protocol::{ClientRequest, Filter};

/// Configuration of the gateway (`[gateway]` in the config file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`host:port`; port 0 picks a free one).
    pub listen: String,
    /// Updates buffered for clients; a client further behind skips ahead.
    pub channel_capacity: usize,
    /// A client whose socket accepts nothing for this long (ms) is dropped.
    pub send_timeout_ms: u64,
    /// Recent windows kept per series for a new subscriber's chart.
    pub history_windows: usize,
    /// Most series with kept history (memory bound).
    pub history_series: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: "127.0.0.1:8080".into(),
            channel_capacity: 16_384,
            send_timeout_ms: 10_000,
            history_windows: 120,
            history_series: 20_000,
        }
    }
}

/// Errors of the gateway.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Cannot bind the listen address. Not retryable without a config change
    /// (or the port being freed).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Accepting connections failed. Retryable.
    #[error("accept failed: {0}")]
    Accept(std::io::Error),
}

/// One update as sent to clients, serialized once for all of them.
#[derive(Debug)]
pub(crate) struct Update {
    pub level: Level,
    pub key: Arc<str>,
    /// `Some` for alerts.
    pub severity: Option<Severity>,
    pub text: Utf8Bytes,
}

type SeriesId = (Level, Arc<str>);

#[derive(Debug, Default)]
pub(crate) struct History {
    per_series: FxHashMap<SeriesId, VecDeque<Arc<Update>>>,
}

/// Shared state of the gateway.
#[derive(Debug)]
pub(crate) struct Shared {
    pub cfg: Config,
    pub tx: broadcast::Sender<Arc<Update>>,
    pub history: Mutex<History>,
    pub metrics: Metrics,
}

/// A cheap handle the pipeline uses to publish updates. Never blocks.
#[derive(Debug, Clone)]
pub struct Publisher {
    shared: Arc<Shared>,
}

impl Publisher {
    /// Publish a closed window with its forecast. `forecast_json` is the
    /// forecast's JSON (as written to Kafka); `closed_at_ms` is the wall-clock
    /// time the window closed, for latency measurement.
    pub fn window(&self, f: &Forecast, forecast_json: &str, closed_at_ms: i64) {
        let text = format!(
            "{{\"type\":\"window\",\"closed_at_ms\":{closed_at_ms},\"data\":{forecast_json}}}"
        );
        let u = Arc::new(Update {
            level: f.level,
            key: f.key.clone(),
            severity: None,
            text: text.into(),
        });
        {
            let mut h = self.shared.history.lock().expect("history lock");
            let cap = self.shared.cfg.history_series;
            let n = h.per_series.len();
            let id = (f.level, f.key.clone());
            if let Some(q) = h.per_series.get_mut(&id) {
                q.push_back(u.clone());
                if q.len() > self.shared.cfg.history_windows {
                    q.pop_front();
                }
            } else if n < cap && self.shared.cfg.history_windows > 0 {
                h.per_series.insert(id, VecDeque::from([u.clone()]));
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.shared.tx.send(u);
    }

    /// Publish an alert (`alert_json` as written to Kafka).
    pub fn alert(&self, a: &Alert, alert_json: &str) {
        let text = format!("{{\"type\":\"alert\",\"data\":{alert_json}}}");
        let _ = self.shared.tx.send(Arc::new(Update {
            level: a.level,
            key: a.key.clone(),
            severity: Some(a.severity),
            text: text.into(),
        }));
    }
}

/// A bound gateway, ready to run.
#[derive(Debug)]
pub struct Gateway {
    listener: TcpListener,
    shared: Arc<Shared>,
}

impl Gateway {
    /// Bind the listen address.
    pub async fn bind(cfg: &Config, metrics: Metrics) -> Result<Gateway, Error> {
        let listener = TcpListener::bind(&cfg.listen)
            .await
            .map_err(|source| Error::Bind {
                addr: cfg.listen.clone(),
                source,
            })?;
        let (tx, _) = broadcast::channel(cfg.channel_capacity.max(16));
        Ok(Gateway {
            listener,
            shared: Arc::new(Shared {
                cfg: cfg.clone(),
                tx,
                history: Mutex::new(History::default()),
                metrics,
            }),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// A publishing handle.
    pub fn publisher(&self) -> Publisher {
        Publisher {
            shared: self.shared.clone(),
        }
    }

    /// Serve until `cancel` fires.
    pub async fn run(self, cancel: CancellationToken) -> Result<(), Error> {
        info!(addr = %self.local_addr(), "gateway listening");
        loop {
            let (stream, peer) = tokio::select! {
                _ = cancel.cancelled() => return Ok(()),
                r = self.listener.accept() => match r {
                    Ok(x) => x,
                    Err(e) if is_transient(&e) => {
                        debug!(error = %e, "transient accept error");
                        continue;
                    }
                    Err(e) => return Err(Error::Accept(e)),
                },
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(http::serve_connection(
                stream,
                peer,
                self.shared.clone(),
                cancel.child_token(),
            ));
        }
    }
}

fn is_transient(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | Interrupted | WouldBlock
    ) || e.raw_os_error() == Some(24) // EMFILE: back off, don't die
}
