//! Daytona's volumes (`/volumes…`): found by name, created once (a lost or raced create is
//! found again by name), waited for until `ready`, deleted.

use std::time::Duration;

use serde::Deserialize;

use super::client::{url_encode, Daytona};
use super::error::DaytonaError;

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

impl Daytona {
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
}
