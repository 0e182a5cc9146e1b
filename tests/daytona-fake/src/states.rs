//! The fake's sandbox lifecycle rules, as Daytona's `sandbox.service.ts` (v0.190) has them:
//! which state accepts which action, what a refused one answers, a checkpoint's capture,
//! and the `sandboxState` fault that puts a sandbox in any state Daytona can show.
//!
//! - A change is pending while `state != desiredState` (failures and an archive in
//!   progress hold no lock): start, stop and delete are then `409 Sandbox state change in
//!   progress`, except a start of an archive in progress and a delete of `pending_build`.
//! - `start` takes `stopped`, `archived`, `archiving` (an archived sandbox is `restoring`
//!   first); `stop` takes `started`; `error` and `build_failed` refuse both (400).
//! - An accepted start or stop leaves the state as it was for a moment (only
//!   `desiredState` changes, as Daytona's API does before a runner acts), then moves.
//! - A capture (`POST /sandbox/{id}/snapshot`) takes `started` or `stopped`; the sandbox
//!   is `snapshotting` meanwhile and goes back to what it was; the snapshot record only
//!   appears, `active`, once the capture is done (until then `GET /snapshots/{name}` is
//!   404).

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::{error, gate, lock, Shared};

/// Whether a change is under way (Daytona's `pending`).
pub fn pending(s: &Value) -> bool {
    let state = s["state"].as_str().unwrap_or("");
    !matches!(state, "error" | "build_failed" | "archiving") && s["state"] != s["desiredState"]
}

fn errored(s: &Value) -> bool {
    matches!(s["state"].as_str(), Some("error" | "build_failed"))
}

/// What Daytona answers a refused `op` (`start`, `stop`, `delete`) on sandbox `s`, or the
/// state it passes through and the one it ends in.
pub fn plan(
    s: &Value,
    op: &str,
) -> Result<(&'static str, &'static str), (StatusCode, &'static str)> {
    const BUSY: (StatusCode, &str) = (StatusCode::CONFLICT, "Sandbox state change in progress");
    let state = s["state"].as_str().unwrap_or("");
    let desired = s["desiredState"].as_str().unwrap_or("");
    match op {
        "start" => {
            if errored(s) {
                return Err((StatusCode::BAD_REQUEST, "Sandbox is in an errored state"));
            }
            if state != desired
                && !(desired == "archived" && matches!(state, "stopped" | "archiving"))
            {
                return Err(BUSY);
            }
            match state {
                "stopped" => Ok(("starting", "started")),
                "archived" | "archiving" => Ok(("restoring", "started")),
                _ => Err((StatusCode::BAD_REQUEST, "Sandbox is not in valid state")),
            }
        }
        "stop" => {
            if errored(s) {
                return Err((StatusCode::BAD_REQUEST, "Sandbox is in an errored state"));
            }
            if state != desired {
                return Err(BUSY);
            }
            if state != "started" {
                return Err((
                    StatusCode::BAD_REQUEST,
                    "Sandbox is not in a stoppable state",
                ));
            }
            Ok(("stopping", "stopped"))
        }
        _ => {
            if pending(s) && state != "pending_build" {
                return Err(BUSY);
            }
            Ok(("destroying", "destroyed"))
        }
    }
}

/// Fault `{"sandboxState": {"sandbox": ID_OR_NAME, "state": S, "desiredState": D,
/// "errorReason": R, "thenMs": M, "then": S2}}`: puts a sandbox in state S (desired D,
/// default S), and M ms later (if it is still in S) in S2 with desired S2 (`destroyed`
/// removes it).
pub fn set_sandbox_state(fake: &Shared, spec: &Value) -> Result<(), String> {
    let (Some(which), Some(state)) = (spec["sandbox"].as_str(), spec["state"].as_str()) else {
        return Err("sandboxState needs sandbox and state".into());
    };
    let id = {
        let mut map = lock(&fake.sandboxes);
        let s = crate::find(&mut map, which).ok_or_else(|| format!("no sandbox {which}"))?;
        s["state"] = json!(state);
        s["desiredState"] = json!(spec["desiredState"].as_str().unwrap_or(state));
        match (spec["errorReason"].as_str(), s.as_object_mut()) {
            (Some(reason), _) => s["errorReason"] = json!(reason),
            (None, Some(fields)) => {
                fields.remove("errorReason");
            }
            (None, None) => {}
        }
        s["id"].as_str().unwrap_or_default().to_string()
    };
    if let (Some(ms), Some(then)) = (spec["thenMs"].as_u64(), spec["then"].as_str()) {
        let (fake, from, then) = (fake.clone(), state.to_string(), then.to_string());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            let mut map = lock(&fake.sandboxes);
            if then == "destroyed" {
                map.remove(&id);
            } else if let Some(s) = map.get_mut(&id).filter(|s| s["state"] == from.as_str()) {
                s["state"] = json!(then);
                s["desiredState"] = json!(then);
            }
        });
    }
    Ok(())
}

/// `POST /api/sandbox/{id}/snapshot {name}`: the sandbox's disk (its container committed,
/// or nothing for a record-only sandbox) becomes snapshot `name`, recorded `active` only
/// when the capture is done; the sandbox is `snapshotting` meanwhile (at least the
/// transition time, plus the `slowCaptureMs` fault) and then back in its state.
pub async fn checkpoint(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/api/sandbox/{id}/snapshot");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let Some(name) = body["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .map(str::to_string)
    else {
        return error(StatusCode::BAD_REQUEST, &path, "name is required");
    };
    if lock(&fake.snapshots)
        .values()
        .any(|s| s["name"] == name.as_str())
    {
        return error(
            StatusCode::CONFLICT,
            &path,
            &format!("Snapshot with name \"{name}\" already exists for this organization"),
        );
    }
    let (sid, previous, answer) = {
        let mut map = lock(&fake.sandboxes);
        let Some(s) = crate::find(&mut map, &id) else {
            return error(
                StatusCode::NOT_FOUND,
                &path,
                &format!("Sandbox with ID or name {id} not found"),
            );
        };
        let state = s["state"].as_str().unwrap_or("").to_string();
        if state != "started" && state != "stopped" {
            return error(
                StatusCode::BAD_REQUEST,
                &path,
                "Sandbox must be in started or stopped state to create a snapshot",
            );
        }
        if pending(s) {
            return error(
                StatusCode::CONFLICT,
                &path,
                "Sandbox state change in progress",
            );
        }
        s["state"] = json!("snapshotting");
        (
            s["id"].as_str().unwrap_or_default().to_string(),
            state,
            s.clone(),
        )
    };
    let slow = Duration::from_millis(lock(&fake.faults).slow_capture_ms);
    let fake2 = fake.clone();
    tokio::spawn(async move {
        let started = tokio::time::Instant::now();
        let image = format!("daytona-fake-ckpt:{}", crate::next_id(&fake2, "c"));
        let has_container = docker(&["container", "inspect", &format!("daytona-fake-{sid}")])
            .await
            .is_ok();
        let done = if has_container {
            docker(&["commit", &format!("daytona-fake-{sid}"), &image]).await
        } else {
            Ok(String::new())
        };
        let least = fake2.transition + slow;
        if let Some(rest) = least.checked_sub(started.elapsed()) {
            tokio::time::sleep(rest).await;
        }
        let (cpu, mem, disk) = lock(&fake2.sandboxes)
            .get(&sid)
            .map_or((json!(1), json!(1), json!(3)), |s| {
                (s["cpu"].clone(), s["memory"].clone(), s["disk"].clone())
            });
        match done {
            Ok(_) => {
                let snap_id = crate::next_id(&fake2, "snap");
                lock(&fake2.snapshots).insert(
                    snap_id.clone(),
                    json!({
                        "id": snap_id, "organizationId": "org-fake", "general": false,
                        "name": name, "imageName": image,
                        "state": "active", "size": 0.5, "entrypoint": [],
                        "cpu": cpu, "gpu": 0, "mem": mem, "disk": disk,
                        "errorReason": null, "createdAt": "2026-11-29T00:00:00.000Z",
                        "updatedAt": "2026-11-29T00:00:00.000Z", "lastUsedAt": null,
                        "regionIds": ["us"], "sandboxClass": "container",
                    }),
                );
            }
            Err(e) => eprintln!("daytona-fake: the capture of {sid} failed: {e}"),
        }
        // As Daytona: back to the state it was in, whether the capture worked or not.
        if let Some(s) = lock(&fake2.sandboxes)
            .get_mut(&sid)
            .filter(|s| s["state"] == "snapshotting")
        {
            s["state"] = json!(previous);
        }
    });
    Json(answer).into_response()
}

/// Runs `docker ARGS`; its stdout, or its stderr as the error.
async fn docker(args: &[&str]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// A create checked as Daytona's controller and service check it; the snapshot it names
/// (its record), if any. A build (`buildInfo`) takes resources and no snapshot; a snapshot
/// takes no resources (the sandbox gets the snapshot's) and must exist and be `active`
/// (400 otherwise, with Daytona's words); a name already held in the organization is a
/// 409.
pub fn admit(fake: &crate::Fake, body: &Value) -> Result<Option<Value>, Box<Response>> {
    let path = "/api/sandbox";
    let refuse = |status, message: &str| Err(Box::new(error(status, path, message)));
    let build = body.get("buildInfo").is_some_and(|b| !b.is_null());
    let snapshot = body["snapshot"].as_str().filter(|n| !n.trim().is_empty());
    let resources = ["cpu", "gpu", "memory", "disk"]
        .iter()
        .any(|k| body[*k].as_u64().is_some_and(|v| v > 0));
    if build && snapshot.is_some() {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Cannot specify a snapshot when using a build info entry",
        );
    }
    if !build && resources {
        return refuse(
            StatusCode::BAD_REQUEST,
            "Cannot specify Sandbox resources when using a snapshot",
        );
    }
    let found = match snapshot {
        None => None,
        Some(name) => {
            let snapshots = lock(&fake.snapshots);
            let Some(s) = snapshots
                .values()
                .find(|s| s["name"] == name || s["id"] == name)
            else {
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!(
                        "Snapshot {name} not found. Did you add it through the Daytona Dashboard?"
                    ),
                );
            };
            if s["state"] != "active" {
                let state = s["state"].as_str().unwrap_or("unknown");
                return refuse(
                    StatusCode::BAD_REQUEST,
                    &format!("Snapshot {name} is {state}"),
                );
            }
            Some(s.clone())
        }
    };
    if let Some(name) = body["name"].as_str() {
        if lock(&fake.sandboxes).values().any(|s| s["name"] == name) {
            return refuse(
                StatusCode::CONFLICT,
                &format!("Sandbox with name {name} already exists"),
            );
        }
    }
    Ok(found)
}

/// A sandbox created from a `buildInfo`: `pending_build`, then `building_snapshot` while
/// Docker builds the image, then run as a snapshot's would be (`build_failed` with the
/// build's last lines if it fails).
pub fn build_then_run(fake: &Shared, id: String, build: Value, env: Value, volumes: Value) {
    let fake = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(fake.transition / 2).await;
        let moved = lock(&fake.sandboxes)
            .get_mut(&id)
            .filter(|s| s["state"] == "pending_build")
            .map(|s| s["state"] = json!("building_snapshot"))
            .is_some();
        if !moved {
            return;
        }
        match crate::resources::build_image(&fake, &id, &build).await {
            Ok(image) => crate::settle(
                &fake,
                id,
                "building_snapshot",
                "started",
                crate::Op::Run {
                    image,
                    env,
                    volumes,
                },
            ),
            Err(reason) => {
                if let Some(s) = lock(&fake.sandboxes).get_mut(&id) {
                    s["state"] = json!("build_failed");
                    s["errorReason"] = json!(reason);
                }
            }
        }
    });
}
