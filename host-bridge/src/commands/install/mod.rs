//! `agentbox install`: the first run on a machine. It reports what the machine has
//! ([`checks`]), asks for the provider new boxes use and stores it as `box.provider`
//! (global config), then sets that provider up: docker — the engine is checked and the
//! box image built (`prepare`); daytona — sign in (key, organization) unless a saved key
//! is accepted, and bake the base snapshot (`prepare --provider daytona`, its progress on
//! stderr). On a terminal it asks ([`ask`]); with `-y` the flags answer. Everything it
//! does is idempotent: a second run changes only what differs. `--check` is the doctor:
//! it reports and changes nothing.

mod ask;
pub mod checks;

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::{bail, Context};

use super::context::Ctx;
use super::images;
use crate::cli::{InstallArgs, PrepareArgs};
use crate::config;
use crate::daytona::login::{self, LoginArgs, Settings};
use crate::home::Home;
use crate::state::State;
use checks::Report;

/// The providers, as the wizard offers them.
const PROVIDERS: [(&str, &str); 3] = [
    ("local", "processes on this machine (tmux, git)"),
    ("docker", "a container per box (needs a Docker engine)"),
    (
        "daytona",
        "a Daytona cloud sandbox per box (needs a Daytona API key)",
    ),
];

/// `agentbox install`.
pub fn install(home: &Home, args: &InstallArgs) -> anyhow::Result<ExitCode> {
    let report = Report::gather(home.root())?;
    if args.check {
        if args.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            report.print();
        }
        return Ok(exit(report.local_ready()));
    }
    let interactive =
        !args.yes && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    if !args.yes && !interactive {
        bail!("`agentbox install` asks its questions on a terminal; in a script, answer them with flags: `agentbox install -y --provider local|docker|daytona` (see --help), or `agentbox install --check` for the report only");
    }
    report.print();
    let provider = choose_provider(home, args, interactive)?;
    // Stored once its set-up went through: a provider that cannot run is not the default.
    let ready = match provider.as_str() {
        "docker" => set_up_docker(home, args, interactive)?,
        "daytona" => set_up_daytona(home, args, interactive)?,
        _ => {
            if !report.local_ready() {
                eprintln!("local boxes need tmux and git: install what is missing above and run `agentbox install` again");
            }
            report.local_ready()
        }
    };
    if ready {
        store_provider(home, &provider)?;
        eprintln!("==> ready: new boxes run on {provider}; in a git repository, `agentbox claude` (or `agentbox create`) starts one");
    }
    Ok(exit(ready))
}

fn exit(ok: bool) -> ExitCode {
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The provider: --provider, else asked (the current `box.provider` the default), else
/// (`-y`) the current one.
fn choose_provider(home: &Home, args: &InstallArgs, interactive: bool) -> anyhow::Result<String> {
    if let Some(p) = &args.provider {
        return Ok(p.clone());
    }
    let current = config::read_file(&home.config())
        .map_err(anyhow::Error::msg)?
        .get("box.provider")
        .cloned()
        .unwrap_or_else(|| "local".to_string());
    if !interactive {
        return Ok(current);
    }
    let default = PROVIDERS
        .iter()
        .position(|(name, _)| *name == current)
        .unwrap_or(0);
    ask::choose("Where should new boxes run?", &PROVIDERS, default)
}

/// `box.provider` in the global config, written only when it changes.
fn store_provider(home: &Home, provider: &str) -> anyhow::Result<()> {
    config::check("box.provider", provider).map_err(anyhow::Error::msg)?;
    let path = home.config();
    let mut values = config::read_file(&path).map_err(anyhow::Error::msg)?;
    if values.get("box.provider").map(String::as_str) == Some(provider) {
        eprintln!(
            "==> box.provider is {provider} already ({})",
            path.display()
        );
        return Ok(());
    }
    values.insert("box.provider".into(), provider.to_string());
    config::write_file(&path, &values)
        .with_context(|| format!("cannot write {}", path.display()))?;
    eprintln!("==> box.provider = {provider} (in {})", path.display());
    Ok(())
}

/// Docker: the engine must answer; then the box image, if wanted.
fn set_up_docker(home: &Home, args: &InstallArgs, interactive: bool) -> anyhow::Result<bool> {
    if !checks::docker_engine() {
        bail!("the docker provider needs a running Docker engine, and `docker info` fails: install Docker, start its engine, and run `agentbox install` again");
    }
    let prepare = wants_prepare(
        args,
        interactive,
        "Build the box image now (`agentbox prepare`; minutes the first time, nothing when it is up to date)?",
    )?;
    if prepare {
        run_prepare(home, args, "docker")?;
    } else {
        eprintln!("==> skipped: `agentbox prepare` builds the box image (the first create does it otherwise)");
    }
    Ok(true)
}

/// Daytona: signed in (a saved key Daytona accepts is kept), then the base snapshot, if
/// wanted.
fn set_up_daytona(home: &Home, args: &InstallArgs, interactive: bool) -> anyhow::Result<bool> {
    let fresh_key = args.api_key.is_some() || args.org_id.is_some() || args.api_url.is_some();
    match (fresh_key, accepted(home)) {
        (false, Ok(key)) => {
            eprintln!("==> Daytona: signed in with key {key}, which Daytona accepts");
        }
        (_, outcome) => {
            if let (false, Err(why)) = (fresh_key, &outcome) {
                eprintln!("==> Daytona: {why}");
            }
            if !interactive
                && args.api_key.is_none()
                && std::env::var_os("DAYTONA_API_KEY").is_none()
            {
                bail!("signing in to Daytona needs a key: give --api-key KEY (or `--api-key -` to read it from stdin), or set DAYTONA_API_KEY; keys are on the dashboard's Keys page");
            }
            let key = args.api_key.clone().or_else(|| {
                // -y with the key in the environment: saved like one given.
                (!interactive)
                    .then(|| std::env::var("DAYTONA_API_KEY").ok())
                    .flatten()
            });
            login::login_with(
                home.root(),
                LoginArgs {
                    api_key: key,
                    org_id: args.org_id.clone(),
                    api_url: args.api_url.clone(),
                    insecure: args.insecure,
                },
                interactive,
            )?;
        }
    }
    let prepare = wants_prepare(
        args,
        interactive,
        "Bake the base snapshot now (`agentbox prepare --provider daytona`; about 7 minutes once per organization, nothing when it is up to date)?",
    )?;
    if prepare {
        run_prepare(home, args, "daytona")?;
    } else {
        eprintln!(
            "==> skipped: run `agentbox prepare --provider daytona` before the first daytona box"
        );
    }
    Ok(true)
}

/// The saved (or environment's) key, masked, when Daytona accepts it; else why not.
fn accepted(home: &Home) -> Result<String, String> {
    let settings = Settings::load(home.root()).map_err(|e| format!("{e:#}"))?;
    let Some((key, _)) = &settings.key else {
        return Err("no API key is saved".into());
    };
    let client = settings.client().map_err(|e| e.to_string())?;
    let labels = BTreeMap::from([("agentbox.login-check".to_string(), "1".to_string())]);
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?
        .block_on(client.list_sandboxes(&labels))
        .map_err(|e| format!("the saved key does not work ({e})"))?;
    Ok(crate::secrets::mask(key))
}

/// Whether to prepare: `--no-prepare` says no, `-y` yes, a terminal asks.
fn wants_prepare(args: &InstallArgs, interactive: bool, question: &str) -> anyhow::Result<bool> {
    if args.no_prepare {
        return Ok(false);
    }
    if !interactive {
        return Ok(true);
    }
    ask::yes_no(question, true)
}

/// `agentbox prepare --provider PROVIDER`, pinned in the global config: install sets the
/// machine up, not one project (the directory `AGENTBOX_HOME` is the context's, so no
/// repository's config is chosen).
fn run_prepare(home: &Home, args: &InstallArgs, provider: &str) -> anyhow::Result<()> {
    eprintln!("==> agentbox prepare --provider {provider}");
    let ctx = Ctx {
        home: home.clone(),
        state: State::open(&home.state_db())?,
        cwd: home.root().to_path_buf(),
    };
    let code = images::prepare(
        &ctx,
        &PrepareArgs {
            provider: provider.to_string(),
            base_image: args.base_image.clone(),
            force: false,
            agents: args.agents.clone(),
            dind: false,
            browser: false,
            size: None,
        },
    )?;
    if code != ExitCode::SUCCESS {
        bail!("`agentbox prepare --provider {provider}` failed");
    }
    Ok(())
}
