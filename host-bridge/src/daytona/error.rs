//! Why a Daytona call failed ([`DaytonaError`]), in sentences a user can act on, and which
//! failures a retry could help.

/// Why a Daytona call failed, in words a user can act on.
#[derive(Debug, thiserror::Error)]
pub enum DaytonaError {
    /// 401.
    #[error("Daytona rejected the API key: run `agentbox daytona login` ({0})")]
    Auth(String),
    /// 403.
    #[error("Daytona refused: {0}")]
    Forbidden(String),
    /// 404.
    #[error("not found on Daytona: {0}")]
    NotFound(String),
    /// 409: a state change is in progress (or another conflict).
    #[error("Daytona: {0}")]
    Conflict(String),
    /// 400 / 422.
    #[error("Daytona refused the request: {0}")]
    Invalid(String),
    /// 429 after every retry (or with a `Retry-After` too long to wait out).
    #[error("Daytona is rate-limiting this account; try again in {}", after(.retry_after.as_ref()))]
    RateLimited {
        /// How long Daytona said to wait, if it said.
        retry_after: Option<std::time::Duration>,
    },
    /// An answer longer than the host reads (a sandbox's toolbox answers with what the
    /// box chose): refused, never retried.
    #[error(
        "the answer from {url} was more than {cap} bytes, the most the host reads; it was refused"
    )]
    TooLarge {
        /// Where it came from (without the query).
        url: String,
        /// The cap.
        cap: usize,
    },
    /// Another status.
    #[error("Daytona answered {status}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Its message.
        message: String,
    },
    /// No answer in time, or no connection.
    #[error("cannot reach Daytona at {url}: {why}")]
    Unreachable {
        /// The API base.
        url: String,
        /// What happened.
        why: String,
    },
    /// The server's TLS certificate is not one the host trusts (a TLS-inspecting proxy, a
    /// private CA, a wrong host): the whole sentence, with what to do.
    #[error("{0}")]
    Untrusted(String),
    /// The pinned snapshot is not on Daytona any more.
    #[error("snapshot {0} was deleted: run `agentbox prepare --provider daytona`")]
    SnapshotGone(String),
    /// A snapshot build ended in `error` or `build_failed`.
    #[error("snapshot {name} failed to build ({state}): {reason}")]
    SnapshotFailed {
        /// Snapshot name.
        name: String,
        /// `error` or `build_failed`.
        state: String,
        /// Daytona's reason.
        reason: String,
    },
    /// A state that will not become the wanted one.
    #[error("sandbox {id} is `{state}` ({reason})")]
    BadState {
        /// Sandbox id.
        id: String,
        /// Its state.
        state: String,
        /// Daytona's error reason, if any.
        reason: String,
    },
}

/// "N s" from a `Retry-After`, else "a minute".
fn after(retry_after: Option<&std::time::Duration>) -> String {
    retry_after.map_or_else(|| "a minute".into(), |d| format!("{} s", d.as_secs()))
}

impl DaytonaError {
    /// What a request to `url` that got no answer means: an untrusted certificate, or
    /// Daytona unreachable (with the causes, not only reqwest's "error sending request").
    pub(super) fn network(url: &str, e: &reqwest::Error) -> Self {
        let host = reqwest::Url::parse(url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_string))
            .unwrap_or_else(|| url.to_string());
        match crate::tls::untrusted(e, &host) {
            Some(sentence) => Self::Untrusted(sentence),
            None => Self::Unreachable {
                url: url.to_string(),
                why: crate::tls::with_causes(e),
            },
        }
    }

    /// Whether a retry could help: 429 always; 5xx and no answer only when the call may be
    /// repeated without effect (`idempotent`).
    pub(super) fn retriable(&self, idempotent: bool) -> bool {
        match self {
            Self::RateLimited { .. } => true,
            Self::Server { status, .. } => idempotent && *status >= 500,
            Self::Unreachable { .. } => idempotent,
            _ => false,
        }
    }
}
