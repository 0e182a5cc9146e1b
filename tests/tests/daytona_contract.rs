//! The contract test (issue 19 #4): `daytona-fake` checks every call it serves against
//! Daytona's API spec (`tests/daytona-fake/spec`, from Daytona v0.190.0's `openapi.yaml`
//! and `toolbox-swagger.yaml`) — the client's request bodies and query parameters, and its
//! own answers, by JSON Schema made from the spec's components — and `DaytonaFake` fails a
//! test whose fake saw a violation when it is dropped. So every Daytona test
//! (`daytona_client`, `daytona_provider`, `daytona_preview`, …) is a contract test of the
//! calls it makes; this file drives each route of the fake once, and shows that a wrong
//! shape is caught and fails the test. The validator's own unit tests (bad bodies of each
//! kind) are in `daytona-fake/src/contract.rs`.

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

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// `METHOD {root}{path}` with the API key and `body` as JSON.
fn call_at(f: &DaytonaFake, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    rt().block_on(async {
        let client = agentbox_tests::fake_tls::http_client();
        let url = format!("{}{path}", f.root);
        let mut request = match method {
            "POST" => client.post(url),
            "DELETE" => client.delete(url),
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

/// [`call_at`] under `/api`.
fn call(f: &DaytonaFake, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    call_at(f, method, &format!("/api{path}"), body)
}

/// `GET /_fake/violations`.
fn violations(f: &DaytonaFake) -> Vec<String> {
    let (status, list) = call_at(f, "GET", "/_fake/violations", None);
    assert_eq!(status, 200, "{list}");
    serde_json::from_value(list).expect("a list of lines")
}

fn wait_for(f: &DaytonaFake, id: &str, state: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while call(f, "GET", &format!("/sandbox/{id}"), None).1["state"] != state {
        assert!(
            std::time::Instant::now() < deadline,
            "the sandbox never became {state}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Each of the fake's API routes answers as Daytona's spec says, for requests shaped as
/// the spec says: no violation recorded.
#[test]
fn every_route_of_the_fake_answers_by_daytonas_spec() {
    let f = fake();
    let (status, sandbox) = call(
        &f,
        "POST",
        "/sandbox",
        Some(
            json!({"name": "c1", "labels": {"a": "b"}, "autoStopInterval": 30,
            "env": {"K": "V"}}),
        ),
    );
    assert_eq!(status, 200, "{sandbox}");
    let id = sandbox["id"].as_str().expect("id").to_string();
    call(&f, "GET", "/sandbox?labels=%7B%22a%22%3A%22b%22%7D", None);
    call(&f, "GET", "/sandbox", None);
    wait_for(&f, &id, "started");

    let (status, snapshot) = call(
        &f,
        "POST",
        "/snapshots",
        Some(json!({"name": "s1", "imageName": "debian:bookworm"})),
    );
    assert_eq!(status, 200, "{snapshot}");
    let snapshot_id = snapshot["id"].as_str().expect("id").to_string();
    call(&f, "GET", "/snapshots?page=1&limit=10&name=s1", None);
    call(&f, "GET", "/snapshots/s1", None);
    call(&f, "GET", &format!("/snapshots/{snapshot_id}"), None);

    let (status, volume) = call(&f, "POST", "/volumes", Some(json!({"name": "v1"})));
    assert_eq!(status, 200, "{volume}");
    let volume_id = volume["id"].as_str().expect("id").to_string();
    call(&f, "GET", "/volumes", None);
    call(&f, "GET", "/volumes/by-name/v1", None);
    call(&f, "GET", &format!("/volumes/{volume_id}"), None);

    call(
        &f,
        "GET",
        &format!("/sandbox/{id}/ports/8080/preview-url"),
        None,
    );
    call(
        &f,
        "GET",
        &format!("/sandbox/{id}/ports/8080/signed-preview-url?expiresInSeconds=60"),
        None,
    );
    call(&f, "GET", "/object-storage/push-access", None);
    let (status, orgs) = call(&f, "GET", "/organizations", None);
    assert_eq!(status, 200, "{orgs}");
    call(&f, "GET", "/organizations/org-fake", None);
    let (status, _) = call(&f, "GET", "/organizations/org-nope", None);
    assert_eq!(status, 403);
    call_at(
        &f,
        "POST",
        &format!("/toolbox/{id}/process/execute"),
        Some(json!({"command": "true", "timeout": 10})),
    );

    let (status, set) = call(&f, "POST", &format!("/sandbox/{id}/autostop/7"), None);
    assert_eq!(
        (status, &set["autoStopInterval"]),
        (200, &json!(7)),
        "{set}"
    );
    let (status, _) = call(&f, "POST", &format!("/sandbox/{id}/autostop/-1"), None);
    assert_eq!(status, 400);

    // Errors: Daytona's error body.
    let (status, missing) = call(&f, "GET", "/sandbox/nope", None);
    assert_eq!(status, 404);
    assert_eq!(missing["message"], "Sandbox with ID or name nope not found");
    call(&f, "POST", "/volumes", Some(json!({"name": "v1"})));
    let status = rt().block_on(async {
        agentbox_tests::fake_tls::http_client()
            .get(format!("{}/api/sandbox", f.root))
            .bearer_auth("wrong")
            .send()
            .await
            .expect("send")
            .status()
            .as_u16()
    });
    assert_eq!(status, 401);

    // The lifecycle, to the end.
    call(&f, "POST", &format!("/sandbox/{id}/stop"), None);
    wait_for(&f, &id, "stopped");
    call(&f, "POST", &format!("/sandbox/{id}/start"), None);
    wait_for(&f, &id, "started");
    call(&f, "DELETE", &format!("/volumes/{volume_id}"), None);
    call(&f, "DELETE", &format!("/snapshots/{snapshot_id}"), None);
    call(&f, "DELETE", &format!("/sandbox/{id}"), None);

    assert_eq!(violations(&f), Vec::<String>::new());
}

/// The client's toolbox command without a working directory leaves `cwd` out (the spec
/// types it as a string: `"cwd": null` breaks it).
#[test]
fn a_toolbox_command_without_a_cwd_leaves_it_out() {
    let f = fake();
    let d = agentbox::daytona::Daytona::new(&f.api(), "k", None);
    rt().block_on(async {
        let s = d
            .create_sandbox(agentbox::daytona::CreateSandbox::default())
            .await
            .expect("create");
        let s = d
            .wait_for_state(&s.id, "started", std::time::Duration::from_secs(10))
            .await
            .expect("started")
            .expect("a sandbox");
        // A sandbox without an image runs nothing: what matters is the request's shape.
        let _ = d.execute(&s, "true", None).await;
    });
    assert_eq!(violations(&f), Vec::<String>::new());
}

/// A request body that breaks the spec is caught (by the field and the operation), served
/// at `/_fake/violations`, and fails the test when its fake is dropped.
#[test]
fn a_wrong_shape_is_caught_and_fails_the_test() {
    let f = fake();
    call(
        &f,
        "POST",
        "/sandbox",
        Some(json!({"cpu": "two", "size": "2-4-8"})),
    );
    call(&f, "POST", "/sandbox/x/teleport", None);
    let seen = violations(&f).join("\n");
    for expected in ["createSandbox", "/cpu", "size", "teleport"] {
        assert!(seen.contains(expected), "{expected} in:\n{seen}");
    }
    // What the harness reads when it drops the fake: the same, and dropping fails.
    let taken = f.take_violations().join("\n");
    assert!(taken.contains("/cpu"), "{taken}");
    call(&f, "POST", "/volumes", Some(json!({"name": 7})));
    let dropped = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(f)));
    let message = dropped.expect_err("dropping a fake that saw a violation panics");
    let message = message
        .downcast_ref::<String>()
        .cloned()
        .unwrap_or_default();
    assert!(
        message.contains("createVolume") && message.contains("/name"),
        "{message}"
    );
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
    let out =
        agentbox_tests::run::finish_within(child, "output", agentbox_tests::run::COMMAND_LIMIT)
            .expect("output");
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
        assert_eq!(violations(&f), Vec::<String>::new());
        let _ = f.child.kill();
    }
}

/// A user's login token (a JWT, as the Daytona dashboard and CLI hold), not an API key.
const USER_TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyLWZha2UifQ.c2lnbmF0dXJl";

/// As Daytona's `OrganizationAuthContextGuard` does, a user's token without
/// `X-Daytona-Organization-ID` is refused 403 `Invalid authentication context` on every
/// route of an organization (sandboxes, snapshots, volumes, object storage), and answered
/// with it; the user's own routes (`/organizations`, `/organizations/{id}`) need none.
#[test]
fn a_users_token_without_the_organization_header_is_refused() {
    let f = DaytonaFake::start(
        &["--port", "0", "--api-key", USER_TOKEN],
        &[("DAYTONA_FAKE_TRANSITION_MS", "50")],
    );
    let send = |method: &str, path: &str, org: Option<&str>, body: Option<Value>| {
        rt().block_on(async {
            let client = agentbox_tests::fake_tls::http_client();
            let url = format!("{}/api{path}", f.root);
            let mut request = match method {
                "POST" => client.post(url),
                _ => client.get(url),
            }
            .bearer_auth(USER_TOKEN);
            if let Some(org) = org {
                request = request.header("X-Daytona-Organization-ID", org);
            }
            if let Some(b) = body {
                request = request.json(&b);
            }
            let r = request.send().await.expect("send");
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        })
    };
    for (method, path, body) in [
        ("GET", "/sandbox", None),
        ("POST", "/sandbox", Some(json!({"name": "u1"}))),
        ("GET", "/snapshots?page=1&limit=10", None),
        ("POST", "/volumes", Some(json!({"name": "v1"}))),
        ("GET", "/object-storage/push-access", None),
    ] {
        let (status, refused) = send(method, path, None, body.clone());
        assert_eq!(status, 403, "{method} {path}: {refused}");
        assert_eq!(
            (
                &refused["message"],
                &refused["error"],
                &refused["statusCode"]
            ),
            (
                &json!("Invalid authentication context"),
                &json!("Forbidden"),
                &json!(403)
            ),
            "{method} {path}: {refused}"
        );
        let (status, answer) = send(method, path, Some("org-fake"), body);
        assert_eq!(status, 200, "{method} {path} with the header: {answer}");
    }
    // Nothing was made by a refused create.
    let (_, listed) = send("GET", "/sandbox", Some("org-fake"), None);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    // The user's own routes: no organization needed.
    let (status, orgs) = send("GET", "/organizations", None, None);
    assert_eq!(status, 200, "{orgs}");
    let (status, org) = send("GET", "/organizations/org-fake", None, None);
    assert_eq!((status, &org["id"]), (200, &json!("org-fake")), "{org}");
    assert_eq!(violations(&f), Vec::<String>::new());
}
