//! What both paths of the proxy share: its settings and per-thread handles ([`Shared`]),
//! the body type, which service a Host routes to, and the hop-by-hop header list.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use agentbox_protocol::ctl::{UnitKind, UnitStatus};
use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use tokio::sync::watch;

use crate::ctl_link::Units;

/// Every response body the proxy produces.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Settings of the proxy.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// How long a request waits for a service that is not ready yet.
    pub hold: Duration,
    /// The run dir (for asking the daemon for log lines).
    pub run_dir: PathBuf,
    /// How long a client may take to send its request head.
    pub header_timeout: Duration,
    /// The bridge token: a request carrying it (`X-Agentbox-Token`) sees services' log
    /// lines on error pages. `None`: nobody does.
    pub token: Option<crate::token::Token>,
}

/// What every connection of one proxy thread shares.
pub(super) struct Shared {
    pub(super) config: ProxyConfig,
    pub(super) units: watch::Receiver<Arc<Units>>,
    /// The pooled client HTTP/2 requests share.
    pub(super) client: Client<HttpConnector, Body>,
}

/// The exposed services.
pub(super) fn exposed(units: &Units) -> impl Iterator<Item = &UnitStatus> {
    units
        .units
        .iter()
        .filter(|u| u.kind == UnitKind::Service && u.expose.is_some())
}

/// The service a Host routes to: `NAME.…` if NAME is exposed, else the default.
pub(super) fn route(units: &Units, host: Option<&str>) -> Option<String> {
    let label = host.and_then(|h| h.split(['.', ':']).next()).unwrap_or("");
    exposed(units)
        .find(|u| u.name.eq_ignore_ascii_case(label))
        .or_else(|| exposed(units).find(|u| u.expose.as_ref().is_some_and(|e| e.default)))
        .map(|u| u.name.clone())
}

/// Headers that belong to one hop, not to the request (lower case). `Upgrade` too,
/// except on the way to an upgrade; the fast path passes a response's
/// `Transfer-Encoding` on with the body it frames.
/// The header that carries the bridge token to the WebProxy (not `Authorization`:
/// Daytona's preview proxy reads that as a Daytona API key). Never forwarded to a service.
pub const TOKEN_HEADER: &str = "x-agentbox-token";

pub(super) const HOP_BY_HOP: [&str; 9] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    // Ours: the bridge token never reaches a service.
    TOKEN_HEADER,
];

#[cfg(test)]
mod tests {
    use super::*;
    use agentbox_protocol::ctl::UnitState;

    fn unit(name: &str, port: u16, default: bool) -> UnitStatus {
        crate::ctl_link::test_units::exposed(name, port, default, UnitState::Ready)
    }

    #[test]
    fn routing_by_first_label_then_default() {
        let units = Units {
            reachable: true,
            units: vec![unit("web", 1, true), unit("api", 2, false)],
        };
        assert_eq!(
            route(&units, Some("api.box.example:8080")).as_deref(),
            Some("api")
        );
        assert_eq!(route(&units, Some("API.x")).as_deref(), Some("api"));
        assert_eq!(
            route(&units, Some("8080-sandbox.proxy.daytona.works")).as_deref(),
            Some("web")
        );
        assert_eq!(
            route(&units, Some("localhost:8080")).as_deref(),
            Some("web")
        );
        assert_eq!(route(&units, None).as_deref(), Some("web"));
        assert_eq!(route(&Units::default(), Some("api.x")), None);
    }
}
