//! Arguments of the commands that set this machine up: `install`, `completions`.

use clap::Args;

/// `agentbox install`: on a terminal it asks; with `-y` the flags answer. Running it again
/// changes only what differs (the provider, a missing login, an image whose inputs
/// changed).
#[derive(Debug, Args)]
#[command(after_help = "Examples:
  agentbox install                                  (asks)
  agentbox install -y --provider docker             (builds the box image)
  echo \"$KEY\" | agentbox install -y --provider daytona --api-key -
  agentbox install --check --json                   (the doctor, for scripts)")]
pub struct InstallArgs {
    /// Only report what this machine has for each provider; change and ask nothing
    /// (exit 1 when the local provider cannot run).
    #[arg(long, conflicts_with_all = ["yes", "provider", "api_key", "no_prepare"])]
    pub check: bool,
    /// With --check: the report as JSON on stdout.
    #[arg(long, requires = "check")]
    pub json: bool,
    /// Ask nothing: the provider from --provider (else box.provider as it is), the
    /// Daytona key from --api-key, and prepare unless --no-prepare.
    #[arg(short = 'y', long = "yes")]
    pub yes: bool,
    /// The provider new boxes use, stored as `box.provider` in the global config.
    #[arg(long, value_parser = ["local", "docker", "daytona"])]
    pub provider: Option<String>,
    /// Daytona: the API key (`-` reads it from stdin); without it a terminal prompts
    /// without echo. A key already saved and accepted is kept.
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Daytona: the organization (id or name) among those the key reaches; without it,
    /// the only one, or a choice on a terminal (-y with several refuses, listing them).
    #[arg(long = "organization", alias = "org-id", value_name = "ID|NAME")]
    pub org_id: Option<String>,
    /// Daytona: the API (default https://app.daytona.io/api).
    #[arg(long, value_name = "URL")]
    pub api_url: Option<String>,
    /// Daytona: accept a plain `http://` API URL to another machine (see `daytona login`).
    #[arg(long)]
    pub insecure: bool,
    /// Do not build the docker image or bake the Daytona snapshot now.
    #[arg(long)]
    pub no_prepare: bool,
    /// For the prepare: the base image (as `prepare --base-image`).
    #[arg(long, value_name = "IMG")]
    pub base_image: Option<String>,
    /// For the prepare: the agents to bake in (as `prepare --agents`).
    #[arg(long, value_name = "LIST")]
    pub agents: Option<String>,
}

/// `agentbox completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell.
    pub shell: clap_complete::Shell,
}
