//! The host bridge daemon: one per `AGENTBOX_HOME` (a `flock` on `bridge.lock`). It
//! long-polls every ready box's relay, runs what they ask concurrently (bounded per box),
//! records each completed request id with its outcome before answering — so a
//! re-delivered request gets the recorded answer instead of running twice — and keeps an
//! audit log. The host policy ([`policy`]) decides what runs unasked, what waits for
//! `agentbox approve` (without holding up the box's other requests) and what is refused.

pub mod copy;
pub mod exec;
pub mod journal;
pub mod policy;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::bridge::{
    BlobRef, GitOp, HostRequest, LeasedRequest, Outcome, PollResponse, ResultPost,
};
use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

use crate::home::Home;
use crate::state::{BoxRecord, State};
use crate::transfer::client::Relay;
use journal::{AuditEntry, HostJournal};

/// Requests run at once for one box.
const PER_BOX: usize = 16;
/// How long a poll is held by the relay.
const POLL_WAIT_MS: u64 = 20_000;

/// The daemon's lock file.
pub fn lock_path(home: &Home) -> PathBuf {
    home.root().join("bridge.lock")
}

/// The pid of the running daemon, if one holds the lock.
pub fn running_pid(home: &Home) -> Option<i32> {
    let file = File::open(lock_path(home)).ok()?;
    match Flock::lock(file, FlockArg::LockSharedNonblock) {
        Ok(_unlocked_on_drop) => None,
        Err(_) => std::fs::read_to_string(lock_path(home))
            .ok()?
            .trim()
            .parse()
            .ok(),
    }
}

/// Runs the daemon in the foreground until SIGTERM or SIGINT.
pub fn run(home: &Home) -> anyhow::Result<()> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(lock_path(home))?;
    let mut lock = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(l) => l,
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => bail!("the host bridge is already running"),
        Err((_, e)) => bail!("cannot lock {}: {e}", lock_path(home).display()),
    };
    lock.set_len(0)?;
    writeln!(lock, "{}", std::process::id())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(serve(home.clone()))
}

async fn serve(home: Home) -> anyhow::Result<()> {
    let journal = HostJournal::open(&home.state_db())?;
    journal.checkpoint_in_background(&home.state_db())?;
    let shared = Shared {
        journal: Arc::new(Mutex::new(journal)),
        home: home.clone(),
        polled: Arc::default(),
        addresses: tokio::sync::watch::channel(std::collections::HashMap::new())
            .0
            .into(),
        inflight: Arc::default(),
        policies: Arc::default(),
        relays: Arc::default(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!("host bridge running");
    loop {
        let boxes = State::open(&home.state_db())
            .and_then(|s| s.all())
            .unwrap_or_default();
        // Pollers whose box went away or moved stop at once, even in a held poll.
        let current: std::collections::HashMap<String, String> = boxes
            .iter()
            .filter(|b| b.phase == "ready")
            .filter_map(|b| Some((b.name.clone(), b.bridge_url.clone()?)))
            .collect();
        shared.addresses.send_if_modified(|old| {
            let changed = *old != current;
            if changed {
                old.clone_from(&current);
            }
            changed
        });
        for record in boxes
            .into_iter()
            .filter(|b| b.phase == "ready" && b.bridge_url.is_some())
        {
            let fresh = shared
                .polled
                .lock()
                .is_ok_and(|mut p| p.insert(record.name.clone()));
            if fresh {
                tokio::spawn(poll_box(shared.clone(), record));
            }
        }
        tokio::select! {
            _ = term.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
            () = tokio::time::sleep(Duration::from_secs(1)) => {},
        }
    }
    tracing::info!("host bridge stopping");
    Ok(())
}

/// What every poller and handler shares.
#[derive(Clone)]
struct Shared {
    home: Home,
    /// Boxes with a poller.
    polled: Arc<Mutex<HashSet<String>>>,
    /// Box name → bridge URL, as in `state.db` (rescanned every second).
    addresses: Arc<tokio::sync::watch::Sender<std::collections::HashMap<String, String>>>,
    /// `box/id` of requests being carried out: a re-delivery of one of them is not run
    /// again (the first run answers, and the relay accepts any lease it issued).
    inflight: Arc<Mutex<HashSet<String>>>,
    /// The host's records, one connection for all handlers.
    journal: Arc<Mutex<HostJournal>>,
    /// Policies per project, re-read at most once a second.
    policies: Arc<policy::Cache>,
    /// Box name → its relay client (one connection pool per box; for a Daytona box also
    /// the preview token, renewed when it rotates).
    relays: Arc<Mutex<std::collections::HashMap<String, Relay>>>,
}

impl Shared {
    /// The relay of `record` at `url`.
    fn relay(&self, record: &BoxRecord, url: &str) -> Relay {
        if let Ok(map) = self.relays.lock() {
            if let Some(r) = map.get(&record.name).filter(|r| r.url("") == url) {
                return r.clone();
            }
        }
        Relay::new(url, &record.bridge_token)
    }
}

/// Polls one box until it is gone from the state.
async fn poll_box(shared: Shared, record: BoxRecord) {
    let Some(url) = record.bridge_url.clone() else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(PER_BOX));
    let mut backoff = Duration::from_millis(200);
    let mut addresses = shared.addresses.subscribe();
    let moved = |map: &std::collections::HashMap<String, String>| {
        map.get(&record.name).map(String::as_str) != Some(url.as_str())
    };
    if record.provider == "daytona" {
        // Daytona's preview proxy wants its own token besides the bridge token.
        loop {
            if moved(&addresses.borrow_and_update()) {
                return forget(&shared, &record);
            }
            let home = shared.home.root().to_path_buf();
            match crate::provider::daytona::bridge_relay(&home, &record.name, &record.bridge_token)
                .await
            {
                Ok(relay) if relay.url("") == url => {
                    if let Ok(mut map) = shared.relays.lock() {
                        map.insert(record.name.clone(), relay);
                    }
                    break;
                }
                Ok(_) => return forget(&shared, &record), // its address changed
                Err(e) => {
                    tracing::info!(box_name = %record.name, error = %e, "no preview link yet");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
    if let Ok(mut map) = shared.relays.lock() {
        map.entry(record.name.clone())
            .or_insert_with(|| Relay::new(&url, &record.bridge_token));
    }
    let relay = shared.relay(&record, &url);
    // How long the relay holds a poll; halved whenever an edge in between cuts held
    // requests (Daytona's answers 504 after about 25 s of silence).
    let mut wait_ms = POLL_WAIT_MS;
    loop {
        if moved(&addresses.borrow_and_update()) {
            break; // destroyed or restarted elsewhere: a new poller takes over
        }
        // Lease only what can run now: a request leased while every slot is busy would
        // wait on the host with its lease ticking, and hold up the next poll.
        let Ok(first) = slots.clone().acquire_owned().await else {
            break;
        };
        let max = 1 + slots.available_permits();
        let poll = relay
            .request(
                reqwest::Method::GET,
                &format!("/v1/bridge/poll?wait_ms={wait_ms}&max={max}"),
            )
            .timeout(Duration::from_millis(POLL_WAIT_MS + 10_000))
            // Daytona's proxy otherwise counts a held poll as activity, and the box would
            // never reach its auto-stop (a header of Daytona's proxy, not of its docs).
            .header("x-daytona-skip-last-activity-update", "true")
            .send();
        let response = tokio::select! {
            r = poll => r.and_then(reqwest::Response::error_for_status),
            () = async {
                while addresses.changed().await.is_ok() {
                    if moved(&addresses.borrow_and_update()) {
                        return;
                    }
                }
                std::future::pending::<()>().await;
            } => break,
        };
        let batch = match response {
            Ok(r) => r.json::<PollResponse>().await,
            Err(e) if e.status() == Some(reqwest::StatusCode::GATEWAY_TIMEOUT) => {
                wait_ms = (wait_ms / 2).max(1000);
                tracing::info!(box_name = %record.name, wait_ms, "the edge cut a held poll; holding shorter");
                continue;
            }
            Err(e) => {
                if e.status() == Some(reqwest::StatusCode::UNAUTHORIZED) && relay.has_preview() {
                    // The preview token rotated (the sandbox was started again).
                    if let Err(why) = relay.renew_preview().await {
                        tracing::info!(box_name = %record.name, error = %why, "cannot renew the preview token");
                    }
                }
                Err(e)
            }
        };
        match batch {
            Ok(batch) => {
                backoff = Duration::from_millis(200);
                let mut first = Some(first);
                for leased in batch.requests {
                    let permit = match first.take() {
                        Some(p) => p,
                        None => match slots.clone().acquire_owned().await {
                            Ok(p) => p,
                            Err(_) => break,
                        },
                    };
                    let (shared, record, url) = (shared.clone(), record.clone(), url.clone());
                    let slot = Slot {
                        permit: Some(permit),
                        slots: slots.clone(),
                    };
                    tokio::spawn(async move {
                        handle(&shared, &record, &url, leased, slot).await;
                    });
                }
            }
            Err(e) => {
                tracing::debug!(box_name = %record.name, error = %e, "poll failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
    forget(&shared, &record);
}

/// The poller of `record` is gone: the next scan may start another.
fn forget(shared: &Shared, record: &BoxRecord) {
    if let Ok(mut p) = shared.polled.lock() {
        p.remove(&record.name);
    }
    if let Ok(mut r) = shared.relays.lock() {
        r.remove(&record.name);
    }
}

/// Runs one request exactly once and answers it (again, from the record, if re-delivered).
async fn handle(shared: &Shared, record: &BoxRecord, url: &str, leased: LeasedRequest, slot: Slot) {
    let key = format!("{}/{}", record.name, leased.id);
    if !shared
        .inflight
        .lock()
        .is_ok_and(|mut f| f.insert(key.clone()))
    {
        return; // already being carried out: that run answers
    }
    handle_once(shared, record, url, leased, slot).await;
    if let Ok(mut f) = shared.inflight.lock() {
        f.remove(&key);
    }
}

/// A place among the requests a box runs at once; given back while a request waits for
/// approval, so that one pending approval never blocks the others.
struct Slot {
    permit: Option<tokio::sync::OwnedSemaphorePermit>,
    slots: Arc<tokio::sync::Semaphore>,
}

impl Slot {
    fn release(&mut self) {
        self.permit = None;
    }

    async fn reacquire(&mut self) {
        if self.permit.is_none() {
            self.permit = self.slots.clone().acquire_owned().await.ok();
        }
    }
}

/// Runs blocking work that needs the host journal.
async fn with_journal<T: Send + 'static>(
    shared: &Shared,
    f: impl FnOnce(&mut HostJournal) -> anyhow::Result<T> + Send + 'static,
) -> anyhow::Result<T> {
    let journal = shared.journal.clone();
    tokio::task::spawn_blocking(move || {
        let mut j = journal
            .lock()
            .map_err(|_| anyhow::anyhow!("the host journal lock is poisoned"))?;
        f(&mut j)
    })
    .await
    .context("the request task panicked")?
}

fn audit_entry(
    record: &BoxRecord,
    leased: &LeasedRequest,
    decision: &str,
    detail: String,
    exit_code: i32,
) -> AuditEntry {
    AuditEntry {
        ts_ms: agentbox_protocol::now_millis(),
        box_name: record.name.clone(),
        request_id: leased.id.0.clone(),
        kind: leased.request.kind().to_string(),
        decision: decision.to_string(),
        detail,
        exit_code,
    }
}

fn refusal(decision: &'static str, why: String) -> exec::Done {
    exec::Done {
        outcome: Outcome {
            exit_code: 1,
            stdout: String::new(),
            stderr: format!("refused by the host: {why}\n"),
            bundle: None,
        },
        decision,
        detail: why,
    }
}

async fn handle_once(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: LeasedRequest,
    mut slot: Slot,
) {
    let (name, id) = (record.name.clone(), leased.id.0.clone());
    let replay = {
        let (name, id) = (name.clone(), id.clone());
        with_journal(shared, move |j| Ok(j.completed(&name, &id)?)).await
    };
    let outcome = match replay {
        Ok(Some(outcome)) => {
            let entry = audit_entry(
                record,
                &leased,
                "replayed",
                "re-delivered; answered from the record".into(),
                outcome.exit_code,
            );
            let _ = with_journal(shared, move |j| Ok(j.audit(&entry)?)).await;
            outcome
        }
        Ok(None) => {
            let done = decide_and_run(shared, record, url, &leased, &mut slot).await;
            let entry = audit_entry(
                record,
                &leased,
                done.decision,
                done.detail,
                done.outcome.exit_code,
            );
            let outcome = done.outcome;
            let kept = outcome.clone();
            if let Err(e) = with_journal(shared, move |j| Ok(j.record(&entry, &kept)?)).await {
                tracing::warn!(error = %e, "cannot record a request; it will be re-delivered");
                return;
            }
            outcome
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the host journal; the request will be re-delivered");
            return;
        }
    };
    answer(shared, record, url, leased, outcome).await;
}

/// Applies the policy (waiting for an approval if it says so), then carries the request
/// out.
async fn decide_and_run(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: &LeasedRequest,
    slot: &mut Slot,
) -> exec::Done {
    let policy = match shared.policies.get(&shared.home, &record.project) {
        Ok(p) => p,
        Err(e) => return refusal("refused", format!("the host policy cannot be read: {e:#}")),
    };
    let (verdict, key) = policy.verdict(&leased.request, &record.branch);
    let mut approved_by = None;
    match verdict {
        policy::Verdict::Allow => {}
        policy::Verdict::Deny => {
            return refusal(
                "denied",
                format!("the host policy ({key}) denies `{}`", leased.request.kind()),
            );
        }
        policy::Verdict::Ask => {
            slot.release();
            match wait_for_approval(shared, record, url, leased, policy.approval_ttl_ms()).await {
                Ok(approval) => approved_by = Some(approval),
                Err(done) => return done,
            }
            slot.reacquire().await;
        }
    }
    let mut done = run_request(shared, record, url, leased).await;
    if let Some(id) = approved_by {
        done.detail = format!("approved ({id}); {}", done.detail);
    }
    done
}

/// Waits until `agentbox approve` or `deny` decides the request, or its approval expires,
/// keeping the lease alive and telling the box what to run.
async fn wait_for_approval(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: &LeasedRequest,
    ttl_ms: u64,
) -> Result<String, exec::Done> {
    let summary = policy::summary(
        &leased.request,
        &record.name,
        &record.branch,
        &record.project,
    );
    let mut told = false;
    let mut renewed = std::time::Instant::now();
    loop {
        let (name, id, kind, text) = (
            record.name.clone(),
            leased.id.0.clone(),
            leased.request.kind().to_string(),
            summary.clone(),
        );
        let approval = with_journal(shared, move |j| {
            Ok(j.approval_for(&name, &id, &kind, &text, ttl_ms)?)
        })
        .await
        .map_err(|e| refusal("refused", format!("cannot record the approval: {e:#}")))?;
        match approval.state.as_str() {
            "approved" => return Ok(approval.id),
            "denied" => {
                return Err(refusal(
                    "denied",
                    format!("denied on the host ({})", approval.id),
                ));
            }
            "expired" => {
                return Err(refusal(
                    "expired",
                    format!("nobody approved it in time ({}); ask again", approval.id),
                ));
            }
            _ => {}
        }
        if !told || renewed.elapsed() > Duration::from_secs(5) {
            let lines = if told {
                Vec::new()
            } else {
                let mins = approval
                    .expires_ms
                    .saturating_sub(agentbox_protocol::now_millis())
                    / 60_000;
                vec![format!(
                    "waiting for approval on the host: `agentbox approve {}` (or deny; expires in {mins} min): {summary}",
                    approval.id
                )]
            };
            let body = agentbox_protocol::bridge::ProgressPost {
                id: leased.id.clone(),
                lease: leased.lease.clone(),
                lines,
            };
            let _ = shared
                .relay(record, url)
                .request(reqwest::Method::POST, "/v1/bridge/progress")
                .timeout(Duration::from_secs(10))
                .json(&body)
                .send()
                .await;
            told = true;
            renewed = std::time::Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Carries out an allowed request.
async fn run_request(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: &LeasedRequest,
) -> exec::Done {
    // Only requests that move files get a staging directory (`tempfile::tempdir`).
    let (project, branch, name) = (
        record.project.clone(),
        record.branch.clone(),
        record.name.clone(),
    );
    match leased.request.clone() {
        HostRequest::Git(git) if git.op == GitOp::Push => {
            let Some(blob) = &git.bundle else {
                return refusal("refused", "a push needs its bundle".into());
            };
            let staged = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => return refusal("refused", format!("no temporary directory: {e}")),
            };
            let path = match fetch_blob(&shared.relay(record, url), blob, staged.path()).await {
                Ok(p) => p,
                Err(e) => return refusal("refused", e),
            };
            let push_lock = shared
                .home
                .root()
                .join("locks")
                .join(format!("push-{name}.lock"));
            blocking(move || {
                let _keep = staged;
                exec::git_push(
                    &exec::BoxFacts {
                        name: &name,
                        project: &project,
                        branch: &branch,
                        push_lock: &push_lock,
                    },
                    &git,
                    &path,
                )
            })
            .await
        }
        HostRequest::Gh(gh) => {
            blocking(move || {
                let lock = PathBuf::new();
                exec::gh(
                    &exec::BoxFacts {
                        name: &name,
                        project: &project,
                        branch: &branch,
                        push_lock: &lock,
                    },
                    &gh,
                )
            })
            .await
        }
        HostRequest::Git(git) if matches!(git.op, GitOp::Fetch | GitOp::Pull) => {
            match tempfile::tempdir() {
                Ok(staged) => fetch_for_box(record, &shared.relay(record, url), &git, staged).await,
                Err(e) => refusal("refused", format!("no temporary directory: {e}")),
            }
        }
        HostRequest::CopyToHost {
            blob,
            name: entry,
            dest,
        } => {
            let staged = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => return refusal("refused", format!("no temporary directory: {e}")),
            };
            let path = match fetch_blob(&shared.relay(record, url), &blob, staged.path()).await {
                Ok(p) => p,
                Err(e) => return refusal("refused", e),
            };
            let id = leased.id.0.clone();
            blocking(move || {
                let _keep = staged;
                match copy::to_host(&project, &path, &entry, &dest, &id) {
                    Ok(paths) => {
                        let shown: Vec<String> =
                            paths.iter().map(|p| p.display().to_string()).collect();
                        exec::Done {
                            outcome: Outcome {
                                exit_code: 0,
                                stdout: lines(&shown),
                                stderr: String::new(),
                                bundle: None,
                            },
                            decision: "done",
                            detail: format!("wrote {}", shown.join(", ")),
                        }
                    }
                    Err(e) => refusal("refused", e),
                }
            })
            .await
        }
        HostRequest::CopyFromHost { src, dest } => {
            let staged = match tempfile::tempdir() {
                Ok(d) => d,
                Err(e) => return refusal("refused", format!("no temporary directory: {e}")),
            };
            let archive = staged.path().join("from-host.tar");
            let packed = {
                let (project, src, archive) = (project.clone(), src.clone(), archive.clone());
                tokio::task::spawn_blocking(move || copy::pack_from_host(&project, &src, &archive))
                    .await
            };
            match packed {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => return refusal("refused", e),
                Err(e) => return refusal("refused", e.to_string()),
            }
            let relay = shared.relay(record, url);
            let land = agentbox_protocol::files::LandRequest {
                blake3: String::new(),
                size: 0,
                kind: agentbox_protocol::files::TransferKind::Tar,
                dest: dest.clone(),
                name: None,
                mode: None,
            };
            let id = match agentbox_protocol::files::new_transfer_id() {
                Ok(id) => id,
                Err(e) => return refusal("refused", e.to_string()),
            };
            match relay.upload(&id, &archive, land, &|_, _| {}).await {
                Ok(landed) => exec::Done {
                    outcome: Outcome {
                        exit_code: 0,
                        stdout: lines(&landed.paths),
                        stderr: String::new(),
                        bundle: None,
                    },
                    decision: "done",
                    detail: format!(
                        "sent {} to {}",
                        project.join(&src).display(),
                        landed.paths.join(", ")
                    ),
                },
                Err(e) => exec::Done {
                    outcome: Outcome {
                        exit_code: 1,
                        stdout: String::new(),
                        stderr: format!("{e:#}\n"),
                        bundle: None,
                    },
                    decision: "done",
                    detail: format!("failed: {e:#}"),
                },
            }
        }
        HostRequest::AgentState(status) => {
            let path = shared.home.agent_states(&name);
            blocking(move || exec::agent_state(&name, &path, &status)).await
        }
        request => blocking(move || exec::execute(&name, &request)).await,
    }
}

/// `git fetch|pull` from a box: the host fetches, bundles what the box lacks and lands it
/// in the box's `.git/` under its digest, for `agentbox-ctl` to import.
async fn fetch_for_box(
    record: &BoxRecord,
    relay: &Relay,
    git: &agentbox_protocol::bridge::GitRequest,
    staged: tempfile::TempDir,
) -> exec::Done {
    let mut known = vec![format!("refs/agentbox/{}/head", record.name)];
    if let Ok(sync) = crate::sync::SyncRecord::load(&record.dir) {
        known.push(sync.head);
    }
    let (project, branch, name, request) = (
        record.project.clone(),
        record.branch.clone(),
        record.name.clone(),
        git.clone(),
    );
    let dir = staged.path().to_path_buf();
    let lock = PathBuf::new();
    let fetched = tokio::task::spawn_blocking(move || {
        exec::git_fetch(
            &exec::BoxFacts {
                name: &name,
                project: &project,
                branch: &branch,
                push_lock: &lock,
            },
            &request,
            &known,
            &dir,
        )
    })
    .await;
    let fetched = match fetched {
        Ok(Ok(f)) => f,
        Ok(Err(done)) => return *done,
        Err(e) => return refusal("refused", format!("the fetch task failed: {e}")),
    };
    let mut out = Outcome {
        exit_code: 0,
        stdout: format!("fetched {}\n", fetched.tracking),
        stderr: fetched.stderr,
        bundle: None,
    };
    if let Some(bundle) = &fetched.bundle {
        let (digest, size) = match agentbox_protocol::part_file::hash_file(bundle).await {
            Ok(v) => v,
            Err(e) => return refusal("refused", format!("cannot read the bundle: {e}")),
        };
        let land = agentbox_protocol::files::LandRequest {
            blake3: String::new(),
            size: 0,
            kind: agentbox_protocol::files::TransferKind::File,
            dest: ".git/".into(),
            name: Some(format!("{digest}.bundle")),
            mode: Some(0o644),
        };
        let id = match agentbox_protocol::files::new_transfer_id() {
            Ok(id) => id,
            Err(e) => return refusal("refused", e.to_string()),
        };
        if let Err(e) = relay.upload(&id, bundle, land, &|_, _| {}).await {
            return refusal(
                "refused",
                format!("cannot send the bundle to the box: {e:#}"),
            );
        }
        out.bundle = Some(BlobRef {
            blake3: digest,
            size,
        });
    }
    drop(staged);
    exec::Done {
        detail: format!(
            "fetched {} ({} bytes to the box)",
            fetched.tracking,
            out.bundle.as_ref().map_or(0, |b| b.size)
        ),
        outcome: out,
        decision: "done",
    }
}

/// One line per path.
fn lines(paths: &[String]) -> String {
    paths.iter().flat_map(|p| [p.as_str(), "\n"]).collect()
}

async fn blocking(f: impl FnOnce() -> exec::Done + Send + 'static) -> exec::Done {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| refusal("refused", format!("the request task failed: {e}")))
}

/// Posts the outcome; if it cannot, the lease expires, the relay re-delivers, and the
/// record answers.
async fn answer(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: LeasedRequest,
    outcome: Outcome,
) {
    let body = ResultPost {
        id: leased.id,
        lease: leased.lease,
        outcome,
    };
    for _ in 0..5 {
        let sent = shared
            .relay(record, url)
            .request(reqwest::Method::POST, "/v1/bridge/result")
            .timeout(Duration::from_secs(10))
            .json(&body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 409) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Downloads a blob from the relay into `dir`, checking size and blake3 as it streams.
async fn fetch_blob(
    relay: &Relay,
    blob: &BlobRef,
    dir: &std::path::Path,
) -> Result<PathBuf, String> {
    use futures_util::StreamExt;
    use tokio::io::AsyncWriteExt;
    if !agentbox_protocol::transfer::is_blake3_hex(&blob.blake3) || blob.size > MAX_BUNDLE {
        return Err(format!(
            "bad blob reference (or larger than {MAX_BUNDLE} bytes)"
        ));
    }
    let response = relay
        .request(reqwest::Method::GET, &format!("/v1/blobs/{}", blob.blake3))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot fetch the bundle: {e}"))?;
    let path = dir.join(&blob.blake3);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| e.to_string())?;
    let mut hasher = blake3::Hasher::new();
    let mut size = 0u64;
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the bundle download broke: {e}"))?;
        size += chunk.len() as u64;
        if size > blob.size {
            return Err("the bundle is larger than announced".into());
        }
        hasher.update(&chunk);
        file.write_all(&chunk).await.map_err(|e| e.to_string())?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    let digest = hasher.finalize().to_hex().to_string();
    if size != blob.size || digest != blob.blake3 {
        return Err(format!(
            "the bundle is corrupt: blake3 {digest}, {size} bytes; announced {}, {} bytes",
            blob.blake3, blob.size
        ));
    }
    Ok(path)
}

/// The largest push bundle the host accepts.
const MAX_BUNDLE: u64 = 1 << 30;

/// Starts the daemon in the background unless it runs; returns its pid.
pub fn ensure_started(home: &Home) -> anyhow::Result<i32> {
    if let Some(pid) = running_pid(home) {
        return Ok(pid);
    }
    let exe = std::env::current_exe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(home.root().join("bridge.log"))?;
    std::process::Command::new("setsid")
        .arg(exe)
        .args(["bridge", "run"])
        .env("AGENTBOX_HOME", home.root())
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .context("cannot start the host bridge")?;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(pid) = running_pid(home) {
            return Ok(pid);
        }
        if std::time::Instant::now() > deadline {
            bail!(
                "the host bridge did not start; see {}",
                home.root().join("bridge.log").display()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops the daemon if it runs.
pub fn stop(home: &Home) -> anyhow::Result<bool> {
    let Some(pid) = running_pid(home) else {
        return Ok(false);
    };
    let _ = nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGTERM,
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while running_pid(home).is_some() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(true)
}
