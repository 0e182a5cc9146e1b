//! `https://<service>.<box>.localhost:<port>` through the host's proxy (issue 23 part 2):
//! a Vite dev server in a docker box and in a Daytona-fake box, opened in headless
//! Chromium that trusts the proxy's CA (an NSS database in a HOME of the test's own, as
//! `agentbox proxy trust` makes), hot-reloads after an edit made in the box (the page is
//! not reloaded: Vite's HMR over a WebSocket through the proxy), over HTTP/2; the URL
//! `agentbox url` prints is the same after the box is stopped and started, and serves
//! again. An unknown box or service is a 404 page, a Host naming another box on the same
//! connection a 421.
//!
//! Node comes from the box's Debian mirror (`apt-get install nodejs`); Vite and
//! playwright-core from npm on the host, cached under `AGENTBOX_WEB_CACHE` (default
//! /var/tmp/agentbox-web-cache), Vite copied into the box with `agentbox cp`. Chromium is
//! Debian's (`/usr/bin/chromium`), certutil from libnss3-tools (both in scripts/test).

#[allow(dead_code)]
mod docker_common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agentbox_tests::bin_path;
use agentbox_tests::daytona_host::DaytonaHost;
use agentbox_tests::run::{limit_for, TimedOutput};

/// What npm fetches on the host (Vite 6 runs on Debian bookworm's Node 18).
const VITE: &str = "vite@6";
const PLAYWRIGHT: &str = "playwright-core@1";

/// Where Vite and playwright-core are kept between runs (`vite/`, `playwright/`).
fn web_cache() -> PathBuf {
    let dir = std::env::var_os("AGENTBOX_WEB_CACHE").map_or_else(
        || PathBuf::from("/var/tmp/agentbox-web-cache"),
        PathBuf::from,
    );
    for (sub, package, file) in [
        ("vite", VITE, "node_modules/vite/bin/vite.js"),
        (
            "playwright",
            PLAYWRIGHT,
            "node_modules/playwright-core/package.json",
        ),
    ] {
        if dir.join(sub).join(file).exists() {
            continue;
        }
        std::fs::create_dir_all(dir.join(sub)).expect("cache dir");
        let out = Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--loglevel=error"])
            .arg("--prefix")
            .arg(dir.join(sub))
            .arg(package)
            .output_within(Duration::from_secs(300))
            .expect("npm install");
        assert!(out.status.success(), "npm install {package}: {out:?}");
    }
    dir
}

/// A port free on this machine now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// One `AGENTBOX_HOME` and the proxy port its commands use.
struct Side<'a> {
    /// `agentbox ARGS` in a directory, under this side's home.
    command: &'a dyn Fn(&Path, &[&str]) -> Command,
    home: PathBuf,
    port: u16,
    scratch: PathBuf,
}

impl Side<'_> {
    fn cmd(&self, cwd: &Path, args: &[&str]) -> Command {
        let mut c = (self.command)(cwd, args);
        c.env("AGENTBOX_PROXY_PORT", self.port.to_string());
        c
    }
    fn run(&self, cwd: &Path, args: &[&str]) -> Output {
        self.cmd(cwd, args)
            .output_within(limit_for(args))
            .expect("run agentbox")
    }
    fn ok(&self, cwd: &Path, args: &[&str]) -> String {
        agentbox_tests::succeeded(args, &self.run(cwd, args))
    }
}

impl Drop for Side<'_> {
    fn drop(&mut self) {
        let _ = Command::new(bin_path("agentbox"))
            .args(["proxy", "stop"])
            .env("AGENTBOX_HOME", &self.home)
            .timed_output();
    }
}

/// The page: `#msg` shows `msg.js`'s text, replaced in place when Vite's HMR says it
/// changed (no reload: `window.__first` survives).
const INDEX_HTML: &str = "<!doctype html><html><body><p id=\"msg\"></p><script type=\"module\" src=\"/main.js\"></script></body></html>\n";
const MAIN_JS: &str = "import { msg } from './msg.js';\nconst show = (m) => { document.getElementById('msg').textContent = m; };\nshow(msg);\nif (import.meta.hot) import.meta.hot.accept('./msg.js', (m) => show(m.msg));\n";

/// agentbox.yaml of the box: Vite on 127.0.0.1:5173 as service `app`.
const BOX_YAML: &str = "services:\n  app:\n    command: [\"node\", \"node_modules/vite/bin/vite.js\", \"--host\", \"127.0.0.1\", \"--port\", \"5173\", \"--strictPort\"]\n    cwd: web\n    ready_when: {port: 5173}\n    expose: {port: 5173, default: true}\n";

/// The Chromium driver: opens `url`, waits for `#msg` to say `want`; with an edit command,
/// runs it and waits for `after` on the same page; prints what it saw.
const DRIVER_JS: &str = r"
const { chromium } = require(process.env.PLAYWRIGHT);
const [url, want, edit, after] = JSON.parse(process.argv[2]);
const says = (page, text) => page.waitForFunction(
  (t) => document.getElementById('msg') && document.getElementById('msg').textContent === t,
  text, { timeout: 60000 });
(async () => {
  const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ['--no-sandbox'] });
  try {
    const page = await browser.newPage();
    // Vite's client says so once its HMR WebSocket is open: an edit before that is missed.
    let connected;
    let hmr;
    page.on('console', (m) => {
      console.log('console ' + m.type() + ': ' + m.text());
      if (m.text().includes('[vite] connected')) connected();
    });
    // Containers coming and going on this host (other suites) change its interfaces, and
    // Chromium drops what is loading then (ERR_NETWORK_CHANGED): the page is loaded again.
    let dropped = () => {};
    page.on('requestfailed', (r) => {
      if (String(r.failure() && r.failure().errorText).includes('ERR_NETWORK_CHANGED')) dropped();
    });
    let response;
    for (let attempt = 1; ; attempt++) {
      hmr = new Promise((resolve) => { connected = resolve; });
      const change = new Promise((_, fail) => { dropped = () => fail(new Error('ERR_NETWORK_CHANGED')); });
      const load = (async () => {
        response = await page.goto(url, { timeout: 90000 });
        await says(page, want);
      })();
      change.catch(() => {});
      load.catch(() => {});
      try {
        await Promise.race([load, change]);
        break;
      } catch (e) {
        // The drop shows either as the failed request or as the navigation that
        // Chromium's error page interrupted, whichever settles first.
        const dropped_load = String(e).includes('ERR_NETWORK_CHANGED')
          || String(e).includes('chrome-error://');
        if (attempt >= 8 || !dropped_load) throw e;
        console.log('again after a network change: ' + String(e).split('\n')[0]);
        await new Promise((r) => setTimeout(r, 500));
      }
    }
    dropped = () => {};
    console.log('status ' + response.status());
    console.log('shown ' + want);
    console.log('protocol ' + await page.evaluate(() => performance.getEntriesByType('navigation')[0].nextHopProtocol));
    if (edit) {
      await Promise.race([hmr, new Promise((_, fail) => setTimeout(() => fail(new Error('no [vite] connected in 90 s')), 90000).unref())]);
      await page.evaluate(() => { window.__first = true; });
      require('child_process').execFileSync(edit[0], edit.slice(1), { stdio: 'inherit', timeout: 120000 });
      await says(page, after);
      console.log('hot ' + after + ' ' + (await page.evaluate(() => window.__first === true) ? 'same-page' : 'reloaded'));
    }
  } finally {
    await browser.close();
  }
})().catch((e) => { console.error(String((e && e.stack) || e)); process.exit(1); });
";

/// A HOME whose NSS database (what Chromium reads) trusts the CA `ca`.
fn trusting_home(scratch: &Path, ca: &Path) -> PathBuf {
    let home = scratch.join("browser-home");
    let db = home.join(".pki/nssdb");
    std::fs::create_dir_all(&db).expect("nssdb dir");
    let db_arg = format!("sql:{}", db.display());
    for args in [
        vec!["-d", &db_arg, "-N", "--empty-password"],
        vec![
            "-d",
            &db_arg,
            "-A",
            "-t",
            "C,,",
            "-n",
            "agentbox test CA",
            "-i",
            ca.to_str().expect("utf-8"),
        ],
    ] {
        let out = Command::new("certutil")
            .args(&args)
            .timed_output()
            .expect("certutil (libnss3-tools)");
        assert!(out.status.success(), "certutil {args:?}: {out:?}");
    }
    home
}

/// Runs the driver in Chromium with HOME `home`; its stdout.
fn chromium(
    side: &Side<'_>,
    home: &Path,
    url: &str,
    want: &str,
    edit: Option<(&[String], &str)>,
) -> String {
    let cache = web_cache();
    let driver = side.scratch.join("driver.js");
    std::fs::write(&driver, DRIVER_JS).expect("driver");
    let args = match edit {
        Some((command, after)) => serde_json::json!([url, want, command, after]),
        None => serde_json::json!([url, want, null, null]),
    };
    let out = Command::new("node")
        .arg(&driver)
        .arg(args.to_string())
        .env("HOME", home)
        .env("AGENTBOX_HOME", &side.home)
        .env("AGENTBOX_PROXY_PORT", side.port.to_string())
        .env(
            "PLAYWRIGHT",
            cache.join("playwright/node_modules/playwright-core"),
        )
        .output_within(Duration::from_secs(240))
        .expect("node");
    let said = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "chromium at {url}: {said}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    said
}

/// curl of `url` trusting the CA: (status, body).
fn curl(ca: &Path, url: &str, host: Option<&str>) -> (String, String) {
    let mut c = Command::new("curl");
    c.args(["-sS", "--cacert"]).arg(ca);
    if let Some(h) = host {
        c.args(["-H", &format!("Host: {h}")]);
    }
    let out = c
        .args(["-o", "-", "-w", "\n%{http_code}", url])
        .timed_output()
        .expect("curl");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (code.to_string(), body.to_string())
}

/// Held by each test while its box runs: a container made, stopped or started changes
/// this host's interfaces, and Chromium drops a page load under way when they change.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The scenario on a box `name` of `side` made from `repo` (running, without Node).
fn scenario(side: &Side<'_>, repo: &Path, name: &str) {
    let cache = web_cache();
    // Node from the box's Debian mirror; Vite from the host's npm cache.
    side.ok(
        repo,
        &[
            "exec", "-u", "root", name, "--", "sh", "-c",
            "apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs >/dev/null",
        ],
    );
    let modules = cache.join("vite/node_modules");
    side.ok(
        repo,
        &[
            "cp",
            modules.to_str().expect("utf-8"),
            &format!("{name}:web/node_modules"),
        ],
    );
    side.ok(
        repo,
        &[
            "exec", name, "--", "sh", "-c",
            &format!("printf '%s' '{BOX_YAML}' > agentbox.yaml && agentbox-ctl reload >/dev/null && agentbox-ctl wait-ready --timeout 60000"),
        ],
    );

    // The same form on every provider, on the proxy's port.
    let url = side
        .ok(repo, &["url", name, "--port", "5173"])
        .trim()
        .to_string();
    assert_eq!(url, format!("https://app.{name}.localhost:{}", side.port));
    let default = side.ok(repo, &["url", name]).trim().to_string();
    assert_eq!(default, format!("https://{name}.localhost:{}", side.port));

    let ca = side.home.join("proxy/ca.pem");
    let (code, body) = curl(&ca, &format!("{url}/"), None);
    assert_eq!(code, "200", "{url}: {body}");
    let browser_home = trusting_home(&side.scratch, &ca);
    let edit: Vec<String> = [
        bin_path("agentbox").to_string_lossy().into_owned(),
        "exec".into(),
        name.into(),
        "--".into(),
        "sh".into(),
        "-c".into(),
        "printf 'export const msg = \"two\";\\n' > web/msg.js".into(),
    ]
    .into();
    let seen = chromium(
        side,
        &browser_home,
        &format!("{url}/"),
        "one",
        Some((&edit, "two")),
    );
    assert!(seen.contains("status 200"), "{seen}");
    assert!(seen.contains("protocol h2"), "{seen}");
    assert!(seen.contains("hot two same-page"), "{seen}");

    // Not a service, not a box, another box's Host on this connection.
    let (code, body) = curl(
        &ca,
        &format!("https://nope.{name}.localhost:{}/", side.port),
        None,
    );
    assert_eq!(code, "404", "{body}");
    assert!(body.contains("has no exposed service `nope`"), "{body}");
    let (code, body) = curl(
        &ca,
        &format!("https://ghost.localhost:{}/", side.port),
        None,
    );
    assert_eq!(code, "404", "{body}");
    assert!(body.contains("there is no box `ghost`"), "{body}");
    let (code, body) = curl(
        &ca,
        &format!("{url}/"),
        Some(&format!("other.localhost:{}", side.port)),
    );
    assert_eq!(code, "421", "{body}");

    // Stopped and started: the same URL serves the box again.
    side.ok(repo, &["stop", name]);
    let (code, body) = curl(&ca, &format!("{url}/"), None);
    assert_eq!(code, "502", "{body}");
    side.ok(repo, &["start", name]);
    side.ok(
        repo,
        &[
            "exec",
            name,
            "--",
            "agentbox-ctl",
            "wait-ready",
            "--timeout",
            "60000",
        ],
    );
    assert_eq!(side.ok(repo, &["url", name, "--port", "5173"]).trim(), url);
    let seen = chromium(side, &browser_home, &format!("{url}/"), "two", None);
    assert!(seen.contains("shown two"), "{seen}");
}

/// The web project in `repo`: `web/` with the page, committed.
fn web_project(repo: &Path) {
    let web = repo.join("web");
    std::fs::create_dir_all(&web).expect("mkdir web");
    std::fs::write(web.join("index.html"), INDEX_HTML).expect("index");
    std::fs::write(web.join("main.js"), MAIN_JS).expect("main");
    std::fs::write(web.join("msg.js"), "export const msg = \"one\";\n").expect("msg");
    docker_common::git(repo, &["add", "web"]);
    docker_common::commit(repo, "web");
}

#[test]
fn vite_in_a_docker_box_hot_reloads_in_chromium_at_its_https_localhost_url() {
    let host = docker_common::Host::new();
    let repo = host.project("web");
    web_project(&repo);
    host.prepare(&repo);
    let home = host.home();
    let command = |cwd: &Path, args: &[&str]| {
        let mut c = Command::new(bin_path("agentbox"));
        c.args(args)
            .current_dir(cwd)
            .env("AGENTBOX_HOME", &home)
            .stdin(Stdio::null());
        c
    };
    let side = Side {
        command: &command,
        home: host.home(),
        port: free_port(),
        scratch: host.dir.path().to_path_buf(),
    };
    let name = format!("px{}", std::process::id());
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    side.ok(&repo, &["create", "--provider", "docker", "--name", &name]);
    scenario(&side, &repo, &name);
}

#[test]
fn vite_in_a_daytona_box_hot_reloads_in_chromium_at_its_https_localhost_url() {
    let host = DaytonaHost::start(
        "dtn_proxy0123456789abcdef",
        &[("DAYTONA_FAKE_TRANSITION_MS", "100")],
    );
    // Vite's HMR is a WebSocket: this fake's preview proxy passes them (a Daytona whose
    // private previews answer upgrades with their sign-in redirect would not).
    host.faults(r#"{"passWebSockets": true}"#);
    let repo = agentbox_tests::daytona_host::git_repo(&host.dir.path().join("web"), "web\n");
    web_project(&repo);
    host.login(&repo);
    host.prepare(&repo);
    let command = |cwd: &Path, args: &[&str]| {
        let mut c = host.command(cwd, args);
        c.stdin(Stdio::null());
        c
    };
    let side = Side {
        command: &command,
        home: host.home(),
        port: free_port(),
        scratch: host.dir.path().to_path_buf(),
    };
    let name = format!("pd{}", std::process::id());
    let _one = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    side.ok(&repo, &["daytona", "create", "--name", &name]);
    scenario(&side, &repo, &name);
}
