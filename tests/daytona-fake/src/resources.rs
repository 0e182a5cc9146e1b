//! The fake's volumes (`/api/volumes…`), snapshots (`/api/snapshots…`) and preview links
//! (`/api/sandbox/{id}/ports/{port}/…`), in Daytona's shapes and states.
//!
//! Snapshots go `pending → active` (from an image) or `building → active` (from a
//! Dockerfile, built with Docker from the uploaded contexts) after the transition time; the
//! `failNextSnapshot` fault makes the next one `build_failed` with that reason. A delete is
//! asynchronous, as Daytona's: the snapshot goes `removing` and keeps its name (a create of
//! that name is a 409) until it is gone, the transition time later (or the
//! `snapshotRemovalMs` fault's).

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::{error, find, gate, lock, next_id, Shared};

const NOW: &str = "2026-11-29T00:00:00.000Z";

fn settle_in<F>(fake: &Shared, apply: F)
where
    F: FnOnce(&crate::Fake) + Send + 'static,
{
    settle_in_after(fake, Duration::ZERO, apply);
}

/// Like [`settle_in`], `extra` later.
fn settle_in_after<F>(fake: &Shared, extra: Duration, apply: F)
where
    F: FnOnce(&crate::Fake) + Send + 'static,
{
    let fake = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(fake.transition + extra).await;
        apply(&fake);
    });
}

/// `POST /api/volumes {name}`.
pub async fn create_volume(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = "/api/volumes";
    if let Err(r) = gate(&fake, &headers, path) {
        return *r;
    }
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            path,
            "name must be a non-empty string",
        );
    };
    let mut volumes = lock(&fake.volumes);
    if volumes.values().any(|v| v["name"] == name) {
        return error(
            StatusCode::CONFLICT,
            path,
            &format!("Volume with name {name} already exists"),
        );
    }
    let id = next_id(&fake, "vol");
    let volume = json!({
        "id": id, "name": name, "organizationId": super::organizations::acting_id(&fake, &headers), "state": "pending_create",
        "createdAt": NOW, "updatedAt": NOW, "lastUsedAt": null, "errorReason": null,
    });
    volumes.insert(id.clone(), volume.clone());
    drop(volumes);
    settle_in(&fake, move |f| {
        if let Some(v) = lock(&f.volumes).get_mut(&id) {
            v["state"] = json!("ready");
        }
    });
    Json(volume).into_response()
}

/// `GET /api/volumes`.
pub async fn list_volumes(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&fake, &headers, "/api/volumes") {
        return *r;
    }
    let all: Vec<Value> = lock(&fake.volumes).values().cloned().collect();
    Json(all).into_response()
}

/// `GET /api/volumes/by-name/{name}`.
pub async fn volume_by_name(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    let path = format!("/api/volumes/by-name/{name}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    match lock(&fake.volumes)
        .values()
        .find(|v| v["name"] == name.as_str())
    {
        Some(v) => Json(v.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Volume with name {name} not found"),
        ),
    }
}

/// `GET /api/volumes/{id}`.
pub async fn get_volume(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/volumes/{id}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    match lock(&fake.volumes).get(&id) {
        Some(v) => Json(v.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Volume with ID {id} not found"),
        ),
    }
}

/// `DELETE /api/volumes/{id}`: `409` while a sandbox mounts it.
pub async fn delete_volume(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/volumes/{id}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let in_use = lock(&fake.sandboxes).values().any(|s| {
        s["volumes"]
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| v["volumeId"] == id.as_str()))
    });
    if in_use {
        return error(
            StatusCode::CONFLICT,
            &path,
            "Volume is in use by one or more sandboxes",
        );
    }
    let mut volumes = lock(&fake.volumes);
    let Some(v) = volumes.get_mut(&id) else {
        return error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Volume with ID {id} not found"),
        );
    };
    v["state"] = json!("pending_delete");
    drop(volumes);
    settle_in(&fake, move |f| {
        lock(&f.volumes).remove(&id);
    });
    (StatusCode::OK, "Volume has been marked for deletion").into_response()
}

/// `POST /api/snapshots`.
pub async fn create_snapshot(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    let path = "/api/snapshots";
    if let Err(r) = gate(&fake, &headers, path) {
        return *r;
    }
    let Some(name) = body["name"].as_str().filter(|n| !n.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            path,
            "name must be a non-empty string",
        );
    };
    let image = body["imageName"].as_str();
    let build = body.get("buildInfo").filter(|b| !b.is_null());
    if image.is_some_and(|i| i.ends_with(":latest")) {
        return error(
            StatusCode::BAD_REQUEST,
            path,
            "Snapshots with tag ':latest' are not allowed",
        );
    }
    if image.is_none() && build.is_none_or(|b| b["dockerfileContent"].as_str().is_none()) {
        return error(
            StatusCode::BAD_REQUEST,
            path,
            "Either imageName or buildInfo.dockerfileContent is required",
        );
    }
    let mut snapshots = lock(&fake.snapshots);
    if snapshots.values().any(|s| s["name"] == name) {
        return error(
            StatusCode::CONFLICT,
            path,
            &format!("Snapshot with name {name} already exists"),
        );
    }
    let id = next_id(&fake, "snap");
    let first = if build.is_some() {
        "building"
    } else {
        "pending"
    };
    let mut snapshot = json!({
        "id": id, "organizationId": super::organizations::acting_id(&fake, &headers), "general": false, "name": name,
        "imageName": image, "state": first, "size": null,
        "entrypoint": body.get("entrypoint").cloned().unwrap_or(json!([])),
        "cpu": body.get("cpu").cloned().unwrap_or(json!(1)), "gpu": 0, "gpuType": [],
        "mem": body.get("memory").cloned().unwrap_or(json!(1)),
        "disk": body.get("disk").cloned().unwrap_or(json!(3)),
        "errorReason": null, "createdAt": NOW, "updatedAt": NOW, "lastUsedAt": null,
        "buildInfo": build.cloned().unwrap_or(Value::Null), "regionIds": ["us"],
        "initialRunnerId": null, "ref": null, "sandboxClass": "container",
    });
    // Daytona's SnapshotDto: a field without a value is absent, not null (only size,
    // entrypoint, errorReason and lastUsedAt may be null), `gpuType` is one type, and
    // `buildInfo` is the build's record, with its ref and times.
    if let Some(o) = snapshot.as_object_mut() {
        o.retain(|k, v| {
            !v.is_null()
                || ["size", "entrypoint", "errorReason", "lastUsedAt"].contains(&k.as_str())
        });
        o.remove("gpuType");
        if let Some(b) = o.get_mut("buildInfo").and_then(Value::as_object_mut) {
            b.insert(
                "snapshotRef".into(),
                json!(format!("daytona-fake-build:{id}")),
            );
            b.insert("createdAt".into(), json!(NOW));
            b.insert("updatedAt".into(), json!(NOW));
        }
    }
    snapshots.insert(id.clone(), snapshot.clone());
    drop(snapshots);
    let (failure, slow) = {
        let mut faults = lock(&fake.faults);
        (
            faults.fail_next_snapshot.take(),
            Duration::from_millis(faults.slow_snapshot_ms),
        )
    };
    if let (Some(build), None) = (build.cloned(), &failure) {
        let fake = fake.clone();
        tokio::spawn(async move {
            tokio::time::sleep(slow).await;
            self::build(fake, id, build).await;
        });
        return Json(snapshot).into_response();
    }
    settle_in_after(&fake, slow, move |f| {
        if let Some(s) = lock(&f.snapshots).get_mut(&id) {
            match failure {
                Some(reason) => {
                    s["state"] = json!("build_failed");
                    s["errorReason"] = json!(reason);
                }
                None => {
                    s["state"] = json!("active");
                    s["size"] = json!(0.4);
                }
            }
        }
    });
    Json(snapshot).into_response()
}

/// `GET /api/snapshots?page=&limit=&name=`.
pub async fn list_snapshots(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&fake, &headers, "/api/snapshots") {
        return *r;
    }
    let page: usize = q
        .get("page")
        .and_then(|p| p.parse().ok())
        .unwrap_or(1)
        .max(1);
    let limit: usize = q
        .get("limit")
        .and_then(|p| p.parse().ok())
        .unwrap_or(100)
        .clamp(1, 200);
    let matching: Vec<Value> = lock(&fake.snapshots)
        .values()
        .filter(|s| {
            q.get("name").is_none_or(|n| {
                s["name"]
                    .as_str()
                    .is_some_and(|name| name.contains(n.as_str()))
            })
        })
        .cloned()
        .collect();
    let total = matching.len();
    let items: Vec<Value> = matching
        .into_iter()
        .skip((page - 1) * limit)
        .take(limit)
        .collect();
    Json(json!({
        "items": items, "total": total, "page": page, "totalPages": total.div_ceil(limit),
    }))
    .into_response()
}

/// `GET /api/snapshots/{idOrName}`.
pub async fn get_snapshot(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/snapshots/{id}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    match find(&mut lock(&fake.snapshots), &id) {
        Some(s) => Json(s.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Snapshot with ID or name {id} not found"),
        ),
    }
}

/// `DELETE /api/snapshots/{id}` (the id only, as Daytona): the snapshot goes `removing`
/// and is gone later; its name stays taken meanwhile.
pub async fn delete_snapshot(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/snapshots/{id}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    match lock(&fake.snapshots).get_mut(&id) {
        Some(s) => s["state"] = json!("removing"),
        None => {
            return error(
                StatusCode::NOT_FOUND,
                &path,
                &format!("Snapshot {id} not found"),
            )
        }
    }
    let removal = lock(&fake.faults)
        .snapshot_removal_ms
        .map(Duration::from_millis);
    let fake2 = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(removal.unwrap_or(fake2.transition)).await;
        lock(&fake2.snapshots).remove(&id);
    });
    StatusCode::OK.into_response()
}

/// Fault `{"snapshotState": {"snapshot": ID_OR_NAME, "state": S}}`: puts a snapshot in
/// state S (e.g. `inactive`, `pulling`, `error`).
pub fn set_snapshot_state(fake: &crate::Fake, spec: &Value) -> Result<(), String> {
    let (Some(which), Some(state)) = (spec["snapshot"].as_str(), spec["state"].as_str()) else {
        return Err("snapshotState needs snapshot and state".into());
    };
    let mut snapshots = lock(&fake.snapshots);
    let s = find(&mut snapshots, which).ok_or_else(|| format!("no snapshot {which}"))?;
    s["state"] = json!(state);
    Ok(())
}

/// `GET /api/sandbox/{id}/ports/{port}/preview-url` and `…/signed-preview-url`.
pub async fn preview_url(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path((id, port, kind)): Path<(String, String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let path = format!("/api/sandbox/{id}/ports/{port}/{kind}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let Some(port) = port.parse::<u16>().ok().filter(|p| *p > 0) else {
        return error(StatusCode::BAD_REQUEST, &path, "Invalid port");
    };
    let sandbox_id = match find(&mut lock(&fake.sandboxes), &id) {
        Some(s) => s["id"].as_str().unwrap_or_default().to_string(),
        None => {
            return error(
                StatusCode::NOT_FOUND,
                &path,
                &format!("Sandbox with ID or name {id} not found"),
            )
        }
    };
    let base = format!("{}/_preview", fake.origin());
    match kind.as_str() {
        "preview-url" => {
            let token = lock(&fake.tokens)
                .get(&sandbox_id)
                .cloned()
                .unwrap_or_default();
            Json(json!({
                "sandboxId": sandbox_id, "url": format!("{base}/{port}-{sandbox_id}"), "token": token,
            }))
            .into_response()
        }
        "signed-preview-url" => {
            let seconds: u64 = match q.get("expiresInSeconds").map(|s| s.parse()) {
                None => 60,
                Some(Ok(s)) if (1..=86_400).contains(&s) => s,
                Some(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        &path,
                        "expiresInSeconds must be between 1 and 86400",
                    )
                }
            };
            let token = next_id(&fake, "s").replace('-', "");
            lock(&fake.signed).insert(
                token.clone(),
                (
                    sandbox_id.clone(),
                    port,
                    std::time::Instant::now() + std::time::Duration::from_secs(seconds),
                ),
            );
            Json(json!({
                "sandboxId": sandbox_id, "port": port, "token": token,
                "url": format!("{base}/{port}-{token}"),
            }))
            .into_response()
        }
        _ => error(StatusCode::NOT_FOUND, &path, "Cannot GET"),
    }
}

/// `GET /api/object-storage/push-access`: credentials for the fake's S3 (`/_s3`).
pub async fn push_access(State(fake): State<Shared>, headers: HeaderMap) -> Response {
    if let Err(r) = gate(&fake, &headers, "/api/object-storage/push-access") {
        return *r;
    }
    // Daytona hands the URL out as configured: the `schemelessStorageUrl` fault leaves the
    // scheme out, as its spec's example does.
    let url = format!("{}/_s3", fake.handed_origin());
    let url = if lock(&fake.faults).schemeless_storage_url {
        url.split_once("://")
            .map_or(url.clone(), |(_, rest)| rest.to_string())
    } else {
        url
    };
    Json(json!({
        "accessKey": "fake-access",
        "secret": "fake-secret",
        "sessionToken": "fake-session",
        "storageUrl": url,
        "organizationId": "org-fake",
        "bucket": "daytona-volume-builds",
    }))
    .into_response()
}

fn s3_path(fake: &crate::Fake, bucket: &str, key: &str) -> Option<std::path::PathBuf> {
    if key.split('/').any(|p| p.is_empty() || p == "..") || bucket.contains('/') {
        return None;
    }
    Some(fake.data.join("s3").join(bucket).join(key))
}

/// The fake's S3 checks that a request is SigV4-signed with the credentials it handed out.
fn s3_signed(headers: &HeaderMap) -> bool {
    let get = |k: &str| headers.get(k).and_then(|v| v.to_str().ok()).unwrap_or("");
    get("authorization").starts_with("AWS4-HMAC-SHA256 Credential=fake-access/")
        && get("authorization").contains("Signature=")
        && get("x-amz-security-token") == "fake-session"
        && !get("x-amz-date").is_empty()
        && get("x-amz-content-sha256").len() == 64
}

/// The `s3ThrottleNext` fault: `429` with `Retry-After` while it lasts.
fn s3_throttled(fake: &crate::Fake) -> Option<Response> {
    let mut faults = lock(&fake.faults);
    if faults.s3_throttle_next == 0 {
        return None;
    }
    faults.s3_throttle_next -= 1;
    let after = faults.retry_after_secs.to_string();
    Some(
        (
            StatusCode::TOO_MANY_REQUESTS,
            [("retry-after", after)],
            "SlowDown",
        )
            .into_response(),
    )
}

/// `HEAD` (and `GET`) `/_s3/{bucket}/{*key}`.
pub async fn s3_head(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
) -> Response {
    if !s3_signed(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(r) = s3_throttled(&fake) {
        return r;
    }
    match s3_path(&fake, &bucket, &key) {
        Some(p) if p.is_file() => StatusCode::OK.into_response(),
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// `PUT /_s3/{bucket}/{*key}`.
pub async fn s3_put(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path((bucket, key)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    if !s3_signed(&headers) {
        return StatusCode::FORBIDDEN.into_response();
    }
    if let Some(r) = s3_throttled(&fake) {
        return r;
    }
    let Some(path) = s3_path(&fake, &bucket, &key) else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let written = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, &body));
    match written {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// Builds snapshot `id` with Docker from its `buildInfo`.
pub async fn build(fake: Shared, id: String, build: Value) {
    let result = build_image(&fake, &id, &build).await;
    if let Some(s) = lock(&fake.snapshots).get_mut(&id) {
        match result {
            Ok(tag) => {
                s["state"] = json!("active");
                s["imageName"] = json!(tag);
            }
            Err(reason) => {
                s["state"] = json!("build_failed");
                s["errorReason"] = json!(reason);
            }
        }
    }
}

/// Builds the image of a `buildInfo` with Docker (the uploaded contexts unpacked side by
/// side, the Dockerfile beside them) as `daytona-fake-build:<id>`; the error is the
/// build's last lines.
pub async fn build_image(fake: &Shared, id: &str, build: &Value) -> Result<String, String> {
    async {
        let dir = fake.data.join("builds").join(id);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        for hash in build["contextHashes"].as_array().into_iter().flatten() {
            let hash = hash.as_str().unwrap_or_default();
            let tar = s3_path(
                fake,
                "daytona-volume-builds",
                &format!("org-fake/{hash}/context.tar"),
            )
            .filter(|p| p.is_file())
            .ok_or_else(|| format!("build context {hash} was never uploaded"))?;
            let file = std::fs::File::open(&tar).map_err(|e| e.to_string())?;
            tar::Archive::new(file)
                .unpack(&dir)
                .map_err(|e| e.to_string())?;
        }
        let dockerfile = build["dockerfileContent"].as_str().unwrap_or_default();
        std::fs::write(dir.join("Dockerfile"), dockerfile).map_err(|e| e.to_string())?;
        let tag = format!("daytona-fake-build:{}", id.replace('-', ""));
        let out = tokio::process::Command::new("docker")
            .args(["build", "-q", "-t", &tag])
            .arg(&dir)
            .output()
            .await
            .map_err(|e| e.to_string())?;
        let _ = std::fs::remove_dir_all(&dir);
        if out.status.success() {
            Ok(tag)
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = err.lines().rev().take(5).collect();
            Err(tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
        }
    }
    .await
}
