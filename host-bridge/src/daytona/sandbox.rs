//! Sandboxes (`POST /sandbox`, `GET /sandbox?labels=<json>`, `/sandbox/{idOrName}/start|stop`,
//! `DELETE /sandbox/{idOrName}`): create, find by label, start, stop, delete, and wait for a
//! state as Daytona's SDK does; a create that timed out is found again by label instead of
//! sent twice.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{url_encode, Daytona};
use super::error::DaytonaError;
use super::snapshots::BuildInfo;

/// Label carrying the id a create was sent with, so a create whose answer was lost is
/// found again instead of sent twice.
pub const CREATE_ID_LABEL: &str = "agentbox.create-id";

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
    /// Build the sandbox's image from this Dockerfile and contexts instead of a snapshot
    /// (Daytona then takes `cpu`, `memory` and `disk`; with a snapshot it refuses them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_info: Option<BuildInfo>,
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
    /// Minutes without activity before Daytona stops it (0: never).
    #[serde(default)]
    pub auto_stop_interval: Option<u32>,
}

/// A volume mounted into a sandbox (`CreateSandbox.volumes[]`).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct VolumeMount {
    /// The volume's id.
    pub volume_id: String,
    /// Where it is mounted.
    pub mount_path: String,
    /// Only this S3 prefix of the volume.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subpath: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListResponse {
    items: Vec<Sandbox>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Daytona {
    /// Creates a sandbox. Not repeated on an ambiguous failure: the sandbox is looked up
    /// instead — by its name (Daytona's get is consistent at once) when it has one, and by
    /// a create-id label, which Daytona's list may show only a moment after the create
    /// (it is eventually consistent), for up to [`Daytona::list_lag`] — so a lost answer
    /// never makes two.
    pub async fn create_sandbox(&self, mut req: CreateSandbox) -> Result<Sandbox, DaytonaError> {
        let create_id = agentbox_protocol::files::new_transfer_id()
            .map_err(|e| DaytonaError::Invalid(format!("no random id: {e}")))?;
        req.labels
            .insert(CREATE_ID_LABEL.to_string(), create_id.clone());
        let body = serde_json::to_value(&req).map_err(|e| DaytonaError::Invalid(e.to_string()))?;
        let build = || self.request(reqwest::Method::POST, "/sandbox").json(&body);
        match self.call::<Sandbox>(false, &build).await {
            Err(e @ (DaytonaError::Unreachable { .. } | DaytonaError::Server { .. })) => {
                match self.find_created(req.name.as_deref(), &create_id).await? {
                    Some(found) => Ok(found),
                    None => Err(e),
                }
            }
            other => other,
        }
    }

    /// The sandbox a create with `create_id` made, if it made one.
    async fn find_created(
        &self,
        name: Option<&str>,
        create_id: &str,
    ) -> Result<Option<Sandbox>, DaytonaError> {
        let ours =
            |s: &Sandbox| s.labels.get(CREATE_ID_LABEL).map(String::as_str) == Some(create_id);
        if let Some(name) = name {
            match self.get_sandbox(name).await {
                Ok(s) if ours(&s) => return Ok(Some(s)),
                Ok(_) | Err(DaytonaError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
        }
        let labels = BTreeMap::from([(CREATE_ID_LABEL.to_string(), create_id.to_string())]);
        let start = tokio::time::Instant::now();
        loop {
            if let Some(found) = self.list_sandboxes(&labels).await?.into_iter().find(ours) {
                return Ok(Some(found));
            }
            if start.elapsed() >= self.list_lag {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
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

    /// Sets the minutes without activity after which Daytona stops the sandbox (0: never;
    /// `POST /sandbox/{id}/autostop/{interval}`, taken in any state).
    pub async fn set_auto_stop(&self, id: &str, minutes: u32) -> Result<Sandbox, DaytonaError> {
        let path = format!("/sandbox/{id}/autostop/{minutes}");
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
