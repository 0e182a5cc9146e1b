//! The host binary's command line.

mod common;

use std::os::unix::process::CommandExt;
use std::process::Command;

use common::{finish_within, TimedOutput, AGENTBOX, COMMAND_LIMIT};

#[test]
fn help_version_and_completions() {
    let help = Command::new(AGENTBOX)
        .arg("--help")
        .timed_output()
        .expect("run");
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("completions"));
    let version = Command::new(AGENTBOX)
        .arg("--version")
        .timed_output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout).trim(),
        concat!("agentbox ", env!("CARGO_PKG_VERSION"))
    );
    let bash = Command::new(AGENTBOX)
        .args(["completions", "bash"])
        .timed_output()
        .expect("run");
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_agentbox()"));
}

#[test]
fn bad_usage_exits_2() {
    let out = Command::new(AGENTBOX)
        .arg("no-such-command")
        .timed_output()
        .expect("run");
    assert_eq!(out.status.code(), Some(2));
}

/// Every `agentbox …` in backticks in `text`, as its words (`a|b` alternatives split later).
fn named_commands(text: &str) -> Vec<Vec<String>> {
    text.split('`')
        .skip(1)
        .step_by(2)
        .filter_map(|span| span.strip_prefix("agentbox "))
        .map(|rest| rest.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Whether the words after `agentbox` start with a command that exists: every word that
/// names a subcommand level must be one (a placeholder such as CMD, BOX or `…` stops the
/// check, as does the first argument of a command without subcommands).
fn exists(root: &clap::Command, words: &[String]) -> Result<(), String> {
    let sugar = agentbox::cli::PROVIDER_SUGAR;
    let mut cmd = root;
    for (i, word) in words.iter().enumerate() {
        if !cmd.has_subcommands() {
            return Ok(());
        }
        if !word.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Ok(());
        }
        for alternative in word.split('|') {
            let known = cmd.find_subcommand(alternative).is_some()
                || (i == 1 && words[0] == "daytona" && sugar.contains(&alternative));
            if !known {
                return Err(format!("`{alternative}` in `agentbox {}`", words.join(" ")));
            }
        }
        match cmd.find_subcommand(word) {
            Some(sub) => cmd = sub,
            None => return Ok(()),
        }
    }
    Ok(())
}

/// The long help of `cmd` and of every command under it, with the path to each.
fn every_help(cmd: &mut clap::Command, path: &str, out: &mut Vec<(String, String)>) {
    out.push((path.to_string(), cmd.render_long_help().to_string()));
    let names: Vec<String> = cmd
        .get_subcommands()
        .map(|s| s.get_name().to_string())
        .collect();
    for name in names {
        if let Some(sub) = cmd.find_subcommand_mut(&name) {
            every_help(sub, &format!("{path} {name}"), out);
        }
    }
}

#[test]
fn help_names_only_commands_that_exist() {
    let mut root = agentbox::completion::command();
    root.build();
    let mut helps = Vec::new();
    every_help(&mut root.clone(), "agentbox", &mut helps);
    assert!(helps.len() > 40, "every command's help: {}", helps.len());
    let mut wrong = Vec::new();
    let mut named = 0;
    for (path, help) in &helps {
        for words in named_commands(help) {
            named += 1;
            if let Err(e) = exists(&root, &words) {
                wrong.push(format!("{path} --help names {e}"));
            }
        }
    }
    assert!(named > 10, "the helps name commands: {named}");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn daytona_help_lists_what_the_provider_sugar_does() {
    let out = Command::new(AGENTBOX)
        .args(["daytona", "--help"])
        .timed_output()
        .expect("run");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for sugar in agentbox::cli::PROVIDER_SUGAR {
        assert!(
            help.contains(&format!("agentbox daytona {sugar} ")),
            "`agentbox daytona --help` says nothing of `agentbox daytona {sugar}`:\n{help}"
        );
    }
    assert!(help.contains("--provider daytona"), "{help}");
}

#[test]
fn log_format_is_one_global_flag_shown_once() {
    let help = |args: &[&str]| {
        let out = Command::new(AGENTBOX)
            .args(args)
            .timed_output()
            .expect("run");
        assert!(out.status.success(), "{args:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(help(&["--help"]).matches("--log-format").count(), 1);
    for command in [
        &["list", "--help"][..],
        &["daytona", "login", "--help"],
        &["config", "get", "--help"],
    ] {
        assert!(!help(command).contains("--log-format"), "{command:?}");
    }
    // Taken anywhere on the line, by every command.
    let out = Command::new(AGENTBOX)
        .args(["completions", "bash", "--log-format", "json"])
        .timed_output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The write end of a pipe whose read end is already closed.
fn closed_pipe() -> std::process::Stdio {
    let (read, write) = nix::unistd::pipe().expect("pipe");
    drop(read);
    std::process::Stdio::from(write)
}

/// Runs `program args` with `stdout` (and/or stderr) into a pipe nobody reads, and checks
/// that it neither panics nor prints a backtrace.
fn quiet_on_a_closed_pipe(program: &str, args: &[&str], env: &[(&str, &str)], stderr_too: bool) {
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .env("RUST_BACKTRACE", "1")
        .stdin(std::process::Stdio::null())
        .stdout(closed_pipe())
        .stderr(if stderr_too {
            closed_pipe()
        } else {
            std::process::Stdio::piped()
        })
        .process_group(0)
        .spawn()
        .expect("run");
    // Not `timed_output`: that would pipe the stdout this test closes.
    let out = finish_within(child, &format!("{program} {args:?}"), COMMAND_LIMIT).expect("run");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_ne!(
        out.status.code(),
        Some(101),
        "{program} {args:?} panicked: {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{program} {args:?}: {stderr}");
}

#[test]
fn a_closed_pipe_ends_every_binary_quietly() {
    let home = tempfile::tempdir().expect("tempdir");
    let home_env = home.path().to_str().expect("utf-8 path");
    // `agentbox completions zsh | head -1`
    quiet_on_a_closed_pipe(AGENTBOX, &["completions", "zsh"], &[], false);
    quiet_on_a_closed_pipe(AGENTBOX, &["list"], &[("AGENTBOX_HOME", home_env)], false);
    quiet_on_a_closed_pipe(AGENTBOX, &["list"], &[("AGENTBOX_HOME", home_env)], true);
    let bins = std::path::Path::new(AGENTBOX).parent().expect("bin dir");
    let yaml = home.path().join("agentbox.yaml");
    std::fs::write(&yaml, "services: {}\n").expect("write");
    let ctl = bins.join("agentbox-ctl");
    let ctl = ctl.to_str().expect("utf-8 path");
    quiet_on_a_closed_pipe(
        ctl,
        &["validate", yaml.to_str().expect("utf-8")],
        &[],
        false,
    );
    quiet_on_a_closed_pipe(ctl, &["port-open", "1"], &[], true);
    // The relay without its settings says so on stderr, which is closed.
    let relay = bins.join("agentbox-relay");
    quiet_on_a_closed_pipe(relay.to_str().expect("utf-8 path"), &[], &[], true);
}
