//! One request from a box, from lease to answer: replayed from the record when it was
//! already carried out, else decided by the policy (waiting for `agentbox approve` when it
//! says so), run, recorded with its outcome, audited, and answered.

use std::path::PathBuf;
use std::time::Duration;

use agentbox_protocol::bridge::{BlobRef, GitOp, HostRequest, LeasedRequest, Outcome, ResultPost};

use super::journal::AuditEntry;
use super::policy;
use super::shared::{with_journal, Shared, Slot};
use super::{copy, exec};
use crate::state::BoxRecord;
use crate::transfer::client::Relay;

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
        request_id: leased.id.to_string(),
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

pub(super) async fn handle_once(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: LeasedRequest,
    mut slot: Slot,
) {
    let (name, id) = (record.name.clone(), leased.id.to_string());
    // What approvals and the record are bound to: this exact request from this box.
    let digest = match policy::digest(&name, &leased.request) {
        Ok(d) => d,
        Err(e) => {
            tracing::warn!(error = %e, "cannot digest a request; it will be re-delivered");
            return;
        }
    };
    let replay = {
        let (name, id) = (name.clone(), id.clone());
        with_journal(shared, move |j| Ok(j.completed(&name, &id)?)).await
    };
    let outcome = match replay {
        // Recorded for this very request (or before records were bound to requests).
        Ok(Some(done)) if done.digest.as_deref().is_none_or(|d| d == digest) => {
            let entry = audit_entry(
                record,
                &leased,
                "replayed",
                "re-delivered; answered from the record".into(),
                done.outcome.exit_code,
            );
            let _ = with_journal(shared, move |j| Ok(j.audit(&entry)?)).await;
            done.outcome
        }
        // Another request under an id that was carried out: neither run nor answered
        // with the other one's outcome.
        Ok(Some(_)) => {
            let done = refusal(
                "refused",
                format!(
                    "the request under id {id} changed after it was carried out; it is not run again under that id"
                ),
            );
            let entry = audit_entry(record, &leased, done.decision, done.detail, 1);
            let _ = with_journal(shared, move |j| Ok(j.audit(&entry)?)).await;
            done.outcome
        }
        Ok(None) => {
            let done = decide_and_run(shared, record, url, &leased, &digest, &mut slot).await;
            let entry = audit_entry(
                record,
                &leased,
                done.decision,
                done.detail,
                done.outcome.exit_code,
            );
            let outcome = done.outcome;
            let kept = outcome.clone();
            if let Err(e) =
                with_journal(shared, move |j| Ok(j.record(&entry, &kept, &digest)?)).await
            {
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
    digest: &str,
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
            let ttl = policy.approval_ttl_ms();
            match wait_for_approval(shared, record, url, leased, digest, ttl).await {
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
/// keeping the lease alive and telling the box what to run. The approval is bound to the
/// request's `digest`: one that showed another request under the same id (the box's
/// journal is the box's to rewrite) approves nothing here.
async fn wait_for_approval(
    shared: &Shared,
    record: &BoxRecord,
    url: &str,
    leased: &LeasedRequest,
    digest: &str,
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
        let (name, id, kind, text, bound) = (
            record.name.clone(),
            leased.id.to_string(),
            leased.request.kind().to_string(),
            summary.clone(),
            digest.to_string(),
        );
        let approval = with_journal(shared, move |j| match j.no_room_for(&name, &id)? {
            Some(why) => Ok(Err(why)),
            None => Ok(Ok(j.approval_for(&name, &id, &kind, &text, &bound, ttl_ms)?)),
        })
        .await
        .map_err(|e| refusal("refused", format!("cannot record the approval: {e:#}")))?
        .map_err(|why| refusal("refused", why))?;
        if approval.digest.as_deref() != Some(digest) {
            return Err(refusal(
                "refused",
                format!(
                    "the request under id {} changed after approval {} showed it (it showed: {}); the changed request is not run",
                    leased.id, approval.id, approval.summary
                ),
            ));
        }
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
            blocking(move || {
                let _keep = staged;
                match copy::to_host(&project, &path, &entry, &dest) {
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
            // A report is always recorded; its notification obeys `policy.notify` as a
            // `notify` request does (only `allow` shows one: nobody approves a report).
            let notify = shared
                .policies
                .get(&shared.home, &record.project)
                .is_ok_and(|p| p.notify_allowed());
            blocking(move || exec::agent_state(&name, &path, &status, notify)).await
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
