//! Arguments of `agentbox daytona …` and `agentbox checkpoint …`.

use clap::Subcommand;

/// `agentbox daytona …`. Also `agentbox daytona create|run|claude|codex|opencode …`: the
/// same command with `--provider daytona` (or set `box.provider: daytona` once).
#[derive(Debug, Subcommand)]
pub enum DaytonaCmd {
    /// Check a Daytona API key with one cheap call and keep it in
    /// $AGENTBOX_HOME/secrets.env (0600). DAYTONA_API_KEY, DAYTONA_ORGANIZATION_ID and
    /// DAYTONA_API_URL in the environment win over the file; project .env files are never
    /// read.
    Login {
        /// The key (`-` reads it from stdin). Without it: a prompt that does not echo, or
        /// a line from stdin when that is not a terminal (keeps the key out of argv).
        #[arg(long, value_name = "KEY")]
        api_key: Option<String>,
        /// The organization (its id or name) among those the key reaches; refused with
        /// their list when it names none. Without it: the only one, or a choice on a
        /// terminal.
        #[arg(long = "organization", alias = "org-id", value_name = "ID|NAME")]
        org_id: Option<String>,
        /// Daytona's API (default https://app.daytona.io/api).
        #[arg(long, value_name = "URL")]
        api_url: Option<String>,
        /// Accept an `http://` API URL (and preview URLs) to a host other than this machine:
        /// the key and everything the host says to the box would cross the network
        /// unencrypted. Saved with the key; a later login without it takes it back.
        #[arg(long)]
        insecure: bool,
        /// Show what is configured (key masked) and whether Daytona accepts it; exit 1
        /// when it does not.
        #[arg(long)]
        status: bool,
        /// With --status: JSON.
        #[arg(long, requires = "status")]
        json: bool,
    },
    /// Copy this machine's renewable agent credentials (Claude `.credentials.json`, Codex
    /// and OpenCode `auth.json`) into the organization's credentials volume, which every
    /// Daytona box mounts; nothing is copied back. Needs no box: a short-lived sandbox
    /// from the base snapshot (`box.imageDaytona`) mounts the volume, is written through
    /// and deleted.
    Resync {
        /// Only this agent's credentials.
        #[arg(short = 'a', long = "agent", value_enum, default_value = "all")]
        agent: ResyncAgent,
        /// Write through this running daytona box instead of a short-lived sandbox.
        #[arg(value_name = "BOX")]
        target: Option<String>,
    },
}

/// Whose credentials `daytona resync` copies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ResyncAgent {
    /// Claude Code's `~/.claude/.credentials.json`.
    Claude,
    /// Codex's `~/.codex/auth.json`.
    Codex,
    /// OpenCode's `~/.local/share/opencode/auth.json`.
    Opencode,
    /// Every one of them this machine has.
    All,
}

impl ResyncAgent {
    /// Whether agent `name`'s credentials are chosen.
    pub fn includes(self, name: &str) -> bool {
        match self {
            Self::Claude => name == "claude",
            Self::Codex => name == "codex",
            Self::Opencode => name == "opencode",
            Self::All => true,
        }
    }

    /// For messages: "claude", "any agent", ….
    pub fn describe(self) -> &'static str {
        match self {
            Self::Claude => "claude",
            Self::Codex => "codex",
            Self::Opencode => "opencode",
            Self::All => "any agent",
        }
    }
}

/// `agentbox checkpoint …`.
#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Capture a daytona box's disk as checkpoint NAME (the box runs on afterwards).
    Create {
        /// Its name (a-z, 0-9, -).
        name: String,
        /// The box (default: the project's only box).
        #[arg(long = "box", value_name = "BOX")]
        target: Option<String>,
        /// New daytona boxes of this project start from it (`box.defaultCheckpointDaytona`).
        #[arg(long)]
        set_default: bool,
        /// Not offered (the original's docker options): refused with a reason.
        #[arg(long, hide = true)]
        merged: bool,
        /// Not offered: refused with a reason.
        #[arg(long, hide = true)]
        replace: bool,
    },
    /// The project's checkpoints.
    List {
        /// JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete a checkpoint and its snapshot.
    Rm {
        /// Its name.
        name: String,
    },
}
