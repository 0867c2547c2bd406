//! What the room sends in one turn of the server's loop, as values.
//!
//! Each event is encoded once into a shared arena; an EVENTS body for one
//! member is its own 5-byte header plus slices of that arena, so a fan-out to
//! N members encodes no event N times. Direct replies (ACK, WELCOME,
//! WHO_PAGE, …) are encoded into a second arena. At the end of the turn
//! [`Outbox::seal`] has the gate seal every body for its connection (one AEAD
//! per datagram): the sealed datagrams, and the gate's own (COOKIE,
//! RESPONSE, RESET, path checks, rekeys), are laid end to end in one buffer.

use super::Local;
use crate::gate::{ConnId, Gate};
use crate::protocol::sealed::{server_type, ServerMsg, EVENTS_HEADER_LEN};
use crate::protocol::Malformed;
use crate::session::{MAX_BODY, MAX_DATAGRAM};
use std::net::SocketAddr;
use std::ops::Range;
use std::time::Instant;

/// A slice of one of the two arenas.
#[derive(Debug, Clone, Copy)]
struct Part {
    events: bool,
    start: u32,
    end: u32,
}

/// A body waiting to be sealed for a connection.
#[derive(Debug, Clone)]
struct Body {
    conn: ConnId,
    local: Option<Local>,
    head: [u8; EVENTS_HEADER_LEN],
    head_len: u8,
    parts: Range<u32>,
}

/// One datagram ready to send.
#[derive(Debug, Clone, Copy)]
pub struct Datagram {
    /// The destination.
    pub to: SocketAddr,
    /// The local address to send from (None: the kernel chooses).
    pub from: Option<Local>,
    range: (u32, u32),
}

impl Datagram {
    /// How many datagrams are laid end to end here (more than one: a
    /// segmented send, each [`MAX_DATAGRAM`] bytes but the last).
    pub fn segments(&self) -> u16 {
        ((self.range.1 - self.range.0) as usize).div_ceil(MAX_DATAGRAM) as u16
    }
}

/// The most datagrams one segmented send carries (Linux takes up to 64).
pub const MAX_SEGMENTS: u16 = 32;

/// Everything queued in one turn.
#[derive(Debug, Default)]
pub struct Outbox {
    events: Vec<u8>,
    /// Where each event of the arena starts, in order.
    starts: Vec<u32>,
    replies: Vec<u8>,
    parts: Vec<Part>,
    bodies: Vec<Body>,
    wire: Vec<u8>,
    datagrams: Vec<Datagram>,
}

impl Outbox {
    /// The datagrams to send, in order (after [`Outbox::seal`]).
    pub fn datagrams(&self) -> &[Datagram] {
        &self.datagrams
    }

    /// The bytes of datagram `d`.
    pub fn bytes(&self, d: &Datagram) -> &[u8] {
        &self.wire[d.range.0 as usize..d.range.1 as usize]
    }

    /// Forgets everything (keeps the capacity).
    pub(super) fn clear(&mut self) {
        self.events.clear();
        self.starts.clear();
        self.replies.clear();
        self.parts.clear();
        self.bodies.clear();
        self.wire.clear();
        self.datagrams.clear();
    }

    /// Queues a datagram made whole elsewhere (by the gate).
    pub(super) fn raw(&mut self, to: SocketAddr, from: Option<Local>, bytes: &[u8]) {
        let start = self.wire.len() as u32;
        self.wire.extend_from_slice(bytes);
        self.datagrams.push(Datagram {
            to,
            from,
            range: (start, self.wire.len() as u32),
        });
    }

    /// Queues a direct reply to `conn`.
    pub(super) fn reply(&mut self, conn: ConnId, local: Option<Local>, msg: &ServerMsg<'_>) {
        self.reply_with(conn, local, |buf| msg.encode(buf));
    }

    /// Queues a direct reply that `encode` writes at the start of the buffer
    /// it is given (returning its length). Nothing is queued on an error.
    pub(super) fn reply_with(
        &mut self,
        conn: ConnId,
        local: Option<Local>,
        encode: impl FnOnce(&mut [u8]) -> Result<usize, Malformed>,
    ) {
        let mut buf = [0u8; MAX_BODY];
        let Ok(n) = encode(&mut buf) else {
            debug_assert!(false, "the room encodes only valid bodies");
            return;
        };
        let start = self.replies.len() as u32;
        self.replies.extend_from_slice(&buf[..n]);
        let p = self.parts.len() as u32;
        self.parts.push(Part {
            events: false,
            start,
            end: self.replies.len() as u32,
        });
        self.bodies.push(Body {
            conn,
            local,
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
    pub(super) fn event(&mut self, e: &crate::protocol::sealed::Event<'_>) -> (u32, u32) {
        let start = self.events.len() as u32;
        self.starts.push(start);
        let mut buf = [0u8; MAX_BODY];
        match e.encode(&mut buf) {
            Ok(n) => self.events.extend_from_slice(&buf[..n]),
            Err(_) => debug_assert!(false, "the room encodes only valid events"),
        }
        (start, self.events.len() as u32)
    }

    /// The events of this turn, each with its place in the arena's order.
    pub(super) fn event_bodies(&self) -> impl Iterator<Item = &[u8]> + '_ {
        let ends = self.starts.iter().skip(1).copied();
        let ends = ends.chain(std::iter::once(self.events.len() as u32));
        self.starts
            .iter()
            .zip(ends)
            .map(|(&a, b)| &self.events[a as usize..b as usize])
    }

    /// The index of the event starting at `start` among this turn's events.
    pub(super) fn event_index(&self, start: u32) -> Option<usize> {
        self.starts.binary_search(&start).ok()
    }

    /// Queues an EVENTS body of already encoded events for `conn`.
    pub(super) fn events_body(
        &mut self,
        conn: ConnId,
        local: Option<Local>,
        first_event: u32,
        events: &[&[u8]],
    ) {
        let p0 = self.parts.len() as u32;
        for e in events {
            let start = self.replies.len() as u32;
            self.replies.extend_from_slice(e);
            self.parts.push(Part {
                events: false,
                start,
                end: self.replies.len() as u32,
            });
        }
        self.close(conn, local, p0, first_event);
    }

    /// Packs `events` (arena ranges in order) for `conn` into EVENTS bodies
    /// of at most `MAX_BODY` bytes (one event each when `!packing`),
    /// numbering them from `*next_event` on; returns how many events.
    pub(super) fn pack(
        &mut self,
        conn: ConnId,
        local: Option<Local>,
        next_event: &mut u64,
        packing: bool,
        events: impl Iterator<Item = (u32, u32)>,
    ) -> u32 {
        const ROOM: usize = MAX_BODY - EVENTS_HEADER_LEN;
        let mut count = 0;
        // (first part index, bytes, first event number) of the body being filled.
        let mut cur: Option<(u32, usize, u32)> = None;
        for (start, end) in events {
            let len = (end - start) as usize;
            if let Some((p0, used, first)) = cur {
                if !packing || used + len > ROOM {
                    self.close(conn, local, p0, first);
                    cur = None;
                }
            }
            match &mut cur {
                None => {
                    cur = Some((self.parts.len() as u32, len, *next_event as u32));
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
            *next_event += 1;
            count += 1;
        }
        if let Some((p0, _, first)) = cur {
            self.close(conn, local, p0, first);
        }
        count
    }

    fn close(&mut self, conn: ConnId, local: Option<Local>, p0: u32, first_event: u32) {
        let mut head = [0u8; EVENTS_HEADER_LEN];
        head[0] = server_type::EVENTS;
        head[1..].copy_from_slice(&first_event.to_be_bytes());
        self.bodies.push(Body {
            conn,
            local,
            head,
            head_len: EVENTS_HEADER_LEN as u8,
            parts: p0..self.parts.len() as u32,
        });
    }

    /// Seals every body queued for a connection into a datagram (to the
    /// connection's validated address); returns how many could not be sealed
    /// (their connection is gone or silent). With `segments`, consecutive
    /// EVENTS bodies for one connection are laid end to end in one
    /// [`Datagram`] of up to [`MAX_SEGMENTS`] segments, every one but the
    /// last padded to [`MAX_DATAGRAM`] bytes, for one segmented send.
    pub(super) fn seal(&mut self, gate: &mut Gate, now: Instant, segments: bool) -> u64 {
        let mut failed = 0;
        let mut body = [0u8; MAX_BODY];
        let mut sealed = [0u8; MAX_DATAGRAM];
        // The datagram the previous body went into, while it may take more segments.
        let mut open: Option<usize> = None;
        for (i, b) in self.bodies.iter().enumerate() {
            let mut n = b.head_len as usize;
            body[..n].copy_from_slice(&b.head[..n]);
            for p in &self.parts[b.parts.start as usize..b.parts.end as usize] {
                let arena = if p.events {
                    &self.events
                } else {
                    &self.replies
                };
                let s = &arena[p.start as usize..p.end as usize];
                body[n..n + s.len()].copy_from_slice(s);
                n += s.len();
            }
            let next_joins = segments
                && b.is_events()
                && self
                    .bodies
                    .get(i + 1)
                    .is_some_and(|c| c.is_events() && c.conn == b.conn && c.local == b.local);
            if next_joins {
                // Padding (PROTOCOL.md "Events"): zeros to the full size.
                body[n..].fill(0);
                n = MAX_BODY;
            }
            match gate.seal_to(now, b.conn, &body[..n], &mut sealed) {
                Ok((len, to)) => {
                    let end = self.wire.len() as u32 + len as u32;
                    match open.map(|k| &mut self.datagrams[k]) {
                        Some(d) if d.to == to && d.segments() < MAX_SEGMENTS => d.range.1 = end,
                        _ => {
                            self.datagrams.push(Datagram {
                                to,
                                from: b.local,
                                range: (self.wire.len() as u32, end),
                            });
                        }
                    }
                    self.wire.extend_from_slice(&sealed[..len]);
                    // Only a full-size segment may be followed by another.
                    open = (next_joins && len == MAX_DATAGRAM).then(|| self.datagrams.len() - 1);
                }
                Err(_) => {
                    failed += 1;
                    open = None;
                }
            }
        }
        self.bodies.clear();
        failed
    }
}

impl Body {
    /// An EVENTS body (which may end in padding).
    fn is_events(&self) -> bool {
        self.head_len as usize == EVENTS_HEADER_LEN && self.head[0] == server_type::EVENTS
    }
}
