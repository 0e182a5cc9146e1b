//! How often a box may raise a desktop notification: a box that flips its agents between
//! `waiting` and `working`, or sends `notify` in a loop, must not flood the user's desktop.
//! Each box has its own budget of [`BURST`] notifications per [`WINDOW`]; past it a report
//! is still recorded (and audited), only not shown.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Notifications one box may raise within [`WINDOW`].
pub const BURST: usize = 3;
/// The window the budget counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// When each box last raised its notifications (at most [`BURST`] kept per box).
static SENT: Mutex<Option<HashMap<String, VecDeque<Instant>>>> = Mutex::new(None);

/// Whether box `box_name` may raise a notification now; counts it when it may.
pub fn may_notify(box_name: &str) -> bool {
    may_notify_at(box_name, Instant::now())
}

fn may_notify_at(box_name: &str, now: Instant) -> bool {
    let mut guard = SENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let boxes = guard.get_or_insert_with(HashMap::new);
    let sent = boxes.entry(box_name.to_string()).or_default();
    while sent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        sent.pop_front();
    }
    if sent.len() >= BURST {
        return false;
    }
    sent.push_back(now);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_box_has_a_burst_per_window_and_it_comes_back() {
        let start = Instant::now();
        let granted = (0..50)
            .filter(|_| may_notify_at("flood-unit", start))
            .count();
        assert_eq!(granted, BURST, "a flood gets its burst only");
        // Another box is not starved by the first one's flood.
        assert!(may_notify_at("other-unit", start));
        assert!(!may_notify_at("flood-unit", start + WINDOW / 2));
        assert!(may_notify_at("flood-unit", start + WINDOW));
    }
}
