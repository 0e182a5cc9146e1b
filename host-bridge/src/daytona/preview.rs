//! Preview links of a sandbox's ports (`/sandbox/{id}/ports/{port}/…`): the standard URL
//! with the token Daytona's proxy wants in [`PREVIEW_TOKEN_HEADER`], and signed URLs that
//! carry their own token and expire; and the sandbox's activity, which the preview proxy
//! counts and [`Daytona::update_last_activity`] reports.

use std::time::Duration;

use serde::Deserialize;

use super::client::Daytona;
use super::error::DaytonaError;

/// The header that carries a standard preview token to Daytona's preview proxy (it is
/// removed there before the request reaches the box).
pub const PREVIEW_TOKEN_HEADER: &str = "x-daytona-preview-token";

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

impl Daytona {
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

    /// `POST /sandbox/{id}/last-activity`: the sandbox counts as active now, which puts
    /// its auto-stop off by its `autoStopInterval` (what the preview proxy does for every
    /// request that does not say `X-Daytona-Skip-Last-Activity-Update`).
    pub async fn update_last_activity(&self, sandbox_id: &str) -> Result<(), DaytonaError> {
        let path = format!("/sandbox/{sandbox_id}/last-activity");
        self.call_no_body(true, &|| self.request(reqwest::Method::POST, &path))
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
