//! What the room sends in one turn of the server's loop, as values.
//!
//! Each event is encoded once into a shared arena; an EVENTS datagram for one
//! member is its own 8-byte header plus slices of that arena, so a fan-out to
//! N members copies no body N times (the server hands the slices to
//! `sendmmsg` as iovecs). Direct replies (ACK, WELCOME, WHO_PAGE, …) are
//! encoded into a second arena.

use super::Peer;
use crate::protocol::{events_header, Event, ServerMsg, EVENTS_HEADER_LEN, MAX_DATAGRAM};
use std::ops::Range;

/// A slice of one of the two arenas.
#[derive(Debug, Clone, Copy)]
struct Part {
    events: bool,
    start: u32,
    end: u32,
}

/// One datagram to send.
#[derive(Debug, Clone)]
pub struct Transmit {
    /// Destination, and the local address to send from.
    pub peer: Peer,
    head: [u8; EVENTS_HEADER_LEN],
    head_len: u8,
    parts: Range<u32>,
}

/// Everything queued in one turn.
#[derive(Debug, Default)]
pub struct Outbox {
    events: Vec<u8>,
    replies: Vec<u8>,
    parts: Vec<Part>,
    transmits: Vec<Transmit>,
}

impl Outbox {
    /// The datagrams, in sending order.
    pub fn transmits(&self) -> &[Transmit] {
        &self.transmits
    }

    /// The byte slices that make up `t`, to be sent as one datagram (iovecs).
    pub fn slices<'a>(&'a self, t: &'a Transmit) -> impl Iterator<Item = &'a [u8]> + 'a {
        let head = (t.head_len > 0).then(|| &t.head[..t.head_len as usize]);
        let parts = self.parts[t.parts.start as usize..t.parts.end as usize]
            .iter()
            .map(move |p| {
                let arena = if p.events {
                    &self.events
                } else {
                    &self.replies
                };
                &arena[p.start as usize..p.end as usize]
            });
        head.into_iter().chain(parts)
    }

    /// The size of datagram `t`.
    pub fn len_of(&self, t: &Transmit) -> usize {
        self.slices(t).map(<[u8]>::len).sum()
    }

    /// Datagram `t` as one buffer (for tests and simple senders).
    pub fn to_vec(&self, t: &Transmit) -> Vec<u8> {
        self.slices(t).flat_map(|s| s.iter().copied()).collect()
    }

    /// Forgets everything (keeps the capacity).
    pub(super) fn clear(&mut self) {
        self.events.clear();
        self.replies.clear();
        self.parts.clear();
        self.transmits.clear();
    }

    /// Queues a direct reply.
    pub(super) fn reply(&mut self, peer: Peer, msg: &ServerMsg<'_>) {
        self.reply_with(peer, |out| msg.encode(out));
    }

    /// Queues a direct reply that `encode` appends to the buffer it is given.
    pub(super) fn reply_with(&mut self, peer: Peer, encode: impl FnOnce(&mut Vec<u8>)) {
        let start = self.replies.len() as u32;
        encode(&mut self.replies);
        let end = self.replies.len() as u32;
        debug_assert!((end - start) as usize <= MAX_DATAGRAM);
        let p = self.parts.len() as u32;
        self.parts.push(Part {
            events: false,
            start,
            end,
        });
        self.transmits.push(Transmit {
            peer,
            head: [0; EVENTS_HEADER_LEN],
            head_len: 0,
            parts: p..p + 1,
        });
    }

    /// The current length of the event arena (events encoded later start here).
    pub(super) fn events_len(&self) -> u32 {
        self.events.len() as u32
    }

    /// Encodes an event once; returns its range in the event arena.
    pub(super) fn event(&mut self, e: &Event<'_>) -> (u32, u32) {
        let start = self.events.len() as u32;
        e.encode(&mut self.events);
        (start, self.events.len() as u32)
    }

    /// Packs `events` (arena ranges in order) for `peer` into EVENTS datagrams
    /// of at most [`MAX_DATAGRAM`] bytes (one event each when `!packing`),
    /// numbering them from `*next_seq` on.
    pub(super) fn pack(
        &mut self,
        peer: Peer,
        next_seq: &mut u32,
        packing: bool,
        events: impl Iterator<Item = (u32, u32)>,
    ) {
        const ROOM: usize = MAX_DATAGRAM - EVENTS_HEADER_LEN;
        // (first part index, bytes, first_seq) of the datagram being filled.
        let mut cur: Option<(u32, usize, u32)> = None;
        for (start, end) in events {
            let len = (end - start) as usize;
            if let Some((p0, used, first)) = cur {
                if !packing || used + len > ROOM {
                    self.close(peer, p0, first);
                    cur = None;
                }
            }
            match &mut cur {
                None => {
                    cur = Some((self.parts.len() as u32, len, *next_seq));
                    self.parts.push(Part {
                        events: true,
                        start,
                        end,
                    });
                }
                Some((_, used, _)) => {
                    *used += len;
                    match self.parts.last_mut() {
                        // Adjacent in the arena: one slice.
                        Some(last) if last.end == start => last.end = end,
                        _ => self.parts.push(Part {
                            events: true,
                            start,
                            end,
                        }),
                    }
                }
            }
            *next_seq = next_seq.wrapping_add(1);
        }
        if let Some((p0, _, first)) = cur {
            self.close(peer, p0, first);
        }
    }

    fn close(&mut self, peer: Peer, p0: u32, first_seq: u32) {
        self.transmits.push(Transmit {
            peer,
            head: events_header(first_seq),
            head_len: EVENTS_HEADER_LEN as u8,
            parts: p0..self.parts.len() as u32,
        });
    }
}
