//! Requests to the host (`notify`, `open`): handed to the relay over `relay.sock`, which
//! journals them until the host bridge answers.
//!
//! The caller follows its request and exits with the host's exit code. If the relay
//! restarts meanwhile, the caller reconnects and follows the same request id: the request
//! was journalled before `Accepted` came back, so nothing is lost or sent twice.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use agentbox_protocol::bridge::{HostRequest, Outcome, RelayEvent, RelayRequest, RequestId};
use agentbox_protocol::ErrorCode;

use crate::client::{Client, ClientError};

/// Exit code when no host answered in time.
pub const EXIT_TIMEOUT: u8 = 124;

const PEER: &str = "agentbox-relay";
const HINT: &str = "the relay runs next to the ctl daemon in every box";

/// How the caller waits.
#[derive(Debug, Clone, Copy)]
pub enum Wait {
    /// Return once the request is journalled (it is delivered whenever the host polls).
    Detached,
    /// Follow it for up to this long.
    Follow(Duration),
}

/// Submits `request` and reports its outcome.
pub fn submit(run_dir: &Path, request: HostRequest, wait: Wait) -> ExitCode {
    submit_with_status(run_dir, request, wait).0
}

/// Like [`submit`]; also returns the host's exit code when the host answered.
pub fn submit_with_status(
    run_dir: &Path,
    request: HostRequest,
    wait: Wait,
) -> (ExitCode, Option<i32>) {
    let (code, outcome) = submit_for_outcome(run_dir, request, wait);
    (code, outcome.map(|o| o.exit_code))
}

/// Journals `request` with the relay and returns its id, without waiting for the host and
/// without printing anything (the ctl daemon forwards agent states this way).
pub fn journal(run_dir: &Path, request: HostRequest) -> Result<RequestId, String> {
    let socket = run_dir.join("relay.sock");
    let mut client = Client::request_to(
        &socket,
        RelayRequest::Submit {
            request,
            wait_ms: 60 * 60 * 1000,
        },
        PEER,
        HINT,
    )
    .map_err(|e| e.to_string())?;
    match client.read_frame::<RelayEvent>() {
        Ok(Some(RelayEvent::Accepted { id })) => Ok(id),
        Ok(Some(RelayEvent::Failed(e))) => Err(e.message),
        Ok(other) => Err(format!("unexpected answer from the relay: {other:?}")),
        Err(e) => Err(e.to_string()),
    }
}

/// Like [`submit`]; also returns the host's whole answer when it came.
pub fn submit_for_outcome(
    run_dir: &Path,
    request: HostRequest,
    wait: Wait,
) -> (ExitCode, Option<Outcome>) {
    let socket = run_dir.join("relay.sock");
    let wait_ms = match wait {
        Wait::Detached => 60 * 60 * 1000,
        Wait::Follow(d) => u64::try_from(d.as_millis()).unwrap_or(u64::MAX),
    };
    let deadline = Instant::now() + Duration::from_millis(wait_ms);
    let mut client = match Client::request_to(
        &socket,
        RelayRequest::Submit { request, wait_ms },
        PEER,
        HINT,
    ) {
        Ok(c) => c,
        Err(e) => return (fail(&e.to_string(), 1), None),
    };
    let id = match client.read_frame::<RelayEvent>() {
        Ok(Some(RelayEvent::Accepted { id })) => id,
        Ok(Some(RelayEvent::Failed(e))) => return (fail(&e.message, 1), None),
        Ok(other) => {
            return (
                fail(&format!("unexpected answer from the relay: {other:?}"), 1),
                None,
            )
        }
        Err(e) => return (fail(&e.to_string(), 1), None),
    };
    if matches!(wait, Wait::Detached) {
        println!("{id}");
        return (ExitCode::SUCCESS, None);
    }
    loop {
        match follow(&mut client, &id) {
            Ok(answer) => return answer,
            Err(e) => {
                // The relay went away: reconnect and follow the journalled request.
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return (
                        fail(
                            &format!("lost the relay while waiting for {id}: {e}"),
                            EXIT_TIMEOUT,
                        ),
                        None,
                    );
                }
                std::thread::sleep(Duration::from_millis(100));
                let again = RelayRequest::Follow {
                    id: id.clone(),
                    wait_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX),
                };
                if let Ok(c) = Client::request_to(&socket, again, PEER, HINT) {
                    client = c;
                }
            }
        }
    }
}

/// Prints progress and the outcome; `Err` when the connection broke.
fn follow(client: &mut Client, id: &RequestId) -> Result<(ExitCode, Option<Outcome>), ClientError> {
    loop {
        match client.read_frame::<RelayEvent>()? {
            None => return Err(ClientError::NoAnswer),
            Some(RelayEvent::Accepted { .. } | RelayEvent::Leased { .. }) => {}
            Some(RelayEvent::AwaitingApproval { approval_id }) => {
                eprintln!("agentbox-ctl: waiting for approval on the host: `agentbox approve {approval_id}`");
            }
            Some(RelayEvent::Progress { line }) => eprintln!("{line}"),
            Some(RelayEvent::Finished(outcome)) => {
                print!("{}", outcome.stdout);
                eprint!("{}", outcome.stderr);
                let code = ExitCode::from(u8::try_from(outcome.exit_code).unwrap_or(1));
                return Ok((code, Some(outcome)));
            }
            Some(RelayEvent::Failed(e)) => {
                let code = if e.code == ErrorCode::Timeout {
                    EXIT_TIMEOUT
                } else {
                    1
                };
                return Ok((fail(&format!("request {id}: {}", e.message), code), None));
            }
        }
    }
}

fn fail(message: &str, code: u8) -> ExitCode {
    eprintln!("agentbox-ctl: {message}");
    ExitCode::from(code)
}
