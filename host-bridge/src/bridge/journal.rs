//! The host's records in `state.db`: completed request ids with their outcomes (so that a
//! re-delivered request gets the recorded answer instead of running twice) and the audit
//! log of every request a box made.

use std::path::Path;
use std::time::Duration;

use agentbox_protocol::bridge::Outcome;
use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One audit entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AuditEntry {
    /// When it was decided.
    pub ts_ms: u64,
    /// The box.
    pub box_name: String,
    /// The request id.
    pub request_id: String,
    /// `notify`, `open`, `git push`, …
    pub kind: String,
    /// `done`, `refused` or `replayed`.
    pub decision: String,
    /// What was shown, opened or refused, and why.
    pub detail: String,
    /// The exit code returned to the box.
    pub exit_code: i32,
}

/// A request waiting for (or decided by) `agentbox approve` / `deny`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Approval {
    /// Short id to name on the command line.
    pub id: String,
    /// The box that asked.
    pub box_name: String,
    /// Its request id.
    pub request_id: String,
    /// `git push`, `cp to host`, …
    pub kind: String,
    /// What exactly would happen, for the person deciding.
    pub summary: String,
    /// When it was asked.
    pub created_ms: u64,
    /// When it stops waiting.
    pub expires_ms: u64,
    /// `pending`, `approved`, `denied`, `expired`, or `changed` (the box put another
    /// request under its id: it is never run under this approval).
    pub state: String,
    /// The digest of the exact request it shows ([`crate::bridge::policy::digest`]); `None`
    /// for an approval recorded before approvals were bound to their request, which
    /// therefore approves nothing.
    pub digest: Option<String>,
}

/// What the record says of a request id that was carried out before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Completed {
    /// The answer it was given.
    pub outcome: Outcome,
    /// The digest of the request that got it; `None` when recorded before outcomes were
    /// bound to their request.
    pub digest: Option<String>,
}

/// Why `approve` / `deny` did nothing.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    /// No such approval.
    #[error("there is no approval `{0}` (see `agentbox approvals`)")]
    NotFound(String),
    /// Already approved, denied or expired.
    #[error("approval `{0}` is already {1}")]
    Decided(String, String),
    /// The database failed.
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The host bridge's records.
pub struct HostJournal {
    conn: Connection,
    /// How many of a box's newest audit entries and completed records are kept
    /// ([`KEEP_PER_BOX`]).
    keep_per_box: usize,
}

/// The most audit entries, and completed records, kept per box: a box that asks without
/// end (a notify loop) would otherwise grow `state.db` by about 330 bytes a request, some
/// 150 MB an hour, until the host's disk is full. The oldest go first. A completed record
/// only has to outlive the relay's redelivery of its request, which ends with the ack sent
/// right after it is recorded, long before ten thousand newer requests of that box.
pub const KEEP_PER_BOX: usize = 10_000;

/// Records are trimmed to [`KEEP_PER_BOX`] once every this many inserts (a trim scans).
const TRIM_EVERY: i64 = 256;

/// The most requests of one box that wait for approval at once: past it a request is
/// refused, so that a box cannot bury the user under approvals (nor this daemon, which
/// looks at each waiting one five times a second).
pub const MAX_PENDING_PER_BOX: usize = 32;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS completed (
    box_name TEXT NOT NULL, request_id TEXT NOT NULL, outcome TEXT NOT NULL, ts_ms INTEGER NOT NULL,
    digest TEXT,
    PRIMARY KEY (box_name, request_id)
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY, box_name TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL,
    summary TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL,
    state TEXT NOT NULL, decided_ms INTEGER, digest TEXT,
    UNIQUE (box_name, request_id)
);
CREATE TABLE IF NOT EXISTS audit (
    ts_ms INTEGER NOT NULL, box_name TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL,
    decision TEXT NOT NULL, detail TEXT NOT NULL, exit_code INTEGER NOT NULL
);
";

impl HostJournal {
    /// Opens the records in `state.db`.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        // A state.db made before requests were bound to their digest gains the column.
        for table in ["completed", "approvals"] {
            let has: bool = conn.query_row(
                &format!(
                    "SELECT COUNT(*) > 0 FROM pragma_table_info('{table}') WHERE name = 'digest'"
                ),
                [],
                |r| r.get(0),
            )?;
            if !has {
                conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN digest TEXT"))?;
            }
        }
        Ok(Self {
            conn,
            keep_per_box: KEEP_PER_BOX,
        })
    }

    /// For the long-running daemon: this connection stops checkpointing the WAL (whose
    /// fsync made the slowest requests wait) and a background thread checkpoints passively
    /// every second with its own connection, never blocking a writer.
    pub fn checkpoint_in_background(&self, path: &Path) -> rusqlite::Result<()> {
        self.conn.pragma_update(None, "wal_autocheckpoint", 0)?;
        let conn = Connection::open(path)?;
        let spawned = std::thread::Builder::new()
            .name("journal-checkpoint".into())
            .spawn(move || loop {
                std::thread::sleep(Duration::from_secs(1));
                if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                    tracing::warn!(error = %e, "state.db checkpoint failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "no checkpoint thread; checkpoints stay inline");
            self.conn.pragma_update(None, "wal_autocheckpoint", 1000)?;
        }
        Ok(())
    }

    /// The recorded outcome of a request, and the digest of the request it answered, if
    /// that id was carried out before.
    pub fn completed(&self, box_name: &str, id: &str) -> rusqlite::Result<Option<Completed>> {
        let row: Option<(String, Option<String>)> = self
            .conn
            .prepare_cached(
                "SELECT outcome, digest FROM completed WHERE box_name = ?1 AND request_id = ?2",
            )?
            .query_row(params![box_name, id], |r| Ok((r.get(0)?, r.get(1)?)))
            .optional()?;
        Ok(row.and_then(|(text, digest)| {
            serde_json::from_str(&text)
                .ok()
                .map(|outcome| Completed { outcome, digest })
        }))
    }

    /// Records an outcome of the request whose digest is `digest` and its audit entry in
    /// one transaction.
    pub fn record(
        &mut self,
        entry: &AuditEntry,
        outcome: &Outcome,
        digest: &str,
    ) -> rusqlite::Result<()> {
        let keep = self.keep_per_box;
        let tx = self.conn.transaction()?;
        tx.prepare_cached("INSERT OR IGNORE INTO completed (box_name, request_id, outcome, ts_ms, digest) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![entry.box_name, entry.request_id, serde_json::to_string(outcome).unwrap_or_default(), entry.ts_ms as i64, digest],
        )?;
        Self::insert_audit(&tx, entry)?;
        Self::trim_if_due(&tx, &entry.box_name, keep)?;
        tx.commit()
    }

    /// Adds an audit entry alone (a replayed answer).
    pub fn audit(&self, entry: &AuditEntry) -> rusqlite::Result<()> {
        Self::insert_audit(&self.conn, entry)?;
        Self::trim_if_due(&self.conn, &entry.box_name, self.keep_per_box)
    }

    /// Every [`TRIM_EVERY`] audit inserts, drops box `box_name`'s audit entries and
    /// completed records past its newest `keep` ([`KEEP_PER_BOX`]).
    fn trim_if_due(conn: &Connection, box_name: &str, keep: usize) -> rusqlite::Result<()> {
        if conn.last_insert_rowid() % TRIM_EVERY != 0 {
            return Ok(());
        }
        let keep = i64::try_from(keep).unwrap_or(i64::MAX);
        for table in ["audit", "completed"] {
            conn.prepare_cached(&format!(
                "DELETE FROM {table} WHERE box_name = ?1 AND rowid <= \
                 (SELECT rowid FROM {table} WHERE box_name = ?1 ORDER BY rowid DESC LIMIT 1 OFFSET ?2)"
            ))?
            .execute(params![box_name, keep])?;
        }
        Ok(())
    }

    fn insert_audit(conn: &Connection, e: &AuditEntry) -> rusqlite::Result<()> {
        conn.prepare_cached("INSERT INTO audit (ts_ms, box_name, request_id, kind, decision, detail, exit_code) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?.execute(params![e.ts_ms as i64, e.box_name, e.request_id, e.kind, e.decision, e.detail, e.exit_code],
        )?;
        Ok(())
    }

    /// Why request `request_id` of box `box_name` may not wait for approval: the box has
    /// [`MAX_PENDING_PER_BOX`] others waiting. `None` when it may, and always for a request
    /// that has its approval already (re-delivered, or looking again).
    pub fn no_room_for(
        &self,
        box_name: &str,
        request_id: &str,
    ) -> rusqlite::Result<Option<String>> {
        self.expire()?;
        let (waiting, own): (i64, bool) = self.conn.prepare_cached(
            "SELECT COUNT(*) FILTER (WHERE state = 'pending'), COUNT(*) FILTER (WHERE request_id = ?2) > 0 \
             FROM approvals WHERE box_name = ?1",
        )?.query_row(params![box_name, request_id], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((!own && waiting >= MAX_PENDING_PER_BOX as i64).then(|| {
            format!("{waiting} requests of this box already wait for approval on the host; decide them (`agentbox approvals`), then ask again")
        }))
    }

    /// Marks pending approvals past their time as expired.
    fn expire(&self) -> rusqlite::Result<()> {
        self.conn.prepare_cached("UPDATE approvals SET state = 'expired', decided_ms = ?1 WHERE state = 'pending' AND expires_ms < ?1")?.execute(params![agentbox_protocol::now_millis() as i64],
        )?;
        Ok(())
    }

    fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Approval> {
        Ok(Approval {
            id: r.get(0)?,
            box_name: r.get(1)?,
            request_id: r.get(2)?,
            kind: r.get(3)?,
            summary: r.get(4)?,
            created_ms: r.get::<_, i64>(5)? as u64,
            expires_ms: r.get::<_, i64>(6)? as u64,
            state: r.get(7)?,
            digest: r.get(8)?,
        })
    }

    /// The approval of a request, creating a pending one (valid `ttl_ms`) bound to
    /// `digest` the first time. The caller compares the returned approval's digest with
    /// its request's: a pending approval of another digest is marked `changed` here, so
    /// that nobody approves what will never run.
    pub fn approval_for(
        &self,
        box_name: &str,
        request_id: &str,
        kind: &str,
        summary: &str,
        digest: &str,
        ttl_ms: u64,
    ) -> rusqlite::Result<Approval> {
        self.expire()?;
        let now = agentbox_protocol::now_millis();
        let id = agentbox_protocol::files::new_transfer_id()
            .map_or_else(|_| format!("{now:x}"), |t| t[..8].to_string());
        self.conn.execute(
            "INSERT OR IGNORE INTO approvals (id, box_name, request_id, kind, summary, created_ms, expires_ms, state, digest) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 'pending', ?8)",
            params![id, box_name, request_id, kind, summary, now as i64, now.saturating_add(ttl_ms) as i64, digest],
        )?;
        self.conn.execute(
            "UPDATE approvals SET state = 'changed', decided_ms = ?4 \
             WHERE box_name = ?1 AND request_id = ?2 AND state = 'pending' AND digest IS NOT ?3",
            params![box_name, request_id, digest, now as i64],
        )?;
        self.conn.query_row(
            "SELECT id, box_name, request_id, kind, summary, created_ms, expires_ms, state, digest FROM approvals \
             WHERE box_name = ?1 AND request_id = ?2",
            params![box_name, request_id],
            Self::approval_row,
        )
    }

    /// Approvals, oldest first; only pending ones unless `all`.
    pub fn approvals(&self, all: bool) -> rusqlite::Result<Vec<Approval>> {
        self.expire()?;
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, box_name, request_id, kind, summary, created_ms, expires_ms, state, digest FROM approvals \
             WHERE ?1 OR state = 'pending' ORDER BY created_ms",
        )?;
        let rows = stmt.query_map(params![all], Self::approval_row)?;
        rows.collect()
    }

    /// Approves or denies a pending approval.
    pub fn decide(&self, id: &str, approve: bool) -> Result<Approval, DecideError> {
        self.expire()?;
        let changed = self.conn.prepare_cached("UPDATE approvals SET state = ?2, decided_ms = ?3 WHERE id = ?1 AND state = 'pending'")?.execute(params![
                id,
                if approve { "approved" } else { "denied" },
                agentbox_protocol::now_millis() as i64
            ],
        )?;
        let row = self
            .conn
            .prepare_cached("SELECT id, box_name, request_id, kind, summary, created_ms, expires_ms, state, digest FROM approvals WHERE id = ?1")?.query_row(params![id],
                Self::approval_row,
            )
            .optional()?
            .ok_or_else(|| DecideError::NotFound(id.to_string()))?;
        if changed == 0 {
            return Err(DecideError::Decided(id.to_string(), row.state));
        }
        Ok(row)
    }

    /// The audit log, oldest first.
    pub fn entries(&self) -> rusqlite::Result<Vec<AuditEntry>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT ts_ms, box_name, request_id, kind, decision, detail, exit_code FROM audit ORDER BY rowid",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(AuditEntry {
                ts_ms: r.get::<_, i64>(0)? as u64,
                box_name: r.get(1)?,
                request_id: r.get(2)?,
                kind: r.get(3)?,
                decision: r.get(4)?,
                detail: r.get(5)?,
                exit_code: r.get(6)?,
            })
        })?;
        rows.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok() -> Outcome {
        Outcome {
            exit_code: 0,
            stdout: "done\n".into(),
            stderr: String::new(),
            bundle: None,
        }
    }

    fn entry(id: &str) -> AuditEntry {
        AuditEntry {
            ts_ms: 1,
            box_name: "b1".into(),
            request_id: id.into(),
            kind: "notify".into(),
            decision: "done".into(),
            detail: String::new(),
            exit_code: 0,
        }
    }

    /// A box that asks without end keeps only its newest records; another box's are left
    /// alone, and the newest request of the busy one is still answered from the record.
    #[test]
    fn a_box_asking_without_end_keeps_only_its_newest_records() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = HostJournal::open(&dir.path().join("state.db")).expect("open");
        j.keep_per_box = 100;
        let mut quiet = entry("q-1");
        quiet.box_name = "quiet".into();
        j.record(&quiet, &ok(), "d").expect("record");
        let total = 3 * usize::try_from(TRIM_EVERY).expect("small");
        for n in 0..total {
            j.record(&entry(&format!("r-{n}")), &ok(), "d")
                .expect("record");
        }
        let count = |table: &str, box_name: &str| -> usize {
            j.conn
                .query_row(
                    &format!("SELECT COUNT(*) FROM {table} WHERE box_name = ?1"),
                    [box_name],
                    |r| r.get::<_, i64>(0),
                )
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX))
                .expect("count")
        };
        for table in ["audit", "completed"] {
            let busy = count(table, "b1");
            assert!(
                (100..100 + usize::try_from(TRIM_EVERY).expect("small")).contains(&busy),
                "{table}: {busy} of {total} kept"
            );
            assert_eq!(count(table, "quiet"), 1, "{table}");
        }
        let newest = format!("r-{}", total - 1);
        assert!(j.completed("b1", &newest).expect("read").is_some());
        assert!(j.completed("b1", "r-0").expect("read").is_none());
    }

    #[test]
    fn a_state_db_from_before_digests_opens_and_binds_nothing_new_to_old_rows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        {
            let conn = Connection::open(&path).expect("open");
            conn.execute_batch(
                "CREATE TABLE completed (box_name TEXT NOT NULL, request_id TEXT NOT NULL, outcome TEXT NOT NULL, ts_ms INTEGER NOT NULL, PRIMARY KEY (box_name, request_id));
                 CREATE TABLE approvals (id TEXT PRIMARY KEY, box_name TEXT NOT NULL, request_id TEXT NOT NULL, kind TEXT NOT NULL, summary TEXT NOT NULL, created_ms INTEGER NOT NULL, expires_ms INTEGER NOT NULL, state TEXT NOT NULL, decided_ms INTEGER, UNIQUE (box_name, request_id));
                 INSERT INTO approvals VALUES ('old1', 'b1', 'r-old', 'git push', 'git push of main', 1, 99999999999999, 'approved', 2);",
            )
            .expect("old schema");
            conn.execute(
                "INSERT INTO completed VALUES ('b1', 'r-done', ?1, 1)",
                [serde_json::to_string(&ok()).expect("json")],
            )
            .expect("old row");
        }
        let j = HostJournal::open(&path).expect("an old state.db opens");
        // Opening twice does not add the column twice.
        drop(HostJournal::open(&path).expect("reopens"));
        let done = j.completed("b1", "r-done").expect("read").expect("kept");
        assert_eq!((done.outcome, done.digest), (ok(), None));
        // An approval made before binding approves no digest.
        let a = j
            .approval_for("b1", "r-old", "git push", "s", "d1", 1000)
            .expect("approval");
        assert_eq!((a.state.as_str(), a.digest), ("approved", None));
    }

    #[test]
    fn approvals_and_records_keep_the_digest_they_were_made_for() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut j = HostJournal::open(&dir.path().join("state.db")).expect("open");
        let a = j
            .approval_for("b1", "r1", "cp to host", "shown", "d1", 60_000)
            .expect("approval");
        assert_eq!(
            (a.state.as_str(), a.digest.as_deref()),
            ("pending", Some("d1"))
        );
        // Asked again with the same request: the same approval.
        let again = j
            .approval_for("b1", "r1", "cp to host", "shown", "d1", 60_000)
            .expect("approval");
        assert_eq!(again, a);
        // Another request under the id: the approval keeps its digest and, pending, is
        // marked changed so that nobody approves it.
        let swapped = j
            .approval_for("b1", "r1", "cp to host", "other", "d2", 60_000)
            .expect("approval");
        assert_eq!(
            (
                swapped.state.as_str(),
                swapped.digest.as_deref(),
                swapped.summary.as_str()
            ),
            ("changed", Some("d1"), "shown")
        );
        assert!(matches!(
            j.decide(&a.id, true),
            Err(DecideError::Decided(..))
        ));

        j.record(&entry("r2"), &ok(), "d3").expect("record");
        let done = j.completed("b1", "r2").expect("read").expect("kept");
        assert_eq!(done.digest.as_deref(), Some("d3"));
        // A second record for the id changes nothing.
        j.record(&entry("r2"), &ok(), "d4").expect("record");
        let done = j.completed("b1", "r2").expect("read").expect("kept");
        assert_eq!(done.digest.as_deref(), Some("d3"));
    }
}
