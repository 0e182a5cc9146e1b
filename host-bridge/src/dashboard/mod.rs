//! `agentbox dashboard`: every box of the project (or of this home) on one live screen.
//!
//! `model.rs` — what is shown and what a key asks for (no I/O); `view.rs` — drawing it
//! with ratatui; `input.rs` — keys to intents; `data.rs` — the collector thread (the
//! host's records each second, one `probe.rs` thread per box every few seconds);
//! `terminal.rs` — raw mode and the alternate screen, given back in every case;
//! `actions.rs` — what the keys run. [`run`] is the loop that ties them: it draws when
//! something changed and never waits on a box.

pub mod actions;
pub mod data;
pub mod input;
pub mod model;
pub mod probe;
pub mod terminal;
pub mod view;

use std::sync::mpsc::{self, Sender};
use std::time::Duration;

use ratatui::crossterm::event::{self, Event};

use crate::home::Home;
use crate::text::shown;
use actions::Done;
pub use data::Scope;
use model::{Effect, Model, Snapshot};
use view::Title;

/// How long the loop waits for a key before it looks for a new snapshot.
const TICK: Duration = Duration::from_millis(200);

/// Runs the dashboard on this terminal until `q`.
pub fn run(home: &Home, scope: Scope, title: String) -> anyhow::Result<()> {
    let collector = data::Collector::start(home.clone(), scope);
    let mut screen = terminal::Screen::enter()?;
    let mut model = Model::new(Snapshot::default());
    let title = Title(title);
    let (done, results) = mpsc::channel::<Done>();
    let mut seen = 0;
    let mut dirty = true;
    loop {
        if let Some((n, snapshot)) = collector.newer(seen) {
            seen = n;
            if snapshot != model.snapshot {
                model.update(snapshot);
                dirty = true;
            }
        }
        while let Ok(d) = results.try_recv() {
            if let Some(name) = &d.changed {
                collector.poke(name);
            }
            model.message = Some(d.line);
            dirty = true;
        }
        if dirty {
            screen.terminal.draw(|f| view::draw(f, &model, &title))?;
            dirty = false;
        }
        if !event::poll(TICK)? {
            continue;
        }
        let intent = match event::read()? {
            Event::Key(key) => input::intent(key),
            Event::Resize(..) => {
                dirty = true;
                None
            }
            _ => None,
        };
        let Some(intent) = intent else {
            continue;
        };
        dirty = true;
        match model.handle(intent) {
            None => {}
            Some(Effect::Quit) => break,
            Some(Effect::Attach { name, session }) => {
                let line = screen.lend(|| actions::attach(&name, session.as_deref()))?;
                model.message = Some(line);
            }
            Some(effect) => model.message = Some(act(home, effect, &done)),
        }
    }
    drop(screen);
    Ok(())
}

/// Starts what `effect` (one that leaves the terminal to the dashboard) asks for; the
/// message to show meanwhile.
fn act(home: &Home, effect: Effect, done: &Sender<Done>) -> String {
    let boxed = |verb: &str, name: &str| vec![verb.to_string(), "--".into(), name.to_string()];
    match effect {
        Effect::Open { name, port } => {
            let mut args = vec!["url".to_string(), "--open".into()];
            if let Some(p) = port {
                args.extend(["--port".into(), p.to_string()]);
            }
            args.extend(["--".into(), name.clone()]);
            actions::background(args, "open".into(), None, done.clone());
            format!("opening the address of box `{}`…", shown(&name))
        }
        Effect::Screen(name) => {
            actions::screen(&name, done.clone());
            format!("opening the screen of box `{}`…", shown(&name))
        }
        Effect::Decide { id, approve } => actions::decide(home, &id, approve),
        Effect::Stop(name) => {
            let what = format!("stop {}", shown(&name));
            actions::background(boxed("stop", &name), what, Some(name.clone()), done.clone());
            format!("stopping box `{}`…", shown(&name))
        }
        Effect::Start(name) => {
            let what = format!("start {}", shown(&name));
            actions::background(
                boxed("start", &name),
                what,
                Some(name.clone()),
                done.clone(),
            );
            format!("starting box `{}`…", shown(&name))
        }
        // The loop handles these itself.
        Effect::Quit | Effect::Attach { .. } => String::new(),
    }
}
