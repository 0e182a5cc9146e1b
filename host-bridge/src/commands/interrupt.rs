//! Ctrl-C (SIGINT) or SIGTERM during a command that makes something: the rollback it
//! runs on failure runs on the signal too, then the process exits 130.
//!
//! [`arm`] starts a thread that waits for either signal. The command brackets each step
//! that changes what exists (a record, a directory, processes) with [`step`]; the signal
//! thread takes the same lock before it rolls back and never gives it back (it exits),
//! so a rollback never runs in the middle of a step, and no step runs after it. Steps
//! that only wait (an upload, `wait-ready`) are left unbracketed: the rollback ends the
//! processes they wait on.

use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Held by a step that changes what exists, and for good by the rollback of a signal.
static STEPS: Mutex<()> = Mutex::new(());

/// The rollback the signal thread runs, while armed.
type Rollback = Box<dyn FnOnce() + Send>;

/// Brackets a step that a rollback must not interleave with.
pub fn step() -> MutexGuard<'static, ()> {
    STEPS.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs `f` as one step (see [`step`]).
pub fn step_of<T>(f: impl FnOnce() -> T) -> T {
    let _step = step();
    f()
}

/// The armed rollback; dropping it (or [`Armed::disarm`]) leaves a later signal only
/// exiting 130, as the default action would.
pub struct Armed {
    rollback: Arc<Mutex<Option<Rollback>>>,
}

impl Armed {
    /// The command finished (or rolled back by itself): nothing to undo any more.
    pub fn disarm(&self) {
        self.rollback
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
    }
}

impl Drop for Armed {
    fn drop(&mut self) {
        self.disarm();
    }
}

/// From now on SIGINT and SIGTERM run `rollback` (at most once, between steps) and exit
/// 130. `what` names what was undone in the message printed.
pub fn arm(what: String, rollback: impl FnOnce() + Send + 'static) -> anyhow::Result<Armed> {
    use tokio::signal::unix::{signal, SignalKind};
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    // The handlers are in place when this returns, not when the thread gets to run.
    let (mut int, mut term) = {
        let _entered = runtime.enter();
        (
            signal(SignalKind::interrupt())?,
            signal(SignalKind::terminate())?,
        )
    };
    let armed = Armed {
        rollback: Arc::new(Mutex::new(Some(Box::new(rollback)))),
    };
    let shared = Arc::clone(&armed.rollback);
    std::thread::Builder::new()
        .name("interrupt".into())
        .spawn(move || {
            runtime.block_on(async {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            });
            // Wait for the step under way to finish, then keep the lock until the exit.
            std::mem::forget(step());
            let pending = shared.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(rollback) = pending {
                eprintln!("agentbox: interrupted: removing {what}");
                rollback();
            } else {
                eprintln!("agentbox: interrupted");
            }
            std::process::exit(130);
        })?;
    Ok(armed)
}
