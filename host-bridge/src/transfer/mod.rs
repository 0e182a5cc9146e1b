//! Files between the host and a box: the resumable, verified client of the relay's
//! transfer API ([`client`]), `agentbox cp` on top of it ([`cp`]), the bounded reads every
//! answer from a box goes through ([`capped`]), and how a refusal reads ([`refusal`]).
//! [`progress`] writes every command's progress: the byte meters of transfers, and the
//! step lines of provisioning (prepare, create, a Daytona bake).

pub mod capped;
pub mod client;
pub mod cp;
pub mod progress;
pub mod refusal;
