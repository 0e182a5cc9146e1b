//! The box's screen (images made with `agentbox prepare --browser`, which set
//! `AGENTBOX_SCREEN=1`): the built-in units that run a virtual display with a VNC server,
//! a window manager on it, and noVNC on port 6080, each through the image's
//! `/usr/local/lib/agentbox/screen` script. The daemon turns them into services
//! (restarted always, shown by `status`), like the relay and the Docker engine.

use anyhow::bail;

/// The script that starts each part (box/screen in the image).
const SCREEN_START: &str = "/usr/local/lib/agentbox/screen";

/// The port noVNC (websockify) serves on, exposed through the WebProxy and Daytona's
/// preview links.
pub const NOVNC_PORT: u16 = 6080;

/// The display's VNC port (loopback only; noVNC reaches it).
pub const VNC_PORT: u16 = 5900;

/// One part of the screen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenUnit {
    /// The unit's name (`agentbox-` reserved names).
    pub name: &'static str,
    /// Its command line.
    pub argv: Vec<String>,
    /// The units it needs running first.
    pub needs: Vec<String>,
    /// The loopback port that answers once it is ready.
    pub ready_port: u16,
    /// Whether the WebProxy routes to it (by its name) on `ready_port`.
    pub exposed: bool,
}

/// The screen's units as `setting` (the value of `AGENTBOX_SCREEN`) asks: none for unset,
/// empty or `0`, all three for `1`.
pub fn units(setting: Option<&str>) -> anyhow::Result<Vec<ScreenUnit>> {
    match setting {
        None | Some("" | "0") => Ok(Vec::new()),
        Some("1") => {
            let part = |name: &'static str, what: &str, needs: &[&str], port, exposed| ScreenUnit {
                name,
                argv: vec![SCREEN_START.into(), what.into()],
                needs: needs.iter().map(|n| (*n).to_string()).collect(),
                ready_port: port,
                exposed,
            };
            Ok(vec![
                part("agentbox-display", "display", &[], VNC_PORT, false),
                part("agentbox-wm", "wm", &["agentbox-display"], 0, false),
                part(
                    "agentbox-screen",
                    "novnc",
                    &["agentbox-display"],
                    NOVNC_PORT,
                    true,
                ),
            ])
        }
        Some(other) => {
            bail!("AGENTBOX_SCREEN={other}: use 1 (run the box's screen: display, window manager, noVNC) or 0")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_setting_chooses_the_units() {
        assert!(units(None).expect("unset").is_empty());
        assert!(units(Some("0")).expect("0").is_empty());
        let names: Vec<_> = units(Some("1"))
            .expect("1")
            .into_iter()
            .map(|u| u.name)
            .collect();
        assert_eq!(
            names,
            ["agentbox-display", "agentbox-wm", "agentbox-screen"]
        );
        let err = units(Some("yes")).expect_err("yes");
        assert!(err.to_string().contains("AGENTBOX_SCREEN=yes"));
    }
}
