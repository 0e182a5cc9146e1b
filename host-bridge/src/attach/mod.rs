//! `agentbox attach` and `agentbox shell`: a tmux session of the box on this terminal,
//! through the relay's bridge port, for every provider.
//!
//! - [`wire`]: the relay's terminal API and its two transports (WebSocket, HTTP streaming).
//! - [`terminal`]: the local terminal (raw mode, size, keystrokes).
//!
//! [`run`] is the loop. It opens a term, connects (WebSocket first when allowed; a path
//! that refuses the upgrade switches to HTTP streaming for good), and copies keystrokes
//! in and output out. Every output byte is counted, so a connection lost for less than
//! the keep window resumes at the next byte — nothing lost, nothing repeated — and input
//! is numbered, so a resend types nothing twice. When the term is gone (the window passed,
//! or the relay restarted) it opens a new one and tmux redraws the screen.

pub mod terminal;
pub mod wire;

use std::time::{Duration, Instant};

use agentbox_protocol::term::{SessionName, TermEnd, TermInfo, TermOpen, TermSize};
use anyhow::bail;
use tokio::sync::mpsc;

use crate::transfer::client::Relay;
use wire::{ApiFailure, Event, Link, Transport, Unacked, WsRefused};

/// How an attach is made.
#[derive(Debug, Clone)]
pub struct Options {
    /// The session (the box's only one when `None`; the new shell's name with `shell`).
    pub session: Option<String>,
    /// Start a fresh shell session and attach to it.
    pub shell: bool,
    /// Keys other than detach do nothing.
    pub read_only: bool,
    /// How long a cut connection may take to come back and resume byte for byte.
    pub keep: Duration,
    /// Which transport.
    pub transport: Transport,
    /// The `TERM` to ask for.
    pub term: Option<String>,
}

/// Where session output goes.
pub type Output = Box<dyn FnMut(&[u8]) -> std::io::Result<()> + Send>;

/// What the attach loop reads and writes: the real terminal, or a test's channels.
pub struct Io {
    /// Keystrokes.
    pub keys: mpsc::UnboundedReceiver<Vec<u8>>,
    /// Window-size changes.
    pub resizes: mpsc::UnboundedReceiver<TermSize>,
    /// The size at the start.
    pub size: TermSize,
    /// Where session output goes.
    pub output: Output,
    /// Status lines (connection lost, re-attached…).
    pub notice: Box<dyn FnMut(&str) + Send>,
}

/// How an attach ended.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Why.
    pub end: TermEnd,
    /// The session.
    pub session: SessionName,
    /// The last term's id.
    pub term_id: String,
    /// Output bytes received on the last term.
    pub received: u64,
    /// blake3 (hex) of those bytes: equal to the relay's digest when nothing was lost.
    pub digest: String,
    /// Connections made again to the same term after a cut.
    pub resumed: u32,
    /// Terms opened again (the screen was redrawn).
    pub reopened: u32,
    /// The transport in use at the end.
    pub transport: Transport,
}

/// Per-term state of the loop.
struct Current {
    info: TermInfo,
    /// The size the relay last heard of.
    size: TermSize,
    offset: u64,
    hasher: blake3::Hasher,
    unacked: Unacked,
    /// The input offset the relay last confirmed it had taken.
    confirmed: u64,
    http: Option<Link>,
}

impl Current {
    fn new(info: TermInfo, size: TermSize) -> Self {
        Self {
            info,
            size,
            offset: 0,
            hasher: blake3::Hasher::new(),
            unacked: Unacked::default(),
            confirmed: 0,
            http: None,
        }
    }
}

/// Opens a term, retrying the network for a while.
async fn open_term(relay: &Relay, open: &TermOpen, patience: Duration) -> anyhow::Result<TermInfo> {
    let started = Instant::now();
    let mut delay = Duration::from_millis(100);
    loop {
        match wire::open(relay, open).await {
            Ok(info) => return Ok(info),
            Err(ApiFailure::Network(e)) if started.elapsed() < patience => {
                tracing::debug!(error = %e, "opening a term");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err(ApiFailure::Network(e)) => bail!("cannot reach the box: {e}"),
            Err(ApiFailure::Refused(_, m) | ApiFailure::Gone(m)) => bail!("{m}"),
        }
    }
}

/// Attaches until the term ends; see the module doc.
pub async fn run(relay: &Relay, options: &Options, mut io: Io) -> anyhow::Result<Outcome> {
    let keep_ms = u64::try_from(options.keep.as_millis()).unwrap_or(u64::MAX);
    let session = options
        .session
        .clone()
        .map(SessionName::try_from)
        .transpose()?;
    let mut open = TermOpen {
        session,
        shell: options.shell,
        size: io.size,
        term: options.term.clone(),
        read_only: options.read_only,
        keep_ms: Some(keep_ms),
    };
    let give_up = options.keep + Duration::from_secs(300);
    let mut current = Current::new(
        open_term(relay, &open, Duration::from_secs(30)).await?,
        io.size,
    );
    // Later terms attach to the session this one found or started.
    open.shell = false;
    open.session = Some(current.info.session.clone());
    let mut use_ws = options.transport != Transport::Http;
    let (term_tx, mut term_rx) = mpsc::unbounded_channel::<Event>();
    let mut lost_since: Option<Instant> = None;
    let mut delay = Duration::from_millis(50);
    let (mut resumed, mut reopened) = (0u32, 0u32);
    let mut keys_open = true;
    let mut size = io.size;
    // Set when the term is gone: open a new one first, typing into it the keys the old
    // one is known not to have taken.
    let mut reopen_with: Option<Option<Vec<u8>>> = None;

    loop {
        if let Some(since) = lost_since {
            if since.elapsed() > give_up {
                bail!(
                    "lost the connection to the box for {} s; the session goes on: attach again later",
                    since.elapsed().as_secs()
                );
            }
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
        if let Some(carry) = reopen_with.take() {
            match reopen(relay, &mut open, &mut current, size, carry.clone(), &mut io).await? {
                Reopened::Yes => reopened += 1,
                Reopened::Unreachable => {
                    lost_since.get_or_insert_with(Instant::now);
                    reopen_with = Some(carry);
                    continue;
                }
                Reopened::SessionEnded => {
                    let end = TermEnd::SessionEnded;
                    return Ok(outcome(&current, end, resumed, reopened, use_ws));
                }
            }
        }
        let id = current.info.id.clone();
        let (events_tx, mut events) = mpsc::unbounded_channel::<Event>();
        let link = if use_ws {
            match wire::connect_ws(relay, &id, current.offset, events_tx, &current.unacked).await {
                Ok((link, taken)) => {
                    current.confirmed = taken;
                    link
                }
                Err(WsRefused::Status(status)) if options.transport == Transport::Auto => {
                    (io.notice)(&format!(
                        "the path to the box refused WebSocket ({status}); using HTTP streaming"
                    ));
                    use_ws = false;
                    continue;
                }
                Err(WsRefused::Status(status)) => {
                    bail!("the path to the box refused WebSocket ({status}); try --transport http")
                }
                Err(WsRefused::Gone(_)) => {
                    reopen_with = Some(None);
                    continue;
                }
                Err(WsRefused::Network(e)) => {
                    tracing::debug!(error = %e, "WebSocket connect");
                    lost_since.get_or_insert_with(Instant::now);
                    continue;
                }
            }
        } else {
            wire::stream_http(relay, &id, current.offset, events_tx);
            if current.http.is_none() {
                let sender = wire::http_sender(relay, &id, term_tx.clone());
                // Keys carried over from a term that expired go first.
                if let Some(carried) = current.unacked.from(0).filter(|b| !b.is_empty()) {
                    sender.input(0, &carried);
                }
                current.http = Some(sender);
            }
            Link::Http {
                sink: match &current.http {
                    Some(Link::Http { sink }) => sink.clone(),
                    _ => unreachable!("set just above"),
                },
            }
        };
        if lost_since.take().is_some() {
            resumed += 1;
            (io.notice)("connection back; nothing was lost");
        }
        delay = Duration::from_millis(50);
        if size != current.size {
            link.resize(size);
            current.size = size;
        }
        match pump(
            &mut io,
            &mut current,
            &link,
            &mut events,
            &mut term_rx,
            &mut size,
            &mut keys_open,
        )
        .await?
        {
            Event::Output(_) => unreachable!("pump copies output itself"),
            // The relay gave up waiting for this viewer: the session goes on, view it anew.
            // It took nothing after the hello of this connection.
            Event::Ended(TermEnd::Expired) => {
                reopen_with = Some(current.unacked.from(current.confirmed));
            }
            Event::Ended(reason) => {
                return Ok(outcome(&current, reason, resumed, reopened, use_ws));
            }
            Event::StreamClosed => match wire::info(relay, &id).await {
                Ok(info)
                    if info.ended == Some(TermEnd::Expired) && current.offset >= info.produced =>
                {
                    reopen_with = Some(current.unacked.from(info.input));
                }
                Ok(info) if info.ended.is_some() && current.offset >= info.produced => {
                    let reason = info.ended.unwrap_or(TermEnd::Closed);
                    return Ok(outcome(&current, reason, resumed, reopened, use_ws));
                }
                Ok(_) => {}
                Err(ApiFailure::Gone(_)) => reopen_with = Some(None),
                // The token no longer opens the term (a teammate's share revoked or
                // expired): the view is over.
                Err(ApiFailure::Refused(
                    reqwest::StatusCode::UNAUTHORIZED | reqwest::StatusCode::FORBIDDEN,
                    m,
                )) => bail!("the box refused this view: {m}"),
                Err(_) => {
                    lost_since.get_or_insert_with(Instant::now);
                }
            },
            Event::Broken(why) => {
                tracing::debug!(%why, "connection lost");
                if lost_since.is_none() {
                    (io.notice)("connection to the box lost; reconnecting…");
                }
                lost_since.get_or_insert_with(Instant::now);
            }
            Event::Gone(_) => reopen_with = Some(None),
        }
    }
}

/// What a new term for the same session came to.
enum Reopened {
    /// `current` is the new term.
    Yes,
    /// The relay could not be reached: wait and try again.
    Unreachable,
    /// The session is not there any more.
    SessionEnded,
}

/// Opens a new term on the session after the last one was lost; tmux redraws the screen.
/// `carry` is input the last term is known not to have taken: the new one gets it first.
async fn reopen(
    relay: &Relay,
    open: &mut TermOpen,
    current: &mut Current,
    size: TermSize,
    carry: Option<Vec<u8>>,
    io: &mut Io,
) -> anyhow::Result<Reopened> {
    open.size = size;
    match wire::open(relay, open).await {
        Ok(info) => {
            *current = Current::new(info, size);
            if let Some(keys) = carry.filter(|k| !k.is_empty()) {
                current.unacked.push(&keys);
            }
            (io.notice)("attached again; the screen is redrawn");
            Ok(Reopened::Yes)
        }
        Err(ApiFailure::Refused(reqwest::StatusCode::NOT_FOUND, _)) => Ok(Reopened::SessionEnded),
        Err(ApiFailure::Network(_)) => Ok(Reopened::Unreachable),
        Err(other) => bail!("cannot attach again: {other}"),
    }
}

/// Reads one connection until something other than output comes, copying output out
/// and keystrokes in; returns that event.
async fn pump(
    io: &mut Io,
    current: &mut Current,
    link: &Link,
    events: &mut mpsc::UnboundedReceiver<Event>,
    term_rx: &mut mpsc::UnboundedReceiver<Event>,
    size: &mut TermSize,
    keys_open: &mut bool,
) -> anyhow::Result<Event> {
    loop {
        let event = tokio::select! {
            keys = io.keys.recv(), if *keys_open => {
                match keys {
                    Some(keys) => {
                        link.input(current.unacked.end(), &keys);
                        current.unacked.push(&keys);
                    }
                    None => *keys_open = false,
                }
                continue;
            }
            Some(new_size) = io.resizes.recv() => {
                *size = new_size;
                link.resize(new_size);
                continue;
            }
            event = events.recv() => event.unwrap_or(Event::Broken("the connection closed".into())),
            Some(event) = term_rx.recv() => event,
        };
        match event {
            Event::Output(bytes) => {
                (io.output)(&bytes)?;
                current.offset += bytes.len() as u64;
                current.hasher.update(&bytes);
            }
            other => return Ok(other),
        }
    }
}

fn outcome(current: &Current, end: TermEnd, resumed: u32, reopened: u32, ws: bool) -> Outcome {
    Outcome {
        end,
        session: current.info.session.clone(),
        term_id: current.info.id.to_string(),
        received: current.offset,
        digest: current.hasher.finalize().to_hex().to_string(),
        resumed,
        reopened,
        transport: if ws { Transport::Ws } else { Transport::Http },
    }
}

/// Attaches this process's terminal: raw mode for the duration, window-size changes
/// followed, a line on stderr when it ends. `log` gets a copy of the session's output.
pub fn attach_terminal(
    relay: &Relay,
    options: &Options,
    log: Option<&std::path::Path>,
) -> anyhow::Result<Outcome> {
    use anyhow::Context as _;
    use std::io::Write as _;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut log_file = match log {
        Some(path) => Some(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("cannot open {}", path.display()))?,
        ),
        None => None,
    };
    let raw = terminal::RawMode::enable().context("cannot put the terminal in raw mode")?;
    let result = runtime.block_on(async {
        let (resize_tx, resizes) = mpsc::unbounded_channel();
        if let Ok(mut winch) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change())
        {
            tokio::spawn(async move {
                while winch.recv().await.is_some() {
                    if resize_tx.send(terminal::size()).is_err() {
                        break;
                    }
                }
            });
        }
        let io = Io {
            keys: terminal::keystrokes(),
            resizes,
            size: terminal::size(),
            output: Box::new(move |bytes| {
                if let Some(f) = log_file.as_mut() {
                    f.write_all(bytes)?;
                }
                terminal::show(bytes)
            }),
            notice: Box::new(|line| eprint!("\r\n[agentbox] {line}\r\n")),
        };
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            outcome = run(relay, options, io) => outcome,
            _ = hangup.recv() => bail!("the terminal hung up; the session goes on"),
            _ = term.recv() => bail!("stopped; the session goes on"),
        }
    });
    drop(raw);
    // The keystroke thread is blocked reading stdin: do not wait for it.
    runtime.shutdown_background();
    if let Ok(outcome) = &result {
        eprintln!("\r\n[agentbox] {}", outcome.end.describe(&outcome.session));
    }
    result
}
