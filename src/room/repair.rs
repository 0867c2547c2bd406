//! What the server keeps for repair: the last events sent to each member, by
//! the member's event number, so that a NACK (a list of ranges of numbers the
//! member missed) is answered with the events themselves, paced by the
//! member's answer [`Budget`], and the numbers no longer kept are reported as
//! lost so that the client can print "(N messages lost)" with the exact N.
//!
//! **What is kept, and the bounds** (defaults in [`Limits::DEFAULT`]):
//! * per member, the last [`KEEP_EVENTS`] = 1,024 events and at most
//!   [`MEMBER_BYTES`] = 384 KiB of them;
//! * across all members at most [`TOTAL_BYTES`] = 16 MiB; beyond it the oldest
//!   event kept for anyone goes first (a room-wide first-in first-out order).
//!
//! Each kept event is charged its length plus [`ENTRY_OVERHEAD`] = 192 bytes:
//! its 24-byte slot in the member's ring with up to four times that in
//! unused capacity (a ring shrinks when a quarter full), up to four 16-byte
//! places in the room-wide order with its slack (compacted when half stale),
//! and the allocation header of its body. Bodies are shared ([`EventBody`]:
//! the room encodes an event once and keeps it for every member it went to),
//! so the memory used is at most the charged total, at most [`TOTAL_BYTES`],
//! and beyond it at most [`MEMBER_FIXED_BYTES`] = 640 bytes per member (its
//! ring's header and smallest capacity, and at most [`MAX_LOST_RANGES`]
//! ranges to report). At 10,000 members: at most 16 MiB + 6.4 MB.
//!
//! Why these numbers: 1,024 events are 1 s of a member's stream at 1,000
//! events a second, as long as a client holds out-of-order events; repair
//! requests come well within that. 384 KiB holds 1,024 events of 192 bytes
//! (a typical line with its name is about 100), or 323 of the longest. 16 MiB
//! is about half of the server's 30 MiB resident-size target at 10,000
//! members; it holds full rings for 42 members, and about 560 typical events
//! each for 100 members, 110 each for 500 (a tenth of a second of a flood).
//!
//! **Whatever a member does** (never acknowledging, asking for everything
//! again and again, overlapping or huge ranges) nothing it sends adds to what
//! is kept: a NACK only marks kept events for resending (one flag each) and
//! adds lost ranges up to the fixed cap; resends come only as fast as its
//! budget allows, one batch of consecutive events per call.
//!
//! Event numbers are `u64` and go up by one for each event sent to a member
//! (they never wrap: 2^64 events are not sent in any server's lifetime).

use crate::room::budget::Budget;
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::Instant;

/// An encoded event, shared by every member it went to. `Rc`: the room lives
/// on one thread, and a non-atomic count costs nothing per member in the
/// fan-out (`Arc` would, and would make the room `Send`: change it here).
pub type EventBody = Rc<[u8]>;

/// Events kept per member (K).
pub const KEEP_EVENTS: usize = 1024;

/// Bytes kept per member, each event charged its length and [`ENTRY_OVERHEAD`].
pub const MEMBER_BYTES: usize = 384 * 1024;

/// Bytes kept across all members.
pub const TOTAL_BYTES: usize = 16 * 1024 * 1024;

/// Bytes charged for each kept event besides its own.
pub const ENTRY_OVERHEAD: usize = 192;

/// Bytes a member's place in the store may take besides its charged events.
pub const MEMBER_FIXED_BYTES: usize = 640;

/// A ring's capacity below which it is not shrunk.
const RING_MIN_CAPACITY: usize = 8;

/// At most this many ranges of a NACK are looked at (PROTOCOL.md's NACK
/// holds 1 to 32).
pub const MAX_NACK_RANGES: usize = 32;

/// At most this many "no longer kept" ranges wait to be reported to one
/// member; more are not remembered (the client asks again and then hears).
pub const MAX_LOST_RANGES: usize = 16;

/// Bytes charged to the budget for each range of a [`Repair::Lost`] answer,
/// besides the datagram's overhead (two u64 numbers).
pub const LOST_RANGE_COST: usize = 16;

/// The bounds of a [`RepairStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Events kept per member.
    pub keep: usize,
    /// Bytes kept per member.
    pub member_bytes: usize,
    /// Bytes kept across all members.
    pub total_bytes: usize,
}

impl Limits {
    /// [`KEEP_EVENTS`], [`MEMBER_BYTES`], [`TOTAL_BYTES`].
    pub const DEFAULT: Limits = Limits {
        keep: KEEP_EVENTS,
        member_bytes: MEMBER_BYTES,
        total_bytes: TOTAL_BYTES,
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

/// One answer to send a member, from [`RepairStore::poll_repair`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Repair {
    /// Resend these events: numbers `first`, `first + 1`, … (consecutive).
    Events { first: u64, events: Vec<EventBody> },
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

#[derive(Debug)]
struct Entry {
    event: EventBody,
    /// The member asked for it again and it has not been resent since.
    pending: bool,
}

#[derive(Debug, Default)]
struct Ring {
    /// Which member holds the slot (see [`Slot`]).
    gen: u32,
    /// Which numbering the kept events belong to (changes when a number does
    /// not follow the last one), from the same counter as `gen`.
    epoch: u32,
    /// Has anything been recorded?
    started: bool,
    /// The lowest number recorded (nothing below it was sent).
    origin: u64,
    /// The number of `entries[0]`; `first + entries.len()` is the next one.
    first: u64,
    entries: VecDeque<Entry>,
    bytes: usize,
    pending: usize,
    lost: Vec<(u64, u64)>,
}

impl Ring {
    fn next(&self) -> u64 {
        self.first + self.entries.len() as u64
    }

    /// Removes the oldest entry; returns its charge. A pending one becomes a
    /// lost range to report unless the member `has` it.
    fn evict_front(&mut self, has: bool) -> usize {
        let Some(e) = self.entries.pop_front() else {
            return 0;
        };
        let n = self.first;
        self.first += 1;
        let cost = e.event.len() + ENTRY_OVERHEAD;
        self.bytes -= cost;
        if e.pending {
            self.pending -= 1;
            if !has {
                add_lost(&mut self.lost, n, n);
            }
        }
        let cap = self.entries.capacity();
        if cap > RING_MIN_CAPACITY && self.entries.len() * 4 <= cap {
            self.entries.shrink_to(self.entries.len() * 2);
        }
        cost
    }
}

/// Adds `lo..=hi` to sorted, disjoint `lost`, merging neighbours; beyond
/// [`MAX_LOST_RANGES`] a new separate range is not remembered.
fn add_lost(lost: &mut Vec<(u64, u64)>, lo: u64, hi: u64) {
    let i = lost.partition_point(|&(_, h)| h.saturating_add(1) < lo);
    let mut j = i;
    let (mut lo, mut hi) = (lo, hi);
    while j < lost.len() && lost[j].0 <= hi.saturating_add(1) {
        lo = lo.min(lost[j].0);
        hi = hi.max(lost[j].1);
        j += 1;
    }
    if i == j && lost.len() >= MAX_LOST_RANGES {
        return;
    }
    lost.splice(i..j, [(lo, hi)]);
}

/// A kept event's place in the room-wide order of recording.
#[derive(Debug, Clone, Copy)]
struct Stamp {
    index: u32,
    epoch: u32,
    number: u64,
}

/// The events kept for repair, for every member of the room.
#[derive(Debug, Default)]
pub struct RepairStore {
    limits: Limits,
    rings: Vec<Option<Ring>>,
    free: Vec<u32>,
    next_gen: u32,
    /// Every kept event in recording order, and stale stamps of events
    /// already gone (compacted when they outnumber the live ones).
    order: VecDeque<Stamp>,
    total: usize,
    live: usize,
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
            let (bytes, n) = (ring.bytes, ring.entries.len());
            self.rings[slot.index as usize] = None;
            self.free.push(slot.index);
            self.total -= bytes;
            self.live -= n;
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

    /// Keeps `event`, just sent to the member as number `number`. Numbers
    /// should follow each other; if one does not, what was kept before it is
    /// dropped (a request for it is then answered as lost).
    pub fn record(&mut self, slot: Slot, number: u64, event: EventBody) {
        let limits = self.limits;
        let cost = event.len() + ENTRY_OVERHEAD;
        let too_large = cost > limits.member_bytes.min(limits.total_bytes);
        let restart = match self.ring(slot) {
            None => return,
            Some(r) => !r.started || number != r.next() || too_large,
        };
        let epoch = if restart { self.fresh_gen() } else { 0 };
        let Some(ring) = self.ring_mut(slot) else {
            return;
        };
        let (mut freed, mut gone) = (0, 0);
        if restart {
            while !ring.entries.is_empty() {
                freed += ring.evict_front(false);
                gone += 1;
            }
            // Stamps of the old numbering must not match the new one.
            ring.epoch = epoch;
            ring.origin = if ring.started {
                ring.origin.min(number)
            } else {
                number
            };
            ring.started = true;
            ring.first = number;
        }
        let mut added = 0;
        if too_large {
            // Never kept: it is reported lost if asked for.
            ring.first = number.saturating_add(1);
        } else {
            while ring.entries.len() >= limits.keep.max(1)
                || ring.bytes + cost > limits.member_bytes
            {
                freed += ring.evict_front(false);
                gone += 1;
            }
            ring.entries.push_back(Entry {
                event,
                pending: false,
            });
            ring.bytes += cost;
            added = 1;
            let stamp = Stamp {
                index: slot.index,
                epoch: ring.epoch,
                number,
            };
            self.order.push_back(stamp);
        }
        self.total = self.total - freed + added * cost;
        self.live = self.live - gone + added;
        while self.total > limits.total_bytes {
            self.evict_oldest();
        }
        self.compact_if_stale();
    }

    /// Drops the oldest event kept for anyone.
    fn evict_oldest(&mut self) {
        while let Some(s) = self.order.pop_front() {
            if let Some(Some(ring)) = self.rings.get_mut(s.index as usize) {
                if ring.epoch == s.epoch && ring.first == s.number && !ring.entries.is_empty() {
                    self.total -= ring.evict_front(false);
                    self.live -= 1;
                    return;
                }
            }
        }
    }

    /// Keeps the room-wide order within twice the kept events (plus slack).
    fn compact_if_stale(&mut self) {
        if self.order.len() <= 2 * self.live + 64 {
            return;
        }
        let rings = &self.rings;
        self.order.retain(|s| match rings.get(s.index as usize) {
            Some(Some(r)) => r.epoch == s.epoch && s.number >= r.first && s.number < r.next(),
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
        let (mut freed, mut gone) = (0, 0);
        while ring.first <= number && !ring.entries.is_empty() {
            freed += ring.evict_front(true);
            gone += 1;
        }
        self.total -= freed;
        self.live -= gone;
        self.compact_if_stale();
    }

    /// The member asked again for these ranges of numbers (inclusive, in any
    /// order, overlapping or not). Kept events are marked for resending; the
    /// numbers sent but no longer kept are remembered as lost; numbers never
    /// sent are ignored. Answers come from [`RepairStore::poll_repair`].
    pub fn nack(&mut self, slot: Slot, ranges: &[(u64, u64)]) {
        let Some(ring) = self.ring_mut(slot) else {
            return;
        };
        let mut asked: Vec<(u64, u64)> = ranges
            .iter()
            .take(MAX_NACK_RANGES)
            .filter(|&&(lo, hi)| lo <= hi)
            .copied()
            .collect();
        asked.sort_unstable();
        if !ring.started {
            return;
        }
        let sent_end = ring.next(); // exclusive
        let mut marked_to = ring.first; // entries below this are already marked
        for (lo, hi) in asked {
            let lo = lo.max(ring.origin);
            let hi = hi.min(sent_end.saturating_sub(1));
            if lo > hi {
                continue;
            }
            if lo < ring.first {
                add_lost(&mut ring.lost, lo, hi.min(ring.first - 1));
            }
            let from = lo.max(ring.first).max(marked_to);
            for n in from..=hi {
                let e = &mut ring.entries[(n - ring.first) as usize];
                if !e.pending {
                    e.pending = true;
                    ring.pending += 1;
                }
            }
            marked_to = marked_to.max(hi.saturating_add(1));
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
        let (cost, start, count) = self.next_batch(slot, packing)?;
        if !budget.try_spend(now, cost as u64) {
            return None;
        }
        let ring = self.ring_mut(slot)?;
        if count == 0 {
            return Some(Repair::Lost(std::mem::take(&mut ring.lost)));
        }
        let mut events = Vec::with_capacity(count);
        for e in ring.entries.range_mut(start..start + count) {
            e.pending = false;
            events.push(EventBody::clone(&e.event));
        }
        ring.pending -= count;
        Some(Repair::Events {
            first: ring.first + start as u64,
            events,
        })
    }

    /// When the member's next repair answer can go, if one waits.
    pub fn repair_ready_at(
        &self,
        slot: Slot,
        budget: &Budget,
        packing: Packing,
    ) -> Option<Instant> {
        let (cost, _, _) = self.next_batch(slot, packing)?;
        Some(budget.ready_at(cost as u64))
    }

    /// The next answer: its cost, and the index and count of its events
    /// (count 0: the lost ranges).
    fn next_batch(&self, slot: Slot, packing: Packing) -> Option<(usize, usize, usize)> {
        let ring = self.ring(slot)?;
        if !ring.lost.is_empty() {
            return Some((packing.overhead + LOST_RANGE_COST * ring.lost.len(), 0, 0));
        }
        if ring.pending == 0 {
            return None;
        }
        let start = ring.entries.iter().position(|e| e.pending)?;
        let mut bytes = 0;
        let mut count = 0;
        for e in ring.entries.range(start..) {
            let len = e.event.len();
            if !e.pending || (count > 0 && bytes + len > packing.capacity) {
                break;
            }
            bytes += len;
            count += 1;
        }
        Some((packing.overhead + bytes, start, count))
    }

    /// The numbers kept for a member, `(first, last)` inclusive, if any.
    pub fn kept(&self, slot: Slot) -> Option<(u64, u64)> {
        let ring = self.ring(slot)?;
        (!ring.entries.is_empty()).then(|| (ring.first, ring.next() - 1))
    }

    /// Bytes charged for everything kept, across all members.
    pub fn total_bytes(&self) -> usize {
        self.total
    }
}

#[cfg(test)]
#[path = "repair_tests.rs"]
mod tests;
