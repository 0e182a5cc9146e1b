//! The browser and the screen of a box made from an image with `prepare --browser`: on
//! the docker provider, a Playwright script run in the box drives Debian's Chromium
//! against a page a service of the same box serves; the agents' Playwright MCP server
//! (from Claude Code's configuration) opens it too; the screen's units are services of the
//! box; and headless Chromium on this machine opens `agentbox screen`'s address and sees
//! the box's browser in noVNC's canvas (not one colour). A box without the browser is told
//! how to get one. Then the same through the Daytona fake's signed preview link of port
//! 6080, noVNC's WebSocket carried by its preview proxy (its snapshot is built from the
//! docker build's cached layers). A teammate who joined the box (`share`/`join`) gets its
//! screen too: the same address on docker, a link its owner minted on Daytona.
//!
//! Needs a running Docker engine, the offline base image and `chromium` (`scripts/test`).
//! The browser image is built once per machine (`prepare` finds it by its inputs).

#[allow(dead_code)]
mod docker_common;

use std::collections::HashMap;
use std::io::BufRead;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use agentbox_tests::daytona_host::{git_repo, DaytonaHost};
use agentbox_tests::run::TimedOutput;
use docker_common::Host;
use futures_util::{SinkExt, StreamExt};

/// The project's services: a page on :3000, exposed.
const AGENTBOX_YAML: &str = r#"services:
  web:
    command: >-
      exec node -e "require('http').createServer((q, s) => { s.setHeader('content-type', 'text/html');
      s.end('<html><title>Box page</title><body style=\"background:#fff\"><h1 id=m style=\"font-size:96px\">Hello from the box</h1></body></html>'); }).listen(3000, '127.0.0.1')"
    ready_when:
      port: 3000
    expose:
      port: 3000
"#;

/// The Playwright script: Chromium (headed, on the box's display), the page, its text on
/// stdout; with `--stay`, the browser stays open on it.
const CHECK_JS: &str = r"const { chromium } = require('playwright');
(async () => {
  const browser = await chromium.launch({ headless: false });
  const page = await browser.newPage({ viewport: { width: 1200, height: 700 } });
  await page.goto('http://127.0.0.1:3000/');
  console.log('text: ' + (await page.textContent('#m')));
  if (!process.argv.includes('--stay')) await browser.close();
})().catch((e) => { console.error(e); process.exit(1); });
";

/// The agents' Playwright MCP server, as Claude Code's configuration names it, asked over
/// stdio to open the page given: its answer on stdout.
const MCP_JS: &str = r"const { spawn } = require('child_process');
const fs = require('fs');
const config = JSON.parse(fs.readFileSync(process.env.HOME + '/.claude.json', 'utf8'));
const server = config.mcpServers.playwright;
const child = spawn(server.command, server.args, { stdio: ['pipe', 'pipe', 'inherit'] });
const send = (m) => child.stdin.write(JSON.stringify(m) + '\n');
let buf = '';
child.stdout.on('data', (d) => {
  buf += d;
  let nl;
  while ((nl = buf.indexOf('\n')) >= 0) {
    const line = buf.slice(0, nl); buf = buf.slice(nl + 1);
    const msg = JSON.parse(line);
    if (msg.id === 1) {
      send({ jsonrpc: '2.0', method: 'notifications/initialized' });
      send({ jsonrpc: '2.0', id: 2, method: 'tools/call', params: { name: 'browser_navigate', arguments: { url: process.argv[2] } } });
    } else if (msg.id === 2) {
      console.log(JSON.stringify(msg.result));
      child.kill();
      process.exit(msg.result && !msg.result.isError ? 0 : 1);
    }
  }
});
send({ jsonrpc: '2.0', id: 1, method: 'initialize', params: { protocolVersion: '2025-06-18', capabilities: {}, clientInfo: { name: 'check', version: '1' } } });
";

/// Evaluated in noVNC's page: resolves once its canvas shows a picture (more than one
/// colour, and the box browser's white page), with what it saw; rejects after 25 s.
const CANVAS_JS: &str = r"new Promise((resolve, reject) => {
  const deadline = Date.now() + 25000;
  const look = () => {
    const c = document.querySelector('#noVNC_container canvas') || document.querySelector('canvas');
    const status = document.getElementById('noVNC_status');
    let seen = 'no canvas (status: ' + (status ? status.textContent : 'none') + ')';
    if (c && c.width > 0 && c.height > 0) {
      const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
      const colours = new Set();
      let white = 0;
      for (let i = 0; i < d.length; i += 4) {
        colours.add((d[i] << 16) | (d[i + 1] << 8) | d[i + 2]);
        if (d[i] > 240 && d[i + 1] > 240 && d[i + 2] > 240) white++;
      }
      seen = c.width + 'x' + c.height + ', ' + colours.size + ' colours, ' + white + ' white';
      if (colours.size > 1 && white > 10000) return resolve(seen);
    }
    if (Date.now() > deadline) {
      const loaded = performance.getEntriesByType('resource')
        .map((r) => r.name.split('?')[0].split('/').slice(-2).join('/') + ':' + (r.responseStatus || 0));
      return reject(new Error('the canvas shows no picture: ' + seen + '; loaded: ' + loaded.join(' ')));
    }
    setTimeout(look, 200);
  };
  look();
})";

#[test]
fn a_browser_box_runs_playwright_and_its_screen_shows_the_browser() {
    docker_box();
    // After the docker build: the snapshot's layers are in the engine's cache.
    daytona_box();
}

/// Writes the browser box's project files into `repo` and commits them.
fn add_project_files(repo: &std::path::Path) {
    std::fs::write(repo.join("agentbox.yaml"), AGENTBOX_YAML).expect("write");
    std::fs::write(repo.join("check.js"), CHECK_JS).expect("write");
    std::fs::write(repo.join("mcp.js"), MCP_JS).expect("write");
    docker_common::git(repo, &["add", "."]);
    docker_common::git(
        repo,
        &[
            "-c",
            "user.email=t@example.com",
            "-c",
            "user.name=T",
            "commit",
            "-qm",
            "browser",
        ],
    );
}

/// The Daytona fake: `screen` is a signed preview link of 6080 that serves noVNC's page.
fn daytona_box() {
    let base = agentbox_tests::docker_base_image();
    let data = tempfile::tempdir().expect("tempdir");
    let data_dir = data.path().to_string_lossy().into_owned();
    let host = DaytonaHost::start(
        "dtn_e2e0123456789abcdef",
        &[
            ("DAYTONA_FAKE_TRANSITION_MS", "100"),
            ("DAYTONA_FAKE_DATA", &data_dir),
        ],
    );
    let repo = git_repo(&host.dir.path().join("proj"), "screen\n");
    add_project_files(&repo);
    host.login(&repo);
    host.ok(
        &repo,
        &[
            "prepare",
            "--provider",
            "daytona",
            "--base-image",
            &base,
            "--agents",
            "none",
            "--browser",
        ],
    );
    let name = format!("dyscreen{}", std::process::id());
    host.ok(&repo, &["daytona", "create", "--name", &name]);
    host.ok(
        &repo,
        &["exec", "-d", &name, "--", "node", "check.js", "--stay"],
    );
    let url = host.ok(&repo, &["screen", &name, "--ttl", "2h"]);
    let url = url.trim();
    assert!(
        url.contains("/6080-") && url.contains("/vnc.html?autoconnect=1&resize=scale"),
        "{url}"
    );
    // noVNC's WebSocket goes through the fake's preview proxy on the signed link too.
    let trust = trust_fake_ca();
    let seen = canvas_of(url, &[&trust]);
    eprintln!("noVNC canvas through the Daytona fake: {seen}");

    // A teammate who joined the box sees it through the link its owner minted at share
    // time (no Daytona credentials of theirs).
    let invite = host.ok(&repo, &["share", &name]);
    let mate = Mate::new();
    mate.ok(&["join", invite.trim(), "--name", "theirs"]);
    let theirs = mate.ok(&["screen", "theirs"]);
    let theirs = theirs.trim();
    assert!(
        theirs.contains("/6080-") && theirs.contains("/vnc.html?autoconnect=1") && theirs != url,
        "{theirs}"
    );
    let seen = canvas_of(theirs, &[&trust]);
    eprintln!("noVNC canvas of the teammate's link: {seen}");
}

/// A second `AGENTBOX_HOME`, a teammate's machine, where boxes are joined.
struct Mate {
    dir: tempfile::TempDir,
}

impl Mate {
    fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// `agentbox ARGS` in this home, without stdin.
    fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(agentbox_tests::bin_path("agentbox"))
            .args(args)
            .current_dir(self.dir.path())
            .env("AGENTBOX_HOME", self.dir.path().join("home"))
            .stdin(Stdio::null())
            .timed_output()
            .expect("agentbox")
    }

    /// The stdout of `agentbox ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Mate {
    fn drop(&mut self) {
        let _ = self.run(&["bridge", "stop"]);
    }
}

/// The Chromium flag that has it accept the fake's certificates: the fake CA's public key
/// hash (what `--ignore-certificate-errors-spki-list` matches in a chain), as a user's
/// browser trusts a CA it was given.
fn trust_fake_ca() -> String {
    let ca = agentbox_tests::fake_tls::shared_ca().cert.clone();
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "openssl x509 -in \"$1\" -pubkey -noout | openssl pkey -pubin -outform der \
             | openssl dgst -sha256 -binary | openssl base64 -A",
        )
        .arg("sh")
        .arg(&ca)
        .timed_output()
        .expect("openssl");
    let hash = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(
        out.status.success() && hash.len() == 44,
        "the fake CA's key hash: {hash}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    format!("--ignore-certificate-errors-spki-list={hash}")
}

/// The docker provider: the plain box told what to do, the browser box's Playwright and
/// its screen through the WebProxy.
fn docker_box() {
    let base = agentbox_tests::docker_base_image();
    let host = Host::new();
    let repo = host.project("proj");

    // A box of an image without the browser is told how to get one.
    host.prepare(&repo);
    let plain = format!("plain{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &plain]);
    let refused = host.run(&repo, &["screen", &plain]);
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("has no screen")
            && why.contains("agentbox prepare --provider docker --browser"),
        "{why}"
    );
    // Nor has a teammate's view of it: the invite carries no screen.
    let invite = host.ok(&repo, &["share", &plain]);
    let mate = Mate::new();
    mate.ok(&["join", invite.trim(), "--name", "plainmate"]);
    let refused = mate.run(&["screen", "plainmate"]);
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        !refused.status.success() && why.contains("carries no screen"),
        "{why}"
    );
    host.ok(&repo, &["destroy", "-y", "--force", &plain]);

    // The project of the browser box: a page, and the script that checks it.
    add_project_files(&repo);
    let tag = host.ok(
        &repo,
        &[
            "prepare",
            "--provider",
            "docker",
            "--base-image",
            &base,
            "--agents",
            "browser",
        ],
    );
    let label = docker_common::docker(&[
        "image",
        "inspect",
        "-f",
        "{{index .Config.Labels \"dev.agentbox.browser\"}}",
        tag.trim(),
    ]);
    assert_eq!(String::from_utf8_lossy(&label.stdout).trim(), "yes");
    let name = format!("screen{}", std::process::id());
    host.ok(&repo, &["create", "--provider", "docker", "--name", &name]);

    // The screen's parts are services of the box.
    let services = host.ok(&repo, &["services", &name]);
    for unit in ["agentbox-display", "agentbox-wm", "agentbox-screen"] {
        assert!(services.contains(unit), "{unit} missing:\n{services}");
    }

    // Playwright in the box, against the box's own service.
    let checked = host.ok(&repo, &["exec", &name, "--", "node", "check.js"]);
    assert!(
        checked.contains("text: Hello from the box"),
        "the script saw: {checked}"
    );
    // The MCP server the agents are configured with drives the same browser.
    let answer = host.ok(
        &repo,
        &[
            "exec",
            &name,
            "--",
            "node",
            "mcp.js",
            "http://127.0.0.1:3000/",
        ],
    );
    assert!(answer.contains("Page Title: Box page"), "MCP: {answer}");
    // The agent's browser stays open on the display; the screen must show it.
    host.ok(
        &repo,
        &["exec", "-d", &name, "--", "node", "check.js", "--stay"],
    );

    let out = host.ok(&repo, &["screen", &name, "--json"]);
    let screen: serde_json::Value = serde_json::from_str(&out).expect("screen --json");
    let url = screen["url"].as_str().expect("url").to_string();
    assert!(
        url.starts_with("http://agentbox-screen.localhost:")
            && url.ends_with("/vnc.html?autoconnect=1&resize=scale"),
        "{url}"
    );
    let seen = canvas_of(&url, &[]);
    eprintln!("noVNC canvas: {seen}");

    // A teammate who joined the box (the invite allows `url`) gets the same screen; the
    // link's life is the owner's share's, not theirs to set.
    let invite = host.ok(&repo, &["share", &name]);
    mate.ok(&["join", invite.trim(), "--name", "theirs"]);
    let theirs = mate.ok(&["screen", "theirs", "--json"]);
    let theirs: serde_json::Value = serde_json::from_str(&theirs).expect("screen --json");
    assert_eq!(theirs["url"].as_str(), Some(url.as_str()), "{theirs}");
    let refused = mate.run(&["screen", "theirs", "--ttl", "1h"]);
    assert!(!refused.status.success());
}

/// Headless Chromium on this machine, stopped on drop.
struct Chromium {
    child: Child,
    _profile: tempfile::TempDir,
}

impl Drop for Chromium {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Chromium {
    /// Starts it with the DevTools protocol on a free port and `flags`; the browser's
    /// WebSocket address.
    fn start(flags: &[&str]) -> (Self, String) {
        let profile = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new("chromium")
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                "--window-size=1280,800",
                "--remote-debugging-port=0",
            ])
            .args(flags)
            .arg(format!("--user-data-dir={}", profile.path().display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run chromium (scripts/test installs it)");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if let Some(at) = line.find("ws://") {
                    let _ = tx.send(line[at..].trim().to_string());
                }
            }
        });
        let chromium = Self {
            child,
            _profile: profile,
        };
        let ws = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("chromium announced no DevTools address");
        (chromium, ws)
    }
}

/// Opens `url` in headless Chromium (started with `flags`) and waits for noVNC's canvas
/// to show a picture; what it saw.
fn canvas_of(url: &str, flags: &[&str]) -> String {
    let (_chromium, browser_ws) = Chromium::start(flags);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        tokio::time::timeout(Duration::from_secs(150), drive(&browser_ws, url))
            .await
            .expect("the DevTools session took over 150 s")
    })
}

/// A DevTools message stream.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// One DevTools session over the browser's WebSocket: numbered calls, events in between;
/// the page's failed loads are noted from the `Network` events that pass by.
struct DevTools {
    ws: Ws,
    next_id: u64,
    /// The document (loader id) of the latest navigation: a WebSocket is its page's.
    document: String,
    /// Request id → the document (loader id) it is for and its URL
    /// (`Network.requestWillBeSent`, `Network.webSocketCreated`).
    requests: HashMap<String, (String, String)>,
    /// The loads that failed (`Network.loadingFailed`, `Network.webSocketFrameError`).
    failed: Vec<Failed>,
}

/// A load Chromium gave up: which document's, what, and why (its net error text).
struct Failed {
    document: String,
    url: String,
    error: String,
}

/// The error Chromium fails the loads in flight with when this machine's network changes
/// (a container's interface appears or goes); it does not retry them.
const NETWORK_CHANGED: &str = "net::ERR_NETWORK_CHANGED";

impl DevTools {
    /// Calls `method` (of the page `session`, or the browser's); its result.
    async fn call(
        &mut self,
        method: &str,
        params: serde_json::Value,
        session: Option<&str>,
    ) -> serde_json::Value {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = serde_json::json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = s.into();
        }
        self.ws
            .send(msg.to_string().into())
            .await
            .expect("send to DevTools");
        let v = self.until(|v| v["id"].as_u64() == Some(id)).await;
        assert!(v["error"].is_null(), "DevTools {method}: {v}");
        v["result"].clone()
    }

    /// The first message that `wanted` picks (the loads sent and failed before it noted).
    async fn until(&mut self, wanted: impl Fn(&serde_json::Value) -> bool) -> serde_json::Value {
        while let Some(msg) = self.ws.next().await {
            let msg = msg.expect("DevTools message");
            let Ok(text) = msg.to_text() else { continue };
            let v: serde_json::Value = serde_json::from_str(text).unwrap_or_default();
            self.note(&v);
            if wanted(&v) {
                return v;
            }
        }
        panic!("DevTools closed");
    }

    /// Notes a load sent or failed.
    fn note(&mut self, v: &serde_json::Value) {
        let p = &v["params"];
        let text = |key: &str| p[key].as_str().unwrap_or_default().to_string();
        let request = text("requestId");
        match v["method"].as_str() {
            Some("Network.requestWillBeSent") => {
                let url = p["request"]["url"].as_str().unwrap_or_default();
                self.requests
                    .insert(request, (text("loaderId"), url.to_string()));
            }
            Some("Network.webSocketCreated") => {
                self.requests
                    .insert(request, (self.document.clone(), text("url")));
            }
            Some(failed @ ("Network.loadingFailed" | "Network.webSocketFrameError")) => {
                let (document, url) = self.requests.get(&request).cloned().unwrap_or_default();
                let error = if failed == "Network.loadingFailed" {
                    text("errorText")
                } else {
                    text("errorMessage")
                };
                self.failed.push(Failed {
                    document,
                    url,
                    error,
                });
            }
            _ => {}
        }
    }

    /// The failed loads of the latest navigation's document, as `URL: error` lines.
    fn failures(&self) -> Vec<String> {
        self.failed
            .iter()
            .filter(|f| f.document == self.document)
            .map(|f| format!("{}: {}", f.url, f.error))
            .collect()
    }
}

/// Whether `failures` are loads Chromium dropped on a network change, and only those.
fn only_network_changes(failures: &[String]) -> bool {
    !failures.is_empty() && failures.iter().all(|f| f.ends_with(NETWORK_CHANGED))
}

/// A page target navigated to `url` and loaded, then [`CANVAS_JS`] awaited in it.
///
/// Containers made or removed on this machine (the Daytona fake's sandbox just before,
/// other suites' at any time) change its interfaces, and Chromium fails what is loading
/// then with [`NETWORK_CHANGED`]: a noVNC page whose modules were dropped never connects
/// (no canvas, an empty status). That, and only that, is a reason to load the page again
/// (three tries, at once when the drop is seen by the load event); any other failed load,
/// or no picture without a failed load, fails the test with what failed.
async fn drive(browser_ws: &str, url: &str) -> String {
    let (ws, _) = tokio_tungstenite::connect_async(browser_ws)
        .await
        .expect("connect to DevTools");
    let mut dt = DevTools {
        ws,
        next_id: 0,
        document: String::new(),
        requests: HashMap::new(),
        failed: Vec::new(),
    };
    let target = dt
        .call(
            "Target.createTarget",
            serde_json::json!({"url": "about:blank"}),
            None,
        )
        .await["targetId"]
        .as_str()
        .expect("targetId")
        .to_string();
    let session = dt
        .call(
            "Target.attachToTarget",
            serde_json::json!({"targetId": target, "flatten": true}),
            None,
        )
        .await["sessionId"]
        .as_str()
        .expect("sessionId")
        .to_string();
    let session = Some(session.as_str());
    dt.call("Page.enable", serde_json::json!({}), session).await;
    dt.call("Network.enable", serde_json::json!({}), session)
        .await;
    for attempt in 1.. {
        let navigated = dt
            .call("Page.navigate", serde_json::json!({"url": url}), session)
            .await;
        dt.document = navigated["loaderId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let outcome = match navigated["errorText"].as_str() {
            Some(error) => Err(format!("the page itself failed: {error}")),
            None => {
                dt.until(|v| v["method"] == "Page.loadEventFired").await;
                if only_network_changes(&dt.failures()) {
                    Err("loads failed before its load event".to_string())
                } else {
                    canvas(&mut dt, session).await
                }
            }
        };
        let why = match outcome {
            Ok(seen) => return seen,
            Err(why) => why,
        };
        let failures = dt.failures();
        let dropped = why.ends_with(NETWORK_CHANGED) || only_network_changes(&failures);
        assert!(
            dropped && attempt < 3,
            "noVNC, try {attempt}: {why}; failed loads: {failures:#?}"
        );
        eprintln!(
            "noVNC, try {attempt}: {why}; Chromium dropped {failures:?} on a network change; \
             loading it again"
        );
    }
    unreachable!("the loop returns or panics")
}

/// [`CANVAS_JS`] awaited in the page: what the canvas shows, or why it shows nothing.
async fn canvas(dt: &mut DevTools, session: Option<&str>) -> Result<String, String> {
    let result = dt
        .call(
            "Runtime.evaluate",
            serde_json::json!({
                "expression": CANVAS_JS,
                "awaitPromise": true,
                "returnByValue": true,
            }),
            session,
        )
        .await;
    match result.get("exceptionDetails") {
        None => Ok(result["result"]["value"]
            .as_str()
            .expect("a description")
            .to_string()),
        Some(details) => Err(details["exception"]["description"]
            .as_str()
            .map_or_else(|| details.to_string(), str::to_string)),
    }
}
