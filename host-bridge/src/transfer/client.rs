//! The host end of the relay's file-transfer API: uploads and downloads that survive cut
//! connections by resuming where the box (or the host) got to, and verify blake3 before
//! anything lands.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentbox_protocol::error::ErrorBody;
use agentbox_protocol::files::{
    DownloadDigest, DownloadInfo, DownloadRequest, LandRequest, Landed, TransferKind, UploadStatus,
    UseUpload, OFFSET_HEADER, SIZE_HEADER,
};
use agentbox_protocol::part_file::{spawn_writer, PartFile};
use anyhow::{anyhow, bail, Context};
use bytes::Bytes;

use super::capped::{
    read_error_body, read_json_capped, CappedError, ERROR_CAP, LISTING_CAP, SMALL_CAP,
};
use futures_util::StreamExt;

/// Consecutive failed attempts (no byte of progress) before a transfer gives up.
const MAX_STALLED_ATTEMPTS: u32 = 8;
/// Read size for uploads.
const CHUNK: usize = 1 << 20;

/// The header that carries the bridge token to the relay. Not `Authorization: Bearer`:
/// Daytona's preview proxy takes a bearer token for a Daytona API key, sends it to
/// Daytona's API to check, and (when the preview token passes) hands it on unchanged.
pub const BRIDGE_TOKEN_HEADER: &str = "x-agentbox-token";

/// Whether an answer is a preview proxy's login rather than the relay's: a redirect (how
/// Daytona's proxy answers a missing or stale preview token: `307` to its sign-in page) or
/// an HTML page (the relay's bridge API answers JSON only).
pub fn is_login_answer(status: reqwest::StatusCode, headers: &reqwest::header::HeaderMap) -> bool {
    status.is_redirection()
        || headers
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|t| t.trim_start().to_ascii_lowercase().starts_with("text/html"))
}

/// Progress callback: bytes done, bytes in all.
pub type Progress<'a> = &'a (dyn Fn(u64, u64) + Sync);

/// A connection to one box relay's bridge API.
#[derive(Clone)]
pub struct Relay {
    base: String,
    token: String,
    http: reqwest::Client,
    preview: Option<Arc<PreviewAuth>>,
}

/// Mints a new preview token (Daytona's rotates when the sandbox starts again).
pub type Remint =
    Arc<dyn Fn() -> futures_util::future::BoxFuture<'static, anyhow::Result<String>> + Send + Sync>;

/// The token a preview proxy in front of the relay wants, and how to renew it.
pub struct PreviewAuth {
    token: std::sync::RwLock<String>,
    remint: Remint,
}

impl PreviewAuth {
    fn current(&self) -> String {
        self.token
            .read()
            .map_or_else(|e| e.into_inner().clone(), |t| t.clone())
    }

    async fn renew(&self) -> anyhow::Result<()> {
        let fresh = (self.remint)().await?;
        match self.token.write() {
            Ok(mut t) => *t = fresh,
            Err(e) => *e.into_inner() = fresh,
        }
        Ok(())
    }
}

/// Why a call failed: the relay's answer, or the network.
#[derive(Debug)]
enum CallError {
    /// The relay answered with an error status.
    Status(reqwest::StatusCode, String, Option<u64>),
    /// The preview proxy refused its token; a new one was minted: try again.
    Reminted,
    /// The request or its body did not make it.
    Network(reqwest::Error),
    /// The answer was too large or not the JSON expected (not retried: the box chose it).
    Answer(CappedError),
}

impl From<CappedError> for CallError {
    fn from(e: CappedError) -> Self {
        match e {
            CappedError::Network(e) => Self::Network(e),
            other => Self::Answer(other),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Status(s, m, _) => f.write_str(&super::refusal::refusal(*s, m)),
            Self::Reminted => f.write_str("the preview token was renewed"),
            Self::Network(e) => f.write_str(&crate::tls::explain(e)),
            Self::Answer(e) => write!(f, "{e}"),
        }
    }
}

impl Relay {
    /// A client for the bridge API at `base` (e.g. `http://127.0.0.1:8788`, or a preview
    /// URL over `https://`). Its connections are kept: clones share them, so a caller that
    /// keeps its `Relay` handshakes once per host, not once per call. It follows no
    /// redirect: behind a preview proxy one means the preview token is stale.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            base: base.trim_end_matches('/').to_string(),
            token: token.to_string(),
            http: crate::tls::preview_client(),
            preview: None,
        }
    }

    /// The same relay behind a preview proxy that wants `token` in
    /// `x-daytona-preview-token`; when the proxy refuses it (a redirect to its login page,
    /// an HTML page, or a `401` that is not the relay's), `remint` gets a new one and the
    /// call is made again.
    #[must_use]
    pub fn with_preview(mut self, token: &str, remint: Remint) -> Self {
        self.preview = Some(Arc::new(PreviewAuth {
            token: std::sync::RwLock::new(token.to_string()),
            remint,
        }));
        self
    }

    /// Whether a preview proxy stands in front of the relay.
    pub fn has_preview(&self) -> bool {
        self.preview.is_some()
    }

    /// Mints a new preview token (a no-op without a preview proxy).
    pub async fn renew_preview(&self) -> anyhow::Result<()> {
        match &self.preview {
            Some(p) => p.renew().await,
            None => Ok(()),
        }
    }

    /// Whether `status` and `headers` are the preview proxy refusing its token: a login
    /// answer ([`is_login_answer`]) from a relay behind a preview proxy.
    pub fn preview_refused(
        &self,
        status: reqwest::StatusCode,
        headers: &reqwest::header::HeaderMap,
    ) -> bool {
        self.preview.is_some() && is_login_answer(status, headers)
    }

    /// The headers every call carries: the bridge token (in [`BRIDGE_TOKEN_HEADER`]), and
    /// the preview token if any.
    pub fn auth_headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![(BRIDGE_TOKEN_HEADER, self.token.clone())];
        if let Some(p) = &self.preview {
            headers.push((crate::daytona::PREVIEW_TOKEN_HEADER, p.current()));
        }
        headers
    }

    /// Puts [`Relay::auth_headers`] on a request.
    fn authorize(&self, mut request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        for (name, value) in self.auth_headers() {
            request = request.header(name, value);
        }
        request
    }

    /// The full URL of an API path (`/v1/...`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The bridge token, for clients other than `Relay::http` (WebSocket).
    pub fn token(&self) -> &str {
        &self.token
    }

    /// A request to `path` with the tokens attached.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.authorize(self.http.request(method, self.url(path)))
    }

    /// The response if it is a success; otherwise the relay's error. A preview proxy's
    /// refusal — a redirect to its login page, an HTML page, or a `401` that is not the
    /// relay's own (JSON) — renews the preview token and says to try again.
    async fn check(&self, response: reqwest::Response) -> Result<reqwest::Response, CallError> {
        let status = response.status();
        let login = is_login_answer(status, response.headers());
        if status.is_success() && !login {
            return Ok(response);
        }
        let location = response
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .map(|l| crate::text::clean_text(l, 200));
        let offset = response
            .headers()
            .get(OFFSET_HEADER)
            .and_then(|v| v.to_str().ok()?.parse().ok());
        let bytes = read_error_body(response, ERROR_CAP).await;
        let relay_error = serde_json::from_slice::<ErrorBody>(&bytes).ok();
        if login || (status == reqwest::StatusCode::UNAUTHORIZED && relay_error.is_none()) {
            if let Some(preview) = &self.preview {
                tracing::info!(%status, "the preview proxy refused its token; minting a new one");
                return match preview.renew().await {
                    Ok(()) => Err(CallError::Reminted),
                    Err(e) => Err(CallError::Status(
                        status,
                        format!("the preview proxy refused the token and no new one could be had: {e:#}"),
                        None,
                    )),
                };
            }
        }
        if login {
            let whither = location.map_or_else(String::new, |l| format!(" to {l}"));
            return Err(CallError::Status(
                status,
                format!("something between here and the box answered with a login page or redirect{whither}, not the relay"),
                None,
            ));
        }
        let message = relay_error.map_or_else(
            || String::from_utf8_lossy(&bytes).into_owned(),
            |b| b.error.message,
        );
        // The box wrote it: escaped here, where the error is made, so that no newline or
        // escape of the box's can forge or hide a line of the host's output.
        Err(CallError::Status(
            status,
            crate::text::shown(&message),
            offset,
        ))
    }

    /// Sends `request` and reads its JSON answer, at most `cap` bytes of it.
    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        request: reqwest::RequestBuilder,
        cap: usize,
    ) -> Result<T, CallError> {
        // Once more after a renewed preview token (a JSON body can be sent again).
        let again = request.try_clone();
        let response = self
            .authorize(request)
            .send()
            .await
            .map_err(CallError::Network)?;
        let checked = match (self.check(response).await, again) {
            (Err(CallError::Reminted), Some(again)) => {
                let response = self
                    .authorize(again)
                    .send()
                    .await
                    .map_err(CallError::Network)?;
                self.check(response).await
            }
            (other, _) => other,
        };
        Ok(read_json_capped(checked?, cap).await?)
    }

    /// `POST {path}` with a JSON body, answering JSON (a listing or digests: at most
    /// [`LISTING_CAP`] bytes of it are read).
    pub async fn post_json<B: serde::Serialize, T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> anyhow::Result<T> {
        self.json(self.http.post(self.url(path)).json(body), LISTING_CAP)
            .await
            .map_err(|e| anyhow!("the box refused {path}: {e}"))
    }

    /// Where the box is with upload `id`.
    async fn upload_status(&self, id: &str) -> Result<UploadStatus, CallError> {
        self.json(
            self.http.get(self.url(&format!("/v1/uploads/{id}"))),
            SMALL_CAP,
        )
        .await
    }

    /// Sends `file` as upload `id` and lands it as `land` says (digest and size filled in
    /// here).
    pub async fn upload(
        &self,
        id: &str,
        file: &Path,
        mut land: LandRequest,
        progress: Progress<'_>,
    ) -> anyhow::Result<Landed> {
        let sent = self.send(id, file, progress).await?;
        land.blake3 = sent.blake3;
        land.size = sent.size;
        self.json(
            self.http
                .post(self.url(&format!("/v1/uploads/{id}/land")))
                .json(&land),
            SMALL_CAP,
        )
        .await
        .map_err(|e| anyhow!("the box did not land the upload: {e}"))
    }

    /// Sends `file` as upload `id` and hands it to `POST {path}/{id}` (the seed or sync
    /// endpoint), which checks the digest before using it.
    pub async fn upload_and_use<T: serde::de::DeserializeOwned>(
        &self,
        id: &str,
        file: &Path,
        path: &str,
        progress: Progress<'_>,
    ) -> anyhow::Result<T> {
        let sent = self.send(id, file, progress).await?;
        self.json(
            self.http
                .post(self.url(&format!("{path}/{id}")))
                .json(&sent),
            SMALL_CAP,
        )
        .await
        .map_err(|e| anyhow!("the box refused it: {e}"))
    }

    /// Sends `file` as upload `id`; cut connections resume from the offset the box has.
    /// Returns what the box must find when it checks.
    pub async fn send(
        &self,
        id: &str,
        file: &Path,
        progress: Progress<'_>,
    ) -> anyhow::Result<UseUpload> {
        let size = std::fs::metadata(file)
            .with_context(|| format!("cannot read {}", file.display()))?
            .len();
        let hash = Arc::new(Mutex::new(blake3::Hasher::new()));
        let mut offset = 0;
        let mut stalled = 0;
        loop {
            progress(offset, size);
            let body = reqwest::Body::wrap_stream(hashing_reader(file, offset, size, &hash));
            let sent = self
                .request(reqwest::Method::PUT, &format!("/v1/uploads/{id}"))
                .header(OFFSET_HEADER, offset)
                .header(SIZE_HEADER, size)
                .header(reqwest::header::CONTENT_LENGTH, size - offset)
                .body(body)
                .send()
                .await;
            let before = offset;
            let outcome = match sent {
                Ok(r) => match self.check(r).await {
                    Ok(r) => read_json_capped::<UploadStatus>(r, SMALL_CAP)
                        .await
                        .map(|s| s.offset)
                        .map_err(CallError::from),
                    Err(e) => Err(e),
                },
                Err(e) => Err(CallError::Network(e)),
            };
            // Only the box's answer to a PUT confirms an offset; after a cut, the status
            // only says where to resume.
            let mut confirmed = false;
            match outcome {
                Ok(at) => {
                    offset = at;
                    confirmed = true;
                }
                Err(CallError::Status(s, _, Some(at))) if s == reqwest::StatusCode::CONFLICT => {
                    offset = at;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(CallError::Status(s, m, _)) => {
                    bail!(
                        "the box refused the upload: {}",
                        super::refusal::refusal(s, &m)
                    )
                }
                Err(e @ CallError::Answer(_)) => bail!("the box refused the upload: {e}"),
                // Nothing reached the box: send again with the new preview token.
                Err(CallError::Reminted) => {}
                Err(CallError::Network(e)) => {
                    tracing::info!(error = %e, offset, "upload interrupted; resuming");
                    tokio::time::sleep(backoff(stalled)).await;
                    offset = self.settled_offset(id).await.unwrap_or(offset);
                }
            }
            // The box chose the offset: past the end it is a lie, never a place to send from.
            if offset > size {
                bail!("the box says it holds {offset} bytes of a {size}-byte upload; the upload was stopped");
            }
            if confirmed && offset >= size {
                break;
            }
            if offset > before {
                stalled = 0;
            } else {
                stalled += 1;
                if stalled >= MAX_STALLED_ATTEMPTS {
                    bail!("the upload makes no progress (stuck at byte {offset} of {size})");
                }
            }
        }
        progress(size, size);
        let hasher = hash.lock().map_err(|_| anyhow!("hasher poisoned"))?;
        if hasher.count() != size {
            bail!(
                "{} changed while it was being sent; nothing was written",
                file.display()
            );
        }
        Ok(UseUpload {
            blake3: hasher.finalize().to_hex().to_string(),
            size,
        })
    }

    /// The offset of an upload once no `PUT` is writing to it any more.
    async fn settled_offset(&self, id: &str) -> Option<u64> {
        for _ in 0..50 {
            match self.upload_status(id).await {
                Ok(s) if !s.busy => return Some(s.offset),
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(CallError::Status(s, ..)) if s == reqwest::StatusCode::NOT_FOUND => {
                    return Some(0)
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Starts a download.
    pub async fn start_download(&self, req: &DownloadRequest) -> anyhow::Result<DownloadInfo> {
        self.json(
            self.http.post(self.url("/v1/downloads")).json(req),
            SMALL_CAP,
        )
        .await
        .map_err(|e| anyhow!("the box cannot send {}: {e}", req.path))
    }

    /// Fetches download `info` (started with `req`) into the staging file `part` (created
    /// here), resuming after cuts, and checks its digest. `max` caps the size.
    pub async fn download(
        &self,
        req: &DownloadRequest,
        mut info: DownloadInfo,
        part: &Path,
        max: u64,
        progress: Progress<'_>,
    ) -> anyhow::Result<DownloadInfo> {
        let path = req.path.as_str();
        if info.size > max {
            bail!(
                "{path} is {} bytes, over the {max}-byte transfer limit (--max-size)",
                info.size
            );
        }
        let mut hashed: Option<blake3::Hasher> = None;
        let mut have = 0;
        let mut stalled = 0;
        loop {
            progress(have, info.size);
            let before = have;
            let writer = PartFile::open(part, have, hashed.take())
                .with_context(|| format!("cannot write {}", part.display()))?;
            let (tx, handle) = spawn_writer(writer);
            let fetched = self.fetch_into(&info, have, &tx).await;
            drop(tx);
            let (hasher, len) = handle
                .await
                .map_err(|e| anyhow!("writer thread: {e}"))?
                .with_context(|| format!("cannot write {}", part.display()))?;
            hashed = Some(hasher);
            have = len;
            match fetched {
                Ok(()) if have == info.size => break,
                // A renewed preview token: fetch again from what we have.
                Ok(()) | Err(CallError::Reminted) => {}
                Err(CallError::Status(s, _, _)) if s == reqwest::StatusCode::NOT_FOUND => {
                    // The relay restarted and forgot the download: start it again and go on
                    // from what we have; the digest at the end covers both parts.
                    let again = self.start_download(req).await?;
                    if again.size != info.size || again.kind != info.kind {
                        bail!("{path} changed while it was being downloaded; try again");
                    }
                    info = again;
                }
                Err(CallError::Status(s, m, _)) => {
                    bail!(
                        "the box stopped sending {path}: {}",
                        super::refusal::refusal(s, &m)
                    )
                }
                Err(e @ CallError::Answer(_)) => bail!("the box stopped sending {path}: {e}"),
                Err(CallError::Network(e)) => {
                    tracing::info!(error = %e, have, "download interrupted; resuming");
                    tokio::time::sleep(backoff(stalled)).await;
                }
            }
            if have > info.size {
                bail!(
                    "the box sent more than the {} bytes it announced",
                    info.size
                );
            }
            if have > before {
                stalled = 0;
            } else {
                stalled += 1;
                if stalled >= MAX_STALLED_ATTEMPTS {
                    bail!(
                        "the download makes no progress (stuck at byte {have} of {})",
                        info.size
                    );
                }
            }
        }
        progress(info.size, info.size);
        let theirs: DownloadDigest = self
            .json(
                self.http
                    .get(self.url(&format!("/v1/downloads/{}/digest", info.id))),
                SMALL_CAP,
            )
            .await
            .map_err(|e| anyhow!("the box cannot vouch for {path}: {e}"))?;
        let ours = hashed
            .map(|h| h.finalize().to_hex().to_string())
            .unwrap_or_default();
        if theirs.blake3 != ours || theirs.size != info.size {
            bail!(
                "{path} arrived corrupted (blake3 {ours}, the box has {}); nothing was written",
                crate::text::shown(&crate::text::capped(&theirs.blake3, 80))
            );
        }
        Ok(info)
    }

    /// One `GET` from `from`, each chunk sent to the writer; stops at the first error.
    async fn fetch_into(
        &self,
        info: &DownloadInfo,
        from: u64,
        tx: &tokio::sync::mpsc::Sender<Bytes>,
    ) -> Result<(), CallError> {
        let mut request = self.request(reqwest::Method::GET, &format!("/v1/downloads/{}", info.id));
        if from > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={from}-"));
        }
        let response = self
            .check(request.send().await.map_err(CallError::Network)?)
            .await?;
        let mut left = info.size - from;
        let mut stream = response.bytes_stream();
        // Nothing past the announced size is read: a box that sends more (or without end)
        // is cut off there, and the digest says whether what came is what it announced.
        while left > 0 {
            let Some(chunk) = stream.next().await else {
                break;
            };
            let chunk = chunk.map_err(CallError::Network)?;
            let take = chunk.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            left -= take as u64;
            if tx.send(chunk.slice(..take)).await.is_err() {
                break;
            }
        }
        Ok(())
    }

    /// Tells the box it can drop download `id`.
    pub async fn finish_download(&self, id: &str) {
        let _ = self
            .request(reqwest::Method::DELETE, &format!("/v1/downloads/{id}"))
            .send()
            .await;
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(attempt.min(5)))
}

/// Streams `file` from `offset` on a blocking thread, hashing every byte not hashed yet
/// (a resumed range re-reads bytes the hasher already has).
fn hashing_reader(
    file: &Path,
    offset: u64,
    size: u64,
    hash: &Arc<Mutex<blake3::Hasher>>,
) -> impl futures_util::Stream<Item = std::io::Result<Bytes>> + Send + 'static {
    use std::io::{Read, Seek, SeekFrom};
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<Bytes>>(8);
    let (path, hash): (PathBuf, _) = (file.to_path_buf(), Arc::clone(hash));
    tokio::task::spawn_blocking(move || {
        let read = || -> std::io::Result<()> {
            let mut f = std::fs::File::open(&path)?;
            f.seek(SeekFrom::Start(offset))?;
            let mut at = offset;
            while at < size {
                let want = usize::try_from((size - at).min(CHUNK as u64)).unwrap_or(CHUNK);
                let mut buf = vec![0u8; want];
                f.read_exact(&mut buf)?;
                if let Ok(mut h) = hash.lock() {
                    let done = h.count();
                    if done >= at && done < at + want as u64 {
                        h.update(&buf[usize::try_from(done - at).unwrap_or(0)..]);
                    }
                }
                at += want as u64;
                if tx.blocking_send(Ok(Bytes::from(buf))).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        };
        if let Err(e) = read() {
            let _ = tx.blocking_send(Err(e));
        }
    });
    futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    })
}

/// What the transfer kind and mode of a download mean for landing.
pub fn is_file(info: &DownloadInfo) -> bool {
    info.kind == TransferKind::File
}
