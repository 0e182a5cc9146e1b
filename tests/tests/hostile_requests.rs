//! A compromised box's requests to the host bridge, made from inside a real local box with
//! the box's own `agentbox-ctl` (what any program in the box can run): what reaches this
//! machine's desktop or browser must be what the user would take it for. The host's
//! `notify-send` and URL opener are stand-ins on PATH that record their arguments, one per
//! line, so the test sees exactly what the host handed them. No Docker needed.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use agentbox_tests::bin_path;
use agentbox_tests::run::TimedOutput;

/// Far above what a box's create or one bridge round trip takes here (~1 s).
const LIMIT: Duration = Duration::from_secs(120);

/// An `AGENTBOX_HOME`, a git project, and `bin/` first on PATH with the stand-ins; its
/// bridge and its box are gone on drop.
struct Machine {
    dir: tempfile::TempDir,
}

impl Machine {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).expect("mkdir");
        for (name, record) in [("notify-send", "notified"), ("opener", "opened")] {
            let script = format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\"; done >> {}\n",
                dir.path().join(record).display()
            );
            let path = bin.join(name);
            std::fs::write(&path, script).expect("write");
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .expect("chmod");
        }
        let repo = dir.path().join("proj");
        std::fs::create_dir_all(&repo).expect("mkdir");
        for args in [
            &["init", "-q", "-b", "main"][..],
            &[
                "-c",
                "user.email=t@example.com",
                "-c",
                "user.name=T",
                "commit",
                "-q",
                "--allow-empty",
                "-m",
                "first",
            ],
        ] {
            let out = Command::new("git")
                .arg("-C")
                .arg(&repo)
                .args(args)
                .timed_output()
                .expect("git");
            assert!(out.status.success(), "git {args:?}");
        }
        Self { dir }
    }

    fn repo(&self) -> PathBuf {
        self.dir.path().join("proj")
    }

    /// What the stand-in `name` (`notified` or `opened`) was given, one argument a line.
    fn recorded(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(name)).unwrap_or_default()
    }

    /// `agentbox ARGS` in the project, with this machine's home and stand-ins.
    fn command(&self, args: &[&str]) -> Command {
        let path = format!(
            "{}:{}",
            self.dir.path().join("bin").display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut command = Command::new(bin_path("agentbox"));
        command
            .args(args)
            .current_dir(self.repo())
            .env("AGENTBOX_HOME", self.dir.path().join("home"))
            .env("PATH", path)
            .env("AGENTBOX_OPENER", self.dir.path().join("bin/opener"))
            .stdin(Stdio::null());
        command
    }

    /// `agentbox ARGS` in the project, run to its end.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output_within(LIMIT)
            .expect("agentbox ran within its limit")
    }

    /// `agentbox ARGS`, which must succeed.
    fn ok(&self, args: &[&str]) {
        agentbox_tests::succeeded(args, &self.run(args));
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.run(&["destroy", "-y", "--force", "hostile"]);
        let _ = self.run(&["bridge", "stop"]);
    }
}

/// `agentbox-ctl ARGS` in box `hostile`, waiting for the host's answer.
fn from_the_box(m: &Machine, args: &[&str]) -> Output {
    let mut argv = vec!["exec", "hostile", "--", "agentbox-ctl"];
    argv.extend_from_slice(args);
    argv.extend_from_slice(&["--wait", "20000"]);
    m.run(&argv)
}

/// A notification's body is text on the desktop: notification servers read it as markup
/// (the Desktop Notifications spec's `body-markup`), so `<a href=…>` from the box was a
/// link the user could click that `policy.open` never saw, and `<b>`, `<img>` dressed the
/// box's words up as the host's; bidirectional and zero-width characters reordered or hid
/// them. The host hands `notify-send` the box's words with `&`, `<` and `>` as entities
/// and without control or layout characters — in a plain notify and in an agent's
/// `waiting` report alike.
#[test]
fn a_notification_reaches_the_desktop_as_plain_text() {
    let m = Machine::new();
    m.ok(&["create", "--name", "hostile"]);
    let message =
        "<a href=\"https://evil.example/\">update</a> & <b>bold</b> rtl\u{202e}txt zero\u{200b}w \u{1b}[31mred";
    let out = from_the_box(&m, &["notify", message]);
    agentbox_tests::succeeded(&["notify"], &out);
    // An agent's report is handed on detached: its notification is waited for.
    m.ok(&[
        "exec",
        "hostile",
        "--",
        "agentbox-ctl",
        "agent-state",
        "waiting",
        "--session",
        "s1",
        "--agent",
        "claude",
        "--detail",
        "<a href=\"https://evil.example/\">approve</a>\u{2066}",
    ]);
    let deadline = std::time::Instant::now() + LIMIT;
    while !m.recorded("notified").contains("claude is waiting") {
        assert!(
            std::time::Instant::now() < deadline,
            "the agent's waiting report raised no notification"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let shown = m.recorded("notified");
    assert!(
        shown.contains(
            "&lt;a href=\"https://evil.example/\"&gt;update&lt;/a&gt; &amp; &lt;b&gt;bold&lt;/b&gt; rtltxt zerow [31mred\n"
        ),
        "the notification's body is not the box's words as plain text:\n{shown:?}"
    );
    assert!(
        shown.contains("&lt;a href=\"https://evil.example/\"&gt;approve&lt;/a&gt;\n"),
        "the agent's waiting report reached the desktop as markup:\n{shown:?}"
    );
    assert!(
        !shown.contains('<') && !shown.contains('\u{202e}') && !shown.contains('\u{1b}'),
        "markup or a layout character reached notify-send:\n{shown:?}"
    );
}

/// A URL the box asks the host to open may not carry bidirectional or zero-width
/// characters: they make the address read as another (`https://example.com/` U+202E `gpj.exe`
/// shows as `…exe.jpg`), in the approval, the audit and the browser. Refused with a
/// sentence before the opener runs; a plain URL still opens.
#[test]
fn an_open_url_with_invisible_layout_characters_is_refused() {
    let m = Machine::new();
    m.ok(&["create", "--name", "hostile"]);
    for url in [
        "https://example.com/\u{202e}gpj.exe",
        "https://exa\u{200b}mple.com/",
        "https://example.com/\u{2067}x",
        "https://example.com/\u{feff}",
    ] {
        let out = from_the_box(&m, &["open", url]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{url:?} was opened: {stderr}");
        assert!(
            stderr.contains("invisible"),
            "{url:?}: the refusal does not say why: {stderr}"
        );
    }
    assert_eq!(m.recorded("opened"), "", "the opener ran");
    let out = from_the_box(&m, &["open", "https://example.com/ok"]);
    agentbox_tests::succeeded(&["open"], &out);
    assert_eq!(m.recorded("opened"), "https://example.com/ok\n");
}

/// How many of a box's requests may wait for approval at once (the host's
/// `MAX_PENDING_PER_BOX`).
const MAX_PENDING: usize = 32;

/// A box may not bury the user under approvals: each waiting request was an entry in
/// `agentbox approvals` and a look at the host journal five times a second, so 2000
/// detached `notify`s under `policy.notify: ask` kept the host bridge at 73% of a core
/// and 2000 entries to scroll through. Past 32 waiting, a box's request is refused with
/// a sentence in the audit; the 32 still wait for the user.
#[test]
fn a_box_cannot_bury_the_user_under_approvals() {
    let m = Machine::new();
    m.ok(&["config", "set", "--global", "policy.notify", "ask"]);
    m.ok(&["create", "--name", "hostile"]);
    let flood = MAX_PENDING + 8;
    m.ok(&[
        "exec",
        "hostile",
        "--",
        "sh",
        "-c",
        &format!("for i in $(seq {flood}); do agentbox-ctl notify \"flood $i\" >/dev/null; done"),
    ]);
    let count = |args: &[&str], what: &dyn Fn(&serde_json::Value) -> bool| -> usize {
        let out = m.run(args);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        v.as_array()
            .map_or(0, |a| a.iter().filter(|e| what(e)).count())
    };
    let refused = |e: &serde_json::Value| {
        e["decision"] == "refused"
            && e["detail"]
                .as_str()
                .is_some_and(|d| d.contains("already wait for approval"))
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let waiting = count(&["approvals", "--json"], &|_| true);
        let turned_away = count(&["audit", "--json"], &refused);
        assert!(
            waiting <= MAX_PENDING,
            "{waiting} requests of one box wait for approval"
        );
        if waiting == MAX_PENDING && turned_away == flood - MAX_PENDING {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{waiting} waiting and {turned_away} refused of {flood} notifies"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// An approval shows where a copy really lands: a box's destination padded with `./`
/// (`./././…/.github/workflows/`) showed as 400 characters of `./` and "… (218 more
/// characters)", the real place cut off. The approval names the place as the copy
/// resolves it; denied, nothing lands.
#[test]
fn an_approval_shows_where_a_padded_copy_really_lands() {
    let m = Machine::new();
    m.ok(&["create", "--name", "hostile"]);
    let dest = format!("{}.github/workflows/", "./".repeat(300));
    let script = format!("echo 'on: push' > ci.yml && agentbox-ctl cp --to-host ci.yml '{dest}'");
    let copy = m
        .command(&["exec", "hostile", "--", "sh", "-c", &script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the copy");
    let deadline = std::time::Instant::now() + LIMIT;
    let approval = loop {
        let out = m.run(&["approvals", "--json"]);
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        if let Some(a) = v.as_array().and_then(|a| a.first()) {
            break a.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the copy never waited for approval"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    let summary = approval["summary"].as_str().unwrap_or_default();
    let place = format!("{}/.github/workflows/", m.repo().display());
    assert!(
        summary.ends_with(&format!("into {place}")) && !summary.contains("/./"),
        "the approval does not show where the copy lands:\n{summary}"
    );
    m.ok(&["deny", approval["id"].as_str().expect("id")]);
    let out =
        agentbox_tests::run::finish_within(copy, "the denied copy", LIMIT).expect("the copy ended");
    assert_eq!(out.status.code(), Some(1), "the denied copy succeeded");
    assert!(!m.repo().join(".github").exists(), "the denied copy landed");
}

/// A box may not flood the user's browser: `policy.open` is `allow` by default, and 30
/// `agentbox-ctl open` in a loop opened 30 tabs in a second. Past 5 a minute, an open is
/// refused with a sentence (the URL stays in `agentbox audit`).
#[test]
fn a_box_cannot_flood_the_browser_with_tabs() {
    let m = Machine::new();
    m.ok(&["create", "--name", "hostile"]);
    let out = m.run(&[
        "exec",
        "hostile",
        "--",
        "sh",
        "-c",
        "for i in 1 2 3 4 5 6 7 8; do agentbox-ctl open https://phish.example/$i --wait 20000 >/dev/null 2>>refusals; echo $?; done; cat refusals >&2",
    ]);
    let codes = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        codes.lines().collect::<Vec<_>>(),
        ["0", "0", "0", "0", "0", "1", "1", "1"],
        "{stderr}"
    );
    assert!(
        stderr.contains("opened 5 URLs in the last minute already"),
        "the refusal does not say why: {stderr}"
    );
    assert_eq!(
        m.recorded("opened").lines().count(),
        5,
        "the opener ran past the budget"
    );
}
