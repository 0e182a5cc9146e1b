//! A joined box: a teammate's box this `AGENTBOX_HOME` recorded with `agentbox join`
//! ([`crate::state::JOINED`]). Only what its share allows works on it — `attach` (typing
//! only with `attach:write`), `url` (with `url`), `logs` (with `logs`) — and `destroy`,
//! which forgets the record here. Everything else is refused with [`refused`]; the bridge
//! daemon never polls it (its box's git pushes and copies are its owner's to answer).

use std::io::IsTerminal as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentbox_protocol::share::{Invite, RelayAddress, Scope};
use agentbox_protocol::term::TermEnd;
use anyhow::{bail, Context as _};
use tokio::sync::mpsc;

use crate::cli::ViewArgs;
use crate::state::{BoxRecord, JOINED};
use crate::transfer::client::Relay;

/// The invite's file in a joined box's directory.
const INVITE_FILE: &str = "invite.json";

/// The refusal of anything but attach, url, logs and destroy on a joined box.
pub fn refused(name: &str) -> anyhow::Error {
    crate::state::joined_refusal(name)
}

/// Where a joined box's record keeps its invite.
pub fn dir_of(home: &crate::home::Home, name: &str) -> PathBuf {
    home.root().join("joined").join(name)
}

/// The record of `invite` joined as `name`.
pub fn record(invite: &Invite, name: &str, dir: &Path) -> BoxRecord {
    BoxRecord {
        name: name.to_string(),
        provider: JOINED.into(),
        project: PathBuf::new(),
        branch: String::new(),
        dir: dir.to_path_buf(),
        created_at_ms: agentbox_protocol::now_millis(),
        phase: "ready".into(),
        bridge_url: Some(invite.relay.url().to_string()),
        bridge_token: invite.token.expose().to_string(),
    }
}

/// Writes the invite beside the record (0600: it holds the share token).
pub fn save_invite(dir: &Path, invite: &Invite) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(INVITE_FILE);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(&serde_json::to_vec_pretty(invite)?)?;
    Ok(())
}

/// The invite a joined box was recorded from, checked again, and not expired.
pub fn invite(record: &BoxRecord) -> anyhow::Result<Invite> {
    let path = record.dir.join(INVITE_FILE);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read the invite of joined box `{}` ({})",
            record.name,
            path.display()
        )
    })?;
    let invite: Invite = serde_json::from_str(&text)
        .with_context(|| format!("{} is not an invite", path.display()))?;
    // Through the same checks as a pasted invite.
    let invite = Invite::decode(&invite.encode())?;
    if invite.expires_at_ms <= agentbox_protocol::now_millis() {
        bail!(
            "the share of box `{}` has expired: ask its owner for a new invite (`agentbox share {}`), then `agentbox destroy {}` and join again",
            record.name,
            invite.box_name,
            record.name
        );
    }
    Ok(invite)
}

/// Refuses what the share does not allow, naming the scope.
pub fn need(record: &BoxRecord, invite: &Invite, scope: Scope, what: &str) -> anyhow::Result<()> {
    if invite.scopes.contains(&scope) {
        Ok(())
    } else {
        bail!(
            "the share of box `{}` does not allow {what} (it lacks `{scope}`): ask its owner for an invite with it",
            record.name
        )
    }
}

/// A client for a joined box's relay, with the share token.
pub fn relay(record: &BoxRecord) -> anyhow::Result<Relay> {
    Ok(relay_of_invite(&invite(record)?))
}

/// A client for the relay an invite names, with its share token.
pub fn relay_of_invite(invite: &Invite) -> Relay {
    let relay = Relay::new(invite.relay.url(), invite.token.expose());
    match &invite.relay {
        RelayAddress::Daytona {
            preview_token: Some(t),
            ..
        } => {
            let token = t.clone();
            let remint: crate::transfer::client::Remint = std::sync::Arc::new(move || {
                let token = token.clone();
                Box::pin(async move { Ok(token) })
            });
            relay.with_preview(t, remint)
        }
        _ => relay,
    }
}

/// `agentbox url` of a joined box: the web address the invite carries.
pub fn url(record: &BoxRecord) -> anyhow::Result<ExitCode> {
    let invite = invite(record)?;
    need(record, &invite, Scope::Url, "its web address")?;
    let web = invite
        .web_url
        .context("the invite carries no web address for this box")?;
    println!("{web}");
    Ok(ExitCode::SUCCESS)
}

/// `agentbox destroy` of a joined box: forgets it here (the box is its owner's).
pub fn forget(state: &crate::state::State, record: &BoxRecord) -> anyhow::Result<ExitCode> {
    state.remove(&record.name)?;
    match std::fs::remove_dir_all(&record.dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            eprintln!("warning: {} stays: {e}", record.dir.display());
        }
        _ => {}
    }
    eprintln!(
        "forgot joined box `{}` (the box itself is its owner's and goes on)",
        record.name
    );
    Ok(ExitCode::SUCCESS)
}

/// `agentbox attach|shell` of a joined box: read-only unless the share allows writing.
pub fn attach(
    record: &BoxRecord,
    session: Option<String>,
    shell: bool,
    view: &ViewArgs,
) -> anyhow::Result<ExitCode> {
    let invite = invite(record)?;
    need(record, &invite, Scope::AttachRead, "attaching")?;
    let may_type = invite.scopes.contains(&Scope::AttachWrite);
    if shell && !may_type {
        bail!(
            "box `{}` was shared with you read-only: a new shell needs an invite made with `agentbox share --write`",
            record.name
        );
    }
    let on_terminal = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if !(view.no_tty || on_terminal) {
        bail!("`agentbox attach` shows a terminal session and needs a terminal: pass `--no-tty` to stream the session's raw screen anyway");
    }
    let relay = relay(record)?;
    let read_only = view.read_only || !may_type;
    let options = crate::attach::Options {
        session,
        shell,
        read_only,
        keep: view.reconnect_window,
        transport: view.transport,
        term: std::env::var("TERM")
            .ok()
            .filter(|t| agentbox_protocol::term::valid_term_name(t)),
    };
    let end = if read_only {
        watch(&relay, &options, &record.name, may_type)?
    } else {
        crate::attach::attach_terminal(&relay, &options, view.log.as_deref())?.end
    };
    Ok(match end {
        TermEnd::Detached | TermEnd::SessionEnded => ExitCode::SUCCESS,
        TermEnd::Closed => {
            eprintln!(
                "[agentbox] the view was closed: the share of box `{}` may have been revoked or expired",
                record.name
            );
            ExitCode::from(1)
        }
        TermEnd::Expired => ExitCode::from(1),
    })
}

/// The sentence for keys typed on a read-only view.
fn read_only_sentence(name: &str, may_type: bool) -> String {
    let how = if may_type {
        "attach without --read-only to type"
    } else {
        "its owner can share it with `agentbox share --write`"
    };
    format!("box `{name}` is shared with you read-only: what you type is not sent ({how}); Ctrl-a d leaves")
}

/// A read-only view: output shown, keys never sent — each burst of them answered with a
/// sentence — and Ctrl-a d (tmux's detach) ends the view here.
fn watch(
    relay: &Relay,
    options: &crate::attach::Options,
    name: &str,
    may_type: bool,
) -> anyhow::Result<TermEnd> {
    use std::io::Write as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let raw = crate::attach::terminal::RawMode::enable()
        .context("cannot put the terminal in raw mode")?;
    let sentence = read_only_sentence(name, may_type);
    let result = runtime.block_on(async {
        let (_keys_tx, keys) = mpsc::unbounded_channel();
        let (_resize_tx, resizes) = mpsc::unbounded_channel();
        let (detach_tx, mut detached) = mpsc::unbounded_channel::<()>();
        let mut typed = crate::attach::terminal::keystrokes();
        tokio::spawn(async move {
            let mut last_told: Option<Instant> = None;
            let mut prefix = false;
            while let Some(bytes) = typed.recv().await {
                for &b in &bytes {
                    if prefix && b == b'd' {
                        let _ = detach_tx.send(());
                        return;
                    }
                    prefix = b == 0x01;
                }
                if bytes != [0x01] && last_told.is_none_or(|t| t.elapsed() > Duration::from_secs(3))
                {
                    last_told = Some(Instant::now());
                    eprint!("\r\n[agentbox] {sentence}\r\n");
                }
            }
        });
        let io = crate::attach::Io {
            keys,
            resizes,
            size: crate::attach::terminal::size(),
            output: Box::new(crate::attach::terminal::show),
            notice: Box::new(|line| eprint!("\r\n[agentbox] {line}\r\n")),
        };
        tokio::select! {
            outcome = crate::attach::run(relay, options, io) => {
                outcome.map(|o| (o.end, o.session.as_str().to_string()))
            }
            _ = detached.recv() => Ok((
                TermEnd::Detached,
                options.session.clone().unwrap_or_else(|| "of the box".into()),
            )),
        }
    });
    drop(raw);
    runtime.shutdown_background();
    let (end, session) = result?;
    eprintln!("\r\n[agentbox] {}", end.describe(&session));
    let _ = std::io::stderr().flush();
    Ok(end)
}
