//! Daytona's REST API: auth headers, errors a user can act on, retries by Daytona's own
//! classification, waiting for states, and a create that timed out found again by label
//! instead of sent twice; and on it, `agentbox daytona login` ([`login`], choosing among
//! the [`organizations`] a key reaches), the base
//! snapshot ([`prepare`]) and build contexts in Daytona's object storage ([`storage`]).
//!
//! Shapes follow Daytona's API (`POST /sandbox`, `GET /sandbox?labels=<json>`,
//! `/sandbox/{idOrName}/start|stop`, `DELETE /sandbox/{idOrName}`; camelCase JSON; errors
//! `{statusCode, error, message, …}`); `tests/daytona-fake` serves the same.
//!
//! The client is [`Daytona`] (in `client`); each part of the API adds its calls to it in a
//! module of its own (`sandbox`, `lifecycle`, `toolbox`, `volumes`, `snapshots`, `preview`), and this
//! module re-exports their items so that `crate::daytona::X` names them all.

mod client;
mod error;
mod lifecycle;
pub mod login;
pub mod organizations;
mod plain_http;
pub mod prepare;
mod preview;
mod sandbox;
mod snapshots;
pub mod storage;
mod toolbox;
mod volumes;

pub use client::Daytona;
pub use error::DaytonaError;
pub use preview::{PreviewLink, SignedPreviewLink, PREVIEW_TOKEN_HEADER};
pub use sandbox::{CreateSandbox, Sandbox, VolumeMount, CREATE_ID_LABEL};
pub use snapshots::{BuildInfo, CreateSnapshot, Snapshot};
pub use toolbox::Executed;
pub use volumes::Volume;
