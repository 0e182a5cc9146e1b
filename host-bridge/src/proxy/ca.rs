//! The proxy's local CA: a P-256 key made once per `AGENTBOX_HOME` (`proxy/ca.key`, 0600)
//! and its self-signed certificate (`proxy/ca.pem`, what `agentbox proxy trust` installs).
//!
//! The certificate's parameters follow from the key alone (its name carries the key's
//! fingerprint), so the issuer of every leaf is rebuilt from the key file and always
//! matches the certificate the browser trusts; two homes never make CAs of the same name.
//! Its name constraints permit `localhost` and the names under it only.

use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, NameConstraints,
};

/// The start of the CA's name (the rest is the key's fingerprint).
pub const CA_NAME: &str = "agentbox local CA";

/// What can go wrong with the CA's files or its certificates.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file of the CA could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The key file is not a key rcgen can use, or signing failed.
    #[error("the proxy's CA ({path}): {source}; remove {path} to make a new CA (then run `agentbox proxy trust` again)")]
    Key {
        /// The key file.
        path: PathBuf,
        /// Why.
        source: rcgen::Error,
    },
    /// A leaf could not be made.
    #[error("cannot make a certificate for `{name}`: {source}")]
    Leaf {
        /// The host name.
        name: String,
        /// Why.
        source: rcgen::Error,
    },
}

/// The CA's files in `home` (`AGENTBOX_HOME`): `(certificate, key)`.
pub fn paths(home: &Path) -> (PathBuf, PathBuf) {
    let dir = home.join("proxy");
    (dir.join("ca.pem"), dir.join("ca.key"))
}

/// The local CA: its key and certificate.
pub struct LocalCa {
    key: KeyPair,
    /// The CA's common name (`agentbox local CA <fingerprint>`).
    pub name: String,
    /// The CA certificate, PEM.
    pub cert_pem: String,
    /// The CA certificate, DER (the end of every chain served).
    pub cert_der: Vec<u8>,
}

/// The CA's common name for `key`.
fn ca_name(key: &KeyPair) -> String {
    let fingerprint = blake3::hash(key.public_key_raw())
        .as_bytes()
        .iter()
        .take(6)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    format!("{CA_NAME} {fingerprint}")
}

/// The CA certificate's parameters for `key`.
fn ca_params(key: &KeyPair) -> CertificateParams {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, ca_name(key));
    params
        .distinguished_name
        .push(DnType::OrganizationName, "agentbox");
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    // Valid only for `localhost` and names under it: trusting this CA can never let its
    // key vouch for another site, even if the key leaked.
    params.name_constraints = Some(NameConstraints {
        permitted_subtrees: vec![GeneralSubtree::DnsName("localhost".into())],
        excluded_subtrees: Vec::new(),
    });
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl LocalCa {
    /// The CA of `home`, made (key 0600, certificate 0644) on first use.
    pub fn load_or_create(home: &Path) -> Result<Self, CaError> {
        let (cert_path, key_path) = paths(home);
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CaError::Io { path, source }
        };
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => KeyPair::from_pem(&pem).map_err(|source| CaError::Key {
                path: key_path.clone(),
                source,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = KeyPair::generate().map_err(|source| CaError::Key {
                    path: key_path.clone(),
                    source,
                })?;
                let dir = key_path.parent().unwrap_or(home);
                std::fs::create_dir_all(dir).map_err(io(dir))?;
                // Written under another name and renamed: a reader sees no key or all of it.
                let partial = key_path.with_extension("key.partial");
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(&partial)
                    .map_err(io(&partial))?;
                file.write_all(key.serialize_pem().as_bytes())
                    .and_then(|()| file.sync_all())
                    .map_err(io(&partial))?;
                std::fs::rename(&partial, &key_path).map_err(io(&key_path))?;
                key
            }
            Err(e) => return Err(io(&key_path)(e)),
        };
        let cert = ca_params(&key)
            .self_signed(&key)
            .map_err(|source| CaError::Key {
                path: key_path.clone(),
                source,
            })?;
        let cert_pem = cert.pem();
        // The certificate is rewritten only when it differs (the same key makes the same
        // name; its bytes change with each signature).
        let current = std::fs::read_to_string(&cert_path).ok();
        let same_key = current
            .as_deref()
            .and_then(rustls_pki_pem)
            .is_some_and(|der| der_has_key(&der, &key));
        if !same_key {
            std::fs::write(&cert_path, &cert_pem).map_err(io(&cert_path))?;
        }
        let cert_pem = if same_key {
            current.unwrap_or(cert_pem)
        } else {
            cert_pem
        };
        let cert_der = rustls_pki_pem(&cert_pem).unwrap_or_else(|| cert.der().to_vec());
        Ok(Self {
            name: ca_name(&key),
            key,
            cert_pem,
            cert_der,
        })
    }

    /// A server certificate for `names` (DNS names), valid from yesterday for 90 days:
    /// the chain (leaf, CA) and the leaf's PKCS#8 key, DER.
    pub fn leaf(&self, names: &[String]) -> Result<(Vec<Vec<u8>>, Vec<u8>), CaError> {
        let first = names.first().cloned().unwrap_or_default();
        let err = |source| CaError::Leaf {
            name: first.clone(),
            source,
        };
        let mut params = CertificateParams::new(names.to_vec()).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, &first);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = std::time::SystemTime::now();
        params.not_before = (now - std::time::Duration::from_secs(86_400)).into();
        params.not_after = (now + std::time::Duration::from_secs(90 * 86_400)).into();
        let key = KeyPair::generate().map_err(err)?;
        let issuer = Issuer::new(ca_params(&self.key), &self.key);
        let leaf = params.signed_by(&key, &issuer).map_err(err)?;
        Ok((
            vec![leaf.der().to_vec(), self.cert_der.clone()],
            key.serialize_der(),
        ))
    }
}

/// The DER of the first certificate in `pem`.
fn rustls_pki_pem(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.to_vec())
}

/// Whether certificate `der` carries `key`'s public key (its bytes appear in it).
fn der_has_key(der: &[u8], key: &KeyPair) -> bool {
    let raw = key.public_key_raw();
    !raw.is_empty() && der.windows(raw.len()).any(|w| w == raw)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ca_is_made_once_and_its_key_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().expect("tempdir");
        let first = LocalCa::load_or_create(home.path()).expect("ca");
        let (cert, key) = paths(home.path());
        let mode = std::fs::metadata(&key).expect("key").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = LocalCa::load_or_create(home.path()).expect("ca again");
        assert_eq!(first.cert_pem, again.cert_pem);
        assert_eq!(std::fs::read_to_string(cert).expect("pem"), first.cert_pem);
        let (chain, _) = again.leaf(&["a.b.localhost".into()]).expect("leaf");
        assert_eq!(chain.len(), 2);
        assert_eq!(chain[1], first.cert_der);
    }

    /// Whether a leaf for `name` signed by `ca` verifies for `name` with `ca` as the root.
    fn verifies(ca: &LocalCa, name: &str) -> bool {
        use rustls::client::danger::ServerCertVerifier;
        use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from(ca.cert_der.clone()))
            .expect("root");
        let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let verifier =
            rustls::client::WebPkiServerVerifier::builder_with_provider(roots.into(), provider)
                .build()
                .expect("verifier");
        let (chain, _) = ca.leaf(&[name.to_string()]).expect("leaf");
        verifier
            .verify_server_cert(
                &CertificateDer::from(chain[0].clone()),
                &[],
                &ServerName::try_from(name.to_string()).expect("name"),
                &[],
                UnixTime::now(),
            )
            .is_ok()
    }

    #[test]
    fn the_ca_vouches_for_localhost_names_only() {
        let home = tempfile::tempdir().expect("tempdir");
        let ca = LocalCa::load_or_create(home.path()).expect("ca");
        assert!(verifies(&ca, "app.b1.localhost"));
        // Even a leaf it signed for another name fails: the CA's name constraints.
        assert!(!verifies(&ca, "example.com"));
        assert!(!verifies(&ca, "localhost.example.com"));
    }
}
