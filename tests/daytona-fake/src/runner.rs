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
pub async fn run(fake: &Shared, id: &str, image: &str, env: &Value) -> Result<(), String> {
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
/// `{exitCode, result}` (stdout and stderr together, as Daytona's daemon).
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
    let out = tokio::process::Command::new("docker")
        .args(&args)
        .stdin(Stdio::null())
        .output()
        .await;
    match out {
        Ok(o) => Json(json!({
            "exitCode": o.status.code().unwrap_or(-1),
            "result": String::from_utf8_lossy(&o.stdout),
        }))
        .into_response(),
        Err(_) => Json(json!({"exitCode": -1, "result": ""})).into_response(),
    }
}
