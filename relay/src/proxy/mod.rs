//! The WebProxy on `AGENTBOX_WEB_PORT`: an HTTP reverse proxy to the exposed services.
//!
//! - Routing: the first label of the Host names a service (`api.<anything>` → `api`);
//!   anything else goes to the default exposed service.
//! - The Host header reaches the service unchanged, for plain and upgrade requests alike;
//!   `X-Forwarded-For`, `-Proto` and `-Host` are added.
//! - Bodies stream both ways (server-sent events arrive as sent); `Upgrade` requests
//!   (WebSocket and others) are spliced after the service's `101`.
//! - While the service is not ready, a request is held (up to `AGENTBOX_PROXY_HOLD_MS`,
//!   default 30 s) and then forwarded; past that it gets a 503 page naming the service, its
//!   state and last log lines. A service that is down gets a 502 the same way.
//! - HTTP/1.1 and HTTP/2 (prior knowledge) from clients; oversized heads get 431,
//!   malformed ones 400, and a client that does not finish its head in 10 s is cut off.
//! - Plain HTTP/1.1 requests to a ready service take the fast path (`fast.rs`); every other
//!   connection is handed to the general path (`general.rs`), served with hyper from the
//!   first request that needs it.
//!
//! Files: `shared.rs` (settings, routing a Host to a service, the hop-by-hop list),
//! `fast.rs` (the fast path) and `http1.rs` (its head parsing and body framing),
//! `general.rs` (the hyper path), [`pages`] (the proxy's own answers). [`serve`], here,
//! runs both paths on one listener.

mod fast;
mod general;
mod http1;
pub mod pages;
mod shared;

use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::ctl_link::Units;
use shared::Shared;
pub use shared::{Body, ProxyConfig, TOKEN_HEADER};

/// Serves the proxy on `listener` until `stop` is cancelled, then lets open requests end.
pub async fn serve(
    listener: tokio::net::TcpListener,
    config: ProxyConfig,
    units: watch::Receiver<Arc<Units>>,
    stop: CancellationToken,
) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    connector.set_connect_timeout(Some(Duration::from_secs(5)));
    let client = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(256)
        .build(connector);
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_timeout)
        .max_buf_size(64 * 1024)
        .writev(false)
        .keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let shared = Arc::new(Shared {
        config,
        units,
        client,
    });
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stop.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        let stop = stop.clone();
        tokio::spawn(async move {
            // Shutdown waits for this connection until `watcher` is dropped.
            if let Some(handoff) = fast::serve(stream, peer, &shared, &stop).await {
                general::serve_general(handoff, peer, shared, &builder, watcher).await;
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {},
        () = tokio::time::sleep(Duration::from_secs(10)) => tracing::info!("open proxy connections cut after 10 s"),
    }
}
