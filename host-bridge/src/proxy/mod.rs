//! `agentbox proxy`: the host's HTTPS reverse proxy that gives every box's services the
//! same kind of address on every provider: `https://<service>.<box>.localhost[:port]`, and
//! `https://<box>.localhost` for the box's default service (issue 23).
//!
//! - [`ca`]: the local CA (made once per home; `agentbox proxy trust` installs it).
//! - [`certs`]: leaves for `*.<box>.localhost`, minted by SNI and kept.
//! - [`routing`]: host name → box and service → the upstream, looked up in the box records
//!   at each connection (a restarted docker box's new port is found).
//! - [`forward`]: one browser connection's requests to the upstream: WebSockets spliced,
//!   HTTP/2 from browsers, Daytona's preview token (renewed when refused).
//! - [`daemon`]: one background proxy per `AGENTBOX_HOME` (`proxy.lock`, `proxy.json`).
//! - [`pages`]: its own answers (unknown box 404, box down 502, …).
//! - [`port`]: the port it listens on.
//!
//! It listens on one fixed port of 127.0.0.1 (and ::1): `AGENTBOX_PROXY_PORT` when set,
//! else `proxy.port` of the global config, else 443 when this user may bind it, else
//! [`DEFAULT_PORT`].

pub mod ca;
pub mod certs;
pub mod daemon;
pub mod forward;
pub mod pages;
pub mod port;
pub mod routing;

/// The port used when 443 cannot be bound and neither `AGENTBOX_PROXY_PORT` nor
/// `proxy.port` is set.
pub const DEFAULT_PORT: u16 = 8443;

/// The variable that sets the proxy's port.
pub const PORT_VAR: &str = "AGENTBOX_PROXY_PORT";

/// The address of `route` through a proxy on `port` (`:443` left out).
pub fn url_of(route: &routing::Route, port: u16) -> String {
    if port == 443 {
        format!("https://{}", route.host())
    } else {
        format!("https://{}:{port}", route.host())
    }
}
