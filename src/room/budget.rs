//! A member's answer budget: everything the server sends a member because the
//! member asked (WHO pages, history pages, repair resends, catch-up) is paid
//! from one token bucket in bytes, so a small request can never draw an
//! unbounded stream.
//!
//! * [`Budget`]: the bucket, [`ANSWER_RATE`] bytes a second with a burst of
//!   [`ANSWER_BURST`] bytes. Costs are the bytes of the datagrams on the wire.
//!   It is kept as a theoretical arrival time (GCRA, the "virtual scheduling"
//!   form of a token bucket), in integer nanoseconds: a cost that becomes
//!   affordable at [`Budget::ready_at`] is affordable at exactly that instant,
//!   so a timer set to it never fires early.
//! * [`AnswerQueue`]: answers that do not fit the budget now wait here, in
//!   order, at most [`QUEUE_MAX_ITEMS`] of them worth at most
//!   [`QUEUE_MAX_COST`] bytes. An answer that does not fit the queue either is
//!   handed back ([`Offer::Busy`]) so that the caller tells the member to ask
//!   again later: nothing is dropped silently. Queue small descriptions of
//!   what to send (a page index, a range), not encoded datagrams, so a full
//!   queue costs a few hundred bytes per member.
//!
//! **Why these numbers** (PROTOCOL.md's `ANSWER_RATE` and `ANSWER_BURST`). A
//! WHO listing of 10,000 names of the longest kind (96 bytes, 97 with the
//! length): 11 fit in one WHO_PAGE, so 910 datagrams of 1,200 bytes, 1,092,000
//! bytes. At 64 KiB/s after a 256 KiB burst they are sent in 12.7 s, within
//! 20 s (tested below, one page asked for after the other as the client
//! does). Typical 8-byte names make it 90 KB: within the burst. The rate is
//! 1,500 times below the 100-213 MB/s one member could draw from version 1,
//! and 13 times the resends of a member that loses 5% of 1,000 messages a
//! second of 100 bytes.
//!
//! Time is always an argument (a monotonic [`Instant`]); nothing here reads a
//! clock. An earlier `now` than one seen before is treated as that one.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Bytes a second a member's answers may take on average.
pub const ANSWER_RATE: u64 = 64 * 1024;

/// Bytes a member's answers may take at once after a quiet spell.
pub const ANSWER_BURST: u64 = 256 * 1024;

/// At most this many answers wait for a member's budget.
pub const QUEUE_MAX_ITEMS: usize = 32;

/// At most this many bytes of answers wait for a member's budget (one second
/// of [`ANSWER_RATE`]: nothing waits much longer than a second).
pub const QUEUE_MAX_COST: u64 = ANSWER_RATE;

/// A token bucket in bytes: `rate` bytes a second, at most `burst` saved up.
#[derive(Debug, Clone)]
pub struct Budget {
    /// When the bucket would be full again if nothing more were spent
    /// (GCRA's theoretical arrival time). Never earlier than needed: a value
    /// in the past means "full".
    full_at: Instant,
    /// The latest `now` seen (so time never goes back).
    now: Instant,
    /// Nanoseconds of refill per byte, times 2^16 (fixed point).
    ns_per_byte_x16: u128,
    /// How long the bucket takes to refill from empty: burst / rate.
    refill: Duration,
}

impl Budget {
    /// A full bucket of [`ANSWER_BURST`] bytes refilling at [`ANSWER_RATE`].
    pub fn new(now: Instant) -> Self {
        Self::with_rate(now, ANSWER_RATE, ANSWER_BURST)
    }

    /// The budget in `slot`, made (full, as [`Budget::new`]) at its first
    /// use: a bucket nobody spent from is full whenever it was made, so a
    /// member that asks for nothing keeps a null pointer, not 64 bytes.
    pub fn get_or_new(slot: &mut Option<Box<Budget>>, now: Instant) -> &mut Budget {
        slot.get_or_insert_with(|| Box::new(Budget::new(now)))
    }

    /// A full bucket of `burst` bytes refilling at `rate` bytes a second
    /// (both at least 1).
    pub fn with_rate(now: Instant, rate: u64, burst: u64) -> Self {
        let rate = rate.max(1) as u128;
        let ns_per_byte_x16 = (1_000_000_000u128 << 16) / rate;
        let mut b = Budget {
            full_at: now,
            now,
            ns_per_byte_x16,
            refill: Duration::ZERO,
        };
        b.refill = b.cost_time(burst.max(1));
        b
    }

    /// How long `cost` bytes take to refill (costs beyond 1 TiB count as 1 TiB,
    /// so instants stay representable).
    fn cost_time(&self, cost: u64) -> Duration {
        let ns = (cost.min(1 << 40) as u128 * self.ns_per_byte_x16) >> 16;
        Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
    }

    /// The bucket's time after spending `cost` at `now`, and the earliest
    /// instant that spending is allowed. A cost larger than the burst is
    /// allowed when the bucket is full (it then runs into debt), so no answer
    /// is ever too large to be sent.
    fn plan(&self, now: Instant, cost: u64) -> (Instant, Instant) {
        let took = self.cost_time(cost);
        let after = self.full_at.max(now) + took;
        // Allowed at t when max(full_at, t) + took - t <= slack: at once when
        // full, else from full_at + took - slack on.
        let slack = self.refill.max(took);
        let ready = (self.full_at + took).checked_sub(slack).unwrap_or(self.now);
        (after, ready.max(self.now))
    }

    /// Spends `cost` bytes if the budget allows it at `now`.
    pub fn try_spend(&mut self, now: Instant, cost: u64) -> bool {
        let now = now.max(self.now);
        self.now = now;
        let (after, ready) = self.plan(now, cost);
        if ready <= now {
            self.full_at = after;
            true
        } else {
            false
        }
    }

    /// The earliest instant at which `cost` bytes can be spent (possibly
    /// already past).
    pub fn ready_at(&self, cost: u64) -> Instant {
        self.plan(self.now, cost).1
    }
}

/// What [`AnswerQueue::offer`] decided.
#[derive(Debug, PartialEq, Eq)]
pub enum Offer<T> {
    /// Send it now: the budget was charged.
    Now(T),
    /// It waits in the queue; [`AnswerQueue::pop_ready`] hands it back when
    /// the budget allows.
    Queued,
    /// The queue is full: tell the member to ask again later.
    Busy(T),
}

/// Answers waiting for a member's [`Budget`], first come first served.
#[derive(Debug)]
pub struct AnswerQueue<T> {
    waiting: VecDeque<(u64, T)>,
    cost: u64,
}

impl<T> Default for AnswerQueue<T> {
    fn default() -> Self {
        AnswerQueue {
            waiting: VecDeque::new(),
            cost: 0,
        }
    }
}

impl<T> AnswerQueue<T> {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// An answer of `cost` bytes: sent now if nothing waits and the budget
    /// allows, else queued if the queue has room, else handed back.
    pub fn offer(&mut self, budget: &mut Budget, now: Instant, cost: u64, item: T) -> Offer<T> {
        if self.waiting.is_empty() && budget.try_spend(now, cost) {
            return Offer::Now(item);
        }
        let fits_cost = self.cost.saturating_add(cost) <= QUEUE_MAX_COST || self.waiting.is_empty();
        if self.waiting.len() >= QUEUE_MAX_ITEMS || !fits_cost {
            return Offer::Busy(item);
        }
        self.cost += cost;
        self.waiting.push_back((cost, item));
        Offer::Queued
    }

    /// The oldest waiting answer, if the budget allows it at `now` (the
    /// budget is charged). Call until it returns `None`.
    pub fn pop_ready(&mut self, budget: &mut Budget, now: Instant) -> Option<T> {
        let &(cost, _) = self.waiting.front()?;
        if !budget.try_spend(now, cost) {
            return None;
        }
        self.cost -= cost;
        self.waiting.pop_front().map(|(_, item)| item)
    }

    /// When the oldest waiting answer can go, if one waits.
    pub fn next_ready(&self, budget: &Budget) -> Option<Instant> {
        self.waiting.front().map(|&(cost, _)| budget.ready_at(cost))
    }

    /// How many answers wait.
    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    /// Does nothing wait?
    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn burst_then_rate() {
        let t0 = Instant::now();
        let mut b = Budget::with_rate(t0, 1000, 500);
        assert!(b.try_spend(t0, 300));
        assert!(b.try_spend(t0, 200));
        assert!(!b.try_spend(t0, 1));
        // 1000 bytes/s: 100 bytes after 100 ms, exactly.
        assert_eq!(b.ready_at(100), t0 + 100 * MS);
        assert!(!b.try_spend(t0 + 99 * MS, 100));
        assert!(b.try_spend(t0 + 100 * MS, 100));
        // A long quiet spell refills only up to the burst.
        let t1 = t0 + 3600 * 1000 * MS;
        assert!(b.try_spend(t1, 500));
        assert!(!b.try_spend(t1, 1));
    }

    #[test]
    fn time_going_back_adds_nothing() {
        let t0 = Instant::now() + 1000 * MS;
        let mut b = Budget::with_rate(t0, 1000, 100);
        assert!(b.try_spend(t0, 100));
        let early = t0 - 500 * MS;
        assert!(!b.try_spend(early, 1));
        assert!(b.ready_at(1) > t0);
    }

    #[test]
    fn an_answer_larger_than_the_burst_goes_when_full_and_leaves_debt() {
        let t0 = Instant::now();
        let mut b = Budget::with_rate(t0, 1000, 100);
        assert!(b.try_spend(t0, 100));
        assert_eq!(b.ready_at(5000), t0 + 100 * MS);
        assert!(b.try_spend(t0 + 100 * MS, 5000));
        // 5000 bytes of debt: the next byte waits for them to be repaid.
        assert!(!b.try_spend(t0 + 5000 * MS, 1));
        assert!(b.try_spend(t0 + 5001 * MS, 1));
    }

    #[test]
    fn queue_keeps_order_and_waits_for_the_budget() {
        let t0 = Instant::now();
        let mut b = Budget::with_rate(t0, 1000, 100);
        let mut q = AnswerQueue::new();
        assert_eq!(q.offer(&mut b, t0, 100, 'a'), Offer::Now('a'));
        assert_eq!(q.offer(&mut b, t0, 50, 'b'), Offer::Queued);
        // Small enough for the budget later, but 'b' waits first: no overtaking.
        assert_eq!(q.offer(&mut b, t0 + 60 * MS, 10, 'c'), Offer::Queued);
        assert_eq!(q.pop_ready(&mut b, t0 + 49 * MS), None);
        assert_eq!(q.next_ready(&b), Some(t0 + 50 * MS));
        assert_eq!(q.pop_ready(&mut b, t0 + 60 * MS), Some('b'));
        assert_eq!(q.pop_ready(&mut b, t0 + 60 * MS), Some('c'));
        assert!(q.is_empty() && q.next_ready(&b).is_none());
    }

    #[test]
    fn a_full_queue_hands_the_answer_back() {
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        assert!(b.try_spend(t0, ANSWER_BURST));
        let mut q = AnswerQueue::new();
        for i in 0..QUEUE_MAX_ITEMS {
            assert_eq!(q.offer(&mut b, t0, 10, i), Offer::Queued);
        }
        assert_eq!(q.offer(&mut b, t0, 10, 99), Offer::Busy(99));
        assert_eq!(q.len(), QUEUE_MAX_ITEMS);
        // By cost too: one answer as large as the whole queue allows fits
        // alone, a second does not.
        let mut q = AnswerQueue::new();
        assert_eq!(q.offer(&mut b, t0, QUEUE_MAX_COST, 1), Offer::Queued);
        assert_eq!(q.offer(&mut b, t0, 1, 2), Offer::Busy(2));
    }

    /// The listing of 10,000 of the longest names, one page asked for after
    /// the previous one arrived (as the client does), is sent within 20 s of
    /// simulated time.
    #[test]
    fn ten_thousand_long_names_are_listed_within_20_s() {
        const DATAGRAM: u64 = 1200;
        const OVERHEAD: u64 = 56 + 9; // sealed datagram, WHO_PAGE's type, start, total
        const NAME: u64 = 97; // 96 bytes and the length
        let names_per_page = (DATAGRAM - OVERHEAD) / NAME;
        let pages = 10_000u64.div_ceil(names_per_page);
        let t0 = Instant::now();
        let mut b = Budget::new(t0);
        let mut q = AnswerQueue::new();
        let mut now = t0;
        for page in 0..pages {
            match q.offer(&mut b, now, DATAGRAM, page) {
                Offer::Now(p) => assert_eq!(p, page),
                Offer::Queued => {
                    now = q.next_ready(&b).unwrap();
                    assert_eq!(q.pop_ready(&mut b, now), Some(page));
                }
                Offer::Busy(_) => panic!("one page at a time never fills the queue"),
            }
        }
        let took = now - t0;
        assert!(
            took <= Duration::from_secs(20),
            "{pages} pages took {took:?}"
        );
        // And the budget really limits: at least (bytes - burst) / rate.
        // (Simulated time: `now` only moves where the budget says it may.)
        let floor =
            Duration::from_secs_f64((pages * DATAGRAM - ANSWER_BURST) as f64 / ANSWER_RATE as f64);
        assert!(
            took + Duration::from_millis(1) >= floor,
            "{took:?} < {floor:?}"
        );
    }
}
