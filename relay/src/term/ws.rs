//! A term over one WebSocket: output as binary messages from the viewer's offset, input
//! as offset-numbered binary messages, resize and end as JSON text messages.

use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::share::Scope;
use agentbox_protocol::term::{decode_input, TermControl, TermEvent};
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Extension, Path, Query, State};
use axum::response::Response;
use futures_util::{SinkExt, StreamExt};

use super::output::{next_output, offset_error, OffsetQuery, Step};
use super::registry::Terms;
use super::viewer::{InputError, ViewerGuard};
use crate::http::ApiError;
use crate::share::Caller;

/// A ping this often keeps proxies from cutting a quiet connection.
const PING_EVERY: Duration = Duration::from_secs(15);

/// `GET /v1/terms/{id}/ws?offset=N`.
pub async fn upgrade(
    State(terms): State<Arc<Terms>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Query(q): Query<OffsetQuery>,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    let term = terms.get_for(&id, &caller)?;
    let may_type = caller.may(Scope::AttachWrite);
    term.log.check(q.offset).map_err(|r| offset_error(&r))?;
    let stop = terms.shutdown().clone();
    Ok(ws.on_upgrade(move |socket| async move {
        let guard = term.connect();
        tokio::select! {
            () = stop.cancelled() => {}
            () = serve(socket, guard, q.offset, may_type) => {}
        }
    }))
}

fn text(event: &TermEvent) -> Message {
    Message::Text(serde_json::to_string(event).unwrap_or_default().into())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}

async fn serve(socket: WebSocket, guard: ViewerGuard, mut offset: u64, may_type: bool) {
    let term = guard.term().clone();
    let (mut tx, mut rx) = socket.split();
    let hello = TermEvent::Hello {
        output_offset: offset,
        input_offset: term.input_taken(),
    };
    if tx.send(text(&hello)).await.is_err() {
        return;
    }
    let mut output = term.log.subscribe();
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.reset();
    loop {
        tokio::select! {
            step = next_output(&guard, &mut output, offset, None) => match step {
                Step::Bytes(b) => {
                    offset += b.len() as u64;
                    if tx.send(Message::Binary(b.into())).await.is_err() {
                        return;
                    }
                }
                Step::Ended(reason) => {
                    let _ = tx.send(text(&TermEvent::Ended { reason, produced: offset })).await;
                    let _ = tx.send(close(1000, "term ended")).await;
                    return;
                }
                Step::Stop => {
                    let _ = tx.send(close(4000, "another connection took this term over")).await;
                    return;
                }
            },
            message = rx.next() => match message {
                Some(Ok(Message::Binary(bytes))) => {
                    let Some((at, keys)) = decode_input(&bytes) else {
                        let _ = tx.send(close(1002, "input message without its offset")).await;
                        return;
                    };
                    if !may_type {
                        let _ = tx.send(close(4003, "this share does not allow typing (it lacks scope `attach:write`)")).await;
                        return;
                    }
                    // An ended term's end reaches the viewer through the output side.
                    if let Err(InputError::Gap { expected }) = term.input(at, keys) {
                        let reason = format!("input must continue at offset {expected}");
                        let _ = tx.send(close(4001, &reason)).await;
                        return;
                    }
                }
                Some(Ok(Message::Text(t))) => match serde_json::from_str::<TermControl>(&t) {
                    Ok(TermControl::Resize(size)) if size.is_valid() => {
                        let _ = term.resize(size);
                    }
                    _ => {
                        let _ = tx.send(close(1003, "unknown control message")).await;
                        return;
                    }
                },
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(Message::Close(_)) | Err(_)) | None => return,
            },
            _ = ping.tick() => {
                if tx.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    }
}
