//! The proxy's port: `AGENTBOX_PROXY_PORT` when set, else `proxy.port` of the global
//! config, else 443 when this user may bind it, else [`DEFAULT_PORT`].

use std::collections::BTreeMap;

use anyhow::Context;

use super::{DEFAULT_PORT, PORT_VAR};
use crate::config::Resolved;
use crate::home::Home;

/// The global config's key for the port.
pub const PORT_KEY: &str = "proxy.port";

/// The ports to try, in order, for `home`: [`ports_to_try`] of the environment and the
/// global config (a bad value there is refused as `FILE:LINE:COL: …`).
pub fn candidates(home: &Home) -> anyhow::Result<Vec<u16>> {
    let config =
        Resolved::load(&home.config(), None, None, BTreeMap::new()).map_err(anyhow::Error::msg)?;
    let configured = config.get(PORT_KEY).map(|(v, _)| v.to_string());
    let env = std::env::var(PORT_VAR).ok();
    ports_to_try(env.as_deref(), configured.as_deref()).with_context(|| {
        format!(
            "{PORT_VAR}=`{}` is not a port (1-65535)",
            env.as_deref().unwrap_or_default()
        )
    })
}

/// The ports to try, in order: `env` (`AGENTBOX_PROXY_PORT`; empty counts as unset), else
/// `configured` (`proxy.port`, already checked), else 443 then [`DEFAULT_PORT`]. `None`
/// when `env` is not a port.
pub fn ports_to_try(env: Option<&str>, configured: Option<&str>) -> Option<Vec<u16>> {
    let asked = |v: &str| v.trim().parse::<u16>().ok().filter(|p| *p != 0);
    match env.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) => asked(v).map(|p| vec![p]),
        None => Some(match configured.and_then(asked) {
            Some(p) => vec![p],
            None => vec![443, DEFAULT_PORT],
        }),
    }
}

/// What to say when none of the ports could be had.
pub fn how_to_change() -> String {
    format!("set {PORT_VAR}, or `agentbox config set --global {PORT_KEY} PORT`, to another port")
}

#[cfg(test)]
mod tests {
    use super::ports_to_try;

    #[test]
    fn the_environment_wins_over_the_config_over_the_default() {
        assert_eq!(ports_to_try(Some("9001"), Some("9002")), Some(vec![9001]));
        assert_eq!(ports_to_try(Some(" 9001 "), None), Some(vec![9001]));
        assert_eq!(ports_to_try(None, Some("9002")), Some(vec![9002]));
        assert_eq!(ports_to_try(Some(""), Some("9002")), Some(vec![9002]));
        assert_eq!(ports_to_try(None, None), Some(vec![443, 8443]));
        for bad in ["0", "65536", "x", "-1"] {
            assert_eq!(ports_to_try(Some(bad), Some("9002")), None, "{bad}");
        }
    }
}
