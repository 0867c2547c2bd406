//! Bounded accounting for the room: token buckets, the at-most-once window of
//! client sequence numbers, and the per-source-IP limiter for replies to
//! addresses that are not members.

use siphasher::sip128::SipHasher13;
use std::net::IpAddr;
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
}

/// How many sequence numbers the at-most-once window spans.
pub const SEQ_WINDOW: u32 = 1024;

/// Which client sequence numbers a session has accepted: a bitmap of the
/// [`SEQ_WINDOW`] numbers from the lowest one not yet accepted. Numbers below
/// the window count as accepted; accepting a number beyond the window slides
/// the window up to it (the numbers it passes over then count as accepted).
#[derive(Debug, Clone)]
pub struct SeqWindow {
    /// The lowest number not yet accepted (all below count as accepted).
    lo: u32,
    /// Bit `s % SEQ_WINDOW` is set when `s` in `lo..lo + SEQ_WINDOW` was accepted.
    bits: [u64; (SEQ_WINDOW / 64) as usize],
}

impl Default for SeqWindow {
    fn default() -> Self {
        Self::new()
    }
}

impl SeqWindow {
    /// A fresh window: sequence numbers start at 1 (0 counts as already seen).
    pub fn new() -> Self {
        SeqWindow {
            lo: 1,
            bits: [0; (SEQ_WINDOW / 64) as usize],
        }
    }

    fn bit(&self, s: u32) -> bool {
        let i = (s % SEQ_WINDOW) as usize;
        self.bits[i / 64] & (1 << (i % 64)) != 0
    }

    fn set(&mut self, s: u32, on: bool) {
        let i = (s % SEQ_WINDOW) as usize;
        if on {
            self.bits[i / 64] |= 1 << (i % 64);
        } else {
            self.bits[i / 64] &= !(1 << (i % 64));
        }
    }

    /// Was `seq` accepted already (or is it older than the window)?
    pub fn seen(&self, seq: u32) -> bool {
        let d = seq.wrapping_sub(self.lo);
        if d >= 1 << 31 {
            true // behind the window
        } else if d >= SEQ_WINDOW {
            false // ahead of the window
        } else {
            self.bit(seq)
        }
    }

    /// Records `seq` as accepted. Call only when `!self.seen(seq)`.
    pub fn accept(&mut self, seq: u32) {
        let d = seq.wrapping_sub(self.lo);
        if d >= 1 << 31 {
            return;
        }
        if d >= SEQ_WINDOW {
            let new_lo = seq.wrapping_sub(SEQ_WINDOW - 1);
            let shift = new_lo.wrapping_sub(self.lo);
            if shift >= SEQ_WINDOW {
                self.bits = [0; (SEQ_WINDOW / 64) as usize];
            } else {
                for k in 0..shift {
                    self.set(self.lo.wrapping_add(k), false);
                }
            }
            self.lo = new_lo;
        }
        self.set(seq, true);
        while self.bit(self.lo) {
            self.set(self.lo, false);
            self.lo = self.lo.wrapping_add(1);
        }
    }

    /// The lowest number not yet accepted.
    pub fn lowest_unseen(&self) -> u32 {
        self.lo
    }
}

/// How many buckets the source limiter keeps (a power of two).
const SOURCE_SLOTS: usize = 4096;

/// Rate limit for replies to non-members, per source IP, in bounded memory:
/// a fixed table of token buckets indexed by a keyed hash of the address.
/// Two addresses that share a slot share a bucket (stricter, never looser).
pub struct SourceLimiter {
    hasher: SipHasher13,
    slots: Box<[Bucket]>,
    rate: f64,
    burst: f64,
}

impl SourceLimiter {
    /// A limiter allowing `rate` replies a second per address, `burst` at once.
    pub fn new(key: [u8; 16], now: Instant, rate: f64, burst: f64) -> Self {
        SourceLimiter {
            hasher: SipHasher13::new_with_key(&key),
            slots: vec![Bucket::full(now, burst); SOURCE_SLOTS].into_boxed_slice(),
            rate,
            burst,
        }
    }

    /// May we send one more reply to `ip`?
    pub fn allow(&mut self, now: Instant, ip: IpAddr) -> bool {
        let h = match ip.to_canonical() {
            IpAddr::V4(a) => self.hasher.hash(&a.octets()),
            IpAddr::V6(a) => self.hasher.hash(&a.octets()),
        };
        let slot = (h.h1 as usize) & (SOURCE_SLOTS - 1);
        self.slots[slot].take(now, self.rate, self.burst)
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
    }

    #[test]
    fn window_accepts_each_number_once_in_any_order() {
        let mut w = SeqWindow::new();
        assert!(w.seen(0));
        for s in [3, 1, 2, 7, 5] {
            assert!(!w.seen(s));
            w.accept(s);
            assert!(w.seen(s));
        }
        assert_eq!(w.lowest_unseen(), 4);
        assert!(!w.seen(4) && !w.seen(6) && w.seen(5) && w.seen(7));
        // Far ahead: the window slides, what it passes counts as seen.
        w.accept(5000);
        assert!(w.seen(5000) && w.seen(4) && w.seen(5000 - SEQ_WINDOW));
        assert!(!w.seen(4999) && !w.seen(5000 - SEQ_WINDOW + 1));
        // A small slide keeps the numbers still inside the window.
        w.accept(4999 + SEQ_WINDOW);
        assert!(w.seen(5000) && !w.seen(5001) && !w.seen(4998 + SEQ_WINDOW));
    }

    #[test]
    fn window_matches_a_set_under_random_use() {
        let mut w = SeqWindow::new();
        let mut set = std::collections::HashSet::new();
        let mut x: u64 = 12345;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let s = (w.lowest_unseen() as i64 + (x % 1100) as i64 - 40).max(0) as u32;
            let expect = set.contains(&s) || s < w.lowest_unseen();
            assert_eq!(w.seen(s), expect, "seq {s}");
            if !expect {
                w.accept(s);
                set.insert(s);
                let lo = w.lowest_unseen();
                set.retain(|&v| v >= lo);
            }
        }
    }

    #[test]
    fn source_limiter_is_per_address() {
        let t0 = Instant::now();
        let mut l = SourceLimiter::new([7; 16], t0, 20.0, 40.0);
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        assert_eq!((0..100).filter(|_| l.allow(t0, a)).count(), 40);
        assert!(l.allow(t0, b) || l.slots.len() < 2);
        assert!(l.allow(t0 + Duration::from_millis(100), a));
    }
}
