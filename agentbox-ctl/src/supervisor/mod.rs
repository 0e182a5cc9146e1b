//! The supervisor: one task that owns every unit's state.
//!
//! Commands (from socket clients) and events (a process exited, a probe passed, a backoff
//! timer fired) arrive on channels and are handled one at a time, so the state machine
//! has no locks. Every launch bumps the unit's *generation*; an event from an older
//! generation is ignored, which is what makes stop/restart/reload race-free. After each
//! step the scheduler starts whatever became startable, and a fresh status snapshot is
//! published on a `watch` channel for `status` and `wait-ready`.
//!
//! - `actor`: the [`Supervisor`] task, its state machine and scheduler.
//! - `handle`: the [`Command`]s it takes and the [`Handle`] that sends them.
//! - `unit`: one unit's bookkeeping and status; `reload`: a new config reconciled with
//!   the running units.
//! - [`process`]: spawning into a process group, logging, ending the group.
//! - [`groups`]: the ledger of unit process groups a killed daemon leaves to the next.
//! - [`probe`]: readiness probes; [`runonce`]: `run_once` markers and checks.

mod actor;
pub mod groups;
mod handle;
pub mod probe;
pub mod process;
mod reload;
pub mod runonce;
mod unit;

pub use actor::Supervisor;
pub use handle::{Command, Handle, Reply};
