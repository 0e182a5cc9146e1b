//! Files between the host and a box: the resumable, verified client of the relay's
//! transfer API ([`client`]) and `agentbox cp` on top of it ([`cp`]).

pub mod client;
pub mod cp;
