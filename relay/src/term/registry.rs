//! [`Terms`]: the registry of this relay run's terms. It opens them (checking the
//! session, or starting a shell session through the ctl daemon), and its reaper ends a
//! term whose viewer has been gone longer than its keep window, then forgets it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::ctl::{CtlRequest, CtlResponse, SessionSpec};
use agentbox_protocol::term::{
    is_term_id, new_term_id, valid_term_name, SessionName, TermEnd, TermInfo, TermOpen,
    DEFAULT_KEEP_MS, MAX_KEEP_MS,
};
use agentbox_protocol::ErrorCode;
use axum::http::StatusCode;
use tokio_util::sync::CancellationToken;

use super::viewer::{self, Term};
use crate::http::{internal, ApiError};
use crate::share::Caller;
use agentbox_protocol::share::Scope;

/// Terms open at once, over every viewer.
pub const MAX_TERMS: usize = 32;
/// Terms one share may hold open at once (so a teammate cannot take every term).
pub const MAX_TERMS_PER_SHARE: usize = 4;
/// How long an ended term stays readable for a viewer that was cut just before the end.
const ENDED_LINGER: Duration = Duration::from_secs(60);

/// Every term of this relay run.
pub struct Terms {
    map: Mutex<HashMap<String, Arc<Term>>>,
    run_dir: PathBuf,
    workspace: PathBuf,
    /// Cancelled when the relay stops: streams end and the reaper ends every term.
    shutdown: CancellationToken,
}

impl Terms {
    /// A registry for the tmux server under `run_dir` (`tmux.sock`, as `agentbox-ctl`
    /// runs it); shells start in `workspace`; `shutdown` is cancelled when the relay
    /// stops.
    pub fn new(run_dir: PathBuf, workspace: PathBuf, shutdown: CancellationToken) -> Self {
        Self {
            map: Mutex::new(HashMap::new()),
            run_dir,
            workspace,
            shutdown,
        }
    }

    /// Cancelled when the relay stops.
    pub fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Term>>> {
        self.map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tmux_socket(&self) -> PathBuf {
        self.run_dir.join("tmux.sock")
    }

    /// The term `id`, or a `404` a viewer knows to re-attach after.
    pub fn get(&self, id: &str) -> Result<Arc<Term>, ApiError> {
        let found = is_term_id(id)
            .then(|| self.map().get(id).cloned())
            .flatten();
        let term = found.ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no term `{id}` (it ended, or the relay restarted)"),
            )
        })?;
        term.touch();
        Ok(term)
    }

    /// Term `id` as `caller` may reach it: the owner reaches every term, a share only the
    /// terms it opened (another's is a `404`, as if it did not exist).
    pub fn get_for(&self, id: &str, caller: &Caller) -> Result<Arc<Term>, ApiError> {
        let term = self.get(id)?;
        match caller.grant() {
            Some(g) if term.spec.opener.as_ref() != Some(&g.id) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no term `{id}` (it ended, or the relay restarted)"),
            )),
            _ => Ok(term),
        }
    }

    /// Every term `caller` may reach.
    pub fn list(&self, caller: &Caller) -> Vec<TermInfo> {
        let opener = caller.grant().map(|g| &g.id);
        let mut all: Vec<TermInfo> = self
            .map()
            .values()
            .filter(|t| opener.is_none() || t.spec.opener.as_ref() == opener)
            .map(|t| t.info())
            .collect();
        all.sort_by(|a, b| a.id.cmp(&b.id));
        all
    }

    /// Opens a viewer as `open` asks, for `caller`: a share without `attach:write` gets a
    /// read-only viewer and no new shell; a share's terms end when it is revoked or
    /// expires.
    pub async fn open(
        self: &Arc<Self>,
        mut open: TermOpen,
        caller: &Caller,
    ) -> Result<Arc<Term>, ApiError> {
        if !caller.may(Scope::AttachWrite) {
            if open.shell {
                return Err(Caller::refused(Scope::AttachWrite, "starting a shell"));
            }
            open.read_only = true;
        }
        let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::BadRequest, m);
        if !open.size.is_valid() {
            return Err(bad(format!(
                "terminal size {}x{} is out of range (1-1000 each)",
                open.size.cols, open.size.rows
            )));
        }
        let term_name = open.term.unwrap_or_else(|| "xterm-256color".into());
        if !valid_term_name(&term_name) {
            return Err(bad("TERM must be 1-64 of letters, digits, `._+-`".into()));
        }
        let keep_ms = open.keep_ms.unwrap_or(DEFAULT_KEEP_MS);
        if keep_ms > MAX_KEEP_MS {
            return Err(bad(format!(
                "keep_ms {keep_ms} is over the limit of {MAX_KEEP_MS}"
            )));
        }
        if let Some(g) = caller.grant() {
            let mine = self
                .map()
                .values()
                .filter(|t| t.spec.opener.as_ref() == Some(&g.id) && t.log.summary().3.is_none())
                .count();
            if mine >= MAX_TERMS_PER_SHARE {
                return Err(ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorCode::BadRequest,
                    format!("a share opens at most {MAX_TERMS_PER_SHARE} terminals at once: detach one first"),
                ));
            }
        }
        if self.map().len() >= MAX_TERMS {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorCode::BadRequest,
                format!("{MAX_TERMS} terminals are open in this box already"),
            ));
        }
        let session = if open.shell {
            self.start_shell(open.session).await?
        } else {
            self.pick_session(open.session).await?
        };
        let id = new_term_id().map_err(internal)?;
        let spec = viewer::Spec {
            id: id.clone(),
            session,
            size: open.size,
            term: term_name,
            read_only: open.read_only,
            keep: Duration::from_millis(keep_ms),
            opener: caller.grant().map(|g| g.id.clone()),
        };
        let term = Term::start(spec, &self.tmux_socket(), &self.workspace)
            .map_err(|e| internal(format!("cannot start tmux attach: {e}")))?;
        self.map().insert(id.to_string(), term.clone());
        if let Some(grant) = caller.grant() {
            let (terms, ended, id) = (self.clone(), grant.ended.clone(), id.to_string());
            tokio::spawn(async move {
                tokio::select! {
                    () = ended.cancelled() => {
                        tracing::info!(term = %id, "term ended: its share was revoked or expired");
                        let _ = terms.close(&id);
                    }
                    () = terms.shutdown.cancelled() => {}
                }
            });
        }
        Ok(term)
    }

    /// The session to view: the one named (it must exist), or the only one.
    async fn pick_session(&self, wanted: Option<SessionName>) -> Result<SessionName, ApiError> {
        let sessions = self.sessions().await;
        let names = || {
            if sessions.is_empty() {
                "the box has no session".to_string()
            } else {
                let names: Vec<&str> = sessions.iter().map(SessionName::as_str).collect();
                format!("sessions: {}", names.join(", "))
            }
        };
        match wanted {
            Some(s) if sessions.contains(&s) => Ok(s),
            Some(s) => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!("no session named `{s}` ({})", names()),
            )),
            None if sessions.len() == 1 => Ok(sessions[0].clone()),
            None => Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                ErrorCode::BadRequest,
                format!("name the session to attach to ({})", names()),
            )),
        }
    }

    /// Session names on the box's tmux server (none when it is not running; a name tmux
    /// lists that is no [`SessionName`] was not made by agentbox and is left out).
    async fn sessions(&self) -> Vec<SessionName> {
        let out = tokio::process::Command::new("tmux")
            .arg("-S")
            .arg(self.tmux_socket())
            .args(["list-sessions", "-F", "#{session_name}"])
            .output()
            .await;
        match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| SessionName::try_from(l).ok())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Starts a login shell in a new session through the ctl daemon.
    async fn start_shell(&self, name: Option<SessionName>) -> Result<SessionName, ApiError> {
        let name = match name {
            Some(n) => n,
            None => {
                let taken = self.sessions().await;
                (1..=MAX_TERMS + 1)
                    .filter_map(|i| SessionName::try_from(format!("shell-{i}")).ok())
                    .find(|n| !taken.contains(n))
                    .map_or_else(|| SessionName::try_from("shell"), Ok)
                    .map_err(|e| internal(e.to_string()))?
            }
        };
        let shell = std::env::var("SHELL")
            .ok()
            .filter(|s| s.starts_with('/'))
            .unwrap_or_else(|| "/bin/bash".into());
        let spec = SessionSpec {
            name: name.clone(),
            cwd: None,
            argv: vec![shell, "-l".into()],
            env: Vec::new(),
            ends_with_command: true,
            agent: None,
        };
        match crate::ctl_link::call(&self.run_dir, CtlRequest::SessionStart(spec)).await {
            Ok(CtlResponse::Sessions(_)) => Ok(name),
            Ok(CtlResponse::Error(e)) => Err(ApiError::new(
                StatusCode::CONFLICT,
                e.code,
                format!("cannot start a shell session: {}", e.message),
            )),
            Ok(other) => Err(internal(format!(
                "the box supervisor answered {other:?} to a session start"
            ))),
            Err(e) => Err(ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Internal,
                format!("cannot reach the box supervisor to start a shell: {e}"),
            )),
        }
    }

    /// Ends and forgets term `id`.
    pub fn close(&self, id: &str) -> Result<(), ApiError> {
        let term = self.get(id)?;
        term.stop(TermEnd::Closed);
        self.map().remove(id);
        Ok(())
    }

    /// Ends terms whose viewer stayed away past their keep window, and forgets ended
    /// ones nobody reads, every second until the relay stops; then ends them all.
    pub async fn reap(self: Arc<Self>) {
        let stop = self.shutdown.clone();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                () = tokio::time::sleep(Duration::from_secs(1)) => {}
            }
            let mut map = self.map();
            map.retain(|_, term| {
                if term.has_viewer() {
                    return true;
                }
                let ended = term.log.summary().3.is_some();
                if ended {
                    return term.idle_for() < ENDED_LINGER;
                }
                if term.idle_for() > term.spec.keep {
                    term.stop(TermEnd::Expired);
                }
                true
            });
        }
        for term in self.map().drain().map(|(_, t)| t) {
            term.stop(TermEnd::Closed);
        }
    }
}
