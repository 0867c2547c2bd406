//! Server → client bodies (PROTOCOL.md "Server → client"). EVENTS, WHO_PAGE
//! and HISTORY_PAGE run to the end of the body (an EVENTS body may end in
//! padding: a zero type byte and zeros after it); any other body with bytes
//! after its last field is malformed.

use super::{
    body_reader, server_type, ByeReason, Events, Malformed, Reader, Refusal, RejectReason,
    WelcomeFlags, Writer, MAX_TICKET, PATH_DATA_LEN,
};
use crate::session::NOISE_MSG2_LEN;

/// A WELCOME body: the client is a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome<'a> {
    /// What the room keeps and what the server serves.
    pub flags: WelcomeFlags,
    /// Members in the room, this one included.
    pub members: u32,
    /// The member timeout, in milliseconds.
    pub timeout_ms: u32,
    /// The run of the room's sequence that room sequences belong to.
    pub epoch: u32,
    /// The room sequence of the last room message so far (0 if none).
    pub room_seq: u64,
    /// This client's id in message ids.
    pub client_id: u64,
    /// The name, exactly as the JOIN spelled it (or as the ticket holds it).
    pub name: &'a str,
    /// The resume ticket: empty exactly when [`WelcomeFlags::RESUME`] is not set.
    pub ticket: &'a [u8],
}

/// A body from the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// The JOIN or RESUME is accepted.
    Welcome(Welcome<'a>),
    /// The JOIN or RESUME is refused; the session stays open.
    Refused(Refusal<'a>),
    /// The message `seq` was forwarded, now or earlier in this session.
    Ack {
        /// The message number.
        seq: u32,
    },
    /// The message `seq` was not forwarded.
    Reject {
        /// The message number.
        seq: u32,
        /// Why.
        reason: RejectReason,
    },
    /// Events numbered `first_event`, `first_event + 1`, … (at least one).
    Events {
        /// The number of the first event.
        first_event: u32,
        /// The events.
        events: Events<'a>,
    },
    /// The session ends.
    Bye {
        /// Why.
        reason: ByeReason,
        /// Events queued for this member that it was not sent.
        missed: u32,
        /// A text for the member (may be empty): the admin's reason.
        text: &'a str,
    },
    /// The answer to KEEPALIVE, and the end of a burst of events.
    Keepalive {
        /// The number of the last event sent (0 if none).
        last_event: u32,
    },
    /// A page of the member list: members `start`, `start + 1`, …
    WhoPage {
        /// The index of the first name.
        start: u32,
        /// The number of members now.
        total: u32,
        /// The names (possibly none).
        names: Names<'a>,
    },
    /// A path check: answer with PATH_RESPONSE.
    PathChallenge {
        /// The data to echo.
        data: [u8; PATH_DATA_LEN],
    },
    /// The answer to REKEY_INIT (the whole body goes to `session::ClientRekey::on_response`).
    RekeyResponse {
        /// Noise message 2.
        message: &'a [u8],
    },
    /// Room messages before `before` (issue 10), oldest first.
    HistoryPage {
        /// The `before` of the HISTORY it answers.
        before: u64,
        /// Older messages exist than those in the page.
        more: bool,
        /// The room messages (possibly none).
        events: Events<'a>,
    },
    /// Events `first_event` … `first_event + count - 1` are no longer kept
    /// (issue 10): the answer to a NACK for them.
    Lost {
        /// The first event number lost.
        first_event: u32,
        /// How many (at least 1).
        count: u32,
    },
}

/// The already validated names of a WHO_PAGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names<'a>(&'a [u8]);

impl<'a> Names<'a> {
    /// The names, in order. Never fails: decoding checked them.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader::new(self.0);
        std::iter::from_fn(move || if r.is_empty() { None } else { r.name().ok() })
    }
}

/// Decodes a server's body.
pub fn decode_server(body: &[u8]) -> Result<ServerMsg<'_>, Malformed> {
    let (ty, mut r) = body_reader(body)?;
    let msg = match ty {
        server_type::WELCOME => {
            let w = Welcome {
                flags: WelcomeFlags::from_bits(r.u8()?),
                members: r.u32()?,
                timeout_ms: r.u32()?,
                epoch: r.u32()?,
                room_seq: r.u64()?,
                client_id: r.u64()?,
                name: r.name()?,
                ticket: r.short_bytes(0, MAX_TICKET)?,
            };
            if w.flags.contains(WelcomeFlags::RESUME) == w.ticket.is_empty() {
                return Err(Malformed::BadValue);
            }
            ServerMsg::Welcome(w)
        }
        server_type::REFUSED => ServerMsg::Refused(Refusal::read(&mut r)?),
        server_type::ACK => ServerMsg::Ack { seq: r.u32()? },
        server_type::REJECT => ServerMsg::Reject {
            seq: r.u32()?,
            reason: RejectReason::read(&mut r)?,
        },
        server_type::EVENTS => {
            let first_event = r.u32()?;
            let events = Events::check_padded(r.rest())?;
            if events.as_bytes().is_empty() {
                return Err(Malformed::Truncated);
            }
            ServerMsg::Events {
                first_event,
                events,
            }
        }
        server_type::BYE => ServerMsg::Bye {
            reason: ByeReason::read(&mut r)?,
            missed: r.u32()?,
            text: r.text0()?,
        },
        server_type::KEEPALIVE => ServerMsg::Keepalive {
            last_event: r.u32()?,
        },
        server_type::WHO_PAGE => {
            let start = r.u32()?;
            let total = r.u32()?;
            let rest = r.rest();
            let mut names = Reader::new(rest);
            while !names.is_empty() {
                names.name()?;
            }
            ServerMsg::WhoPage {
                start,
                total,
                names: Names(rest),
            }
        }
        server_type::PATH_CHALLENGE => ServerMsg::PathChallenge { data: r.array()? },
        server_type::REKEY_RESPONSE => ServerMsg::RekeyResponse {
            message: r.take(NOISE_MSG2_LEN)?,
        },
        server_type::HISTORY_PAGE => {
            let before = r.u64()?;
            let more = match r.u8()? {
                0 => false,
                1 => true,
                _ => return Err(Malformed::BadValue),
            };
            ServerMsg::HistoryPage {
                before,
                more,
                events: Events::check(r.rest(), true)?,
            }
        }
        server_type::LOST => {
            let first_event = r.u32()?;
            let count = r.u32()?;
            if count == 0 {
                return Err(Malformed::BadValue);
            }
            ServerMsg::Lost { first_event, count }
        }
        _ => return Err(Malformed::UnknownKind),
    };
    r.end()?;
    Ok(msg)
}

impl ServerMsg<'_> {
    /// Encodes this body into `out`; returns its length. Refuses a field out
    /// of range, and a body longer than `out` or [`crate::session::MAX_BODY`].
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Malformed> {
        let mut w = Writer::new(out);
        match *self {
            ServerMsg::Welcome(ref m) => {
                if m.flags.contains(WelcomeFlags::RESUME) == m.ticket.is_empty() {
                    return Err(Malformed::BadValue);
                }
                w.u8(server_type::WELCOME)?;
                w.u8(m.flags.bits())?;
                w.u32(m.members)?;
                w.u32(m.timeout_ms)?;
                w.u32(m.epoch)?;
                w.u64(m.room_seq)?;
                w.u64(m.client_id)?;
                w.name(m.name)?;
                w.short(m.ticket, 0, MAX_TICKET)?;
            }
            ServerMsg::Refused(ref refusal) => {
                w.u8(server_type::REFUSED)?;
                refusal.write(&mut w)?;
            }
            ServerMsg::Ack { seq } => {
                w.u8(server_type::ACK)?;
                w.u32(seq)?;
            }
            ServerMsg::Reject { seq, reason } => {
                w.u8(server_type::REJECT)?;
                w.u32(seq)?;
                w.u8(reason.code())?;
            }
            ServerMsg::Events {
                first_event,
                events,
            } => {
                if events.0.is_empty() {
                    return Err(Malformed::Truncated);
                }
                w.u8(server_type::EVENTS)?;
                w.u32(first_event)?;
                w.put(events.0)?;
            }
            ServerMsg::Bye {
                reason,
                missed,
                text,
            } => {
                w.u8(server_type::BYE)?;
                w.u8(reason.code())?;
                w.u32(missed)?;
                w.text0(text)?;
            }
            ServerMsg::Keepalive { last_event } => {
                w.u8(server_type::KEEPALIVE)?;
                w.u32(last_event)?;
            }
            ServerMsg::WhoPage {
                start,
                total,
                names,
            } => {
                w.u8(server_type::WHO_PAGE)?;
                w.u32(start)?;
                w.u32(total)?;
                w.put(names.0)?;
            }
            ServerMsg::PathChallenge { data } => {
                w.u8(server_type::PATH_CHALLENGE)?;
                w.put(&data)?;
            }
            ServerMsg::RekeyResponse { message } => {
                if message.len() != NOISE_MSG2_LEN {
                    return Err(Malformed::BadLength);
                }
                w.u8(server_type::REKEY_RESPONSE)?;
                w.put(message)?;
            }
            ServerMsg::HistoryPage {
                before,
                more,
                events,
            } => {
                Events::check(events.0, true)?;
                w.u8(server_type::HISTORY_PAGE)?;
                w.u64(before)?;
                w.u8(more as u8)?;
                w.put(events.0)?;
            }
            ServerMsg::Lost { first_event, count } => {
                if count == 0 {
                    return Err(Malformed::BadValue);
                }
                w.u8(server_type::LOST)?;
                w.u32(first_event)?;
                w.u32(count)?;
            }
        }
        Ok(w.len())
    }
}

/// Packs member names into a WHO_PAGE body in the caller's buffer, as many
/// as fit.
pub struct WhoPageWriter<'b> {
    w: Writer<'b>,
    count: usize,
}

impl<'b> WhoPageWriter<'b> {
    /// A WHO_PAGE of the names from index `start`, of `total` members.
    pub fn new(out: &'b mut [u8], start: u32, total: u32) -> Result<Self, Malformed> {
        let mut w = Writer::new(out);
        w.u8(server_type::WHO_PAGE)?;
        w.u32(start)?;
        w.u32(total)?;
        Ok(WhoPageWriter { w, count: 0 })
    }

    /// Appends `name`: `Ok(false)` (and nothing written) when it does not
    /// fit; an error when it is not a valid `name` (empty or over 96 bytes).
    pub fn push(&mut self, name: &str) -> Result<bool, Malformed> {
        let start = self.w.len();
        match self.w.name(name) {
            Ok(()) => {
                self.count += 1;
                Ok(true)
            }
            Err(Malformed::TooLong) => {
                self.w.truncate(start);
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// How many names it holds.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The body's length.
    pub fn finish(self) -> usize {
        self.w.len()
    }
}
