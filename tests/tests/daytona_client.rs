//! The Daytona client against `daytona-fake` (Daytona's paths, shapes, states and errors):
//! lifecycle with waits, label lookup, retries on 429, a lost create answer found by label
//! instead of creating twice, and the errors a user can act on.

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::Duration;

use agentbox::daytona::{CreateSandbox, Daytona, DaytonaError};
use agentbox::transfer::client::Relay;
use agentbox_tests::bin_path;
use agentbox_tests::fake_tls::DaytonaFake;
use agentbox_tests::run::TimedOutput;

struct Fake {
    /// Killed when the test ends.
    _fake: DaytonaFake,
    url: String,
}

fn fake() -> Fake {
    fake_keyed("test-key")
}

fn fake_keyed(key: &str) -> Fake {
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", key],
        &[("DAYTONA_FAKE_TRANSITION_MS", "100")],
    );
    Fake {
        url: fake.api(),
        _fake: fake,
    }
}

fn client(f: &Fake, key: &str) -> Daytona {
    let mut d = Daytona::new(&f.url, key, Some("org-fake"));
    d.backoff = vec![Duration::from_millis(20); 3];
    d.attempt_timeout = Duration::from_millis(500);
    d
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

fn faults(f: &Fake, body: &str) {
    rt().block_on(async {
        agentbox_tests::fake_tls::http_client()
            .post(format!("{}/_fake/faults", f.url.trim_end_matches("/api")))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .expect("faults");
    });
}

#[test]
fn a_sandbox_lifecycle_with_waits_and_labels() {
    let f = fake();
    let d = client(&f, "test-key");
    rt().block_on(async {
        let created = d
            .create_sandbox(CreateSandbox {
                name: Some("agentbox-one".into()),
                labels: BTreeMap::from([("agentbox.box".into(), "one".into())]),
                auto_stop_interval: Some(0),
                ..CreateSandbox::default()
            })
            .await
            .expect("create");
        assert_eq!(created.state.as_deref(), Some("creating"));
        let started = d
            .wait_for_state(&created.id, "started", Duration::from_secs(10))
            .await
            .expect("wait")
            .expect("sandbox");
        assert_eq!(started.name, "agentbox-one");
        let mine = d
            .list_sandboxes(&BTreeMap::from([("agentbox.box".into(), "one".into())]))
            .await
            .expect("list");
        assert_eq!(mine.len(), 1);
        assert!(d
            .list_sandboxes(&BTreeMap::from([("agentbox.box".into(), "two".into())]))
            .await
            .expect("list")
            .is_empty());
        d.stop_sandbox("agentbox-one").await.expect("stop by name");
        // A second change while the first runs: Daytona's 409, not retried.
        let busy = d.start_sandbox(&created.id).await.expect_err("in progress");
        assert!(
            matches!(busy, DaytonaError::Conflict(ref m) if m.contains("state change in progress")),
            "{busy}"
        );
        d.wait_for_state(&created.id, "stopped", Duration::from_secs(10))
            .await
            .expect("stopped");
        d.start_sandbox(&created.id).await.expect("start");
        d.wait_for_state(&created.id, "started", Duration::from_secs(10))
            .await
            .expect("started");
        d.delete_sandbox(&created.id).await.expect("delete");
        assert!(d
            .wait_for_state(&created.id, "destroyed", Duration::from_secs(10))
            .await
            .expect("gone")
            .is_none());
        let missing = d.get_sandbox(&created.id).await.expect_err("404");
        assert!(missing.to_string().contains("not found"), "{missing}");
    });
}

#[test]
fn rate_limits_are_retried_and_a_lost_create_answer_is_found_by_label() {
    let f = fake();
    let d = client(&f, "test-key");
    faults(&f, r#"{"rateLimitNext": 2}"#);
    rt().block_on(async {
        assert!(d
            .list_sandboxes(&BTreeMap::new())
            .await
            .expect("after 2 429s")
            .is_empty());
    });
    // The fake holds the create's answer past the client's timeout, but makes the sandbox.
    faults(&f, r#"{"slowCreateMs": 1500}"#);
    let s = rt()
        .block_on(d.create_sandbox(CreateSandbox::default()))
        .expect("found by label");
    faults(&f, r#"{"slowCreateMs": 0}"#);
    let all = rt()
        .block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect("list");
    assert_eq!(all.len(), 1, "the create was sent twice");
    assert_eq!(all[0].id, s.id);
    faults(&f, r#"{"rateLimitNext": 10}"#);
    rt().block_on(async {
        let e = d.get_sandbox("x").await.expect_err("still limited");
        assert!(matches!(e, DaytonaError::RateLimited { .. }), "{e}");
    });
}

#[test]
fn a_wrong_key_says_to_log_in() {
    let f = fake();
    let d = client(&f, "wrong");
    let e = rt()
        .block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect_err("401");
    assert!(e.to_string().contains("agentbox daytona login"), "{e}");
}

#[test]
fn volumes_are_made_once_and_refused_deletion_while_mounted() {
    let f = fake();
    let d = client(&f, "test-key");
    rt().block_on(async {
        assert_eq!(d.volume_by_name("creds").await.expect("lookup"), None);
        let v = d
            .ensure_volume("creds", Duration::from_secs(5))
            .await
            .expect("volume");
        assert_eq!((v.name.as_str(), v.state.as_str()), ("creds", "ready"));
        // Asking again finds the same volume, never a second one.
        let again = d
            .ensure_volume("creds", Duration::from_secs(5))
            .await
            .expect("volume");
        assert_eq!(again.id, v.id);
        let sandbox = d
            .create_sandbox(CreateSandbox {
                volumes: vec![agentbox::daytona::VolumeMount {
                    volume_id: v.id.clone(),
                    mount_path: "/home/agent/.agentbox-creds".into(),
                    subpath: None,
                }],
                ..CreateSandbox::default()
            })
            .await
            .expect("create");
        d.wait_for_state(&sandbox.id, "started", Duration::from_secs(5))
            .await
            .expect("started");
        let refused = d.delete_volume(&v.id).await.expect_err("in use");
        assert!(
            matches!(refused, DaytonaError::Conflict(ref m) if m.contains("in use")),
            "{refused}"
        );
        d.delete_sandbox(&sandbox.id).await.expect("delete sandbox");
        d.wait_for_state(&sandbox.id, "destroyed", Duration::from_secs(5))
            .await
            .expect("gone");
        d.delete_volume(&v.id).await.expect("delete volume");
    });
}

#[test]
fn snapshots_build_to_active_or_report_why_they_failed() {
    let f = fake();
    let d = client(&f, "test-key");
    rt().block_on(async {
        let latest = d
            .create_snapshot(&agentbox::daytona::CreateSnapshot {
                name: "x".into(),
                image_name: Some("debian:latest".into()),
                ..Default::default()
            })
            .await
            .expect_err(":latest");
        assert!(latest.to_string().contains("pin a tag"), "{latest}");
        let request = agentbox::daytona::CreateSnapshot {
            name: "agentbox-base-0123abcd".into(),
            build_info: Some(agentbox::daytona::BuildInfo {
                dockerfile_content: "FROM scratch\nLABEL agentbox.test=1\n".into(),
                context_hashes: vec![],
            }),
            cpu: Some(2),
            memory: Some(4),
            disk: Some(8),
            ..Default::default()
        };
        let started = d.create_snapshot(&request).await.expect("create");
        assert_eq!(started.state, "building");
        let seen = std::sync::Mutex::new(Vec::new());
        let done = d
            .wait_snapshot(&request.name, Duration::from_secs(10), &|s| {
                seen.lock().expect("seen").push(s.to_string());
            })
            .await
            .expect("active");
        assert_eq!(done.state, "active");
        assert_eq!(*seen.lock().expect("seen"), ["building", "active"]);
        let listed = d.list_snapshots(Some("agentbox-base")).await.expect("list");
        assert_eq!(listed.len(), 1);
        // The same name again is Daytona's conflict, said as such.
        let twice = d.create_snapshot(&request).await.expect_err("conflict");
        assert!(matches!(twice, DaytonaError::Conflict(_)), "{twice}");

        agentbox_tests::fake_tls::http_client()
            .post(format!("{}/_fake/faults", f.url.trim_end_matches("/api")))
            .json(&serde_json::json!({"failNextSnapshot": "COPY failed: no such file"}))
            .send()
            .await
            .expect("faults");
        let broken = agentbox::daytona::CreateSnapshot {
            name: "broken".into(),
            image_name: Some("debian:bookworm".into()),
            ..Default::default()
        };
        d.create_snapshot(&broken).await.expect("create");
        let failed = d
            .wait_snapshot("broken", Duration::from_secs(10), &|_| {})
            .await
            .expect_err("build_failed");
        assert!(
            failed.to_string().contains("COPY failed: no such file"),
            "{failed}"
        );

        // A slow build: waiting gives up with the state it was in, and waiting again
        // finds it done.
        agentbox_tests::fake_tls::http_client()
            .post(format!("{}/_fake/faults", f.url.trim_end_matches("/api")))
            .json(&serde_json::json!({"slowSnapshotMs": 1500}))
            .send()
            .await
            .expect("faults");
        let slow = agentbox::daytona::CreateSnapshot {
            name: "slow".into(),
            image_name: Some("debian:bookworm".into()),
            ..Default::default()
        };
        d.create_snapshot(&slow).await.expect("create");
        let waited = d
            .wait_snapshot("slow", Duration::from_millis(600), &|_| {})
            .await
            .expect_err("still pending");
        assert!(
            matches!(&waited, DaytonaError::SnapshotFailed { state, .. } if state == "pending"),
            "{waited}"
        );
        let slow_done = d
            .wait_snapshot("slow", Duration::from_secs(10), &|_| {})
            .await
            .expect("active");
        assert_eq!(slow_done.state, "active");

        // The fake built it with Docker: leave no image behind.
        if let Some(image) = done.image_name.as_deref() {
            let _ = Command::new("docker")
                .args(["rmi", "-f", image])
                .timed_output();
        }
        d.delete_snapshot(&request.name).await.expect("delete");
        let gone = d
            .wait_snapshot(&request.name, Duration::from_secs(1), &|_| {})
            .await
            .expect_err("gone");
        assert!(
            gone.to_string()
                .contains("run `agentbox prepare --provider daytona`"),
            "{gone}"
        );
    });
}

#[test]
fn preview_links_carry_a_token_that_changes_on_start_and_signed_ones_a_ttl() {
    let f = fake();
    let d = client(&f, "test-key");
    rt().block_on(async {
        let s = d
            .create_sandbox(CreateSandbox::default())
            .await
            .expect("create");
        d.wait_for_state(&s.id, "started", Duration::from_secs(5))
            .await
            .expect("started");
        let link = d.preview_link(&s.id, 8788).await.expect("preview");
        assert_eq!(link.sandbox_id, s.id);
        assert!(link.url.contains(&format!("8788-{}", s.id)), "{}", link.url);
        assert_eq!(link.token.len(), 32);
        d.stop_sandbox(&s.id).await.expect("stop");
        d.wait_for_state(&s.id, "stopped", Duration::from_secs(5))
            .await
            .expect("stopped");
        d.start_sandbox(&s.id).await.expect("start");
        d.wait_for_state(&s.id, "started", Duration::from_secs(5))
            .await
            .expect("started");
        let after = d.preview_link(&s.id, 8788).await.expect("preview");
        assert_ne!(after.token, link.token, "the token did not rotate on start");

        let signed = d
            .signed_preview_link(&s.id, 8080, Duration::from_secs(3600))
            .await
            .expect("signed");
        assert_eq!(signed.port, 8080);
        assert!(signed.url.contains(&format!("8080-{}", signed.token)));
        for bad in [Duration::ZERO, Duration::from_secs(86_401)] {
            let e = d
                .signed_preview_link(&s.id, 8080, bad)
                .await
                .expect_err("ttl");
            assert!(e.to_string().contains("1 s to 24 h"), "{e}");
        }
        let missing = d.preview_link("nope", 8788).await.expect_err("404");
        assert!(matches!(missing, DaytonaError::NotFound(_)), "{missing}");
    });
}

#[test]
fn login_checks_the_key_before_saving_it_0600_and_status_masks_it() {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let key = "dtn_4f1c2a9b7e3d5f60";
    let f = fake_keyed(key);
    let home = tempfile::tempdir().expect("tempdir");
    let agentbox = |args: &[&str], stdin: &str| {
        let mut child = Command::new(bin_path("agentbox"))
            .args(args)
            .env("AGENTBOX_HOME", home.path())
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_ORGANIZATION_ID")
            .env_remove("DAYTONA_API_URL")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("agentbox");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        agentbox_tests::run::finish_within(child, "wait", agentbox_tests::run::COMMAND_LIMIT)
            .expect("wait")
    };
    let secrets = home.path().join("secrets.env");
    // `install --check` reports what is missing and changes nothing.
    let before = agentbox(&["install", "--check"], "");
    let report = String::from_utf8_lossy(&before.stdout);
    assert!(before.status.success(), "{report}");
    assert!(
        report.contains("ok       tmux") && report.contains("ok       git"),
        "{report}"
    );
    assert!(
        report.contains(
            "missing  Daytona credentials (the daytona provider): run `agentbox daytona login`"
        ),
        "{report}"
    );

    let wrong = agentbox(
        &[
            "daytona",
            "login",
            "--api-key",
            "dtn_wrongwrongwrong",
            "--api-url",
            &f.url,
        ],
        "",
    );
    assert!(!wrong.status.success());
    let said = String::from_utf8_lossy(&wrong.stderr);
    assert!(
        said.contains("rejected this API key") && said.contains("nothing was saved"),
        "{said}"
    );
    assert!(!secrets.exists());

    // The key from stdin (not argv), with an organization.
    let ok = agentbox(
        &[
            "daytona",
            "login",
            "--org-id",
            "org-fake",
            "--api-url",
            &f.url,
        ],
        &format!("{key}\n"),
    );
    let said = String::from_utf8_lossy(&ok.stderr);
    assert!(ok.status.success(), "{said}");
    assert!(said.contains("dtn_…5f60") && !said.contains(key), "{said}");
    let mode = std::fs::metadata(&secrets)
        .expect("saved")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let text = std::fs::read_to_string(&secrets).expect("read");
    assert!(text.contains(&format!("DAYTONA_API_KEY={key}")), "{text}");
    assert!(text.contains("DAYTONA_ORGANIZATION_ID=org-fake"), "{text}");

    let after = agentbox(&["install", "--check"], "");
    assert!(String::from_utf8_lossy(&after.stdout).contains("ok       Daytona credentials"));
    let status = agentbox(&["daytona", "login", "--status", "--json"], "");
    assert!(status.status.success());
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(!out.contains(key), "the key leaked: {out}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(v["key"], "dtn_…5f60");
    assert_eq!(v["source"], "secrets_file");
    assert_eq!(v["organization_id"], "org-fake");
    assert_eq!(v["accepted"], true);

    // A key Daytona stopped accepting: status says so and exits 1.
    std::fs::write(&secrets, text.replace(key, "dtn_revokedrevoked00")).expect("write");
    let revoked = agentbox(&["daytona", "login", "--status"], "");
    assert_eq!(revoked.status.code(), Some(1));
    let out = String::from_utf8_lossy(&revoked.stdout);
    assert!(out.contains("run `agentbox daytona login`"), "{out}");
}

/// A Daytona whose certificate this host does not trust (behind a TLS-inspecting proxy, or
/// signed by a private CA): `login` says so in one sentence and saves nothing; once
/// `SSL_CERT_FILE` names that CA, the same login goes through.
#[test]
fn login_to_a_daytona_whose_certificate_is_not_trusted_says_so_and_saves_nothing() {
    // This process (and what it starts) trusts the tests' shared CA, not this fake's own.
    agentbox_tests::fake_tls::shared_ca();
    let dir = tempfile::tempdir().expect("tempdir");
    let own_ca = dir.path().join("own-ca.pem");
    let own_ca_arg = own_ca.to_string_lossy().into_owned();
    let fake = DaytonaFake::start_with(
        &["--port", "0", "--api-key", "k", "--ca-out", &own_ca_arg],
        &[],
        "https",
    );
    assert!(agentbox_tests::fake_tls::is_pem_certificate(&own_ca));
    let home = dir.path().join("home");
    let login = |trust: Option<&std::path::Path>| {
        let mut command = Command::new(bin_path("agentbox"));
        command
            .args([
                "daytona",
                "login",
                "--api-key",
                "k",
                "--api-url",
                &fake.api(),
            ])
            .env("AGENTBOX_HOME", &home)
            .env_remove("DAYTONA_API_KEY")
            .env_remove("DAYTONA_ORGANIZATION_ID")
            .env_remove("DAYTONA_API_URL")
            .stdin(Stdio::null());
        if let Some(ca) = trust {
            command.env("SSL_CERT_FILE", ca);
        }
        command.timed_output().expect("agentbox")
    };
    let refused = login(None);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success(), "{said}");
    assert!(
        said.contains(
            "the certificate of 127.0.0.1 is not trusted (it is signed by an authority this \
             host does not trust); if a proxy or private CA signs it, point SSL_CERT_FILE at \
             its CA; nothing was saved"
        ),
        "{said}"
    );
    assert!(!said.contains("error sending request"), "{said}");
    assert!(!home.join("secrets.env").exists());

    // The same through the library: the error is the certificate's, and not retried.
    let rt = rt();
    let mut d = Daytona::new(&fake.api(), "k", None);
    d.backoff = vec![Duration::from_secs(5); 3];
    let started = std::time::Instant::now();
    let e = rt
        .block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect_err("untrusted");
    assert!(matches!(e, DaytonaError::Untrusted(_)), "{e}");
    assert!(started.elapsed() < Duration::from_secs(5), "it was retried");

    // A relay behind a preview URL of that Daytona: its calls and attach's WebSocket
    // (`wss://`) say the same.
    let sentence = "the certificate of 127.0.0.1 is not trusted (it is signed by an authority \
                    this host does not trust); if a proxy or private CA signs it, point \
                    SSL_CERT_FILE at its CA";
    let relay = Relay::new(&format!("{}/_preview/8788-x", fake.root), "t");
    let e = rt
        .block_on(relay.post_json::<_, serde_json::Value>("/v1/terms", &serde_json::json!({})))
        .expect_err("untrusted");
    assert!(e.to_string().contains(sentence), "{e}");
    let (events, _) = tokio::sync::mpsc::unbounded_channel();
    let unacked = agentbox::attach::wire::Unacked::default();
    let refused = rt.block_on(agentbox::attach::wire::connect_ws(
        &relay,
        &agentbox_protocol::term::TermId::try_from(format!("t{}", "0".repeat(32))).expect("id"),
        0,
        events,
        &unacked,
    ));
    let Err(agentbox::attach::wire::WsRefused::Network(why)) = refused else {
        panic!("a WebSocket to an untrusted server was opened, or refused for another reason");
    };
    assert!(why.contains(sentence), "{why}");

    let trusted = login(Some(&own_ca));
    assert!(
        trusted.status.success(),
        "{}",
        String::from_utf8_lossy(&trusted.stderr)
    );
    assert!(home.join("secrets.env").exists());
}
