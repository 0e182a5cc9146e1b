//! Providers: where a box runs. `local` (processes on this machine), `docker` (a
//! container of the image built from `Dockerfile.box`) and `daytona` (a Daytona sandbox
//! from the snapshot `prepare --provider daytona` made).
//!
//! [`AnyBox`] (in `any_box`) dispatches to them; a box's [`Size`] (in `size`) is shared by
//! docker and daytona. This module re-exports both.

mod any_box;
pub mod daytona;
pub mod docker;
pub mod local;
pub mod size;

pub use any_box::{ensure_available, AnyBox, DockerSettings};
pub use size::Size;
