//! The pages of `/who` as the receiver fetches them. Pure: time is an argument.

use crate::client::render;
use std::time::{Duration, Instant};

/// A WHO request is sent again after this, up to [`WHO_SENDS`] times.
pub const WHO_RESEND: Duration = Duration::from_millis(500);
pub const WHO_SENDS: u32 = 3;

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
