//! HTTP routing and the per-client WebSocket loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{
    HeaderValue, CONNECTION, CONTENT_TYPE, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use salescast_stream_core::Level;
use tokio::net::TcpStream;
use tokio::sync::broadcast::error::RecvError;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::protocol::{ClientRequest, Filter};
use crate::Shared;

const INDEX_HTML: &str = include_str!("../assets/index.html");

type Resp = Response<Full<Bytes>>;

fn text(status: StatusCode, ctype: &'static str, body: impl Into<Bytes>) -> Resp {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(ctype));
    r
}

pub(crate) async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    cancel: CancellationToken,
) {
    let svc = service_fn(move |req| {
        let shared = shared.clone();
        let cancel = cancel.clone();
        async move { Ok::<_, Infallible>(route(req, shared, cancel)) }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .serve_connection(TokioIo::new(stream), svc)
        .with_upgrades();
    if let Err(e) = conn.await {
        debug!(%peer, error = %e, "http connection ended with an error");
    }
}

fn query_param<'a>(req: &'a Request<Incoming>, name: &str) -> Option<&'a str> {
    req.uri().query().and_then(|q| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v)
    })
}

fn route(req: Request<Incoming>, shared: Arc<Shared>, cancel: CancellationToken) -> Resp {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "GET only\n");
    }
    match req.uri().path() {
        "/" | "/index.html" => text(StatusCode::OK, "text/html; charset=utf-8", INDEX_HTML),
        "/healthz" => text(StatusCode::OK, "text/plain", "ok\n"),
        "/metrics" => text(
            StatusCode::OK,
            "text/plain; version=0.0.4",
            shared.metrics.render(),
        ),
        "/api/series" => {
            let level = query_param(&req, "level").and_then(Level::parse);
            let h = shared.history.lock().expect("history lock");
            let mut keys: Vec<(&str, &str)> = h
                .per_series
                .keys()
                .filter(|(l, _)| level.is_none_or(|want| *l == want))
                .map(|(l, k)| (l.as_str(), &**k))
                .collect();
            keys.sort_unstable();
            keys.truncate(5_000);
            let body: Vec<serde_json::Value> = keys
                .into_iter()
                .map(|(l, k)| serde_json::json!({"level": l, "key": k}))
                .collect();
            text(
                StatusCode::OK,
                "application/json",
                serde_json::to_vec(&body).unwrap_or_default(),
            )
        }
        "/ws" => upgrade(req, shared, cancel),
        _ => text(StatusCode::NOT_FOUND, "text/plain", "not found\n"),
    }
}

fn upgrade(mut req: Request<Incoming>, shared: Arc<Shared>, cancel: CancellationToken) -> Resp {
    let is_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected a WebSocket upgrade\n",
        );
    };
    if !is_upgrade {
        return text(
            StatusCode::BAD_REQUEST,
            "text/plain",
            "expected a WebSocket upgrade\n",
        );
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(up) => {
                let ws =
                    WebSocketStream::from_raw_socket(TokioIo::new(up), Role::Server, None).await;
                client_loop(ws, shared, cancel).await;
            }
            Err(e) => debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let mut r = Response::new(Full::new(Bytes::new()));
    *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = r.headers_mut();
    h.insert(UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        h.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    r
}

struct Sub {
    id: u64,
    filter: Filter,
}

async fn client_loop<S>(mut ws: WebSocketStream<S>, shared: Arc<Shared>, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let metrics = shared.metrics.clone();
    metrics.ws_clients.inc();
    let mut rx = shared.tx.subscribe();
    let mut subs: Vec<Sub> = Vec::new();
    let mut next_id = 1u64;
    let send_timeout = std::time::Duration::from_millis(shared.cfg.send_timeout_ms.max(1));
    let _ = ws
        .send(Message::text(r#"{"type":"hello","protocol":1}"#))
        .await;
    loop {
        tokio::select! {
            _ = cancel.cancelled() => {
                let _ = ws.send(Message::Close(Some(CloseFrame {
                    code: CloseCode::Away,
                    reason: "server shutting down".into(),
                }))).await;
                break;
            }
            m = rx.recv() => match m {
                Ok(u) => {
                    if subs.iter().any(|s| s.filter.matches(&u)) {
                        match tokio::time::timeout(send_timeout, ws.send(Message::Text(u.text.clone()))).await {
                            Ok(Ok(())) => metrics.ws_messages_sent.inc(),
                            Ok(Err(_)) => break,
                            Err(_) => {
                                // The socket accepted nothing for the timeout.
                                metrics.ws_disconnects_lagging.inc();
                                debug!("dropping a client whose socket is stuck");
                                break;
                            }
                        }
                    }
                }
                Err(RecvError::Lagged(n)) => {
                    // Conflate: skip to the oldest update still in the ring
                    // and tell the client how many it missed.
                    metrics.ws_messages_skipped.inc_by(n);
                    let note = format!(r#"{{"type":"lagged","skipped":{n}}}"#);
                    if ws.send(Message::text(note)).await.is_err() {
                        break;
                    }
                }
                Err(RecvError::Closed) => break,
            },
            incoming = ws.next() => match incoming {
                Some(Ok(Message::Text(t))) => {
                    let reply = handle_request(t.as_str(), &mut subs, &mut next_id, &shared);
                    let mut failed = false;
                    for r in reply {
                        if ws.send(r).await.is_err() {
                            failed = true;
                            break;
                        }
                    }
                    if failed {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    metrics.ws_clients.dec();
}

fn handle_request(
    text: &str,
    subs: &mut Vec<Sub>,
    next_id: &mut u64,
    shared: &Shared,
) -> Vec<Message> {
    let err = |m: String| {
        vec![Message::text(
            serde_json::json!({"type": "error", "message": m}).to_string(),
        )]
    };
    let req: ClientRequest = match serde_json::from_str(text) {
        Ok(r) => r,
        Err(e) => return err(format!("bad request: {e}")),
    };
    match req {
        ClientRequest::Subscribe(filter) => {
            if let Err(e) = filter.validate() {
                return err(e);
            }
            let id = *next_id;
            *next_id += 1;
            let mut out = vec![Message::text(
                serde_json::json!({"type": "subscribed", "id": id, "filter": filter}).to_string(),
            )];
            // Backfill the chart of an exactly named series.
            if let Some((level, key)) = filter.exact() {
                let h = shared.history.lock().expect("history lock");
                if let Some(q) = h.per_series.get(&(level, Arc::from(key))) {
                    out.extend(q.iter().map(|u| Message::Text(u.text.clone())));
                }
            }
            subs.push(Sub { id, filter });
            out
        }
        ClientRequest::Unsubscribe { id } => {
            let before = subs.len();
            subs.retain(|s| s.id != id);
            if subs.len() == before {
                return err(format!("no subscription {id}"));
            }
            vec![Message::text(
                serde_json::json!({"type": "unsubscribed", "id": id}).to_string(),
            )]
        }
    }
}
