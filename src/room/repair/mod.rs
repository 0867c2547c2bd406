//! What the server keeps for repair: the last events sent to each member, by
//! the member's event number, so that a NACK (ranges of numbers the member
//! missed) is answered with the events themselves, paced by the member's
//! answer [`Budget`], and the numbers no longer kept are reported as lost so
//! that the client can print "(N messages lost)" with the exact N.
//!
//! **How.** Every event is kept once, in a room-wide log ([`RepairStore::add`]
//! gives its [`EventId`]); each member keeps only *runs*: "my numbers `n..n+k`
//! are log entries `i..i+k`" ([`RepairStore::record`]). A member that gets
//! every room event has one run however long the stream, so recording costs
//! a few nanoseconds per member and no memory per event; runs break only
//! where a member's stream skips (its own lines, private messages, a joiner).
//!
//! **The bounds** (defaults in [`Limits::DEFAULT`]):
//! * per member: its last [`KEEP_EVENTS`] = 16,384 numbers (K), in at most
//!   [`MEMBER_RUNS`] = 64 runs (10 KiB as charged below), plus at most
//!   [`MEMBER_FIXED_BYTES`] = 1 KiB of fixed state (ranges waiting to be
//!   resent or reported lost);
//! * in total: [`LOG_BYTES`] = 12 MiB of event bodies, each charged its
//!   length and [`LOG_ENTRY_OVERHEAD`] = 64 bytes (its 16-byte slot in the
//!   log with the log's slack, and the body's allocation header), and
//!   [`RUNS_BYTES`] = 4 MiB of runs, each charged [`RUN_COST`] = 160 bytes
//!   (its 24 bytes with up to four times that in its ring, which shrinks when
//!   a quarter full, and up to four 16-byte places in a room-wide order with
//!   that order's slack). Beyond either, the oldest goes first, whoever it
//!   was for. So at most 16 MiB, and 1 KiB per member.
//!
//! Why these numbers: a client holds out-of-order events for 1 s, and in a
//! flood a member's stream runs at up to about 11,000 events a second (chat-load's
//! packed flood at N = 100), with its events waiting up to a second in its socket
//! before it can see a gap: K = 16,384 covers that (K = 1,024 answered a fifth of
//! such NACKs with LOST). K costs nothing per event: a member that gets every
//! event has one run whatever K is; what is kept is bounded by the room-wide
//! log. 12 MiB is about 75,000 typical events (a line with its name is about
//! 100 bytes). 64 runs cover a member that speaks or gets a private message
//! every 16 events. 16 MiB is about half of the server's 30 MiB target at
//! 10,000 members.
//!
//! **Whatever a member does** (never acknowledging, asking for everything
//! again and again, overlapping or huge ranges) nothing it sends adds to what
//! is kept: a NACK only adds ranges to resend, merged and capped, and lost
//! ranges up to their cap; resends come only as fast as its budget allows.
//!
//! Event numbers are `u64` and go up by one for each event sent to a member
//! (they never wrap: 2^64 events are not sent in any server's lifetime).

use crate::room::budget::Budget;
use ring::{add_range, floor, Ring, Run};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

mod ring;

/// An encoded event, shared by every member it went to. `Rc`: the room lives
/// on one thread (`Arc` would make the room `Send`: change it here).
pub type EventBody = Rc<[u8]>;

/// Numbers kept per member (K).
pub const KEEP_EVENTS: usize = 16384;

/// Runs kept per member.
pub const MEMBER_RUNS: usize = 64;

/// Bytes of event bodies kept in all, each charged [`LOG_ENTRY_OVERHEAD`] more.
pub const LOG_BYTES: usize = 12 * 1024 * 1024;

/// Bytes of runs kept in all, each charged [`RUN_COST`].
pub const RUNS_BYTES: usize = 4 * 1024 * 1024;

/// Bytes charged for each event body besides its own.
pub const LOG_ENTRY_OVERHEAD: usize = 64;

/// Bytes charged for each run.
pub const RUN_COST: usize = 160;

/// Bytes a member's place may take besides its charged runs.
pub const MEMBER_FIXED_BYTES: usize = 1024;

/// At most this many ranges of a NACK are looked at (PROTOCOL.md's NACK
/// holds 1 to 32).
pub const MAX_NACK_RANGES: usize = 32;

/// At most this many ranges wait to be resent to one member, and at most
/// this many to be reported lost; more are not remembered (the client asks
/// again, and in the end counts them lost itself).
pub const MAX_WAITING_RANGES: usize = 16;

/// Bytes charged to the budget for each range of a [`Repair::Lost`] answer,
/// besides the datagram's overhead (two u64 numbers).
pub const LOST_RANGE_COST: usize = 16;

/// The bounds of a [`RepairStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Numbers kept per member.
    pub keep: usize,
    /// Runs kept per member.
    pub member_runs: usize,
    /// Bytes of event bodies in all.
    pub log_bytes: usize,
    /// Bytes of runs in all.
    pub runs_bytes: usize,
}

impl Limits {
    /// [`KEEP_EVENTS`], [`MEMBER_RUNS`], [`LOG_BYTES`], [`RUNS_BYTES`].
    pub const DEFAULT: Limits = Limits {
        keep: KEEP_EVENTS,
        member_runs: MEMBER_RUNS,
        log_bytes: LOG_BYTES,
        runs_bytes: RUNS_BYTES,
    };
}

impl Default for Limits {
    fn default() -> Self {
        Limits::DEFAULT
    }
}

/// A member's place in the [`RepairStore`], from [`RepairStore::join`]. A slot
/// of a member that left names nobody: calls with it do nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slot {
    index: u32,
    gen: u32,
}

/// An event in the room-wide log, from [`RepairStore::add`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventId(u64);

/// One answer to send a member, from [`RepairStore::poll_repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Resend these events: numbers `first`, `first + 1`, … (consecutive).
    Events {
        /// The number of the first event.
        first: u64,
        /// The events, in number order.
        events: Vec<EventBody>,
    },
    /// These ranges (inclusive) were sent but are no longer kept: the member
    /// lost `hi - lo + 1` events for each.
    Lost(Vec<(u64, u64)>),
}

/// How the caller packs resent events: how many bytes of events fit in one
/// datagram, and what a datagram costs besides its events (header, seal).
#[derive(Debug, Clone, Copy)]
pub struct Packing {
    /// Bytes of events one datagram can carry.
    pub capacity: usize,
    /// Bytes each datagram costs besides its events.
    pub overhead: usize,
}

/// A run's place in the room-wide order of creation.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    index: u32,
    epoch: u32,
    first: u64,
}

/// The events kept for repair, for every member of the room.
#[derive(Debug, Default)]
pub struct RepairStore {
    limits: Limits,
    log: VecDeque<EventBody>,
    /// The id of `log[0]`.
    log_base: u64,
    log_bytes: usize,
    rings: Vec<Option<Ring>>,
    free: Vec<u32>,
    next_gen: u32,
    /// Every run in order of creation, and stale stamps of runs already gone
    /// (compacted when they outnumber the live ones).
    order: VecDeque<Stamp>,
    runs: usize,
}

impl RepairStore {
    /// An empty store with these bounds.
    pub fn new(limits: Limits) -> Self {
        RepairStore {
            limits,
            ..Default::default()
        }
    }

    fn fresh_gen(&mut self) -> u32 {
        self.next_gen = self.next_gen.wrapping_add(1);
        self.next_gen
    }

    /// Starts keeping events for a new member.
    pub fn join(&mut self) -> Slot {
        let gen = self.fresh_gen();
        let ring = Ring {
            gen,
            epoch: gen,
            ..Ring::default()
        };
        let index = match self.free.pop() {
            Some(i) => {
                self.rings[i as usize] = Some(ring);
                i
            }
            None => {
                self.rings.push(Some(ring));
                (self.rings.len() - 1) as u32
            }
        };
        Slot { index, gen }
    }

    /// Forgets a member that left, and everything kept for it.
    pub fn leave(&mut self, slot: Slot) {
        if let Some(ring) = self.ring_mut(slot) {
            let n = ring.runs.len();
            self.rings[slot.index as usize] = None;
            self.free.push(slot.index);
            self.runs -= n;
            self.compact_if_stale();
        }
    }

    fn ring_mut(&mut self, slot: Slot) -> Option<&mut Ring> {
        match self.rings.get_mut(slot.index as usize) {
            Some(Some(r)) if r.gen == slot.gen => Some(r),
            _ => None,
        }
    }

    fn ring(&self, slot: Slot) -> Option<&Ring> {
        match self.rings.get(slot.index as usize) {
            Some(Some(r)) if r.gen == slot.gen => Some(r),
            _ => None,
        }
    }

    /// Keeps `body` in the room-wide log (once, whoever it goes to); the
    /// oldest bodies go when the log is full.
    pub fn add(&mut self, body: EventBody) -> EventId {
        let id = EventId(self.log_base + self.log.len() as u64);
        self.log_bytes += body.len() + LOG_ENTRY_OVERHEAD;
        self.log.push_back(body);
        while self.log_bytes > self.limits.log_bytes {
            let Some(old) = self.log.pop_front() else {
                break;
            };
            self.log_bytes -= old.len() + LOG_ENTRY_OVERHEAD;
            self.log_base += 1;
        }
        id
    }

    /// Records that log entry `id` was just sent to the member as number
    /// `number`. Numbers should follow each other; if one does not, what was
    /// kept before it is dropped (a request for it is then answered as lost).
    pub fn record(&mut self, slot: Slot, number: u64, id: EventId) {
        // The common case, once per member per event: the run goes on.
        if let Some(ring) = self.ring_mut(slot) {
            if ring.started && number == ring.next {
                if let Some(r) = ring.runs.back_mut() {
                    if r.index + u64::from(r.len) == id.0 && r.len < u32::MAX {
                        r.len += 1;
                        ring.next = number.saturating_add(1);
                        return;
                    }
                }
            }
        }
        self.record_new_run(slot, number, id);
    }

    /// [`RepairStore::record`] when a new run starts.
    fn record_new_run(&mut self, slot: Slot, number: u64, id: EventId) {
        let limits = self.limits;
        let restart = match self.ring(slot) {
            None => return,
            Some(r) => !r.started || number != r.next,
        };
        let fresh = if restart { self.fresh_gen() } else { 0 };
        let log_base = self.log_base;
        let Some(ring) = self.ring_mut(slot) else {
            return;
        };
        let mut removed = 0;
        if restart {
            removed += ring.advance(ring.next.max(number), false);
            removed += ring.runs.len();
            ring.runs.clear();
            // Stamps of the old numbering must not match the new one.
            ring.epoch = fresh;
            ring.origin = if ring.started {
                ring.origin.min(number)
            } else {
                number
            };
            ring.started = true;
            ring.first = number;
        }
        ring.runs.push_back(Run {
            first: number,
            index: id.0,
            len: 1,
        });
        ring.next = number.saturating_add(1);
        // At most so many runs, of the last K numbers, whose bodies are kept.
        let mut to = floor(ring, limits.keep, log_base);
        let max_runs = limits.member_runs.max(1);
        if ring.runs.len() > max_runs {
            to = to.max(ring.runs[ring.runs.len() - max_runs].first);
        }
        removed += ring.advance(to, false);
        let epoch = ring.epoch;
        self.runs = self.runs + 1 - removed;
        self.order.push_back(Stamp {
            index: slot.index,
            epoch,
            first: number,
        });
        while self.runs * RUN_COST > limits.runs_bytes {
            self.evict_oldest_run();
        }
        self.compact_if_stale();
    }

    /// Drops the oldest run kept for anyone.
    fn evict_oldest_run(&mut self) {
        while let Some(s) = self.order.pop_front() {
            if let Some(Some(ring)) = self.rings.get_mut(s.index as usize) {
                let front = ring.runs.front().filter(|r| r.first == s.first);
                if let Some(end) = front.filter(|_| ring.epoch == s.epoch).map(Run::end) {
                    self.runs -= ring.advance(end, false);
                    return;
                }
            }
        }
    }

    /// Keeps the room-wide order within twice the runs (plus slack).
    fn compact_if_stale(&mut self) {
        if self.order.len() <= 2 * self.runs + 64 {
            return;
        }
        let rings = &self.rings;
        self.order.retain(|s| match rings.get(s.index as usize) {
            Some(Some(r)) => {
                r.epoch == s.epoch && r.runs.binary_search_by_key(&s.first, |r| r.first).is_ok()
            }
            _ => false,
        });
        self.order.shrink_to(self.order.len() * 2);
    }

    /// The member has every event up to `number` (its KEEPALIVE's
    /// `last_event`): they need not be kept for it any more.
    pub fn forget_through(&mut self, slot: Slot, number: u64) {
        let Some(ring) = self.ring_mut(slot) else {
            return;
        };
        let to = number.saturating_add(1).min(ring.next);
        self.runs -= ring.advance(to, true);
        self.compact_if_stale();
    }

    /// The member asked again for these ranges of numbers (inclusive, in any
    /// order, overlapping or not). Kept events wait to be resent; the numbers
    /// sent but no longer kept wait to be reported lost; numbers never sent
    /// are ignored. Answers come from [`RepairStore::poll_repair`].
    pub fn nack(&mut self, slot: Slot, ranges: &[(u64, u64)]) {
        self.settle(slot);
        let Some(ring) = self.ring_mut(slot) else {
            return;
        };
        if !ring.started {
            return;
        }
        for &(lo, hi) in ranges.iter().take(MAX_NACK_RANGES) {
            let (lo, hi) = (lo.max(ring.origin), hi.min(ring.next - 1));
            if lo > hi {
                continue;
            }
            if lo < ring.first {
                add_range(&mut ring.lost, lo, hi.min(ring.first - 1));
            }
            if hi >= ring.first {
                add_range(&mut ring.pending, lo.max(ring.first), hi);
            }
        }
    }

    /// Drops what is older than the last K numbers or whose body is gone
    /// (lazily: recording only extends a run); what waited to be resent there
    /// is then lost.
    fn settle(&mut self, slot: Slot) {
        let (keep, log_base) = (self.limits.keep, self.log_base);
        if let Some(ring) = self.ring_mut(slot) {
            let gone = ring.advance(floor(ring, keep, log_base), false);
            self.runs -= gone;
        }
    }

    /// The next answer to a NACK for this member, if there is one and its
    /// budget allows it at `now` (the budget is charged): first the lost
    /// ranges, then the lowest run of events asked for, as many as fit in one
    /// datagram. Call until `None`, then again at [`RepairStore::repair_ready_at`].
    pub fn poll_repair(
        &mut self,
        slot: Slot,
        now: Instant,
        budget: &mut Budget,
        packing: Packing,
    ) -> Option<Repair> {
        self.settle(slot);
        let (cost, batch) = self.next_batch(slot, packing)?;
        if !budget.try_spend(now, cost as u64) {
            return None;
        }
        let log_base = self.log_base;
        let ring = match self.rings.get_mut(slot.index as usize) {
            Some(Some(r)) if r.gen == slot.gen => r,
            _ => return None,
        };
        let Some((first, count)) = batch else {
            return Some(Repair::Lost(std::mem::take(&mut ring.lost)));
        };
        let log = &self.log;
        let events = (first..first + count as u64)
            .filter_map(|n| ring.index_of(n)?.checked_sub(log_base))
            .filter_map(|i| log.get(i as usize).cloned())
            .collect();
        let end = first + count as u64;
        if end > ring.pending[0].1 {
            ring.pending.remove(0);
        } else {
            ring.pending[0].0 = end;
        }
        Some(Repair::Events { first, events })
    }

    /// When the member's next repair answer can go, if one waits.
    pub fn repair_ready_at(
        &mut self,
        slot: Slot,
        budget: &Budget,
        packing: Packing,
    ) -> Option<Instant> {
        self.settle(slot);
        let (cost, _) = self.next_batch(slot, packing)?;
        Some(budget.ready_at(cost as u64))
    }

    /// The next answer: its cost, and the first number and count of its
    /// events (`None`: the lost ranges). Call after `settle`.
    fn next_batch(&self, slot: Slot, packing: Packing) -> Option<(usize, Option<(u64, usize)>)> {
        let ring = self.ring(slot)?;
        if !ring.lost.is_empty() {
            return Some((packing.overhead + LOST_RANGE_COST * ring.lost.len(), None));
        }
        let &(lo, hi) = ring.pending.first()?;
        let (mut bytes, mut count) = (0, 0);
        for n in lo..=hi {
            let body = ring.index_of(n).and_then(|i| self.body(i));
            let Some(len) = body.map(|b| b.len()) else {
                break;
            };
            if count > 0 && bytes + len > packing.capacity {
                break;
            }
            bytes += len;
            count += 1;
        }
        (count > 0).then_some((packing.overhead + bytes, Some((lo, count))))
    }

    /// The body of log entry `index`, if still kept.
    fn body(&self, index: u64) -> Option<&EventBody> {
        self.log
            .get(usize::try_from(index.checked_sub(self.log_base)?).ok()?)
    }

    /// The numbers kept for a member, `(first, last)` inclusive, if any.
    pub fn kept(&self, slot: Slot) -> Option<(u64, u64)> {
        let ring = self.ring(slot)?;
        let from = floor(ring, self.limits.keep, self.log_base);
        (from < ring.next).then(|| (from, ring.next - 1))
    }

    /// Bytes charged for everything kept: bodies and runs.
    pub fn total_bytes(&self) -> usize {
        self.log_bytes + self.runs * RUN_COST
    }
}

#[cfg(test)]
mod sim_tests;
#[cfg(test)]
mod tests;
