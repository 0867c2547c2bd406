//! A member's messages are forwarded in its order (issue 10: every member
//! shows every other member's lines in each sender's order). A message that
//! arrives ahead of a gap (an earlier one lost or reordered on the way) waits,
//! unacknowledged, until the gap is filled, and is forwarded after it; a gap
//! not filled within [`HOLD_FOR`] is given up (the messages after it go).

use super::limits::SEQ_WINDOW;
use super::messages::{Msg, Said};
use super::Room;
use crate::gate::ConnId;
use crate::protocol::sealed::serial_before;
use std::time::{Duration, Instant};

/// How long a message waits for the gap before it.
pub const HOLD_FOR: Duration = Duration::from_secs(2);
/// The most bytes of text a member's waiting messages may hold; beyond, a
/// message ahead of a gap is neither kept nor acknowledged (its sender sends
/// it again).
const HELD_BYTES: usize = 64 * 1024;

/// A message waiting for the gap before it.
#[derive(Debug)]
struct Held {
    seq: u32,
    /// `None`: a line for the room (`true`: an action); else a private
    /// message to that name.
    room: Option<bool>,
    to: Box<str>,
    text: Box<str>,
    unix_ms: u64,
    at: Instant,
}

/// A member's place in its own order.
#[derive(Debug)]
pub struct InOrder {
    /// The lowest message number not yet forwarded or refused.
    next: u32,
    held: Vec<Held>,
    bytes: usize,
}

impl InOrder {
    /// Numbers start at `next` (1, or a resume's lowest unacknowledged one).
    pub fn starting_at(next: u32) -> Self {
        InOrder {
            next: next.max(1),
            held: Vec::new(),
            bytes: 0,
        }
    }

    /// When the oldest waiting message stops waiting, if one waits.
    pub fn release_at(&self) -> Option<Instant> {
        self.held.iter().map(|h| h.at + HOLD_FOR).min()
    }
}

impl Room {
    /// Is message `seq` of member `i` ahead of a gap (it must wait)?
    pub(super) fn ahead_of_gap(&self, i: usize, seq: u32) -> bool {
        let next = self.members.get(i).order.next;
        // Beyond the window the sender gave up on the gap: no waiting.
        serial_before(next, seq) && seq.wrapping_sub(next) < SEQ_WINDOW
    }

    /// Keeps message `seq` of member `i` until the gap before it is filled.
    pub(super) fn hold(&mut self, now: Instant, i: usize, msg: Msg<'_>) {
        let (seq, text) = (msg.seq, msg.text);
        let m = self.members.get_mut(i);
        let o = &mut m.order;
        if o.held.iter().any(|h| h.seq == seq) || o.bytes + text.len() > HELD_BYTES {
            return;
        }
        let (room, to) = match msg.what {
            Said::Room(me) => (Some(me), ""),
            Said::Private(to) => (None, to),
        };
        o.bytes += text.len();
        o.held.push(Held {
            seq,
            room,
            to: to.into(),
            text: text.into(),
            unix_ms: msg.unix_ms,
            at: now,
        });
        self.stats.held += 1;
        if !self.holding.contains(&m.conn) {
            self.holding.push(m.conn);
        }
    }

    /// Message `seq` of member `i` was dealt with (forwarded or refused): if
    /// it was the next in its order, the waiting ones that follow it go.
    pub(super) fn passed(&mut self, now: Instant, i: usize, seq: u32) {
        let o = &mut self.members.get_mut(i).order;
        if seq != o.next {
            return;
        }
        o.next = seq.wrapping_add(1);
        self.release(now, i);
    }

    /// Forwards member `i`'s waiting messages that are next in its order.
    fn release(&mut self, now: Instant, i: usize) {
        loop {
            let o = &mut self.members.get_mut(i).order;
            let Some(k) = o.held.iter().position(|h| h.seq == o.next) else {
                return;
            };
            let h = o.held.swap_remove(k);
            o.bytes -= h.text.len();
            o.next = h.seq.wrapping_add(1);
            let what = match h.room {
                Some(me) => Said::Room(me),
                None => Said::Private(&h.to),
            };
            let msg = Msg {
                seq: h.seq,
                what,
                text: &h.text,
                unix_ms: h.unix_ms,
            };
            self.forward(now, i, msg);
        }
    }

    /// Gives up the gaps that were waited for [`HOLD_FOR`]: what waited
    /// behind them goes.
    pub(super) fn give_up_gaps(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.holding.len() {
            let Some(i) = self.members.by_conn(self.holding[k]) else {
                self.holding.swap_remove(k);
                continue;
            };
            while let Some(due) = self.members.get(i).order.release_at() {
                if due > now {
                    break;
                }
                let o = &mut self.members.get_mut(i).order;
                // The lowest waiting number (in the member's order) is next.
                let next = o.next;
                let lowest = o
                    .held
                    .iter()
                    .map(|h| h.seq)
                    .min_by_key(|s| s.wrapping_sub(next));
                if let Some(s) = lowest {
                    o.next = s;
                }
                self.release(now, i);
            }
            if self.members.get(i).order.held.is_empty() {
                self.holding.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// The members with messages waiting (some may be gone).
    pub(super) fn holding(&self) -> impl Iterator<Item = ConnId> + '_ {
        self.holding.iter().copied()
    }
}
