//! Opening an address in this machine's browser, for `agentbox url --open`: `$BROWSER`
//! (a `:`-separated list of commands, each tried in turn, `%s` standing for the address,
//! else the address last), else `xdg-open`, else `open` (macOS).

use std::process::{Command, Stdio};

use anyhow::bail;

/// Opens `url`; returns the program that took it. The address is always one argument,
/// never a shell line.
pub fn open(url: &str) -> anyhow::Result<String> {
    let mut tried = Vec::new();
    let from_env = std::env::var("BROWSER").unwrap_or_default();
    let mut candidates: Vec<Vec<String>> = from_env
        .split(':')
        .map(|c| c.split_whitespace().map(String::from).collect::<Vec<_>>())
        .filter(|words| !words.is_empty())
        .collect();
    candidates.push(vec!["xdg-open".into()]);
    candidates.push(vec!["open".into()]);
    for words in candidates {
        let program = words[0].clone();
        let Some(path) = crate::shell::which(&program).or_else(|| {
            let p = std::path::PathBuf::from(&program);
            p.is_absolute().then_some(p)
        }) else {
            continue;
        };
        let mut args: Vec<String> = words[1..].iter().map(|w| w.replace("%s", url)).collect();
        if !words[1..].iter().any(|w| w.contains("%s")) {
            args.push(url.to_string());
        }
        let status = Command::new(&path)
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .status();
        match status {
            Ok(s) if s.success() => return Ok(program),
            Ok(s) => tried.push(format!("{program} ({s})")),
            Err(e) => tried.push(format!("{program} ({e})")),
        }
    }
    if tried.is_empty() {
        bail!(
            "no browser to open it with: set BROWSER to your browser's command, or install xdg-open"
        );
    }
    bail!(
        "no browser opened it (tried {}): set BROWSER to your browser's command",
        tried.join(", ")
    )
}
