//! Daytona's object storage for snapshot build contexts (Part B4): `GET
//! /object-storage/push-access` hands out short-lived S3 credentials; each context goes to
//! `<organizationId>/<hash>/context.tar` in the bucket (skipped when already there), signed
//! with AWS Signature V4, and the snapshot's `buildInfo.contextHashes` names it.
//!
//! Daytona hands out `storageUrl` as it is configured: often without a scheme (its own
//! spec's example is `storage.example.com`), which means HTTPS; the signing region is the
//! one in an AWS endpoint's host (`s3.<region>.amazonaws.com`), else `us-east-1`, which
//! S3-compatible stores (MinIO) accept. A throttled request (`429`, S3's `503`) is tried
//! again after its `Retry-After`.

use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::client::Daytona;
use super::error::DaytonaError;

/// `StorageAccessDto`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StorageAccess {
    /// S3 access key.
    pub access_key: String,
    /// S3 secret.
    pub secret: String,
    /// STS session token.
    pub session_token: String,
    /// The S3 endpoint.
    pub storage_url: String,
    /// The organization (the key prefix).
    pub organization_id: String,
    /// The bucket.
    pub bucket: String,
}

/// The region S3-compatible stores accept when none is configured.
const DEFAULT_REGION: &str = "us-east-1";

/// Where the build contexts go: from `storageUrl`, with or without a scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// `https` (also when the URL has no scheme) or `http`.
    pub scheme: String,
    /// `host[:port]`, as signed.
    pub host: String,
    /// A path before the bucket (`""` for none).
    pub prefix: String,
    /// The region requests are signed for.
    pub region: String,
}

impl Endpoint {
    /// Reads `storage_url`: a URL, or a schemeless `host[:port][/path]` (HTTPS).
    pub fn parse(storage_url: &str) -> Result<Self, DaytonaError> {
        let trimmed = storage_url.trim();
        let full = if trimmed.contains("://") {
            trimmed.to_string()
        } else {
            format!("https://{trimmed}")
        };
        let bad = || {
            DaytonaError::Invalid(format!(
                "Daytona gave a storage URL that is not one: `{storage_url}`"
            ))
        };
        let url = reqwest::Url::parse(&full).map_err(|_| bad())?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(bad());
        }
        let name = url.host_str().filter(|h| !h.is_empty()).ok_or_else(bad)?;
        Ok(Self {
            scheme: url.scheme().to_string(),
            host: url
                .port()
                .map_or_else(|| name.to_string(), |p| format!("{name}:{p}")),
            prefix: url.path().trim_end_matches('/').to_string(),
            region: region_of(name),
        })
    }
}

/// The AWS region named in an S3 endpoint's host (`s3.eu-west-1.amazonaws.com`,
/// `s3-eu-west-1.amazonaws.com`, `bucket.s3.eu-west-1.amazonaws.com`,
/// `s3.dualstack.eu-west-1.amazonaws.com`); [`DEFAULT_REGION`] for any other host.
pub fn region_of(host: &str) -> String {
    let host = host.to_ascii_lowercase();
    let Some(rest) = host
        .strip_suffix(".amazonaws.com")
        .or_else(|| host.strip_suffix(".amazonaws.com.cn"))
    else {
        return DEFAULT_REGION.into();
    };
    let labels: Vec<&str> = rest.split('.').collect();
    let looks_like_region = |l: &str| {
        l.split('-').count() >= 3
            && l.split('-')
                .next_back()
                .is_some_and(|n| n.parse::<u32>().is_ok())
    };
    for (i, label) in labels.iter().enumerate() {
        if let Some(r) = label.strip_prefix("s3-").filter(|r| looks_like_region(r)) {
            return r.to_string();
        }
        if *label == "s3" || label.starts_with("s3-") {
            if let Some(r) = labels[i + 1..].iter().find(|l| looks_like_region(l)) {
                return (*r).to_string();
            }
        }
    }
    DEFAULT_REGION.into()
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC takes keys of any length: `new_from_slice` cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// `(YYYYMMDD'T'HHMMSS'Z', YYYYMMDD)` for `secs` since the epoch (UTC).
fn amz_dates(secs: u64) -> (String, String) {
    let days = secs / 86_400;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    let time = format!(
        "{date}T{:02}{:02}{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    );
    (time, date)
}

/// The headers of a SigV4-signed S3 request for `method` on `path` (`/bucket/key`) of
/// `host` in `region`, with a body whose SHA-256 is `payload_hash`.
pub fn sign(
    access: &StorageAccess,
    region: &str,
    method: &str,
    host: &str,
    path: &str,
    payload_hash: &str,
    now_secs: u64,
) -> Vec<(String, String)> {
    let (amz_date, date) = amz_dates(now_secs);
    let signed_headers = "host;x-amz-content-sha256;x-amz-date;x-amz-security-token";
    let canonical = format!(
        "{method}\n{path}\n\nhost:{host}\nx-amz-content-sha256:{payload_hash}\nx-amz-date:{amz_date}\nx-amz-security-token:{}\n\n{signed_headers}\n{payload_hash}",
        access.session_token
    );
    let scope = format!("{date}/{region}/s3/aws4_request");
    let to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
        hex(&Sha256::digest(canonical.as_bytes()))
    );
    let mut key = hmac(format!("AWS4{}", access.secret).as_bytes(), date.as_bytes());
    for part in [region, "s3", "aws4_request"] {
        key = hmac(&key, part.as_bytes());
    }
    let signature = hex(&hmac(&key, to_sign.as_bytes()));
    vec![
        (
            "authorization".into(),
            format!(
                "AWS4-HMAC-SHA256 Credential={}/{scope}, SignedHeaders={signed_headers}, Signature={signature}",
                access.access_key
            ),
        ),
        ("x-amz-content-sha256".into(), payload_hash.to_string()),
        ("x-amz-date".into(), amz_date),
        ("x-amz-security-token".into(), access.session_token.clone()),
    ]
}

/// Percent-encodes a key path, keeping `/`.
fn encode_path(path: &str) -> String {
    path.split('/')
        .map(super::client::url_encode)
        .collect::<Vec<_>>()
        .join("/")
}

impl Daytona {
    /// Short-lived credentials for the organization's build-context storage.
    pub async fn push_access(&self) -> Result<StorageAccess, DaytonaError> {
        self.call(true, &|| {
            self.request(reqwest::Method::GET, "/object-storage/push-access")
        })
        .await
    }

    /// Puts build context `tar` into object storage unless it is there already; returns
    /// its hash for `buildInfo.contextHashes`.
    pub async fn push_context(&self, tar: &[u8]) -> Result<String, DaytonaError> {
        let hash = blake3::hash(tar).to_hex()[..32].to_string();
        let access = self.push_access().await?;
        let Endpoint {
            scheme,
            host,
            prefix,
            region,
        } = Endpoint::parse(&access.storage_url)?;
        let base = format!("{scheme}://{host}");
        // The build context, signed with the organization's storage credentials.
        self.handed_url(&base, "the object storage URL Daytona gave")?;
        let path = encode_path(&format!(
            "{prefix}/{}/{}/{hash}/context.tar",
            access.bucket, access.organization_id
        ));
        let unreachable = |e: reqwest::Error| DaytonaError::network(&base, &e);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let empty = hex(&Sha256::digest(b""));
        let head = || {
            let mut head = self.http.head(format!("{scheme}://{host}{path}"));
            for (k, v) in sign(&access, &region, "HEAD", &host, &path, &empty, now) {
                head = head.header(k, v);
            }
            head
        };
        let exists = self
            .storage_send(&head)
            .await
            .map_err(unreachable)?
            .status()
            .is_success();
        if exists {
            return Ok(hash);
        }
        let payload = hex(&Sha256::digest(tar));
        let put = || {
            let mut put = self
                .http
                .put(format!("{scheme}://{host}{path}"))
                .body(tar.to_vec());
            for (k, v) in sign(&access, &region, "PUT", &host, &path, &payload, now) {
                put = put.header(k, v);
            }
            put
        };
        let answer = self.storage_send(&put).await.map_err(unreachable)?;
        if !answer.status().is_success() {
            let status = answer.status().as_u16();
            let text = answer.text().await.unwrap_or_default();
            return Err(DaytonaError::Server {
                status,
                message: format!("object storage refused the build context: {}", text.trim()),
            });
        }
        Ok(hash)
    }
}

impl Daytona {
    /// Sends a request to object storage; a `429` (or S3's `503 Slow Down`) is tried again
    /// after its `Retry-After` (at least the client's backoff), as often as the client
    /// retries, unless that wait is longer than a call should take. The last answer is
    /// returned as it is.
    async fn storage_send(
        &self,
        build: &(dyn Fn() -> reqwest::RequestBuilder + Sync),
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut attempt = 0;
        loop {
            let answer = build().send().await?;
            let status = answer.status().as_u16();
            if !matches!(status, 429 | 503) || attempt >= self.backoff.len() {
                return Ok(answer);
            }
            let after = super::client::retry_after(answer.headers());
            if after.is_some_and(|a| a > self.max_retry_after) {
                return Ok(answer);
            }
            let wait = after.unwrap_or_default().max(self.backoff[attempt]);
            tracing::info!(
                status,
                attempt = attempt + 1,
                "object storage asks to slow down; retrying"
            );
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_utc_calendar_dates() {
        assert_eq!(amz_dates(0), ("19700101T000000Z".into(), "19700101".into()));
        // 2026-11-29 15:34:16 UTC
        assert_eq!(
            amz_dates(1_795_966_456),
            ("20261129T153416Z".into(), "20261129".into())
        );
        assert_eq!(amz_dates(951_782_400).1, "20000229");
    }

    #[test]
    fn signatures_follow_sigv4() {
        // AWS's documented signing-key example (the "GET object" walkthrough) uses these
        // inputs; here the shape and determinism are checked.
        let access = StorageAccess {
            access_key: "AKIDEXAMPLE".into(),
            secret: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY".into(),
            session_token: "tok".into(),
            storage_url: "http://s3.example".into(),
            organization_id: "org".into(),
            bucket: "b".into(),
        };
        let a = sign(
            &access,
            "us-east-1",
            "PUT",
            "s3.example",
            "/b/org/h/context.tar",
            "abc",
            0,
        );
        let b = sign(
            &access,
            "us-east-1",
            "PUT",
            "s3.example",
            "/b/org/h/context.tar",
            "abc",
            0,
        );
        assert_eq!(a, b);
        let auth = &a[0].1;
        assert!(auth.starts_with("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/19700101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date;x-amz-security-token, Signature="), "{auth}");
        assert_eq!(auth.rsplit('=').next().map(str::len), Some(64));
        let other = sign(
            &access,
            "us-east-1",
            "PUT",
            "s3.example",
            "/b/org/h/other.tar",
            "abc",
            0,
        );
        assert_ne!(a[0], other[0]);
        let frankfurt = sign(
            &access,
            "eu-central-1",
            "PUT",
            "s3.example",
            "/b/org/h/context.tar",
            "abc",
            0,
        );
        assert!(
            frankfurt[0]
                .1
                .contains("/19700101/eu-central-1/s3/aws4_request"),
            "{}",
            frankfurt[0].1
        );
    }

    #[test]
    fn the_region_comes_from_the_storage_host() {
        for (host, region) in [
            ("s3.eu-central-1.amazonaws.com", "eu-central-1"),
            ("s3-us-west-2.amazonaws.com", "us-west-2"),
            (
                "daytona-builds.s3.ap-southeast-1.amazonaws.com",
                "ap-southeast-1",
            ),
            ("s3.dualstack.eu-west-3.amazonaws.com", "eu-west-3"),
            ("s3.amazonaws.com", "us-east-1"),
            ("minio.internal", "us-east-1"),
            ("127.0.0.1", "us-east-1"),
        ] {
            assert_eq!(region_of(host), region, "{host}");
        }
    }

    #[test]
    fn a_storage_url_without_a_scheme_is_https() {
        let e = Endpoint::parse("s3.eu-central-1.amazonaws.com").expect("schemeless");
        assert_eq!(
            e,
            Endpoint {
                scheme: "https".into(),
                host: "s3.eu-central-1.amazonaws.com".into(),
                prefix: String::new(),
                region: "eu-central-1".into(),
            }
        );
        let e = Endpoint::parse("127.0.0.1:9000/_s3/").expect("with a port and a path");
        assert_eq!(
            (e.scheme.as_str(), e.host.as_str(), e.prefix.as_str()),
            ("https", "127.0.0.1:9000", "/_s3")
        );
        let e = Endpoint::parse("http://minio:9000").expect("plain");
        assert_eq!((e.scheme.as_str(), e.host.as_str()), ("http", "minio:9000"));
        for bad in ["", "ftp://x", "https://"] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }
}
