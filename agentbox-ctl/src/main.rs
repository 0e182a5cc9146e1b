//! `agentbox-ctl` entry point: parse arguments, set up logging, hand over to the library.

use std::process::ExitCode;

use agentbox_ctl::cli::{self, Cli, Cmd};
use agentbox_ctl::paths::Paths;
use clap::Parser;

fn main() -> ExitCode {
    agentbox_protocol::closed_pipe::exit_quietly();
    let cli = cli::quick_parse(std::env::args_os().skip(1)).unwrap_or_else(Cli::parse);
    if let Cmd::SessionExec { env_file, argv } = &cli.command {
        let err = agentbox_ctl::session::exec_with_env_file(env_file, argv);
        eprintln!("agentbox-ctl session-exec: {err}");
        return ExitCode::from(127);
    }
    // Client commands are short-lived and report through their output; they set up logging
    // only when asked to (RUST_LOG), which keeps a `status` call cheap.
    if matches!(cli.command, Cmd::Daemon) || std::env::var_os("RUST_LOG").is_some() {
        agentbox_protocol::logging::init(cli.log_format, "info");
    }
    let paths = Paths::from_env();
    match cli.command {
        Cmd::Daemon => {
            // One thread: the daemon's work is waiting, and its idle RSS stays small.
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("agentbox-ctl: cannot start the async runtime: {e}");
                    return ExitCode::from(1);
                }
            };
            match runtime.block_on(agentbox_ctl::daemon::run(paths)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("agentbox-ctl daemon: {e:#}");
                    ExitCode::from(1)
                }
            }
        }
        other => cli::run(other, &paths),
    }
}
