//! `agentbox-ctl validate`: every config error has a `file:line:col` position and a reason.

mod common;

use common::TestBox;

fn validate(config: &str) -> (bool, String, String) {
    let b = TestBox::new(config);
    let out = b.ctl(&["validate"]);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_valid_config_counts_its_units() {
    let (ok, stdout, _) =
        validate("tasks:\n  a: {command: 'true'}\nservices:\n  s: {command: sleep 1}\n");
    assert!(ok);
    assert!(stdout.contains("OK: 1 service(s), 1 task(s)"), "{stdout}");
}

#[test]
fn errors_point_at_line_and_column() {
    let (ok, _, stderr) = validate(
        "services:\n  web:\n    command: npm start\n    restart: sometimes\n    ready_when:\n      port: 99999\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains(
            "agentbox.yaml:4:14: `restart` must be always, on-failure or never, found `sometimes`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("agentbox.yaml:6:13: `ready_when.port` must be between 1 and 65535"),
        "{stderr}"
    );
}

#[test]
fn cycles_are_named() {
    let (ok, _, stderr) =
        validate("services:\n  a: {command: x, needs: [b]}\n  b: {command: y, needs: [a]}\n");
    assert!(!ok);
    assert!(stderr.contains("cyclic dependency: a → b → a"), "{stderr}");
}

#[test]
fn unknown_keys_warn_but_load() {
    let (ok, _, stderr) =
        validate("services:\n  a:\n    command: x\n    colour: blue\nfuture_key: 1\n");
    assert!(ok, "{stderr}");
    assert!(
        stderr
            .contains("agentbox.yaml:4:5: warning: unknown key `colour` in service `a` (ignored)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("agentbox.yaml:5:1: warning: unknown key `future_key`"),
        "{stderr}"
    );
}

#[test]
fn each_rule_is_enforced() {
    let cases: &[(&str, &str)] = &[
        ("services:\n  a: {}\n", "service `a` has no `command`"),
        ("services:\n  a: {command: ''}\n", "must be a non-empty string or list"),
        ("services:\n  a: {command: x, needs: [nope]}\n", "`a` needs `nope`, which is not a service or task"),
        ("services:\n  a: {command: x, needs: [a]}\n", "`a` cannot need itself"),
        ("tasks:\n  a: {command: x}\nservices:\n  a: {command: y}\n", "`a` is defined twice"),
        ("services:\n  'bad name': {command: x}\n", "invalid unit name `bad name`"),
        ("services:\n  a: {command: x, ready_when: {port: 1, http: 'http://x'}}\n", "exactly one of `port`, `http` or `log_match`"),
        ("services:\n  a: {command: x, ready_when: {http: 'https://x/'}}\n", "https probes are not supported"),
        ("services:\n  a: {command: x, ready_when: {log_match: '(' }}\n", "not a valid regex"),
        ("services:\n  a: {command: x, ready_when: {port: 80, expect_status: 200}}\n", "`expect_status` cannot be used with a `port` probe"),
        ("services:\n  a: {command: x, backoff: {initial_ms: 10, max_ms: 5}}\n", "`backoff.max_ms` (5) is below `initial_ms` (10)"),
        ("services:\n  a: {command: x, backoff: {factor: 0.5}}\n", "`backoff.factor` must be at least 1"),
        ("services:\n  a: {command: x, env: {A: [1]}}\n", "`A` in `env` of service `a` must be a string, number or boolean"),
        ("services:\n  a: {command: x, autostart: 'yes'}\n", "`autostart` must be true or false"),
        ("services:\n  a: {command: x, expose: {port: 1, default: true}}\n  b: {command: y, expose: {port: 2, default: true}}\n", "only one service can be the default exposure"),
        ("services:\n  a: {command: x, expose: {}}\n", "needs a `port`"),
        ("services:\n  a: {command: x, image: redis}\n", "`image` services are not supported"),
        ("tasks:\n  a: {command: x, run_once: {check: ''}}\n", "`run_once.check` must not be empty"),
        ("tasks:\n  a: {command: x, run_once: 3}\n", "`run_once` must be true or {check: COMMAND}"),
        ("services: [a, b]\n", "services must be a mapping, found a list"),
        ("- just a list\n", "the top level must be a mapping"),
        ("services:\n  a: {command: x\n", "agentbox.yaml:"),
        ("services:\n  a: {command: x, command: y}\n", "duplicate key `command`"),
    ];
    for (config, expected) in cases {
        let (ok, _, stderr) = validate(config);
        assert!(!ok, "accepted:\n{config}");
        assert!(
            stderr.contains(expected),
            "config:\n{config}\nexpected: {expected}\ngot: {stderr}"
        );
        assert!(
            stderr.lines().all(|l| l.contains("agentbox.yaml:")),
            "an error without a position: {stderr}"
        );
    }
}

#[test]
fn several_exposed_services_first_is_default() {
    let b = TestBox::new("services:\n  a: {command: x, expose: {port: 3000}}\n  b: {command: y, expose: {port: 4000}}\n");
    assert!(b.ctl(&["validate"]).status.success());
}

#[test]
fn task_only_warnings_for_service_keys() {
    let (ok, _, stderr) = validate("tasks:\n  t: {command: x, restart: always}\n");
    assert!(ok);
    assert!(
        stderr.contains("`restart` applies to services only; ignored for task `t`"),
        "{stderr}"
    );
}
