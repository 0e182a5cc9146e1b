//! Contract tests: the JSON `daytona-fake` answers has the field names of Daytona's API as
//! the reference's Part B lists them (required fields present, no field Daytona does not
//! have), so that the client is tested against Daytona's shapes, not the fake's own.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::fake_tls::DaytonaFake;
use serde_json::{json, Value};

fn fake() -> DaytonaFake {
    DaytonaFake::start(
        &["--port", "0", "--api-key", "k"],
        &[("DAYTONA_FAKE_TRANSITION_MS", "50")],
    )
}

fn call(f: &DaytonaFake, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt");
    rt.block_on(async {
        let client = agentbox_tests::fake_tls::http_client();
        let url = format!("{}/api{path}", f.root);
        let mut request = match method {
            "POST" => client.post(url),
            _ => client.get(url),
        }
        .bearer_auth("k");
        if let Some(b) = body {
            request = request.json(&b);
        }
        let r = request.send().await.expect("send");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    })
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object()
        .map(|o| o.keys().cloned().collect())
        .unwrap_or_default()
}

/// Every `required` key is there and every key is `required` or `optional`.
fn conforms(what: &str, v: &Value, required: &[&str], optional: &[&str]) {
    let have = keys(v);
    for k in required {
        assert!(have.contains(*k), "{what} lacks `{k}`: {v}");
    }
    for k in &have {
        assert!(
            required.contains(&k.as_str()) || optional.contains(&k.as_str()),
            "{what} has `{k}`, which Daytona's {what} does not: {v}"
        );
    }
}

const SANDBOX_REQUIRED: &[&str] = &[
    "id",
    "organizationId",
    "name",
    "user",
    "env",
    "labels",
    "public",
    "networkBlockAll",
    "target",
    "cpu",
    "gpu",
    "memory",
    "disk",
    "toolboxProxyUrl",
];
const SANDBOX_OPTIONAL: &[&str] = &[
    "snapshot",
    "gpuType",
    "state",
    "desiredState",
    "errorReason",
    "recoverable",
    "backupState",
    "backupCreatedAt",
    "autoStopInterval",
    "autoArchiveInterval",
    "autoDeleteInterval",
    "volumes",
    "buildInfo",
    "createdAt",
    "updatedAt",
    "lastActivityAt",
    "sandboxClass",
    "daemonVersion",
    "runnerId",
    "linkedSandboxId",
    "networkAllowList",
    "domainAllowList",
];
const SNAPSHOT: &[&str] = &[
    "id",
    "organizationId",
    "general",
    "name",
    "imageName",
    "state",
    "size",
    "entrypoint",
    "cpu",
    "gpu",
    "gpuType",
    "mem",
    "disk",
    "errorReason",
    "createdAt",
    "updatedAt",
    "lastUsedAt",
    "buildInfo",
    "regionIds",
    "initialRunnerId",
    "ref",
    "sandboxClass",
];
const VOLUME: &[&str] = &[
    "id",
    "name",
    "organizationId",
    "state",
    "createdAt",
    "updatedAt",
    "lastUsedAt",
    "errorReason",
];

#[test]
fn the_fake_speaks_daytonas_shapes() {
    let f = fake();
    let (status, sandbox) = call(&f, "POST", "/sandbox", Some(json!({"labels": {"a": "b"}})));
    assert_eq!(status, 200);
    conforms("Sandbox", &sandbox, SANDBOX_REQUIRED, SANDBOX_OPTIONAL);
    let id = sandbox["id"].as_str().expect("id").to_string();
    let (_, list) = call(&f, "GET", "/sandbox?labels=%7B%22a%22%3A%22b%22%7D", None);
    conforms(
        "ListSandboxesResponse",
        &list,
        &["items", "nextCursor"],
        &[],
    );

    let (status, snapshot) = call(
        &f,
        "POST",
        "/snapshots",
        Some(json!({"name": "s1", "imageName": "debian:bookworm"})),
    );
    assert_eq!(status, 200);
    conforms("SnapshotDto", &snapshot, SNAPSHOT, &[]);
    let (_, page) = call(&f, "GET", "/snapshots?page=1&limit=10", None);
    conforms(
        "PaginatedSnapshots",
        &page,
        &["items", "total", "page", "totalPages"],
        &[],
    );

    let (status, volume) = call(&f, "POST", "/volumes", Some(json!({"name": "v1"})));
    assert_eq!(status, 200);
    conforms("VolumeDto", &volume, VOLUME, &[]);

    // Preview links are for a started sandbox.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(&f, "GET", &format!("/sandbox/{id}"), None).1["state"] != "started" {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let (_, preview) = call(
        &f,
        "GET",
        &format!("/sandbox/{id}/ports/8080/preview-url"),
        None,
    );
    conforms(
        "PortPreviewUrl",
        &preview,
        &["sandboxId", "url", "token"],
        &[],
    );
    let (_, signed) = call(
        &f,
        "GET",
        &format!("/sandbox/{id}/ports/8080/signed-preview-url?expiresInSeconds=60"),
        None,
    );
    conforms(
        "SignedPortPreviewUrl",
        &signed,
        &["sandboxId", "port", "token", "url"],
        &[],
    );

    let (status, missing) = call(&f, "GET", "/sandbox/nope", None);
    assert_eq!(status, 404);
    conforms(
        "error body",
        &missing,
        &["path", "timestamp", "statusCode", "error", "message"],
        &[],
    );
    assert_eq!(missing["message"], "Sandbox with ID or name nope not found");
}

/// `daytona-fake --help` prints its usage and exits; it does not start serving.
#[test]
fn help_prints_usage_and_starts_nothing() {
    let mut child = Command::new(bin_path("daytona-fake"))
        .arg("--help")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("daytona-fake");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while child.try_wait().expect("try_wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("daytona-fake --help did not exit within 10 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "exit: {:?}\n{stdout}", out.status);
    assert!(stdout.contains("Usage:"), "{stdout}");
    for option in [
        "--port",
        "--api-key",
        "--ca-out",
        "--ca-key",
        "--plain-http",
    ] {
        assert!(stdout.contains(option), "{option}: {stdout}");
    }
    // The help mentions the `listening on PORT` line; the fake serving would print it as a line.
    assert!(
        !stdout.lines().any(|l| l.starts_with("listening on")),
        "{stdout}"
    );
}

/// The fake serves HTTPS by default and every URL it hands out (toolbox, object storage,
/// preview) is `https://` on its own address; `--ca-out` writes the CA that signs it, and
/// `--plain-http` turns it all to `http://`.
#[test]
fn urls_follow_the_scheme_the_fake_serves() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let ca_arg = ca.to_string_lossy().into_owned();
    let env = [("DAYTONA_FAKE_TRANSITION_MS", "50")];
    for scheme in ["https", "http"] {
        let mut f = if scheme == "https" {
            DaytonaFake::start(&["--api-key", "k", "--ca-out", &ca_arg], &env)
        } else {
            DaytonaFake::start_with(&["--api-key", "k", "--plain-http"], &env, scheme)
        };
        if scheme == "https" {
            assert!(agentbox_tests::fake_tls::is_pem_certificate(&ca));
            // A client that trusts only what `--ca-out` wrote (the CA certificate the key
            // given with `--ca-key` makes) reaches it.
            let pem = std::fs::read(&ca).expect("ca");
            let own = reqwest::Client::builder()
                .tls_certs_only([reqwest::Certificate::from_pem(&pem).expect("pem")])
                .build()
                .expect("client");
            let status = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("rt")
                .block_on(own.get(format!("{}/_fake/stats", f.root)).send())
                .expect("stats over the CA from --ca-out")
                .status();
            assert!(status.is_success(), "{status}");
        }
        let origin = format!("{scheme}://127.0.0.1:{}", f.port);
        let (_, created) = call(&f, "POST", "/sandbox", Some(json!({})));
        let id = created["id"].as_str().expect("id").to_string();
        assert!(
            created["toolboxProxyUrl"]
                .as_str()
                .is_some_and(|u| u.starts_with(&origin)),
            "{created}"
        );
        let (_, link) = call(
            &f,
            "GET",
            &format!("/sandbox/{id}/ports/8788/preview-url"),
            None,
        );
        assert!(
            link["url"].as_str().is_some_and(|u| u.starts_with(&origin)),
            "{link}"
        );
        let (_, access) = call(&f, "GET", "/object-storage/push-access", None);
        assert!(
            access["storageUrl"]
                .as_str()
                .is_some_and(|u| u.starts_with(&origin)),
            "{access}"
        );
        let _ = f.child.kill();
    }
}
