//! Arguments of `agentbox proxy`: the host's HTTPS proxy of
//! `https://<service>.<box>.localhost` addresses.

use clap::Subcommand;

/// `agentbox proxy …`.
#[derive(Debug, Subcommand)]
pub enum ProxyCmd {
    /// Start the proxy in the background (one per AGENTBOX_HOME; `agentbox url` starts it
    /// too).
    Start,
    /// Stop it.
    Stop,
    /// Say whether it runs, and on which port.
    Status {
        /// Print JSON: {"running", "pid", "port", "ca"}.
        #[arg(long)]
        json: bool,
    },
    /// Trust the proxy's CA: install it into the system store (update-ca-certificates)
    /// and the browsers' NSS database (~/.pki/nssdb, with certutil from libnss3-tools).
    ///
    /// Prints each command before running it and asks first (`-y` does not ask).
    Trust {
        /// Do not ask.
        #[arg(short = 'y', long = "yes")]
        yes: bool,
        /// Only print the CA certificate's path (to import it by hand), change nothing.
        #[arg(long)]
        print: bool,
    },
    /// Run it in the foreground.
    #[command(hide = true)]
    Run,
}
