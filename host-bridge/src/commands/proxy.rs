//! `agentbox proxy start|stop|status|trust`: the host's HTTPS proxy and its CA.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{bail, Context};

use crate::cli::ProxyCmd;
use crate::home::Home;
use crate::proxy::{ca, daemon};

/// Runs one `agentbox proxy` command.
pub fn proxy(home: &Home, cmd: &ProxyCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        ProxyCmd::Run => daemon::run(home)?,
        ProxyCmd::Start => {
            let r = daemon::ensure_started(home)?;
            eprintln!("proxy running on port {} (pid {})", r.port, r.pid);
        }
        ProxyCmd::Stop => {
            if daemon::stop(home)? {
                eprintln!("proxy stopped");
            } else {
                eprintln!("proxy was not running");
            }
        }
        ProxyCmd::Status { json } => {
            let running = daemon::running(home);
            let (cert, _) = ca::paths(home.root());
            if *json {
                println!(
                    "{}",
                    serde_json::json!({
                        "running": running.is_some(),
                        "pid": running.map(|r| r.pid),
                        "port": running.map(|r| r.port),
                        "ca": cert.exists().then(|| cert.display().to_string()),
                    })
                );
            } else {
                match running {
                    Some(r) => println!("proxy running on port {} (pid {})", r.port, r.pid),
                    None => println!("proxy not running: `agentbox proxy start`"),
                }
            }
            return Ok(if running.is_some() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            });
        }
        ProxyCmd::Trust { yes, print } => trust(home, *yes, *print)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// One step of `trust`: what it says and the command it runs.
struct Step {
    what: String,
    argv: Vec<String>,
}

impl Step {
    fn shown(&self) -> String {
        self.argv
            .iter()
            .map(|a| crate::shell::quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// `agentbox proxy trust`.
fn trust(home: &Home, yes: bool, print: bool) -> anyhow::Result<()> {
    let ca = ca::LocalCa::load_or_create(home.root())?;
    let (cert, _) = ca::paths(home.root());
    if print {
        println!("{}", cert.display());
        eprintln!(
            "agentbox: import it as a certificate authority trusted to identify websites (it signs only *.<box>.localhost)"
        );
        return Ok(());
    }
    let steps = plan(&ca.name, &cert)?;
    eprintln!(
        "agentbox: to trust the proxy's CA `{}` ({}):",
        ca.name,
        cert.display()
    );
    for s in &steps {
        eprintln!("  # {}\n  {}", s.what, s.shown());
    }
    if !yes {
        if !(std::io::stdin().is_terminal() && std::io::stderr().is_terminal()) {
            bail!("not on a terminal: run `agentbox proxy trust -y` to run these commands, or `--print` to import the CA by hand");
        }
        eprint!("Run these commands? [y/N] ");
        let mut answer = String::new();
        std::io::stdin().read_line(&mut answer)?;
        if !matches!(answer.trim(), "y" | "Y" | "yes") {
            bail!("nothing changed");
        }
    }
    for s in &steps {
        eprintln!("agentbox: {}", s.shown());
        let status = Command::new(&s.argv[0])
            .args(&s.argv[1..])
            .status()
            .with_context(|| format!("cannot run {}", s.argv[0]))?;
        if !status.success() {
            bail!(
                "`{}` failed ({status}); the steps before it were done",
                s.shown()
            );
        }
    }
    eprintln!("agentbox: the CA is trusted; restart the browser if it was open");
    Ok(())
}

/// The commands that trust `cert` (named `name`) on this machine: the system store when
/// `update-ca-certificates` is there, the user's NSS database when `certutil` is.
fn plan(name: &str, cert: &Path) -> anyhow::Result<Vec<Step>> {
    let mut steps = Vec::new();
    let cert_text = cert.display().to_string();
    if let Some(update) = crate::shell::which("update-ca-certificates") {
        let root = nix::unistd::geteuid().is_root();
        let sudo = |argv: Vec<String>| {
            if root {
                argv
            } else {
                std::iter::once("sudo".to_string()).chain(argv).collect()
            }
        };
        let slug: String = name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let dest = format!("/usr/local/share/ca-certificates/{slug}.crt");
        steps.push(Step {
            what: "the system's trusted certificates (curl, git, most programs)".into(),
            argv: sudo(vec![
                "install".into(),
                "-D".into(),
                "-m".into(),
                "0644".into(),
                cert_text.clone(),
                dest,
            ]),
        });
        steps.push(Step {
            what: "rebuild the system's store".into(),
            argv: sudo(vec![update.display().to_string()]),
        });
    }
    if let Some(certutil) = crate::shell::which("certutil") {
        let user_home = std::env::var_os("HOME")
            .map(PathBuf::from)
            .context("HOME is not set: cannot find the browsers' NSS database")?;
        let db = user_home.join(".pki/nssdb");
        let db_arg = format!("sql:{}", db.display());
        if !db.join("cert9.db").exists() {
            steps.push(Step {
                what: "make the browsers' NSS database (~/.pki/nssdb)".into(),
                argv: vec!["mkdir".into(), "-p".into(), db.display().to_string()],
            });
            steps.push(Step {
                what: "with no password".into(),
                argv: vec![
                    certutil.display().to_string(),
                    "-d".into(),
                    db_arg.clone(),
                    "-N".into(),
                    "--empty-password".into(),
                ],
            });
        }
        steps.push(Step {
            what: "the browsers' NSS database (Chromium, Chrome; Firefox has its own profile databases)".into(),
            argv: vec![
                certutil.display().to_string(),
                "-d".into(),
                db_arg,
                "-A".into(),
                "-t".into(),
                "C,,".into(),
                "-n".into(),
                name.into(),
                "-i".into(),
                cert_text,
            ],
        });
    } else {
        eprintln!("agentbox: certutil is missing (Debian: apt-get install libnss3-tools): browsers that use NSS will not trust the CA");
    }
    if steps.is_empty() {
        bail!(
            "neither update-ca-certificates nor certutil is here: import {} by hand (`agentbox proxy trust --print`)",
            cert.display()
        );
    }
    Ok(steps)
}
