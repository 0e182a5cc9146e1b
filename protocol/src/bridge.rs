//! Box → host requests: what the agent asks the host to do, and how the answer travels.
//!
//! Two legs carry the same [`HostRequest`]:
//!
//! 1. `agentbox-ctl` → relay over `AGENTBOX_RUN_DIR/relay.sock` (framed bincode):
//!    a [`RelayRequest`] is answered by a stream of [`RelayEvent`]s ending in
//!    [`RelayEvent::Finished`] or [`RelayEvent::Failed`].
//! 2. host bridge ↔ relay over HTTP (JSON): `GET /v1/bridge/poll` returns a
//!    [`PollResponse`] of [`LeasedRequest`]s; the host answers with [`ProgressPost`] and
//!    [`ResultPost`], each carrying the lease it was given.
//!
//! Requests are typed, never command lines: a git push names at most a remote *name* and
//! flags from [`GitFlag`]; the host rebuilds the actual command from its own records.

use serde::{Deserialize, Serialize};

use crate::{EpochMillis, ErrorReply};

pub use crate::token::new_bridge_token;

/// A request id, assigned by the relay when it journals the request. Unique per box.
///
/// The host receives it from the box, so it is checked when it is made (also when
/// deserialized, through [`RequestId::try_from`]): 1 to 64 lowercase ASCII letters, digits
/// or `-`, so it can never name a path or carry terminal controls.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(try_from = "String", into = "String")]
pub struct RequestId(#[cfg_attr(test, proptest(regex = "[0-9a-z-]{1,64}"))] String);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for RequestId {
    type Error = String;

    /// The one way a `RequestId` is made.
    fn try_from(s: String) -> Result<Self, String> {
        let plain = (1..=64).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if plain {
            Ok(Self(s))
        } else {
            Err(format!(
                "`{}` is not a request id (1 to 64 lowercase letters, digits or `-`)",
                s.escape_debug()
            ))
        }
    }
}

impl From<RequestId> for String {
    fn from(id: RequestId) -> Self {
        id.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(&self.0)
    }
}

/// Content reference to a blob uploaded to the relay (a git bundle, a tar).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct BlobRef {
    /// blake3 of the content, lowercase hex.
    pub blake3: String,
    /// Size in bytes.
    pub size: u64,
}

/// Something the box asks the host to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum HostRequest {
    /// Show a desktop notification on the host (always audited).
    Notify {
        /// The text.
        message: String,
    },
    /// Open a URL in the host's browser (http and https only).
    Open {
        /// The URL.
        url: String,
    },
    /// git push / pull / fetch through the host's credentials.
    Git(GitRequest),
    /// A GitHub pull-request operation through the host's `gh`.
    Gh(GhRequest),
    /// Copy a box path (packed as a tar blob, already on the relay) into the host project.
    CopyToHost {
        /// The tar of one top-level entry, `name`.
        blob: BlobRef,
        /// The entry's name.
        name: String,
        /// Where in the host project, relative to its root (`docker cp` semantics).
        dest: String,
    },
    /// Copy a path of the host project into the box.
    CopyFromHost {
        /// Relative to the host project root.
        src: String,
        /// The box path it lands at (relative to the workspace unless absolute).
        dest: String,
    },
    /// An agent in the box changed state (sent by the ctl daemon, not by a caller).
    AgentState(crate::agent::AgentStatus),
}

impl HostRequest {
    /// A short name for logs and audit entries (`notify`, `git push`, …).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Notify { .. } => "notify",
            Self::Open { .. } => "open",
            Self::Git(g) => match g.op {
                GitOp::Push => "git push",
                GitOp::Pull => "git pull",
                GitOp::Fetch => "git fetch",
            },
            Self::Gh(GhRequest::PrCreate { .. }) => "gh pr create",
            Self::Gh(GhRequest::PrView { .. }) => "gh pr view",
            Self::Gh(GhRequest::PrList { .. }) => "gh pr list",
            Self::CopyToHost { .. } => "cp to host",
            Self::CopyFromHost { .. } => "cp from host",
            Self::AgentState(_) => "agent state",
        }
    }
}

/// The git operations the bridge carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum GitOp {
    /// Push the box's commits.
    Push,
    /// Fetch, then bring the result into the box and merge it.
    Pull,
    /// Fetch, then bring the fetched refs into the box.
    Fetch,
}

/// The only flags a box may ask for. Anything else is refused in the box already, and the
/// host would refuse it anyway: there is no free-form string to smuggle `-c` or `--exec` in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum GitFlag {
    /// `--force-with-lease`
    ForceWithLease,
    /// `--tags`
    Tags,
    /// `--dry-run`
    DryRun,
    /// `-q`
    Quiet,
    /// `-v`
    Verbose,
}

impl GitFlag {
    /// The git command-line spelling.
    pub fn as_arg(self) -> &'static str {
        match self {
            Self::ForceWithLease => "--force-with-lease",
            Self::Tags => "--tags",
            Self::DryRun => "--dry-run",
            Self::Quiet => "-q",
            Self::Verbose => "-v",
        }
    }

    /// Parses a command-line spelling; `None` for anything outside the allowlist.
    pub fn from_arg(arg: &str) -> Option<Self> {
        match arg {
            "--force-with-lease" => Some(Self::ForceWithLease),
            "--tags" => Some(Self::Tags),
            "--dry-run" | "-n" => Some(Self::DryRun),
            "-q" | "--quiet" => Some(Self::Quiet),
            "-v" | "--verbose" => Some(Self::Verbose),
            _ => None,
        }
    }
}

/// A git operation requested by the box.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct GitRequest {
    /// Push, pull or fetch.
    pub op: GitOp,
    /// A remote *name*; the host default when absent. Never a URL.
    pub remote: Option<String>,
    /// The branch to push or fetch; the box's own `agentbox/<box>` when absent. Any other
    /// branch needs approval on the host.
    pub branch: Option<String>,
    /// Allowlisted flags.
    pub flags: Vec<GitFlag>,
    /// For a push: the bundle of the box's commits, already uploaded to the relay.
    pub bundle: Option<BlobRef>,
    /// For a push with `--tags`: the box's own tags, by name and object. The host pushes
    /// these and no tag of its own repository; their objects are in the bundle or are
    /// commits the host already has. (Always serialised: bincode, between ctl and relay,
    /// has no optional fields.)
    #[serde(default)]
    pub tags: Vec<TagRef>,
}

/// One tag of the box that a push with `--tags` sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct TagRef {
    /// The tag's name (`v1.2`), without `refs/tags/`.
    pub name: String,
    /// The object it points to (a commit, or an annotated tag object), in hex.
    pub object: String,
}

/// A GitHub pull-request operation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
#[serde(rename_all = "snake_case")]
pub enum GhRequest {
    /// `gh pr create` for the box's branch.
    PrCreate {
        /// PR title.
        title: String,
        /// PR body.
        body: String,
        /// Base branch; the repository default when absent.
        base: Option<String>,
        /// Open as a draft.
        draft: bool,
    },
    /// `gh pr view` of the box's branch, or of a number.
    PrView {
        /// PR number; the box branch's PR when absent.
        number: Option<u64>,
    },
    /// `gh pr list`.
    PrList {
        /// `open`, `closed`, `merged` or `all`; `open` when absent.
        state: Option<String>,
        /// Maximum entries.
        limit: Option<u32>,
    },
}

/// The host's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Outcome {
    /// The exit code the caller in the box exits with.
    pub exit_code: i32,
    /// Text for the caller's stdout.
    pub stdout: String,
    /// Text for the caller's stderr.
    pub stderr: String,
    /// For pull/fetch: a bundle of the fetched refs for the box to import.
    pub bundle: Option<BlobRef>,
}

/// ctl → relay, over `relay.sock`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RelayRequest {
    /// Journal a request and stream its progress until it finishes or `wait_ms` passes.
    Submit {
        /// The request.
        request: HostRequest,
        /// How long the caller waits for the host before giving up.
        wait_ms: u64,
    },
    /// Re-attach to a journalled request (after the caller was interrupted).
    Follow {
        /// The id returned by `Accepted`.
        id: RequestId,
        /// How long to wait.
        wait_ms: u64,
    },
}

/// relay → ctl, over `relay.sock`: a stream per [`RelayRequest`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub enum RelayEvent {
    /// The request is journalled under this id: from here on it survives restarts.
    Accepted {
        /// The id.
        id: RequestId,
    },
    /// The host picked the request up (attempt counts re-deliveries).
    Leased {
        /// 1 for the first delivery.
        attempt: u32,
    },
    /// The host is waiting for `agentbox approve` before running it.
    AwaitingApproval {
        /// The approval id to name in `agentbox approve`.
        approval_id: String,
    },
    /// A line of progress from the host.
    Progress {
        /// The text.
        line: String,
    },
    /// The host's answer; the stream ends.
    Finished(Outcome),
    /// The request could not be carried out (refused, timed out); the stream ends.
    Failed(ErrorReply),
}

/// `GET /v1/bridge/poll` response: requests now leased to this poller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct PollResponse {
    /// Zero or more requests (zero when the hold time ran out).
    pub requests: Vec<LeasedRequest>,
}

/// A request handed to the host under a lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct LeasedRequest {
    /// The request id: the host's exactly-once key.
    pub id: RequestId,
    /// The lease token; progress and result must carry it.
    pub lease: String,
    /// When the lease expires unless renewed by progress; the request is then re-delivered.
    pub lease_expires_at_ms: EpochMillis,
    /// Delivery attempt, 1 for the first.
    pub attempt: u32,
    /// When the box made the request.
    pub created_at_ms: EpochMillis,
    /// What the box asks for.
    pub request: HostRequest,
}

/// `POST /v1/bridge/progress`: progress lines; also renews the lease.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ProgressPost {
    /// The request.
    pub id: RequestId,
    /// The lease it was delivered with.
    pub lease: String,
    /// New lines.
    pub lines: Vec<String>,
}

/// `POST /v1/bridge/result`: the final answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ResultPost {
    /// The request.
    pub id: RequestId,
    /// The lease it was delivered with.
    pub lease: String,
    /// The answer.
    pub outcome: Outcome,
}

/// Reply to a [`ResultPost`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct ResultAck {
    /// The request.
    pub id: RequestId,
    /// `false` when a result was already recorded (the new one was ignored).
    pub recorded: bool,
}

/// `GET /healthz`: liveness and version, nothing else (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(test, derive(proptest_derive::Arbitrary))]
pub struct Health {
    /// Always `"ok"` when answered.
    pub status: String,
    /// Program name.
    pub program: String,
    /// Release version.
    pub version: String,
    /// [`crate::PROTOCOL_VERSION`].
    pub protocol_version: u32,
}
