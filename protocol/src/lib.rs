//! `agentbox-protocol`: every type that crosses an agentbox process boundary.
//!
//! The box (`agentbox-ctl`, `agentbox-relay`) and the host (`agentbox`) share only this
//! crate. It holds the message types and the codecs that carry them:
//!
//! - [`frame`]: the length-delimited bincode codec used on every Unix socket, with a
//!   frame-size cap; garbage, oversized or truncated input is an error value.
//! - [`hello`]: the `Hello` handshake that opens every socket connection, and the
//!   version check that turns a mismatch into a message a user can act on.
//! - [`agent`]: what a coding agent in a box is doing (its hooks' reports).
//! - [`ctl`]: `agentbox-ctl` CLI ↔ ctl daemon (unit status, logs, reload, tmux sessions).
//! - [`bridge`]: box → host requests: ctl ↔ relay over `relay.sock` (bincode) and
//!   host ↔ relay over HTTP (JSON poll / lease / progress / result).
//! - [`status`]: the box status snapshot the host reads.
//! - [`stats`]: the relay's stats API (CPU, memory, disk, heaviest processes of a box).
//! - [`proxy`]: the JSON of the WebProxy (exposed services, error answers).
//! - [`files`]: the JSON of the relay's file-transfer API (uploads, downloads, landing).
//! - [`share`]: scoped, expiring share tokens and the invite of `agentbox share` / `join`.
//! - [`part_file`]: receiving into a staging file (hashed, sparse-aware) and serving from one.
//! - [`land`]: putting a verified transfer in place with `docker cp` semantics.
//! - [`listeners`]: who listens on a TCP port (`/proc`), for local boxes sharing ports.
//! - [`sync`]: `agentbox sync` — the sync archive, the digests both sides compare, the report.
//! - [`term`]: the relay's terminal API (a tmux viewer over WebSocket or HTTP streaming).
//! - [`transfer`]: blake3 while streaming, the seed manifest, the hardened tar extractor.
//! - [`exec`]: the relay's command API (a one-off command, its output streamed apart).
//! - [`error`]: the error body shared by every boundary.
//! - [`yaml_guard`]: size, depth and alias-expansion bounds on YAML from the other side.
//! - `names`, `token` (private, re-exported by [`term`] and [`bridge`]): the session-name
//!   check and the random-token generator several modules share.
//! - `logging` (feature `logging`): the `--log-format pretty|json` setup the binaries share.
//! - `closed_pipe` (feature `logging`): a closed stdout/stderr ends a binary quietly.

pub mod agent;
pub mod bridge;
#[cfg(feature = "logging")]
pub mod closed_pipe;
pub mod ctl;
pub mod error;
pub mod exec;
pub mod files;
pub mod frame;
pub mod hello;
pub mod land;
pub mod listeners;
#[cfg(feature = "logging")]
pub mod logging;
mod names;
pub mod part_file;
pub mod proxy;
pub mod share;
pub mod stats;
pub mod status;
pub mod sync;
pub mod term;
mod token;
pub mod transfer;
pub mod tunnel;
pub mod yaml_guard;

pub use error::{ErrorCode, ErrorReply};
pub use frame::{FrameCodec, FrameError, MAX_FRAME_LEN};
pub use hello::{HandshakeError, Hello, VersionMismatch};

/// Version of the wire protocol. Bump it whenever a bincode message changes shape: bincode
/// is positional, so two sides with different message definitions must refuse each other
/// at the handshake instead of misreading each other.
pub const PROTOCOL_VERSION: u32 = 3;

/// Milliseconds since the Unix epoch, the one timestamp representation on every wire.
pub type EpochMillis = u64;

/// The current time as [`EpochMillis`] (0 if the clock is before 1970).
pub fn now_millis() -> EpochMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
