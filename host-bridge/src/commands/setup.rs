//! Setting this machine up: `install` (what each provider needs) and `completions`.

use std::io::{IsTerminal, Write as _};
use std::process::ExitCode;

use crate::cli::{CompletionsArgs, InstallArgs};
use crate::daytona::login;
use crate::home::Home;

/// `agentbox install`: what this machine has for each provider, and the Daytona login on
/// a terminal. Exit 0 when the local provider can run.
pub fn install(home: &Home, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let found = |program: &str, arg: &str| {
        std::process::Command::new(program)
            .arg(arg)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let line = |ok: bool, what: &str, fix: &str| {
        if ok {
            println!("ok       {what}");
        } else {
            println!("missing  {what}: {fix}");
        }
    };
    let tmux = found("tmux", "-V");
    let git = found("git", "--version");
    line(
        tmux,
        "tmux (agent sessions)",
        "install it (apt-get install tmux)",
    );
    line(
        git,
        "git (seeding, push)",
        "install it (apt-get install git)",
    );
    line(
        found("docker", "info"),
        "a Docker engine (the docker provider)",
        "install docker.io and start dockerd",
    );
    let settings = login::Settings::load(home.root())?;
    line(
        settings.key.is_some(),
        "Daytona credentials (the daytona provider)",
        "run `agentbox daytona login`",
    );
    if settings.key.is_none()
        && !args.check
        && std::io::stdin().is_terminal()
        && std::io::stderr().is_terminal()
    {
        eprint!("Log in to Daytona now? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if answer.trim().eq_ignore_ascii_case("y") {
            login::login(home.root(), login::LoginArgs::default())?;
        }
    }
    Ok(if tmux && git {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `agentbox completions SHELL`: the completion script on stdout. It asks `agentbox` for
/// the candidates, so box names, sessions and services complete as they are now.
pub fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let script = crate::completion::script(args.shell)?;
    match std::io::stdout().write_all(&script) {
        // The reader took what it wanted (`| head -1`): nothing is wrong.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        other => other?,
    }
    Ok(ExitCode::SUCCESS)
}
