//! The TCP tunnel (`/v1/tunnel*`, contract in [`agentbox_protocol::tunnel`]): one
//! connection to a port on the box's loopback per `POST /v1/tunnel`, its bytes streamed
//! back as exec frames ([`pump`]), the caller's bytes taken by numbered input posts. Only
//! loopback targets: the caller names a port, never an address.
//!
//! The answer's stream owns the connection: when the caller goes away (a failed send), the
//! connection is closed; when the target closes, the last frame is `Exit`.

mod pump;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::exec::MAX_STDIN_POST;
use agentbox_protocol::files::TransferId;
use agentbox_protocol::tunnel::TunnelOpen;
use agentbox_protocol::ErrorCode;
use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::http::{internal, ApiError};
use crate::numbered_input::{self, Piece};

/// How long connecting to the target may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(5);

/// The open tunnels' write sides, by id.
#[derive(Default)]
pub struct Tunnels {
    input: Mutex<HashMap<String, Arc<tokio::sync::Mutex<InputSlot>>>>,
}

/// The target's write side (gone once closed) and how many bytes it took.
struct InputSlot {
    write: Option<OwnedWriteHalf>,
    taken: u64,
}

impl Tunnels {
    fn slots(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<String, Arc<tokio::sync::Mutex<InputSlot>>>> {
        self.input
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The `/v1/tunnel` routes (the token check is the caller's).
pub fn routes() -> Router {
    Router::new()
        .route("/v1/tunnel", post(open))
        .route("/v1/tunnel/{id}/input", post(input))
        .with_state(Arc::new(Tunnels::default()))
}

fn error(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    ApiError::new(status, code, message).into_response()
}

/// Connects to `port` on the loopback: IPv4 first, then IPv6 (a service may listen on
/// one only).
async fn connect(port: u16) -> Result<TcpStream, String> {
    let mut why = Vec::new();
    for ip in [Ipv4Addr::LOCALHOST.into(), Ipv6Addr::LOCALHOST.into()] {
        let address = SocketAddr::new(ip, port);
        match tokio::time::timeout(CONNECT_LIMIT, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => return Ok(stream),
            Ok(Err(e)) => why.push(format!("{address}: {e}")),
            Err(_) => why.push(format!(
                "{address}: no answer within {} s",
                CONNECT_LIMIT.as_secs()
            )),
        }
    }
    Err(why.join("; "))
}

/// `POST /v1/tunnel`.
async fn open(State(tunnels): State<Arc<Tunnels>>, Json(request): Json<TunnelOpen>) -> Response {
    if let Err(e) = request.validate() {
        return error(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, e);
    }
    let port = request.port;
    let stream = match connect(port).await {
        Ok(s) => s,
        Err(why) => {
            return error(
                StatusCode::BAD_GATEWAY,
                ErrorCode::NotFound,
                format!("nothing accepts connections on port {port} in the box ({why})"),
            )
        }
    };
    let _ = stream.set_nodelay(true);
    let id = match TransferId::random() {
        Ok(id) => id,
        Err(e) => return internal(e).into_response(),
    };
    let (read, write) = stream.into_split();
    let slot = Arc::new(tokio::sync::Mutex::new(InputSlot {
        write: Some(write),
        taken: 0,
    }));
    let key = id.as_str().to_string();
    tunnels.slots().insert(key.clone(), slot);
    tracing::info!(id = %key, port, "tunnel opened");
    let (tx, rx) = mpsc::channel::<Bytes>(8);
    tokio::spawn(async move {
        pump::pump(read, id, tx).await;
        tunnels.slots().remove(&key);
        tracing::info!(id = %key, port, "tunnel closed");
    });
    let body = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|b| (Ok::<_, Infallible>(b), rx))
    });
    (
        [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
        Body::from_stream(body),
    )
        .into_response()
}

/// `POST /v1/tunnel/{id}/input`: the next bytes for the target.
async fn input(
    State(tunnels): State<Arc<Tunnels>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if body.len() > MAX_STDIN_POST {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::TooLarge,
            format!("at most {MAX_STDIN_POST} bytes per input request"),
        );
    }
    let Some(slot) = tunnels.slots().get(&id).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such tunnel (it closed, or the relay restarted)",
        );
    };
    let mut slot = slot.lock().await;
    let Piece { fresh, eof } =
        match numbered_input::piece(&headers, slot.taken, &body, "the tunnel's input") {
            Ok(piece) => piece,
            Err(refused) => return *refused,
        };
    if let Some(write) = slot.write.as_mut() {
        // A target that stopped reading takes nothing more.
        if write.write_all(fresh).await.is_err() {
            slot.write = None;
        }
    }
    slot.taken += fresh.len() as u64;
    if eof {
        if let Some(mut write) = slot.write.take() {
            let _ = write.shutdown().await;
        }
    }
    numbered_input::taken(slot.taken)
}
