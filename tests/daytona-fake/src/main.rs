//! `daytona-fake [--port PORT] [--api-key KEY]`: a fake of Daytona's sandbox API, following
//! its real shapes (`/api/sandbox…`, `Sandbox` JSON in camelCase, `{path, timestamp,
//! statusCode, error, message}` errors, 409 while a state change is in progress, 429 with
//! `Retry-After`). State changes take `DAYTONA_FAKE_TRANSITION_MS` (default 150 ms).
//!
//! Test controls (not Daytona's): `POST /_fake/faults` with `{"rateLimitNext": N,
//! "slowCreateMs": M}` answers the next N calls 429 and holds creates M ms before
//! answering (the sandbox is created at once, so a client that gave up finds it by label).
//! `"failNextSnapshot": "reason"` makes the next snapshot end `build_failed`;
//! `"slowSnapshotMs": M` keeps every new snapshot `building`/`pending` M ms longer;
//! `"gatewayTimeoutMs": N` makes the preview proxy answer 504 to a request whose answer has
//! not begun after N ms (0 turns it off). The preview proxy is in [`preview`].
//! `GET /_fake/stats` counts connections and TLS handshakes (how well clients reuse
//! connections). The port in use is printed on stdout as `listening on PORT`.
//!
//! HTTPS by default, as Daytona is: the fake is its own CA (`--ca-key` to use a given
//! one, `--ca-out` to write its certificate for clients to trust) and its certificate
//! covers `127.0.0.1`, `localhost` and `*.localhost`, where every URL it hands out points
//! (API, toolbox, object storage, preview). `--plain-http` serves plain HTTP instead. Volume files live under
//! `DAYTONA_FAKE_DATA` (default: a directory in the system's temp dir). Volumes, snapshots and
//! preview links are in [`resources`]; a sandbox's preview token changes on every start,
//! as Daytona's does. The command line is [`Cli`]; its help says all of the above.
//!
//! Over 600 lines on purpose: this file is the sandbox API's route table and handlers in
//! Daytona's order (its paths, states, errors), read side by side with Daytona's spec;
//! volumes, snapshots, the runner and the preview proxy are in their own modules.

mod activity;
mod contract;
mod organizations;
mod preview;
mod resources;
mod runner;
mod states;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde_json::{json, Value};

/// A fake of Daytona's sandbox API for the tests: Daytona's paths (`/api/sandbox…`,
/// `/api/volumes…`, `/api/snapshots…`, the toolbox and the preview proxy), its JSON shapes,
/// sandbox states and errors (409 while a state change is in progress, 429 with
/// `Retry-After`). Serves HTTPS (or, with `--plain-http`, HTTP) on 127.0.0.1 and prints
/// `listening on PORT` on stdout when it is ready.
#[derive(Debug, Parser)]
#[command(name = "daytona-fake", version, after_long_help = AFTER_HELP)]
struct Cli {
    /// The port to listen on, on 127.0.0.1; 0 picks a free one (printed on stdout).
    #[arg(long, value_name = "PORT", default_value_t = 0)]
    port: u16,
    /// The API key clients must send as `Authorization: Bearer KEY`. One shaped as a JWT
    /// (`eyJ….….…`) is a user's login token: as Daytona does, every sandbox, snapshot,
    /// volume and object-storage call with it needs `X-Daytona-Organization-ID`.
    #[arg(long, value_name = "KEY", default_value = "fake-key")]
    api_key: String,
    /// Write the certificate of the CA that signs the fake's own (PEM) to FILE, for
    /// clients to trust (e.g. through SSL_CERT_FILE).
    #[arg(long, value_name = "FILE", conflicts_with = "plain_http")]
    ca_out: Option<std::path::PathBuf>,
    /// Sign the fake's certificate with this CA key (PEM, PKCS#8) instead of a new one; the
    /// CA certificate is the one `--ca-out` writes for it (always the same for a key).
    #[arg(long, value_name = "FILE", conflicts_with = "plain_http")]
    ca_key: Option<std::path::PathBuf>,
    /// Serve plain HTTP instead of HTTPS (for debugging with a sniffer); every URL the
    /// fake hands out is then `http://`.
    #[arg(long)]
    plain_http: bool,
}

/// The environment and the test controls, at the end of `--help`.
const AFTER_HELP: &str = "\
Environment:
  DAYTONA_FAKE_TRANSITION_MS  How long a state change (create, start, stop, delete,
                              a snapshot's build) takes, in ms [default: 150]
  DAYTONA_FAKE_MINUTE_MS      How long a minute of a sandbox's autoStopInterval lasts,
                              in ms [default: 60000]
  DAYTONA_FAKE_PREVIEW_CACHE_MS
                              How long the preview proxy keeps a valid token's
                              verdict (a rotated token passes until then), in ms
                              [default: Daytona's 120000]
  DAYTONA_FAKE_DATA           The directory volume files live in [default: a directory
                              in the system's temp dir]

Test controls (not Daytona's API):
  POST /_fake/faults {\"rateLimitNext\": N}     answer the next N calls 429 (Retry-After: 0)
  POST /_fake/faults {\"slowCreateMs\": M}      hold creates M ms before answering (the
                                              sandbox exists at once)
  POST /_fake/faults {\"failNextSnapshot\": R}  the next snapshot ends build_failed, reason R
  POST /_fake/faults {\"slowSnapshotMs\": M}    new snapshots stay building/pending M ms longer
  POST /_fake/faults {\"retryAfterSecs\": S}    the 429s of rateLimitNext say Retry-After: S
  POST /_fake/faults {\"listLagMs\": M}         a new sandbox shows in lists only M ms after
                                              its create (Daytona's list is eventually
                                              consistent; a get by id or name is not)
  POST /_fake/faults {\"sandboxState\": {\"sandbox\": ID, \"state\": S, \"desiredState\": D,
                      \"errorReason\": R, \"thenMs\": M, \"then\": S2}}
                                              put a sandbox in state S (pulling_snapshot,
                                              archived, error, …), and M ms later in S2
  POST /_fake/faults {\"snapshotState\": {\"snapshot\": NAME, \"state\": S}}
                                              put a snapshot in state S (inactive, …)
  POST /_fake/faults {\"slowCaptureMs\": M}     a checkpoint's capture takes M ms longer
  POST /_fake/faults {\"snapshotRemovalMs\": M} a deleted snapshot stays `removing` (its
                                              name taken) M ms [default: the transition]
  POST /_fake/faults {\"schemelessStorageUrl\": true}
                                              push-access hands out storageUrl without a
                                              scheme, as Daytona's spec example
  POST /_fake/faults {\"handedHost\": H}      toolbox and object storage URLs handed out
                                              name host H (e.g. 0.0.0.0: this machine,
                                              but not by a loopback name)
  POST /_fake/faults {\"s3ThrottleNext\": N}   the object storage answers the next N
                                              requests 429 (Retry-After: retryAfterSecs)
  POST /_fake/faults {\"gatewayTimeoutMs\": N}  the preview proxy answers 504 when an answer
                                              has not begun after N ms (0: off)
  POST /_fake/faults {\"passWebSockets\": false} the preview proxy turns WebSocket upgrades
                                              away with a 307 to a login page, as a proxy on
                                              the way that does not carry them (by default
                                              they are carried, as Daytona's proxy does)
  POST /_fake/upstream {\"sandbox\": ID, \"port\": P, \"target\": \"127.0.0.1:Q\"}
                                              serve sandbox ID's port P from 127.0.0.1:Q
  POST /_fake/faults {\"cutUploadsNext\": N}   the next N toolbox uploads break off halfway:
                                              half the file is written, and 400
  POST /_fake/organizations {\"organizations\": [{\"id\": I, \"name\": N}, ...],
                             \"keys\": {\"KEY\": I}}
                                              the user's organizations (the first is
                                              personal; default: one, org-fake) and API keys
                                              bound to one of them (--api-key reaches all)
  GET /_fake/stats                            {\"connections\": N, \"handshakes\": N,
                                              \"failedHandshakes\": N} since the start
  GET /_fake/violations                       every request and answer that broke Daytona's
                                              API spec (also on stderr, and appended to the
                                              file DAYTONA_FAKE_VIOLATIONS names, if set)

A sandbox created from a snapshot whose image is in the local Docker engine runs as
container daytona-fake-<id>; otherwise a sandbox is only a record.";

#[derive(Default)]
struct Faults {
    rate_limit_next: u32,
    slow_create_ms: u64,
    slow_snapshot_ms: u64,
    fail_next_snapshot: Option<String>,
    gateway_timeout_ms: Option<u64>,
    /// The preview proxy turns WebSocket upgrades away (`passWebSockets: false`).
    refuse_websockets: bool,
    retry_after_secs: u64,
    list_lag_ms: u64,
    slow_capture_ms: u64,
    snapshot_removal_ms: Option<u64>,
    schemeless_storage_url: bool,
    s3_throttle_next: u32,
    /// Toolbox uploads that break off halfway (`cutUploadsNext`).
    cut_uploads_next: u32,
    /// The host in the toolbox and object storage URLs handed out (`handedHost`).
    handed_host: Option<String>,
    /// When each sandbox may first show in a list (`listLagMs`).
    listed_from: HashMap<String, std::time::Instant>,
}

/// A signed preview token: sandbox, port, expiry.
type Signed = (String, u16, std::time::Instant);

struct Fake {
    key: String,
    /// Organizations and the API keys bound to one ([`organizations`]).
    orgs: Mutex<organizations::Orgs>,
    transition: Duration,
    sandboxes: Mutex<BTreeMap<String, Value>>,
    volumes: Mutex<BTreeMap<String, Value>>,
    snapshots: Mutex<BTreeMap<String, Value>>,
    /// The standard preview token of each sandbox.
    tokens: Mutex<HashMap<String, String>>,
    signed: Mutex<HashMap<String, Signed>>,
    /// Where a sandbox's port is served from (a test control).
    upstreams: Mutex<HashMap<(String, u16), String>>,
    /// A sandbox container's address, for its other ports.
    container_ips: Mutex<HashMap<String, String>>,
    /// The preview proxy's client.
    http: reqwest::Client,
    /// Where volumes keep their files.
    data: std::path::PathBuf,
    faults: Mutex<Faults>,
    next: Mutex<u64>,
    port: std::sync::OnceLock<u16>,
    /// `https` or `http` (`--plain-http`): the scheme of every URL the fake hands out.
    scheme: &'static str,
    /// Connections accepted, TLS handshakes completed and failed (`GET /_fake/stats`).
    connections: AtomicU64,
    handshakes: AtomicU64,
    failed_handshakes: AtomicU64,
}

impl Fake {
    fn port(&self) -> u16 {
        self.port.get().copied().unwrap_or(0)
    }

    /// `SCHEME://127.0.0.1:PORT`: where the fake's own URLs point.
    fn origin(&self) -> String {
        format!("{}://127.0.0.1:{}", self.scheme, self.port())
    }

    /// [`Fake::origin`] with the `handedHost` fault's host, if set: where the toolbox and
    /// object storage URLs it hands out point (as Daytona's point to other machines).
    fn handed_origin(&self) -> String {
        match &lock(&self.faults).handed_host {
            Some(host) => format!("{}://{host}:{}", self.scheme, self.port()),
            None => self.origin(),
        }
    }
}

/// `GET /_fake/stats`.
async fn stats(State(fake): State<Shared>) -> Json<Value> {
    Json(json!({
        "connections": fake.connections.load(Ordering::Relaxed),
        "handshakes": fake.handshakes.load(Ordering::Relaxed),
        "failedHandshakes": fake.failed_handshakes.load(Ordering::Relaxed),
    }))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// `prefix-<pid>-0000002a`: ids are unique within one fake, and across the fakes of one
/// machine (a sandbox's container is named after its id, and Docker's names are global).
fn next_id(fake: &Fake, prefix: &str) -> String {
    let mut n = lock(&fake.next);
    *n += 1;
    format!("{prefix}-{:x}-{:08x}", std::process::id(), *n)
}

/// Milliseconds since the epoch.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A new 32-character preview token.
fn new_token(fake: &Fake) -> String {
    let n = next_id(fake, "t");
    format!("{:0>32}", n.replace('-', ""))
}

type Shared = Arc<Fake>;

fn error(status: StatusCode, path: &str, message: &str) -> Response {
    (
        status,
        Json(json!({
            "path": path,
            "timestamp": "2026-11-29T00:00:00.000Z",
            "statusCode": status.as_u16(),
            "error": status.canonical_reason().unwrap_or(""),
            "message": message,
        })),
    )
        .into_response()
}

/// Auth, the acting organization (Daytona's `OrganizationAuthContextGuard`, which guards
/// every sandbox, snapshot, volume and object-storage route) and injected faults; `Err` is
/// the answer.
fn gate(fake: &Fake, headers: &HeaderMap, path: &str) -> Result<(), Box<Response>> {
    gate_as(fake, headers, path, true)
}

/// [`gate`] for a route Daytona guards by the user alone (`GET /organizations` and
/// `GET /organizations/{id}`, whose organization is in the path): no organization needed.
fn gate_user(fake: &Fake, headers: &HeaderMap, path: &str) -> Result<(), Box<Response>> {
    gate_as(fake, headers, path, false)
}

/// Auth, the acting organization when `in_organization`, and injected faults.
fn gate_as(
    fake: &Fake,
    headers: &HeaderMap,
    path: &str,
    in_organization: bool,
) -> Result<(), Box<Response>> {
    let ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == fake.key || organizations::is_bound_key(fake, k));
    if !ok {
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            path,
            "Invalid credentials",
        )));
    }
    if in_organization {
        if let Err(why) = organizations::acting(fake, headers) {
            return Err(Box::new(error(StatusCode::FORBIDDEN, path, &why)));
        }
    }
    let mut faults = fake
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if faults.rate_limit_next > 0 {
        faults.rate_limit_next -= 1;
        let mut r = error(
            StatusCode::TOO_MANY_REQUESTS,
            path,
            "ThrottlerException: Too Many Requests",
        );
        if let Ok(after) = faults.retry_after_secs.to_string().parse() {
            r.headers_mut().insert("retry-after", after);
        }
        return Err(Box::new(r));
    }
    Ok(())
}

fn find<'a>(map: &'a mut BTreeMap<String, Value>, id_or_name: &str) -> Option<&'a mut Value> {
    if map.contains_key(id_or_name) {
        return map.get_mut(id_or_name);
    }
    map.values_mut().find(|s| s["name"] == id_or_name)
}

/// Moves a sandbox to `to` after the transition time, if it is still in `via`; `op`
/// (`run`, `start`, `stop`, `delete`) is done to its container first, if it has one, and a
/// failure leaves the sandbox in `error` with the reason.
fn settle(fake: &Shared, id: String, via: &'static str, to: &'static str, op: Op) {
    let fake = fake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(fake.transition).await;
        let done = match &op {
            Op::Run {
                image,
                env,
                volumes,
            } => match runner::mounts(&fake, volumes) {
                Ok(mounts) => runner::run(&fake, &id, image, env, &mounts).await,
                Err(e) => Err(e),
            },
            Op::Change(op) => runner::change(&fake, &id, op).await,
            Op::Nothing => Ok(()),
        };
        let mut map = lock(&fake.sandboxes);
        if let Err(reason) = done {
            if let Some(s) = map.get_mut(&id) {
                s["state"] = json!("error");
                s["errorReason"] = json!(reason);
            }
        } else if to == "destroyed" {
            map.remove(&id);
        } else if let Some(s) = map.get_mut(&id).filter(|s| s["state"] == via) {
            s["state"] = json!(to);
        }
    });
}

/// What a state change does to the sandbox's container.
enum Op {
    /// Start a container of this image with this environment and these volumes.
    Run {
        image: String,
        env: Value,
        volumes: Value,
    },
    /// `start`, `stop` or `delete` it.
    Change(&'static str),
    /// No container.
    Nothing,
}

async fn create(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> Response {
    if let Err(r) = gate(&fake, &headers, "/api/sandbox") {
        return *r;
    }
    let snapshot = match states::admit(&fake, &body) {
        Ok(s) => s,
        Err(r) => return *r,
    };
    // A sandbox gets its snapshot's resources, or those asked for with a build.
    let resource = |key: &str, of_snapshot: &str, default: u64| {
        snapshot.as_ref().map_or_else(
            || body.get(key).cloned().unwrap_or(json!(default)),
            |s| s[of_snapshot].clone(),
        )
    };
    let build = body.get("buildInfo").filter(|b| !b.is_null()).cloned();
    let id = next_id(&fake, "sbx");
    let token = new_token(&fake);
    lock(&fake.tokens).insert(id.clone(), token);
    let mut sandbox = json!({
        "id": id,
        "organizationId": organizations::acting_id(&fake, &headers),
        "name": body.get("name").cloned().unwrap_or(json!(id)),
        "snapshot": body.get("snapshot").cloned().unwrap_or(Value::Null),
        "user": body.get("user").cloned().unwrap_or(json!("daytona")),
        "env": body.get("env").cloned().unwrap_or(json!({})),
        "labels": body.get("labels").cloned().unwrap_or(json!({})),
        "public": body.get("public").cloned().unwrap_or(json!(false)),
        "networkBlockAll": false,
        "target": body.get("target").cloned().unwrap_or(json!("us")),
        "cpu": resource("cpu", "cpu", 1),
        "gpu": 0,
        "memory": resource("memory", "mem", 1),
        "disk": resource("disk", "disk", 3),
        "state": if build.is_some() { "pending_build" } else { "creating" },
        "desiredState": "started",
        "autoStopInterval": body.get("autoStopInterval").cloned().unwrap_or(json!(15)),
        "volumes": body.get("volumes").cloned().unwrap_or(json!([])),
        "toolboxProxyUrl": format!("{}/toolbox", fake.handed_origin()),
        "sandboxClass": "container",
    });
    // Daytona's Sandbox has no null `snapshot`: without one, it is absent.
    if let Some(o) = sandbox.as_object_mut().filter(|o| o["snapshot"].is_null()) {
        o.remove("snapshot");
    }
    if let Some(build) = &build {
        // Daytona's `BuildInfo` as it answers it: the request's, dated and referenced.
        let mut info = build.clone();
        info["createdAt"] = json!("2026-11-29T00:00:00.000Z");
        info["updatedAt"] = json!("2026-11-29T00:00:00.000Z");
        info["snapshotRef"] = json!(format!("fake-build-{id}"));
        sandbox["buildInfo"] = info;
    }
    {
        let mut faults = lock(&fake.faults);
        if faults.list_lag_ms > 0 {
            let from = std::time::Instant::now() + Duration::from_millis(faults.list_lag_ms);
            faults.listed_from.insert(id.clone(), from);
        }
    }
    fake.sandboxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .insert(id.clone(), sandbox.clone());
    let env = body.get("env").cloned().unwrap_or(json!({}));
    let volumes = body.get("volumes").cloned().unwrap_or(json!([]));
    if let Some(build) = build {
        states::build_then_run(&fake, id, build, env, volumes);
        return Json(sandbox).into_response();
    }
    // Daytona goes on creating a sandbox it has recorded whether or not the client waits for
    // the answer: the rest runs detached, so a client that hangs up (a `resync` interrupted
    // right after its create reached here) does not leave it `creating` for ever.
    let snapshot = body["snapshot"].as_str().map(str::to_owned);
    let detached = fake.clone();
    tokio::spawn(async move {
        let image = runner::image_for(&detached, snapshot.as_deref()).await;
        let op = match image {
            Some(image) => Op::Run {
                image,
                env,
                volumes,
            },
            None => Op::Nothing,
        };
        settle(&detached, id, "creating", "started", op);
    });
    let slow = fake.faults.lock().map_or(0, |f| f.slow_create_ms);
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    Json(sandbox).into_response()
}

async fn list(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = gate(&fake, &headers, "/api/sandbox") {
        return *r;
    }
    let wanted: BTreeMap<String, String> = match q.get("labels").map(|l| serde_json::from_str(l)) {
        Some(Ok(l)) => l,
        Some(Err(_)) => {
            return error(
                StatusCode::BAD_REQUEST,
                "/api/sandbox",
                "labels must be a JSON object",
            )
        }
        None => BTreeMap::new(),
    };
    let hidden = |id: &Value| {
        let now = std::time::Instant::now();
        id.as_str()
            .and_then(|id| lock(&fake.faults).listed_from.get(id).copied())
            .is_some_and(|from| from > now)
    };
    let map = fake
        .sandboxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let items: Vec<Value> = map
        .values()
        .filter(|s| wanted.iter().all(|(k, v)| s["labels"][k] == json!(v)))
        .filter(|s| !hidden(&s["id"]))
        .cloned()
        .map(|mut s| {
            // A list item is Daytona's SandboxListItem: no env, volumes, networkBlockAll
            // or buildInfo.
            if let Some(o) = s.as_object_mut() {
                for k in ["env", "volumes", "networkBlockAll", "buildInfo"] {
                    o.remove(k);
                }
            }
            s
        })
        .collect();
    Json(json!({ "items": items, "nextCursor": "" })).into_response()
}

async fn get_one(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let path = format!("/api/sandbox/{id}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let mut map = fake
        .sandboxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match find(&mut map, &id) {
        Some(s) => Json(s.clone()).into_response(),
        None => error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Sandbox with ID or name {id} not found"),
        ),
    }
}

fn change(fake: &Shared, headers: &HeaderMap, id: &str, op: &'static str) -> Response {
    let path = format!("/api/sandbox/{id}/{op}");
    if let Err(r) = gate(fake, headers, &path) {
        return *r;
    }
    let mut map = fake
        .sandboxes
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let Some(s) = find(&mut map, id) else {
        return error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Sandbox with ID or name {id} not found"),
        );
    };
    if op == "start" && s["state"] == "started" && s["desiredState"] == "started" {
        return Json(s.clone()).into_response();
    }
    let (via, to) = match states::plan(s, op) {
        Ok(plan) => plan,
        Err((status, message)) => return error(status, &path, message),
    };
    let sid = s["id"].as_str().unwrap_or_default().to_string();
    if op == "stop" {
        preview::stopped(&sid);
    }
    if op == "start" {
        // Daytona mints a new preview token on every start.
        let token = new_token(fake);
        lock(&fake.tokens).insert(sid.clone(), token);
    }
    // As Daytona's API: the wish is recorded and answered; the state moves a moment
    // later, when the runner acts.
    s["desiredState"] = json!(to);
    let answer = s.clone();
    drop(map);
    let (fake2, sid2) = (fake.clone(), sid.clone());
    tokio::spawn(async move {
        tokio::time::sleep(fake2.transition / 2).await;
        if let Some(s) = lock(&fake2.sandboxes)
            .get_mut(&sid2)
            .filter(|s| s["desiredState"] == to)
        {
            s["state"] = json!(via);
        }
    });
    settle(fake, sid, via, to, Op::Change(op));
    Json(answer).into_response()
}

/// `POST /api/sandbox/{id}/autostop/{interval}` (Daytona's `setAutostopInterval`): the
/// sandbox's `autoStopInterval` in minutes (0: off), in any state; a negative or
/// non-numeric one is Daytona's 400.
async fn set_autostop(
    State(fake): State<Shared>,
    headers: HeaderMap,
    Path((id, interval)): Path<(String, String)>,
) -> Response {
    let path = format!("/api/sandbox/{id}/autostop/{interval}");
    if let Err(r) = gate(&fake, &headers, &path) {
        return *r;
    }
    let minutes = match interval.parse::<u64>() {
        Ok(m) => m,
        Err(_) if interval.parse::<f64>().is_ok_and(|m| m < 0.0) => {
            return error(
                StatusCode::BAD_REQUEST,
                &path,
                "Auto-stop interval must be non-negative",
            )
        }
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                &path,
                "Validation failed (numeric string is expected)",
            )
        }
    };
    let mut map = lock(&fake.sandboxes);
    let Some(s) = find(&mut map, &id) else {
        return error(
            StatusCode::NOT_FOUND,
            &path,
            &format!("Sandbox with ID or name {id} not found"),
        );
    };
    s["autoStopInterval"] = json!(minutes);
    Json(s.clone()).into_response()
}

async fn start(State(f): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    change(&f, &h, &id, "start")
}
async fn stop(State(f): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    change(&f, &h, &id, "stop")
}
async fn delete(State(f): State<Shared>, h: HeaderMap, Path(id): Path<String>) -> Response {
    change(&f, &h, &id, "delete")
}

async fn faults(State(fake): State<Shared>, Json(body): Json<Value>) -> StatusCode {
    let mut f = fake
        .faults
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some(n) = body["rateLimitNext"].as_u64() {
        f.rate_limit_next = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(ms) = body["slowCreateMs"].as_u64() {
        f.slow_create_ms = ms;
    }
    if let Some(ms) = body["gatewayTimeoutMs"].as_u64() {
        f.gateway_timeout_ms = Some(ms).filter(|ms| *ms > 0);
    }
    if let Some(pass) = body["passWebSockets"].as_bool() {
        f.refuse_websockets = !pass;
    }
    if let Some(ms) = body["slowSnapshotMs"].as_u64() {
        f.slow_snapshot_ms = ms;
    }
    if let Some(reason) = body["failNextSnapshot"].as_str() {
        f.fail_next_snapshot = Some(reason.to_string());
    }
    if let Some(secs) = body["retryAfterSecs"].as_u64() {
        f.retry_after_secs = secs;
    }
    if let Some(ms) = body["listLagMs"].as_u64() {
        f.list_lag_ms = ms;
        if ms == 0 {
            f.listed_from.clear();
        }
    }
    if let Some(ms) = body["slowCaptureMs"].as_u64() {
        f.slow_capture_ms = ms;
    }
    if let Some(ms) = body["snapshotRemovalMs"].as_u64() {
        f.snapshot_removal_ms = Some(ms);
    }
    if let Some(host) = body["handedHost"].as_str() {
        f.handed_host = Some(host.to_string()).filter(|h| !h.is_empty());
    }
    if let Some(on) = body["schemelessStorageUrl"].as_bool() {
        f.schemeless_storage_url = on;
    }
    if let Some(n) = body["s3ThrottleNext"].as_u64() {
        f.s3_throttle_next = u32::try_from(n).unwrap_or(u32::MAX);
    }
    if let Some(n) = body["cutUploadsNext"].as_u64() {
        f.cut_uploads_next = u32::try_from(n).unwrap_or(u32::MAX);
    }
    drop(f);
    let set = [
        body.get("sandboxState")
            .map(|spec| states::set_sandbox_state(&fake, spec)),
        body.get("snapshotState")
            .map(|spec| resources::set_snapshot_state(&fake, spec)),
    ];
    for outcome in set.into_iter().flatten() {
        if let Err(why) = outcome {
            eprintln!("daytona-fake: faults: {why}");
            return StatusCode::BAD_REQUEST;
        }
    }
    StatusCode::NO_CONTENT
}

fn main() -> std::io::Result<()> {
    let cli = Cli::parse();
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(serve(cli))
}

/// Serves the fake on `cli.port` until the process is killed.
async fn serve(cli: Cli) -> std::io::Result<()> {
    let Cli {
        port,
        api_key: key,
        ca_out,
        ca_key,
        plain_http,
    } = cli;
    let tls = if plain_http {
        None
    } else {
        Some(tls_acceptor(ca_key.as_deref(), ca_out.as_deref())?)
    };
    let transition = std::env::var("DAYTONA_FAKE_TRANSITION_MS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let fake = Arc::new(Fake {
        key,
        orgs: Mutex::default(),
        transition: Duration::from_millis(transition),
        sandboxes: Mutex::default(),
        volumes: Mutex::default(),
        snapshots: Mutex::default(),
        tokens: Mutex::default(),
        signed: Mutex::default(),
        upstreams: Mutex::default(),
        container_ips: Mutex::default(),
        http: reqwest::Client::new(),
        data: std::env::var_os("DAYTONA_FAKE_DATA").map_or_else(
            || std::env::temp_dir().join(format!("daytona-fake-{}", std::process::id())),
            std::path::PathBuf::from,
        ),
        faults: Mutex::default(),
        next: Mutex::new(0),
        port: std::sync::OnceLock::new(),
        scheme: if plain_http { "http" } else { "https" },
        connections: AtomicU64::new(0),
        handshakes: AtomicU64::new(0),
        failed_handshakes: AtomicU64::new(0),
    });
    let app = Router::new()
        .route("/api/sandbox", post(create).get(list))
        .route("/api/sandbox/{id}", get(get_one).delete(delete))
        .route("/api/sandbox/{id}/start", post(start))
        .route("/api/sandbox/{id}/stop", post(stop))
        .route("/api/sandbox/{id}/autostop/{interval}", post(set_autostop))
        .route("/api/sandbox/{id}/last-activity", post(activity::update))
        .route(
            "/api/sandbox/{id}/ports/{port}/{kind}",
            get(resources::preview_url),
        )
        .route(
            "/api/volumes",
            post(resources::create_volume).get(resources::list_volumes),
        )
        .route(
            "/api/volumes/by-name/{name}",
            get(resources::volume_by_name),
        )
        .route(
            "/api/volumes/{id}",
            get(resources::get_volume).delete(resources::delete_volume),
        )
        .route(
            "/api/snapshots",
            post(resources::create_snapshot).get(resources::list_snapshots),
        )
        .route(
            "/api/snapshots/{id}",
            get(resources::get_snapshot).delete(resources::delete_snapshot),
        )
        .route(
            "/api/object-storage/push-access",
            get(resources::push_access),
        )
        .route(
            "/_s3/{bucket}/{*key}",
            get(resources::s3_head)
                .put(resources::s3_put)
                .layer(axum::extract::DefaultBodyLimit::disable()),
        )
        .route("/api/organizations", get(organizations::list))
        .route("/api/organizations/{id}", get(organizations::get_one))
        .route("/_fake/organizations", post(organizations::set))
        .route("/_fake/faults", post(faults))
        .route("/_fake/stats", get(stats))
        .route("/_fake/violations", get(contract::violations))
        .route("/_fake/upstream", post(preview::set_upstream))
        .route(preview::LOGIN_PATH, get(preview::login_page))
        .route("/toolbox/{id}/process/execute", post(runner::execute))
        .route("/api/sandbox/{id}/snapshot", post(states::checkpoint))
        .route("/toolbox/{id}/files/upload", post(runner::upload))
        .route("/toolbox/{id}/files/download", get(runner::download))
        .route(
            "/_preview/{target}/{*rest}",
            axum::routing::any(preview::proxy),
        )
        .route(
            "/_preview/{target}/",
            axum::routing::any(preview::proxy_root),
        )
        // Every call but the fake's own and the preview proxy's is checked against
        // Daytona's spec ([`contract`]).
        .layer(axum::middleware::from_fn(contract::check))
        .with_state(fake.clone());
    activity::spawn_auto_stop(fake.clone());
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let bound = listener.local_addr()?.port();
    let _ = fake.port.set(bound);
    println!("listening on {bound}");
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("daytona-fake: accept: {e}");
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        fake.connections.fetch_add(1, Ordering::Relaxed);
        let (app, tls, fake) = (app.clone(), tls.clone(), fake.clone());
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            match tls {
                None => serve_connection(tcp, app).await,
                Some(acceptor) => match acceptor.accept(tcp).await {
                    Ok(stream) => {
                        fake.handshakes.fetch_add(1, Ordering::Relaxed);
                        serve_connection(stream, app).await;
                    }
                    Err(_) => {
                        fake.failed_handshakes.fetch_add(1, Ordering::Relaxed);
                    }
                },
            }
        });
    }
}

/// Serves one connection (HTTP/1.1 with upgrades, or HTTP/2) with `app`.
async fn serve_connection<I>(io: I, app: Router)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper_util::service::TowerToHyperService::new(app);
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection_with_upgrades(hyper_util::rt::TokioIo::new(io), service)
        .await;
}

/// The TLS side: the CA (from `ca_key`, or new), its certificate written to `ca_out`, and
/// a leaf for 127.0.0.1 / localhost / *.localhost that it signs.
fn tls_acceptor(
    ca_key: Option<&std::path::Path>,
    ca_out: Option<&std::path::Path>,
) -> std::io::Result<tokio_rustls::TlsAcceptor> {
    use agentbox_tests::fake_tls::FakeCa;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
    let ca = match ca_key {
        Some(path) => FakeCa::from_key_pem(&std::fs::read_to_string(path)?),
        None => FakeCa::generate(),
    }
    .map_err(std::io::Error::other)?;
    if let Some(out) = ca_out {
        std::fs::write(out, &ca.cert_pem)?;
    }
    let (chain, key) = ca.leaf().map_err(std::io::Error::other)?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(std::io::Error::other)?
        .with_no_client_auth()
        .with_single_cert(
            chain.into_iter().map(CertificateDer::from).collect(),
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key)),
        )
        .map_err(std::io::Error::other)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}
