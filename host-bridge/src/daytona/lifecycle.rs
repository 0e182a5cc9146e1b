//! Moving a sandbox to where it should be through every state Daytona puts it in
//! (`pulling_snapshot`, `starting`, `restoring`, `pending_build`, `building_snapshot`,
//! `snapshotting`, `stopping`, `archiving`/`archived`, `error`, `build_failed`, …):
//! [`Daytona::ensure_started`], [`Daytona::ensure_stopped`], [`Daytona::ensure_deleted`]
//! and [`Daytona::settled`] wait while Daytona is changing a sandbox and act only when an
//! action is accepted in the state it is in, so none of them POSTs into a 409;
//! [`Daytona::capture`] takes a checkpoint of a started or stopped sandbox.
//!
//! The rules are Daytona's (`sandbox.service.ts`, v0.190): a change is refused with 409
//! while `state != desiredState` (a change is pending), except that an archive in progress
//! may be started; `start` takes `stopped`, `archived` and `archiving`; `stop` takes
//! `started`; `delete` takes anything not pending (and `pending_build`); `error` and
//! `build_failed` refuse start and stop.

use std::time::Duration;

use super::client::Daytona;
use super::error::DaytonaError;
use super::sandbox::Sandbox;
use super::snapshots::Snapshot;

/// States in which Daytona is doing something to the sandbox by itself.
const MOVING: &[&str] = &[
    "creating",
    "restoring",
    "starting",
    "stopping",
    "destroying",
    "pending_build",
    "building_snapshot",
    "pulling_snapshot",
    "snapshotting",
    "resizing",
    "forking",
    "pausing",
    "resuming",
    "unknown",
];

impl Sandbox {
    /// Its state (`""` when Daytona gave none).
    pub fn state_str(&self) -> &str {
        self.state.as_deref().unwrap_or("")
    }

    /// Whether it ended in a failure (`error`, `build_failed`).
    pub fn failed(&self) -> bool {
        matches!(self.state_str(), "error" | "build_failed")
    }

    /// Whether Daytona is changing it now: a start, stop or delete sent now is a 409. A
    /// failed sandbox and one being archived are not (Daytona takes actions on them).
    pub fn changing(&self) -> bool {
        let state = self.state_str();
        if self.failed() || state == "archiving" {
            return false;
        }
        MOVING.contains(&state) || self.desired_state.as_deref().is_some_and(|d| d != state)
    }

    /// Daytona's reason for a failure, or a stand-in.
    fn reason(&self) -> String {
        self.error_reason
            .clone()
            .filter(|r| !r.trim().is_empty())
            .unwrap_or_else(|| "Daytona gave no reason".into())
    }
}

/// The SDK's polling curve: every 100 ms, ×1.1 after 5 s, up to 1 s.
struct Poll {
    start: tokio::time::Instant,
    interval: Duration,
    timeout: Duration,
}

impl Poll {
    fn new(timeout: Duration) -> Self {
        Self {
            start: tokio::time::Instant::now(),
            interval: Duration::from_millis(100),
            timeout,
        }
    }

    /// Sleeps before the next look, or says why the wait is over.
    async fn next(&mut self, s: &Sandbox, want: &str) -> Result<(), DaytonaError> {
        if self.start.elapsed() > self.timeout {
            return Err(DaytonaError::BadState {
                id: s.id.clone(),
                state: s.state_str().to_string(),
                reason: format!("still not {want} after {} s", self.timeout.as_secs()),
            });
        }
        tokio::time::sleep(self.interval).await;
        if self.start.elapsed() > Duration::from_secs(5) {
            self.interval = self.interval.mul_f64(1.1).min(Duration::from_secs(1));
        }
        Ok(())
    }
}

/// Tells `progress` each state the sandbox passes through while it is waited on.
struct Seen<'a> {
    last: String,
    progress: &'a (dyn Fn(&str) + Sync),
}

impl Seen<'_> {
    fn saw(&mut self, s: &Sandbox) {
        let state = s.state_str();
        if state != self.last && s.changing() {
            (self.progress)(&format!("sandbox {} is {state}", s.name));
        }
        state.clone_into(&mut self.last);
    }
}

/// What [`Daytona::drive`] does after a look at the sandbox.
enum Next {
    /// It is where it should be.
    Done,
    /// Daytona is moving it: look again.
    Wait,
    /// Ask Daytona for this, then look again.
    Act(Action),
}

/// A change [`Daytona::drive`] asks Daytona for.
enum Action {
    /// `POST /sandbox/{id}/start`.
    Start,
    /// `POST /sandbox/{id}/stop`.
    Stop,
}

fn failed(s: &Sandbox) -> DaytonaError {
    DaytonaError::BadState {
        id: s.name.clone(),
        state: s.state_str().to_string(),
        reason: s.reason(),
    }
}

fn deleted(s: &Sandbox) -> DaytonaError {
    DaytonaError::BadState {
        id: s.name.clone(),
        state: s.state_str().to_string(),
        reason: "it is being deleted".into(),
    }
}

impl Daytona {
    /// Waits until Daytona is not changing the sandbox (a failure ends the wait too), and
    /// returns it as it then is.
    pub async fn settled(
        &self,
        id: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Sandbox, DaytonaError> {
        let mut poll = Poll::new(timeout);
        let mut seen = Seen {
            last: String::new(),
            progress,
        };
        loop {
            let s = self.get_sandbox(id).await?;
            seen.saw(&s);
            if !s.changing() {
                return Ok(s);
            }
            poll.next(&s, "settled").await?;
        }
    }

    /// Brings the sandbox to `started` from wherever it is: waits out Daytona's own changes
    /// (a create, a snapshot pull or build, a stop under way, a capture), starts it when
    /// it is `stopped`, `archived` or `archiving` (an archived one says first that it is
    /// being restored, which can take minutes), and stops at `error`, `build_failed` or a
    /// deletion with what Daytona says.
    pub async fn ensure_started(
        &self,
        id: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Sandbox, DaytonaError> {
        let mut asked = false;
        self.drive(id, timeout, progress, "started", &mut |s| {
            let archive = s.desired_state.as_deref() == Some("archived");
            match s.state_str() {
                "started" if !s.changing() => Next::Done,
                state @ ("stopped" | "archived" | "archiving") if !s.changing() || archive => {
                    if state != "stopped" && !asked {
                        progress(&format!(
                            "sandbox {} is {state}: Daytona is restoring it from its archive (this can take a few minutes)",
                            s.name
                        ));
                    }
                    asked = true;
                    Next::Act(Action::Start)
                }
                _ => Next::Wait,
            }
        })
        .await
    }

    /// Brings the sandbox to a stop (`stopped`, or further: `archiving`, `archived`):
    /// waits out Daytona's changes, stops it when `started`; a failed sandbox is reported,
    /// not stopped (Daytona refuses).
    pub async fn ensure_stopped(
        &self,
        id: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<Sandbox, DaytonaError> {
        self.drive(
            id,
            timeout,
            progress,
            "stopped",
            &mut |s| match s.state_str() {
                "stopped" | "archived" | "archiving" if !s.changing() => Next::Done,
                "started" if !s.changing() => Next::Act(Action::Stop),
                _ => Next::Wait,
            },
        )
        .await
    }

    /// Looks at the sandbox until `decide` says it is where it should be, doing what
    /// `decide` asks on the way (a 409 from it means someone else's change got there
    /// first: it is waited for); a failed sandbox (`error`, `build_failed`) or one being
    /// deleted ends the wait with what Daytona says, whatever `decide` would do.
    async fn drive(
        &self,
        id: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
        want: &str,
        decide: &mut (dyn FnMut(&Sandbox) -> Next + Send),
    ) -> Result<Sandbox, DaytonaError> {
        let mut poll = Poll::new(timeout);
        let mut seen = Seen {
            last: String::new(),
            progress,
        };
        loop {
            let s = self.get_sandbox(id).await?;
            seen.saw(&s);
            if s.failed() {
                return Err(failed(&s));
            }
            if matches!(s.state_str(), "destroying" | "destroyed") {
                return Err(deleted(&s));
            }
            let acted = match decide(&s) {
                Next::Done => return Ok(s),
                Next::Wait => Ok(None),
                Next::Act(Action::Start) => self.start_sandbox(&s.id).await.map(Some),
                Next::Act(Action::Stop) => self.stop_sandbox(&s.id).await.map(Some),
            };
            match acted {
                Ok(_) | Err(DaytonaError::Conflict(_)) => {}
                Err(e) => return Err(e),
            }
            poll.next(&s, want).await?;
        }
    }

    /// Deletes the sandbox and waits until it is gone: waits out a change under way (a
    /// delete is refused while one is pending, except a build waiting for a runner); a
    /// sandbox that is gone already counts as done.
    pub async fn ensure_deleted(
        &self,
        id: &str,
        timeout: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(), DaytonaError> {
        let mut poll = Poll::new(timeout);
        let mut seen = Seen {
            last: String::new(),
            progress,
        };
        loop {
            let s = match self.get_sandbox(id).await {
                Ok(s) => s,
                Err(DaytonaError::NotFound(_)) => return Ok(()),
                Err(e) => return Err(e),
            };
            seen.saw(&s);
            let doomed = s.desired_state.as_deref() == Some("destroyed");
            if s.state_str() == "destroyed" {
                return Ok(());
            }
            if !doomed && (!s.changing() || s.state_str() == "pending_build") {
                match self.delete_sandbox(&s.id).await {
                    Err(DaytonaError::NotFound(_)) => return Ok(()),
                    Ok(_) | Err(DaytonaError::Conflict(_)) => {}
                    Err(e) => return Err(e),
                }
            }
            poll.next(&s, "deleted").await?;
        }
    }

    /// Captures a sandbox's disk as snapshot `name` (`POST /sandbox/{id}/snapshot`) and
    /// waits until the snapshot is `active`. Daytona captures a `started` or a `stopped`
    /// sandbox (first waiting out any change under way); the sandbox is `snapshotting`
    /// meanwhile and then goes back to the state it was in (a stopped one stays stopped);
    /// the snapshot record only appears once the capture is done, so a 404 on it is "not
    /// yet" for `record_grace` after the sandbox left `snapshotting`. Returns the snapshot
    /// and the sandbox as the capture left it. Not repeated on an ambiguous failure.
    pub async fn capture(
        &self,
        sandbox: &str,
        name: &str,
        timeout: Duration,
        record_grace: Duration,
        progress: &(dyn Fn(&str) + Sync),
    ) -> Result<(Snapshot, Sandbox), DaytonaError> {
        let before = self.settled(sandbox, timeout, progress).await?;
        if !matches!(before.state_str(), "started" | "stopped") {
            return Err(DaytonaError::BadState {
                id: before.name.clone(),
                state: before.state_str().to_string(),
                reason: match before.error_reason.clone().filter(|r| !r.is_empty()) {
                    Some(r) if before.failed() => r,
                    _ => "Daytona captures only a started or stopped sandbox".into(),
                },
            });
        }
        let path = format!("/sandbox/{}/snapshot", before.id);
        let body = serde_json::json!({ "name": name, "includeMemory": false });
        self.call_no_body(false, &|| {
            self.request(reqwest::Method::POST, &path).json(&body)
        })
        .await?;
        progress(&format!("capturing the disk of sandbox {}", before.name));
        let after = self.settled(&before.id, timeout, &|_| {}).await?;
        if after.failed() {
            return Err(DaytonaError::BadState {
                id: after.name.clone(),
                state: after.state_str().to_string(),
                reason: after
                    .error_reason
                    .clone()
                    .unwrap_or_else(|| "the capture failed".into()),
            });
        }
        let snapshot = self
            .wait_snapshot_after(name, record_grace, timeout, progress)
            .await
            .map_err(|e| match e {
                DaytonaError::SnapshotGone(_) => DaytonaError::SnapshotFailed {
                    name: name.into(),
                    state: "missing".into(),
                    reason: format!(
                        "sandbox {} is {} again but Daytona recorded no snapshot {name}: the capture failed on Daytona's side; try again",
                        after.name,
                        after.state_str()
                    ),
                },
                other => other,
            })?;
        Ok((snapshot, after))
    }
}
