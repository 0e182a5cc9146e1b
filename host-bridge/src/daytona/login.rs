//! `agentbox daytona login [--api-key K] [--organization ID|NAME] [--api-url U] [--insecure]
//! [--status]`: checks the key with a cheap call before anything is saved, chooses the
//! organization among those the key reaches ([`super::organizations`]), keeps both in
//! `secrets.env` (0600), and reports what is configured with the key masked.
//!
//! Plain `http://` is refused, for the API and for preview URLs, except to this machine
//! (a test's fake) or when login was given `--insecure` (saved as `DAYTONA_INSECURE=1`):
//! the API key and the bridge token would otherwise cross the network in clear.

use std::collections::BTreeMap;
use std::io::{BufRead, IsTerminal, Write};
use std::path::Path;

use anyhow::{bail, Context};

pub use super::client::is_user_token;
use super::client::Daytona;
use super::error::DaytonaError;
use super::organizations;
use crate::secrets::{self, Source, DEFAULT_API_URL};

/// What `login` was given.
#[derive(Debug, Clone, Default)]
pub struct LoginArgs {
    /// The key; `-` reads it from stdin; prompted for (without echo) when absent.
    pub api_key: Option<String>,
    /// The organization, by id or name: one of those the key reaches (asked for on a
    /// terminal when it reaches several, taken silently when it reaches one).
    pub org_id: Option<String>,
    /// The API base.
    pub api_url: Option<String>,
    /// Accept plain `http://` to another machine.
    pub insecure: bool,
}

/// The setting that keeps `--insecure` (in `secrets.env`, or the environment).
pub const INSECURE_VAR: &str = "DAYTONA_INSECURE";

pub use super::plain_http::plain_http_refused;

/// The settings in force: the environment over `secrets.env`.
pub struct Settings {
    /// `DAYTONA_API_KEY` and where it came from.
    pub key: Option<(String, Source)>,
    /// `DAYTONA_ORGANIZATION_ID`.
    pub org_id: Option<String>,
    /// `DAYTONA_API_URL`, or Daytona's.
    pub api_url: String,
    /// `DAYTONA_INSECURE=1`: plain `http://` to another machine is accepted.
    pub insecure: bool,
}

impl Settings {
    /// Reads them for `home`.
    pub fn load(home: &Path) -> anyhow::Result<Self> {
        Ok(Self {
            key: secrets::lookup(home, "DAYTONA_API_KEY")?,
            org_id: secrets::lookup(home, "DAYTONA_ORGANIZATION_ID")?.map(|(v, _)| v),
            api_url: secrets::lookup(home, "DAYTONA_API_URL")?
                .map_or_else(|| DEFAULT_API_URL.to_string(), |(v, _)| v),
            insecure: secrets::lookup(home, INSECURE_VAR)?.is_some_and(|(v, _)| v == "1"),
        })
    }

    /// A client, or the sentence that says how to get one (also for a user's token
    /// without an organization, which Daytona refuses everywhere but its organization
    /// list).
    pub fn client(&self) -> Result<Daytona, DaytonaError> {
        let (key, _) = self
            .key
            .as_ref()
            .ok_or_else(|| DaytonaError::Auth("no API key is configured".into()))?;
        if self.org_id.is_none() && is_user_token(key) {
            return Err(super::client::no_organization());
        }
        if let Some(why) = plain_http_refused(&self.api_url, "the Daytona API URL", self.insecure) {
            return Err(DaytonaError::Invalid(why));
        }
        let mut client = Daytona::new(&self.api_url, key, self.org_id.as_deref());
        client.insecure = self.insecure;
        Ok(client)
    }
}

/// The cheapest authenticated call: list sandboxes by a label nothing carries.
async fn check(client: &Daytona) -> Result<(), DaytonaError> {
    let labels = BTreeMap::from([("agentbox.login-check".to_string(), "1".to_string())]);
    client.list_sandboxes(&labels).await.map(drop)
}

fn read_key(given: Option<&str>) -> anyhow::Result<String> {
    let key = match given {
        Some("-") | None if !std::io::stdin().is_terminal() => {
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
        Some(k) if k != "-" => k.to_string(),
        _ => prompt_hidden("Daytona API key (from the dashboard's Keys page): ")?,
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!("no API key given");
    }
    if key.chars().any(|c| c.is_whitespace() || c.is_control()) {
        bail!("an API key has no spaces or control characters: check what was pasted");
    }
    Ok(key)
}

/// Reads a line from the terminal with echo off.
fn prompt_hidden(prompt: &str) -> anyhow::Result<String> {
    use rustix::termios::{self, LocalModes, OptionalActions};
    use std::os::fd::AsFd;
    let stdin = std::io::stdin();
    let saved = termios::tcgetattr(stdin.as_fd()).context("cannot read the terminal settings")?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    // Echo goes off before the prompt shows: a key typed as soon as it is seen is not echoed.
    termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &quiet)?;
    eprint!("{prompt}");
    std::io::stderr().flush()?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = termios::tcsetattr(stdin.as_fd(), OptionalActions::Now, &saved);
    eprintln!();
    read?;
    Ok(line)
}

/// Checks and saves the credentials; the organization is asked for when stdin and stderr
/// are a terminal.
pub fn login(home: &Path, args: LoginArgs) -> anyhow::Result<()> {
    let interactive = std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    login_with(home, args, interactive)
}

/// Checks and saves the credentials; `interactive`: a terminal may be asked which
/// organization (else several are refused without `--organization`).
pub fn login_with(home: &Path, args: LoginArgs, interactive: bool) -> anyhow::Result<()> {
    let key = read_key(args.api_key.as_deref())?;
    let mut entries = secrets::read(home)?;
    let wanted = args.org_id.filter(|o| !o.is_empty());
    let saved_org = entries
        .get("DAYTONA_ORGANIZATION_ID")
        .cloned()
        .filter(|o| !o.is_empty());
    let url = args
        .api_url
        .or_else(|| {
            std::env::var("DAYTONA_API_URL")
                .ok()
                .filter(|u| !u.is_empty())
        })
        .or_else(|| entries.get("DAYTONA_API_URL").cloned())
        .unwrap_or_else(|| DEFAULT_API_URL.to_string());
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        bail!("--api-url must be an http(s) URL, not `{url}`");
    }
    if let Some(why) = plain_http_refused(&url, "the Daytona API URL", args.insecure) {
        bail!("{why}; nothing was saved");
    }
    // Kept only where it is needed: plain HTTP to another machine.
    let insecure = args.insecure && plain_http_refused(&url, "", false).is_some();
    if insecure {
        eprintln!("warning: {url} is plain HTTP (--insecure): the API key crosses the network unencrypted");
    }
    // Asked without an organization: the ones the key reaches (Daytona answers these to a
    // user's token without `X-Daytona-Organization-ID`); then the key itself, in the one
    // chosen (a user's token is refused in none).
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rejected = |e: DaytonaError| match e {
        DaytonaError::Auth(why) => {
            anyhow::anyhow!("Daytona rejected this API key ({why}); nothing was saved")
        }
        e => anyhow::anyhow!("{e}; nothing was saved"),
    };
    let reached = runtime
        .block_on(Daytona::new(&url, &key, None).reachable_organizations())
        .map_err(rejected)?;
    let chosen = organizations::choose(
        &reached,
        wanted.as_deref(),
        saved_org.as_deref(),
        interactive,
    )
    .map_err(|e| anyhow::anyhow!("{e:#}; nothing was saved"))?;
    runtime
        .block_on(check(&Daytona::new(&url, &key, Some(&chosen.id))))
        .map_err(rejected)?;
    entries.insert("DAYTONA_API_KEY".into(), key.clone());
    entries.insert("DAYTONA_ORGANIZATION_ID".into(), chosen.id.clone());
    if insecure {
        entries.insert(INSECURE_VAR.into(), "1".into());
    } else {
        entries.remove(INSECURE_VAR);
    }
    if url == DEFAULT_API_URL {
        entries.remove("DAYTONA_API_URL");
    } else {
        entries.insert("DAYTONA_API_URL".into(), url.clone());
    }
    secrets::write(home, &entries)?;
    eprintln!(
        "logged in to Daytona at {url} (organization {}) with key {}; saved in {} (0600)",
        chosen.describe(),
        secrets::mask(&key),
        secrets::path(home).display()
    );
    Ok(())
}

/// What is configured, the key masked, and whether Daytona accepts it.
pub fn status(home: &Path, json: bool) -> anyhow::Result<bool> {
    let settings = Settings::load(home)?;
    let verdict = match settings.client() {
        Ok(client) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            Some(runtime.block_on(check(&client)))
        }
        Err(_) if settings.key.is_none() => None,
        // Refused before any call (plain HTTP to another machine).
        Err(e) => Some(Err(e)),
    };
    let accepted = matches!(verdict, Some(Ok(())));
    let problem = match &verdict {
        None => Some("no API key: run `agentbox daytona login`".to_string()),
        Some(Ok(())) => None,
        Some(Err(e)) => Some(e.to_string()),
    };
    if json {
        let value = serde_json::json!({
            "configured": settings.key.is_some(),
            "key": settings.key.as_ref().map(|(k, _)| secrets::mask(k)),
            "source": settings.key.as_ref().map(|(_, s)| *s),
            "organization_id": settings.org_id,
            "api_url": settings.api_url,
            "accepted": accepted,
            "problem": problem,
        });
        println!("{value}");
    } else {
        match &settings.key {
            Some((k, source)) => println!(
                "key:          {} (from {})",
                secrets::mask(k),
                match source {
                    Source::Environment => "the environment".to_string(),
                    Source::SecretsFile => secrets::path(home).display().to_string(),
                }
            ),
            None => println!("key:          none"),
        }
        println!(
            "organization: {}",
            settings.org_id.as_deref().unwrap_or("(the key's own)")
        );
        println!("API:          {}", settings.api_url);
        match &problem {
            None => println!("status:       accepted by Daytona"),
            Some(p) => println!("status:       {p}"),
        }
    }
    Ok(accepted)
}

#[cfg(test)]
mod tests {
    use super::{is_user_token, plain_http_refused};

    #[test]
    fn a_jwt_is_a_users_token_and_an_api_key_is_not() {
        assert!(is_user_token(
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0.c2ln-_9"
        ));
        for key in [
            "dtn_0123456789abcdef",
            "k",
            "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1In0",
            "eyJa.b.c.d",
            "eyJa..c",
            "eyJa.b c.d",
            "abc.def.ghi",
        ] {
            assert!(!is_user_token(key), "{key}");
        }
    }

    #[test]
    fn plain_http_is_refused_except_to_this_machine_or_when_insecure() {
        for ok in [
            "https://app.daytona.io/api",
            "http://127.0.0.1:3000/api",
            "http://127.9.9.9/api",
            "http://[::1]:80/api",
            "http://localhost/api",
            "http://8788-abc.proxy.localhost/",
        ] {
            assert_eq!(plain_http_refused(ok, "the URL", false), None, "{ok}");
        }
        for bad in [
            "http://app.daytona.io/api",
            "http://10.0.0.5:3000/api",
            "http://0.0.0.0:3000/api",
            "http://localhost.evil.example/api",
            "http://[::ffff:10.0.0.1]/",
        ] {
            let why = plain_http_refused(bad, "the Daytona API URL", false).expect(bad);
            assert!(
                why.starts_with("the Daytona API URL http://") && why.contains("--insecure"),
                "{why}"
            );
            assert_eq!(plain_http_refused(bad, "the URL", true), None, "{bad}");
        }
    }
}
