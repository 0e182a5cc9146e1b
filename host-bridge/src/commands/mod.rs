//! What each `agentbox` command does, one module per command family (the families of
//! [`crate::cli`], whose argument types each function takes). Every command is a plain
//! function; those that need the box records take a [`Ctx`].

pub mod agents;
pub mod audit;
pub mod boxes;
pub mod config;
mod context;
pub mod create;
pub mod dashboard;
pub mod daytona;
pub mod daytona_resync;
pub mod exec;
pub mod files;
pub mod git;
pub mod images;
pub mod install;
mod interrupt;
pub mod joined;
pub mod list;
pub mod port;
pub mod proxy;
mod ready;
pub mod screen;
pub mod services;
pub mod setup;
pub mod share;
pub mod top;
pub mod url;

pub use context::{ensure_running, relay_of, Ctx};
