//! The request journal: every box → host request, durable in SQLite, with leases.
//!
//! A request is `queued` until a poller leases it (`leased` until `lease_expires_at_ms`),
//! then `done` with the host's outcome. A lease that expires without a result makes the
//! request deliverable again (attempt + 1). The first result for a lease ever issued for
//! the request wins; later ones are acknowledged as duplicates. A request nobody leased
//! before its caller's deadline is `expired` and never delivered.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use agentbox_protocol::bridge::{HostRequest, LeasedRequest, Outcome, RequestId};
use agentbox_protocol::now_millis;
use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::watch;

/// Errors of the journal.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// No such request.
    #[error("no request {0}")]
    NotFound(String),
    /// The lease was never issued for this request.
    #[error("lease {lease} does not belong to request {id}")]
    UnknownLease {
        /// The request.
        id: String,
        /// The lease presented.
        lease: String,
    },
    /// SQLite or encoding failed.
    #[error("journal: {0}")]
    Db(String),
}

impl From<rusqlite::Error> for JournalError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Db(e.to_string())
    }
}

impl From<serde_json::Error> for JournalError {
    fn from(e: serde_json::Error) -> Self {
        Self::Db(e.to_string())
    }
}

/// Where a request is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// `queued`, `leased`, `done` or `expired`.
    pub state: String,
    /// Deliveries so far.
    pub attempt: u32,
    /// The outcome once done.
    pub outcome: Option<Outcome>,
    /// Progress lines so far.
    pub progress: Vec<String>,
}

/// The journal; cheap to share behind an `Arc`.
///
/// Waiters are woken only by what concerns them: pollers by new requests
/// ([`Journal::subscribe_queue`]), a caller following its request by changes to that
/// request ([`Journal::watch_request`]). (One shared signal made every follower re-read
/// its request on every change of any request: quadratic in concurrent callers.)
pub struct Journal {
    conn: Mutex<Connection>,
    queued: watch::Sender<u64>,
    requests: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

/// Changes to one request, for as long as it is held.
pub struct RequestWatch {
    id: String,
    rx: watch::Receiver<u64>,
    requests: Arc<Mutex<HashMap<String, watch::Sender<u64>>>>,
}

impl RequestWatch {
    /// Marks the current state seen.
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for the request's next change.
    pub async fn changed(&mut self) {
        if self.rx.changed().await.is_err() {
            // The sender went with the journal: nothing will change any more.
            std::future::pending::<()>().await;
        }
    }
}

impl Drop for RequestWatch {
    fn drop(&mut self) {
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // This receiver still counts: the entry goes with the last watcher.
        if map.get(&self.id).is_some_and(|s| s.receiver_count() <= 1) {
            map.remove(&self.id);
        }
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS requests (
    id TEXT PRIMARY KEY,
    created_at_ms INTEGER NOT NULL,
    request TEXT NOT NULL,
    state TEXT NOT NULL,
    attempt INTEGER NOT NULL DEFAULT 0,
    lease_expires_at_ms INTEGER,
    outcome TEXT
);
CREATE TABLE IF NOT EXISTS leases (id TEXT NOT NULL, lease TEXT NOT NULL, PRIMARY KEY (id, lease));
CREATE TABLE IF NOT EXISTS progress (id TEXT NOT NULL, seq INTEGER NOT NULL, line TEXT NOT NULL, PRIMARY KEY (id, seq));
CREATE INDEX IF NOT EXISTS requests_state ON requests (state, created_at_ms);
";

fn new_id(prefix_ms: u64) -> Result<String, JournalError> {
    let token = agentbox_protocol::bridge::new_bridge_token()
        .map_err(|e| JournalError::Db(e.to_string()))?;
    Ok(format!("{prefix_ms:013}-{}", &token[..8]))
}

impl Journal {
    /// Opens (creating) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // WAL with NORMAL: a commit survives the relay being killed (it is in the WAL), not
        // the machine losing power, which takes the box with it anyway.
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self {
            conn: Mutex::new(conn),
            queued: watch::channel(0).0,
            requests: Arc::default(),
        })
    }

    /// Moves WAL checkpoints off the request path: this connection stops checkpointing
    /// (whose fsync made the slowest requests wait) and a background thread with its own
    /// connection checkpoints passively every second, never blocking a writer.
    pub fn checkpoint_in_background(&self, path: &Path) -> Result<(), JournalError> {
        self.db()?.pragma_update(None, "wal_autocheckpoint", 0)?;
        let conn = Connection::open(path)?;
        std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(std::time::Duration::from_secs(1));
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "journal checkpoint failed");
                }
            })
            .map_err(|e| JournalError::Db(e.to_string()))?;
        Ok(())
    }

    fn db(&self) -> Result<std::sync::MutexGuard<'_, Connection>, JournalError> {
        self.conn
            .lock()
            .map_err(|_| JournalError::Db("journal lock poisoned".into()))
    }

    /// Wakes whoever watches request `id`.
    fn bump(&self, id: &str) {
        let map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(s) = map.get(id) {
            s.send_modify(|n| *n += 1);
        }
    }

    /// A receiver that changes whenever a request is queued.
    pub fn subscribe_queue(&self) -> watch::Receiver<u64> {
        self.queued.subscribe()
    }

    /// Changes to request `id` (leased, progress, done, expired) from now on.
    pub fn watch_request(&self, id: &str) -> RequestWatch {
        let mut map = self
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let rx = map
            .entry(id.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe();
        RequestWatch {
            id: id.to_string(),
            rx,
            requests: self.requests.clone(),
        }
    }

    /// Journals a request; from here on it survives restarts.
    pub fn submit(&self, request: &HostRequest) -> Result<RequestId, JournalError> {
        let now = now_millis();
        let id = new_id(now)?;
        self.db()?.prepare_cached("INSERT INTO requests (id, created_at_ms, request, state) VALUES (?1, ?2, ?3, 'queued')")?.execute(params![id, now as i64, serde_json::to_string(request)?],
        )?;
        self.queued.send_modify(|n| *n += 1);
        RequestId::try_from(id).map_err(JournalError::Db)
    }

    /// Leases up to `max` deliverable requests (queued, or leased with an expired lease).
    pub fn lease(&self, max: usize, lease_ms: u64) -> Result<Vec<LeasedRequest>, JournalError> {
        let now = now_millis();
        let mut db = self.db()?;
        let tx = db.transaction()?;
        let rows: Vec<(String, i64, String, u32)> = {
            let mut stmt = tx.prepare_cached(
                "SELECT id, created_at_ms, request, attempt FROM requests
                 WHERE state = 'queued' OR (state = 'leased' AND lease_expires_at_ms <= ?1)
                 ORDER BY rowid LIMIT ?2",
            )?;
            let rows = stmt.query_map(params![now as i64, max as i64], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut leased = Vec::new();
        for (id, created, request, attempt) in rows {
            let lease = agentbox_protocol::bridge::new_bridge_token()
                .map_err(|e| JournalError::Db(e.to_string()))?;
            let expires = now + lease_ms;
            tx.prepare_cached("UPDATE requests SET state = 'leased', attempt = attempt + 1, lease_expires_at_ms = ?2 WHERE id = ?1")?.execute(params![id, expires as i64],
            )?;
            tx.prepare_cached("INSERT INTO leases (id, lease) VALUES (?1, ?2)")?
                .execute(params![id, lease])?;
            leased.push(LeasedRequest {
                id: RequestId::try_from(id).map_err(JournalError::Db)?,
                lease,
                lease_expires_at_ms: expires,
                attempt: attempt + 1,
                created_at_ms: created as u64,
                request: serde_json::from_str(&request)?,
            });
        }
        tx.commit()?;
        for l in &leased {
            self.bump(l.id.as_str());
        }
        Ok(leased)
    }

    /// When the earliest current lease expires (a poller waits at most until then).
    pub fn next_expiry(&self) -> Result<Option<u64>, JournalError> {
        let v: Option<i64> = self
            .db()?
            .prepare_cached("SELECT MIN(lease_expires_at_ms) FROM requests WHERE state = 'leased'")?
            .query_row([], |r| r.get(0))?;
        Ok(v.map(|v| v as u64))
    }

    fn check_lease(db: &Connection, id: &str, lease: &str) -> Result<(), JournalError> {
        let known: Option<i64> = db
            .prepare_cached("SELECT 1 FROM leases WHERE id = ?1 AND lease = ?2")?
            .query_row(params![id, lease], |r| r.get(0))
            .optional()?;
        if known.is_some() {
            Ok(())
        } else {
            Err(JournalError::UnknownLease {
                id: id.to_string(),
                lease: lease.to_string(),
            })
        }
    }

    /// Appends progress lines and renews the lease (by the original lease length).
    pub fn progress(
        &self,
        id: &str,
        lease: &str,
        lines: &[String],
        renew_ms: u64,
    ) -> Result<(), JournalError> {
        let mut db = self.db()?;
        Self::check_lease(&db, id, lease)?;
        let tx = db.transaction()?;
        let next: i64 = tx
            .prepare_cached("SELECT COALESCE(MAX(seq), 0) FROM progress WHERE id = ?1")?
            .query_row(params![id], |r| r.get(0))?;
        for (i, line) in lines.iter().enumerate() {
            tx.prepare_cached("INSERT INTO progress (id, seq, line) VALUES (?1, ?2, ?3)")?
                .execute(params![id, next + 1 + i as i64, line])?;
        }
        tx.prepare_cached(
            "UPDATE requests SET lease_expires_at_ms = ?2 WHERE id = ?1 AND state = 'leased'",
        )?
        .execute(params![id, (now_millis() + renew_ms) as i64])?;
        tx.commit()?;
        self.bump(id);
        Ok(())
    }

    /// Records the outcome. `Ok(false)` when one was already recorded (a duplicate).
    pub fn complete(&self, id: &str, lease: &str, outcome: &Outcome) -> Result<bool, JournalError> {
        let db = self.db()?;
        Self::check_lease(&db, id, lease)?;
        let n = db.prepare_cached("UPDATE requests SET state = 'done', outcome = ?2, lease_expires_at_ms = NULL WHERE id = ?1 AND state != 'done'")?.execute(params![id, serde_json::to_string(outcome)?],
        )?;
        drop(db);
        if n > 0 {
            self.bump(id);
        }
        Ok(n > 0)
    }

    /// Withdraws a request that no poller has taken yet. `false` if it was taken.
    pub fn expire_if_queued(&self, id: &str) -> Result<bool, JournalError> {
        let n = self
            .db()?
            .prepare_cached(
                "UPDATE requests SET state = 'expired' WHERE id = ?1 AND state = 'queued'",
            )?
            .execute(params![id])?;
        if n > 0 {
            self.bump(id);
        }
        Ok(n > 0)
    }

    /// Where a request is.
    pub fn get(&self, id: &str) -> Result<Entry, JournalError> {
        let db = self.db()?;
        let row: Option<(String, u32, Option<String>)> = db
            .prepare_cached("SELECT state, attempt, outcome FROM requests WHERE id = ?1")?
            .query_row(params![id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .optional()?;
        let (state, attempt, outcome) =
            row.ok_or_else(|| JournalError::NotFound(id.to_string()))?;
        let mut stmt = db.prepare_cached("SELECT line FROM progress WHERE id = ?1 ORDER BY seq")?;
        let progress = stmt
            .query_map(params![id], |r| r.get(0))?
            .collect::<Result<Vec<String>, _>>()?;
        let outcome = outcome.map(|o| serde_json::from_str(&o)).transpose()?;
        Ok(Entry {
            state,
            attempt,
            outcome,
            progress,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notify(m: &str) -> HostRequest {
        HostRequest::Notify { message: m.into() }
    }

    fn ok() -> Outcome {
        Outcome {
            exit_code: 0,
            stdout: "done".into(),
            stderr: String::new(),
            bundle: None,
        }
    }

    #[test]
    fn lease_expiry_redelivers_and_the_first_result_wins() {
        let dir = tempfile::tempdir().expect("tempdir");
        let j = Journal::open(&dir.path().join("j.db")).expect("open");
        let id = j.submit(&notify("a")).expect("submit");
        let first = j.lease(10, 0).expect("lease");
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].attempt, 1);
        // Lease of 0 ms: already expired, so it is delivered again.
        let second = j.lease(10, 60_000).expect("lease");
        assert_eq!((second.len(), second[0].attempt), (1, 2));
        assert!(
            j.lease(10, 60_000).expect("lease").is_empty(),
            "a live lease is not re-delivered"
        );
        assert!(
            j.complete(id.as_str(), &first[0].lease, &ok())
                .expect("complete"),
            "the old lease's result still counts"
        );
        assert!(
            !j.complete(id.as_str(), &second[0].lease, &ok())
                .expect("complete"),
            "a second result is a duplicate"
        );
        assert!(matches!(
            j.complete(id.as_str(), "forged", &ok()),
            Err(JournalError::UnknownLease { .. })
        ));
        let e = j.get(id.as_str()).expect("get");
        assert_eq!((e.state.as_str(), e.outcome), ("done", Some(ok())));
    }

    #[test]
    fn requests_survive_reopening_and_expire_only_when_untaken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j.db");
        let (a, b) = {
            let j = Journal::open(&path).expect("open");
            (
                j.submit(&notify("a")).expect("a"),
                j.submit(&notify("b")).expect("b"),
            )
        };
        let j = Journal::open(&path).expect("reopen");
        let leased = j.lease(1, 60_000).expect("lease");
        assert_eq!(leased[0].id, a, "oldest first");
        j.progress(a.as_str(), &leased[0].lease, &["50%".into()], 60_000)
            .expect("progress");
        assert!(
            !j.expire_if_queued(a.as_str()).expect("expire"),
            "a leased request is not withdrawn"
        );
        assert!(j.expire_if_queued(b.as_str()).expect("expire"));
        assert!(
            j.lease(10, 60_000).expect("lease").is_empty(),
            "an expired request is never delivered"
        );
        assert_eq!(j.get(a.as_str()).expect("get").progress, ["50%"]);
    }
}
