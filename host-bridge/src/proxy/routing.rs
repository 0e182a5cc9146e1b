//! From a host name to a box's service: `<service>.<box>.localhost` and `<box>.localhost`
//! (the default service), parsed and checked with the CLI's rules for names, then looked up
//! in this home's box records at each connection, so the URL stays the same when the box
//! is stopped and started (a docker box's published port changes then).
//!
//! Where it leads: a local or docker box's WebProxy, with the Host the WebProxy routes by
//! (`<service>.localhost`, or `localhost` for the default); a Daytona box's preview URL of
//! the service's port (8080, its WebProxy, for the default) with the preview token.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::home::Home;
use crate::provider::AnyBox;
use crate::state::State;

/// A box and one of its services, as a host name names them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Route {
    /// The box (lowercase, as the host name has it).
    pub box_name: String,
    /// The service; `None` for the box's default service.
    pub service: Option<String>,
}

impl Route {
    /// The host name of this route, without a port.
    pub fn host(&self) -> String {
        match &self.service {
            Some(s) => format!("{s}.{}.localhost", self.box_name),
            None => format!("{}.localhost", self.box_name),
        }
    }
}

/// Why a host name or route leads nowhere; each is an answer page of its own.
#[derive(Debug, thiserror::Error)]
pub enum RouteError {
    /// The host name is not `[<service>.]<box>.localhost`.
    #[error("`{0}` is not an agentbox address: use https://<service>.<box>.localhost or https://<box>.localhost")]
    BadHost(String),
    /// No box of this name.
    #[error("there is no box `{0}` on this machine (see `agentbox list`)")]
    UnknownBox(String),
    /// The box has no such service.
    #[error(
        "box `{box_name}` has no exposed service `{service}` (see `agentbox services {box_name}`)"
    )]
    UnknownService {
        /// The box.
        box_name: String,
        /// The service asked for.
        service: String,
    },
    /// The box is not running or cannot be reached.
    #[error(
        "box `{box_name}` cannot be reached: {why} (is it running? `agentbox start {box_name}`)"
    )]
    Unreachable {
        /// The box.
        box_name: String,
        /// Why.
        why: String,
    },
}

impl RouteError {
    /// The HTTP status the proxy answers with.
    pub fn status(&self) -> u16 {
        match self {
            Self::BadHost(_) => 400,
            Self::UnknownBox(_) | Self::UnknownService { .. } => 404,
            Self::Unreachable { .. } => 502,
        }
    }
}

/// A box name as `agentbox create` accepts it (lowercase here: host names are).
fn valid_box(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && !b.iter().all(u8::is_ascii_digit)
}

/// A unit name as agentbox.yaml accepts it (letters, digits, `_`, `-`).
fn valid_service(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

/// The route of `host` (a Host header, `:authority` or SNI name, with or without a port).
pub fn parse_host(host: &str) -> Result<Route, RouteError> {
    let bad = || RouteError::BadHost(crate::text::shown(host));
    let name = match host.rsplit_once(':') {
        Some((name, port)) if !port.is_empty() && port.bytes().all(|c| c.is_ascii_digit()) => name,
        Some(_) => return Err(bad()),
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase();
    let rest = name.strip_suffix(".localhost").ok_or_else(bad)?;
    let labels: Vec<&str> = rest.split('.').collect();
    match labels.as_slice() {
        [b] if valid_box(b) => Ok(Route {
            box_name: (*b).to_string(),
            service: None,
        }),
        [s, b] if valid_service(s) && valid_box(b) => Ok(Route {
            box_name: (*b).to_string(),
            service: Some((*s).to_string()),
        }),
        _ => Err(bad()),
    }
}

/// Where a route's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Upstream {
    /// A WebProxy on this machine (`http://127.0.0.1:P`), reached with Host `host`.
    Web {
        /// `http://127.0.0.1:P`.
        base: String,
        /// The Host header the WebProxy routes by.
        host: String,
    },
    /// Daytona's preview proxy: the port's preview URL and the token it wants.
    Preview {
        /// `https://{port}-{sandbox}.{domain}`.
        base: String,
        /// The preview token (in [`crate::daytona::PREVIEW_TOKEN_HEADER`]).
        token: String,
    },
}

/// A box's exposed services: name → (port, default).
type Services = HashMap<String, (u16, bool)>;

/// How long a box's list of services is used before it is asked again.
const SERVICES_FRESH: Duration = Duration::from_secs(5);

/// Looks routes up in one home's records (with each box's services remembered for a few
/// seconds: asking a box costs a command in it).
pub struct Resolver {
    home: Home,
    services: Mutex<HashMap<String, (Instant, Services)>>,
}

impl Resolver {
    /// A resolver of `home`'s boxes.
    pub fn new(home: Home) -> Self {
        Self {
            home,
            services: Mutex::default(),
        }
    }

    /// Where `route` leads now. Blocking (it reads the records and may ask the box).
    pub fn resolve(&self, route: &Route) -> Result<Upstream, RouteError> {
        let unreachable = |why: &dyn std::fmt::Display| RouteError::Unreachable {
            box_name: route.box_name.clone(),
            why: crate::text::shown(&why.to_string()),
        };
        let records = State::open(&self.home.state_db())
            .and_then(|s| s.all())
            .map_err(|e| unreachable(&e))?;
        let record = records
            .into_iter()
            .find(|r| r.name.eq_ignore_ascii_case(&route.box_name))
            .ok_or_else(|| RouteError::UnknownBox(route.box_name.clone()))?;
        let b = AnyBox::open(&record).map_err(|e| unreachable(&format!("{e:#}")))?;
        let port = match &route.service {
            None => 8080,
            Some(service) => {
                let services = self.services_of(&record.name, &b, false)?;
                match services.get(service.as_str()) {
                    Some((port, _)) => *port,
                    None => {
                        // A service added since: ask once more before saying no.
                        let services = self.services_of(&record.name, &b, true)?;
                        services
                            .get(service.as_str())
                            .map(|(p, _)| *p)
                            .ok_or_else(|| RouteError::UnknownService {
                                box_name: record.name.clone(),
                                service: service.clone(),
                            })?
                    }
                }
            }
        };
        match &b {
            AnyBox::Docker(d) => Ok(Upstream::Web {
                base: d.url(None).map_err(|e| unreachable(&format!("{e:#}")))?,
                host: web_host(route.service.as_deref()),
            }),
            AnyBox::Local(l) => Ok(Upstream::Web {
                base: l
                    .web_url(None)
                    .map_err(|e| unreachable(&format!("{e:#}")))?,
                host: web_host(route.service.as_deref()),
            }),
            AnyBox::Daytona(_) => preview(self.home.root(), &record.name, port)
                .map_err(|e| unreachable(&format!("{e:#}"))),
        }
    }

    /// Forgets what was remembered of `box_name` (its services), after a failure.
    pub fn forget(&self, box_name: &str) {
        if let Ok(mut s) = self.services.lock() {
            s.retain(|k, _| !k.eq_ignore_ascii_case(box_name));
        }
    }

    fn services_of(&self, name: &str, b: &AnyBox, fresh: bool) -> Result<Services, RouteError> {
        if !fresh {
            if let Some((at, s)) = self.services.lock().ok().and_then(|m| m.get(name).cloned()) {
                if at.elapsed() < SERVICES_FRESH {
                    return Ok(s);
                }
            }
        }
        let out = b
            .ctl(&["status", "--json"])
            .map_err(|e| RouteError::Unreachable {
                box_name: name.to_string(),
                why: format!("{e:#}"),
            })?;
        let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        let services: Services = status["units"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|u| {
                let port = u16::try_from(u["expose"]["port"].as_u64()?).ok()?;
                let default = u["expose"]["default"].as_bool().unwrap_or(false);
                Some((u["name"].as_str()?.to_ascii_lowercase(), (port, default)))
            })
            .collect();
        if let Ok(mut m) = self.services.lock() {
            m.insert(name.to_string(), (Instant::now(), services.clone()));
        }
        Ok(services)
    }
}

/// The Host a WebProxy routes to `service` by (its first label), or to its default.
fn web_host(service: Option<&str>) -> String {
    match service {
        Some(s) => format!("{s}.localhost"),
        None => "localhost".to_string(),
    }
}

/// The preview URL of `port` of Daytona box `name` and its token.
fn preview(home: &std::path::Path, name: &str, port: u16) -> anyhow::Result<Upstream> {
    use crate::daytona::login::{plain_http_refused, Settings};
    let settings = Settings::load(home)?;
    let client = settings.client()?;
    let sandbox =
        crate::provider::daytona::sandbox_name(name, &crate::provider::docker::home_label(home));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let link = runtime.block_on(client.preview_link(&sandbox, port))?;
    if let Some(why) = plain_http_refused(&link.url, "the preview URL", settings.insecure) {
        anyhow::bail!("{why}");
    }
    Ok(Upstream::Preview {
        base: link.url.trim_end_matches('/').to_string(),
        token: link.token,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_names_route_to_a_service_or_the_default() {
        let r = parse_host("app.my-box.localhost:8443").expect("route");
        assert_eq!(r.box_name, "my-box");
        assert_eq!(r.service.as_deref(), Some("app"));
        let r = parse_host("My-Box.LOCALHOST").expect("route");
        assert_eq!(
            (r.box_name.as_str(), r.service.as_deref()),
            ("my-box", None)
        );
        assert_eq!(r.host(), "my-box.localhost");
    }

    #[test]
    fn other_host_names_are_refused() {
        for host in [
            "localhost",
            "x.localhost.evil.com",
            "a.b.c.localhost",
            "evil.com",
            "app.123.localhost",
            "a%2f.box.localhost",
            "-x.localhost",
            "box.localhost:",
            "box.localhost:8443:1",
            "",
            "a..localhost",
        ] {
            let e = parse_host(host).expect_err(host);
            assert_eq!(e.status(), 400, "{host}");
        }
    }
}
