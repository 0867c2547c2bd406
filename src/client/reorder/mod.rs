//! The receiver's side of repaired delivery: events arrive numbered (the
//! member's event numbers, one more for each event the server sends it),
//! possibly out of order, twice, or not at all; [`Reorder`] hands them on in
//! order, each once, and says which numbers to ask for again (a NACK) and
//! when, and how many were lost for good.
//!
//! * An event with the next number is delivered at once; a later one is held
//!   until the numbers before it arrive, at most [`HOLD`] (1 s) after the gap
//!   before it was seen. Then the gap is given up and reported as
//!   [`Delivery::Lost`] with its exact count, and what was held is delivered.
//! * A gap is asked for ([`Reorder::nack_due`]) half the NACK interval after
//!   it is seen, the interval being max(2 × RTT, [`NACK_FLOOR`]), so well
//!   within that interval, then again after 1, 2, 2, 2… intervals while it
//!   is open, at most [`NACK_TRIES`] times. At the 50 ms floor that is eleven
//!   tries within the hold: with 10% loss each way (19% per try) a gap stays
//!   unrepaired about once in 80 million (seven tries left one in 110,000,
//!   which a simulated chaos run hit).
//! * A keepalive carrying the last number sent ([`Reorder::keepalive`]) makes
//!   a lost tail a gap like any other.
//! * The server's answer that numbers are no longer kept
//!   ([`Reorder::not_kept`]) makes them lost at once, reported in their place.
//! * Held events are bounded: at most [`HELD_MAX`] entries and
//!   [`HELD_MAX_BYTES`] bytes; beyond that the oldest gap is given up early.
//!   Gaps are at most one more than held entries. So no server can make the
//!   client hold more than about 400 KiB.
//!
//! Numbers are `u64` and never wrap; a wire format that carries fewer bits
//! widens them with [`widen`] first. [`ShownIds`] (in `shown.rs`) drops
//! messages already shown by their stable id.
//!
//! Time is always an argument (monotonic [`Instant`]); nothing here reads a
//! clock or does I/O.

mod shown;

pub use shown::{MessageId, ShownIds, SHOWN_MAX, SHOWN_TTL};

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

/// The longest an out-of-order event is held (from when the gap before it
/// was seen), and the longest a gap waits for repair before it is lost.
pub const HOLD: Duration = Duration::from_secs(1);

/// The least NACK interval; the interval is max(2 × RTT, this).
pub const NACK_FLOOR: Duration = Duration::from_millis(50);

/// How many times one gap is asked for at most.
pub const NACK_TRIES: u32 = 12;

/// The longest wait between two NACKs of one gap, in NACK intervals.
const NACK_BACKOFF_MAX: u32 = 2;

/// At most this many held entries (events, and lost ranges waiting for an
/// earlier gap); as many as the server keeps for repair.
pub const HELD_MAX: usize = 16384;

/// At most this many bytes of held events.
pub const HELD_MAX_BYTES: usize = 2 * 1024 * 1024;

/// What [`Reorder::pop`] hands on, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// The event with this number, to show.
    Event {
        /// The member's event number.
        number: u64,
        /// The event's bytes, as received.
        event: Vec<u8>,
    },
    /// This many events were lost for good ("(N messages lost)").
    Lost {
        /// How many.
        count: u64,
    },
}

/// Recovers a full number from its low 32 bits: the one nearest to
/// `expected` (the number after the highest seen), as QUIC does with packet
/// numbers (RFC 9000, appendix A.3).
pub fn widen(expected: u64, low: u32) -> u64 {
    const WIN: u64 = 1 << 32;
    const HALF: u64 = WIN / 2;
    let candidate = (expected & !(WIN - 1)) | u64::from(low);
    if candidate.saturating_add(HALF) <= expected && candidate < u64::MAX - WIN {
        candidate + WIN
    } else if candidate > expected.saturating_add(HALF) && candidate >= WIN {
        candidate - WIN
    } else {
        candidate
    }
}

#[derive(Debug, Clone, Copy)]
struct Gap {
    lo: u64,
    hi: u64,
    seen: Instant,
    tries: u32,
    nack_at: Instant,
}

#[derive(Debug)]
enum Held {
    Event(Vec<u8>),
    /// Lost `key..=hi`, waiting for an earlier gap.
    Lost {
        hi: u64,
    },
}

/// In-order, exactly-once delivery of one member's numbered events.
#[derive(Debug)]
pub struct Reorder {
    /// The next number to deliver: everything below was delivered or lost.
    next: u64,
    /// One more than the highest number known to exist.
    end: u64,
    held: BTreeMap<u64, Held>,
    held_bytes: usize,
    /// The missing numbers in `next..end`, sorted, disjoint.
    gaps: Vec<Gap>,
    ready: VecDeque<Delivery>,
    rtt: Duration,
    now: Instant,
    duplicates: u64,
}

impl Reorder {
    /// Expects `first` as the first number (1 for a new session).
    pub fn new(now: Instant, first: u64) -> Self {
        Reorder {
            next: first,
            end: first,
            held: BTreeMap::new(),
            held_bytes: 0,
            gaps: Vec::new(),
            ready: VecDeque::new(),
            rtt: Duration::ZERO,
            now,
            duplicates: 0,
        }
    }

    /// The round-trip time measured lately (it sets the NACK interval).
    pub fn set_rtt(&mut self, rtt: Duration) {
        self.rtt = rtt;
    }

    /// max(2 × RTT, [`NACK_FLOOR`]).
    pub fn nack_interval(&self) -> Duration {
        (self.rtt * 2).max(NACK_FLOOR)
    }

    /// How many events arrived that were already delivered, held or lost.
    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    /// The highest number below which everything was delivered or counted
    /// lost (0 if none): the client's KEEPALIVE `last_event`.
    pub fn last_in_order(&self) -> u64 {
        self.next.saturating_sub(1)
    }

    /// The number after the highest one known to exist (what [`widen`] expects).
    pub fn expected(&self) -> u64 {
        self.end
    }

    fn tick(&mut self, now: Instant) -> Instant {
        self.now = self.now.max(now);
        self.now
    }

    /// Numbers `end..upto` are now known to exist: a new gap (if any).
    fn extend(&mut self, now: Instant, upto: u64) {
        if upto > self.end {
            let first_nack = now + self.nack_interval() / 2;
            self.gaps.push(Gap {
                lo: self.end,
                hi: upto - 1,
                seen: now,
                tries: 0,
                nack_at: first_nack,
            });
            self.end = upto;
        }
    }

    /// Takes `n` out of the gap that holds it; false if no gap does.
    fn fill(&mut self, n: u64) -> bool {
        let i = self.gaps.partition_point(|g| g.hi < n);
        let Some(g) = self.gaps.get_mut(i).filter(|g| g.lo <= n) else {
            return false;
        };
        if g.lo == g.hi {
            self.gaps.remove(i);
        } else if n == g.lo {
            g.lo += 1;
        } else if n == g.hi {
            g.hi -= 1;
        } else {
            let upper = Gap { lo: n + 1, ..*g };
            g.hi = n - 1;
            self.gaps.insert(i + 1, upper);
        }
        true
    }

    /// An event arrived with number `number`.
    pub fn receive(&mut self, now: Instant, number: u64, event: Vec<u8>) {
        let now = self.tick(now);
        if number < self.next || number == u64::MAX {
            self.duplicates += 1;
            return;
        }
        if number >= self.end {
            self.extend(now, number);
            self.end = number + 1;
        } else if !self.fill(number) {
            self.duplicates += 1; // held already, or given up
            return;
        }
        if number == self.next {
            self.ready.push_back(Delivery::Event { number, event });
            self.next += 1;
            self.drain();
        } else {
            self.held_bytes += event.len();
            self.held.insert(number, Held::Event(event));
            self.bound();
        }
    }

    /// A keepalive says the last number sent is `last`.
    pub fn keepalive(&mut self, now: Instant, last: u64) {
        let now = self.tick(now);
        self.extend(now, last.saturating_add(1));
    }

    /// The server no longer keeps these ranges (inclusive): they are lost.
    pub fn not_kept(&mut self, ranges: &[(u64, u64)]) {
        for &(lo, hi) in ranges {
            let mut kept = Vec::with_capacity(self.gaps.len() + 1);
            for g in self.gaps.drain(..) {
                let (a, b) = (g.lo.max(lo), g.hi.min(hi));
                if a > b {
                    kept.push(g);
                    continue;
                }
                if g.lo < a {
                    kept.push(Gap { hi: a - 1, ..g });
                }
                self.held.insert(a, Held::Lost { hi: b });
                if b < g.hi {
                    kept.push(Gap { lo: b + 1, ..g });
                }
            }
            self.gaps = kept;
        }
        self.drain();
        self.bound();
    }

    /// Gives up the lowest gap: its numbers are lost.
    fn give_up_first(&mut self) {
        if self.gaps.is_empty() {
            return;
        }
        let g = self.gaps.remove(0);
        self.held.insert(g.lo, Held::Lost { hi: g.hi });
        self.drain();
    }

    /// Delivers what the next number unblocks.
    fn drain(&mut self) {
        while let Some(entry) = self.held.first_entry() {
            if *entry.key() != self.next {
                break;
            }
            match entry.remove() {
                Held::Event(event) => {
                    self.held_bytes -= event.len();
                    let number = self.next;
                    self.ready.push_back(Delivery::Event { number, event });
                    self.next += 1;
                }
                Held::Lost { hi } => {
                    let count = hi - self.next + 1;
                    match self.ready.back_mut() {
                        Some(Delivery::Lost { count: c }) => *c += count,
                        _ => self.ready.push_back(Delivery::Lost { count }),
                    }
                    self.next = hi + 1;
                }
            }
        }
    }

    /// Keeps what is held within [`HELD_MAX`] and [`HELD_MAX_BYTES`].
    fn bound(&mut self) {
        while (self.held.len() > HELD_MAX || self.held_bytes > HELD_MAX_BYTES)
            && !self.gaps.is_empty()
        {
            self.give_up_first();
        }
    }

    /// Gives up the gaps seen [`HOLD`] ago or more.
    fn expire(&mut self, now: Instant) {
        while self.gaps.first().is_some_and(|g| g.seen + HOLD <= now) {
            self.give_up_first();
        }
    }

    /// The next event or loss to show, in order. Feed every datagram read in
    /// a turn first: after a long pause (Ctrl-Z) gaps expire at the first
    /// `pop`, and a repair still waiting in the socket would come too late.
    pub fn pop(&mut self, now: Instant) -> Option<Delivery> {
        let now = self.tick(now);
        self.expire(now);
        self.ready.pop_front()
    }

    /// The ranges to ask for now (at most `max_ranges`, lowest first), if
    /// any; each is then scheduled again after a doubled interval.
    pub fn nack_due(&mut self, now: Instant, max_ranges: usize) -> Option<Vec<(u64, u64)>> {
        let now = self.tick(now);
        self.expire(now);
        let interval = self.nack_interval();
        let mut out = Vec::new();
        for g in self.gaps.iter_mut() {
            if out.len() >= max_ranges {
                break;
            }
            if g.tries < NACK_TRIES && g.nack_at <= now {
                out.push((g.lo, g.hi));
                g.nack_at = now + interval * (1 << g.tries.min(30)).min(NACK_BACKOFF_MAX);
                g.tries += 1;
            }
        }
        (!out.is_empty()).then_some(out)
    }

    /// When [`Reorder::pop`] or [`Reorder::nack_due`] next has something to
    /// do without a new datagram, if ever.
    pub fn next_deadline(&self) -> Option<Instant> {
        if !self.ready.is_empty() {
            return Some(self.now);
        }
        let expiry = self.gaps.first().map(|g| g.seen + HOLD);
        let nack = self
            .gaps
            .iter()
            .filter(|g| g.tries < NACK_TRIES)
            .map(|g| g.nack_at)
            .min();
        match (expiry, nack) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

#[cfg(test)]
mod tests;
