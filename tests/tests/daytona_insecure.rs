//! Plain `http://` to Daytona is refused unless it goes to this machine (a test's fake) or
//! login was given `--insecure`, and the refusal says so; nothing is saved by a refused
//! login. `http://0.0.0.0:PORT` reaches the fake on 127.0.0.1 while not being a loopback
//! name, so the whole path runs against a real server.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use agentbox_tests::bin_path;
use agentbox_tests::fake_tls::DaytonaFake;

const KEY: &str = "dtn_insecure0123456789";

fn agentbox(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut child = Command::new(bin_path("agentbox"))
        .args(args)
        .env("AGENTBOX_HOME", home)
        .env("HOME", home)
        .env_remove("DAYTONA_API_KEY")
        .env_remove("DAYTONA_API_URL")
        .env_remove("DAYTONA_ORGANIZATION_ID")
        .env_remove("DAYTONA_INSECURE")
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("agentbox");
    // The key on stdin, as a user would paste it.
    let _ = child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{KEY}\n").as_bytes());
    agentbox_tests::run::finish_within(child, "wait", agentbox_tests::run::COMMAND_LIMIT)
        .expect("wait")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn plain_http_to_another_machine_needs_insecure() {
    let fake = DaytonaFake::start_with(
        &["--port", "0", "--api-key", KEY, "--plain-http"],
        &[],
        "http",
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let home = dir.path();
    let remote = format!("http://0.0.0.0:{}/api", fake.port);

    // Refused, saying what and what to do; nothing saved.
    let out = agentbox(home, &["daytona", "login", "--api-url", &remote], &[]);
    let said = stderr(&out);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains(&format!("the Daytona API URL {remote} is plain HTTP"))
            && said.contains("--insecure")
            && said.contains("nothing was saved"),
        "{said}"
    );
    assert!(!home.join("secrets.env").exists(), "a refused login saved");

    // To this machine by a loopback address: accepted silently (the tests' fakes).
    let local = format!("http://127.0.0.1:{}/api", fake.port);
    let out = agentbox(home, &["daytona", "login", "--api-url", &local], &[]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("plain HTTP"), "{}", stderr(&out));

    // The environment's URL is checked too, before any call.
    let out = agentbox(
        home,
        &["daytona", "login", "--status", "--json"],
        &[("DAYTONA_API_URL", &remote)],
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(status["accepted"], false, "{status}");
    assert!(
        status["problem"]
            .as_str()
            .is_some_and(|p| p.contains("is plain HTTP")),
        "{status}"
    );

    // --insecure: accepted with a warning, and kept for the commands that follow.
    let out = agentbox(
        home,
        &["daytona", "login", "--api-url", &remote, "--insecure"],
        &[],
    );
    let said = stderr(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        said.contains("warning:") && said.contains("plain HTTP"),
        "{said}"
    );
    let saved = std::fs::read_to_string(home.join("secrets.env")).expect("secrets.env");
    assert!(saved.contains("DAYTONA_INSECURE=1"), "{saved}");
    let out = agentbox(home, &["daytona", "login", "--status", "--json"], &[]);
    let status: serde_json::Value =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", stderr(&out)));
    assert_eq!(status["accepted"], true, "{status}");
}

/// The URLs Daytona's answers hand back are held to the same rule as the API URL: a
/// toolbox or object storage URL that is plain HTTP to another machine is refused before
/// anything (the API key, a file, a build context) is sent there, unless login was given
/// `--insecure`.
#[test]
fn plain_http_toolbox_and_storage_urls_need_insecure_too() {
    let fake = DaytonaFake::start_with(
        &["--port", "0", "--api-key", KEY, "--plain-http"],
        &[("DAYTONA_FAKE_TRANSITION_MS", "50")],
        "http",
    );
    // The API on loopback (accepted), the URLs it hands back on another name.
    let api = format!("http://127.0.0.1:{}/api", fake.port);
    let ok = agentbox_tests::run::TimedOutput::timed_output(
        Command::new("curl")
            .args(["-fsS", "-X", "POST", "-H", "content-type: application/json"])
            .args(["-d", r#"{"handedHost": "0.0.0.0"}"#])
            .arg(format!("http://127.0.0.1:{}/_fake/faults", fake.port)),
    )
    .expect("curl")
    .status
    .success();
    assert!(ok, "faults");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut d = agentbox::daytona::Daytona::new(&api, KEY, None);
    let sandbox = rt.block_on(async {
        let s = d
            .create_sandbox(agentbox::daytona::CreateSandbox::default())
            .await
            .expect("create");
        d.wait_for_state(&s.id, "started", std::time::Duration::from_secs(10))
            .await
            .expect("started")
            .expect("a sandbox")
    });
    let toolbox = sandbox.toolbox_proxy_url.clone().expect("a toolbox URL");
    assert!(toolbox.starts_with("http://0.0.0.0:"), "{toolbox}");

    let refused = |e: &agentbox::daytona::DaytonaError, what: &str| {
        let said = e.to_string();
        assert!(
            said.contains(&format!("{what} http://0.0.0.0:"))
                && said.contains("is plain HTTP")
                && said.contains("--insecure"),
            "{said}"
        );
    };
    let upload = rt.block_on(d.upload_file(&sandbox, "/tmp/x", b"secret".to_vec()));
    refused(
        &upload.expect_err("a plain-HTTP toolbox was used"),
        "the toolbox URL Daytona gave",
    );
    let run = rt.block_on(d.execute(&sandbox, "true", None));
    refused(
        &run.expect_err("a plain-HTTP toolbox was used"),
        "the toolbox URL Daytona gave",
    );
    let push = rt.block_on(d.push_context(b"a build context"));
    refused(
        &push.expect_err("a plain-HTTP object storage was used"),
        "the object storage URL Daytona gave",
    );

    // With --insecure (DAYTONA_INSECURE=1), they are used.
    d.insecure = true;
    rt.block_on(d.push_context(b"a build context"))
        .expect("the build context goes with --insecure");
}
