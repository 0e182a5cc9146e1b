//! What the pollers and request handlers of the daemon share: [`Shared`] (the journal,
//! the policies, the relay clients, the requests in flight) and the per-box [`Slot`]s.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use anyhow::Context;

use super::journal::HostJournal;
use super::policy;
use crate::home::Home;
use crate::state::BoxRecord;
use crate::transfer::client::Relay;

/// What every poller and handler shares.
#[derive(Clone)]
pub(super) struct Shared {
    pub(super) home: Home,
    /// Boxes with a poller.
    pub(super) polled: Arc<Mutex<HashSet<String>>>,
    /// Box name → bridge URL, as in `state.db` (rescanned every second).
    pub(super) addresses:
        Arc<tokio::sync::watch::Sender<std::collections::HashMap<String, String>>>,
    /// `box/id` of requests being carried out: a re-delivery of one of them is not run
    /// again (the first run answers, and the relay accepts any lease it issued).
    pub(super) inflight: Arc<Mutex<HashSet<String>>>,
    /// The host's records, one connection for all handlers.
    pub(super) journal: Arc<Mutex<HostJournal>>,
    /// Policies per project, re-read at most once a second.
    pub(super) policies: Arc<policy::Cache>,
    /// Box name → its relay client (one connection pool per box; for a Daytona box also
    /// the preview token, renewed when it rotates).
    pub(super) relays: Arc<Mutex<std::collections::HashMap<String, Relay>>>,
}

impl Shared {
    /// The relay of `record` at `url`.
    pub(super) fn relay(&self, record: &BoxRecord, url: &str) -> Relay {
        if let Ok(map) = self.relays.lock() {
            if let Some(r) = map.get(&record.name).filter(|r| r.url("") == url) {
                return r.clone();
            }
        }
        Relay::new(url, &record.bridge_token)
    }
}

/// A place among the requests a box runs at once; given back while a request waits for
/// approval, so that one pending approval never blocks the others.
pub(super) struct Slot {
    pub(super) permit: Option<tokio::sync::OwnedSemaphorePermit>,
    pub(super) slots: Arc<tokio::sync::Semaphore>,
}

impl Slot {
    pub(super) fn release(&mut self) {
        self.permit = None;
    }

    pub(super) async fn reacquire(&mut self) {
        if self.permit.is_none() {
            self.permit = self.slots.clone().acquire_owned().await.ok();
        }
    }
}

/// Runs blocking work that needs the host journal.
pub(super) async fn with_journal<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut HostJournal) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let journal = shared.journal.clone();
    tokio::task::spawn_blocking(move || {
        let mut j = journal
            .lock()
            .map_err(|_| anyhow::anyhow!("the host journal lock is poisoned"))?;
        f(&mut j)
    })
    .await
    .context("the request task panicked")?
}
