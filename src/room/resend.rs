//! Repair (issue 10), the room's side: every event of a turn is kept once in
//! the repair log and each member's numbers are recorded; a NACK is answered
//! with the events again (under their own numbers) or LOST, paced by the
//! member's answer budget; a KEEPALIVE's `last_event` lets the log forget
//! what the member has; and a KEEPALIVE goes to a member 0.5, 1, 1.5 and 2 s
//! after its last events (until it shows that it has the last one), so that a
//! lost tail is noticed even when a KEEPALIVE is lost too.

use super::budget::Budget;
use super::members::Member;
use super::repair::{EventId, Limits, Packing, Repair, RepairStore};
use super::{Outbox, Room};
use crate::gate::ConnId;
use crate::protocol::sealed::{ServerMsg, EVENTS_HEADER_LEN};
use crate::session::{DATA_OVERHEAD, MAX_BODY};
use std::collections::VecDeque;
use std::rc::Rc;
use std::time::{Duration, Instant};

/// A member gets a KEEPALIVE this long after the last events sent to it, and
/// again each time this long after, [`TAIL_KEEPALIVES`] in all, until its
/// KEEPALIVE or NACK shows that it has learned of the last event. Each is as
/// likely to be lost as the events were: 4 make a tail unnoticed (until the
/// member's own keepalive) 1 time in 10,000 at 10% loss, rather than 1 in 10.
pub const TAIL_KEEPALIVE: Duration = Duration::from_millis(500);
/// How many tail KEEPALIVEs follow one burst of events, at most.
pub const TAIL_KEEPALIVES: u8 = 4;

/// How resent events are packed: a body's room for events, and what each
/// datagram costs besides them.
const PACKING: Packing = Packing {
    capacity: MAX_BODY - EVENTS_HEADER_LEN,
    overhead: DATA_OVERHEAD + EVENTS_HEADER_LEN,
};

/// What the room keeps for repair.
pub(super) struct Repairs {
    pub(super) store: RepairStore,
    /// The repair log's id of each event of this turn, in arena order.
    ids: Vec<EventId>,
    /// The events of one member this turn (reused).
    scratch: Vec<(u32, u32)>,
    /// Members owed a KEEPALIVE after their last events, by when.
    tails: VecDeque<(Instant, ConnId)>,
}

impl Repairs {
    pub(super) fn new() -> Self {
        Repairs {
            store: RepairStore::new(Limits::default()),
            ids: Vec::new(),
            scratch: Vec::new(),
            tails: VecDeque::new(),
        }
    }

    /// Keeps every event of this turn in the log.
    pub(super) fn keep_turn(&mut self, out: &Outbox) {
        self.ids.clear();
        for body in out.event_bodies() {
            let id = self.store.add(Rc::from(body));
            self.ids.push(id);
        }
    }

    /// Packs `events` for `m` and records their numbers; schedules its tail
    /// KEEPALIVE.
    pub(super) fn pack(
        &mut self,
        m: &mut Member,
        out: &mut Outbox,
        packing: bool,
        now: Instant,
        events: impl Iterator<Item = (u32, u32)>,
    ) {
        self.scratch.clear();
        self.scratch.extend(events);
        let first = m.next_event;
        out.pack(
            m.conn,
            m.local,
            &mut m.next_event,
            packing,
            self.scratch.iter().copied(),
        );
        if m.next_event == first {
            return;
        }
        if let Some(slot) = m.slot {
            for (k, &(start, _)) in self.scratch.iter().enumerate() {
                if let Some(&id) = out.event_index(start).and_then(|i| self.ids.get(i)) {
                    self.store.record(slot, first + k as u64, id);
                }
            }
        }
        m.events_at = now;
        m.tail_sent = 0;
        if !m.tail_pending {
            m.tail_pending = true;
            self.tails.push_back((now + TAIL_KEEPALIVE, m.conn));
        }
    }

    /// When the next tail KEEPALIVE is due.
    pub(super) fn next_tail(&self) -> Option<Instant> {
        self.tails.front().map(|&(t, _)| t)
    }
}

/// The number (of `m`'s numbering) that the wire number `n` names: one
/// already sent, within 2^31 of the next.
fn number_of(m: &Member, n: u32) -> Option<u64> {
    let back = u64::from((m.next_event as u32).wrapping_sub(n));
    ((1..1 << 31).contains(&back) && back < m.next_event).then(|| m.next_event - back)
}

impl Room {
    /// A NACK from member `i`: the ranges wait for its budget.
    pub(super) fn nack(&mut self, i: usize, ranges: impl Iterator<Item = (u32, u32)>) {
        let m = self.members.get_mut(i);
        let (Some(r), Some(slot)) = (&mut self.repairs, m.slot) else {
            self.stats.not_allowed += 1;
            return;
        };
        // A range that wraps past the last number sent is cut there.
        let last = m.next_event - 1;
        let wanted: Vec<(u64, u64)> = ranges
            .filter_map(|(a, b)| {
                let lo = number_of(m, a)?;
                Some((lo, number_of(m, b).unwrap_or(last).max(lo)))
            })
            .collect();
        if wanted.iter().any(|&(_, hi)| hi == last) {
            // It has learned of the last event: the NACK's answers do the rest.
            m.tail_sent = TAIL_KEEPALIVES;
        }
        r.store.nack(slot, &wanted);
        self.stats.nacks += 1;
        if !self.answering.contains(&m.conn) {
            self.answering.push(m.conn);
        }
    }

    /// A KEEPALIVE from member `i` that has every event through `last_event`.
    pub(super) fn acknowledged(&mut self, i: usize, last_event: u32) {
        let m = self.members.get_mut(i);
        let n = number_of(m, last_event);
        if n == Some(m.next_event - 1) {
            m.tail_sent = TAIL_KEEPALIVES;
        }
        if let (Some(r), Some(slot), Some(n)) = (&mut self.repairs, m.slot, n) {
            r.store.forget_through(slot, n);
        }
    }

    /// Sends member `i` the repairs its budget allows now; true when more wait.
    pub(super) fn send_repairs(&mut self, now: Instant, i: usize) -> bool {
        let Some(r) = &mut self.repairs else {
            return false;
        };
        let m = self.members.get_mut(i);
        let Some(slot) = m.slot else {
            return false;
        };
        let budget = Budget::get_or_new(&mut m.budget, now);
        while let Some(answer) = r.store.poll_repair(slot, now, budget, PACKING) {
            match answer {
                Repair::Events { first, events } => {
                    self.stats.resent += events.len() as u64;
                    let bodies: Vec<&[u8]> = events.iter().map(|e| &e[..]).collect();
                    self.out.events_body(m.conn, m.local, first as u32, &bodies);
                }
                Repair::Lost(ranges) => {
                    for (lo, hi) in ranges {
                        let count = (hi - lo + 1).min(u64::from(u32::MAX)) as u32;
                        self.stats.lost += u64::from(count);
                        let lost = ServerMsg::Lost {
                            first_event: lo as u32,
                            count,
                        };
                        self.out.reply(m.conn, m.local, &lost);
                    }
                }
            }
        }
        m.repair_at = r.store.repair_ready_at(slot, budget, PACKING);
        m.repair_at.is_some()
    }

    /// Sends the tail KEEPALIVEs due at `now`.
    pub(super) fn send_tails(&mut self, now: Instant) {
        let Some(r) = &mut self.repairs else {
            return;
        };
        while let Some(&(t, conn)) = r.tails.front() {
            if t > now {
                break;
            }
            r.tails.pop_front();
            let Some(i) = self.members.by_conn(conn) else {
                continue;
            };
            let m = self.members.get_mut(i);
            if m.tail_sent >= TAIL_KEEPALIVES {
                m.tail_pending = false;
                continue;
            }
            let due = m.events_at + TAIL_KEEPALIVE * (u32::from(m.tail_sent) + 1);
            if due > now {
                r.tails.push_back((due, conn));
                continue;
            }
            m.tail_sent += 1;
            if m.tail_sent < TAIL_KEEPALIVES {
                r.tails.push_back((due + TAIL_KEEPALIVE, conn));
            } else {
                m.tail_pending = false;
            }
            let last_event = (m.next_event - 1) as u32;
            self.out
                .reply(m.conn, m.local, &ServerMsg::Keepalive { last_event });
        }
    }
}
