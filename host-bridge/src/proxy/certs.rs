//! Leaf certificates minted by SNI: a client asking for `app.b1.localhost` gets a leaf for
//! `b1.localhost` and `*.b1.localhost` signed by the local CA, made on first use and kept
//! for the daemon's life. A name that is not an agentbox address gets no certificate (the
//! handshake fails), so the proxy never signs for anything else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::ca::LocalCa;
use super::routing::parse_host;

/// The certificate of each box, by box name, made from [`LocalCa`] on demand.
pub struct SniCerts {
    ca: LocalCa,
    minted: Mutex<HashMap<String, Arc<CertifiedKey>>>,
}

impl std::fmt::Debug for SniCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniCerts").finish_non_exhaustive()
    }
}

impl SniCerts {
    /// Certificates signed by `ca`.
    pub fn new(ca: LocalCa) -> Self {
        Self {
            ca,
            minted: Mutex::default(),
        }
    }

    /// The certificate for SNI name `sni` (minted on first use), `None` when the name is
    /// not an agentbox address or minting failed (logged).
    pub fn for_name(&self, sni: &str) -> Option<Arc<CertifiedKey>> {
        let route = parse_host(sni).ok()?;
        let box_name = route.box_name;
        if let Some(c) = self.minted.lock().ok()?.get(&box_name) {
            return Some(c.clone());
        }
        let names = vec![
            format!("{box_name}.localhost"),
            format!("*.{box_name}.localhost"),
        ];
        let (chain, key) = match self.ca.leaf(&names) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::warn!(error = %e, "cannot mint a certificate");
                return None;
            }
        };
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key));
        let signer = match rustls::crypto::aws_lc_rs::sign::any_supported_type(&key) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot use a minted key");
                return None;
            }
        };
        let chain = chain.into_iter().map(CertificateDer::from).collect();
        let certified = Arc::new(CertifiedKey::new(chain, signer));
        if let Ok(mut m) = self.minted.lock() {
            m.insert(box_name, certified.clone());
        }
        Some(certified)
    }
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.for_name(hello.server_name()?)
    }
}

/// The server configuration: certificates by SNI, ALPN `h2` then `http/1.1`.
pub fn server_config(certs: Arc<SniCerts>) -> Arc<rustls::ServerConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("aws-lc-rs supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_agentbox_names_get_a_certificate_and_each_box_one() {
        let home = tempfile::tempdir().expect("tempdir");
        let certs = SniCerts::new(LocalCa::load_or_create(home.path()).expect("ca"));
        assert!(certs.for_name("example.com").is_none());
        assert!(certs.for_name("localhost").is_none());
        let a = certs.for_name("app.b1.localhost").expect("leaf");
        let b = certs.for_name("b1.localhost").expect("leaf");
        assert!(Arc::ptr_eq(&a, &b));
        let c = certs.for_name("b2.localhost").expect("leaf");
        assert!(!Arc::ptr_eq(&a, &c));
    }
}
