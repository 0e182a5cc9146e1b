//! The URL of an `http:` readiness probe, taken apart. The config schema parses it to
//! refuse a bad URL at load time, and the supervisor's probe parses it to connect; it sits
//! below both so that neither imports the other.

/// Where an `http:` probe connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpTarget {
    /// Host name or address.
    pub host: String,
    /// Port (80 by default).
    pub port: u16,
    /// Path and query, at least `/`.
    pub path: String,
}

impl HttpTarget {
    /// Parses `http://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, String> {
        if url.starts_with("https://") {
            return Err(
                "https probes are not supported: probe the plain http port, or use `port:`".into(),
            );
        }
        let Some(rest) = url.strip_prefix("http://") else {
            return Err(format!("`{url}` is not an http:// URL"));
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let path = if path.starts_with('?') {
            format!("/{path}")
        } else {
            path.to_string()
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(format!("`{url}` has no usable host"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || h.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("`{url}` has an invalid port"))?;
                (
                    h.trim_start_matches('[').trim_end_matches(']').to_string(),
                    port,
                )
            }
            _ => (authority.to_string(), 80),
        };
        if host.is_empty() || path.contains(['\r', '\n', ' ']) {
            return Err(format!("`{url}` is not a valid URL"));
        }
        Ok(Self { host, port, path })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_targets_parse() {
        let t = HttpTarget::parse("http://localhost:3000/health?x=1").expect("parse");
        assert_eq!(
            (t.host.as_str(), t.port, t.path.as_str()),
            ("localhost", 3000, "/health?x=1")
        );
        let t = HttpTarget::parse("http://127.0.0.1").expect("parse");
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = HttpTarget::parse("http://[::1]:8080/").expect("parse");
        assert_eq!((t.host.as_str(), t.port), ("::1", 8080));
        assert!(HttpTarget::parse("https://x")
            .expect_err("https")
            .contains("not supported"));
        assert!(HttpTarget::parse("ftp://x").is_err());
        assert!(HttpTarget::parse("http://x:99999/").is_err());
        assert!(HttpTarget::parse("http://x/a b").is_err());
    }
}
