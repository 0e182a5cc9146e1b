//! The relay's TCP tunnel API (`/v1/tunnel`): `agentbox port` reaches any TCP port of the
//! box through the bridge port, so the same forward works on every provider (on Daytona
//! through the preview URL, which refuses WebSocket upgrades: the tunnel is plain HTTP).
//!
//! - `POST /v1/tunnel` with a [`TunnelOpen`]: the relay connects to the port on the box's
//!   loopback (127.0.0.1, then ::1) — never another address. A refused or unreachable
//!   target is a `502` with the relay's JSON error. Otherwise the answer is a stream of
//!   [`crate::exec::ExecFrame`]s: `Started` (its `id` names the tunnel, `pid` is 0), then
//!   `Stdout` with the target's bytes, `Heartbeat` every [`crate::exec::HEARTBEAT_MS`] of
//!   silence, and `Exit` (code 0) once the target closed its side.
//! - `POST /v1/tunnel/{id}/input`: the next bytes for the target, at
//!   [`crate::files::OFFSET_HEADER`] (a resent piece is skipped, a gap is `409`);
//!   [`crate::exec::EOF_HEADER`]` = 1` closes the target's read side.
//!
//! Dropping the answer's stream closes the connection to the target.

use serde::{Deserialize, Serialize};

/// `POST /v1/tunnel`: which port of the box's loopback to connect to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TunnelOpen {
    /// The TCP port (1–65535).
    pub port: u16,
}

impl TunnelOpen {
    /// Refuses port 0.
    pub fn validate(&self) -> Result<(), String> {
        if self.port == 0 {
            Err("port 0 is not a TCP port to connect to (1 to 65535)".into())
        } else {
            Ok(())
        }
    }
}

/// The path of a tunnel's input.
pub fn input_path(id: &crate::files::TransferId) -> String {
    format!("/v1/tunnel/{}/input", id.as_str())
}

#[cfg(test)]
mod tests {
    use super::TunnelOpen;

    #[test]
    fn port_zero_is_refused() {
        assert!(TunnelOpen { port: 0 }.validate().is_err());
        assert!(TunnelOpen { port: 80 }.validate().is_ok());
        assert_eq!(
            serde_json::to_string(&TunnelOpen { port: 8000 }).unwrap_or_default(),
            r#"{"port":8000}"#
        );
    }
}
