//! Providers: where a box runs. `local` (processes on this machine) is built; `docker`
//! and `daytona` come with their issues and are refused with a clear message until then.

pub mod local;

/// Checks that `name` is a provider this build can run.
pub fn ensure_available(name: &str) -> anyhow::Result<()> {
    match name {
        "local" => Ok(()),
        "docker" | "daytona" => anyhow::bail!(
            "the `{name}` provider is not available in this version of agentbox yet; use --provider local"
        ),
        other => anyhow::bail!("unknown provider `{other}`: use local, docker or daytona"),
    }
}
