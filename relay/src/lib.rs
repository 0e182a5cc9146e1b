//! `agentbox-relay`: the in-box relay.
//!
//! - [`settings`]: the environment contract (ports, bind address, directories).
//! - [`token`]: the bridge token (`bridge.token`, 256-bit, 0600), compared in constant time.
//! - [`routes`]: the HTTP API on `AGENTBOX_BRIDGE_PORT` that the host talks to, put
//!   together: `GET /healthz` (no token) and, behind the token, each route family's
//!   routes — [`bridge`], [`files`], [`term`].
//! - [`http`]: the plumbing those families share: the error answer and the token check.
//! - [`bridge`]: the bridge's own routes: the long-poll, progress and results of box → host
//!   requests, blobs, seed, sync and workspace listings.
//! - [`files`]: resumable, blake3-verified uploads and ranged downloads (`/v1/uploads`,
//!   `/v1/downloads`), landed atomically with `docker cp` semantics.
//! - [`seed`]: checks out an uploaded workspace seed; [`sync`]: applies a later sync
//!   (new host commits, uncommitted changes, untracked files), the box winning conflicts.
//! - [`proxy`]: the WebProxy on `AGENTBOX_WEB_PORT`, forwarding to exposed services.
//! - [`term`]: viewers of the box's tmux sessions (`/v1/terms`) for `agentbox attach`,
//!   over WebSocket or HTTP streaming, resuming from byte offsets after a cut.
//! - [`exec`]: one-off commands for the host (`/v1/exec`), output streamed apart.
//! - [`share`]: scoped, expiring share tokens for teammates (`/v1/shares`), the check of
//!   the routes they open (terminal viewing, `/v1/logs`), and `/v1/logs`.
//! - [`stats`]: the box's CPU, memory, disk and heaviest processes (`/v1/stats`).
//! - [`exec_tty`]: a `/v1/exec` command on a PTY of its own (`exec -t`).
//! - [`ctl_link`]: the live unit table from the ctl daemon (`WatchStatus` on `ctl.sock`).
//!
//! - [`journal`]: box → host requests in SQLite with leases; [`box_api`]: `relay.sock`,
//!   where `agentbox-ctl` submits them and follows their progress.
//!
//! The host side of the bridge (the daemon that polls, runs and answers) is not built yet.

pub mod box_api;
pub mod bridge;
pub mod ctl_link;
pub mod exec;
pub mod exec_tty;
pub mod files;
pub mod host_seen;
pub mod http;
pub mod journal;
pub mod numbered_input;
pub mod outside;
pub mod proxy;
pub mod routes;
pub mod seed;
pub mod settings;
pub mod share;
pub mod stats;
pub mod sync;
pub mod term;
pub mod token;
pub mod tunnel;

pub use settings::Settings;

/// The real git: `AGENTBOX_REAL_GIT`, else `git` from PATH. The box's PATH starts with the
/// `git` shim, which sends fetch/pull/push to the host — never what the relay means.
pub fn real_git() -> std::ffi::OsString {
    std::env::var_os("AGENTBOX_REAL_GIT")
        .filter(|v| !v.is_empty())
        .unwrap_or_else(|| "git".into())
}
