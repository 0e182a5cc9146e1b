//! `agentbox port BOX PORT [--local P]`: forwards a TCP port of the box (any port on its
//! loopback, declared or not) to this machine's 127.0.0.1, like `kubectl port-forward`,
//! through the box's relay on every provider ([`crate::port_forward`]). Runs until Ctrl-C
//! (or SIGTERM); a connection the box refuses is reported and the forward goes on.

use std::process::ExitCode;

use anyhow::Context as _;

use super::context::{ensure_running, relay_of, Ctx};
use crate::cli::PortArgs;
use crate::provider::AnyBox;

/// `agentbox port`.
pub fn port(ctx: &Ctx, args: &PortArgs) -> anyhow::Result<ExitCode> {
    let record = ctx.resolve(Some(&args.target))?;
    let b = AnyBox::open(&record)?;
    ensure_running(&b, &record.name)?;
    let relay = relay_of(&record)?;
    let (name, port) = (record.name.clone(), args.port);
    let local = args.local.unwrap_or(port);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", local))
            .await
            .with_context(|| {
                format!("cannot listen on 127.0.0.1:{local} here: choose another port with --local P (0 picks a free one)")
            })?;
        let bound = listener.local_addr()?;
        // The one line a script reads: where to connect.
        println!("Forwarding from {bound} -> {port} (box {name})");
        eprintln!("agentbox: connections to {bound} reach port {port} of box `{name}`; Ctrl-C ends the forward");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                accepted = listener.accept() => {
                    let (conn, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            eprintln!("agentbox: cannot accept a connection: {e}");
                            continue;
                        }
                    };
                    let relay = relay.clone();
                    let name = name.clone();
                    tokio::spawn(async move {
                        if let Err(e) = crate::port_forward::carry(&relay, port, conn).await {
                            eprintln!(
                                "agentbox: connection from {peer} to port {port} of box `{name}`: {}",
                                crate::text::shown_lines(&format!("{e:#}"))
                            );
                        }
                    });
                }
            }
        }
        eprintln!("agentbox: forward of port {port} of box `{name}` ended");
        Ok::<_, anyhow::Error>(())
    })?;
    Ok(ExitCode::SUCCESS)
}
