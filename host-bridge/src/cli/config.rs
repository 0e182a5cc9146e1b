//! Arguments of `agentbox config`.

use clap::{Args, Subcommand};

/// Which file `config set|unset` writes.
#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct Scope {
    /// The global config ($AGENTBOX_HOME/config.yaml).
    #[arg(long)]
    pub global: bool,
    /// This project's config (the default inside a repo).
    #[arg(long)]
    pub project: bool,
}

/// `config …`
#[derive(Debug, Subcommand)]
pub enum ConfigCmd {
    /// Print the effective value of a key.
    Get {
        /// The key.
        key: String,
        /// Show every layer: flag > agentbox.yaml defaults > project > global > built-in.
        #[arg(long)]
        all: bool,
    },
    /// Set a key.
    Set {
        /// The key.
        key: String,
        /// The value.
        value: String,
        /// Where.
        #[command(flatten)]
        scope: Scope,
    },
    /// Remove a key from a config file.
    Unset {
        /// The key.
        key: String,
        /// Where.
        #[command(flatten)]
        scope: Scope,
    },
    /// Every known key with its effective value and where it comes from.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}
