//! TLS for everything the host says over the network: Daytona's API, its object storage,
//! and the relays behind preview URLs (the bridge's long-poll, transfers, attach over
//! `wss://` and its HTTP fallback). One rustls configuration ([`client_config`]) serves
//! reqwest ([`http_client`]) and tokio-tungstenite ([`ws_connector`]).
//!
//! Trusted roots: Mozilla's (built in, so a host without a CA store still works), the
//! platform's store, and the certificates `SSL_CERT_FILE` / `SSL_CERT_DIR` name (where
//! corporate proxies put their CA; when set they stand in for the platform's store, as
//! they do for OpenSSL). A certificate the roots do not vouch for is reported as one
//! ([`untrusted`]), not as "error sending request".
//!
//! Plain `http://` (a relay on loopback) goes through the same clients untouched.

use std::error::Error as StdError;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// What a user behind a TLS-inspecting proxy or with a private CA does about it.
pub const CA_HINT: &str = "if a proxy or private CA signs it, point SSL_CERT_FILE at its CA";

/// The roots a server's certificate must chain to: Mozilla's, and the platform's store or
/// the files `SSL_CERT_FILE` / `SSL_CERT_DIR` name.
pub fn root_store() -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let native = rustls_native_certs::load_native_certs();
    for e in &native.errors {
        tracing::warn!(error = %e, "some trusted certificates could not be read");
    }
    let (added, ignored) = roots.add_parsable_certificates(native.certs);
    tracing::debug!(added, ignored, "trusted certificates loaded");
    roots
}

/// The one TLS client configuration (built once per process: the roots are read once, and
/// every client shares its session cache, so a new connection resumes instead of doing a
/// full handshake). ALPN offers HTTP/1.1 only: WebSockets need it, and the relay's
/// long-poll and transfers are made for it.
pub fn client_config() -> Arc<rustls::ClientConfig> {
    static CONFIG: OnceLock<Arc<rustls::ClientConfig>> = OnceLock::new();
    CONFIG
        .get_or_init(|| {
            let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
            let mut config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .expect("aws-lc-rs supports TLS 1.2 and 1.3")
                .with_root_certificates(root_store())
                .with_no_client_auth();
            config.alpn_protocols = vec![b"http/1.1".to_vec()];
            Arc::new(config)
        })
        .clone()
}

/// An HTTP client on [`client_config`] (one per API client or relay: its connections are
/// kept and reused, so only the first call to a host pays for a handshake).
pub fn http_client() -> reqwest::Client {
    build(true)
}

/// [`http_client`] that never follows a redirect, for the relays behind preview URLs: a
/// preview proxy answers a missing or stale token with a redirect to its login page
/// (Daytona's `307`), which the caller must see to renew the token, not follow to an HTML
/// page it would take for the relay's answer.
pub fn preview_client() -> reqwest::Client {
    build(false)
}

/// A client on [`client_config`]; `follow` says whether it follows redirects.
fn build(follow: bool) -> reqwest::Client {
    let policy = || {
        if follow {
            reqwest::redirect::Policy::default()
        } else {
            reqwest::redirect::Policy::none()
        }
    };
    reqwest::Client::builder()
        .tls_backend_preconfigured(rustls::ClientConfig::clone(&client_config()))
        .connect_timeout(Duration::from_secs(10))
        .redirect(policy())
        .build()
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot build the TLS client; using reqwest's defaults");
            reqwest::Client::builder()
                .redirect(policy())
                .build()
                .unwrap_or_default()
        })
}

/// The WebSocket connector on [`client_config`] (`wss://`; `ws://` ignores it).
pub fn ws_connector() -> tokio_tungstenite::Connector {
    tokio_tungstenite::Connector::Rustls(client_config())
}

/// The sentence for a server certificate the roots do not vouch for, if that is what
/// `error` (or anything in its chain of causes) is: "the certificate of HOST is not
/// trusted (REASON); if a proxy or private CA signs it, point SSL_CERT_FILE at its CA".
pub fn untrusted(error: &(dyn StdError + 'static), host: &str) -> Option<String> {
    let reason = certificate_problem(error)?;
    Some(format!(
        "the certificate of {host} is not trusted ({reason}); {CA_HINT}"
    ))
}

/// [`untrusted`] for a reqwest error (the host from its URL), or the error's own words
/// with their causes.
pub fn explain(error: &reqwest::Error) -> String {
    let host = error
        .url()
        .and_then(|u| u.host_str().map(str::to_string))
        .unwrap_or_else(|| "the server".to_string());
    untrusted(error, &host).unwrap_or_else(|| with_causes(error))
}

/// `error: cause: cause…`, each cause once (reqwest's own words say only "error sending
/// request").
pub fn with_causes(error: &(dyn StdError + 'static)) -> String {
    let mut out = error.to_string();
    let mut next = error.source();
    while let Some(cause) = next {
        let words = cause.to_string();
        if !out.contains(&words) {
            out.push_str(": ");
            out.push_str(&words);
        }
        next = cause.source();
    }
    out
}

/// What is wrong with the server's certificate, if the failure is about one.
fn certificate_problem(error: &(dyn StdError + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(found) = rustls_error(e).and_then(describe) {
            return Some(found);
        }
        next = e.source();
    }
    None
}

/// A rustls error at this link of the chain: itself, or inside `io::Error`s (whose
/// `source()` skips the error they wrap; hyper's connector wraps rustls's `io::Error` in
/// another) or a tungstenite TLS error.
fn rustls_error<'a>(e: &'a (dyn StdError + 'static)) -> Option<&'a rustls::Error> {
    if let Some(r) = e.downcast_ref::<rustls::Error>() {
        return Some(r);
    }
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        let inner: &(dyn StdError + 'static) = io.get_ref()?;
        return rustls_error(inner);
    }
    if let Some(tokio_tungstenite::tungstenite::Error::Tls(
        tokio_tungstenite::tungstenite::error::TlsError::Rustls(r),
    )) = e.downcast_ref::<tokio_tungstenite::tungstenite::Error>()
    {
        return Some(r);
    }
    None
}

/// A certificate problem in words; `None` for TLS errors that are not about one.
fn describe(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(why) = e else {
        return None;
    };
    Some(match why {
        C::UnknownIssuer => "it is signed by an authority this host does not trust".into(),
        C::Expired | C::ExpiredContext { .. } => "it has expired".into(),
        C::NotValidYet | C::NotValidYetContext { .. } => "it is not valid yet".into(),
        C::NotValidForName | C::NotValidForNameContext { .. } => {
            "it was issued for another name".into()
        }
        C::Revoked => "it was revoked".into(),
        C::BadSignature => "its signature is wrong".into(),
        C::BadEncoding => "it cannot be read".into(),
        other => format!("{other:?}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_issuer_is_named_with_the_host() {
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
        );
        let said = untrusted(&io, "app.daytona.io").expect("a certificate problem");
        assert!(
            said.starts_with("the certificate of app.daytona.io is not trusted (it is signed by"),
            "{said}"
        );
        assert!(said.ends_with(CA_HINT), "{said}");
    }

    #[test]
    fn a_rustls_error_is_found_inside_nested_io_errors() {
        let rustls = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::InvalidCertificate(rustls::CertificateError::NotValidForName),
        );
        let outer = std::io::Error::other(rustls);
        let said = untrusted(&outer, "h").expect("a certificate problem");
        assert!(said.contains("(it was issued for another name)"), "{said}");
    }

    #[test]
    fn other_failures_are_not_certificate_problems() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(untrusted(&io, "h").is_none());
        let io = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            rustls::Error::HandshakeNotComplete,
        );
        assert!(untrusted(&io, "h").is_none());
    }

    #[test]
    fn the_config_offers_http1() {
        assert_eq!(client_config().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }
}
