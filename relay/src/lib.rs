//! `agentbox-relay`: the in-box relay.
//!
//! - [`settings`]: the environment contract (ports, bind address, directories).
//! - [`token`]: the bridge token (`bridge.token`, 256-bit, 0600), compared in constant time.
//! - [`bridge`]: the HTTP API on `AGENTBOX_BRIDGE_PORT` that the host talks to: `GET
//!   /healthz` (no token) and, behind the token, `PUT /v1/seed`.
//! - [`seed`]: checks out an uploaded workspace seed.
//!
//! The WebProxy on `AGENTBOX_WEB_PORT` and the request queue of the bridge are built by
//! the relay and bridge issues.

pub mod bridge;
pub mod seed;
pub mod settings;
pub mod token;

pub use settings::Settings;
