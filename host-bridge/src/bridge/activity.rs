//! Keeps a Daytona box from its auto-stop while one of its agents works.
//!
//! Daytona stops a sandbox after `autoStopInterval` minutes without activity, and counts
//! as activity only what goes through its preview proxy (or is reported through
//! `POST /sandbox/{id}/last-activity`). The bridge's long-poll says not to be counted
//! (`X-Daytona-Skip-Last-Activity-Update`), so an idle box stops billing. Transfers and
//! attach go through the proxy without that header: the proxy counts them for as long as
//! they are open. An agent that works on its own sends nothing through the proxy, so
//! while any agent of the box is `working` (its latest report, kept by the bridge in
//! `AGENTBOX_HOME/agents/<box>.json`) the keeper reports activity every
//! [`keepalive_period`]; when none is, it reports nothing.

use std::path::PathBuf;
use std::time::Duration;

use agentbox_protocol::agent::AgentState;

use crate::daytona::Daytona;

/// How often activity is reported while an agent works: 50 s (as Daytona's own proxy
/// renews it for an open request; the shortest auto-stop is a minute), or
/// `AGENTBOX_DAYTONA_KEEPALIVE_MS` (for tests against a fake whose minutes are short).
pub fn keepalive_period() -> Duration {
    std::env::var("AGENTBOX_DAYTONA_KEEPALIVE_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|ms| *ms > 0)
        .map_or(Duration::from_secs(50), Duration::from_millis)
}

/// Whether any agent on record in `states` (a box's agents file) is working.
pub fn any_working(states: &std::path::Path) -> bool {
    crate::agents::load(states)
        .values()
        .any(|a| a.state == AgentState::Working)
}

/// A running keeper; it stops when dropped.
pub struct Keeper(tokio::task::JoinHandle<()>);

impl Drop for Keeper {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Starts keeping sandbox `sandbox_id` (box `box_name`) active while an agent in `states`
/// works: a check every `period`, and a report to Daytona when one does.
pub fn keep_active(
    client: Daytona,
    sandbox_id: String,
    states: PathBuf,
    box_name: String,
    period: Duration,
) -> Keeper {
    Keeper(tokio::spawn(async move {
        loop {
            if any_working(&states) {
                match client.update_last_activity(&sandbox_id).await {
                    Ok(()) => {
                        tracing::debug!(box_name = %box_name, "an agent works: the box stays active");
                    }
                    Err(e) => {
                        tracing::info!(box_name = %box_name, error = %e, "cannot report the box's activity to Daytona");
                    }
                }
            }
            tokio::time::sleep(period).await;
        }
    }))
}
