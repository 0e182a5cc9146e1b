//! `agentbox`: the host CLI.
//!
//! - [`agents`]: the agents' states the boxes report, as the host records them.
//! - [`cli`]: the command line's arguments, one module per command family;
//!   [`commands`]: what each command does, in modules of the same names.
//! - [`bridge`]: the host bridge daemon that answers the boxes' requests, and its records.
//! - [`home`]: the layout of `AGENTBOX_HOME`; [`state`]: box records in SQLite;
//!   [`config`]: layered configuration. [`home_daemon`]: holding, starting and stopping
//!   a daemon that runs once per home (the bridge's and the proxy's).
//! - [`dashboard`]: `agentbox dashboard`, every box on one live terminal screen.
//! - [`credentials`]: agent credential files and forwarded API keys, host → box.
//! - [`provider`]: where boxes run (`local` today).
//! - [`proxy`]: `agentbox proxy`, the HTTPS proxy of `https://<service>.<box>.localhost`.
//! - [`image`]: the box image's inputs (binaries, agents, their config) and build context.
//! - [`seed`]: packing the repo into a seed. [`shell`]: PATH lookups and `sh` quoting.
//! - [`download`]: `agentbox download`, the box workspace back into the host tree.
//! - [`daytona`]: Daytona's REST API (sandboxes so far), errors, retries, waiting.
//! - [`sync`]: `agentbox sync`, sending only what changed since the seed or last sync.
//! - [`transfer`]: `agentbox cp` and the resumable, verified transfer client.
//! - [`relay_exec`]: one-off commands in a box through its relay, output streamed apart.
//! - [`stats`]: one sample of a box's CPU, memory, disk and processes through its relay.
//! - [`unsaved`]: the box's work the host does not have (what `destroy` names) and the
//!   base both sides are compared with.
//! - [`git`]: running the host's git; [`git_identity`]: `user.name`/`user.email` into a box. [`text`]: text from a box made safe to show.
//! - [`tls`]: the one TLS configuration of every connection the host makes, and
//!   certificate problems in words.

pub mod agents;
pub mod attach;
pub mod bridge;
pub mod browser;
pub mod checkpoint;
pub mod cli;
pub mod commands;
pub mod completion;
pub mod config;
pub mod credentials;
pub mod dashboard;
pub mod daytona;
pub mod download;
pub mod git;
pub mod git_identity;
pub mod home;
pub mod home_daemon;
pub mod image;
pub mod port_forward;
pub mod provider;
pub mod proxy;
pub mod relay_exec;
pub mod secrets;
pub mod seed;
pub mod shell;
pub mod state;
pub mod stats;
pub mod sync;
pub mod text;
pub mod timed;
pub mod tls;
pub mod transfer;
pub mod unsaved;
pub mod when;
