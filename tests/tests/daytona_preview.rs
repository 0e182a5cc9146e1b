//! The host's relay client behind `daytona-fake`'s preview proxy: both tokens on every
//! call, a token that rotated (the sandbox was started again) renewed and the transfer
//! carried on, and attach falling back to HTTP streaming where the preview refuses
//! WebSocket upgrades (the fake's `passWebSockets: false`) and over WSS where it passes them.
//!
//! Past 600 lines: nine tests on one setup (a fake whose preview proxy fronts a relay
//! alone) and the helpers they share — the relay client with its renewal, a sandbox
//! restart, a recording attach — which no other suite uses.

use std::process::{Child, Command};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use agentbox::attach::wire::Transport;
use agentbox::attach::{Io, Options};
use agentbox::daytona::{CreateSandbox, Daytona, PreviewLink};
use agentbox::transfer::client::{Relay, Remint};
use agentbox_protocol::files::{DownloadRequest, LandRequest, TransferKind};
use agentbox_protocol::term::TermSize;
use agentbox_tests::fake_tls::DaytonaFake;
use agentbox_tests::{spawn_relay, TEST_TOKEN};

/// The relay, and the fake (both ended when dropped).
struct Procs {
    children: Vec<Child>,
    _fake: DaytonaFake,
}

impl Drop for Procs {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("rt")
}

/// The fake (over HTTPS), a started sandbox whose port 8788 is a real relay, and a Daytona
/// client. The fake's preview proxy caches no token verdict: a token that rotated is
/// refused at once (what Daytona does when its cached verdict of it has just expired).
fn setup(dir: &std::path::Path) -> (Procs, String, Daytona, String) {
    setup_on(dir, true, 0)
}

/// [`setup`], the fake over HTTPS or (`https` false) plain HTTP, its preview proxy keeping
/// a valid token's verdict `cache_ms` (Daytona: 2 minutes).
fn setup_on(dir: &std::path::Path, https: bool, cache_ms: u64) -> (Procs, String, Daytona, String) {
    let args = ["--port", "0", "--api-key", "test-key"];
    let cache_ms = cache_ms.to_string();
    let env = [
        ("DAYTONA_FAKE_TRANSITION_MS", "50"),
        ("DAYTONA_FAKE_PREVIEW_CACHE_MS", cache_ms.as_str()),
    ];
    let fake = if https {
        DaytonaFake::start(&args, &env)
    } else {
        DaytonaFake::start_with(&[&args[..], &["--plain-http"]].concat(), &env, "http")
    };
    let root = fake.root.clone();
    for d in ["run", "state", "ws"] {
        std::fs::create_dir_all(dir.join(d)).expect("mkdir");
    }
    let (relay, relay_port) = spawn_relay(dir, &[]);
    let mut d = Daytona::new(&format!("{root}/api"), "test-key", None);
    d.backoff = vec![Duration::from_millis(20); 3];
    let id = rt().block_on(async {
        let s = d.create_sandbox(CreateSandbox::default()).await.expect("create");
        d.wait_for_state(&s.id, "started", Duration::from_secs(5))
            .await
            .expect("started");
        agentbox_tests::fake_tls::http_client()
            .post(format!("{root}/_fake/upstream"))
            .json(&serde_json::json!({"sandbox": s.id, "port": 8788, "target": format!("127.0.0.1:{relay_port}")}))
            .send()
            .await
            .expect("upstream");
        s.id
    });
    let procs = Procs {
        children: vec![relay],
        _fake: fake,
    };
    (procs, root, d, id)
}

/// A tmux session `main` running `sh` on the relay's tmux socket (no config: prefix C-b).
fn tmux_session(dir: &std::path::Path) {
    std::fs::create_dir_all(dir.join("run")).expect("mkdir");
    let ok = Command::new("tmux")
        .arg("-S")
        .arg(dir.join("run/tmux.sock"))
        .args(["-f", "/dev/null", "new-session", "-d", "-s", "main", "sh"])
        .status()
        .expect("tmux")
        .success();
    assert!(ok, "tmux new-session");
}

/// Mints a new preview token from Daytona, counting the calls.
fn remint(d: &Daytona, id: &str, count: &Arc<AtomicU32>) -> Remint {
    let (d, id, count) = (Arc::new(d.clone()), id.to_string(), count.clone());
    Arc::new(move || {
        let (d, id, count) = (d.clone(), id.clone(), count.clone());
        Box::pin(async move {
            count.fetch_add(1, Ordering::SeqCst);
            Ok(d.preview_link(&id, 8788).await?.token)
        })
    })
}

/// A fresh preview link of sandbox `id`'s port 8788 and a relay client through it with its
/// token, renewing it from Daytona; the renewals are counted.
fn preview_relay(
    rt: &tokio::runtime::Runtime,
    d: &Daytona,
    id: &str,
) -> (Relay, PreviewLink, Arc<AtomicU32>) {
    let link = rt.block_on(d.preview_link(id, 8788)).expect("link");
    let reminted = Arc::new(AtomicU32::new(0));
    let relay =
        Relay::new(&link.url, TEST_TOKEN).with_preview(&link.token, remint(d, id, &reminted));
    (relay, link, reminted)
}

/// Stops sandbox `id` and starts it again on `rt`: Daytona rotates its preview token.
fn restart(rt: &tokio::runtime::Runtime, d: &Daytona, id: &str) {
    rt.block_on(async {
        d.stop_sandbox(id).await.expect("stop");
        d.wait_for_state(id, "stopped", Duration::from_secs(5))
            .await
            .expect("stopped");
        d.start_sandbox(id).await.expect("start");
        d.wait_for_state(id, "started", Duration::from_secs(5))
            .await
            .expect("started");
    });
}

/// Attaching to session `main` over `transport`, as `agentbox attach` does.
fn attach_options(transport: Transport) -> Options {
    Options {
        session: Some("main".into()),
        shell: false,
        read_only: false,
        keep: Duration::from_secs(60),
        transport,
        term: None,
    }
}

/// What an attach showed and said, and its keyboard.
struct Screen {
    /// Keys to type.
    keys: tokio::sync::mpsc::UnboundedSender<Vec<u8>>,
    /// Everything shown so far.
    seen: Arc<std::sync::Mutex<Vec<u8>>>,
    /// Its status lines.
    notices: Arc<std::sync::Mutex<Vec<String>>>,
    /// Kept open: no window-size change comes.
    _resizes: tokio::sync::mpsc::UnboundedSender<TermSize>,
}

impl Screen {
    /// Waits (up to 10 s) until `text` has been shown.
    fn wait_for(&self, text: &str) {
        for _ in 0..400 {
            if String::from_utf8_lossy(&self.seen.lock().expect("seen")).contains(text) {
                return;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        panic!("never saw {text}");
    }
}

/// An attach's 80x24 `Io` recording into a [`Screen`]; with `detach_on`, it types the
/// detach keys (C-b d) once that text is shown.
fn recording_io(detach_on: Option<&'static str>) -> (Io, Screen) {
    let (keys_tx, keys) = tokio::sync::mpsc::unbounded_channel();
    let (resizes_tx, resizes) = tokio::sync::mpsc::unbounded_channel();
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let notices = Arc::new(std::sync::Mutex::new(Vec::new()));
    let (s, n, detach) = (seen.clone(), notices.clone(), keys_tx.clone());
    let io = Io {
        keys,
        resizes,
        size: TermSize { cols: 80, rows: 24 },
        output: Box::new(move |b| {
            let mut seen = s.lock().expect("seen");
            seen.extend_from_slice(b);
            if detach_on.is_some_and(|t| String::from_utf8_lossy(&seen).contains(t)) {
                let _ = detach.send(b"\x02d".to_vec());
            }
            Ok(())
        }),
        notice: Box::new(move |line| n.lock().expect("notices").push(line.to_string())),
    };
    let screen = Screen {
        keys: keys_tx,
        seen,
        notices,
        _resizes: resizes_tx,
    };
    (io, screen)
}

#[test]
fn a_rotated_preview_token_is_renewed_and_the_transfer_carries_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, _root, d, id) = setup(dir.path());
    let rt = rt();
    let (relay, link, reminted) = preview_relay(&rt, &d, &id);
    assert!(link.url.starts_with("https://"), "{}", link.url);

    // Without the preview token, the proxy sends the client to its sign-in page, as
    // Daytona's does (and nothing reaches the relay); the redirect is not followed.
    let bare = Relay::new(&link.url, TEST_TOKEN);
    let refused = rt
        .block_on(bare.post_json::<_, serde_json::Value>("/v1/downloads", &serde_json::json!({})))
        .expect_err("no preview token");
    assert!(
        refused.to_string().contains("login page or redirect to")
            && refused.to_string().contains("/_auth/authorize"),
        "{refused}"
    );

    let file = dir.path().join("payload.bin");
    let payload: Vec<u8> = (0..3 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&file, &payload).expect("write");
    let land = |dest: &str| LandRequest {
        blake3: String::new(),
        size: 0,
        kind: TransferKind::File,
        dest: ".".into(),
        name: Some(dest.into()),
        mode: None,
    };
    let quiet = |_: u64, _: u64| {};
    let new_id = || agentbox_protocol::files::new_transfer_id().expect("id");
    rt.block_on(relay.upload(&new_id(), &file, land("one.bin"), &quiet))
        .expect("upload with the first token");

    // The sandbox is started again: Daytona rotates its preview token.
    restart(&rt, &d, &id);
    let rotated = rt.block_on(d.preview_link(&id, 8788)).expect("link");
    assert_ne!(rotated.token, link.token);

    rt.block_on(relay.upload(&new_id(), &file, land("two.bin"), &quiet))
        .expect("upload after the rotation");
    assert_eq!(
        std::fs::read(dir.path().join("ws/two.bin")).expect("landed"),
        payload
    );
    assert_eq!(
        reminted.load(Ordering::SeqCst),
        1,
        "the token was not renewed exactly once"
    );

    // A download through the proxy with the renewed token.
    let req = DownloadRequest {
        path: "two.bin".into(),
        files: None,
    };
    let part = dir.path().join("back.part");
    let info = rt
        .block_on(relay.start_download(&req))
        .expect("start download");
    rt.block_on(relay.download(&req, info, &part, 1 << 30, &quiet))
        .expect("download");
    assert_eq!(std::fs::read(&part).expect("part"), payload);
}

/// The bridge token goes in `x-agentbox-token`: Daytona's proxy takes a bearer token for a
/// Daytona API key (sends it to Daytona's API to check it), and the fake drops one that is
/// not, so a bridge token sent as a bearer never reaches the relay.
#[test]
fn the_bridge_token_travels_in_our_header_not_as_a_bearer_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, _root, d, id) = setup(dir.path());
    let rt = rt();
    let (relay, link, reminted) = preview_relay(&rt, &d, &id);
    let names: Vec<&str> = relay.auth_headers().iter().map(|(n, _)| *n).collect();
    assert_eq!(names, ["x-agentbox-token", "x-daytona-preview-token"]);
    let poll = "/v1/bridge/poll?wait_ms=0&max=1";
    let status = rt.block_on(async {
        relay
            .request(reqwest::Method::GET, poll)
            .send()
            .await
            .expect("poll")
            .status()
    });
    assert_eq!(status, 200);
    // The same token as a bearer, with a good preview token: the proxy lets the request in
    // but not the bearer, and the relay refuses it.
    let (status, body) = rt.block_on(async {
        let r = agentbox_tests::fake_tls::http_client()
            .get(format!("{}{poll}", link.url))
            .bearer_auth(TEST_TOKEN)
            .header("x-daytona-preview-token", &link.token)
            .send()
            .await
            .expect("poll");
        (
            r.status(),
            r.json::<serde_json::Value>().await.unwrap_or_default(),
        )
    });
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], "unauthorized", "{body}");
    assert_eq!(reminted.load(Ordering::SeqCst), 0);
}

#[test]
fn attach_through_a_private_preview_falls_back_to_http_streaming() {
    use agentbox::attach::run;
    use agentbox_protocol::term::TermEnd;
    let dir = tempfile::tempdir().expect("tempdir");
    tmux_session(dir.path());
    let (_procs, root, d, id) = setup(dir.path());
    set_websockets(&root, false);
    let rt = rt();
    let (relay, _link, _reminted) = preview_relay(&rt, &d, &id);
    let (io, screen) = recording_io(Some("via-http-42"));
    // Queued before the first connection: typed once the viewer is up.
    screen
        .keys
        .send(b"echo via-http-$((6*7))\n".to_vec())
        .expect("keys");
    let options = attach_options(Transport::Auto);
    let outcome = rt.block_on(run(&relay, &options, io)).expect("attach");
    assert_eq!(outcome.end, TermEnd::Detached);
    assert_eq!(outcome.transport, Transport::Http);
    let notices = screen.notices.lock().expect("notices").clone();
    assert!(
        notices.iter().any(|n| n.contains("refused WebSocket (307")),
        "{notices:?}"
    );
}

/// Sets the fake's `passWebSockets` (on by default): whether its preview proxy passes
/// WebSocket upgrades on or turns them away with a `307`.
fn set_websockets(root: &str, pass: bool) {
    rt().block_on(async {
        agentbox_tests::fake_tls::http_client()
            .post(format!("{root}/_fake/faults"))
            .json(&serde_json::json!({"passWebSockets": pass}))
            .send()
            .await
            .expect("faults");
    });
}

/// `attach --transport ws` to session `main` through `relay`: types a command, waits for
/// its output, detaches.
fn attach_over_ws(relay: &Relay) -> agentbox::attach::Outcome {
    let (io, screen) = recording_io(Some("via-wss-42"));
    screen
        .keys
        .send(b"echo via-wss-$((6*7))\n".to_vec())
        .expect("keys");
    let options = attach_options(Transport::Ws);
    rt().block_on(agentbox::attach::run(relay, &options, io))
        .expect("attach")
}

/// Where the preview proxy passes WebSockets on, attach takes `wss://` through it: the
/// upgrade over TLS with the host's TLS configuration, both tokens on the upgrade request.
#[test]
fn attach_over_wss_where_the_preview_passes_websockets() {
    use agentbox_protocol::term::TermEnd;
    let dir = tempfile::tempdir().expect("tempdir");
    tmux_session(dir.path());
    let (_procs, root, d, id) = setup(dir.path());
    set_websockets(&root, true);
    let (relay, link, reminted) = preview_relay(&rt(), &d, &id);
    assert!(link.url.starts_with("https://"), "{}", link.url);
    let outcome = attach_over_ws(&relay);
    assert_eq!(outcome.end, TermEnd::Detached);
    assert_eq!(outcome.transport, Transport::Ws);
    assert_eq!(reminted.load(Ordering::SeqCst), 0);
}

/// `attach --transport ws` across a restart of the sandbox: the stop ends the WebSocket,
/// and the reconnect's upgrade, with the token minted before the start, gets the proxy's
/// `307` to its sign-in page; the client renews the token and the WebSocket opens again
/// with the new one, the session going on.
#[test]
fn attach_over_wss_renews_a_stale_preview_token() {
    use agentbox::attach::run;
    use agentbox_protocol::term::TermEnd;
    let dir = tempfile::tempdir().expect("tempdir");
    tmux_session(dir.path());
    let (_procs, root, d, id) = setup(dir.path());
    set_websockets(&root, true);
    let (relay, link, reminted) = preview_relay(&rt(), &d, &id);
    let (io, screen) = recording_io(None);
    let options = attach_options(Transport::Ws);
    let viewer = std::thread::spawn(move || rt().block_on(run(&relay, &options, io)));
    screen
        .keys
        .send(b"echo before-$((6*7))\n".to_vec())
        .expect("keys");
    screen.wait_for("before-42");
    restart(&rt(), &d, &id);
    let fresh = rt().block_on(d.preview_link(&id, 8788)).expect("link");
    assert_ne!(
        fresh.token, link.token,
        "the start did not rotate the token"
    );
    screen
        .keys
        .send(b"echo after-$((6*7+1))\n".to_vec())
        .expect("keys");
    screen.wait_for("after-43");
    screen.keys.send(b"\x02d".to_vec()).expect("keys");
    let outcome = viewer.join().expect("viewer").expect("attach");
    assert_eq!(outcome.end, TermEnd::Detached);
    assert_eq!(outcome.transport, Transport::Ws);
    assert!(
        outcome.resumed >= 1,
        "the WebSocket never broke: {outcome:?}"
    );
    assert_eq!(
        reminted.load(Ordering::SeqCst),
        1,
        "renewed other than once"
    );
}

#[test]
fn an_attach_survives_a_restart_that_rotates_the_preview_token() {
    use agentbox::attach::run;
    use agentbox_protocol::term::{TermEnd, TermInfo};
    let dir = tempfile::tempdir().expect("tempdir");
    tmux_session(dir.path());
    let (_procs, _root, d, id) = setup(dir.path());
    let (relay, _link, reminted) = preview_relay(&rt(), &d, &id);
    let (io, screen) = recording_io(None);
    let options = attach_options(Transport::Http);
    let viewer = {
        let relay = relay.clone();
        std::thread::spawn(move || rt().block_on(run(&relay, &options, io)))
    };
    screen
        .keys
        .send(b"echo before-$((6*7))\n".to_vec())
        .expect("keys");
    screen.wait_for("before-42");
    restart(&rt(), &d, &id);
    screen
        .keys
        .send(b"echo after-$((6*7+1))\n".to_vec())
        .expect("keys");
    screen.wait_for("after-43");
    screen.keys.send(b"\x02d".to_vec()).expect("keys");
    let outcome = viewer.join().expect("viewer").expect("attach");
    assert_eq!(outcome.end, TermEnd::Detached);
    assert_eq!(outcome.reopened, 0, "{outcome:?}");
    assert!(
        reminted.load(Ordering::SeqCst) >= 1,
        "the token was never renewed"
    );
    // Every byte, once: the relay's own count and digest of the term's output.
    let info: TermInfo = rt().block_on(async {
        agentbox_tests::fake_tls::http_client()
            .get(format!(
                "http://127.0.0.1:{}/v1/terms/{}",
                relay_port(dir.path()),
                outcome.term_id
            ))
            .bearer_auth(TEST_TOKEN)
            .send()
            .await
            .expect("info")
            .json()
            .await
            .expect("json")
    });
    assert_eq!(
        (outcome.received, outcome.digest),
        (info.produced, info.digest)
    );
}

/// The relay's bridge port, from its `relay.json`.
fn relay_port(dir: &std::path::Path) -> u64 {
    let v: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("run/relay.json")).expect("relay.json"))
            .expect("json");
    v["bridge_port"].as_u64().expect("port")
}

/// 1000 sequential relay calls through the fake's HTTPS preview proxy, as the bridge makes
/// them (one `Relay` kept): the connection is reused, so the fake sees at most 2 TLS
/// handshakes. Also prints the p50 of a call over HTTPS and over plain HTTP.
#[test]
fn a_thousand_relay_calls_through_the_https_preview_reuse_the_connection() {
    let mut p50 = Vec::new();
    for https in [true, false] {
        let dir = tempfile::tempdir().expect("tempdir");
        let (_procs, root, d, id) = setup_on(dir.path(), https, 0);
        let rt = rt();
        let (relay, _link, _reminted) = preview_relay(&rt, &d, &id);
        let stats_client = agentbox_tests::fake_tls::http_client();
        let stats = |what: &str| -> u64 {
            rt.block_on(async {
                let v: serde_json::Value = stats_client
                    .get(format!("{root}/_fake/stats"))
                    .send()
                    .await
                    .expect("stats")
                    .json()
                    .await
                    .expect("stats json");
                v[what].as_u64().expect("a count")
            })
        };
        let (handshakes, connections) = (stats("handshakes"), stats("connections"));
        let mut took = rt.block_on(async {
            let mut took = Vec::with_capacity(1000);
            for _ in 0..1000 {
                let at = std::time::Instant::now();
                let answer = relay
                    .request(reqwest::Method::GET, "/healthz")
                    .send()
                    .await
                    .expect("healthz");
                assert!(answer.status().is_success(), "{}", answer.status());
                answer.bytes().await.expect("body");
                took.push(at.elapsed());
            }
            took
        });
        let made = stats("connections") - connections;
        let shook = stats("handshakes") - handshakes;
        took.sort();
        let median = took[took.len() / 2];
        eprintln!(
            "{}: 1000 relay calls through the preview proxy: {made} new connections, \
             {shook} TLS handshakes, p50 {median:?}, p99 {:?}",
            if https { "https" } else { "http" },
            took[took.len() * 99 / 100]
        );
        assert!(made <= 2, "{made} new connections for 1000 calls");
        if https {
            assert!(shook <= 2, "{shook} TLS handshakes for 1000 calls");
            assert!(shook >= 1, "the relay calls did not go over TLS");
        }
        p50.push(median);
    }
    eprintln!("p50 https {:?} vs http {:?}", p50[0], p50[1]);
}

/// Daytona's proxy caches a valid token's verdict (2 minutes; here 1.5 s): after a start
/// rotated the token, the old one still passes until its verdict expires, and then gets
/// the sign-in redirect. The host's relay client goes through both: every call succeeds,
/// and the token is renewed once, when the proxy first refuses it.
#[test]
fn a_rotated_token_passes_while_the_proxy_caches_it_and_is_renewed_after() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, _root, d, id) = setup_on(dir.path(), true, 1500);
    let rt = rt();
    let (relay, link, reminted) = preview_relay(&rt, &d, &id);
    let file = dir.path().join("small.txt");
    std::fs::write(&file, "small\n").expect("write");
    let quiet = |_: u64, _: u64| {};
    let call = || {
        let id = agentbox_protocol::files::new_transfer_id().expect("id");
        let land = LandRequest {
            blake3: String::new(),
            size: 0,
            kind: TransferKind::File,
            dest: ".".into(),
            name: Some(format!("{id}.txt")),
            mode: None,
        };
        rt.block_on(relay.upload(&id, &file, land, &quiet))
            .expect("an upload through the preview proxy");
    };
    // The proxy checks the token now and keeps its verdict.
    let checked = std::time::Instant::now();
    call();
    restart(&rt, &d, &id);
    let rotated = rt.block_on(d.preview_link(&id, 8788)).expect("link");
    assert_ne!(
        rotated.token, link.token,
        "the start did not rotate the token"
    );
    // The old token, sent by hand: it still passes while its verdict is cached.
    let by_hand = |token: &str| {
        rt.block_on(async {
            agentbox::tls::preview_client()
                .get(format!("{}/healthz", link.url))
                .header("x-daytona-preview-token", token)
                .send()
                .await
                .expect("healthz")
                .status()
        })
    };
    assert!(
        checked.elapsed() < Duration::from_millis(1500),
        "the restart took longer than the cache window"
    );
    assert_eq!(by_hand(&link.token), 200, "the cached verdict was not kept");
    // The relay client keeps calling through the window and past it.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while reminted.load(Ordering::SeqCst) == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the stale token was never refused"
        );
        call();
    }
    assert!(
        checked.elapsed() >= Duration::from_millis(1500),
        "renewed before the cached verdict expired"
    );
    assert_eq!(by_hand(&link.token), 307, "the stale token still passes");
    call();
    assert_eq!(
        reminted.load(Ordering::SeqCst),
        1,
        "renewed other than once"
    );
}

/// The other forms Daytona's proxy takes a preview token in: query parameter
/// `DAYTONA_SANDBOX_AUTH_KEY` (taken out of the query before the box sees it), and the
/// sign-in cookie a signed link sets, which passes for an hour even once the link itself
/// has expired (Daytona checks the cookie before the signed token).
#[test]
fn the_preview_token_also_passes_as_a_query_parameter_and_a_signed_link_sets_a_cookie() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_procs, _root, d, id) = setup(dir.path());
    let rt = rt();
    let link = rt.block_on(d.preview_link(&id, 8788)).expect("link");
    // The host's client for preview URLs: it does not follow the sign-in redirect.
    let http = agentbox::tls::preview_client();
    let get = |url: String, cookie: Option<&str>| {
        rt.block_on(async {
            let mut r = http.get(url);
            if let Some(c) = cookie {
                r = r.header("cookie", c);
            }
            let answer = r.send().await.expect("get");
            let cookie = answer
                .headers()
                .get("set-cookie")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            (answer.status().as_u16(), cookie)
        })
    };
    let healthz = format!("{}/healthz", link.url);
    assert_eq!(get(healthz.clone(), None).0, 307, "no token passed");
    assert_eq!(
        get(format!("{healthz}?DAYTONA_SANDBOX_AUTH_KEY=wrong"), None).0,
        307,
        "a wrong token passed"
    );
    assert_eq!(
        get(
            format!("{healthz}?DAYTONA_SANDBOX_AUTH_KEY={}", link.token),
            None
        )
        .0,
        200
    );

    let signed = rt
        .block_on(d.signed_preview_link(&id, 8788, Duration::from_secs(1)))
        .expect("signed link");
    let (status, cookie) = get(format!("{}/healthz", signed.url), None);
    assert_eq!(status, 200);
    let cookie = cookie.expect("the signed link set no cookie");
    let prefix = format!("daytona-sandbox-auth-{}=", signed.token);
    assert!(
        cookie.starts_with(&prefix)
            && cookie.contains("Max-Age=3600")
            && cookie.contains("HttpOnly"),
        "{cookie}"
    );
    let pair = cookie.split(';').next().expect("name=value").to_string();
    // Once the signed link has expired, it alone no longer passes; with its cookie it does.
    let expired = std::time::Instant::now() + Duration::from_millis(1100);
    while std::time::Instant::now() < expired {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(format!("{}/healthz", signed.url), None).0, 307);
    assert_eq!(get(format!("{}/healthz", signed.url), Some(&pair)).0, 200);
    // A cookie of the fake's making only: a made-up value does not pass.
    assert_eq!(
        get(
            format!("{}/healthz", signed.url),
            Some(&format!("{prefix}made-up"))
        )
        .0,
        307
    );
}
