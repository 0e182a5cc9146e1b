//! The certificates `daytona-fake` serves HTTPS with, and starting it for a test.
//!
//! The fake is its own CA: [`FakeCa`] (a P-256 key and a self-signed CA certificate named
//! [`CA_NAME`] and the key's fingerprint, so the same key always makes a CA that verifies
//! the same leaves, and two keys never make CAs of the same name) signs a leaf for `127.0.0.1`, `localhost` and `*.localhost` ([`FakeCa::leaf`]).
//! A test process makes one CA ([`shared_ca`]), trusts it through `SSL_CERT_FILE` (the way
//! a user trusts a corporate proxy's CA), and hands its key to every fake it starts
//! (`--ca-key`), so in-process clients and spawned `agentbox` processes alike trust them all.
//!
//! Every fake a test starts checks each call against Daytona's API spec (the fake's
//! `contract` module) and writes what broke it to a file of its [`DaytonaFake`]: dropping
//! the fake fails the test if there is anything in it, so every Daytona test is also the
//! contract test of the requests it made and the answers it got.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// The start of the name of every fake CA.
pub const CA_NAME: &str = "agentbox daytona-fake CA";

/// A CA: its key and certificate.
pub struct FakeCa {
    key: KeyPair,
    /// The CA certificate, PEM.
    pub cert_pem: String,
}

/// The CA certificate's parameters for `key`: all but the key itself follow from it.
fn ca_params(key: &KeyPair) -> CertificateParams {
    use std::fmt::Write;
    let fingerprint = key
        .public_key_raw()
        .iter()
        .rev()
        .take(8)
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, format!("{CA_NAME} {fingerprint}"));
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

impl FakeCa {
    /// A new CA with a new key.
    pub fn generate() -> Result<Self, rcgen::Error> {
        Self::from_key(KeyPair::generate()?)
    }

    /// The CA of `key_pem` (PKCS#8 PEM, as [`FakeCa::key_pem`] writes it).
    pub fn from_key_pem(key_pem: &str) -> Result<Self, rcgen::Error> {
        Self::from_key(KeyPair::from_pem(key_pem)?)
    }

    fn from_key(key: KeyPair) -> Result<Self, rcgen::Error> {
        let cert_pem = ca_params(&key).self_signed(&key)?.pem();
        Ok(Self { key, cert_pem })
    }

    /// The CA's key, PEM.
    pub fn key_pem(&self) -> String {
        self.key.serialize_pem()
    }

    /// A server certificate for `127.0.0.1`, `localhost` and `*.localhost` (the fake's
    /// API, object storage, toolbox and preview URLs are all on `127.0.0.1`): the chain
    /// (leaf, CA) in DER and the leaf's PKCS#8 key in DER.
    pub fn leaf(&self) -> Result<(Vec<Vec<u8>>, Vec<u8>), rcgen::Error> {
        let mut params = CertificateParams::new(vec!["localhost".into(), "*.localhost".into()])?;
        params
            .subject_alt_names
            .push(SanType::IpAddress(std::net::Ipv4Addr::LOCALHOST.into()));
        params
            .distinguished_name
            .push(DnType::CommonName, "daytona-fake");
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate()?;
        let issuer = Issuer::new(ca_params(&self.key), &self.key);
        let leaf = params.signed_by(&key, &issuer)?;
        let ca = ca_params(&self.key).self_signed(&self.key)?;
        Ok((
            vec![leaf.der().to_vec(), ca.der().to_vec()],
            key.serialize_der(),
        ))
    }
}

/// The tests' CA, trusted from the first call on: `SSL_CERT_FILE` (and curl's
/// `CURL_CA_BUNDLE`) name it in this process's environment, which every process it starts
/// inherits.
///
/// One CA serves every test process of a target directory: it lives in
/// `<target>/tmp/daytona-fake-ca/` (`ca.pem`, `ca.key`), made once and then reused, so test
/// runs leave nothing behind in `/tmp` (a CA per process, kept for ever because a static is
/// never dropped, piled up by the hundred). Two processes making it at once each write a
/// whole directory and rename it into place; the loser uses the winner's.
pub fn shared_ca() -> &'static SharedCa {
    static CA: OnceLock<SharedCa> = OnceLock::new();
    CA.get_or_init(|| {
        let dir = ca_home();
        let cert = dir.join("ca.pem");
        let key = dir.join("ca.key");
        if !is_whole_ca(&cert, &key) {
            let parent = dir.parent().unwrap_or(&dir).to_path_buf();
            std::fs::create_dir_all(&parent).expect("mkdir for the CA");
            let fresh = tempfile::Builder::new()
                .prefix(".daytona-fake-ca")
                .tempdir_in(&parent)
                .expect("tempdir");
            let ca = FakeCa::generate().expect("a CA");
            std::fs::write(fresh.path().join("ca.pem"), &ca.cert_pem).expect("write ca.pem");
            std::fs::write(fresh.path().join("ca.key"), ca.key_pem()).expect("write ca.key");
            // Taken only if no other process got there first (a rename onto a directory
            // with files in it fails); the TempDir removes the loser's copy.
            let _ = std::fs::rename(fresh.path(), &dir);
            assert!(is_whole_ca(&cert, &key), "no CA in {}", dir.display());
        }
        // Once, before any client of this process reads it; every test that starts a fake
        // sets the same value.
        std::env::set_var("SSL_CERT_FILE", &cert);
        std::env::set_var("CURL_CA_BUNDLE", &cert);
        SharedCa { cert, key }
    })
}

/// `<target>/tmp/daytona-fake-ca`, the target directory found from this test binary's
/// place (`<target>/<profile>/deps/<test>`); the system's temporary directory otherwise.
fn ca_home() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("tmp")))
        .filter(|tmp| {
            tmp.parent()
                .is_some_and(|t| t.join("CACHEDIR.TAG").exists())
        })
        .unwrap_or_else(std::env::temp_dir)
        .join("daytona-fake-ca")
}

/// Whether `cert` and `key` are a CA and its key as [`shared_ca`] writes them.
fn is_whole_ca(cert: &Path, key: &Path) -> bool {
    let (Ok(cert_pem), Ok(key_pem)) = (std::fs::read_to_string(cert), std::fs::read_to_string(key))
    else {
        return false;
    };
    // The certificate is not compared byte for byte: its signature differs each time it is
    // made from the key. Its key and name follow from the key, which is what trust needs.
    cert_pem.contains("-----BEGIN CERTIFICATE-----") && FakeCa::from_key_pem(&key_pem).is_ok()
}

/// Where [`shared_ca`] keeps its files.
pub struct SharedCa {
    /// The CA certificate (PEM): what `SSL_CERT_FILE` names.
    pub cert: PathBuf,
    /// Its key (PEM), for `daytona-fake --ca-key`.
    pub key: PathBuf,
}

/// A running `daytona-fake` (killed when dropped). Dropping it panics when the fake saw a
/// call that breaks Daytona's API spec (a request body the client sent, or an answer the
/// fake gave): the violations are printed in the panic message.
pub struct DaytonaFake {
    /// The process.
    pub child: Child,
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// `https://127.0.0.1:PORT` (no trailing slash; the API is under `/api`).
    pub root: String,
    /// Where the fake appends its contract violations (`DAYTONA_FAKE_VIOLATIONS`).
    violations: PathBuf,
    _dir: tempfile::TempDir,
}

impl DaytonaFake {
    /// Starts the fake over HTTPS with the [`shared_ca`], with `args` (e.g. `--api-key`)
    /// and `env` added.
    pub fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let key = shared_ca().key.to_string_lossy().into_owned();
        Self::start_with(&[&["--ca-key", &key], args].concat(), env, "https")
    }

    /// Starts the fake with exactly `args` (no CA given: it makes its own), its URLs on
    /// `scheme`.
    pub fn start_with(args: &[&str], env: &[(&str, &str)], scheme: &str) -> Self {
        let dir = tempfile::Builder::new()
            .prefix("daytona-fake")
            .tempdir()
            .expect("tempdir");
        let violations = dir.path().join("violations");
        let mut command = Command::new(crate::bin_path("daytona-fake"));
        command
            .args(args)
            .env("DAYTONA_FAKE_VIOLATIONS", &violations)
            // Its volumes and object store live in the tempdir removed with this value, not
            // in a `/tmp/daytona-fake-<pid>` left behind by every run (a test may override).
            .env("DAYTONA_FAKE_DATA", dir.path().join("data"))
            .envs(env.iter().copied())
            .stdout(Stdio::piped());
        let mut child = command.spawn().expect("daytona-fake");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("port line");
        let port: u16 = line
            .trim()
            .trim_start_matches("listening on ")
            .parse()
            .unwrap_or_else(|_| panic!("daytona-fake said {line:?}"));
        Self {
            child,
            port,
            root: format!("{scheme}://127.0.0.1:{port}"),
            violations,
            _dir: dir,
        }
    }

    /// `{root}/api`.
    pub fn api(&self) -> String {
        format!("{}/api", self.root)
    }

    /// The contract violations the fake has seen so far (one line each) and forgets them,
    /// for a test that makes one on purpose.
    pub fn take_violations(&self) -> Vec<String> {
        let seen = std::fs::read_to_string(&self.violations).unwrap_or_default();
        let _ = std::fs::remove_file(&self.violations);
        seen.lines().map(str::to_string).collect()
    }
}

impl Drop for DaytonaFake {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let seen = self.take_violations();
        if seen.is_empty() {
            return;
        }
        let list = seen.join("\n  ");
        let message = format!(
            "daytona-fake saw {} call(s) that break Daytona's API spec \
             (tests/daytona-fake/spec; fix the fake or the client):\n  {list}",
            seen.len()
        );
        if std::thread::panicking() {
            eprintln!("{message}");
        } else {
            panic!("{message}");
        }
    }
}

/// A reqwest client that trusts the [`shared_ca`] (for the tests' own calls to the fake).
pub fn http_client() -> reqwest::Client {
    let pem = std::fs::read(&shared_ca().cert).expect("read ca.pem");
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).expect("a PEM certificate"))
        .build()
        .expect("a client")
}

/// Whether `path` exists and holds a PEM certificate (for `--ca-out`).
pub fn is_pem_certificate(path: &Path) -> bool {
    std::fs::read_to_string(path).is_ok_and(|s| s.contains("-----BEGIN CERTIFICATE-----"))
}
