//! The Daytona API client ([`Daytona`]): the API base and key, Daytona's auth headers, one
//! attempt's answer or the [`DaytonaError`] it means, and retries by Daytona's own SDK's
//! classification with jittered backoff. The calls themselves are in the sibling modules
//! ([`super::sandbox`], [`super::volumes`], …), each an `impl Daytona` of its own.

use std::time::Duration;

use serde::Deserialize;

use super::error::DaytonaError;
use crate::transfer::capped::{read_capped, read_error_body, CappedError, ERROR_CAP};

/// The most of one answer that is read (Daytona's own answers: sandboxes, snapshots,
/// volumes); a longer one is refused as [`DaytonaError::TooLarge`].
pub const ANSWER_CAP: usize = 16 << 20;

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
    /// The HTTP client on the host's TLS configuration ([`crate::tls`]); object storage
    /// uploads use it too, without Daytona's headers.
    pub(super) http: reqwest::Client,
    /// Waits between attempts (Daytona's SDK: 1, 2, 4 s), jittered by up to a quarter.
    pub backoff: Vec<Duration>,
    /// How long one attempt may take.
    pub attempt_timeout: Duration,
    /// How long a new sandbox may take to show in Daytona's list (it is eventually
    /// consistent): how long a create whose answer was lost is looked for there.
    pub list_lag: Duration,
    /// The longest `Retry-After` of a 429 that is waited out (a longer one ends the call).
    pub max_retry_after: Duration,
    /// `DAYTONA_INSECURE=1`: plain `http://` to another machine is accepted in the URLs
    /// Daytona hands back (toolbox, object storage), as in the API URL; otherwise they are
    /// refused before anything is sent there ([`Daytona::handed_url`]).
    pub insecure: bool,
}

impl Daytona {
    /// A client for `base` (e.g. `https://app.daytona.io/api`).
    pub fn new(base: &str, api_key: &str, org_id: Option<&str>) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            api_key: api_key.to_string(),
            org_id: org_id.map(str::to_string),
            http: crate::tls::http_client(),
            backoff: vec![
                Duration::from_secs(1),
                Duration::from_secs(2),
                Duration::from_secs(4),
            ],
            attempt_timeout: Duration::from_secs(30),
            list_lag: Duration::from_secs(10),
            max_retry_after: Duration::from_secs(60),
            insecure: false,
        }
    }

    /// `url`, which Daytona's answer named as `what` (the toolbox's, the object
    /// storage's), or why it is not used: plain HTTP to another machine without
    /// [`Daytona::insecure`] (the API key would cross the network unencrypted).
    pub(super) fn handed_url<'u>(&self, url: &'u str, what: &str) -> Result<&'u str, DaytonaError> {
        match super::plain_http::plain_http_refused(url, what, self.insecure) {
            Some(why) => Err(DaytonaError::Invalid(why)),
            None => Ok(url),
        }
    }

    /// From `DAYTONA_API_KEY`, `DAYTONA_ORGANIZATION_ID`, `DAYTONA_API_URL` (a user's
    /// token without an organization is refused: Daytona would refuse every call).
    pub fn from_env() -> Result<Self, DaytonaError> {
        let key = std::env::var("DAYTONA_API_KEY")
            .ok()
            .filter(|k| !k.is_empty())
            .ok_or_else(|| DaytonaError::Auth("DAYTONA_API_KEY is not set".into()))?;
        let url = std::env::var("DAYTONA_API_URL")
            .unwrap_or_else(|_| "https://app.daytona.io/api".into());
        let org = std::env::var("DAYTONA_ORGANIZATION_ID")
            .ok()
            .filter(|o| !o.is_empty());
        if org.is_none() && is_user_token(&key) {
            return Err(no_organization());
        }
        Ok(Self::new(&url, &key, org.as_deref()))
    }

    pub(super) fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.request_url(method, &format!("{}{path}", self.base))
    }

    /// A request to a full URL (the toolbox) with Daytona's auth headers.
    pub(super) fn request_url(
        &self,
        method: reqwest::Method,
        url: &str,
    ) -> reqwest::RequestBuilder {
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

    /// One attempt: the body of a 2xx answer (at most `cap` bytes of it: a longer one is
    /// [`DaytonaError::TooLarge`]), or the error it means (its first
    /// [`ERROR_CAP`] bytes read).
    pub(super) async fn once_raw(
        &self,
        cap: usize,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, DaytonaError> {
        let unreachable = |e: reqwest::Error| DaytonaError::network(&self.base, &e);
        let response = build().send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        if (200..300).contains(&status) {
            let url = response.url().clone();
            return match read_capped(response, cap).await {
                Ok(body) => Ok(body.into()),
                Err(CappedError::Network(e)) => Err(unreachable(e)),
                Err(_) => Err(DaytonaError::TooLarge {
                    url: url_without_query(&url),
                    cap,
                }),
            };
        }
        let bytes = read_error_body(response, ERROR_CAP).await;
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
            429 => DaytonaError::RateLimited { retry_after },
            _ => DaytonaError::Server { status, message },
        })
    }

    /// One call with retries as Daytona's own SDK classifies them; the answer's body (at
    /// most [`ANSWER_CAP`] bytes).
    pub(super) async fn call_raw(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, DaytonaError> {
        self.call_raw_capped(idempotent, ANSWER_CAP, build).await
    }

    /// [`Daytona::call_raw`] reading at most `cap` bytes of the answer (a sandbox's toolbox
    /// answers with what the box chose).
    pub(super) async fn call_raw_capped(
        &self,
        idempotent: bool,
        cap: usize,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<bytes::Bytes, DaytonaError> {
        let mut attempt = 0;
        loop {
            match self.once_raw(cap, build).await {
                Err(e) if e.retriable(idempotent) && attempt < self.backoff.len() => {
                    let base = self.backoff[attempt];
                    let jitter = base.mul_f64(f64::from(jitter_percent()) / 400.0);
                    // A 429 says how long to wait: never sooner, and not at all when
                    // that is longer than a call should take.
                    let wait = match &e {
                        DaytonaError::RateLimited {
                            retry_after: Some(after),
                        } if *after > self.max_retry_after => return Err(e),
                        DaytonaError::RateLimited {
                            retry_after: Some(after),
                        } => (*after).max(base) + jitter,
                        _ => base + jitter,
                    };
                    tracing::info!(error = %e, attempt = attempt + 1, "daytona call failed; retrying");
                    tokio::time::sleep(wait).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    /// [`Daytona::call_raw`], the answer read as JSON.
    pub(super) async fn call<T: serde::de::DeserializeOwned>(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<T, DaytonaError> {
        self.call_capped(idempotent, ANSWER_CAP, build).await
    }

    /// [`Daytona::call`] reading at most `cap` bytes of the answer.
    pub(super) async fn call_capped<T: serde::de::DeserializeOwned>(
        &self,
        idempotent: bool,
        cap: usize,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<T, DaytonaError> {
        let bytes = self.call_raw_capped(idempotent, cap, build).await?;
        serde_json::from_slice(&bytes).map_err(|e| DaytonaError::Server {
            status: 200,
            message: format!("unexpected answer: {e}"),
        })
    }

    /// A call whose answer body does not matter (some deletes answer plain text).
    pub(super) async fn call_no_body(
        &self,
        idempotent: bool,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<(), DaytonaError> {
        self.call_raw(idempotent, build).await.map(drop)
    }
}

/// Whether `key` is shaped as a JWT (`eyJ…` and two more base64url parts after dots): a
/// user's login token, which Daytona takes in an organization only with
/// `X-Daytona-Organization-ID` (an API key is bound to its own).
pub fn is_user_token(key: &str) -> bool {
    let parts: Vec<&str> = key.split('.').collect();
    parts.len() == 3
        && key.starts_with("eyJ")
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// Why a user's token without an organization is not used, and what to do.
pub(super) fn no_organization() -> DaytonaError {
    DaytonaError::Auth(
        "the key is a user's login token (a JWT), which Daytona takes only with an \
         organization: login chooses and saves one; or set DAYTONA_ORGANIZATION_ID"
            .into(),
    )
}

/// `url` without its query (which may carry a path or a token) for an error message.
fn url_without_query(url: &reqwest::Url) -> String {
    let mut url = url.clone();
    url.set_query(None);
    url.to_string()
}

/// Percent-encodes everything but RFC 3986's unreserved characters.
pub(super) fn url_encode(s: &str) -> String {
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

/// A 429's `Retry-After` in seconds (Daytona's throttler sends seconds; an HTTP date is
/// not used there and counts as absent).
pub(super) fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// 0..100 from the clock's nanoseconds: enough spread for retry jitter.
fn jitter_percent() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() % 100)
}
