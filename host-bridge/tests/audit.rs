//! `agentbox audit`: a header, times in this machine's zone, `--box`, `--since`, and
//! `--json` as it was.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Host, TimedOutput, AGENTBOX};

/// `agentbox ARGS` in time zone `tz`: its stdout.
fn audit_in(host: &Host, cwd: &Path, tz: &str, args: &[&str]) -> String {
    let out = Command::new(AGENTBOX)
        .args(args)
        .current_dir(cwd)
        .env("AGENTBOX_HOME", host.home())
        .env("PATH", host.path())
        .env("TZ", tz)
        .timed_output()
        .expect("run agentbox");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `audit --json`, once it holds `count` entries.
fn entries(host: &Host, repo: &Path, count: usize) -> Vec<serde_json::Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all: Vec<serde_json::Value> =
            serde_json::from_str(&host.ok(repo, &["audit", "--json"])).expect("json array");
        if all.len() >= count {
            return all;
        }
        assert!(
            Instant::now() < deadline,
            "{} audit entries, not {count}",
            all.len()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn audit_has_a_header_local_times_and_filters() {
    let host = Host::new();
    let repo = host.repo("audited", "");
    host.ok(&repo, &["create", "--name", "au1"]);
    host.ok(&repo, &["create", "--name", "au2"]);
    host.ok(
        &repo,
        &["config", "set", "--project", "policy.notify", "allow"],
    );
    host.ok(
        &repo,
        &["exec", "au1", "--", "agentbox-ctl", "notify", "from-one"],
    );
    host.ok(
        &repo,
        &["exec", "au2", "--", "agentbox-ctl", "notify", "from-two"],
    );
    let all = entries(&host, &repo, 2);

    // `--json` is the entries as recorded.
    for e in &all {
        for key in [
            "ts_ms",
            "box_name",
            "request_id",
            "kind",
            "decision",
            "detail",
            "exit_code",
        ] {
            assert!(e.get(key).is_some(), "{key} in {e}");
        }
    }

    // The table: a header, then each entry at its time in the zone of TZ (+05:30 here).
    let text = audit_in(&host, &repo, "Asia/Kolkata", &["audit"]);
    let lines: Vec<&str> = text.lines().collect();
    for word in ["TIME", "BOX", "KIND", "DECISION", "EXIT", "DETAIL"] {
        assert!(lines[0].contains(word), "{text}");
    }
    for (line, e) in lines[1..].iter().zip(&all) {
        let ms = e["ts_ms"].as_i64().expect("ts_ms") + 5 * 3_600_000 + 1_800_000;
        let local = chrono::DateTime::from_timestamp_millis(ms)
            .expect("a time")
            .format("%Y-%m-%d %H:%M:%S")
            .to_string();
        assert!(line.starts_with(&local), "{local} first in {line}");
        assert!(
            line.contains(e["box_name"].as_str().expect("box")),
            "{line}"
        );
    }

    // --box and --since narrow, in the table and in JSON.
    let one = audit_in(&host, &repo, "UTC", &["audit", "--box", "au1"]);
    assert!(
        one.contains("from-one") && !one.contains("from-two"),
        "{one}"
    );
    let one: Vec<serde_json::Value> =
        serde_json::from_str(&host.ok(&repo, &["audit", "--box", "au1", "--json"])).expect("json");
    assert_eq!(
        one.len(),
        all.iter().filter(|e| e["box_name"] == "au1").count()
    );
    assert!(one.iter().all(|e| e["box_name"] == "au1"), "{one:?}");
    let recent: Vec<serde_json::Value> =
        serde_json::from_str(&host.ok(&repo, &["audit", "--since", "1h", "--json"])).expect("json");
    assert_eq!(recent.len(), all.len());
    assert_eq!(
        host.ok(&repo, &["audit", "--since", "0s"]),
        "no requests from boxes match\n"
    );
    let bad = host.run(&repo, &["audit", "--since", "soon"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad.stderr).contains("is not a duration like 30s"));
}
