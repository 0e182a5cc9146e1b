//! Files between the host and a box: the resumable, verified client of the relay's
//! transfer API ([`client`]), `agentbox cp` on top of it ([`cp`]), the bounded reads every
//! answer from a box goes through ([`capped`]), and how a refusal reads ([`refusal`]).

pub mod capped;
pub mod client;
pub mod cp;
pub mod refusal;
