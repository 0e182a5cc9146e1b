//! Daytona's snapshots (`/snapshots…`, `POST /sandbox/{id}/snapshot`): built from a
//! Dockerfile or pulled from a registry image, listed, waited for until `active` (a failed
//! build reports Daytona's reason), deleted; a sandbox's disk is captured as one in
//! [`super::lifecycle`].

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::client::{url_encode, Daytona};
use super::error::DaytonaError;

/// `buildInfo` of a snapshot built from a Dockerfile.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct BuildInfo {
    /// The whole Dockerfile.
    pub dockerfile_content: String,
    /// Hashes of the context archives uploaded to object storage.
    #[serde(default)]
    pub context_hashes: Vec<String>,
}

/// `CreateSnapshot`: from a registry image, or from a Dockerfile.
#[derive(Debug, Clone, Serialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct CreateSnapshot {
    /// Name.
    pub name: String,
    /// A registry reference (not `:latest`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// Or a Dockerfile build.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub build_info: Option<BuildInfo>,
    /// The entrypoint.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub entrypoint: Vec<String>,
    /// CPUs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<u32>,
    /// Memory, GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<u32>,
    /// Disk, GB.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub disk: Option<u32>,
}

/// `SnapshotDto`, the parts agentbox reads.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    /// Id.
    pub id: String,
    /// Name.
    pub name: String,
    /// `building`, `pending`, `pulling`, `active`, `inactive`, `error`, `build_failed`,
    /// `removing`.
    pub state: String,
    /// The registry image, when made from one.
    #[serde(default)]
    pub image_name: Option<String>,
    /// Size in GB, once known.
    #[serde(default)]
    pub size: Option<f64>,
    /// Why it failed.
    #[serde(default)]
    pub error_reason: Option<String>,
    /// CPUs a sandbox made from it gets.
    #[serde(default)]
    pub cpu: Option<f64>,
    /// Memory (GB) a sandbox made from it gets.
    #[serde(default)]
    pub mem: Option<f64>,
    /// Disk (GB) a sandbox made from it gets.
    #[serde(default)]
    pub disk: Option<f64>,
    /// The Dockerfile and contexts it was built from, when built from a Dockerfile.
    #[serde(default)]
    pub build_info: Option<BuildInfo>,
}

impl Snapshot {
    /// Its resources as `(cpu, memory GB, disk GB)`, when Daytona says them all.
    pub fn resources(&self) -> Option<(u32, u32, u32)> {
        let whole = |v: Option<f64>| {
            v.filter(|v| v.is_finite() && *v >= 0.0 && *v <= f64::from(u32::MAX))
                .map(|v| v.round() as u32)
        };
        Some((whole(self.cpu)?, whole(self.mem)?, whole(self.disk)?))
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotPage {
    items: Vec<Snapshot>,
    #[serde(default)]
    total_pages: u32,
}

impl Daytona {
    /// Starts a snapshot build or pull (not retried on an ambiguous failure: the name is
    /// unique, so look it up instead).
    pub async fn create_snapshot(&self, req: &CreateSnapshot) -> Result<Snapshot, DaytonaError> {
        if req
            .image_name
            .as_deref()
            .is_some_and(|i| i.ends_with(":latest"))
        {
            return Err(DaytonaError::Invalid(
                "Daytona does not take `:latest` images for snapshots: pin a tag".into(),
            ));
        }
        let build = || self.request(reqwest::Method::POST, "/snapshots").json(req);
        match self.call::<Snapshot>(false, &build).await {
            Err(e @ (DaytonaError::Unreachable { .. } | DaytonaError::Server { .. })) => {
                match self.get_snapshot(&req.name).await {
                    Ok(found) => Ok(found),
                    Err(_) => Err(e),
                }
            }
            other => other,
        }
    }

    /// A snapshot by id or name.
    pub async fn get_snapshot(&self, id_or_name: &str) -> Result<Snapshot, DaytonaError> {
        let path = format!("/snapshots/{}", url_encode(id_or_name));
        self.call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
    }

    /// Snapshots whose name contains `name` (all when `None`), every page.
    pub async fn list_snapshots(&self, name: Option<&str>) -> Result<Vec<Snapshot>, DaytonaError> {
        let mut out = Vec::new();
        let mut page = 1u32;
        loop {
            let mut path = format!("/snapshots?page={page}&limit=100");
            if let Some(n) = name {
                path.push_str("&name=");
                path.push_str(&url_encode(n));
            }
            let got: SnapshotPage = self
                .call(true, &|| self.request(reqwest::Method::GET, &path))
                .await?;
            out.extend(got.items);
            if page >= got.total_pages {
                return Ok(out);
            }
            page += 1;
        }
    }

    /// Deletes a snapshot by id or name (the name is resolved to the id first).
    pub async fn delete_snapshot(&self, id_or_name: &str) -> Result<(), DaytonaError> {
        let id = self.get_snapshot(id_or_name).await?.id;
        let path = format!("/snapshots/{id}");
        self.call_no_body(true, &|| self.request(reqwest::Method::DELETE, &path))
            .await
    }

    /// Polls a snapshot until `active`; `progress` hears each new state. `error` and
    /// `build_failed` end the wait with Daytona's reason; a snapshot that disappears is
    /// [`DaytonaError::SnapshotGone`].
    pub async fn wait_snapshot(
        &self,
        name: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Snapshot, DaytonaError> {
        self.wait_snapshot_after(name, Duration::ZERO, timeout, progress)
            .await
    }

    /// [`Daytona::wait_snapshot`], where for `absent` a 404 means "not recorded yet" (a
    /// capture's snapshot only appears when the capture is done).
    pub(super) async fn wait_snapshot_after(
        &self,
        name: &str,
        absent: Duration,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Snapshot, DaytonaError> {
        let start = tokio::time::Instant::now();
        let mut last = String::new();
        let mut interval = Duration::from_millis(250);
        loop {
            let snapshot = match self.get_snapshot(name).await {
                Ok(s) => Some(s),
                Err(DaytonaError::NotFound(_)) if start.elapsed() < absent => None,
                Err(DaytonaError::NotFound(_)) => {
                    return Err(DaytonaError::SnapshotGone(name.into()))
                }
                Err(e) => return Err(e),
            };
            if let Some(snapshot) = snapshot {
                if snapshot.state != last {
                    progress(&snapshot.state);
                    last.clone_from(&snapshot.state);
                }
                match snapshot.state.as_str() {
                    "active" => return Ok(snapshot),
                    "error" | "build_failed" => {
                        return Err(DaytonaError::SnapshotFailed {
                            name: name.into(),
                            state: snapshot.state,
                            reason: snapshot
                                .error_reason
                                .unwrap_or_else(|| "no reason given".into()),
                        })
                    }
                    "removing" => return Err(DaytonaError::SnapshotGone(name.into())),
                    _ if start.elapsed() > timeout => {
                        return Err(DaytonaError::SnapshotFailed {
                            name: name.into(),
                            state: snapshot.state,
                            reason: format!("not active after {} s", timeout.as_secs()),
                        })
                    }
                    _ => {}
                }
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.2).min(Duration::from_secs(2));
        }
    }
}
