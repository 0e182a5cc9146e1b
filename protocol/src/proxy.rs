//! JSON the WebProxy serves: the exposed services, and its error answers.

use serde::{Deserialize, Serialize};

use crate::ctl::UnitState;
use crate::ErrorReply;

/// `GET /_agentbox/services`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExposedServices {
    /// Whether the relay can reach the box supervisor (when not, the list is stale).
    pub supervisor_reachable: bool,
    /// Every exposed service.
    pub services: Vec<ExposedService>,
}

/// One exposed service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ExposedService {
    /// Service name: `NAME.<anything>` in the Host header routes here.
    pub name: String,
    /// Port in the box.
    pub port: u16,
    /// Gets requests whose Host names no service.
    pub default: bool,
    /// Its state.
    pub state: UnitState,
    /// Whether requests are forwarded now (otherwise they are held).
    pub ready: bool,
}

/// The JSON form of a 502/503 from the WebProxy (`Accept: application/json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProxyError {
    /// What went wrong.
    pub error: ErrorReply,
    /// The service the request was for, if one was chosen.
    pub service: Option<String>,
    /// Its state.
    pub state: Option<UnitState>,
    /// Its last log lines.
    pub log_tail: Vec<String>,
}
