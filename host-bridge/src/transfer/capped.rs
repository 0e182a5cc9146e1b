//! Bounded reads of what a box's relay answers. The box is untrusted: every answer the
//! host reads into memory (polls, listings, JSON replies, error bodies) stops at a cap,
//! so a relay that sends 700 MB costs the host at most the cap, never the whole answer.

/// A poll carries request metadata, never blobs.
pub const POLL_CAP: usize = 16 << 20;
/// A workspace listing or digest set.
pub const LISTING_CAP: usize = 64 << 20;
/// Any other JSON answer (upload status, download info, digests, terms).
pub const SMALL_CAP: usize = 1 << 20;
/// How much of an error body is kept (the rest is not read).
pub const ERROR_CAP: usize = 64 << 10;

/// Why a bounded read gave nothing.
#[derive(Debug)]
pub enum CappedError {
    /// The answer was larger than `cap` bytes; reading stopped there.
    TooLarge {
        /// The cap that was passed.
        cap: usize,
    },
    /// The connection failed while reading.
    Network(reqwest::Error),
    /// The body was not the JSON expected.
    Json(serde_json::Error),
}

impl std::fmt::Display for CappedError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::TooLarge { cap } => write!(
                f,
                "the box answered more than {cap} bytes, the most the host reads; the answer was refused"
            ),
            Self::Network(e) => f.write_str(&crate::tls::explain(e)),
            // serde quotes what it did not expect (a variant, a field): the box's words.
            Self::Json(e) => write!(
                f,
                "the box's answer is not what the host expects: {}",
                crate::text::shown(&e.to_string())
            ),
        }
    }
}

impl std::error::Error for CappedError {}

/// Reads `response`'s body, at most `cap` bytes: an announced length past the cap is
/// refused before anything is read, and a body that grows past it is dropped there.
pub async fn read_capped(
    mut response: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, CappedError> {
    if response.content_length().is_some_and(|n| n > cap as u64) {
        return Err(CappedError::TooLarge { cap });
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(CappedError::Network)? {
        if body.len() + chunk.len() > cap {
            return Err(CappedError::TooLarge { cap });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Reads `response`'s body (at most `cap` bytes) as JSON of type `T`.
pub async fn read_json_capped<T: serde::de::DeserializeOwned>(
    response: reqwest::Response,
    cap: usize,
) -> Result<T, CappedError> {
    let body = read_capped(response, cap).await?;
    serde_json::from_slice(&body).map_err(CappedError::Json)
}

/// The first `cap` bytes of an error body (what is past them is not read), empty if the
/// connection failed.
pub async fn read_error_body(mut response: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = cap - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    body
}
