//! Daytona's real lifecycle against `daytona-fake`, which keeps Daytona's rules (a change
//! refused with 409 while another is pending, `error` refusing start and stop, a capture's
//! snapshot recorded only when it is done, names unique per organization, a deleted
//! snapshot `removing` with its name taken, a list that lags behind a create): a box waits
//! out every state Daytona puts it in and acts only where Daytona accepts it.
//!
//! Boxes here are records on the fake (no container) unless a test builds one; the relay a
//! start waits for is a stub behind the fake's preview proxy.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use agentbox::daytona::{CreateSandbox, Daytona};
use agentbox::provider::daytona::DaytonaBox;
use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
use agentbox_tests::run::{TimedOutput, BUILD_LIMIT};
use serde_json::{json, Value};

const KEY: &str = "dtn_states0123456789";

struct World {
    /// The fake, and the temporary directory the homes are in; dropping it removes the
    /// containers and images the fake made.
    host: DaytonaHost,
    /// A stub relay: answers every request 200 (the preview proxy's upstream for 8788).
    relay: String,
}

fn world() -> World {
    World {
        host: DaytonaHost::start(KEY, &[("DAYTONA_FAKE_TRANSITION_MS", "100")]),
        relay: stub_relay(),
    }
}

/// A plain HTTP server on loopback that answers every request `200 agentbox-relay`.
fn stub_relay() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match conn.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\nconnection: close\r\n\r\nagentbox-relay",
                );
            });
        }
    });
    addr
}

impl World {
    fn client(&self) -> Daytona {
        let mut d = Daytona::new(&self.host.api, KEY, None);
        d.backoff = vec![Duration::from_millis(20); 3];
        d.attempt_timeout = Duration::from_millis(800);
        d
    }

    /// An `AGENTBOX_HOME` logged in to the fake.
    fn home(&self, n: &str) -> PathBuf {
        let home = self.host.dir.path().join(n);
        std::fs::create_dir_all(&home).expect("mkdir");
        std::fs::write(
            home.join("secrets.env"),
            format!("DAYTONA_API_KEY={KEY}\nDAYTONA_API_URL={}\n", self.host.api),
        )
        .expect("secrets");
        home
    }

    fn post(&self, path: &str, body: &Value) {
        let status = rt().block_on(async {
            agentbox_tests::fake_tls::http_client()
                .post(format!("{}{path}", self.host.fake.root))
                .json(body)
                .send()
                .await
                .expect("fake control")
                .status()
        });
        assert!(status.is_success(), "{path} {body}: {status}");
    }

    fn faults(&self, body: &Value) {
        self.post("/_fake/faults", body);
    }

    /// The sandbox of box `name` as the fake has it (found by its label, as a user would).
    fn sandbox_of(&self, box_name: &str, home: &Path) -> Value {
        let d = self.client();
        let labels = BTreeMap::from([
            ("agentbox.box".to_string(), box_name.to_string()),
            (
                "agentbox.home".to_string(),
                agentbox::provider::docker::home_label(home),
            ),
        ]);
        let found = rt()
            .block_on(d.list_sandboxes(&labels))
            .expect("list by label");
        assert_eq!(found.len(), 1, "{found:?}");
        self.raw(&format!("/sandbox/{}", found[0].id))
    }

    /// An API answer as JSON.
    fn raw(&self, path: &str) -> Value {
        rt().block_on(async {
            agentbox_tests::fake_tls::http_client()
                .get(format!("{}{path}", self.host.api))
                .bearer_auth(KEY)
                .send()
                .await
                .expect("get")
                .json()
                .await
                .expect("json")
        })
    }

    /// An active snapshot `name` (from a registry image; a record on the fake).
    fn snapshot(&self, name: &str) {
        let d = self.client();
        rt().block_on(async {
            d.create_snapshot(&agentbox::daytona::CreateSnapshot {
                name: name.into(),
                image_name: Some("debian:bookworm".into()),
                ..Default::default()
            })
            .await
            .expect("snapshot");
            d.wait_snapshot(name, Duration::from_secs(10), &|_| {})
                .await
                .expect("active");
        });
    }

    /// Box `name` of `home`, created from `snapshot` and started (its relay the stub).
    fn started_box(&self, home: &Path, name: &str, snapshot: &str) -> DaytonaBox {
        let b = DaytonaBox::new(name, home).expect("box");
        b.create(
            snapshot,
            "bridge-token",
            &agentbox::provider::docker::home_label(home),
            None,
        )
        .expect("create");
        let id = self.sandbox_of(name, home)["id"]
            .as_str()
            .expect("id")
            .to_string();
        self.post(
            "/_fake/upstream",
            &json!({"sandbox": id, "port": 8788, "target": self.relay}),
        );
        b.start("bridge-token").expect("start");
        b
    }

    /// Puts box `name`'s sandbox in `state` (desired `desired`), then in `then` after `ms`.
    fn put(&self, home: &Path, name: &str, state: &str, desired: &str, then: Option<(&str, u64)>) {
        let id = self.sandbox_of(name, home)["id"].clone();
        let mut spec = json!({"sandbox": id, "state": state, "desiredState": desired});
        if let Some((then, ms)) = then {
            spec["then"] = json!(then);
            spec["thenMs"] = json!(ms);
        }
        if state == "error" || state == "build_failed" {
            spec["errorReason"] = json!("the runner ran out of disk (no space left on device)");
        }
        self.faults(&json!({ "sandboxState": spec }));
    }

    fn state(&self, home: &Path, name: &str) -> String {
        self.sandbox_of(name, home)["state"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// start, stop and destroy in the states Daytona passes through by itself: each waits
/// (never a 409 in the user's face) and then does its job.
#[test]
fn start_stop_and_destroy_wait_out_what_daytona_is_doing() {
    let w = world();
    let home = w.home("h");
    w.snapshot("agentbox-base-states");
    let b = w.started_box(&home, "busy", "agentbox-base-states");

    // A snapshot pull (then started): start waits for it rather than POSTing into it.
    w.put(
        &home,
        "busy",
        "pulling_snapshot",
        "started",
        Some(("started", 700)),
    );
    let t = Instant::now();
    b.start("bridge-token").expect("start waits out the pull");
    assert!(
        t.elapsed() >= Duration::from_millis(500),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(w.state(&home, "busy"), "started");

    // Still starting when a stop comes: the stop waits, then stops.
    w.put(&home, "busy", "starting", "started", Some(("started", 700)));
    b.stop().expect("stop waits out the start");
    assert_eq!(w.state(&home, "busy"), "stopped");

    // A stop under way already: nothing more to send.
    b.start("bridge-token").expect("start");
    w.put(&home, "busy", "stopping", "stopped", Some(("stopped", 500)));
    b.stop().expect("stop waits for the stop under way");
    assert_eq!(w.state(&home, "busy"), "stopped");

    // Destroy while a start runs: Daytona refuses a delete meanwhile; destroy waits.
    w.put(&home, "busy", "starting", "started", Some(("started", 700)));
    b.remove().expect("remove waits out the start");
    let left = rt()
        .block_on(w.client().list_sandboxes(&BTreeMap::new()))
        .expect("list");
    assert!(left.is_empty(), "{left:?}");
}

/// `box.autoStopMinutes` changed after a box was made applies to it when it next starts
/// (Daytona's `setAutostopInterval`); a start under an unchanged value sets nothing.
#[test]
fn a_changed_auto_stop_applies_when_the_box_starts() {
    let w = world();
    let home = w.home("h");
    w.snapshot("agentbox-base-autostop");
    let b = w.started_box(&home, "idle", "agentbox-base-autostop");
    assert_eq!(w.sandbox_of("idle", &home)["autoStopInterval"], 30);
    std::fs::write(home.join("config.yaml"), "box:\n  autoStopMinutes: 9\n").expect("config");
    b.stop().expect("stop");
    b.start("bridge-token").expect("start");
    assert_eq!(w.sandbox_of("idle", &home)["autoStopInterval"], 9);
    // A value that is not a number of minutes: the start says so.
    std::fs::write(home.join("config.yaml"), "box:\n  autoStopMinutes: soon\n").expect("config");
    let e = b.start("bridge-token").expect_err("a bad value");
    let said = format!("{e:#}");
    assert!(
        said.contains("box.autoStopMinutes") && said.contains("`soon` is not a whole number"),
        "{said}"
    );
}

/// An archived box restores on start, and says so first (a restore takes minutes).
#[test]
fn an_archived_box_starts_with_a_line_saying_it_is_being_restored() {
    let w = world();
    let home = w.home("h");
    w.snapshot("agentbox-base-archive");
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let b = w.started_box(&home, "old", "agentbox-base-archive");
    let heard = lines.clone();
    let b = b.with_progress(move |l| heard.lock().expect("lines").push(l.to_string()));
    b.stop().expect("stop");
    w.put(&home, "old", "archived", "archived", None);
    b.start("bridge-token").expect("start restores it");
    assert_eq!(w.state(&home, "old"), "started");
    let said = lines.lock().expect("lines").join("\n");
    assert!(
        said.contains("is archived: Daytona is restoring it from its archive"),
        "{said}"
    );
    assert!(said.contains("is restoring"), "{said}");

    // Being archived (Daytona allows a start then too).
    b.stop().expect("stop");
    w.put(
        &home,
        "old",
        "archiving",
        "archived",
        Some(("archived", 3000)),
    );
    b.start("bridge-token").expect("start during an archive");
    assert_eq!(w.state(&home, "old"), "started");
}

/// `error` and `build_failed`: start and stop say what Daytona says, at once; destroy still
/// works.
#[test]
fn a_failed_box_says_why_and_can_still_be_destroyed() {
    let w = world();
    let home = w.home("h");
    w.snapshot("agentbox-base-failed");
    let b = w.started_box(&home, "sick", "agentbox-base-failed");
    for state in ["error", "build_failed"] {
        w.put(&home, "sick", state, "started", None);
        let t = Instant::now();
        let e = format!("{:#}", b.start("bridge-token").expect_err("failed box"));
        assert!(
            e.contains(&format!("`{state}`")) && e.contains("no space left on device"),
            "{e}"
        );
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        let e = format!("{:#}", b.stop().expect_err("failed box"));
        assert!(e.contains("no space left on device"), "{e}");
    }
    b.remove().expect("an errored box can be destroyed");
    assert!(rt()
        .block_on(w.client().list_sandboxes(&BTreeMap::new()))
        .expect("list")
        .is_empty());
}

/// Checkpoints: Daytona records the snapshot only when the capture is done (404 until
/// then); a running box is captured running, a stopped one stopped, and each stays so.
#[test]
fn checkpoints_of_a_running_and_of_a_stopped_box() {
    let w = world();
    let home = w.home("h");
    w.snapshot("agentbox-base-ckpt");
    let b = w.started_box(&home, "cap", "agentbox-base-ckpt");
    w.faults(&json!({"slowCaptureMs": 800}));
    b.checkpoint("agentbox-ckpt-running").expect("checkpoint");
    let snap = w.raw("/snapshots/agentbox-ckpt-running");
    assert_eq!(snap["state"], "active", "{snap}");
    assert_eq!(w.state(&home, "cap"), "started");

    b.stop().expect("stop");
    b.checkpoint("agentbox-ckpt-stopped")
        .expect("a stopped box can be captured");
    assert_eq!(w.raw("/snapshots/agentbox-ckpt-stopped")["state"], "active");
    assert_eq!(
        w.state(&home, "cap"),
        "stopped",
        "the checkpoint started it"
    );

    // Mid-change (stopping): the capture waits for the box to settle.
    b.start("bridge-token").expect("start");
    w.put(&home, "cap", "stopping", "stopped", Some(("stopped", 600)));
    b.checkpoint("agentbox-ckpt-settled")
        .expect("after the stop");
    assert_eq!(w.raw("/snapshots/agentbox-ckpt-settled")["state"], "active");
}

/// Two homes (two people, two machines) in one organization make boxes of the same name:
/// Daytona's names are unique per organization, the boxes' sandboxes are not the same.
#[test]
fn two_homes_in_one_organization_never_collide() {
    let w = world();
    w.snapshot("agentbox-base-names");
    let (alice, bob) = (w.home("alice"), w.home("bob"));
    let a = w.started_box(&alice, "web", "agentbox-base-names");
    let b = w.started_box(&bob, "web", "agentbox-base-names");
    let (sa, sb) = (w.sandbox_of("web", &alice), w.sandbox_of("web", &bob));
    assert_ne!(sa["name"], sb["name"]);
    a.stop().expect("stop alice's");
    assert_eq!(w.state(&alice, "web"), "stopped");
    assert_eq!(
        w.state(&bob, "web"),
        "started",
        "alice's stop stopped bob's box"
    );
    b.remove().expect("remove bob's");
    assert_eq!(w.state(&alice, "web"), "stopped");

    // The same home making the box again while its sandbox exists: Daytona's 409 in words.
    let again = DaytonaBox::new("web", &alice).expect("box");
    let e = format!(
        "{:#}",
        again
            .create(
                "agentbox-base-names",
                "t",
                &agentbox::provider::docker::home_label(&alice),
                None
            )
            .expect_err("409")
    );
    assert!(
        e.contains("already has a sandbox named") && e.contains("already exists"),
        "{e}"
    );
}

/// A create from a snapshot that is missing, or not active (Daytona's 400 with a message),
/// says to bake one.
#[test]
fn a_missing_or_inactive_snapshot_says_to_prepare() {
    let w = world();
    let home = w.home("h");
    let b = DaytonaBox::new("lost", &home).expect("box");
    let label = agentbox::provider::docker::home_label(&home);
    let e = format!(
        "{:#}",
        b.create("agentbox-base-nothere", "t", &label, None)
            .expect_err("missing")
    );
    assert!(
        e.contains("run `agentbox prepare --provider daytona`"),
        "{e}"
    );
    w.snapshot("agentbox-base-idle");
    w.faults(&json!({"snapshotState": {"snapshot": "agentbox-base-idle", "state": "inactive"}}));
    let e = format!(
        "{:#}",
        b.create("agentbox-base-idle", "t", &label, None)
            .expect_err("inactive")
    );
    assert!(
        e.contains("inactive") && e.contains("run `agentbox prepare --provider daytona`"),
        "{e}"
    );
}

/// `prepare` again after a failed bake: Daytona removes the failed snapshot in the
/// background and its name stays taken meanwhile, so the new bake takes a name of its own
/// (and `--size` gives the snapshot those resources).
#[test]
fn a_rebake_never_reuses_a_name_being_removed() {
    let w = world();
    let home = w.home("h");
    let repo = git_repo(&w.host.dir.path().join("proj"), "rebaked\n");
    let prepare = |extra: &[&str]| {
        w.host
            .command(
                &repo,
                &["prepare", "--provider", "daytona", "--agents", "none"],
            )
            .args(extra)
            .env("AGENTBOX_HOME", &home)
            .stdin(Stdio::null())
            .output_within(BUILD_LIMIT)
            .expect("prepare")
    };
    w.faults(&json!({"failNextSnapshot": "first bake broke", "snapshotRemovalMs": 60000}));
    let first = prepare(&["--size", "4-8-20"]);
    let said = String::from_utf8_lossy(&first.stderr);
    assert!(
        !first.status.success() && said.contains("first bake broke"),
        "{said}"
    );
    let snaps = w.raw("/snapshots?page=1&limit=100");
    let items = snaps["items"].as_array().expect("items").clone();
    assert_eq!(items.len(), 1, "{snaps}");
    assert_eq!(
        (&items[0]["cpu"], &items[0]["mem"], &items[0]["disk"]),
        (&json!(4), &json!(8), &json!(20)),
        "--size is the snapshot's resources"
    );

    w.faults(&json!({"failNextSnapshot": "second bake broke"}));
    let second = prepare(&["--size", "4-8-20"]);
    let said = String::from_utf8_lossy(&second.stderr);
    assert!(
        !second.status.success() && said.contains("second bake broke"),
        "the re-bake did not get to build: {said}"
    );
    assert!(!said.contains("already exists"), "{said}");
    let items = w.raw("/snapshots?page=1&limit=100")["items"]
        .as_array()
        .expect("items")
        .clone();
    let names: Vec<&str> = items.iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    assert_ne!(names[0], names[1]);
    assert!(
        names.iter().all(|n| n.starts_with("agentbox-base-")),
        "{names:?}"
    );
    // The failed first bake is on its way out (Daytona removes it in the background).
    assert!(items.iter().any(|s| s["state"] == "removing"), "{items:?}");
}

/// A 429's `Retry-After` is waited out (not the client's own shorter backoff); one longer
/// than a call should take ends the call with it.
#[test]
fn retry_after_is_honoured() {
    let w = world();
    let d = w.client();
    w.faults(&json!({"rateLimitNext": 1, "retryAfterSecs": 1}));
    let t = Instant::now();
    rt().block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect("after the wait");
    assert!(t.elapsed() >= Duration::from_secs(1), "{:?}", t.elapsed());

    w.faults(&json!({"rateLimitNext": 1, "retryAfterSecs": 600}));
    let t = Instant::now();
    let e = rt()
        .block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect_err("too long to wait");
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
    assert!(e.to_string().contains("try again in 600 s"), "{e}");
}

/// A create whose answer was lost is found although Daytona's list shows it only later
/// (eventual consistency), and at once by name when it has one — never made twice.
#[test]
fn a_lost_create_is_found_though_the_list_lags() {
    let w = world();
    let d = w.client();
    w.faults(&json!({"slowCreateMs": 1500, "listLagMs": 2500}));
    let s = rt()
        .block_on(d.create_sandbox(CreateSandbox::default()))
        .expect("found once listed");
    let named = rt()
        .block_on(d.create_sandbox(CreateSandbox {
            name: Some("agentbox-named-1".into()),
            ..CreateSandbox::default()
        }))
        .expect("found by name");
    assert_eq!(named.name, "agentbox-named-1");
    w.faults(&json!({"slowCreateMs": 0, "listLagMs": 0}));
    let all = rt()
        .block_on(d.list_sandboxes(&BTreeMap::new()))
        .expect("list");
    assert_eq!(all.len(), 2, "a create was sent twice: {all:?}");
    assert!(all.iter().any(|x| x.id == s.id));
}

/// Daytona may hand out `storageUrl` without a scheme (its spec's example has none): the
/// build context still goes, over HTTPS; a throttled storage is waited out (`Retry-After`).
#[test]
fn a_schemeless_storage_url_is_https() {
    let w = world();
    let d = w.client();
    w.faults(&json!({"schemelessStorageUrl": true}));
    let access = rt().block_on(d.push_access()).expect("push access");
    assert!(
        !access.storage_url.contains("://"),
        "{}",
        access.storage_url
    );
    let hash = rt()
        .block_on(d.push_context(b"a build context"))
        .expect("pushed");
    // A throttled object storage (429 with Retry-After) is waited out, not a failure.
    w.faults(&json!({"s3ThrottleNext": 2, "retryAfterSecs": 1}));
    let t = Instant::now();
    let other = rt()
        .block_on(d.push_context(b"another build context"))
        .expect("pushed after the throttle");
    assert!(t.elapsed() >= Duration::from_secs(2), "{:?}", t.elapsed());
    assert_ne!(other, hash);
    // There now: a second push finds it.
    assert_eq!(
        rt().block_on(d.push_context(b"a build context"))
            .expect("again"),
        hash
    );
}

/// `--size`/`box.sizeDaytona` where Daytona takes resources: a size other than the
/// snapshot's builds the box from the snapshot's Dockerfile with those resources (a create
/// from a snapshot takes none); the snapshot's own size boots the snapshot; a checkpoint,
/// which has no Dockerfile, refuses another size in words.
#[test]
fn a_box_of_another_size_is_built_from_the_snapshots_dockerfile() {
    let base = agentbox_tests::docker_base_image();
    let w = world();
    let home = w.home("h");
    let d = w.client();
    let dockerfile = format!("FROM {base}\nCMD [\"sleep\", \"infinity\"]\n");
    rt().block_on(async {
        d.create_snapshot(&agentbox::daytona::CreateSnapshot {
            name: "agentbox-base-sized".into(),
            build_info: Some(agentbox::daytona::BuildInfo {
                dockerfile_content: dockerfile.clone(),
                context_hashes: vec![],
            }),
            cpu: Some(2),
            memory: Some(4),
            disk: Some(8),
            ..Default::default()
        })
        .await
        .expect("snapshot");
        d.wait_snapshot("agentbox-base-sized", Duration::from_secs(120), &|_| {})
            .await
            .expect("active");
    });
    let label = agentbox::provider::docker::home_label(&home);
    let size = |s: &str| Some(s.parse::<agentbox::provider::Size>().expect("size"));

    // The containers the fake runs for these boxes go with `w`, even if an assertion
    // fails.
    let same = DaytonaBox::new("same", &home).expect("box");
    same.create("agentbox-base-sized", "t", &label, size("2-4-8"))
        .expect("create");
    let s = w.sandbox_of("same", &home);
    assert_eq!(s["snapshot"], "agentbox-base-sized", "{s}");

    let big = DaytonaBox::new("big", &home).expect("box");
    big.create("agentbox-base-sized", "t", &label, size("4-8-20"))
        .expect("create");
    let s = w.sandbox_of("big", &home);
    assert_eq!(
        (&s["cpu"], &s["memory"], &s["disk"]),
        (&json!(4), &json!(8), &json!(20)),
        "{s}"
    );
    assert_eq!(
        s["buildInfo"]["dockerfileContent"],
        dockerfile.as_str(),
        "{s}"
    );
    rt().block_on(d.wait_for_state(
        s["id"].as_str().expect("id"),
        "started",
        Duration::from_secs(120),
    ))
    .expect("the built box starts");

    // A checkpoint has no Dockerfile: another size is refused, saying why.
    same.checkpoint("agentbox-ckpt-sized").expect("checkpoint");
    let other = DaytonaBox::new("other", &home).expect("box");
    let e = format!(
        "{:#}",
        other
            .create("agentbox-ckpt-sized", "t", &label, size("8-16-40"))
            .expect_err("no Dockerfile")
    );
    assert!(e.contains("box size 8-16-40 cannot be applied"), "{e}");
    for b in [same, big] {
        b.remove().expect("remove");
    }
}

/// Daytona creates a sandbox it has recorded whether or not the client waits for the answer:
/// a create whose client hangs up as soon as the sandbox exists (an interrupted `resync`)
/// still settles, so the client's clean-up can delete it. (The fake once left it `creating`
/// for ever: the rest of its create ran inside the request and died with the connection.)
#[test]
fn a_create_whose_client_hangs_up_still_settles() {
    let w = world();
    // A snapshot whose image is in no engine: the fake looks for it (a docker call, the
    // window a hang-up fell into) and makes a record without a container.
    let d = w.client();
    rt().block_on(async {
        d.create_snapshot(&agentbox::daytona::CreateSnapshot {
            name: "hang-up".into(),
            image_name: Some("agentbox-nowhere:1".into()),
            ..Default::default()
        })
        .await
        .expect("snapshot");
        d.wait_snapshot("hang-up", Duration::from_secs(10), &|_| {})
            .await
            .expect("active");
    });
    let id = rt().block_on(async {
        let api = w.host.api.clone();
        let create = tokio::spawn(async move {
            agentbox_tests::fake_tls::http_client()
                .post(format!("{api}/sandbox"))
                .bearer_auth(KEY)
                .json(&json!({"name": "hung-up", "snapshot": "hang-up"}))
                .send()
                .await
        });
        // Hang up the moment the sandbox is listed.
        let deadline = Instant::now() + Duration::from_secs(20);
        let id = loop {
            let listed = d.list_sandboxes(&BTreeMap::new()).await.expect("list");
            if let Some(s) = listed.first() {
                break s.id.clone();
            }
            assert!(
                Instant::now() < deadline,
                "the create never reached the fake"
            );
        };
        create.abort();
        id
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let state = w.raw(&format!("/sandbox/{id}"))["state"].clone();
        if state == "started" {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sandbox is still {state} 20 s after its client hung up"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
