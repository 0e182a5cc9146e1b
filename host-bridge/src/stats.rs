//! A box's stats through its relay (`GET /v1/stats`, contract in
//! [`agentbox_protocol::stats`]): one sample of its CPU, memory, disk and heaviest
//! processes, measured inside the box, on every provider (Daytona through its preview
//! URL). The answer is the box's: read at most [`STATS_CAP`] bytes and checked
//! ([`BoxStats::from_json`]) before anyone sees it. `agentbox top` shows it; the
//! dashboard can call [`fetch`] too.

use std::time::Duration;

use agentbox_protocol::stats::{BoxStats, MAX_PROCESSES, STATS_CAP, STATS_PATH};
use anyhow::{anyhow, bail};

use crate::relay_exec::{refusal, send_renewing};
use crate::transfer::capped::read_capped;
use crate::transfer::client::Relay;

/// How long one sample may take (the relay's first one reads twice, half a second
/// apart).
pub const FETCH_LIMIT: Duration = Duration::from_secs(15);

/// One sample of the box behind `relay`, listing at most `processes` processes (capped at
/// [`MAX_PROCESSES`]). Its processes' users and commands, and an error's words, are
/// already escaped ([`crate::text::shown`]): print them as they are.
pub async fn fetch(relay: &Relay, processes: usize) -> anyhow::Result<BoxStats> {
    tokio::time::timeout(FETCH_LIMIT, fetch_unbounded(relay, processes))
        .await
        .unwrap_or_else(|_| {
            Err(anyhow!(
                "the box's relay did not answer for its stats within {} s",
                FETCH_LIMIT.as_secs()
            ))
        })
}

async fn fetch_unbounded(relay: &Relay, processes: usize) -> anyhow::Result<BoxStats> {
    let path = format!("{STATS_PATH}?processes={}", processes.min(MAX_PROCESSES));
    let response = send_renewing(relay, || relay.request(reqwest::Method::GET, &path)).await?;
    if !response.status().is_success() {
        let (status, message, relays) = refusal(response).await;
        if status == reqwest::StatusCode::NOT_FOUND && !relays {
            bail!("the box's relay has no stats API ({STATS_PATH}): it is older than this agentbox; run `agentbox prepare` and make the box again");
        }
        bail!(
            "the box's relay refused the stats request: {}",
            crate::transfer::refusal::refusal(status, &message)
        );
    }
    let body = read_capped(response, STATS_CAP)
        .await
        .map_err(|e| anyhow!("the box's stats answer was refused: {e}"))?;
    let mut stats = BoxStats::from_json(&body).map_err(|e| {
        anyhow!(
            "the box's stats answer was refused: {}",
            crate::text::shown(&e.to_string())
        )
    })?;
    // The box's words, made safe once here for every reader (a table, JSON on a
    // terminal): control and invisible layout characters written visibly.
    for p in &mut stats.processes {
        p.user = crate::text::shown(&p.user);
        p.command = crate::text::shown(&p.command);
    }
    Ok(stats)
}
