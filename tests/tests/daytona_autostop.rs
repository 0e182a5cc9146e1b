//! Auto-stop against `daytona-fake`, which stops a started sandbox once its
//! `autoStopInterval` has passed without activity (a minute lasting 1 s here,
//! `DAYTONA_FAKE_MINUTE_MS`): the host's keeper reports activity while an agent of the box
//! is `working`, and nothing once none is, so the box stops billing when idle and is not
//! stopped under a working agent.

use std::path::Path;
use std::time::{Duration, Instant};

use agentbox::bridge::activity::keep_active;
use agentbox::daytona::{CreateSandbox, Daytona, Sandbox};
use agentbox_protocol::agent::{AgentState, AgentStatus};
use agentbox_tests::fake_tls::DaytonaFake;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// Records `state` for the box's one agent, as the bridge does when the box reports it.
fn report(states: &Path, state: AgentState, since_ms: u64) {
    let status = AgentStatus {
        session: "claude".parse().expect("session"),
        agent: "claude".into(),
        state,
        detail: None,
        since_ms,
    };
    let applied = agentbox::agents::apply(states, &status).expect("apply");
    assert!(applied.recorded, "{state:?} was not recorded");
}

/// A started sandbox with this auto-stop interval (minutes).
async fn started(d: &Daytona, minutes: u32) -> Sandbox {
    let s = d
        .create_sandbox(CreateSandbox {
            auto_stop_interval: Some(minutes),
            ..CreateSandbox::default()
        })
        .await
        .expect("create");
    d.wait_for_state(&s.id, "started", Duration::from_secs(5))
        .await
        .expect("started");
    s
}

fn state(s: &Sandbox) -> String {
    s.state.clone().unwrap_or_default()
}

/// The sandbox's `lastActivityAt` as Daytona's API gives it (an ISO 8601 string).
async fn last_activity(fake: &DaytonaFake, id: &str) -> String {
    let v: serde_json::Value = agentbox_tests::fake_tls::http_client()
        .get(format!("{}/sandbox/{id}", fake.api()))
        .bearer_auth("k")
        .send()
        .await
        .expect("get")
        .json()
        .await
        .expect("json");
    let at = v["lastActivityAt"]
        .as_str()
        .unwrap_or_else(|| panic!("no lastActivityAt: {v}"))
        .to_string();
    assert!(at.len() == 24 && at.ends_with('Z'), "not an ISO time: {at}");
    at
}

#[test]
fn a_working_agent_keeps_its_box_from_auto_stop_and_an_idle_box_stops() {
    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", "k"],
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "50"),
            ("DAYTONA_FAKE_MINUTE_MS", "1000"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let states = dir.path().join("agents.json");
    let d = Daytona::new(&fake.api(), "k", None);
    rt().block_on(async {
        let kept = started(&d, 1).await;
        let alone = started(&d, 1).await;
        let never = started(&d, 0).await;
        report(&states, AgentState::Working, 1);
        let _keeper = keep_active(
            d.clone(),
            kept.id.clone(),
            states.clone(),
            "kept".into(),
            Duration::from_millis(200),
        );
        // Three auto-stop intervals: the box nobody keeps stops, the kept one runs on, and
        // its lastActivityAt (an ISO time, so later is greater as text) moves.
        let first_activity = last_activity(&fake, &kept.id).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let now = d.get_sandbox(&kept.id).await.expect("get");
        assert_eq!(
            state(&now),
            "started",
            "the working agent's box was stopped"
        );
        let later = last_activity(&fake, &kept.id).await;
        assert!(later > first_activity, "{later} !> {first_activity}");
        assert_eq!(
            state(&d.get_sandbox(&alone.id).await.expect("get")),
            "stopped",
            "an idle box was not auto-stopped"
        );
        assert_eq!(
            state(&d.get_sandbox(&never.id).await.expect("get")),
            "started",
            "a box without auto-stop was stopped"
        );

        // The agent is done: nothing keeps the box any more; it stops about an interval
        // after its last activity.
        report(&states, AgentState::Idle, 2);
        let idle_at = Instant::now();
        d.wait_for_state(&kept.id, "stopped", Duration::from_secs(6))
            .await
            .expect("the idle box did not stop");
        let took = idle_at.elapsed();
        assert!(
            took >= Duration::from_millis(500),
            "stopped {took:?} after the agent went idle: too soon for a 1 s interval"
        );
    });
}

/// An attach is activity for as long as it is open: its output stream goes through the
/// preview proxy without the skip header (only the bridge's polls carry it), so an attached
/// box is not stopped under its user; once detached, it stops.
#[test]
fn an_open_attach_keeps_its_box_from_auto_stop() {
    use agentbox::attach::wire::Transport;
    use agentbox::attach::{run, Io, Options};
    use agentbox::transfer::client::{Relay, Remint};
    use agentbox_protocol::term::{TermEnd, TermSize};
    use std::sync::Arc;

    let fake = DaytonaFake::start(
        &["--port", "0", "--api-key", "k"],
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "50"),
            ("DAYTONA_FAKE_MINUTE_MS", "1000"),
        ],
    );
    let dir = tempfile::tempdir().expect("tempdir");
    for d in ["run", "state", "ws"] {
        std::fs::create_dir_all(dir.path().join(d)).expect("mkdir");
    }
    let tmux = std::process::Command::new("tmux")
        .arg("-S")
        .arg(dir.path().join("run/tmux.sock"))
        .args(["-f", "/dev/null", "new-session", "-d", "-s", "main", "sh"])
        .status()
        .expect("tmux");
    assert!(tmux.success(), "tmux new-session");
    let (mut relay_child, relay_port) = agentbox_tests::spawn_relay(dir.path(), &[]);
    let d = Daytona::new(&fake.api(), "k", None);
    let rt = rt();
    let id = rt.block_on(async {
        let s = started(&d, 1).await;
        agentbox_tests::fake_tls::http_client()
            .post(format!("{}/_fake/upstream", fake.root))
            .json(&serde_json::json!({"sandbox": s.id, "port": 8788, "target": format!("127.0.0.1:{relay_port}")}))
            .send()
            .await
            .expect("upstream");
        s.id
    });
    let link = rt.block_on(d.preview_link(&id, 8788)).expect("link");
    let (dd, sid) = (Arc::new(d.clone()), id.clone());
    let remint: Remint = Arc::new(move || {
        let (d, id) = (dd.clone(), sid.clone());
        Box::pin(async move { Ok(d.preview_link(&id, 8788).await?.token) })
    });
    let relay = Relay::new(&link.url, agentbox_tests::TEST_TOKEN).with_preview(&link.token, remint);
    let (keys_tx, keys) = tokio::sync::mpsc::unbounded_channel();
    let (_resize_tx, resizes) = tokio::sync::mpsc::unbounded_channel();
    let io = Io {
        keys,
        resizes,
        size: TermSize { cols: 80, rows: 24 },
        output: Box::new(|_| Ok(())),
        notice: Box::new(|_| {}),
    };
    let options = Options {
        session: Some("main".into()),
        shell: false,
        read_only: false,
        keep: Duration::from_secs(60),
        transport: Transport::Http,
        term: None,
    };
    let state_of = |id: &str| rt.block_on(d.get_sandbox(id)).map(|s| state(&s));
    let outcome = rt.block_on(async {
        // Bounded: an attach whose box was stopped under it would wait minutes for it.
        let attached = tokio::time::timeout(Duration::from_secs(15), run(&relay, &options, io));
        let watch = async {
            // Three auto-stop intervals attached and idle: still running.
            tokio::time::sleep(Duration::from_secs(3)).await;
            let now = d.get_sandbox(&id).await.expect("get");
            let _ = keys_tx.send(b"\x02d".to_vec());
            state(&now)
        };
        tokio::join!(attached, watch)
    });
    let (outcome, during) = outcome;
    assert_eq!(
        during, "started",
        "the box was stopped under an open attach"
    );
    let outcome = outcome.expect("the attach did not end after detaching");
    assert_eq!(outcome.expect("attach").end, TermEnd::Detached);
    // Detached: nothing is open, and the box stops.
    let mut now = String::new();
    for _ in 0..100 {
        now = state_of(&id).expect("get");
        if now == "stopped" {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(now, "stopped", "the box did not stop once detached");
    let _ = relay_child.kill();
    let _ = relay_child.wait();
    let _ = std::process::Command::new("tmux")
        .arg("-S")
        .arg(dir.path().join("run/tmux.sock"))
        .arg("kill-server")
        .status();
}
