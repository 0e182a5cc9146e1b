//! The host bridge daemon: one per `AGENTBOX_HOME` (a `flock` on `bridge.lock`). It
//! long-polls every ready box's relay, runs what they ask concurrently (bounded per box),
//! records each completed request id with its outcome before answering — so a
//! re-delivered request gets the recorded answer instead of running twice — and keeps an
//! audit log. The policy layer, approvals and git are the rest of issue #6.

pub mod exec;
pub mod journal;

use std::collections::HashSet;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::bridge::{
    BlobRef, GitOp, GitRequest, HostRequest, LeasedRequest, Outcome, PollResponse, ResultPost,
};
use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

use crate::home::Home;
use crate::state::{BoxRecord, State};
use journal::{AuditEntry, HostJournal};

/// Requests run at once for one box.
const PER_BOX: usize = 8;
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
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(POLL_WAIT_MS + 10_000))
        .build()?;
    let shared = Shared {
        journal: Arc::new(Mutex::new(HostJournal::open(&home.state_db())?)),
        home: home.clone(),
        client,
        polled: Arc::default(),
        inflight: Arc::default(),
    };
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tracing::info!("host bridge running");
    loop {
        let boxes = State::open(&home.state_db())
            .and_then(|s| s.all())
            .unwrap_or_default();
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
    client: reqwest::Client,
    /// Boxes with a poller.
    polled: Arc<Mutex<HashSet<String>>>,
    /// `box/id` of requests being carried out: a re-delivery of one of them is not run
    /// again (the first run answers, and the relay accepts any lease it issued).
    inflight: Arc<Mutex<HashSet<String>>>,
    /// The host's records, one connection for all handlers.
    journal: Arc<Mutex<HostJournal>>,
}

/// Polls one box until it is gone from the state.
async fn poll_box(shared: Shared, record: BoxRecord) {
    let (home, client) = (shared.home.clone(), shared.client.clone());
    let Some(url) = record.bridge_url.clone() else {
        return;
    };
    let slots = Arc::new(tokio::sync::Semaphore::new(PER_BOX));
    let mut backoff = Duration::from_millis(200);
    let mut checked = std::time::Instant::now();
    loop {
        if checked.elapsed() > Duration::from_secs(2) {
            checked = std::time::Instant::now();
            match State::open(&home.state_db()).and_then(|s| s.get(&record.name)) {
                Ok(Some(current)) if current.bridge_url.as_deref() == Some(url.as_str()) => {}
                _ => break, // destroyed or restarted elsewhere: a new poller takes over
            }
        }
        let response = client
            .get(format!("{url}/v1/bridge/poll?wait_ms={POLL_WAIT_MS}"))
            .bearer_auth(&record.bridge_token)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status);
        let batch = match response {
            Ok(r) => r.json::<PollResponse>().await,
            Err(e) => Err(e),
        };
        match batch {
            Ok(batch) => {
                backoff = Duration::from_millis(200);
                for leased in batch.requests {
                    let Ok(permit) = slots.clone().acquire_owned().await else {
                        break;
                    };
                    let (shared, record, url) = (shared.clone(), record.clone(), url.clone());
                    tokio::spawn(async move {
                        handle(&shared, &record, &url, leased).await;
                        drop(permit);
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
    let mut polled = shared.polled.lock();
    if let Ok(p) = polled.as_mut() {
        p.remove(&record.name);
    }
}

/// Runs one request exactly once and answers it (again, from the record, if re-delivered).
async fn handle(shared: &Shared, record: &BoxRecord, url: &str, leased: LeasedRequest) {
    let key = format!("{}/{}", record.name, leased.id);
    if !shared
        .inflight
        .lock()
        .is_ok_and(|mut f| f.insert(key.clone()))
    {
        return; // already being carried out: that run answers
    }
    handle_once(shared, record, url, leased).await;
    if let Ok(mut f) = shared.inflight.lock() {
        f.remove(&key);
    }
}

async fn handle_once(shared: &Shared, record: &BoxRecord, url: &str, leased: LeasedRequest) {
    let client = &shared.client;
    let journal = shared.journal.clone();
    // A push brings its bundle: fetched from the relay and checked against its digest
    // before anything looks at it.
    let staged = tempfile::tempdir();
    let bundle = match (&leased.request, &staged) {
        (
            HostRequest::Git(GitRequest {
                bundle: Some(blob), ..
            }),
            Ok(dir),
        ) => Some(fetch_blob(client, url, &record.bridge_token, blob, dir.path()).await),
        _ => None,
    };
    let (project, branch) = (record.project.clone(), record.branch.clone());
    let (name, id, request) = (
        record.name.clone(),
        leased.id.0.clone(),
        leased.request.clone(),
    );
    let done: anyhow::Result<Outcome> = tokio::task::spawn_blocking(move || {
        let lock = || {
            journal
                .lock()
                .map_err(|_| anyhow::anyhow!("the host journal lock is poisoned"))
        };
        let entry = |decision: &str, detail: String, exit_code| AuditEntry {
            ts_ms: agentbox_protocol::now_millis(),
            box_name: name.clone(),
            request_id: id.clone(),
            kind: request.kind().to_string(),
            decision: decision.to_string(),
            detail,
            exit_code,
        };
        let recorded = lock()?.completed(&name, &id)?;
        if let Some(outcome) = recorded {
            lock()?.audit(&entry(
                "replayed",
                "re-delivered; answered from the record".into(),
                outcome.exit_code,
            ))?;
            return Ok(outcome);
        }
        let done = match (&request, bundle) {
            (HostRequest::Git(git), Some(Ok(path))) if git.op == GitOp::Push => exec::git_push(
                &exec::BoxFacts {
                    name: &name,
                    project: &project,
                    branch: &branch,
                },
                git,
                &path,
            ),
            (HostRequest::Git(_), Some(Err(e))) => exec::Done {
                outcome: Outcome {
                    exit_code: 1,
                    stdout: String::new(),
                    stderr: format!("refused by the host: {e}\n"),
                    bundle: None,
                },
                decision: "refused",
                detail: e,
            },
            _ => exec::execute(&name, &request),
        };
        lock()?.record(
            &entry(done.decision, done.detail, done.outcome.exit_code),
            &done.outcome,
        )?;
        Ok(done.outcome)
    })
    .await
    .context("the request task panicked")
    .and_then(|r| r);
    let outcome = match done {
        Ok(o) => o,
        Err(e) => {
            tracing::warn!(error = %e, "cannot record a request; it will be re-delivered");
            return;
        }
    };
    let body = ResultPost {
        id: leased.id,
        lease: leased.lease,
        outcome,
    };
    for _ in 0..5 {
        let sent = client
            .post(format!("{url}/v1/bridge/result"))
            .bearer_auth(&record.bridge_token)
            .json(&body)
            .send()
            .await;
        if sent.is_ok_and(|r| r.status().is_success() || r.status().as_u16() == 409) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Not answered: the lease expires, the relay re-delivers, and the record answers.
}

/// Downloads a blob from the relay into `dir`, checking size and blake3 as it streams.
async fn fetch_blob(
    client: &reqwest::Client,
    url: &str,
    token: &str,
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
    let response = client
        .get(format!("{url}/v1/blobs/{}", blob.blake3))
        .bearer_auth(token)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| format!("cannot fetch the bundle: {e}"))?;
    let path = dir.join("push.bundle");
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
