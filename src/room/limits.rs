//! Bounded accounting for the room: token buckets, and the at-most-once
//! window of a member's message numbers (PROTOCOL.md "At most once").

use std::time::Instant;

/// A token bucket: `rate` tokens a second, at most `burst` saved up.
#[derive(Debug, Clone, Copy)]
pub struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Bucket {
    /// A full bucket.
    pub fn full(now: Instant, burst: f64) -> Self {
        Bucket {
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = self.last.max(now);
        self.tokens = (self.tokens + dt * rate).min(burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Would the bucket be full at `now` (nothing taken for long enough)?
    pub fn is_full(&self, now: Instant, rate: f64, burst: f64) -> bool {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens + dt * rate >= burst
    }
}

/// How many message numbers the at-most-once window spans (also the most a
/// client may have outstanding).
pub const SEQ_WINDOW: u32 = 1024;

/// How far `floor` may trail `low` before it follows.
const MAX_REMEMBERED: u32 = 1 << 30;

/// What the window says of a message number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Not forwarded yet: forward it (unless refused), then [`AckWindow::accept`].
    New,
    /// Forwarded already in this session: acknowledge again.
    Again,
    /// Below the window: the server no longer knows (REJECT 4).
    TooOld,
}

/// Which message numbers a member's messages were forwarded under
/// (PROTOCOL.md "At most once"): `low`, the lowest number not yet forwarded,
/// a bitmap of the [`SEQ_WINDOW`] numbers from `low` on, and `floor`: every
/// number in `floor .. low` was forwarded. Numbers compare as RFC 1982
/// serial numbers.
#[derive(Debug, Clone)]
pub struct AckWindow {
    low: u32,
    floor: u32,
    /// Bit `s % SEQ_WINDOW` is set when `s` in `low..low + SEQ_WINDOW` was
    /// forwarded. Boxed and made at the first number forwarded out of order
    /// (dropped when none is set any more): a member whose numbers arrive in
    /// order, or who says nothing, keeps a null pointer, not 128 bytes.
    bits: Option<Box<Bits>>,
}

type Bits = [u64; (SEQ_WINDOW / 64) as usize];

impl Default for AckWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl AckWindow {
    /// A fresh window: numbers start at 1.
    pub fn new() -> Self {
        Self::starting_at(1)
    }

    /// A window whose first number is `low` (nothing forwarded yet; 0 is
    /// taken as 1).
    pub fn starting_at(low: u32) -> Self {
        let low = low.max(1);
        AckWindow {
            low,
            floor: low,
            bits: None,
        }
    }

    fn bit(&self, s: u32) -> bool {
        let i = (s % SEQ_WINDOW) as usize;
        self.bits
            .as_ref()
            .is_some_and(|b| b[i / 64] & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, s: u32, on: bool) {
        let i = (s % SEQ_WINDOW) as usize;
        if on {
            self.bits.get_or_insert_with(Box::default)[i / 64] |= 1 << (i % 64);
        } else if let Some(b) = &mut self.bits {
            b[i / 64] &= !(1 << (i % 64));
        }
    }

    /// What to do with message number `seq`.
    pub fn check(&self, seq: u32) -> Seen {
        if seq == 0 {
            return Seen::TooOld;
        }
        let ahead = seq.wrapping_sub(self.low);
        if ahead < 1 << 31 {
            return if ahead < SEQ_WINDOW && self.bit(seq) {
                Seen::Again
            } else {
                Seen::New
            };
        }
        // Before `low`: remembered as forwarded from `floor` on.
        if seq.wrapping_sub(self.floor) < self.low.wrapping_sub(self.floor) {
            Seen::Again
        } else {
            Seen::TooOld
        }
    }

    /// Records `seq` as forwarded. Call only when [`AckWindow::check`] said [`Seen::New`].
    pub fn accept(&mut self, seq: u32) {
        let ahead = seq.wrapping_sub(self.low);
        if ahead >= 1 << 31 {
            return;
        }
        if ahead == 0 && self.bits.is_none() {
            // In order, nothing ahead of it: `low` moves on (past 0 too).
            self.low = self.low.wrapping_add(1).max(1);
            self.follow_low();
            return;
        }
        if ahead >= SEQ_WINDOW {
            // Slide so that the window ends at `seq`: what it passes over is
            // unknown from then on.
            let new_low = seq.wrapping_sub(SEQ_WINDOW - 1);
            let shift = new_low.wrapping_sub(self.low);
            if shift >= SEQ_WINDOW {
                self.bits = None;
            } else {
                for k in 0..shift {
                    self.set(self.low.wrapping_add(k), false);
                }
            }
            self.low = new_low;
            self.floor = new_low;
        }
        self.set(seq, true);
        // 0 is never a message number: `low` passes over it.
        while self.low == 0 || self.bit(self.low) {
            self.set(self.low, false);
            self.low = self.low.wrapping_add(1);
        }
        if self
            .bits
            .as_ref()
            .is_some_and(|b| b.iter().all(|&w| w == 0))
        {
            self.bits = None;
        }
        self.follow_low();
    }

    /// `floor` trails `low` by at most [`MAX_REMEMBERED`].
    fn follow_low(&mut self) {
        if self.low.wrapping_sub(self.floor) > MAX_REMEMBERED {
            self.floor = self.low.wrapping_sub(MAX_REMEMBERED);
        }
    }

    /// The lowest number not yet forwarded.
    pub fn low(&self) -> u32 {
        self.low
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Bucket::full(t0, 10.0);
        assert_eq!((0..20).filter(|_| b.take(t0, 5.0, 10.0)).count(), 10);
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!((0..20).filter(|_| b.take(t1, 5.0, 10.0)).count(), 5);
        // An earlier time never adds tokens or panics.
        assert!(!b.take(t0, 5.0, 10.0));
        assert!(!b.is_full(t1, 5.0, 10.0));
        assert!(b.is_full(t1 + Duration::from_secs(2), 5.0, 10.0));
    }

    #[test]
    fn window_forwards_each_number_once_in_any_order() {
        let mut w = AckWindow::new();
        assert_eq!(w.check(0), Seen::TooOld);
        for s in [3, 1, 2, 7, 5] {
            assert_eq!(w.check(s), Seen::New);
            w.accept(s);
            assert_eq!(w.check(s), Seen::Again);
        }
        assert_eq!(w.low(), 4);
        assert_eq!(w.check(4), Seen::New);
        assert_eq!(w.check(1), Seen::Again, "below low, above floor");
    }

    #[test]
    fn a_slide_makes_what_it_passes_too_old() {
        let mut w = AckWindow::new();
        w.accept(1);
        w.accept(5000);
        assert_eq!(w.check(5000), Seen::Again);
        assert_eq!(w.check(1), Seen::TooOld, "forgotten when the window slid");
        assert_eq!(w.check(4), Seen::TooOld);
        assert_eq!(
            w.check(5000 - SEQ_WINDOW + 1),
            Seen::New,
            "the window's first"
        );
        assert_eq!(w.check(5000 - SEQ_WINDOW), Seen::TooOld);
        assert_eq!(w.check(4999), Seen::New);
    }

    #[test]
    fn the_bitmap_exists_only_while_numbers_wait_ahead_of_low() {
        let mut w = AckWindow::new();
        for s in 1..=100 {
            w.accept(s);
        }
        assert!(w.bits.is_none(), "in order: no bitmap");
        w.accept(103);
        w.accept(102);
        assert!(w.bits.is_some());
        assert_eq!(
            (w.low(), w.check(102), w.check(104)),
            (101, Seen::Again, Seen::New)
        );
        w.accept(101);
        assert_eq!(w.low(), 104);
        assert!(w.bits.is_none(), "dropped once empty");
        assert_eq!(w.check(103), Seen::Again, "below low, above floor");
    }

    #[test]
    fn numbers_wrap_as_serial_numbers() {
        let mut w = AckWindow::starting_at(u32::MAX - 2);
        for s in [u32::MAX - 2, u32::MAX - 1, u32::MAX, 1, 2] {
            assert_eq!(w.check(s), Seen::New, "{s}");
            w.accept(s);
        }
        assert_eq!(w.low(), 3);
        assert_eq!(w.check(u32::MAX), Seen::Again);
        assert_eq!(w.check(0), Seen::TooOld);
    }

    #[test]
    fn floor_follows_low_at_a_distance() {
        let mut w = AckWindow::new();
        for s in 1..=3000u32 {
            w.accept(s);
        }
        assert_eq!(w.check(1), Seen::Again);
        w.low = MAX_REMEMBERED + 1;
        w.accept(MAX_REMEMBERED + 1);
        assert_eq!(w.check(1), Seen::TooOld);
        assert_eq!(w.check(2), Seen::Again);
    }
}
