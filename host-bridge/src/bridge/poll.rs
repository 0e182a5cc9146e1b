//! One long-poll loop per ready box: leases what can run now, hands each request to
//! [`super::request`] exactly once, backs off on errors, renews a Daytona preview token
//! (its proxy answers a stale one with a redirect to its login page), keeps a Daytona box
//! active while an agent works ([`super::activity`]), and stops when the box is gone or
//! has moved.

use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::bridge::{LeasedRequest, PollResponse};

use super::journal::AuditEntry;
use super::request::handle_once;
use super::shared::{with_journal, Shared, Slot};
use crate::state::BoxRecord;
use crate::transfer::capped::{read_json_capped, CappedError, POLL_CAP};
use crate::transfer::client::Relay;

/// Requests run at once for one box.
const PER_BOX: usize = 16;
/// How long a poll is held by the relay.
const POLL_WAIT_MS: u64 = 20_000;
/// The first wait after a box answered a poll larger than [`POLL_CAP`]; doubled on each
/// further one up to [`OVERSIZE_MAX_BACKOFF`]. Such a box is misbehaving (or hostile):
/// it is not polled again in a tight loop.
const OVERSIZE_BACKOFF: Duration = Duration::from_secs(10);
/// The longest wait between polls of a box that keeps answering too much.
const OVERSIZE_MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Polls one box until it is gone from the state.
pub(super) async fn poll_box(shared: Shared, record: BoxRecord) {
    let Some(url) = record.bridge_url.clone() else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(PER_BOX));
    let mut backoff = Duration::from_millis(200);
    let mut oversize_backoff = OVERSIZE_BACKOFF;
    let mut addresses = shared.addresses.subscribe();
    let moved = |map: &std::collections::HashMap<String, String>| {
        map.get(&record.name).map(String::as_str) != Some(url.as_str())
    };
    // Keeps a Daytona box active while an agent works (stops with this poller).
    let mut _keeper = None;
    if record.provider == "daytona" {
        // Daytona's preview proxy wants its own token besides the bridge token.
        loop {
            if moved(&addresses.borrow_and_update()) {
                return forget(&shared, &record);
            }
            let home = shared.home.root().to_path_buf();
            match crate::provider::daytona::bridge_link(&home, &record.name, &record.bridge_token)
                .await
            {
                Ok((relay, api, sandbox_id)) if relay.url("") == url => {
                    if let Ok(mut map) = shared.relays.lock() {
                        map.insert(record.name.clone(), relay);
                    }
                    _keeper = Some(super::activity::keep_active(
                        api,
                        sandbox_id,
                        shared.home.agent_states(&record.name),
                        record.name.clone(),
                        super::activity::keepalive_period(),
                    ));
                    break;
                }
                Ok(_) => return forget(&shared, &record), // its address changed
                Err(e) => {
                    tracing::info!(box_name = %record.name, error = %e, "no preview link yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    if let Ok(mut map) = shared.relays.lock() {
        map.entry(record.name.clone())
            .or_insert_with(|| Relay::new(&url, &record.bridge_token));
    }
    let relay = shared.relay(&record, &url);
    // How long the relay holds a poll; halved whenever an edge in between cuts held
    // requests (Daytona's answers 504 after about 25 s of silence).
    let mut wait_ms = POLL_WAIT_MS;
    loop {
        if moved(&addresses.borrow_and_update()) {
            break; // destroyed or restarted elsewhere: a new poller takes over
        }
        // Lease only what can run now: a request leased while every slot is busy would
        // wait on the host with its lease ticking, and hold up the next poll.
        let Ok(first) = slots.clone().acquire_owned().await else {
            break;
        };
        let max = 1 + slots.available_permits();
        let poll = relay
            .request(
                reqwest::Method::GET,
                &format!("/v1/bridge/poll?wait_ms={wait_ms}&max={max}"),
            )
            .timeout(Duration::from_millis(POLL_WAIT_MS + 10_000))
            // Daytona's proxy otherwise counts a held poll as activity, and the box would
            // never reach its auto-stop (a header of Daytona's proxy, not of its docs).
            .header("x-daytona-skip-last-activity-update", "true")
            .send();
        let response = tokio::select! {
            r = poll => r,
            () = async {
                while addresses.changed().await.is_ok() {
                    if moved(&addresses.borrow_and_update()) {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            } => break,
        };
        let response = match response {
            Ok(r) if stale_preview(&relay, &r) => {
                // The sandbox was started again (Daytona mints a new preview token on each
                // start) and its proxy answers with a redirect to its login page: mint a
                // new token and poll again, soon but not in a tight loop.
                tracing::info!(box_name = %record.name, status = %r.status(), "the preview proxy refused its token; minting a new one");
                if let Err(why) = relay.renew_preview().await {
                    tracing::info!(box_name = %record.name, error = %why, "cannot renew the preview token");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            Ok(r) if r.status().is_redirection() => {
                let location = r
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .map(|l| crate::text::clean_text(l, 200))
                    .unwrap_or_default();
                tracing::info!(box_name = %record.name, status = %r.status(), %location, "the relay's address redirects; not following");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
                continue;
            }
            other => other.and_then(reqwest::Response::error_for_status),
        };
        let batch = match response {
            Ok(r) => match read_json_capped::<PollResponse>(r, POLL_CAP).await {
                Ok(batch) => Ok(batch),
                Err(CappedError::Network(e)) => Err(e),
                Err(e) => {
                    refused_poll(&shared, &record, &e, oversize_backoff).await;
                    tokio::time::sleep(oversize_backoff).await;
                    oversize_backoff = (oversize_backoff * 2).min(OVERSIZE_MAX_BACKOFF);
                    continue;
                }
            },
            Err(e) if e.status() == Some(reqwest::StatusCode::GATEWAY_TIMEOUT) => {
                wait_ms = (wait_ms / 2).max(1000);
                tracing::info!(box_name = %record.name, wait_ms, "the edge cut a held poll; holding shorter");
                continue;
            }
            Err(e) => Err(e),
        };
        match batch {
            Ok(batch) => {
                backoff = Duration::from_millis(200);
                oversize_backoff = OVERSIZE_BACKOFF;
                let mut first = Some(first);
                for leased in batch.requests {
                    let permit = match first.take() {
                        Some(p) => p,
                        None => match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    let (shared, record, url) = (shared.clone(), record.clone(), url.clone());
                    let slot = Slot {
                        permit: Some(permit),
                        slots: slots.clone(),
                    };
                    tokio::spawn(async move {
                        handle(&shared, &record, &url, leased, slot).await;
                    });
                }
            }
            Err(e) => {
                tracing::debug!(box_name = %record.name, error = %e, "poll failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    forget(&shared, &record);
}

/// Whether a poll's answer is the preview proxy refusing its token rather than the relay's:
/// a redirect to a login page or an HTML page (Daytona's answer), or a `401` (a proxy that
/// says so plainly; the relay's own `401` would also mean a token to fix, and renewing the
/// preview token costs one API call).
fn stale_preview(relay: &Relay, response: &reqwest::Response) -> bool {
    relay.has_preview()
        && (relay.preview_refused(response.status(), response.headers())
            || response.status() == reqwest::StatusCode::UNAUTHORIZED)
}

/// A poll answer the host will not read (past [`POLL_CAP`], or not a poll): logged and
/// audited under the box's name, with how long the host now waits before polling it again.
async fn refused_poll(shared: &Shared, record: &BoxRecord, why: &CappedError, wait: Duration) {
    let detail = format!(
        "box {}: poll answer refused ({why}; the cap is {POLL_CAP} bytes); polling again in {} s",
        record.name,
        wait.as_secs()
    );
    tracing::warn!(box_name = %record.name, cap = POLL_CAP, wait_s = wait.as_secs(), error = %why, "refused the box's poll answer");
    let entry = AuditEntry {
        ts_ms: agentbox_protocol::now_millis(),
        box_name: record.name.clone(),
        request_id: String::new(),
        kind: "poll".to_string(),
        decision: "refused".to_string(),
        detail,
        exit_code: 0,
    };
    if let Err(e) = with_journal(shared, move |j| Ok(j.audit(&entry)?)).await {
        tracing::warn!(box_name = %record.name, error = %e, "cannot audit the refused poll");
    }
}

/// The poller of `record` is gone: the next scan may start another.
fn forget(shared: &Shared, record: &BoxRecord) {
    if let Ok(mut p) = shared.polled.lock() {
        p.remove(&record.name);
    }
    if let Ok(mut r) = shared.relays.lock() {
        r.remove(&record.name);
    }
}

/// Runs one request exactly once and answers it (again, from the record, if re-delivered).
async fn handle(shared: &Shared, record: &BoxRecord, url: &str, leased: LeasedRequest, slot: Slot) {
    let key = format!("{}/{}", record.name, leased.id);
    if !shared
        .inflight
        .lock()
        .is_ok_and(|mut f| f.insert(key.clone()))
    {
        return; // already being carried out: that run answers
    }
    handle_once(shared, record, url, leased, slot).await;
    if let Ok(mut f) = shared.inflight.lock() {
        f.remove(&key);
    }
}
