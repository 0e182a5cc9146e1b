//! Addresses of a box for this machine: `url` (a service through the host's HTTPS proxy,
//! or `--direct` the provider's WebProxy, service or bridge address).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};

use super::context::{ensure_running, Ctx};
use crate::cli::UrlArgs;
use crate::provider::AnyBox;
use crate::proxy::routing::{parse_host, Route};

/// How long a Daytona preview link lasts when `--ttl` is not given.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// `agentbox url`: prints the address, and with `--open` opens it in the browser.
pub fn url(ctx: &Ctx, args: &UrlArgs) -> anyhow::Result<ExitCode> {
    let (port, ttl) = (args.port, args.ttl);
    let record = ctx.resolve(args.target.as_deref())?;
    if record.is_joined() {
        return super::joined::url(&record);
    }
    let b = AnyBox::open(&record)?;
    if ttl.is_some() && !matches!(b, AnyBox::Daytona(_)) {
        bail!(
            "--ttl is for Daytona preview links; box `{}` is a {} box",
            record.name,
            record.provider
        );
    }
    let direct = args.direct || ttl.is_some() || port == Some(8788);
    let address = if direct {
        address(&b, &record.name, port, ttl)?
    } else {
        match proxied(ctx, &b, &record.name, port) {
            Ok(Some(a)) => a,
            // A port no service exposes has no name the proxy could route: its address is
            // the provider's (a local box's own port on this machine).
            Ok(None) => address(&b, &record.name, port, ttl)?,
            // The box is fine; only this machine's proxy is not: the direct address still
            // reaches the service, so it is given rather than nothing.
            Err(e) if e.is::<ProxyUnavailable>() => {
                eprintln!("agentbox: {e:#}; the box's direct address follows (`--direct`)");
                address(&b, &record.name, port, ttl)?
            }
            Err(e) => return Err(e),
        }
    };
    println!("{address}");
    if args.open {
        let program = crate::browser::open(&address)?;
        eprintln!("agentbox: opened {address} with {program}");
    }
    Ok(ExitCode::SUCCESS)
}

/// The address through the host's HTTPS proxy (started if needed) of box `name`'s
/// default service (`port` None or 8080) or of the service exposing `port`:
/// `https://[<service>.]<box>.localhost[:<proxy port>]`; None when no service exposes
/// `port`.
pub fn proxied(
    ctx: &Ctx,
    b: &AnyBox,
    name: &str,
    port: Option<u16>,
) -> anyhow::Result<Option<String>> {
    let service = match port {
        None | Some(8080) => None,
        Some(p) => match service_exposing(b, name, p)? {
            Some(s) => Some(s),
            None => return Ok(None),
        },
    };
    let route = Route {
        box_name: name.to_ascii_lowercase(),
        service: service.map(|s| s.to_ascii_lowercase()),
    };
    // The names come from the record and the box: the address is made only of names the
    // proxy routes (one plain label each).
    if parse_host(&route.host()).ok().as_ref() != Some(&route) {
        bail!(
            "`{}` is not a host name the proxy routes; use `agentbox url --direct`",
            crate::text::shown(&route.host())
        );
    }
    let running = crate::proxy::daemon::ensure_started(&ctx.home)
        .map_err(|e| anyhow::Error::new(ProxyUnavailable(format!("{e:#}"))))?;
    Ok(Some(crate::proxy::url_of(&route, running.port)))
}

/// The name of box `name`'s service that exposes `port`, if one does.
fn service_exposing(b: &AnyBox, name: &str, port: u16) -> anyhow::Result<Option<String>> {
    ensure_running(b, name)?;
    let out = b.ctl(&["status", "--json"])?;
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(status["units"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["expose"]["port"].as_u64() == Some(u64::from(port)))
        .and_then(|u| u["name"].as_str())
        .map(str::to_string))
}

/// This machine's HTTPS proxy could not be started (its ports taken by another program,
/// say): the one failure of [`proxied`] after which the direct address is still right.
#[derive(Debug, thiserror::Error)]
#[error("the HTTPS proxy is not available: {0}")]
pub struct ProxyUnavailable(String);

/// The address of box `name`'s WebProxy (`port` None), bridge (8788) or the service
/// exposing `port`, for this machine; a Daytona link lasts `ttl` (default 1h).
pub fn address(
    b: &AnyBox,
    name: &str,
    port: Option<u16>,
    ttl: Option<Duration>,
) -> anyhow::Result<String> {
    Ok(match b {
        AnyBox::Docker(d) => match port {
            None | Some(8080 | 8788) => d.url(port)?,
            // A service port is reached through the WebProxy, by its name.
            Some(p) => {
                let service = service_exposing(b, name, p)?
                    .with_context(|| format!("no service of box `{name}` exposes port {p}"))?;
                web_url_of(&d.url(None)?, name, p, &service)?
            }
        },
        AnyBox::Local(l) => l.web_url(port)?,
        // A signed link: it carries its own token and expires.
        AnyBox::Daytona(b) => b.signed_url(port.unwrap_or(8080), ttl.unwrap_or(DEFAULT_TTL))?,
    })
}

/// The WebProxy address (`web`, `http://127.0.0.1:P`) of `service` on `port` of a docker
/// box: `http://SERVICE.localhost:P`.
pub fn web_url_of(web: &str, name: &str, port: u16, service: &str) -> anyhow::Result<String> {
    // The name comes from the box: it becomes part of a host name only as one plain DNS
    // label, never `evil.com/x?` or escapes.
    let label = !service.is_empty()
        && service.len() <= 63
        && service
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-');
    if !label {
        bail!(
            "box `{name}` names the service on port {port} `{}`, which is not a host name label",
            crate::text::shown(service)
        );
    }
    Ok(web.replacen("127.0.0.1", &format!("{service}.localhost"), 1))
}
