//! `agentbox screen`: the address of a box's screen, the noVNC page of the display its
//! browser runs on (images made with `prepare --browser`, whose ctl daemon runs the
//! built-in service `agentbox-screen` on port 6080). Docker boxes show it through their
//! WebProxy; Daytona boxes through a signed preview link; local boxes have no screen (they
//! share this machine's display, nothing of theirs to isolate or show). A teammate's joined
//! box shows the address its invite carries (scope `url`; [`for_invite`] makes it).

use std::process::ExitCode;
use std::time::Duration;

use anyhow::bail;

use super::context::{ensure_running, Ctx};
use crate::cli::ScreenArgs;
use crate::provider::AnyBox;

/// The ctl's built-in service that serves noVNC.
pub const SERVICE: &str = "agentbox-screen";

/// The port it serves on.
pub const PORT: u16 = 6080;

/// noVNC's page, connecting at once and scaling the screen to the window.
pub const PAGE: &str = "/vnc.html?autoconnect=1&resize=scale";

/// How long a Daytona link lasts when `--ttl` is not given.
const DEFAULT_TTL: Duration = Duration::from_secs(3600);

/// `agentbox screen`.
pub fn screen(ctx: &Ctx, args: &ScreenArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    let name = &record.name;
    if record.is_joined() {
        return joined(&record, args);
    }
    let b = AnyBox::open(&record)?;
    if args.ttl.is_some() && !matches!(b, AnyBox::Daytona(_)) {
        bail!(
            "--ttl is for Daytona preview links; box `{name}` is a {} box",
            record.provider
        );
    }
    if matches!(b, AnyBox::Local(_)) {
        return Err(no_local_screen(name));
    }
    ensure_running(&b, name)?;
    let Some(state) = unit_state(&b, name)? else {
        bail!(
            "box `{name}` has no screen: its image was made without the browser. Run `agentbox prepare --provider {} --browser`, then make the box again (`agentbox destroy {name}`, `agentbox create`)",
            record.provider
        );
    };
    if state != "ready" {
        bail!(
            "the screen of box `{name}` is not up ({SERVICE} is {}); see `agentbox services {name}` and `agentbox logs {name} {SERVICE}`",
            crate::text::shown(&state)
        );
    }
    let address = address(&b, name, args.ttl.unwrap_or(DEFAULT_TTL))?;
    show(name, &record.provider, &address, args)
}

/// The state of box `name`'s screen unit, `None` when it has none (an image made without
/// the browser).
fn unit_state(b: &AnyBox, name: &str) -> anyhow::Result<Option<String>> {
    let out = b.ctl(&["status", "--json"])?;
    if !out.status.success() {
        bail!(
            "cannot read the services of box `{name}`: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    Ok(status["units"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|u| u["name"].as_str() == Some(SERVICE))
        .map(|u| u["state"].as_str().unwrap_or("unknown").to_string()))
}

/// The address of the screen of box `b` (running, with a screen): noVNC's page through
/// the WebProxy on docker, through a signed preview link lasting `ttl` on Daytona.
fn address(b: &AnyBox, name: &str, ttl: Duration) -> anyhow::Result<String> {
    let base = match b {
        AnyBox::Docker(d) => super::url::web_url_of(&d.url(None)?, name, PORT, SERVICE)?,
        AnyBox::Daytona(d) => d.signed_url(PORT, ttl)?,
        AnyBox::Local(_) => return Err(no_local_screen(name)),
    };
    Ok(page_of(&base))
}

/// The screen address `agentbox share` puts in an invite for box `b` (running): `None`
/// for a box without a screen (local, or an image made without the browser). A Daytona
/// link lasts `ttl`.
pub fn for_invite(b: &AnyBox, name: &str, ttl: Duration) -> anyhow::Result<Option<String>> {
    if matches!(b, AnyBox::Local(_)) || unit_state(b, name)?.is_none() {
        return Ok(None);
    }
    address(b, name, ttl).map(Some)
}

/// `agentbox screen` of a joined box: the screen address its invite carries (scope `url`).
fn joined(record: &crate::state::BoxRecord, args: &ScreenArgs) -> anyhow::Result<ExitCode> {
    let name = &record.name;
    if args.ttl.is_some() {
        bail!("box `{name}` is a teammate's box you joined: its screen link lasts as long as its owner's share made it; drop --ttl");
    }
    let invite = super::joined::invite(record)?;
    super::joined::need(
        record,
        &invite,
        agentbox_protocol::share::Scope::Url,
        "its screen",
    )?;
    let Some(address) = invite.screen_url else {
        bail!(
            "the invite of box `{name}` carries no screen: the box has none (its image was made without the browser) or was shared by an older agentbox; ask its owner for a new invite (`agentbox share {}`)",
            invite.box_name
        );
    };
    show(name, &invite.provider, &address, args)
}

/// Prints `address` (as JSON with `--json`) and opens it with `--open`.
fn show(name: &str, provider: &str, address: &str, args: &ScreenArgs) -> anyhow::Result<ExitCode> {
    if args.json {
        println!(
            "{}",
            serde_json::json!({"box": name, "provider": provider, "url": address})
        );
    } else {
        println!("{address}");
    }
    if args.open {
        let program = crate::browser::open(address)?;
        eprintln!("agentbox: opened {address} with {program}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Why a local box has no screen, and what to use instead.
fn no_local_screen(name: &str) -> anyhow::Error {
    anyhow::anyhow!(
        "box `{name}` is a local box: it has no screen of its own (its programs share this machine's display); make a docker or daytona box from an image with the browser (`agentbox prepare --provider docker --browser`)"
    )
}

/// noVNC's page under the service's address `base` (with or without its final `/`). A
/// base with a path of its own (a preview proxy that routes by path) has noVNC's WebSocket
/// under that path too (`&path=`; noVNC's own default is `/websockify` at the root).
fn page_of(base: &str) -> String {
    let root = base.trim_end_matches('/');
    let prefix = reqwest::Url::parse(root)
        .map(|u| u.path().trim_matches('/').to_string())
        .unwrap_or_default();
    if prefix.is_empty() {
        format!("{root}{PAGE}")
    } else {
        format!("{root}{PAGE}&path={prefix}/websockify")
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_page_goes_under_the_root() {
        assert_eq!(
            super::page_of("http://agentbox-screen.localhost:4711/"),
            "http://agentbox-screen.localhost:4711/vnc.html?autoconnect=1&resize=scale"
        );
        assert_eq!(
            super::page_of("https://6080-tok.proxy.example"),
            "https://6080-tok.proxy.example/vnc.html?autoconnect=1&resize=scale"
        );
        assert_eq!(
            super::page_of("https://127.0.0.1:4443/_preview/6080-tok"),
            "https://127.0.0.1:4443/_preview/6080-tok/vnc.html?autoconnect=1&resize=scale&path=_preview/6080-tok/websockify"
        );
    }
}
