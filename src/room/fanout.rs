//! A turn's fan-out: which of the turn's events go to one member, packed.

use super::members::Member;
use super::outbox::Outbox;
use super::{resend, Broadcast};
use std::time::Instant;

/// What every member's flush of a turn shares.
pub(super) struct Turn {
    pub(super) turn: u64,
    pub(super) packing: bool,
    pub(super) now: Instant,
}

/// Packs the events of this turn meant for `m`: the broadcasts not from it,
/// not from before it joined and not from after `until` (when it left), and
/// its private events, in arena order; `repairs` records them.
pub(super) fn flush_member(
    m: &mut Member,
    until: u32,
    bcasts: &[Broadcast],
    out: &mut Outbox,
    t: &Turn,
    repairs: Option<&mut resend::Repairs>,
) {
    let since = if m.joined_turn == t.turn {
        m.joined_at
    } else {
        0
    };
    let (conn, live_after) = (Some(m.conn), m.live_after);
    let mut b = bcasts
        .iter()
        .filter(move |b| b.except != conn && b.start >= since && b.start < until)
        // Room messages a catch-up sends (or sent) are not sent live.
        .filter(move |b| b.room_seq == 0 || b.room_seq > live_after)
        .map(|b| (b.start, b.end))
        .peekable();
    let private = std::mem::take(&mut m.private);
    let mut p = private.iter().copied().peekable();
    let merged = std::iter::from_fn(|| match (b.peek(), p.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => p.next(),
        (Some(_), _) => b.next(),
        (None, _) => p.next(),
    });
    match repairs {
        Some(r) => r.pack(m, out, t.packing, t.now, merged),
        None => {
            out.pack(m.conn, m.local, &mut m.next_event, t.packing, merged);
        }
    }
    // The list's allocation is kept for the next turn.
    m.private = private;
    m.private.clear();
}
