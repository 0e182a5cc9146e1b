//! [`Shares`]: the share tokens this box's owner minted, kept as blake3 hashes in
//! `AGENTBOX_RUN_DIR/shares.json` (0600, replaced atomically), so they survive a relay
//! restart. Each live share has a [`CancellationToken`] that is cancelled when it is
//! revoked or expires: everything opened with it (terminal viewers, log streams) ends then.

use std::collections::HashMap;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use agentbox_protocol::share::{
    normalize_scopes, Scope, ShareGrant, ShareId, ShareInfo, ShareMint, ShareToken, MAX_SHARES,
    MAX_TTL_MS,
};
use agentbox_protocol::{now_millis, EpochMillis};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

/// How often expiry is checked: an expired share's sessions end within this.
pub const EXPIRY_TICK: Duration = Duration::from_millis(500);

/// One share as kept on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Entry {
    id: ShareId,
    /// blake3 (hex) of the token.
    hash: String,
    scopes: Vec<Scope>,
    created_at_ms: EpochMillis,
    expires_at_ms: EpochMillis,
}

/// A share token that was accepted: who it is and what it may do.
#[derive(Debug)]
pub struct Grant {
    /// The share.
    pub id: ShareId,
    /// Its scopes.
    pub scopes: Vec<Scope>,
    /// Cancelled when the share is revoked or expires.
    pub ended: CancellationToken,
}

impl Grant {
    /// Whether the share has `scope`.
    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a mint or revoke failed.
#[derive(Debug, thiserror::Error)]
pub enum ShareStoreError {
    /// The request is malformed.
    #[error("{0}")]
    Bad(String),
    /// Writing `shares.json` failed.
    #[error("cannot write the share list: {0}")]
    Io(#[from] std::io::Error),
}

/// The shares of this box.
pub struct Shares {
    path: PathBuf,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: Vec<Entry>,
    ended: HashMap<ShareId, CancellationToken>,
}

impl Shares {
    /// The shares kept in `run_dir/shares.json` (none when it is absent; an unreadable
    /// file is an error, so no revoked share comes back by accident).
    pub fn load(run_dir: &std::path::Path) -> std::io::Result<Self> {
        let path = run_dir.join("shares.json");
        let entries: Vec<Entry> = match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::other(format!("{} is not a share list: {e}", path.display()))
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(e),
        };
        let ended = entries
            .iter()
            .map(|e| (e.id.clone(), CancellationToken::new()))
            .collect();
        Ok(Self {
            path,
            inner: Mutex::new(Inner { entries, ended }),
        })
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn save(&self, entries: &[Entry]) -> std::io::Result<()> {
        let tmp = self.path.with_extension("json.tmp");
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&serde_json::to_vec(entries).map_err(std::io::Error::other)?)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &self.path)
    }

    /// Mints a share as `mint` asks; the token is in the answer only.
    pub fn mint(&self, mint: &ShareMint) -> Result<ShareGrant, ShareStoreError> {
        if mint.scopes.is_empty() {
            return Err(ShareStoreError::Bad(
                "a share needs at least one scope".into(),
            ));
        }
        if mint.ttl_ms == 0 || mint.ttl_ms > MAX_TTL_MS {
            return Err(ShareStoreError::Bad(format!(
                "ttl_ms {} is outside 1..={MAX_TTL_MS} (30 days)",
                mint.ttl_ms
            )));
        }
        let token = ShareToken::generate()?;
        let now = now_millis();
        let entry = Entry {
            id: ShareId::generate()?,
            hash: token.hash(),
            scopes: normalize_scopes(&mint.scopes),
            created_at_ms: now,
            expires_at_ms: now.saturating_add(mint.ttl_ms),
        };
        let mut inner = self.inner();
        inner.entries.retain(|e| e.expires_at_ms > now);
        if inner.entries.len() >= MAX_SHARES {
            return Err(ShareStoreError::Bad(format!(
                "this box has {MAX_SHARES} live shares already: revoke one first"
            )));
        }
        let mut entries = inner.entries.clone();
        entries.push(entry.clone());
        self.save(&entries)?;
        inner.entries = entries;
        inner
            .ended
            .insert(entry.id.clone(), CancellationToken::new());
        Ok(ShareGrant {
            info: info(&entry),
            token,
        })
    }

    /// The live shares, oldest first.
    pub fn list(&self) -> Vec<ShareInfo> {
        let now = now_millis();
        self.inner()
            .entries
            .iter()
            .filter(|e| e.expires_at_ms > now)
            .map(info)
            .collect()
    }

    /// Revokes share `id`: its token is refused from now on and what it opened ends.
    /// `false` when there is no such share.
    pub fn revoke(&self, id: &ShareId) -> Result<bool, ShareStoreError> {
        let mut inner = self.inner();
        if !inner.entries.iter().any(|e| &e.id == id) {
            return Ok(false);
        }
        let entries: Vec<Entry> = inner
            .entries
            .iter()
            .filter(|e| &e.id != id)
            .cloned()
            .collect();
        self.save(&entries)?;
        inner.entries = entries;
        if let Some(t) = inner.ended.remove(id) {
            t.cancel();
        }
        tracing::info!(share = %id, "share revoked");
        Ok(true)
    }

    /// The live share whose token is `presented`, if any.
    pub fn check(&self, presented: &str) -> Option<Grant> {
        let token = ShareToken::parse(presented).ok()?;
        let hash = token.hash();
        let now = now_millis();
        let inner = self.inner();
        let entry = inner.entries.iter().find(|e| {
            constant_time_eq::constant_time_eq(e.hash.as_bytes(), hash.as_bytes())
                && e.expires_at_ms > now
        })?;
        Some(Grant {
            id: entry.id.clone(),
            scopes: entry.scopes.clone(),
            ended: inner.ended.get(&entry.id)?.clone(),
        })
    }

    /// Forgets expired shares and ends what they opened.
    pub fn expire(&self) {
        let now = now_millis();
        let mut inner = self.inner();
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = inner
            .entries
            .iter()
            .cloned()
            .partition(|e| e.expires_at_ms <= now);
        if gone.is_empty() {
            return;
        }
        if let Err(e) = self.save(&kept) {
            tracing::warn!("cannot write the share list: {e}");
        }
        inner.entries = kept;
        for e in gone {
            if let Some(t) = inner.ended.remove(&e.id) {
                t.cancel();
            }
            tracing::info!(share = %e.id, "share expired");
        }
    }

    /// Runs [`Shares::expire`] every [`EXPIRY_TICK`] until `stop`.
    pub async fn watch(self: Arc<Self>, stop: CancellationToken) {
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(EXPIRY_TICK) => self.expire(),
            }
        }
    }
}

fn info(e: &Entry) -> ShareInfo {
    ShareInfo {
        id: e.id.clone(),
        scopes: e.scopes.clone(),
        created_at_ms: e.created_at_ms,
        expires_at_ms: e.expires_at_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mint(shares: &Shares, ttl_ms: u64) -> ShareGrant {
        shares
            .mint(&ShareMint {
                scopes: vec![Scope::AttachRead],
                ttl_ms,
            })
            .expect("mint")
    }

    #[test]
    fn a_share_survives_a_restart_hashed_and_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let grant = mint(&Shares::load(dir.path()).expect("load"), 60_000);
        let file = dir.path().join("shares.json");
        let text = std::fs::read_to_string(&file).expect("read");
        assert!(!text.contains(grant.token.expose()), "the token is on disk");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).expect("meta").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = Shares::load(dir.path()).expect("reload");
        let g = again.check(grant.token.expose()).expect("accepted");
        assert_eq!(g.id, grant.info.id);
        assert!(g.may(Scope::AttachRead) && !g.may(Scope::AttachWrite));
        assert!(again.check("abxs_nope").is_none());
    }

    #[test]
    fn revoking_and_expiry_refuse_the_token_and_end_what_it_opened() {
        let dir = tempfile::tempdir().expect("tempdir");
        let shares = Shares::load(dir.path()).expect("load");
        let a = mint(&shares, 60_000);
        let held = shares.check(a.token.expose()).expect("accepted");
        assert!(shares.revoke(&a.info.id).expect("revoke"));
        assert!(held.ended.is_cancelled());
        assert!(shares.check(a.token.expose()).is_none());
        assert!(Shares::load(dir.path())
            .expect("reload")
            .check(a.token.expose())
            .is_none());
        assert!(!shares.revoke(&a.info.id).expect("again"));

        let b = mint(&shares, 1);
        std::thread::sleep(Duration::from_millis(5));
        assert!(
            shares.check(b.token.expose()).is_none(),
            "expired yet accepted"
        );
        let c = mint(&shares, 60_000);
        let held = shares.check(c.token.expose()).expect("accepted");
        shares.expire();
        assert!(!held.ended.is_cancelled());
        assert_eq!(shares.list().len(), 1);
        assert!(shares
            .mint(&ShareMint {
                scopes: vec![],
                ttl_ms: 1
            })
            .is_err());
    }
}
