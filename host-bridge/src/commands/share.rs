//! `agentbox share` (mint an invite for a teammate, `--list`, `--revoke`) and `agentbox
//! join` (record a teammate's box from its invite). The invite never carries the bridge
//! token or Daytona credentials: a share token the relay knows by its scopes, and how to
//! reach the relay (docker/local: its loopback URL; Daytona: a signed preview link).
//! What works on a joined box is [`super::joined`]'s.

use std::io::Read as _;
use std::process::ExitCode;
use std::time::Duration;

use agentbox_protocol::share::{
    Invite, RelayAddress, Scope, ShareGrant, ShareId, ShareInfo, ShareMint,
};
use anyhow::{bail, Context as _};

use super::context::{ensure_running, relay_of, Ctx};
use super::joined;
use crate::cli::{JoinArgs, ShareArgs};
use crate::provider::AnyBox;
use crate::transfer::client::Relay;

/// An invite's life when `--ttl` is not given.
const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// The longest a Daytona signed preview link lasts.
const MAX_PREVIEW_TTL: Duration = Duration::from_secs(24 * 3600);
/// The relay's bridge port in a box.
const BRIDGE_PORT: u16 = 8788;
/// The WebProxy's port in a box.
const WEB_PORT: u16 = 8080;

/// `agentbox share`.
pub fn share(ctx: &Ctx, args: &ShareArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(args.target.as_deref())?;
    if record.is_joined() {
        bail!(
            "box `{}` is a teammate's box you joined: only its owner can share it",
            record.name
        );
    }
    let b = AnyBox::open(&record)?;
    ensure_running(&b, &record.name)?;
    let relay = relay_of(&record)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    if args.list {
        let shares: Vec<ShareInfo> =
            runtime.block_on(call(&relay, reqwest::Method::GET, "/v1/shares", None))?;
        return list(&record.name, &shares, args.json);
    }
    if let Some(id) = &args.revoke {
        let id = ShareId::parse(id.trim())?;
        let _: serde_json::Value = runtime.block_on(call(
            &relay,
            reqwest::Method::DELETE,
            &format!("/v1/shares/{id}"),
            None,
        ))?;
        if args.json {
            println!("{}", serde_json::json!({ "revoked": id }));
        }
        eprintln!(
            "revoked share {id} of box `{}`: its token is refused now, and what was opened with it ends within seconds",
            record.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    let ttl = args.ttl.unwrap_or(DEFAULT_TTL);
    let mut scopes = vec![Scope::AttachRead, Scope::Url, Scope::Logs];
    if args.write {
        scopes.push(Scope::AttachWrite);
    }
    let mint = ShareMint {
        scopes,
        ttl_ms: u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX),
    };
    let body = serde_json::to_value(&mint)?;
    let grant: ShareGrant = runtime.block_on(call(
        &relay,
        reqwest::Method::POST,
        "/v1/shares",
        Some(body),
    ))?;
    let (address, web_url, screen_url) = match address(&b, &record, ttl) {
        Ok(a) => a,
        Err(e) => {
            // The share is of no use without its address: take it back.
            let path = format!("/v1/shares/{}", grant.info.id);
            let _ = runtime.block_on(call::<serde_json::Value>(
                &relay,
                reqwest::Method::DELETE,
                &path,
                None,
            ));
            return Err(e);
        }
    };
    let invite = Invite {
        provider: record.provider.clone(),
        box_name: record.name.clone(),
        relay: address,
        web_url,
        screen_url,
        share_id: grant.info.id.clone(),
        token: grant.token,
        scopes: grant.info.scopes.clone(),
        expires_at_ms: grant.info.expires_at_ms,
    };
    let text = invite.encode();
    match &args.output {
        Some(path) => write_private(path, &text)?,
        None if args.json => println!(
            "{}",
            serde_json::json!({ "invite": text, "share": grant.info })
        ),
        None => println!("{text}"),
    }
    let scopes: Vec<&str> = invite.scopes.iter().map(|s| s.as_str()).collect();
    eprintln!(
        "share {} of box `{}` ({}), until {}: the teammate runs `agentbox join INVITE`; revoke it with `agentbox share --revoke {} {}`",
        invite.share_id,
        record.name,
        scopes.join(", "),
        crate::when::local(invite.expires_at_ms),
        invite.share_id,
        record.name
    );
    if record.provider == "daytona" && ttl > MAX_PREVIEW_TTL {
        eprintln!("note: the Daytona preview link in the invite lasts 24h; share again after that");
    }
    Ok(ExitCode::SUCCESS)
}

/// How a teammate reaches the relay, the WebProxy and the screen (if it has one) of box
/// `b`; Daytona links last the share's `ttl`, at most [`MAX_PREVIEW_TTL`].
fn address(
    b: &AnyBox,
    record: &crate::state::BoxRecord,
    ttl: Duration,
) -> anyhow::Result<(RelayAddress, Option<String>, Option<String>)> {
    let link_ttl = ttl.min(MAX_PREVIEW_TTL).max(Duration::from_secs(1));
    let screen = super::screen::for_invite(b, &record.name, link_ttl)?;
    let (relay, web) = match b {
        AnyBox::Daytona(d) => (
            RelayAddress::Daytona {
                sandbox_id: d.sandbox_name().to_string(),
                url: d.signed_url(BRIDGE_PORT, link_ttl)?,
                preview_token: None,
            },
            Some(d.signed_url(WEB_PORT, link_ttl)?),
        ),
        AnyBox::Docker(d) => (
            RelayAddress::Loopback {
                url: d.url(Some(BRIDGE_PORT))?,
            },
            Some(d.url(None)?),
        ),
        AnyBox::Local(l) => (
            RelayAddress::Loopback {
                url: record
                    .bridge_url
                    .clone()
                    .context("the box has no relay address yet: start it")?,
            },
            l.web_url(None).ok(),
        ),
    };
    Ok((relay, web, screen))
}

/// How long one call to the share routes may take, answer included: they answer at once,
/// and a relay that never does (or an invite's address that only holds the connection)
/// must not hold `share` or `join` for ever.
const CALL_LIMIT: Duration = Duration::from_secs(10);
/// The largest answer read from them.
const ANSWER_CAP: usize = 1 << 20;

/// One call to the share routes, answering JSON (an empty answer reads as `null`).
async fn call<T: serde::de::DeserializeOwned>(
    relay: &Relay,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> anyhow::Result<T> {
    let mut request = relay.request(method, path).timeout(CALL_LIMIT);
    if let Some(b) = body {
        request = request.json(&b);
    }
    let unreachable = || {
        format!(
            "cannot reach the box's relay ({path}) within {}s",
            CALL_LIMIT.as_secs()
        )
    };
    let mut response = request.send().await.with_context(unreachable)?;
    if !response.status().is_success() {
        let (status, message, _) = crate::relay_exec::refusal(response).await;
        if status == reqwest::StatusCode::NOT_FOUND && message.is_empty() {
            bail!("the box's relay has no share API: it is older than this agentbox; run `agentbox prepare` and make the box again");
        }
        bail!(
            "the box refused: {}",
            crate::transfer::refusal::refusal(status, &message)
        );
    }
    // Read up to the cap, not all of it first: an answer that never ends is refused.
    let mut bytes = Vec::new();
    while let Some(chunk) = response.chunk().await.with_context(unreachable)? {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > ANSWER_CAP {
            bail!("the box's answer to {path} is over 1 MiB");
        }
    }
    let bytes = if bytes.is_empty() {
        &b"null"[..]
    } else {
        &bytes[..]
    };
    serde_json::from_slice(bytes)
        .with_context(|| format!("the box's answer to {path} is not what was asked"))
}

/// `--list`.
fn list(name: &str, shares: &[ShareInfo], json: bool) -> anyhow::Result<ExitCode> {
    if json {
        println!("{}", serde_json::to_string(shares)?);
        return Ok(ExitCode::SUCCESS);
    }
    if shares.is_empty() {
        eprintln!("box `{name}` has no live shares");
        return Ok(ExitCode::SUCCESS);
    }
    println!("{:<20}  {:<36}  EXPIRES", "ID", "SCOPES");
    for s in shares {
        let scopes: Vec<&str> = s.scopes.iter().map(|s| s.as_str()).collect();
        println!(
            "{:<20}  {:<36}  {}",
            s.id,
            scopes.join(","),
            crate::when::local(s.expires_at_ms)
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes `text` to `path`, readable by its owner only (it holds the share token).
fn write_private(path: &std::path::Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(f, "{text}")?;
    eprintln!("wrote the invite to {}", path.display());
    Ok(())
}

/// `agentbox join`.
pub fn join(ctx: &Ctx, args: &JoinArgs) -> anyhow::Result<ExitCode> {
    // At most one byte more than the longest invite, from stdin or a file alike: a file
    // that never ends (`@/dev/zero`) is refused as too long, not read for ever.
    let limit = agentbox_protocol::share::MAX_INVITE_LEN as u64 + 1;
    let text = match args.invite.as_str() {
        "-" => {
            let mut s = String::new();
            std::io::stdin()
                .take(limit)
                .read_to_string(&mut s)
                .context("cannot read the invite from stdin")?;
            s
        }
        a if a.starts_with('@') => {
            let mut s = String::new();
            std::fs::File::open(&a[1..])
                .and_then(|f| f.take(limit).read_to_string(&mut s))
                .with_context(|| format!("cannot read the invite from {}", &a[1..]))?;
            s
        }
        a => a.to_string(),
    };
    let invite = Invite::decode(&text)?;
    if invite.expires_at_ms <= agentbox_protocol::now_millis() {
        bail!("this invite has expired: ask the box's owner for a new one (`agentbox share`)");
    }
    let name = args.name.clone().unwrap_or_else(|| invite.box_name.clone());
    if !super::create::valid_box_name(&name) {
        bail!("invalid box name `{}`: pass --name with letters, digits, `-` and `_` (not only digits), at most 63", crate::text::shown(&name));
    }
    let dir = joined::dir_of(&ctx.home, &name);
    let record = joined::record(&invite, &name, &dir);
    // The token is checked before anything is recorded: a revoked or mistyped invite
    // leaves no record behind.
    if invite.scopes.contains(&Scope::AttachRead) {
        let relay = joined::relay_of_invite(&invite);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let _: serde_json::Value = runtime
            .block_on(call(&relay, reqwest::Method::GET, "/v1/terms", None))
            .context("the box did not accept this invite (revoked, or the box is stopped?)")?;
    }
    // A name already taken here (one of this home's boxes, or a box joined before) is
    // never replaced: the invite's name is the inviter's choice, not the joiner's.
    ctx.state.insert(&record).map_err(|e| {
        if let crate::state::StateError::NameInUse(_) = e {
            anyhow::anyhow!(
                "a box named `{name}` already exists here (see `agentbox list`) and stays as it is: join this one under another name with `agentbox join --name NAME INVITE`"
            )
        } else {
            e.into()
        }
    })?;
    if let Err(e) = joined::save_invite(&dir, &invite) {
        let _ = ctx.state.remove(&name);
        return Err(e);
    }
    let scopes: Vec<&str> = invite.scopes.iter().map(|s| s.as_str()).collect();
    if args.json {
        println!(
            "{}",
            serde_json::json!({ "name": name, "provider": invite.provider, "scopes": scopes, "expires_at_ms": invite.expires_at_ms })
        );
    }
    eprintln!(
        "joined box `{}` as `{name}` ({}): `agentbox attach {name}`{}{}",
        invite.box_name,
        scopes.join(", "),
        if invite.scopes.contains(&Scope::Url) {
            format!(", `agentbox url {name}`")
        } else {
            String::new()
        },
        if invite.scopes.contains(&Scope::Logs) {
            format!(", `agentbox logs {name}`")
        } else {
            String::new()
        },
    );
    Ok(ExitCode::SUCCESS)
}
