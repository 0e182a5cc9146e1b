//! How often a box may raise a desktop notification: a box that flips its agents between
//! `waiting` and `working`, or sends `notify` in a loop, must not flood the user's desktop.
//! Each box has its own budget of [`BURST`] notifications per [`WINDOW`]; past it a report
//! is still recorded (and audited), only not shown. Likewise a box opens at most
//! [`OPEN_BURST`] URLs in the user's browser per [`WINDOW`] (`may_open`).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Notifications one box may raise within [`WINDOW`].
pub const BURST: usize = 3;
/// The window the budget counts over.
pub const WINDOW: Duration = Duration::from_secs(60);

/// URLs one box may open within [`WINDOW`]: a box opening in a loop must not flood the
/// user's browser with tabs.
pub const OPEN_BURST: usize = 5;

/// When each box last raised its notifications or opened URLs, by (what, box) (at most
/// the budget kept per box).
type Sent = HashMap<(&'static str, String), VecDeque<Instant>>;
static SENT: Mutex<Option<Sent>> = Mutex::new(None);

/// Whether box `box_name` may raise a notification now; counts it when it may.
pub fn may_notify(box_name: &str) -> bool {
    may_notify_at(box_name, Instant::now())
}

/// Whether box `box_name` may open a URL in the user's browser now; counts it when it may.
pub fn may_open(box_name: &str) -> bool {
    within("open", OPEN_BURST, box_name, Instant::now())
}

fn may_notify_at(box_name: &str, now: Instant) -> bool {
    within("notify", BURST, box_name, now)
}

fn within(what: &'static str, burst: usize, box_name: &str, now: Instant) -> bool {
    let mut guard = SENT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let boxes = guard.get_or_insert_with(HashMap::new);
    let sent = boxes.entry((what, box_name.to_string())).or_default();
    while sent
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        sent.pop_front();
    }
    if sent.len() >= burst {
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
        // Opening URLs has a budget of its own.
        let opened = (0..50)
            .filter(|_| within("open", OPEN_BURST, "flood-unit", start))
            .count();
        assert_eq!(opened, OPEN_BURST);
    }
}
