//! Daytona's REST API, the sandbox part (issue #9 builds the rest on it): auth headers,
//! errors a user can act on, retries by Daytona's own classification, waiting for states,
//! and a create that timed out found again by label instead of sent twice.
//!
//! Shapes follow Daytona's API (`POST /sandbox`, `GET /sandbox?labels=<json>`,
//! `/sandbox/{idOrName}/start|stop`, `DELETE /sandbox/{idOrName}`; camelCase JSON; errors
//! `{statusCode, error, message, …}`); `tests/daytona-fake` serves the same.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Label carrying the id a create was sent with, so a create whose answer was lost is
/// found again instead of sent twice.
pub const CREATE_ID_LABEL: &str = "agentbox.create-id";

/// Why a Daytona call failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum DaytonaError {
    /// 401.
    #[error("Daytona rejected the API key: run `agentbox daytona login` ({0})")]
    Auth(String),
    /// 403.
    #[error("Daytona refused: {0}")]
    Forbidden(String),
    /// 404.
    #[error("not found on Daytona: {0}")]
    NotFound(String),
    /// 409: a state change is in progress (or another conflict).
    #[error("Daytona: {0}")]
    Conflict(String),
    /// 400 / 422.
    #[error("Daytona refused the request: {0}")]
    Invalid(String),
    /// 429 after every retry.
    #[error("Daytona is rate-limiting this account; try again in a minute")]
    RateLimited,
    /// Another status.
    #[error("Daytona answered {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// No answer in time, or no connection.
    #[error("cannot reach Daytona at {url}: {why}")]
    Unreachable {
        /// The API base.
        url: String,
        /// What happened.
        why: String,
    },
    /// The pinned snapshot is not on Daytona any more.
    #[error("snapshot {0} was deleted: run `agentbox prepare --provider daytona`")]
    SnapshotGone(String),
    /// A snapshot build ended in `error` or `build_failed`.
    #[error("snapshot {name} failed to build ({state}): {reason}")]
    SnapshotFailed {
        /// Snapshot name.
        name: String,
        /// `error` or `build_failed`.
        state: String,
        /// Daytona's reason.
        reason: String,
    },
    /// A state that will not become the wanted one.
    #[error("sandbox {id} is `{state}` ({reason})")]
    BadState {
        /// Sandbox id.
        id: String,
        /// Its state.
        state: String,
        /// Daytona's error reason, if any.
        reason: String,
    },
}

impl DaytonaError {
    /// Whether a retry could help: 429 always; 5xx and no answer only when the call may be
    /// repeated without effect (`idempotent`).
    fn retriable(&self, idempotent: bool) -> bool {
        match self {
            Self::RateLimited => true,
            Self::Server { status, .. } => idempotent && *status >= 500,
            Self::Unreachable { .. } => idempotent,
            _ => false,
        }
    }
}

/// `CreateSandbox` (the fields agentbox sends).
#[derive(Debug, Clone, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateSandbox {
    /// Sandbox name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Snapshot id or name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// Environment.
    pub env: BTreeMap<String, String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Memory, GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Disk, GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
    /// Minutes of inactivity before Daytona stops it (0 = never).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub auto_stop_interval: Option<u32>,
    /// Volumes to mount.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub volumes: Vec<VolumeMount>,
}

/// The parts of Daytona's `Sandbox` agentbox reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Sandbox {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// State (`creating`, `started`, `stopped`, …).
    #[serde(default)]
    pub state: Option<String>,
    /// Where it is heading.
    #[serde(default)]
    pub desired_state: Option<String>,
    /// Why it failed.
    #[serde(default)]
    pub error_reason: Option<String>,
    /// Where its toolbox API is (`{toolboxProxyUrl}/{id}/…`).
    #[serde(default)]
    pub toolbox_proxy_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    items: Vec<Sandbox>,
    #[serde(default)]
    next_cursor: Option<String>,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: serde_json::Value,
}

/// A Daytona API client (cheap to clone: the HTTP client is shared).
#[derive(Clone)]
pub struct Daytona {
    base: String,
    api_key: String,
    org_id: Option<String>,
    http: reqwest::Client,
    /// Waits between attempts (Daytona's SDK: 1, 2, 4 s), jittered by up to a quarter.
    pub backoff: Vec<Duration>,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
}

impl Daytona {
    /// A client for `base` (e.g. `https://app.daytona.io/api`).
    pub fn new(base: &str, api_key: &str, org_id: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            org_id: org_id.map(str::to_string),
            http: reqwest::Client::new(),
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            attempt_timeout: Duration::from_secs(30),
        }
    }

    /// From `DAYTONA_API_KEY`, `DAYTONA_ORGANIZATION_ID`, `DAYTONA_API_URL`.
    pub fn from_env() -> Result<Self, DaytonaError> {
        let key = std::env::var("DAYTONA_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| DaytonaError::Auth("DAYTONA_API_KEY is not set".into()))?;
        let url = std::env::var("DAYTONA_API_URL")
            .unwrap_or_else(|_| "https://app.daytona.io/api".into());
        let org = std::env::var("DAYTONA_ORGANIZATION_ID").ok();
        Ok(Self::new(&url, &key, org.as_deref()))
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_url(method, &format!("{}{path}", self.base))
    }

    /// A request to a full URL (the toolbox) with Daytona's auth headers.
    fn request_url(&self, method: reqwest::Method, url: &str) -> reqwest::RequestBuilder {
        let mut r = self
            .http
            .request(method, url)
            .bearer_auth(&self.api_key)
            .timeout(self.attempt_timeout)
            .header("X-Daytona-Source", "agentbox");
        if let Some(org) = &self.org_id {
            r = r.header("X-Daytona-Organization-ID", org);
        }
        r
    }

    /// One attempt: the body of a 2xx answer, or the error it means.
    async fn once_raw(
        &self,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, DaytonaError> {
        let unreachable = |e: reqwest::Error| DaytonaError::Unreachable {
            url: self.base.clone(),
            why: e.to_string(),
        };
        let response = build().send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if (200..300).contains(&status) {
            return Ok(bytes);
        }
        let message = serde_json::from_slice::<ErrorBody>(&bytes)
            .ok()
            .map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                |b| match b.message {
                    serde_json::Value::String(s) => s,
                    serde_json::Value::Array(a) => a
                        .iter()
                        .filter_map(|v| v.as_str())
                        .collect::<Vec<_>>()
                        .join(", "),
                    other => other.to_string(),
                },
            );
        Err(match status {
            401 => DaytonaError::Auth(message),
            403 => DaytonaError::Forbidden(message),
            404 => DaytonaError::NotFound(message),
            409 => DaytonaError::Conflict(message),
            400 | 422 => DaytonaError::Invalid(message),
            429 => DaytonaError::RateLimited,
            _ => DaytonaError::Server { status, message },
        })
    }

    /// One call with retries as Daytona's own SDK classifies them; the answer's body.
    async fn call_raw(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, DaytonaError> {
        let mut attempt = 0;
        loop {
            match self.once_raw(build).await {
                Err(e) if e.retriable(idempotent) && attempt < self.backoff.len() => {
                    let base = self.backoff[attempt];
                    let jitter = base.mul_f64(f64::from(jitter_percent()) / 400.0);
                    tracing::info!(error = %e, attempt = attempt + 1, "daytona call failed; retrying");
                    tokio::time::sleep(base + jitter).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// [`Daytona::call_raw`], the answer read as JSON.
    async fn call<T: serde::de::DeserializeOwned>(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<T, DaytonaError> {
        let bytes = self.call_raw(idempotent, build).await?;
        serde_json::from_slice(&bytes).map_err(|e| DaytonaError::Server {
            status: 200,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// A call whose answer body does not matter (some deletes answer plain text).
    async fn call_no_body(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<(), DaytonaError> {
        self.call_raw(idempotent, build).await.map(drop)
    }

    /// Creates a sandbox. Not repeated on an ambiguous failure: the sandbox is looked up by
    /// a create-id label instead, so a lost answer never makes two.
    pub async fn create_sandbox(&self, mut req: CreateSandbox) -> Result<Sandbox, DaytonaError> {
        let create_id = agentbox_protocol::files::new_transfer_id()
            .map_err(|e| DaytonaError::Invalid(format!("no random id: {e}")))?;
        req.labels
            .insert(CREATE_ID_LABEL.to_string(), create_id.clone());
        let body = serde_json::to_value(&req).map_err(|e| DaytonaError::Invalid(e.to_string()))?;
        let build = || self.request(reqwest::Method::POST, "/sandbox").json(&body);
        match self.call::<Sandbox>(false, &build).await {
            Err(e @ (DaytonaError::Unreachable { .. } | DaytonaError::Server { .. })) => {
                let labels = BTreeMap::from([(CREATE_ID_LABEL.to_string(), create_id)]);
                match self.list_sandboxes(&labels).await?.into_iter().next() {
                    Some(found) => Ok(found),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// A sandbox by id or name.
    pub async fn get_sandbox(&self, id: &str) -> Result<Sandbox, DaytonaError> {
        let path = format!("/sandbox/{id}");
        self.call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
    }

    /// Sandboxes carrying all of `labels`, every page.
    pub async fn list_sandboxes(
        &self,
        labels: &BTreeMap<String, String>,
    ) -> Result<Vec<Sandbox>, DaytonaError> {
        let labels = serde_json::to_string(labels).unwrap_or_default();
        let mut out = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page: ListResponse = self
                .call(true, &|| {
                    let mut path = format!("/sandbox?labels={}", url_encode(&labels));
                    if let Some(c) = &cursor {
                        path.push_str("&cursor=");
                        path.push_str(&url_encode(c));
                    }
                    self.request(reqwest::Method::GET, &path)
                })
                .await?;
            out.extend(page.items);
            match page.next_cursor.filter(|c| !c.is_empty()) {
                Some(c) => cursor = Some(c),
                None => return Ok(out),
            }
        }
    }

    /// Starts (or resumes) a sandbox; a no-op if started.
    pub async fn start_sandbox(&self, id: &str) -> Result<Sandbox, DaytonaError> {
        let path = format!("/sandbox/{id}/start");
        self.call(true, &|| self.request(reqwest::Method::POST, &path))
            .await
    }

    /// Stops a sandbox.
    pub async fn stop_sandbox(&self, id: &str) -> Result<Sandbox, DaytonaError> {
        let path = format!("/sandbox/{id}/stop");
        self.call(true, &|| self.request(reqwest::Method::POST, &path))
            .await
    }

    /// Deletes a sandbox (Daytona finishes it asynchronously).
    pub async fn delete_sandbox(&self, id: &str) -> Result<Sandbox, DaytonaError> {
        let path = format!("/sandbox/{id}");
        self.call(true, &|| self.request(reqwest::Method::DELETE, &path))
            .await
    }

    /// Polls until the sandbox is `want` (every 100 ms, growing ×1.1 after 5 s up to 1 s,
    /// as Daytona's SDK does); `error` and `build_failed` end the wait. A sandbox that is
    /// gone counts as `destroyed`.
    pub async fn wait_for_state(
        &self,
        id: &str,
        want: &str,
        timeout: Duration,
    ) -> Result<Option<Sandbox>, DaytonaError> {
        let start = tokio::time::Instant::now();
        let mut interval = Duration::from_millis(100);
        loop {
            let current = match self.get_sandbox(id).await {
                Ok(s) => Some(s),
                Err(DaytonaError::NotFound(_)) if want == "destroyed" => return Ok(None),
                Err(e) => return Err(e),
            };
            let state = current
                .as_ref()
                .and_then(|s| s.state.clone())
                .unwrap_or_default();
            if state == want {
                return Ok(current);
            }
            if matches!(state.as_str(), "error" | "build_failed") {
                return Err(DaytonaError::BadState {
                    id: id.to_string(),
                    reason: current
                        .and_then(|s| s.error_reason)
                        .unwrap_or_else(|| "no reason given".into()),
                    state,
                });
            }
            if start.elapsed() > timeout {
                return Err(DaytonaError::BadState {
                    id: id.to_string(),
                    state,
                    reason: format!("still not {want} after {} s", timeout.as_secs()),
                });
            }
            tokio::time::sleep(interval).await;
            if start.elapsed() > Duration::from_secs(5) {
                interval = interval.mul_f64(1.1).min(Duration::from_secs(1));
            }
        }
    }
}

pub mod login;
pub mod prepare;
mod resources;
pub mod storage;
pub use resources::{
    BuildInfo, CreateSnapshot, Executed, PreviewLink, SignedPreviewLink, Snapshot, Volume,
    VolumeMount, PREVIEW_TOKEN_HEADER,
};

/// Percent-encodes everything but RFC 3986's unreserved characters.
fn url_encode(s: &str) -> String {
    use std::fmt::Write;
    s.bytes().fold(String::new(), |mut out, b| {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
        out
    })
}

/// 0..100 from the clock's nanoseconds: enough spread for retry jitter.
fn jitter_percent() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 100)
}
