//! The rule for plain `http://` to Daytona: refused to another machine unless login was
//! given `--insecure` (`DAYTONA_INSECURE=1`), for the API URL and for every URL Daytona's
//! answers hand back (toolbox, object storage, preview links).

/// Why `url` (what it is: "the Daytona API URL", …) must not be used: plain `http://` to
/// a host other than this machine, without `insecure`. `None` when it may be used (HTTPS,
/// loopback, or `insecure`).
pub fn plain_http_refused(url: &str, what: &str, insecure: bool) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    if parsed.scheme() != "http" || insecure {
        return None;
    }
    let host = parsed
        .host_str()
        .unwrap_or_default()
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let loopback = match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host == "localhost" || host.ends_with(".localhost"),
    };
    (!loopback).then(|| {
        format!(
            "{what} {} is plain HTTP to another machine: the API key and what the host sends the box would cross the network unencrypted; use https://, or run `agentbox daytona login --insecure` if you mean it",
            crate::text::clean_text(url, 200)
        )
    })
}
