//! Sandboxes as Docker containers: a sandbox created from a snapshot whose `imageName` is
//! an image of the local engine runs as container `daytona-fake-<id>` (ports 8788 and 8080
//! published on 127.0.0.1, which the preview proxy forwards to), and the toolbox's
//! `process/execute` runs in it. Without such a snapshot a sandbox is only a record.

use std::process::Stdio;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::{error, gate, lock, Shared};

/// Ports of the box that get preview links.
const PORTS: [u16; 2] = [8788, 8080];

fn container(id: &str) -> String {
    format!("daytona-fake-{id}")
}

async fn docker(args: &[String]) -> Result<String, String> {
    let out = tokio::process::Command::new("docker")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| format!("cannot run docker: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The image a sandbox runs: its snapshot's `imageName`, if the engine has it.
pub async fn image_for(fake: &Shared, snapshot: Option<&str>) -> Option<String> {
    let snapshot = snapshot?;
    let image = lock(&fake.snapshots)
        .values()
        .find(|s| s["name"] == snapshot || s["id"] == snapshot)
        .and_then(|s| s["imageName"].as_str().map(str::to_string))?;
    docker(&["image".into(), "inspect".into(), image.clone()])
        .await
        .ok()
        .map(|_| image)
}

/// Points the preview proxy at the container's published ports.
async fn map_ports(fake: &Shared, id: &str) -> Result<(), String> {
    // Any other port of the box is reached at the container's address, as Daytona's proxy
    // reaches any port of a sandbox.
    let ip = docker(&[
        "inspect".into(),
        "-f".into(),
        "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}".into(),
        container(id),
    ])
    .await?;
    if !ip.is_empty() {
        lock(&fake.container_ips).insert(id.to_string(), ip);
    }
    for port in PORTS {
        let published = docker(&["port".into(), container(id), port.to_string()]).await?;
        let target = published
            .lines()
            .find(|l| l.starts_with("127.0.0.1:"))
            .ok_or_else(|| format!("port {port} is not published"))?;
        lock(&fake.upstreams).insert((id.to_string(), port), target.to_string());
    }
    Ok(())
}

/// Runs the sandbox's container; the error is the sandbox's `errorReason`.
pub async fn run(
    fake: &Shared,
    id: &str,
    image: &str,
    env: &Value,
    mounts: &[(std::path::PathBuf, String)],
) -> Result<(), String> {
    let mut args: Vec<String> = vec![
        "run".into(),
        "-d".into(),
        "--init".into(),
        "--name".into(),
        container(id),
        "--label".into(),
        "daytona-fake=1".into(),
    ];
    for port in PORTS {
        args.push("-p".into());
        args.push(format!("127.0.0.1::{port}"));
    }
    for (host_dir, mount) in mounts {
        args.push("-v".into());
        args.push(format!("{}:{mount}", host_dir.display()));
    }
    if let Some(env) = env.as_object() {
        for (k, v) in env {
            args.push("-e".into());
            args.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    args.push(image.to_string());
    docker(&args).await?;
    map_ports(fake, id).await
}

/// Stops, starts or removes the sandbox's container, if it has one.
pub async fn change(fake: &Shared, id: &str, op: &str) -> Result<(), String> {
    let exists = docker(&["container".into(), "inspect".into(), container(id)])
        .await
        .is_ok();
    if !exists {
        return Ok(());
    }
    match op {
        "stop" => docker(&["stop".into(), "-t".into(), "5".into(), container(id)])
            .await
            .map(drop),
        "start" => {
            docker(&["start".into(), container(id)]).await?;
            map_ports(fake, id).await
        }
        _ => docker(&["rm".into(), "-f".into(), container(id)])
            .await
            .map(drop),
    }
}

/// `POST /toolbox/{id}/process/execute {command, cwd?, envs?, timeout?}` →
/// `{exitCode, result}` (stdout and stderr together, as Daytona's daemon); `408` "command
/// execution timeout" once its `timeout` (or DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS) passed.
pub async fn execute(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    Json(body): Json<Value>,
) -> Response {
    let path = format!("/toolbox/{id}/process/execute");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let Some(command) = body["command"].as_str() else {
        return error(StatusCode::BAD_REQUEST, &path, "command is required");
    };
    let started = lock(&fake.sandboxes)
        .get(&id)
        .is_some_and(|s| s["state"] == "started");
    if !started {
        return error(StatusCode::BAD_REQUEST, &path, "Sandbox is not running");
    }
    let mut args: Vec<String> = vec!["exec".into()];
    if let Some(cwd) = body["cwd"].as_str() {
        args.push("-w".into());
        args.push(cwd.to_string());
    }
    if let Some(envs) = body["envs"].as_object() {
        for (k, v) in envs {
            args.push("-e".into());
            args.push(format!("{k}={}", v.as_str().unwrap_or_default()));
        }
    }
    args.extend([
        container(&id),
        "sh".into(),
        "-c".into(),
        format!("{command} 2>&1"),
    ]);
    // Daytona's daemon ends a command at its `timeout` (seconds; 10 by default there):
    // here at `timeout`, else after DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS when set, else never.
    let cap = body["timeout"]
        .as_f64()
        .filter(|t| *t > 0.0)
        .map(|t| std::time::Duration::from_secs_f64(t.min(1e6)))
        .or_else(|| {
            std::env::var("DAYTONA_FAKE_TOOLBOX_TIMEOUT_MS")
                .ok()
                .and_then(|v| v.parse().ok())
                .map(std::time::Duration::from_millis)
        });
    let run = tokio::process::Command::new("docker")
        .args(&args)
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = match cap {
        Some(cap) => match tokio::time::timeout(cap, run).await {
            Ok(out) => out,
            Err(_) => {
                return error(
                    StatusCode::REQUEST_TIMEOUT,
                    &path,
                    "command execution timeout",
                )
            }
        },
        None => run.await,
    };
    match out {
        Ok(o) => Json(json!({
            "exitCode": o.status.code().unwrap_or(-1),
            "result": String::from_utf8_lossy(&o.stdout),
        }))
        .into_response(),
        Err(_) => Json(json!({"exitCode": -1, "result": ""})).into_response(),
    }
}

/// The host directories behind a sandbox's volume mounts (`volumes[]` of its create
/// request): `<data>/volumes/<volumeId>/<subpath>`, made writable for the box's user.
pub fn mounts(
    fake: &crate::Fake,
    volumes: &Value,
) -> Result<Vec<(std::path::PathBuf, String)>, String> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    for v in volumes.as_array().into_iter().flatten() {
        let (Some(id), Some(mount)) = (v["volumeId"].as_str(), v["mountPath"].as_str()) else {
            return Err("a volume mount needs volumeId and mountPath".into());
        };
        if !lock(&fake.volumes).contains_key(id) {
            return Err(format!("Volume with ID {id} not found"));
        }
        let sub = v["subpath"].as_str().unwrap_or("").trim_matches('/');
        if sub.split('/').any(|p| p == "..") {
            return Err("invalid subpath".into());
        }
        let dir = fake.data.join("volumes").join(id).join(sub);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
        out.push((dir, mount.to_string()));
    }
    Ok(out)
}

/// `POST /toolbox/{id}/files/upload?path=P` (multipart field `file`): written as the
/// sandbox's user, parent directories made.
pub async fn upload(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
    mut form: axum::extract::Multipart,
) -> Response {
    let path = format!("/toolbox/{id}/files/upload");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let Some(dest) = q.get("path").filter(|p| !p.is_empty()).cloned() else {
        return error(StatusCode::BAD_REQUEST, &path, "path is required");
    };
    let mut bytes = None;
    while let Ok(Some(field)) = form.next_field().await {
        if field.name() == Some("file") {
            bytes = field.bytes().await.ok();
        }
    }
    let Some(bytes) = bytes else {
        return error(
            StatusCode::BAD_REQUEST,
            &path,
            "a multipart field `file` is required",
        );
    };
    // `cutUploadsNext`: the body broke off halfway, after the toolbox had begun writing
    // (Daytona's writes the file as the body arrives): half of it is left, and 400.
    let cut = {
        let mut faults = crate::lock(&fake.faults);
        let cut = faults.cut_uploads_next > 0;
        faults.cut_uploads_next = faults.cut_uploads_next.saturating_sub(1);
        cut
    };
    let bytes = if cut {
        bytes.slice(..bytes.len() / 2)
    } else {
        bytes
    };
    let child = tokio::process::Command::new("docker")
        .args(["exec", "-i", &container(&id), "sh", "-c"])
        .arg(r#"mkdir -p "$(dirname "$1")" && cat > "$1""#)
        .args(["_", &dest])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    let Ok(mut child) = child else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &path,
            "cannot run docker",
        );
    };
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let _ = stdin.write_all(&bytes).await;
    }
    match child.wait_with_output().await {
        Ok(o) if o.status.success() && cut => {
            error(StatusCode::BAD_REQUEST, &path, "unexpected EOF")
        }
        // Daytona's toolbox answers an upload with a JSON object (`gin.H` in its swagger).
        Ok(o) if o.status.success() => {
            (StatusCode::OK, axum::Json(serde_json::json!({}))).into_response()
        }
        Ok(o) => error(
            StatusCode::BAD_REQUEST,
            &path,
            String::from_utf8_lossy(&o.stderr).trim(),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &path, &e.to_string()),
    }
}

/// `GET /toolbox/{id}/files/download?path=P`: the file's bytes (`application/octet-stream`),
/// read as the sandbox's user; 404 when there is no such file.
pub async fn download(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Response {
    let path = format!("/toolbox/{id}/files/download");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let Some(src) = q.get("path").filter(|p| !p.is_empty()).cloned() else {
        return error(StatusCode::BAD_REQUEST, &path, "path is required");
    };
    let out = tokio::process::Command::new("docker")
        .args([
            "exec",
            &container(&id),
            "sh",
            "-c",
            r#"test -f "$1" && cat "$1""#,
            "_",
            &src,
        ])
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) if o.status.success() => (
            [(axum::http::header::CONTENT_TYPE, "application/octet-stream")],
            o.stdout,
        )
            .into_response(),
        Ok(_) => error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("file not found: {src}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &path, &e.to_string()),
    }
}
