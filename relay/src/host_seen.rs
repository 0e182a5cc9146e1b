//! When the host bridge was last seen polling. The bridge routes record each
//! `/v1/bridge/poll` (held or done); `relay.sock` reads it to tell a waiting caller that
//! nobody on the host is picking requests up, instead of letting it wait in silence.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// The host bridge's polls, as the relay sees them.
#[derive(Debug)]
pub struct HostSeen {
    /// Polls being held right now.
    held: AtomicUsize,
    /// When a poll last began or ended (ms since the epoch); the relay's start at first,
    /// so a box that just started gives its host time to find it.
    last_ms: AtomicU64,
}

impl Default for HostSeen {
    fn default() -> Self {
        Self {
            held: AtomicUsize::new(0),
            last_ms: AtomicU64::new(agentbox_protocol::now_millis()),
        }
    }
}

/// Marks one poll as held until dropped (a poll whose host hung up is dropped too).
#[derive(Debug)]
pub struct Held<'a>(&'a HostSeen);

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.touch();
        self.0.held.fetch_sub(1, Ordering::SeqCst);
    }
}

impl HostSeen {
    /// A poll began: the host is there while the returned guard lives.
    pub fn poll_began(&self) -> Held<'_> {
        self.held.fetch_add(1, Ordering::SeqCst);
        self.touch();
        Held(self)
    }

    fn touch(&self) {
        self.last_ms
            .store(agentbox_protocol::now_millis(), Ordering::SeqCst);
    }

    /// How long no poll has been held; zero while one is.
    pub fn absent_for(&self) -> Duration {
        if self.held.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let last = self.last_ms.load(Ordering::SeqCst);
        Duration::from_millis(agentbox_protocol::now_millis().saturating_sub(last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_held_poll_means_present_and_its_end_starts_the_clock() {
        let seen = HostSeen::default();
        seen.last_ms.store(0, Ordering::SeqCst);
        assert!(seen.absent_for() > Duration::from_secs(60));
        let held = seen.poll_began();
        assert_eq!(seen.absent_for(), Duration::ZERO);
        drop(held);
        assert!(seen.absent_for() < Duration::from_secs(5));
    }
}
