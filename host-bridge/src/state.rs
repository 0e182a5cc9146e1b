//! Box records in `AGENTBOX_HOME/state.db` (SQLite, WAL): every change is one
//! transaction, so two commands at once never corrupt it, and a name is taken atomically.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use serde::Serialize;

/// One box as the host knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoxRecord {
    /// Unique name.
    pub name: String,
    /// `local`, `docker` or `daytona`; [`JOINED`] for a teammate's box this home joined
    /// (`agentbox join`: `dir/invite.json` holds the invite, `bridge_token` the share token).
    pub provider: String,
    /// The repository root it was seeded from.
    pub project: PathBuf,
    /// The box branch, `agentbox/<name>`.
    pub branch: String,
    /// Provider data directory (the box itself for `local`).
    pub dir: PathBuf,
    /// When it was created.
    pub created_at_ms: u64,
    /// `creating` until the box is ready to use, then `ready`.
    pub phase: String,
    /// Base URL of the relay's bridge API, once known.
    pub bridge_url: Option<String>,
    /// The bridge token (never printed).
    #[serde(skip)]
    pub bridge_token: String,
}

/// The provider of a joined box: a teammate's box, reached with a share token only.
pub const JOINED: &str = "joined";

impl BoxRecord {
    /// Whether this is a teammate's box this home joined ([`JOINED`]).
    pub fn is_joined(&self) -> bool {
        self.provider == JOINED
    }
}

/// The refusal of anything but attach, url, logs and destroy on joined box `name`.
pub fn joined_refusal(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "box `{name}` is a teammate's box you joined (`agentbox join`): only `attach`, `url`, `logs` and `destroy` (which forgets it here) work on it; pushes, copies, exec, stop and start are its owner's"
    )
}

/// Errors of the state store.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The name is taken.
    #[error("a box named `{0}` already exists (see `agentbox list`)")]
    NameInUse(String),
    /// SQLite failed.
    #[error("state database: {0}")]
    Db(#[from] rusqlite::Error),
}

/// The store.
pub struct State {
    conn: Connection,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS boxes (
    name TEXT PRIMARY KEY,
    provider TEXT NOT NULL,
    project TEXT NOT NULL,
    branch TEXT NOT NULL,
    dir TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    phase TEXT NOT NULL,
    bridge_url TEXT,
    bridge_token TEXT NOT NULL
);
-- The number `list` shows for each box: given once, never reused (AUTOINCREMENT), so a
-- number typed after a destroy names that box or none, never another one.
CREATE TABLE IF NOT EXISTS box_numbers (
    number INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE
);
";

impl State {
    /// Opens (creating) the database at `path`, mode 0600.
    pub fn open(path: &Path) -> Result<Self, StateError> {
        let conn = Connection::open(path)?;
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600));
        }
        conn.busy_timeout(Duration::from_secs(10))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn })
    }

    /// Takes `record.name`; fails with [`StateError::NameInUse`] if it is taken.
    pub fn insert(&self, record: &BoxRecord) -> Result<(), StateError> {
        let tx = self.conn.unchecked_transaction()?;
        let r = tx.execute(
            "INSERT INTO boxes (name, provider, project, branch, dir, created_at_ms, phase, bridge_url, bridge_token)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            params![
                record.name,
                record.provider,
                record.project.to_string_lossy(),
                record.branch,
                record.dir.to_string_lossy(),
                record.created_at_ms as i64,
                record.phase,
                record.bridge_url,
                record.bridge_token
            ],
        );
        match r {
            Ok(_) => {
                tx.execute(
                    "INSERT OR IGNORE INTO box_numbers (name) VALUES (?1)",
                    params![record.name],
                )?;
                tx.commit()?;
                Ok(())
            }
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::ConstraintViolation =>
            {
                Err(StateError::NameInUse(record.name.clone()))
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Updates the phase and bridge URL of a box.
    pub fn update(
        &self,
        name: &str,
        phase: &str,
        bridge_url: Option<&str>,
    ) -> Result<(), StateError> {
        self.conn.execute(
            "UPDATE boxes SET phase = ?2, bridge_url = ?3 WHERE name = ?1",
            params![name, phase, bridge_url],
        )?;
        Ok(())
    }

    /// Forgets a box.
    pub fn remove(&self, name: &str) -> Result<(), StateError> {
        let tx = self.conn.unchecked_transaction()?;
        tx.execute("DELETE FROM boxes WHERE name = ?1", params![name])?;
        tx.execute("DELETE FROM box_numbers WHERE name = ?1", params![name])?;
        tx.commit()?;
        Ok(())
    }

    /// Every box with its number, oldest first. Boxes recorded before numbers existed get
    /// theirs here, in creation order.
    pub fn numbered(&self) -> Result<Vec<(u64, BoxRecord)>, StateError> {
        let query = |conn: &Connection| -> Result<Vec<(Option<i64>, BoxRecord)>, StateError> {
            let mut stmt = conn.prepare(&format!(
                "{SELECT_NUMBERED} ORDER BY b.created_at_ms, b.name"
            ))?;
            let rows = stmt.query_map([], |row| Ok((row.get(9)?, row_to_record(row)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
        };
        let mut rows = query(&self.conn)?;
        if rows.iter().any(|(n, _)| n.is_none()) {
            self.conn.execute(
                "INSERT OR IGNORE INTO box_numbers (name)
                 SELECT name FROM boxes ORDER BY created_at_ms, name",
                [],
            )?;
            rows = query(&self.conn)?;
        }
        Ok(rows
            .into_iter()
            .map(|(n, b)| (n.unwrap_or_default() as u64, b))
            .collect())
    }

    /// The box that has number `number`, if it still exists.
    pub fn by_number(&self, number: u64) -> Result<Option<BoxRecord>, StateError> {
        Ok(self
            .numbered()?
            .into_iter()
            .find(|(n, _)| *n == number)
            .map(|(_, b)| b))
    }

    /// One box by name.
    pub fn get(&self, name: &str) -> Result<Option<BoxRecord>, StateError> {
        Ok(self
            .conn
            .query_row(
                &format!("{SELECT} WHERE name = ?1"),
                params![name],
                row_to_record,
            )
            .optional()?)
    }

    /// Every box, oldest first (the order `list` numbers them in).
    pub fn all(&self) -> Result<Vec<BoxRecord>, StateError> {
        let mut stmt = self
            .conn
            .prepare(&format!("{SELECT} ORDER BY created_at_ms, name"))?;
        let rows = stmt.query_map([], row_to_record)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}

const SELECT: &str =
    "SELECT name, provider, project, branch, dir, created_at_ms, phase, bridge_url, bridge_token FROM boxes";

/// [`SELECT`] with each box's number (column 9; NULL for a box not numbered yet).
const SELECT_NUMBERED: &str =
    "SELECT b.name, b.provider, b.project, b.branch, b.dir, b.created_at_ms, b.phase, b.bridge_url, b.bridge_token, n.number
     FROM boxes b LEFT JOIN box_numbers n ON n.name = b.name";

fn row_to_record(row: &rusqlite::Row<'_>) -> rusqlite::Result<BoxRecord> {
    Ok(BoxRecord {
        name: row.get(0)?,
        provider: row.get(1)?,
        project: PathBuf::from(row.get::<_, String>(2)?),
        branch: row.get(3)?,
        dir: PathBuf::from(row.get::<_, String>(4)?),
        created_at_ms: row.get::<_, i64>(5)? as u64,
        phase: row.get(6)?,
        bridge_url: row.get(7)?,
        bridge_token: row.get(8)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(name: &str) -> BoxRecord {
        BoxRecord {
            name: name.into(),
            provider: "local".into(),
            project: "/p".into(),
            branch: format!("agentbox/{name}"),
            dir: "/d".into(),
            created_at_ms: 1,
            phase: "creating".into(),
            bridge_url: None,
            bridge_token: "t".into(),
        }
    }

    #[test]
    fn names_are_taken_atomically_across_connections() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.db");
        let handles: Vec<_> = (0..8)
            .map(|_| {
                let path = path.clone();
                std::thread::spawn(move || {
                    State::open(&path)
                        .and_then(|s| s.insert(&record("same")))
                        .is_ok()
                })
            })
            .collect();
        let wins = handles
            .into_iter()
            .map(|h| h.join().expect("join"))
            .filter(|ok| *ok)
            .count();
        assert_eq!(wins, 1);
        let s = State::open(&path).expect("open");
        assert!(matches!(
            s.insert(&record("same")),
            Err(StateError::NameInUse(_))
        ));
        s.update("same", "ready", Some("http://x")).expect("update");
        assert_eq!(s.get("same").expect("get").expect("some").phase, "ready");
        s.remove("same").expect("remove");
        assert!(s.all().expect("all").is_empty());
    }
}
