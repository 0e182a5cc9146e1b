//! The box status snapshot: what the host shows for a box in `agentbox list|status`.

use serde::{Deserialize, Serialize};

use crate::ctl::{SessionInfo, UnitStatus};
use crate::EpochMillis;

/// Version of the [`BoxStatus`] JSON shape. Fields are only ever added.
pub const BOX_STATUS_SCHEMA: u32 = 1;

/// A point-in-time view of a box, served by the relay (`GET /v1/status`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BoxStatus {
    /// [`BOX_STATUS_SCHEMA`].
    pub schema: u32,
    /// `AGENTBOX_BOX_NAME`.
    pub box_name: Option<String>,
    /// When the snapshot was taken.
    pub generated_at_ms: EpochMillis,
    /// The ctl daemon's units (empty when the daemon is unreachable).
    pub units: Vec<UnitStatus>,
    /// The tmux sessions.
    pub sessions: Vec<SessionInfo>,
    /// Set when the daemon could not be reached or its config is broken.
    pub problem: Option<String>,
}
