//! The host bridge daemon: one per `AGENTBOX_HOME` (a `flock` on `bridge.lock`). It
//! long-polls every ready box's relay, runs what they ask concurrently (bounded per box),
//! records each completed request id with its outcome before answering — so a
//! re-delivered request gets the recorded answer instead of running twice — and keeps an
//! audit log. The host policy ([`policy`]) decides what runs unasked, what waits for
//! `agentbox approve` (without holding up the box's other requests) and what is refused.
//!
//! - `daemon`: the lock, start/stop, the main loop that starts pollers.
//! - `poll`: one long-poll loop per box; `request`: one request from lease to answer.
//! - `shared`: what pollers and handlers share. [`policy`]: what runs, waits or is
//!   refused. [`exec`]: carrying a request out. [`copy`]: landing copies on the host.
//!   [`journal`]: the host's records (completed requests, approvals, audit).
//!   [`notices`]: each box's budget of desktop notifications.
//!   [`activity`]: keeps a Daytona box from its auto-stop while an agent works.

pub mod activity;
pub mod copy;
mod daemon;
pub mod exec;
pub mod journal;
pub mod notices;
pub mod policy;
mod poll;
mod request;
mod shared;

pub use daemon::{ensure_started, lock_path, run, running_pid, stop};
