//! The relay's bridge API as a process: token checks, health, and seed uploads that are
//! verified before anything lands.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const RELAY: &str = env!("CARGO_BIN_EXE_agentbox-relay");
const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

struct Relay {
    dir: tempfile::TempDir,
    child: Child,
    url: String,
}

impl Relay {
    fn start(max_upload: u64) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("ws")).expect("ws");
        let child = Command::new(RELAY)
            .env("AGENTBOX_RUN_DIR", dir.path().join("run"))
            .env("AGENTBOX_WORKSPACE", dir.path().join("ws"))
            .env("AGENTBOX_BRIDGE_PORT", "0")
            .env("AGENTBOX_WEB_PORT", "0")
            .env("AGENTBOX_STATE_DIR", dir.path().join("state"))
            .env("AGENTBOX_BIND_ADDR", "127.0.0.1")
            .env("AGENTBOX_BRIDGE_TOKEN", TOKEN)
            .env("AGENTBOX_MAX_UPLOAD_BYTES", max_upload.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("relay");
        let info = dir.path().join("run/relay.json");
        let deadline = Instant::now() + Duration::from_secs(10);
        let port = loop {
            if let Some(p) = std::fs::read(&info)
                .ok()
                .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
                .and_then(|v| v["bridge_port"].as_u64())
            {
                break p;
            }
            assert!(Instant::now() < deadline, "relay did not start");
            std::thread::sleep(Duration::from_millis(10));
        };
        Self {
            dir,
            child,
            url: format!("http://127.0.0.1:{port}"),
        }
    }

    fn workspace(&self) -> PathBuf {
        self.dir.path().join("ws")
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// Sends `body` through the upload API, then asks the relay to seed from it with the
/// announced `digest`. Answers the first failing status, or the seed's.
fn put(url: &str, token: Option<&str>, digest: &str, body: Vec<u8>) -> (u16, serde_json::Value) {
    const ID: &str = "5eed5eed5eed5eed";
    rt().block_on(async {
        let client = reqwest::Client::new();
        let auth = |req: reqwest::RequestBuilder| match token {
            Some(t) => req.bearer_auth(t),
            None => req,
        };
        let size = body.len();
        let resp = auth(client.put(format!("{url}/v1/uploads/{ID}")))
            .header("x-agentbox-offset", "0")
            .header("x-agentbox-size", size)
            .body(body)
            .send()
            .await
            .expect("send");
        if !resp.status().is_success() {
            let status = resp.status().as_u16();
            return (status, resp.json().await.unwrap_or_default());
        }
        let resp = auth(client.post(format!("{url}/v1/seed/{ID}")))
            .json(&serde_json::json!({"blake3": digest, "size": size}))
            .send()
            .await
            .expect("send");
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap_or_default())
    })
}

fn digest(b: &[u8]) -> String {
    blake3::hash(b).to_hex().to_string()
}

/// A seed tar of a one-commit repository made with the real git.
fn seed_tar(extra: impl FnOnce(&mut tar::Builder<Vec<u8>>)) -> Vec<u8> {
    let src = tempfile::tempdir().expect("tempdir");
    let git = |dir: &Path, args: &[&str]| {
        let out = Command::new("git")
            .arg("-C")
            .arg(dir)
            .args(args)
            .output()
            .expect("git");
        assert!(out.status.success(), "git {args:?}");
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    git(src.path(), &["init", "-q"]);
    std::fs::write(src.path().join("a.txt"), "hello\n").expect("write");
    git(src.path(), &["add", "."]);
    git(
        src.path(),
        &[
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-qm",
            "c",
        ],
    );
    let head = git(src.path(), &["rev-parse", "HEAD"]);
    git(src.path(), &["branch", "agentbox/t"]);
    let mut b = tar::Builder::new(Vec::new());
    let manifest =
        serde_json::json!({"branch": "agentbox/t", "head": head, "stash": null}).to_string();
    let mut h = tar::Header::new_gnu();
    h.set_size(manifest.len() as u64);
    h.set_mode(0o644);
    b.append_data(&mut h, "seed.json", manifest.as_bytes())
        .expect("append");
    b.append_dir_all("git", src.path().join(".git"))
        .expect("append git");
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, "files/untracked.txt", &b"new"[..])
        .expect("append");
    extra(&mut b);
    b.into_inner().expect("tar")
}

#[test]
fn healthz_needs_no_token_and_reveals_only_liveness() {
    let relay = Relay::start(1 << 30);
    let body: serde_json::Value = rt().block_on(async {
        reqwest::get(format!("{}/healthz", relay.url))
            .await
            .expect("get")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(body["status"], "ok");
    assert_eq!(body["program"], "agentbox-relay");
    assert_eq!(
        body.as_object().map(serde_json::Map::len),
        Some(4),
        "{body}"
    );
}

#[test]
fn v1_refuses_missing_or_wrong_tokens() {
    let relay = Relay::start(1 << 30);
    let bytes = seed_tar(|_| {});
    for token in [None, Some("wrong"), Some(&TOKEN[..63])] {
        let (status, body) = put(&relay.url, token, &digest(&bytes), bytes.clone());
        assert_eq!(status, 401, "{token:?}");
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    assert!(!relay.workspace().join(".git").exists());
}

#[test]
fn a_good_seed_lands_once() {
    let relay = Relay::start(1 << 30);
    let bytes = seed_tar(|_| {});
    let (status, body) = put(&relay.url, Some(TOKEN), &digest(&bytes), bytes.clone());
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["branch"], "agentbox/t");
    assert_eq!(
        std::fs::read_to_string(relay.workspace().join("a.txt")).expect("checked out"),
        "hello\n"
    );
    assert_eq!(
        std::fs::read_to_string(relay.workspace().join("untracked.txt")).expect("untracked"),
        "new"
    );
    let leftovers: Vec<_> = std::fs::read_dir(relay.workspace())
        .expect("ls")
        .filter_map(Result::ok)
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".agentbox-seed")
        })
        .collect();
    assert!(leftovers.is_empty(), "staging left behind");
    let (status, body) = put(&relay.url, Some(TOKEN), &digest(&bytes), bytes);
    assert_eq!(status, 409, "{body}");
}

#[test]
fn a_corrupted_byte_is_detected_and_nothing_lands() {
    let relay = Relay::start(1 << 30);
    let bytes = seed_tar(|_| {});
    let good = digest(&bytes);
    let mut bad = bytes;
    let mid = bad.len() / 2;
    bad[mid] ^= 0x01;
    let (status, body) = put(&relay.url, Some(TOKEN), &good, bad);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("corrupt"),
        "{body}"
    );
    assert_eq!(
        std::fs::read_dir(relay.workspace()).expect("ls").count(),
        0,
        "something landed"
    );
    let staged = std::fs::read_dir(relay.dir.path().join("state/transfers")).expect("ls");
    assert_eq!(staged.count(), 0, "the corrupt upload was kept");
}

#[test]
fn traversal_in_a_seed_is_refused_and_leaves_the_workspace_unchanged() {
    let relay = Relay::start(1 << 30);
    let bytes = seed_tar(|b| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        h.set_mode(0o777);
        h.set_path("files/escape").expect("path");
        h.set_link_name("../../../../etc").expect("link");
        h.set_cksum();
        b.append(&h, &[][..]).expect("append");
    });
    let (status, body) = put(&relay.url, Some(TOKEN), &digest(&bytes), bytes);
    assert_eq!(status, 422, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("symlink points outside"),
        "{body}"
    );
    assert_eq!(std::fs::read_dir(relay.workspace()).expect("ls").count(), 0);
}

#[test]
fn uploads_above_the_cap_are_refused() {
    let relay = Relay::start(1000);
    let bytes = seed_tar(|_| {});
    let (status, body) = put(&relay.url, Some(TOKEN), &digest(&bytes), bytes);
    assert_eq!(status, 413, "{body}");
    assert_eq!(body["error"]["code"], "too_large");
}

#[test]
fn a_missing_digest_is_a_bad_request() {
    let relay = Relay::start(1 << 30);
    let (status, body) = put(&relay.url, Some(TOKEN), "not-a-digest", b"x".to_vec());
    assert_eq!(status, 400, "{body}");
}
