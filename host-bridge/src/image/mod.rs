//! The box image's inputs and build context, shared by the docker provider (a local
//! `docker build`) and Daytona (a server-side snapshot build).
//!
//! Everything baked is an input here: `Dockerfile.box`, the shims, the box binaries, the
//! base image, the agents' packages ([`agents`]) and their static configuration from the
//! host ([`agent_config`]), whether it carries a Docker engine (`--dind`), and the browser
//! with its screen (`--browser`, [`browser`]). The image's tag is a checksum of all of
//! them, so an unchanged image is never rebuilt and a changed one never passes for the old.
//!
//! The box binaries are static Linux executables of the box's architecture ([`arch`]),
//! found and checked by [`binaries`], never the host's own by accident.
//!
//! The inputs and what is made of them (Dockerfile, tag, build context) are in `inputs`;
//! this module re-exports them.

pub mod agent_config;
pub mod agents;
pub mod arch;
pub mod binaries;
pub mod browser;
mod inputs;

pub use agents::Agent;
pub use arch::BoxArch;
pub use inputs::{Inputs, Packages, DEFAULT_AGENTS};
