//! The events inside EVENTS and HISTORY_PAGE (PROTOCOL.md "Events"), the
//! validated list a decoded body holds, and the writer that packs events
//! into a body until it is full.

use super::{
    event_type, server_type, LeftReason, LineFlags, Malformed, Reader, Writer, EVENTS_HEADER_LEN,
};

/// A message id: the sender's `client_id` (from its WELCOME) and its `seq`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The sender's client id.
    pub client_id: u64,
    /// The sender's message number.
    pub seq: u32,
}

/// A member's line in the room: SAID or ME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Line<'a> {
    /// The room sequence (room-wide, within the WELCOME's epoch).
    pub room_seq: u64,
    /// Server time: milliseconds since the Unix epoch, UTC.
    pub time_ms: u64,
    /// History or catch-up.
    pub flags: LineFlags,
    /// Who sent it and its number.
    pub id: MessageId,
    /// The sender's name.
    pub from: &'a str,
    /// What was said.
    pub text: &'a str,
}

/// One event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A member joined.
    Joined {
        /// Its name.
        name: &'a str,
    },
    /// A member left.
    Left {
        /// Why.
        reason: LeftReason,
        /// Its name.
        name: &'a str,
    },
    /// A line said in the room.
    Said(Line<'a>),
    /// A private message to this member (not a room message: no room sequence).
    PrivateFrom {
        /// Server time, milliseconds since the Unix epoch.
        time_ms: u64,
        /// Who sent it and its number.
        id: MessageId,
        /// The sender's name.
        from: &'a str,
        /// What was said.
        text: &'a str,
    },
    /// A line from the server's console.
    Admin {
        /// The room sequence.
        room_seq: u64,
        /// Server time, milliseconds since the Unix epoch.
        time_ms: u64,
        /// History or catch-up.
        flags: LineFlags,
        /// The line.
        text: &'a str,
    },
    /// An action in the room (`/me waves`).
    Me(Line<'a>),
    /// `count` room messages from `first_room_seq` on are no longer kept.
    Gap {
        /// The first room sequence missing.
        first_room_seq: u64,
        /// How many (at least 1).
        count: u32,
    },
}

impl<'a> Event<'a> {
    /// Is it a room message (SAID, ME, ADMIN), the only kind a HISTORY_PAGE holds?
    pub fn is_room_message(&self) -> bool {
        matches!(self, Event::Said(_) | Event::Me(_) | Event::Admin { .. })
    }

    /// The length of this event encoded (valid or not).
    pub fn encoded_len(&self) -> usize {
        const LINE: usize = 1 + 8 + 8 + 1 + 8 + 4 + 1 + 2;
        match *self {
            Event::Joined { name } => 2 + name.len(),
            Event::Left { name, .. } => 3 + name.len(),
            Event::Said(ref l) | Event::Me(ref l) => LINE + l.from.len() + l.text.len(),
            Event::PrivateFrom { from, text, .. } => {
                1 + 8 + 8 + 4 + 1 + 2 + from.len() + text.len()
            }
            Event::Admin { text, .. } => 1 + 8 + 8 + 1 + 2 + text.len(),
            Event::Gap { .. } => 1 + 8 + 4,
        }
    }

    /// Encodes this event at the start of `out`; returns its length.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Malformed> {
        let mut w = Writer::new(out);
        self.write(&mut w)?;
        Ok(w.len())
    }

    /// This event's bytes, to be packed into many bodies ([`EventsWriter::push_encoded`]).
    pub fn to_encoded(&self) -> Result<EncodedEvent, Malformed> {
        let mut buf = [0u8; crate::session::MAX_BODY];
        let n = self.encode(&mut buf)?;
        Ok(EncodedEvent {
            bytes: buf[..n].into(),
            room_message: self.is_room_message(),
        })
    }

    pub(super) fn write(&self, w: &mut Writer<'_>) -> Result<(), Malformed> {
        match *self {
            Event::Joined { name } => {
                w.u8(event_type::JOINED)?;
                w.name(name)
            }
            Event::Left { reason, name } => {
                w.u8(event_type::LEFT)?;
                w.u8(reason.code())?;
                w.name(name)
            }
            Event::Said(ref line) => write_line(w, event_type::SAID, line),
            Event::Me(ref line) => write_line(w, event_type::ME, line),
            Event::PrivateFrom {
                time_ms,
                id,
                from,
                text,
            } => {
                w.u8(event_type::PRIVATE_FROM)?;
                w.u64(time_ms)?;
                w.u64(id.client_id)?;
                w.u32(id.seq)?;
                w.name(from)?;
                w.text(text)
            }
            Event::Admin {
                room_seq,
                time_ms,
                flags,
                text,
            } => {
                w.u8(event_type::ADMIN)?;
                w.u64(room_seq)?;
                w.u64(time_ms)?;
                w.u8(flags.bits())?;
                w.text(text)
            }
            Event::Gap {
                first_room_seq,
                count,
            } => {
                if count == 0 {
                    return Err(Malformed::BadValue);
                }
                w.u8(event_type::GAP)?;
                w.u64(first_room_seq)?;
                w.u32(count)
            }
        }
    }

    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, Malformed> {
        Ok(match r.u8()? {
            event_type::JOINED => Event::Joined { name: r.name()? },
            event_type::LEFT => Event::Left {
                reason: LeftReason::read(r)?,
                name: r.name()?,
            },
            event_type::SAID => Event::Said(read_line(r)?),
            event_type::ME => Event::Me(read_line(r)?),
            event_type::PRIVATE_FROM => Event::PrivateFrom {
                time_ms: r.u64()?,
                id: read_id(r)?,
                from: r.name()?,
                text: r.text()?,
            },
            event_type::ADMIN => Event::Admin {
                room_seq: r.u64()?,
                time_ms: r.u64()?,
                flags: LineFlags::from_bits(r.u8()?),
                text: r.text()?,
            },
            event_type::GAP => {
                let first_room_seq = r.u64()?;
                let count = r.u32()?;
                if count == 0 {
                    return Err(Malformed::BadValue);
                }
                Event::Gap {
                    first_room_seq,
                    count,
                }
            }
            _ => return Err(Malformed::UnknownKind),
        })
    }
}

fn write_line(w: &mut Writer<'_>, ty: u8, line: &Line<'_>) -> Result<(), Malformed> {
    w.u8(ty)?;
    w.u64(line.room_seq)?;
    w.u64(line.time_ms)?;
    w.u8(line.flags.bits())?;
    w.u64(line.id.client_id)?;
    w.u32(line.id.seq)?;
    w.name(line.from)?;
    w.text(line.text)
}

fn read_id(r: &mut Reader<'_>) -> Result<MessageId, Malformed> {
    Ok(MessageId {
        client_id: r.u64()?,
        seq: r.u32()?,
    })
}

fn read_line<'a>(r: &mut Reader<'a>) -> Result<Line<'a>, Malformed> {
    Ok(Line {
        room_seq: r.u64()?,
        time_ms: r.u64()?,
        flags: LineFlags::from_bits(r.u8()?),
        id: read_id(r)?,
        from: r.name()?,
        text: r.text()?,
    })
}

/// The already validated events of an EVENTS or HISTORY_PAGE body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events<'a>(pub(super) &'a [u8]);

impl<'a> Events<'a> {
    /// Checks every event of `bytes` (only room messages when `room_only`).
    pub(super) fn check(bytes: &'a [u8], room_only: bool) -> Result<Self, Malformed> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let e = Event::read(&mut r)?;
            if room_only && !e.is_room_message() {
                return Err(Malformed::UnknownKind);
            }
        }
        Ok(Events(bytes))
    }

    /// Checks the events of an EVENTS body: events up to the end of `bytes`
    /// or up to a padding byte (type 0), after which every byte is zero.
    pub(super) fn check_padded(bytes: &'a [u8]) -> Result<Self, Malformed> {
        let mut at = 0;
        while at < bytes.len() {
            if bytes[at] == event_type::PADDING {
                if bytes[at..].iter().any(|&b| b != 0) {
                    return Err(Malformed::BadValue);
                }
                break;
            }
            let mut r = Reader::new(&bytes[at..]);
            Event::read(&mut r)?;
            at = bytes.len() - r.rest().len();
        }
        Ok(Events(&bytes[..at]))
    }

    /// The events, in order (in EVENTS, numbered `first_event`,
    /// `first_event + 1`, … wrapping). Never fails: decoding checked them.
    pub fn iter(&self) -> impl Iterator<Item = Event<'a>> + 'a {
        let mut r = Reader::new(self.0);
        std::iter::from_fn(move || {
            if r.is_empty() {
                None
            } else {
                Event::read(&mut r).ok()
            }
        })
    }

    /// The encoded events, as they are in the body.
    pub fn as_bytes(&self) -> &'a [u8] {
        self.0
    }
}

/// One event's bytes, encoded once and packed into the bodies of many members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedEvent {
    bytes: Box<[u8]>,
    room_message: bool,
}

impl EncodedEvent {
    /// The encoded event.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

/// Packs events into an EVENTS or a HISTORY_PAGE body in the caller's
/// buffer, as many as fit in [`MAX_BODY`](crate::session::MAX_BODY) bytes.
pub struct EventsWriter<'b> {
    w: Writer<'b>,
    count: usize,
    history_page: bool,
}

impl<'b> EventsWriter<'b> {
    /// An EVENTS body whose first event has number `first_event`.
    pub fn events(out: &'b mut [u8], first_event: u32) -> Result<Self, Malformed> {
        let mut w = Writer::new(out);
        w.u8(server_type::EVENTS)?;
        w.u32(first_event)?;
        debug_assert_eq!(w.len(), EVENTS_HEADER_LEN);
        Ok(EventsWriter {
            w,
            count: 0,
            history_page: false,
        })
    }

    /// A HISTORY_PAGE body answering HISTORY `before` (`more` 0 until [`Self::set_more`]).
    pub fn history_page(out: &'b mut [u8], before: u64) -> Result<Self, Malformed> {
        let mut w = Writer::new(out);
        w.u8(server_type::HISTORY_PAGE)?;
        w.u64(before)?;
        w.u8(0)?;
        Ok(EventsWriter {
            w,
            count: 0,
            history_page: true,
        })
    }

    /// Sets HISTORY_PAGE's `more` (older messages exist). No effect on EVENTS.
    pub fn set_more(&mut self, more: bool) {
        if self.history_page {
            self.w.set(9, more as u8);
        }
    }

    /// Appends `event`: `Ok(false)` (and nothing written) when it does not
    /// fit; an error when it is not valid here (a field out of range, or not
    /// a room message in a HISTORY_PAGE).
    pub fn push(&mut self, event: &Event<'_>) -> Result<bool, Malformed> {
        if self.history_page && !event.is_room_message() {
            return Err(Malformed::UnknownKind);
        }
        let start = self.w.len();
        match event.write(&mut self.w) {
            Ok(()) => {
                self.count += 1;
                Ok(true)
            }
            Err(e) => {
                self.w.truncate(start);
                if e == Malformed::TooLong {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Appends an event encoded by [`Event::to_encoded`]: false (and nothing
    /// written) when it does not fit or is not a room message in a HISTORY_PAGE.
    pub fn push_encoded(&mut self, event: &EncodedEvent) -> bool {
        (!self.history_page || event.room_message) && self.put(&event.bytes)
    }

    /// Appends the bytes of one event written by [`Event::encode`] (say, from
    /// the server's arena of this turn's events), without checking them again
    /// outside debug builds: false (and nothing written) when they do not fit.
    pub fn push_bytes(&mut self, event: &[u8]) -> bool {
        debug_assert!(Events::check(event, self.history_page).is_ok());
        self.put(event)
    }

    fn put(&mut self, bytes: &[u8]) -> bool {
        let fits = self.w.put(bytes).is_ok();
        self.count += fits as usize;
        fits
    }

    /// How many events it holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// How many more bytes fit.
    pub fn room(&self) -> usize {
        self.w.room()
    }

    /// The body's length. An EVENTS body needs at least one event
    /// (`Malformed::Truncated` otherwise); a HISTORY_PAGE may hold none.
    pub fn finish(self) -> Result<usize, Malformed> {
        if self.count == 0 && !self.history_page {
            return Err(Malformed::Truncated);
        }
        Ok(self.w.len())
    }
}
