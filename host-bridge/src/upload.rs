//! Talking to a box's relay over HTTP: uploads with their digest, errors as sentences.

use std::path::Path;

use agentbox_protocol::error::ErrorBody;

/// `PUT {bridge}/v1/seed` of the seed archive at `path`.
pub fn put_seed(
    bridge_url: &str,
    token: &str,
    path: &Path,
    blake3: &str,
    size: u64,
) -> anyhow::Result<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let file = tokio::fs::File::open(path).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(
            file,
            256 * 1024,
        ));
        let response = reqwest::Client::new()
            .put(format!("{bridge_url}/v1/seed"))
            .bearer_auth(token)
            .header("x-agentbox-blake3", blake3)
            .header(reqwest::header::CONTENT_LENGTH, size)
            .body(body)
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("cannot reach the box relay at {bridge_url}: {e}"))?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if status.is_success() {
            Ok(serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null))
        } else {
            let message = serde_json::from_slice::<ErrorBody>(&bytes).map_or_else(
                |_| String::from_utf8_lossy(&bytes).into_owned(),
                |b| b.error.message,
            );
            anyhow::bail!("the box refused the seed ({status}): {message}")
        }
    })
}
