//! Random tokens: the bridge token, leases, term and transfer ids are all cut from one
//! generator, so [`crate::bridge`], [`crate::term`] and [`crate::files`] share it here.

/// A new bridge token: 256 random bits as 64 lowercase hex characters.
pub fn new_bridge_token() -> std::io::Result<String> {
    use std::fmt::Write;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    }))
}
