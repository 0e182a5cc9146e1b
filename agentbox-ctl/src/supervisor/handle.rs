//! The supervisor's public face: the [`Command`]s it takes and the [`Handle`] that sends
//! them and reads its status snapshots.

use std::sync::Arc;

use agentbox_protocol::ctl::{ReloadReport, StatusReport, UnitStatus};
use agentbox_protocol::{ErrorCode, ErrorReply};
use tokio::sync::{mpsc, oneshot, watch};

/// Replies carry a status or an error for the client.
pub type Reply<T> = oneshot::Sender<Result<T, ErrorReply>>;

/// Requests to the supervisor.
pub enum Command {
    /// Start a service (honouring its needs) or run a task.
    Start(String, Reply<UnitStatus>),
    /// Stop a unit; replies once it has stopped.
    Stop(String, Reply<UnitStatus>),
    /// Stop then start; replies once it has been started again.
    Restart(String, Reply<UnitStatus>),
    /// Run a task; with `wait`, replies when it has finished.
    RunTask {
        /// Task name.
        name: String,
        /// Ignore run_once.
        force: bool,
        /// Reply when finished rather than when started.
        wait: bool,
        /// Where the status goes.
        reply: Reply<UnitStatus>,
    },
    /// Re-read the config.
    Reload(Reply<ReloadReport>),
    /// Stop everything; replies when every process is gone.
    Shutdown(oneshot::Sender<()>),
}

/// A cheap, cloneable handle to the supervisor task.
#[derive(Clone)]
pub struct Handle {
    pub(super) commands: mpsc::Sender<Command>,
    pub(super) status: watch::Receiver<Arc<StatusReport>>,
}

impl Handle {
    /// Sends a command; `None` when the supervisor has shut down.
    pub async fn send(&self, cmd: Command) -> Option<()> {
        self.commands.send(cmd).await.ok()
    }

    /// Runs a request/reply command.
    pub async fn call<T>(&self, make: impl FnOnce(Reply<T>) -> Command) -> Result<T, ErrorReply> {
        let (tx, rx) = oneshot::channel();
        let gone = || ErrorReply::new(ErrorCode::Internal, "the supervisor is shutting down");
        self.send(make(tx)).await.ok_or_else(gone)?;
        rx.await.map_err(|_| gone())?
    }

    /// The latest status snapshot.
    pub fn status(&self) -> Arc<StatusReport> {
        self.status.borrow().clone()
    }

    /// A receiver that sees every new snapshot.
    pub fn watch(&self) -> watch::Receiver<Arc<StatusReport>> {
        self.status.clone()
    }
}
