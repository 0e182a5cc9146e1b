//! `agentbox` entry point: parses the command line and hands each command to its family
//! in [`agentbox::commands`].

use std::process::ExitCode;

use agentbox::cli::{self, BridgeCmd, Cmd, DaytonaCmd};
use agentbox::commands::{
    agents, audit, boxes, config, create, dashboard, daytona, daytona_resync, exec, files, git,
    images, install, list, port, proxy, screen, services, setup, share, top, url, Ctx,
};
use agentbox::daytona::login::LoginArgs;
use agentbox::home::Home;
use agentbox::image::Agent;
use clap::Parser;

fn main() -> ExitCode {
    agentbox_protocol::closed_pipe::exit_quietly();
    // `COMPLETE=SHELL agentbox -- agentbox …` (what `agentbox completions` scripts run):
    // print the candidates and exit.
    clap_complete::CompleteEnv::with_factory(agentbox::completion::command)
        .var(agentbox::completion::VAR)
        .complete();
    let cli = cli::Cli::parse_from(cli::provider_prefix(std::env::args_os()));
    agentbox_protocol::logging::init(cli.log_format, "warn");
    match dispatch(cli.command) {
        Ok(code) => code,
        Err(e) => {
            // An error can carry a box's words (a relay's error message): escaped.
            eprintln!(
                "agentbox: {}",
                agentbox::text::shown_lines(&format!("{e:#}"))
            );
            ExitCode::from(1)
        }
    }
}

/// Runs one command. The commands that need no box records (the bridge daemon, `install`,
/// `daytona login`, `completions`) run without opening them.
fn dispatch(command: Cmd) -> anyhow::Result<ExitCode> {
    let ctx = Ctx::new;
    match command {
        Cmd::Completions(a) => setup::completions(&a),
        Cmd::Install(a) => install::install(&Home::from_env()?, &a),
        Cmd::Bridge(BridgeCmd::Run) => git::bridge(&Home::from_env()?, &BridgeCmd::Run),
        Cmd::Proxy(cmd) => proxy::proxy(&Home::from_env()?, &cmd),
        Cmd::Daytona(DaytonaCmd::Login {
            api_key,
            org_id,
            api_url,
            insecure,
            status,
            json,
        }) => daytona::login(
            &Home::from_env()?,
            LoginArgs {
                api_key,
                org_id,
                api_url,
                insecure,
            },
            status,
            json,
        ),
        Cmd::Create(a) => create::create(&ctx()?, &a),
        Cmd::Run(a) => create::run(&ctx()?, &a),
        Cmd::List(a) => list::list(&ctx()?, &a),
        Cmd::Status(a) => boxes::status(&ctx()?, &a),
        Cmd::Dashboard(a) => dashboard::dashboard(&ctx()?, &a),
        Cmd::Stop(a) => boxes::stop_all(&ctx()?, &a),
        Cmd::Start(a) => boxes::start_all(&ctx()?, &a),
        Cmd::Destroy(a) => boxes::destroy(&ctx()?, &a),
        Cmd::Exec(a) => exec::exec(&ctx()?, &a),
        Cmd::Attach(a) => exec::attach(&ctx()?, &a),
        Cmd::Shell(a) => exec::shell(&ctx()?, &a),
        Cmd::Cp(a) => files::cp(&ctx()?, &a),
        Cmd::Sync(a) => files::sync(&ctx()?, &a),
        Cmd::Download(a) => files::download(&ctx()?, &a),
        Cmd::Git(a) => git::git(&ctx()?, &a),
        Cmd::Approvals(a) => git::approvals(&ctx()?, &a),
        Cmd::Approve(a) => git::decide(&ctx()?, &a, true),
        Cmd::Deny(a) => git::decide(&ctx()?, &a, false),
        Cmd::Audit(a) => audit::audit(&ctx()?, &a),
        Cmd::Bridge(cmd) => git::bridge(&ctx()?.home, &cmd),
        Cmd::Config(cmd) => config::config(&ctx()?, cmd),
        Cmd::Prepare(a) => images::prepare(&ctx()?, &a),
        Cmd::Prune(a) => images::prune(&ctx()?, &a),
        Cmd::Url(a) => url::url(&ctx()?, &a),
        Cmd::Logs(a) => services::logs(&ctx()?, &a),
        Cmd::Share(a) => share::share(&ctx()?, &a),
        Cmd::Join(a) => share::join(&ctx()?, &a),
        Cmd::Services(a) => services::services(&ctx()?, &a),
        Cmd::Port(a) => port::port(&ctx()?, &a),
        Cmd::Top(a) => top::top(&ctx()?, &a),
        Cmd::Screen(a) => screen::screen(&ctx()?, &a),
        Cmd::Daytona(DaytonaCmd::Resync { agent, target }) => {
            daytona_resync::resync(&ctx()?, agent, target.as_deref())
        }
        Cmd::Checkpoint(cmd) => daytona::checkpoint(&ctx()?, cmd),
        Cmd::Claude(a) => agents::agent(&ctx()?, Agent::Claude, &a),
        Cmd::Codex(a) => agents::agent(&ctx()?, Agent::Codex, &a),
        Cmd::Opencode(a) => agents::agent(&ctx()?, Agent::Opencode, &a),
        Cmd::Resync(a) => agents::resync(&ctx()?, &a),
    }
}
