//! Daytona's snapshots, volumes and preview links (`/snapshots`, `/volumes`,
//! `/sandbox/{id}/ports/{port}/…`), with the same retries and error sentences as the
//! sandbox calls.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{url_encode, Daytona, DaytonaError};

/// The header that carries a standard preview token to Daytona's preview proxy (it is
/// removed there before the request reaches the box).
pub const PREVIEW_TOKEN_HEADER: &str = "x-daytona-preview-token";

/// `VolumeDto`, the parts agentbox reads.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Volume {
    /// Id.
    pub id: String,
    /// Name (unique in the organization).
    pub name: String,
    /// `creating`, `ready`, `pending_create`, `pending_delete`, `deleting`, `deleted`, `error`.
    pub state: String,
    /// Why it failed.
    #[serde(default)]
    pub error_reason: Option<String>,
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
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SnapshotPage {
    items: Vec<Snapshot>,
    #[serde(default)]
    total_pages: u32,
}

/// `PortPreviewUrl`: the URL of a port and the token the proxy wants in
/// [`PREVIEW_TOKEN_HEADER`] (it changes when the sandbox starts again).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PreviewLink {
    /// The sandbox.
    pub sandbox_id: String,
    /// `https://{port}-{sandboxId}.{proxyDomain}`.
    pub url: String,
    /// The sandbox's preview token.
    pub token: String,
}

/// `SignedPortPreviewUrl`: a URL that carries its own token and expires.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SignedPreviewLink {
    /// The sandbox.
    pub sandbox_id: String,
    /// The port.
    pub port: u16,
    /// The token in the URL.
    pub token: String,
    /// `https://{port}-{token}.{proxyDomain}`.
    pub url: String,
}

/// `ExecuteResponse` of the toolbox.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Executed {
    /// The exit code (`-1`: it could not start).
    pub exit_code: i32,
    /// stdout and stderr together.
    pub result: String,
}

impl Daytona {
    /// Writes `bytes` to `path` in the sandbox through the toolbox (`files/upload`,
    /// multipart), as the sandbox's user: the content never appears in a command line.
    pub async fn upload_file(
        &self,
        sandbox: &super::Sandbox,
        path: &str,
        bytes: Vec<u8>,
    ) -> Result<(), DaytonaError> {
        let toolbox = sandbox.toolbox_proxy_url.as_deref().ok_or_else(|| {
            DaytonaError::Invalid(format!("sandbox {} has no toolbox address", sandbox.id))
        })?;
        let url = format!(
            "{}/{}/files/upload?path={}",
            toolbox.trim_end_matches('/'),
            sandbox.id,
            url_encode(path)
        );
        // Writing the same bytes again is harmless: retried like an idempotent call.
        self.call_no_body(true, &|| {
            let part = reqwest::multipart::Part::bytes(bytes.clone()).file_name("file");
            self.request_url(reqwest::Method::POST, &url)
                .multipart(reqwest::multipart::Form::new().part("file", part))
        })
        .await
    }

    /// The bytes of file `path` in the sandbox (the toolbox's `GET files/download`).
    pub async fn download_file(
        &self,
        sandbox: &super::Sandbox,
        path: &str,
    ) -> Result<Vec<u8>, DaytonaError> {
        let toolbox = sandbox.toolbox_proxy_url.as_deref().ok_or_else(|| {
            DaytonaError::Invalid(format!("sandbox {} has no toolbox address", sandbox.id))
        })?;
        let url = format!(
            "{}/{}/files/download?path={}",
            toolbox.trim_end_matches('/'),
            sandbox.id,
            url_encode(path)
        );
        let bytes = self
            .call_raw(true, &|| self.request_url(reqwest::Method::GET, &url))
            .await?;
        Ok(bytes.to_vec())
    }

    /// Runs `command` through a shell in the sandbox (the toolbox's `process/execute`),
    /// in `cwd`; never repeated on an ambiguous failure (it may have run).
    pub async fn execute(
        &self,
        sandbox: &super::Sandbox,
        command: &str,
        cwd: Option<&str>,
    ) -> Result<Executed, DaytonaError> {
        let toolbox = sandbox.toolbox_proxy_url.as_deref().ok_or_else(|| {
            DaytonaError::Invalid(format!("sandbox {} has no toolbox address", sandbox.id))
        })?;
        let url = format!(
            "{}/{}/process/execute",
            toolbox.trim_end_matches('/'),
            sandbox.id
        );
        let body = serde_json::json!({ "command": command, "cwd": cwd });
        self.call(false, &|| {
            self.request_url(reqwest::Method::POST, &url).json(&body)
        })
        .await
    }

    /// A volume by name; `None` when there is none.
    pub async fn volume_by_name(&self, name: &str) -> Result<Option<Volume>, DaytonaError> {
        let path = format!("/volumes/by-name/{}", url_encode(name));
        match self
            .call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(DaytonaError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// A volume by id.
    pub async fn get_volume(&self, id: &str) -> Result<Volume, DaytonaError> {
        let path = format!("/volumes/{id}");
        self.call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
    }

    /// The volume `name`, created when missing, once it is `ready` (within `timeout`).
    /// A create whose answer was lost, or that raced another, is found again by name.
    pub async fn ensure_volume(
        &self,
        name: &str,
        timeout: Duration,
    ) -> Result<Volume, DaytonaError> {
        let mut volume = match self.volume_by_name(name).await? {
            Some(v) => v,
            None => {
                let body = serde_json::json!({ "name": name });
                let build = || self.request(reqwest::Method::POST, "/volumes").json(&body);
                match self.call::<Volume>(false, &build).await {
                    Ok(v) => v,
                    Err(
                        e @ (DaytonaError::Conflict(_)
                        | DaytonaError::Unreachable { .. }
                        | DaytonaError::Server { .. }),
                    ) => self.volume_by_name(name).await?.ok_or(e)?,
                    Err(e) => return Err(e),
                }
            }
        };
        let start = tokio::time::Instant::now();
        loop {
            match volume.state.as_str() {
                "ready" => return Ok(volume),
                "error" | "deleted" | "deleting" | "pending_delete" => {
                    return Err(DaytonaError::BadState {
                        id: format!("volume {name}"),
                        state: volume.state,
                        reason: volume
                            .error_reason
                            .unwrap_or_else(|| "no reason given".into()),
                    })
                }
                _ if start.elapsed() > timeout => {
                    return Err(DaytonaError::BadState {
                        id: format!("volume {name}"),
                        state: volume.state,
                        reason: format!("still not ready after {} s", timeout.as_secs()),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            volume = self.get_volume(&volume.id).await?;
        }
    }

    /// Deletes a volume (`409` while a sandbox uses it).
    pub async fn delete_volume(&self, id: &str) -> Result<(), DaytonaError> {
        let path = format!("/volumes/{id}");
        self.call_no_body(true, &|| self.request(reqwest::Method::DELETE, &path))
            .await
    }

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
        let start = tokio::time::Instant::now();
        let mut last = String::new();
        let mut interval = Duration::from_millis(250);
        loop {
            let snapshot = match self.get_snapshot(name).await {
                Ok(s) => s,
                Err(DaytonaError::NotFound(_)) => {
                    return Err(DaytonaError::SnapshotGone(name.into()))
                }
                Err(e) => return Err(e),
            };
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
                _ if start.elapsed() > timeout => {
                    return Err(DaytonaError::SnapshotFailed {
                        name: name.into(),
                        state: snapshot.state,
                        reason: format!("not active after {} s", timeout.as_secs()),
                    })
                }
                _ => {}
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.2).min(Duration::from_secs(2));
        }
    }

    /// Captures a sandbox's disk as snapshot `name` (`POST /sandbox/{id}/snapshot`; the
    /// sandbox goes `snapshotting`, then back). Not repeated on an ambiguous failure.
    pub async fn snapshot_sandbox(&self, sandbox: &str, name: &str) -> Result<(), DaytonaError> {
        let path = format!("/sandbox/{sandbox}/snapshot");
        let body = serde_json::json!({ "name": name, "includeMemory": false });
        self.call_no_body(false, &|| {
            self.request(reqwest::Method::POST, &path).json(&body)
        })
        .await
    }

    /// The standard preview URL of `port` and its token.
    pub async fn preview_link(
        &self,
        sandbox: &str,
        port: u16,
    ) -> Result<PreviewLink, DaytonaError> {
        if port == 0 {
            return Err(DaytonaError::Invalid("port 0 has no preview URL".into()));
        }
        let path = format!("/sandbox/{sandbox}/ports/{port}/preview-url");
        self.call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
    }

    /// A signed preview URL of `port` that expires after `ttl` (1 s to 24 h).
    pub async fn signed_preview_link(
        &self,
        sandbox: &str,
        port: u16,
        ttl: Duration,
    ) -> Result<SignedPreviewLink, DaytonaError> {
        let seconds = ttl.as_secs();
        if !(1..=86_400).contains(&seconds) {
            return Err(DaytonaError::Invalid(format!(
                "a signed preview URL lasts 1 s to 24 h, not {seconds} s"
            )));
        }
        if port == 0 {
            return Err(DaytonaError::Invalid("port 0 has no preview URL".into()));
        }
        let path = format!(
            "/sandbox/{sandbox}/ports/{port}/signed-preview-url?expiresInSeconds={seconds}"
        );
        self.call(true, &|| self.request(reqwest::Method::GET, &path))
            .await
    }
}
