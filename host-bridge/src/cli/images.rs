//! Arguments of the commands that make and clean up box images and containers: `prepare`,
//! `prune`.

use clap::Args;

/// `agentbox prepare`.
#[derive(Debug, Args)]
pub struct PrepareArgs {
    /// The provider (docker, or daytona: the image is then made a Daytona snapshot).
    #[arg(long, default_value = "docker")]
    pub provider: String,
    /// The base image (default: config `box.baseImage`, else debian:bookworm-slim).
    #[arg(long, value_name = "IMG")]
    pub base_image: Option<String>,
    /// Rebuild even when the inputs are unchanged.
    #[arg(long)]
    pub force: bool,
    /// The agents to bake in: a comma-separated list of claude, codex and opencode, or
    /// `none` (default: config `box.agents`, else all three); `browser` in the list is
    /// `--browser`. Their packages are fetched
    /// on this machine with `npm pack`, cached in ~/.cache/agentbox/agents
    /// (AGENTBOX_AGENT_CACHE).
    #[arg(long, value_name = "LIST")]
    pub agents: Option<String>,
    /// Bake a Docker engine into the image, for boxes created with `--dind` (default:
    /// config `box.dind`, else no; about 150 MB more).
    #[arg(long)]
    pub dind: bool,
    /// Bake a browser the agent drives and a screen to watch it (`agentbox screen`):
    /// Chromium, Playwright with its MCP server (configured for every agent), a virtual
    /// display, a window manager and noVNC (default: config `box.browser`, else no; also
    /// `browser` in `--agents`). Playwright's npm packages are fetched on this machine.
    #[arg(long)]
    pub browser: bool,
    /// The resources of the Daytona snapshot, CPU-MEM-DISK (vCPUs, GB, GB), which every
    /// box made from it gets (default: config `box.sizeDaytona`, else 2-4-8); pinned as
    /// `box.sizeDaytona`. Daytona only (a docker box's size is set at `create`).
    #[arg(long, value_name = "CPU-MEM-DISK")]
    pub size: Option<String>,
}

/// `agentbox prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The provider (docker or daytona).
    #[arg(long, default_value = "docker")]
    pub provider: String,
    /// Only list them.
    #[arg(long)]
    pub dry_run: bool,
}
