//! A web service for the WebProxy tests: `test-backend PORT [START_DELAY_MS]`.
//!
//! Routes: `/host` (the request's Host and X-Forwarded-* as JSON), `/sse` (three events,
//! 300 ms apart), `/slow?ms=N`, `/big?bytes=N`, `/forever` (a chunk every 50 ms),
//! `POST /echo` (the body back, streamed), `/ws` (WebSocket echo that first sends the
//! Host it saw). A gate lets tests wait on events instead of sleeping: `/hold` answers
//! only once `/release` has been called for it (at most 60 s), `/held` counts the holds
//! waiting, and `/sse?gated=1` sends its first event at once and each later one only
//! after a `/release`.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::Query;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::stream;

fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn host(headers: HeaderMap) -> Json<std::collections::BTreeMap<String, Option<String>>> {
    let mut m = std::collections::BTreeMap::new();
    m.insert("backend-port".to_string(), std::env::args().nth(1));
    for name in [
        "host",
        "x-forwarded-for",
        "x-forwarded-proto",
        "x-forwarded-host",
        "connection",
        "x-agentbox-token",
    ] {
        m.insert(name.to_string(), header(&headers, name));
    }
    Json(m)
}

fn sse() -> Response {
    let events = stream::unfold(0u32, |i| async move {
        if i == 3 {
            return None;
        }
        if i > 0 {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {i}\n\n"))),
            i + 1,
        ))
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

/// Permits handed out by `/release`, taken by `/hold` and gated SSE events.
static GATE: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(0);
/// Requests waiting at the gate now.
static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

/// Waits for one `/release` (at most 60 s); whether it came.
async fn pass_gate() -> bool {
    use std::sync::atomic::Ordering;
    HELD.fetch_add(1, Ordering::SeqCst);
    let passed = tokio::time::timeout(Duration::from_secs(60), GATE.acquire()).await;
    HELD.fetch_sub(1, Ordering::SeqCst);
    match passed {
        Ok(Ok(permit)) => {
            permit.forget();
            true
        }
        _ => false,
    }
}

async fn hold() -> &'static str {
    if pass_gate().await {
        "released\n"
    } else {
        "never released\n"
    }
}

async fn release() -> &'static str {
    GATE.add_permits(1);
    "ok\n"
}

async fn held() -> String {
    format!("{}\n", HELD.load(std::sync::atomic::Ordering::SeqCst))
}

#[derive(serde::Deserialize)]
struct SseParams {
    gated: Option<u8>,
}

async fn gated_sse(Query(p): Query<SseParams>) -> Response {
    if p.gated.is_none() {
        return sse();
    }
    let events = stream::unfold(0u32, |i| async move {
        if i == 3 || (i > 0 && !pass_gate().await) {
            return None;
        }
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("data: {i}\n\n"))),
            i + 1,
        ))
    });
    (
        [
            ("content-type", "text/event-stream"),
            ("cache-control", "no-cache"),
        ],
        Body::from_stream(events),
    )
        .into_response()
}

async fn forever() -> Response {
    let chunks = stream::unfold(0u64, |i| async move {
        tokio::time::sleep(Duration::from_millis(50)).await;
        Some((
            Ok::<_, Infallible>(Bytes::from(format!("chunk {i}\n"))),
            i + 1,
        ))
    });
    Body::from_stream(chunks).into_response()
}

#[derive(serde::Deserialize)]
struct Params {
    ms: Option<u64>,
    bytes: Option<usize>,
}

async fn slow(Query(p): Query<Params>) -> &'static str {
    tokio::time::sleep(Duration::from_millis(p.ms.unwrap_or(1000))).await;
    "slow done\n"
}

async fn big(Query(p): Query<Params>) -> Vec<u8> {
    vec![b'x'; p.bytes.unwrap_or(1024)]
}

async fn echo(body: Body) -> Body {
    body
}

async fn ws(upgrade: WebSocketUpgrade, headers: HeaderMap) -> Response {
    let host = header(&headers, "host").unwrap_or_default();
    upgrade.on_upgrade(move |socket| echo_ws(socket, host))
}

async fn echo_ws(mut socket: WebSocket, host: String) {
    if socket
        .send(Message::Text(format!("host:{host}").into()))
        .await
        .is_err()
    {
        return;
    }
    while let Some(Ok(msg)) = socket.recv().await {
        if matches!(msg, Message::Close(_)) || socket.send(msg).await.is_err() {
            break;
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let port: u16 = args
        .next()
        .and_then(|p| p.parse().ok())
        .expect("usage: test-backend PORT [START_DELAY_MS]");
    let delay: u64 = args.next().and_then(|d| d.parse().ok()).unwrap_or(0);
    tokio::time::sleep(Duration::from_millis(delay)).await;
    let app = Router::new()
        .route("/host", get(host))
        .route("/sse", get(gated_sse))
        .route("/hold", get(hold))
        .route("/release", get(release))
        .route("/held", get(held))
        .route("/slow", get(slow))
        .route("/big", get(big))
        .route("/forever", get(forever))
        .route("/echo", post(echo))
        .route("/ws", get(ws))
        .fallback(|| async { "backend\n" });
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .expect("bind");
    println!("listening on {port}");
    axum::serve(listener, app).await.expect("serve");
}
