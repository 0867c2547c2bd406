//! What the receiver counts: the per-member event numbers (to report lost
//! events) and the pages of `/who`. Pure: time is an argument.

use crate::client::render;
use std::time::{Duration, Instant};

/// A WHO request is sent again after this, up to [`WHO_SENDS`] times.
pub const WHO_RESEND: Duration = Duration::from_millis(500);
pub const WHO_SENDS: u32 = 3;

/// The per-member event numbers: which event is expected next, and how many
/// were skipped.
#[derive(Debug, Clone)]
pub struct SeqTracker {
    next: u32,
}

impl Default for SeqTracker {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqTracker {
    /// A new session: the first event is number 1.
    pub fn new() -> Self {
        SeqTracker { next: 1 }
    }

    /// Event number `n` arrived: `Some(missed)` (events skipped before it) if
    /// it is new, `None` if it is a duplicate or arrives after a later one.
    pub fn event(&mut self, n: u32) -> Option<u32> {
        let ahead = n.wrapping_sub(self.next);
        if ahead >= 1 << 31 {
            return None;
        }
        self.next = n.wrapping_add(1);
        Some(ahead)
    }

    /// The highest event number received in order (0 before the first).
    pub fn last(&self) -> u32 {
        self.next.wrapping_sub(1)
    }

    /// A KEEPALIVE says the last event sent was `last_seq`: returns how many of the
    /// events up to it never arrived (lost at the end of a burst).
    pub fn pong(&mut self, last_seq: u32) -> u32 {
        let missing = last_seq.wrapping_add(1).wrapping_sub(self.next);
        if missing == 0 || missing >= 1 << 31 {
            return 0;
        }
        self.next = last_seq.wrapping_add(1);
        missing
    }
}

/// Paging through the member list.
#[derive(Debug, Clone)]
pub struct WhoPager {
    start: u32,
    names: Vec<String>,
    sends: u32,
    next_at: Instant,
}

/// What the pager wants next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WhoStep {
    /// Ask for the page starting here.
    Ask(u32),
    /// All pages are in (or enough to show): the total and the names.
    Done(u32, Vec<String>),
    /// A page for another request: ignored.
    Ignore,
    /// No answer.
    GiveUp,
}

impl WhoPager {
    /// A new listing; ask for page 0 now.
    pub fn new(now: Instant) -> Self {
        WhoPager {
            start: 0,
            names: Vec::new(),
            sends: 1,
            next_at: now + WHO_RESEND,
        }
    }

    pub fn on_page<'a>(
        &mut self,
        start: u32,
        total: u32,
        names: impl Iterator<Item = &'a str>,
        now: Instant,
    ) -> WhoStep {
        if start != self.start {
            return WhoStep::Ignore;
        }
        let before = self.names.len();
        self.names.extend(names.map(str::to_string));
        let got = (self.names.len() - before) as u32;
        self.start = self.start.saturating_add(got);
        if got == 0 || self.start >= total || self.names.len() >= render::WHO_SHOWN {
            return WhoStep::Done(total, std::mem::take(&mut self.names));
        }
        self.sends = 1;
        self.next_at = now + WHO_RESEND;
        WhoStep::Ask(self.start)
    }

    /// When [`WhoPager::on_timer`] next has something to do.
    pub fn next_wakeup(&self) -> Instant {
        self.next_at
    }

    pub fn on_timer(&mut self, now: Instant) -> Option<WhoStep> {
        if now < self.next_at {
            None
        } else if self.sends >= WHO_SENDS {
            Some(WhoStep::GiveUp)
        } else {
            self.sends += 1;
            self.next_at = now + WHO_RESEND;
            Some(WhoStep::Ask(self.start))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gaps_are_counted() {
        let mut s = SeqTracker::new();
        assert_eq!(s.event(1), Some(0));
        assert_eq!(s.event(2), Some(0));
        assert_eq!(s.event(5), Some(2));
        assert_eq!(s.event(4), None, "late");
        assert_eq!(s.event(5), None, "duplicate");
        assert_eq!(s.event(6), Some(0));
        assert_eq!(s.pong(6), 0);
        assert_eq!(s.last(), 6);
        assert_eq!(s.pong(9), 3, "lost at the end of a burst");
        assert_eq!(s.event(10), Some(0));
        assert_eq!(s.pong(3), 0, "an old pong");
    }

    #[test]
    fn gaps_across_the_wrap() {
        let mut s = SeqTracker { next: u32::MAX };
        assert_eq!(s.event(u32::MAX), Some(0));
        assert_eq!(s.event(1), Some(1), "0 was skipped");
        let mut s = SeqTracker::new();
        assert_eq!(s.pong(0), 0, "no event yet");
    }

    #[test]
    fn who_pages_until_total() {
        let t0 = Instant::now();
        let mut w = WhoPager::new(t0);
        assert_eq!(w.on_page(5, 3, ["x"].into_iter(), t0), WhoStep::Ignore);
        assert_eq!(w.on_page(0, 3, ["a", "b"].into_iter(), t0), WhoStep::Ask(2));
        assert_eq!(
            w.on_page(2, 3, ["c"].into_iter(), t0),
            WhoStep::Done(3, vec!["a".into(), "b".into(), "c".into()])
        );
        let mut w = WhoPager::new(t0);
        assert_eq!(w.on_page(0, 5, ["a"].into_iter(), t0), WhoStep::Ask(1));
        assert_eq!(
            w.on_page(1, 5, std::iter::empty(), t0),
            WhoStep::Done(5, vec!["a".into()]),
            "an empty page ends it"
        );
    }

    #[test]
    fn who_resends_then_gives_up() {
        let t0 = Instant::now();
        let mut w = WhoPager::new(t0);
        assert_eq!(w.on_timer(t0), None);
        assert_eq!(w.on_timer(t0 + WHO_RESEND), Some(WhoStep::Ask(0)));
        assert_eq!(w.on_timer(t0 + WHO_RESEND * 2), Some(WhoStep::Ask(0)));
        assert_eq!(w.on_timer(t0 + WHO_RESEND * 3), Some(WhoStep::GiveUp));
    }
}
