//! The daemon running real processes: order, parallelism, failure, restarts, probes,
//! process groups, run_once, reload.

mod common;

use std::time::{Duration, Instant};

use common::{eventually, free_port, pid_alive, read_pid, TestBox};

#[test]
fn units_start_in_dependency_order_and_in_parallel() {
    let mut b = TestBox::new(
        "tasks:
  a: {command: 'date +%s%N > a.start; sleep 0.6; date +%s%N > a.end'}
  b: {command: 'date +%s%N > b.start; sleep 0.6; date +%s%N > b.end'}
  c: {command: 'test -f a.end && test -f b.end && touch c.done', needs: [a, b]}
services:
  s: {command: 'test -f c.done && exec sleep 100', needs: [c], restart: never}
",
    );
    b.start();
    let out = b.ok(&["wait-ready", "--timeout", "10000"]);
    assert_eq!(out.trim(), "ready");
    // a and b ran side by side: each started before the other ended.
    let t = |f: &str| -> u128 {
        std::fs::read_to_string(b.workspace().join(f))
            .expect(f)
            .trim()
            .parse()
            .expect("nanoseconds")
    };
    assert!(
        t("a.start") < t("b.end") && t("b.start") < t("a.end"),
        "a and b ran one after the other"
    );
    assert!(b.workspace().join("c.done").exists());
    assert_eq!(b.unit("s")["state"], "running");
    assert_eq!(b.unit("c")["state"], "exited");
}

#[test]
fn a_failed_task_blocks_what_needs_it_and_wait_ready_says_why() {
    let mut b = TestBox::new(
        "tasks:
  migrate: {command: 'echo boom >&2; exit 3'}
  seed: {command: 'true', needs: [migrate]}
services:
  api: {command: 'sleep 100', needs: [migrate]}
",
    );
    b.start();
    let t0 = Instant::now();
    let out = b.ctl(&["wait-ready", "--timeout", "20000", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        t0.elapsed() < Duration::from_secs(5),
        "wait-ready must fail fast on a failed unit"
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(report["ready"], false);
    let failed: Vec<&str> = report["failed"]
        .as_array()
        .expect("failed")
        .iter()
        .map(|p| p["name"].as_str().unwrap_or(""))
        .collect();
    assert!(failed.contains(&"migrate"), "{report}");
    let migrate = b.unit("migrate");
    assert_eq!(migrate["state"], "failed");
    assert_eq!(migrate["exit_code"], 3);
    assert_eq!(b.unit("seed")["state"], "skipped");
    let api = b.unit("api");
    assert_eq!(api["state"], "pending");
    assert_eq!(api["blocked_on"], serde_json::json!(["migrate"]));
    assert!(api["pid"].is_null());
    let logs = b.ok(&["logs", "migrate"]);
    assert!(logs.contains(" E boom"), "{logs}");
    assert!(logs.contains("exited with code 3"), "{logs}");
}

#[test]
fn stop_kills_the_whole_process_group() {
    let mut b = TestBox::new(
        "services:
  forker:
    command: 'sleep 1000 & echo $! > child.pid; trap \"\" TERM; while true; do sleep 0.1; done'
    stop_grace_ms: 500
",
    );
    b.start();
    let child = read_pid(&b.workspace().join("child.pid"));
    let leader = b.unit("forker")["pid"].as_u64().expect("pid") as u32;
    assert!(pid_alive(child) && pid_alive(leader));
    let t0 = Instant::now();
    let out = b.ok(&["stop", "forker"]);
    assert!(out.contains("forker: stopped"), "{out}");
    // The leader ignores SIGTERM: SIGKILL after the 500 ms grace ends it.
    assert!(
        t0.elapsed() >= Duration::from_millis(450),
        "stopped before the grace period"
    );
    assert!(
        eventually(Duration::from_secs(3), || !pid_alive(child)
            && !pid_alive(leader)),
        "orphaned processes survived"
    );
}

#[test]
fn a_service_that_exits_leaves_no_orphans_behind() {
    let mut b = TestBox::new(
        "services:
  flaky:
    command: 'sleep 1000 & echo $! >> children; exit 1'
    restart: on-failure
    backoff: {initial_ms: 200, max_ms: 200}
",
    );
    b.start();
    b.wait_unit("flaky", "restarted twice", |u| {
        u["restarts"].as_u64() >= Some(2)
    });
    let children = std::fs::read_to_string(b.workspace().join("children")).expect("children");
    let pids: Vec<u32> = children.lines().filter_map(|l| l.parse().ok()).collect();
    assert!(pids.len() >= 2);
    // Every child of a run that has ended is gone.
    for pid in &pids[..pids.len() - 1] {
        assert!(
            eventually(Duration::from_secs(3), || !pid_alive(*pid)),
            "orphan {pid} survived its service"
        );
    }
}

#[test]
fn restart_policies_and_backoff() {
    let mut b = TestBox::new(
        "services:
  never: {command: 'exit 2', restart: never}
  clean: {command: 'exit 0'}
  always:
    command: 'echo run >> runs; exit 0'
    restart: always
    backoff: {initial_ms: 100, max_ms: 400, factor: 2}
",
    );
    b.start();
    let never = b.wait_unit("never", "failed", |u| u["state"] == "failed");
    assert_eq!(never["exit_code"], 2);
    assert_eq!(never["restarts"], 0);
    let clean = b.wait_unit("clean", "exited", |u| u["state"] == "exited");
    assert_eq!(
        clean["exit_code"], 0,
        "on-failure does not restart a clean exit"
    );
    // Delays 100, 200, 400, 400… : five runs take at least 1.1 s and keep growing, capped.
    let always = b.wait_unit("always", "restarted 4 times", |u| {
        u["restarts"].as_u64() >= Some(4)
    });
    assert!(
        always["detail"]
            .as_str()
            .unwrap_or("")
            .contains("restarting in 400ms"),
        "{always}"
    );
}

#[test]
fn backoff_resets_after_a_stable_run() {
    let mut b = TestBox::new(
        "services:
  s:
    command: 'n=$(cat n 2>/dev/null || echo 0); echo $((n+1)) > n; if [ $n -lt 3 ]; then exit 1; fi; sleep 0.6; exit 1'
    backoff: {initial_ms: 100, max_ms: 5000, factor: 4, reset_after_ms: 500}
",
    );
    b.start();
    // Runs 1-3 crash at once: delays 100, 400, 1600. Run 4 lasts 0.6 s (> reset_after), so
    // the next delay is back to 100 ms rather than 5000.
    let u = b.wait_unit("s", "restarted after a stable run", |u| {
        u["restarts"].as_u64() >= Some(4)
    });
    assert!(
        u["detail"]
            .as_str()
            .unwrap_or("")
            .contains("restarting in 100ms"),
        "{u}"
    );
}

#[test]
fn port_probe_and_crash_after_ready() {
    let port = free_port();
    // The server listens only once the test says so: until then the unit is `starting`,
    // however slowly this machine runs.
    let go = tempfile::tempdir().expect("tempdir");
    let go = go.path().join("go");
    let mut b = TestBox::new(&format!(
        "services:
  web:
    command: 'while [ ! -e {go} ]; do sleep 0.02; done; exec python3 -m http.server {port} --bind 127.0.0.1'
    ready_when: {{port: {port}, interval_ms: 50}}
    restart: never
  api:
    command: 'exec sleep 100'
    needs: [web]
",
        go = go.display()
    ));
    b.start();
    let web = b.wait_unit("web", "starting", |u| u["pid"].as_u64().is_some());
    assert_eq!(web["state"], "starting", "{web}");
    assert_eq!(b.unit("api")["state"], "pending", "{}", b.unit("api"));
    std::fs::write(&go, "").expect("go");
    b.ok(&["wait-ready", "--timeout", "10000"]);
    assert_eq!(b.unit("web")["state"], "ready");
    assert_eq!(b.unit("api")["state"], "running");
    // Kill the server behind the supervisor's back: it is no longer ready.
    let pid = b.unit("web")["pid"].as_u64().expect("pid") as i32;
    std::process::Command::new("kill")
        .arg("-9")
        .arg(pid.to_string())
        .status()
        .expect("kill");
    let web = b.wait_unit("web", "failed", |u| u["state"] == "failed");
    assert_eq!(web["ready"], false);
    assert_eq!(web["exit_signal"], "SIGKILL");
    let out = b.ctl(&["wait-ready", "web", "--timeout", "2000"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn http_and_log_probes() {
    let port = free_port();
    let mut b = TestBox::new(&format!(
        "services:
  web:
    command: 'mkdir -p d/ok && exec python3 -m http.server {port} --bind 127.0.0.1 --directory d'
    ready_when: {{http: 'http://127.0.0.1:{port}/ok/', interval_ms: 50}}
  worker:
    command: 'sleep 0.2; echo warming up; sleep 0.2; printf \"listening on :9\\n\"; exec sleep 100'
    ready_when: {{log_match: 'listening on :\\d+'}}
  missing:
    command: 'exec sleep 100'
    ready_when: {{http: 'http://127.0.0.1:{port}/nope', timeout_ms: 700, interval_ms: 50, on_timeout: mark_unhealthy}}
"
    ));
    b.start();
    b.ok(&["wait-ready", "web", "worker", "--timeout", "10000"]);
    let missing = b.wait_unit("missing", "unhealthy", |u| {
        u["detail"]
            .as_str()
            .is_some_and(|d| d.starts_with("unhealthy"))
    });
    assert_eq!(missing["state"], "running");
    assert_eq!(missing["ready"], false);
    // Unhealthy keeps probing: once the path exists, it becomes ready.
    std::fs::write(b.workspace().join("d/nope"), "ok").expect("write");
    b.wait_unit("missing", "ready after recovering", |u| {
        u["state"] == "ready"
    });
}

#[test]
fn probe_timeout_kills_and_restart_policy_applies() {
    let mut b = TestBox::new(
        "services:
  stuck:
    command: 'exec sleep 100'
    ready_when: {port: 1, timeout_ms: 300, interval_ms: 50}
    restart: never
    stop_grace_ms: 200
",
    );
    b.start();
    let u = b.wait_unit("stuck", "failed", |u| u["state"] == "failed");
    assert_eq!(u["exit_signal"], "SIGTERM");
    let logs = b.ok(&["logs", "stuck"]);
    assert!(
        logs.contains("readiness probe timed out after 300ms (last try: ")
            && logs.contains("); killing the service"),
        "{logs}"
    );
}

#[test]
fn run_once_marker_and_check() {
    let config = "tasks:
  install: {command: 'echo x >> installs', run_once: true}
  checked: {command: 'echo x >> checked-runs', run_once: {check: 'test -f already'}}
";
    let mut b = TestBox::new(config);
    b.start();
    b.ok(&["wait-ready"]);
    b.stop_daemon();
    std::fs::write(b.workspace().join("already"), "").expect("touch");
    b.start();
    b.ok(&["wait-ready"]);
    let install = b.unit("install");
    assert_eq!(install["state"], "exited");
    assert!(
        install["detail"]
            .as_str()
            .unwrap_or("")
            .contains("run_once marker"),
        "{install}"
    );
    assert_eq!(
        std::fs::read_to_string(b.workspace().join("installs"))
            .expect("file")
            .lines()
            .count(),
        1
    );
    assert_eq!(
        std::fs::read_to_string(b.workspace().join("checked-runs"))
            .expect("file")
            .lines()
            .count(),
        1
    );
    // --force runs anyway; --wait returns the final state.
    let out = b.ok(&["run-task", "install", "--force", "--wait", "--json"]);
    let u: serde_json::Value = serde_json::from_str(&out).expect("json");
    assert_eq!(u["state"], "exited");
    assert_eq!(
        std::fs::read_to_string(b.workspace().join("installs"))
            .expect("file")
            .lines()
            .count(),
        2
    );
    // A changed command invalidates the marker.
    b.write_config(&config.replace("echo x", "echo y"));
    b.ok(&["reload"]);
    b.ok(&["wait-ready", "install"]);
    assert!(std::fs::read_to_string(b.workspace().join("installs"))
        .expect("file")
        .contains('y'));
}

#[test]
fn run_task_wait_reports_failure_with_exit_code_1() {
    let mut b = TestBox::new("tasks:\n  t: {command: 'exit 0'}\n");
    b.start();
    b.ok(&["wait-ready"]);
    b.write_config("tasks:\n  t: {command: 'exit 5'}\n");
    b.ok(&["reload"]);
    let out = b.ctl(&["run-task", "t", "--wait"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("t: failed — exited with code 5"));
}

#[test]
fn reload_adds_removes_and_restarts_changed_units() {
    let mut b = TestBox::new(
        "services:
  keep: {command: 'exec sleep 100'}
  change: {command: 'exec sleep 100'}
  drop: {command: 'exec sleep 100'}
",
    );
    b.start();
    b.ok(&["wait-ready"]);
    let keep_pid = b.unit("keep")["pid"].clone();
    let change_pid = b.unit("change")["pid"].clone();
    let drop_pid = b.unit("drop")["pid"].as_u64().expect("pid") as u32;
    b.write_config(
        "services:
  keep: {command: 'exec sleep 100'}
  change: {command: 'exec sleep 101'}
  new: {command: 'exec sleep 100'}
",
    );
    let out = b.ok(&["reload"]);
    assert_eq!(out, "added: new\nremoved: drop\nchanged: change\n");
    b.ok(&["wait-ready"]);
    assert_eq!(
        b.unit("keep")["pid"],
        keep_pid,
        "an unchanged unit was restarted"
    );
    let changed = b.wait_unit("change", "restarted", |u| {
        u["state"] == "running" && u["pid"] != change_pid
    });
    assert!(changed["command"].as_str().unwrap_or("").contains("101"));
    assert!(
        eventually(Duration::from_secs(5), || !pid_alive(drop_pid)),
        "removed unit still runs"
    );
    let names: Vec<String> = b.status_json()["units"]
        .as_array()
        .expect("units")
        .iter()
        .map(|u| u["name"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(names, ["keep", "change", "new"]);
    // A broken file is refused and changes nothing.
    b.write_config("services: [\n");
    let out = b.ctl(&["reload"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("agentbox.yaml:"));
    assert_eq!(b.unit("keep")["pid"], keep_pid);
}

#[test]
fn reload_reruns_skipped_tasks_after_a_fix() {
    let mut b =
        TestBox::new("tasks:\n  a: {command: 'exit 1'}\n  b: {command: 'true', needs: [a]}\n");
    b.start();
    b.wait_unit("b", "skipped", |u| u["state"] == "skipped");
    b.write_config("tasks:\n  a: {command: 'exit 0'}\n  b: {command: 'true', needs: [a]}\n");
    assert_eq!(
        b.ok(&["reload"]),
        "added: (none)\nremoved: (none)\nchanged: a\n"
    );
    b.ok(&["wait-ready", "--timeout", "5000"]);
    assert_eq!(b.unit("b")["state"], "exited");
}

#[test]
fn start_stop_restart_by_hand() {
    let mut b = TestBox::new("services:\n  s: {command: 'exec sleep 100', autostart: false}\n");
    b.start();
    assert_eq!(b.unit("s")["state"], "pending");
    b.ok(&["wait-ready"]); // autostart: false units are not waited for
    b.ok(&["start", "s"]);
    let first = b.wait_unit("s", "running", |u| u["state"] == "running");
    let again = b.ctl(&["start", "s"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already running"));
    b.ok(&["restart", "s"]);
    let second = b.wait_unit("s", "running again", |u| u["state"] == "running");
    assert_ne!(first["pid"], second["pid"]);
    b.ok(&["stop", "s"]);
    assert_eq!(b.unit("s")["state"], "stopped");
    let unknown = b.ctl(&["stop", "nope"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no unit named `nope`"));
}

#[test]
fn status_json_has_the_documented_fields() {
    let mut b = TestBox::new("services:\n  s: {command: 'exec sleep 100', expose: {port: 3000}}\ntasks:\n  t: {command: 'true'}\n");
    b.start();
    b.ok(&["wait-ready"]);
    let status = b.status_json();
    for u in status["units"].as_array().expect("units") {
        for field in [
            "name",
            "kind",
            "state",
            "pid",
            "restarts",
            "exit_code",
            "ready",
        ] {
            assert!(u.get(field).is_some(), "missing {field} in {u}");
        }
    }
    assert_eq!(b.unit("t")["kind"], "task");
    assert_eq!(
        b.unit("s")["expose"],
        serde_json::json!({"port": 3000, "default": true})
    );
    assert!(status["daemon"]["config_error"].is_null());
}
