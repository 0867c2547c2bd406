//! The sliding replay window of one receiving key (PROTOCOL.md, "The replay
//! window"): 1024 counters below the next new one.

use super::{REKEY_AFTER_MESSAGES, REPLAY_WINDOW};

const WORDS: usize = (REPLAY_WINDOW / 64) as usize;

/// Which counters of one receiving key were accepted.
///
/// `check` before decrypting, `mark` only after the datagram authenticated.
#[derive(Debug, Clone)]
pub struct ReplayWindow {
    /// One more than the highest counter accepted (0 at the start).
    next: u64,
    /// Bit `c % 1024` is set when counter `c` (within the window) was accepted.
    bits: [u64; WORDS],
}

impl Default for ReplayWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayWindow {
    /// A window that has accepted nothing.
    pub fn new() -> Self {
        ReplayWindow {
            next: 0,
            bits: [0; WORDS],
        }
    }

    /// Would counter `c` be accepted (new, or late within the window and unseen)?
    pub fn check(&self, c: u64) -> bool {
        if c >= REKEY_AFTER_MESSAGES {
            false
        } else if c >= self.next {
            true
        } else if self.next - c > REPLAY_WINDOW {
            false // too old
        } else {
            !self.get(c)
        }
    }

    /// Is `c` newer than every counter accepted so far?
    pub fn is_newest(&self, c: u64) -> bool {
        c >= self.next
    }

    /// Marks `c` as seen (after it authenticated); slides the window when `c`
    /// is new. The caller checked `c` with [`ReplayWindow::check`].
    pub fn mark(&mut self, c: u64) {
        debug_assert!(self.check(c));
        if c >= self.next {
            if c - self.next >= REPLAY_WINDOW {
                self.bits = [0; WORDS];
            } else {
                // Slots of next..=c held counters that now leave the window.
                for n in self.next..=c {
                    self.set(n, false);
                }
            }
            self.next = c + 1;
        }
        self.set(c, true);
    }

    fn get(&self, c: u64) -> bool {
        let i = (c % REPLAY_WINDOW) as usize;
        self.bits[i / 64] >> (i % 64) & 1 == 1
    }

    fn set(&mut self, c: u64, on: bool) {
        let i = (c % REPLAY_WINDOW) as usize;
        let bit = 1u64 << (i % 64);
        if on {
            self.bits[i / 64] |= bit;
        } else {
            self.bits[i / 64] &= !bit;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accept(w: &mut ReplayWindow, c: u64) -> bool {
        let ok = w.check(c);
        if ok {
            w.mark(c);
        }
        ok
    }

    #[test]
    fn in_order_then_replays_are_refused() {
        let mut w = ReplayWindow::new();
        for c in 0..3000 {
            assert!(accept(&mut w, c), "{c}");
        }
        for c in [0, 1975, 1976, 2999] {
            assert!(!accept(&mut w, c), "{c}");
        }
    }

    #[test]
    fn late_within_the_window_is_accepted_once() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 5));
        for c in 0..5 {
            assert!(accept(&mut w, c), "{c}");
            assert!(!accept(&mut w, c), "{c} twice");
        }
        assert!(!accept(&mut w, 5));
    }

    #[test]
    fn window_edges() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 2000)); // next = 2001: window 977..=2000
        assert!(!w.check(976), "just below the window");
        assert!(w.check(977), "the lowest number in the window");
        assert!(accept(&mut w, 977));
        assert!(accept(&mut w, 1999));
        assert!(w.check(2001) && w.is_newest(2001));
        assert!(!w.is_newest(2000));
        // Slide by exactly the window: everything before is forgotten.
        assert!(accept(&mut w, 2000 + 1024));
        assert!(!w.check(2000), "now below the window");
        assert!(w.check(2001), "passed over, still in the window");
        assert!(accept(&mut w, 2001));
        assert!(!w.check(2001));
    }

    #[test]
    fn a_big_jump_clears_the_whole_window() {
        let mut w = ReplayWindow::new();
        for c in 0..1024 {
            assert!(accept(&mut w, c));
        }
        assert!(accept(&mut w, 10_000));
        // 8977..=9999 passed over: unseen, acceptable even where their slots
        // held accepted counters before.
        for c in [8977, 9000, 9999] {
            assert!(accept(&mut w, c), "{c}");
        }
        assert!(!w.check(8976));
    }

    #[test]
    fn slots_of_passed_over_counters_are_cleared() {
        let mut w = ReplayWindow::new();
        assert!(accept(&mut w, 3)); // slot 3
        assert!(accept(&mut w, 1024 + 10)); // next = 1035: window 11..=1034
        assert!(w.check(1024 + 3), "slot 3 now means 1027, not seen");
        assert!(!w.check(3), "too old");
    }

    #[test]
    fn counters_at_the_limit_are_refused() {
        let mut w = ReplayWindow::new();
        assert!(!w.check(REKEY_AFTER_MESSAGES));
        assert!(!w.check(u64::MAX));
        assert!(accept(&mut w, REKEY_AFTER_MESSAGES - 1));
        assert!(!w.check(REKEY_AFTER_MESSAGES - 1));
        assert!(accept(&mut w, REKEY_AFTER_MESSAGES - 2));
    }
}
