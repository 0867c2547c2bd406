//! The wire format of PROTOCOL.md: message types, encoding and decoding over
//! byte slices, the limits, and the rules for names and text. No I/O.
//!
//! Decoding borrows strings from the datagram (`&'a str`), validates every
//! length and every UTF-8 string, and never panics, whatever the bytes.
//! Content rules (which characters a name or a text may hold) are not
//! decoding errors: the room checks them with [`admit_name`] and
//! [`check_text`] and answers with a reason. They live in `names` and `text`,
//! over the Unicode tables of one version, [`UNICODE_VERSION`] (`unicode`).

use std::fmt;

mod names;
pub mod sealed;
mod text;
mod unicode;
#[cfg(test)]
mod vectors;

pub(crate) use names::nfkc_casefold;
pub use names::{
    admit_name, check_name, name_key, InvalidName, NameError, MAX_NAME_MARKS, RESERVED_NAMES,
};
pub use text::{
    check_text, is_bidi_control, must_escape, validate_text, Forbidden, TextError, MAX_TEXT_MARKS,
};
pub use unicode::UNICODE_VERSION;

/// First two bytes of every datagram: ASCII `UC`.
pub const MAGIC: [u8; 2] = *b"UC";
/// The protocol version this crate speaks.
pub const VERSION: u8 = 1;
/// No datagram, in either direction, is longer than this.
pub const MAX_DATAGRAM: usize = 1200;
/// Every JOIN is padded to exactly this many bytes.
pub const JOIN_SIZE: usize = 256;
/// Header length: magic, version, kind.
pub const HEADER_LEN: usize = 4;
/// A name has at most this many characters.
pub const MAX_NAME_CHARS: usize = 24;
/// A name has at most this many UTF-8 bytes (24 four-byte characters).
pub const MAX_NAME_BYTES: usize = 96;
/// A text has at most this many UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 1000;
/// Length of a JOIN cookie.
pub const COOKIE_LEN: usize = 16;
/// Length of an EVENTS header: the 4-byte header and `first_seq`.
pub const EVENTS_HEADER_LEN: usize = 8;

/// A session token (never 0 for a live session).
pub type Token = u64;
/// A JOIN cookie.
pub type Cookie = [u8; COOKIE_LEN];

/// Message kinds (the header's fourth byte).
mod kind {
    pub const JOIN: u8 = 0x01;
    pub const SAY: u8 = 0x02;
    pub const PRIVATE: u8 = 0x03;
    pub const WHO: u8 = 0x04;
    pub const LEAVE: u8 = 0x05;
    pub const PING: u8 = 0x06;
    pub const CHALLENGE: u8 = 0x81;
    pub const REFUSED: u8 = 0x82;
    pub const WELCOME: u8 = 0x83;
    pub const ACK: u8 = 0x84;
    pub const REJECT: u8 = 0x85;
    pub const EVENTS: u8 = 0x86;
    pub const BYE: u8 = 0x87;
    pub const PONG: u8 = 0x88;
    pub const WHO_PAGE: u8 = 0x89;
    pub const UNKNOWN_SESSION: u8 = 0x8A;
}

/// Event types inside EVENTS.
mod event_type {
    pub const JOINED: u8 = 0x01;
    pub const LEFT: u8 = 0x02;
    pub const SAID: u8 = 0x03;
    pub const PRIVATE_FROM: u8 = 0x04;
    pub const ADMIN: u8 = 0x05;
}

/// Why a datagram could not be decoded. Malformed datagrams are dropped and counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Malformed {
    /// Longer than [`MAX_DATAGRAM`].
    TooLong,
    /// Ends before a fixed field or a string does.
    Truncated,
    /// Not `UC`.
    BadMagic,
    /// Another protocol version.
    BadVersion,
    /// A kind or event type this version does not define (or one for the other direction).
    UnknownKind,
    /// A string length out of range, or a JOIN that is not [`JOIN_SIZE`] bytes.
    BadLength,
    /// A string that is not UTF-8.
    BadUtf8,
    /// Bytes after the last field.
    Trailing,
    /// A field with a value the protocol does not allow (an unknown reason code).
    BadValue,
}

impl fmt::Display for Malformed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Malformed::TooLong => "too long",
            Malformed::Truncated => "truncated",
            Malformed::BadMagic => "bad magic",
            Malformed::BadVersion => "bad version",
            Malformed::UnknownKind => "unknown kind",
            Malformed::BadLength => "bad length",
            Malformed::BadUtf8 => "not UTF-8",
            Malformed::Trailing => "trailing bytes",
            Malformed::BadValue => "bad value",
        })
    }
}

/// Why a JOIN is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefuseReason {
    /// `1`: a member already has a name with the same key.
    Taken = 1,
    /// `2`: the name breaks the name rules.
    InvalidName = 2,
    /// `3`: the name's key is a reserved one (`admin`, `server`, …).
    Reserved = 3,
    /// `4`: the room has its maximum number of members.
    RoomFull = 4,
}

/// Why a SAY or PRIVATE is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectReason {
    /// `1`: beyond the member's flood-control budget.
    RateLimited = 1,
    /// `2`: the text breaks the text rules.
    InvalidText = 2,
    /// `3`: no member has the PRIVATE's `to` name.
    NoSuchMember = 3,
}

/// Why a member left, in a LEFT event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftReason {
    /// `0`: the member sent LEAVE.
    Left = 0,
    /// `1`: nothing valid arrived from the member within the member timeout.
    TimedOut = 1,
    /// `2`: the admin removed the member.
    Removed = 2,
}

/// Why a session ended, in BYE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByeReason {
    /// `0`: you left (the answer to LEAVE).
    Left = 0,
    /// `1`: the admin removed you.
    Kicked = 1,
    /// `2`: the server is shutting down.
    Shutdown = 2,
}

macro_rules! code_enum {
    ($t:ty { $($v:ident = $n:expr),* }) => {
        impl $t {
            /// The value on the wire, or `None` for an unknown code.
            pub fn from_u8(b: u8) -> Option<Self> {
                match b { $($n => Some(<$t>::$v),)* _ => None }
            }
        }
    };
}
code_enum!(RefuseReason { Taken = 1, InvalidName = 2, Reserved = 3, RoomFull = 4 });
code_enum!(RejectReason { RateLimited = 1, InvalidText = 2, NoSuchMember = 3 });
code_enum!(LeftReason { Left = 0, TimedOut = 1, Removed = 2 });
code_enum!(ByeReason { Left = 0, Kicked = 1, Shutdown = 2 });

impl fmt::Display for RefuseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RefuseReason::Taken => "name taken",
            RefuseReason::InvalidName => "invalid name",
            RefuseReason::Reserved => "name reserved",
            RefuseReason::RoomFull => "room full",
        })
    }
}

impl fmt::Display for RejectReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            RejectReason::RateLimited => "rate limited",
            RejectReason::InvalidText => "invalid text",
            RejectReason::NoSuchMember => "no such member",
        })
    }
}

/// A datagram from a client to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// `0x01`: asks to join with a name (padded to [`JOIN_SIZE`] bytes).
    Join {
        /// Random per login attempt; every answer echoes it.
        nonce: u64,
        /// The token of the client's previous session, or 0.
        prev_token: Token,
        /// All zeros in the first JOIN; the cookie from CHALLENGE in the second.
        cookie: Cookie,
        /// The name asked for.
        name: &'a str,
    },
    /// `0x02`: a message to the room.
    Say {
        /// The session token from WELCOME.
        token: Token,
        /// The client's message number (shared with PRIVATE); the same for a retransmission.
        seq: u32,
        /// The message.
        text: &'a str,
    },
    /// `0x03`: a message to one member.
    Private {
        /// The session token from WELCOME.
        token: Token,
        /// The client's message number (shared with SAY); the same for a retransmission.
        seq: u32,
        /// The recipient's name.
        to: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `0x04`: asks for one page of the member list.
    Who {
        /// The session token from WELCOME.
        token: Token,
        /// Index of the first member wanted (0 for the first page).
        start: u32,
    },
    /// `0x05`: leaves the room (repeated until BYE or UNKNOWN_SESSION).
    Leave {
        /// The session token from WELCOME.
        token: Token,
    },
    /// `0x06`: a keepalive, answered with PONG.
    Ping {
        /// The session token from WELCOME.
        token: Token,
    },
}

impl ClientMsg<'_> {
    /// The session token, for every message but JOIN.
    pub fn token(&self) -> Option<Token> {
        match *self {
            ClientMsg::Join { .. } => None,
            ClientMsg::Say { token, .. }
            | ClientMsg::Private { token, .. }
            | ClientMsg::Who { token, .. }
            | ClientMsg::Leave { token }
            | ClientMsg::Ping { token } => Some(token),
        }
    }
}

/// One user-visible event inside EVENTS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// `0x01`: a member joined.
    Joined {
        /// The new member's name.
        name: &'a str,
    },
    /// `0x02`: a member left.
    Left {
        /// Why.
        reason: LeftReason,
        /// The member's name.
        name: &'a str,
    },
    /// `0x03`: a member said something to the room.
    Said {
        /// The sender's name, from the server's table.
        from: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `0x04`: a private message to the receiver.
    PrivateFrom {
        /// The sender's name, from the server's table.
        from: &'a str,
        /// The message.
        text: &'a str,
    },
    /// `0x05`: a message from the server's console.
    Admin {
        /// The message.
        text: &'a str,
    },
}

/// A datagram from the server to a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMsg<'a> {
    /// `0x81`: the answer to a JOIN without a valid cookie.
    Challenge {
        /// The JOIN's nonce.
        nonce: u64,
        /// The cookie to send back in the next JOIN.
        cookie: Cookie,
    },
    /// `0x82`: the JOIN is refused.
    Refused {
        /// The JOIN's nonce.
        nonce: u64,
        /// Why.
        reason: RefuseReason,
    },
    /// `0x83`: the client is a member.
    Welcome {
        /// The JOIN's nonce.
        nonce: u64,
        /// The session token (never 0) for every later datagram.
        token: Token,
        /// How many members there are, the newcomer included.
        members: u32,
        /// The member timeout, in milliseconds.
        timeout_ms: u32,
        /// The name as registered.
        name: &'a str,
    },
    /// `0x84`: the SAY or PRIVATE numbered `seq` was accepted (now or before).
    Ack {
        /// The acknowledged message number.
        seq: u32,
    },
    /// `0x85`: the SAY or PRIVATE numbered `seq` was not forwarded.
    Reject {
        /// The rejected message number.
        seq: u32,
        /// Why.
        reason: RejectReason,
    },
    /// `0x86`: events numbered `first_seq`, `first_seq + 1`, …; iterate with [`Events::iter`].
    Events {
        /// The number of the first event (per member, from 1, wrapping).
        first_seq: u32,
        /// The events, at least one.
        events: Events<'a>,
    },
    /// `0x87`: the session has ended; its token is dead.
    Bye {
        /// Why.
        reason: ByeReason,
    },
    /// `0x88`: the answer to PING.
    Pong {
        /// The number of the last event sent to this member (0 if none).
        last_seq: u32,
    },
    /// `0x89`: member names `start`, `start + 1`, …; iterate with [`Names::iter`].
    WhoPage {
        /// The index of the first name.
        start: u32,
        /// How many members there are now.
        total: u32,
        /// The names, as many as fit (maybe none).
        names: Names<'a>,
    },
    /// `0x8A`: the answer to a datagram whose token the server does not know.
    UnknownSession {
        /// That token, echoed.
        token: Token,
    },
}

/// The already validated event list of an EVENTS datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Events<'a>(&'a [u8]);

/// The already validated name list of a WHO_PAGE datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Names<'a>(&'a [u8]);

impl<'a> Events<'a> {
    /// The events, in order. Never fails: the bytes were checked by decoding.
    pub fn iter(&self) -> impl Iterator<Item = Event<'a>> + 'a {
        let mut r = Reader::new(self.0);
        std::iter::from_fn(move || {
            if r.is_empty() {
                None
            } else {
                read_event(&mut r).ok()
            }
        })
    }
}

impl<'a> Names<'a> {
    /// The names, in order. Never fails: the bytes were checked by decoding.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut r = Reader::new(self.0);
        std::iter::from_fn(move || if r.is_empty() { None } else { r.name().ok() })
    }
}

/// A bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }
    fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if self.buf.len() < n {
            return Err(Malformed::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], Malformed> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, Malformed> {
        Ok(self.array::<1>()?[0])
    }
    fn u16(&mut self) -> Result<u16, Malformed> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn str(&mut self, len: usize, max: usize) -> Result<&'a str, Malformed> {
        if len == 0 || len > max {
            return Err(Malformed::BadLength);
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed::BadUtf8)
    }
    fn name(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u8()? as usize;
        self.str(len, MAX_NAME_BYTES)
    }
    fn text(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u16()? as usize;
        self.str(len, MAX_TEXT_BYTES)
    }
    fn end(&self) -> Result<(), Malformed> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(Malformed::Trailing)
        }
    }
}

fn code<T>(v: Option<T>) -> Result<T, Malformed> {
    v.ok_or(Malformed::BadValue)
}

fn read_event<'a>(r: &mut Reader<'a>) -> Result<Event<'a>, Malformed> {
    Ok(match r.u8()? {
        event_type::JOINED => Event::Joined { name: r.name()? },
        event_type::LEFT => Event::Left {
            reason: code(LeftReason::from_u8(r.u8()?))?,
            name: r.name()?,
        },
        event_type::SAID => Event::Said {
            from: r.name()?,
            text: r.text()?,
        },
        event_type::PRIVATE_FROM => Event::PrivateFrom {
            from: r.name()?,
            text: r.text()?,
        },
        event_type::ADMIN => Event::Admin { text: r.text()? },
        _ => return Err(Malformed::UnknownKind),
    })
}

/// Checks the length and header of a datagram and returns its kind and body.
fn header(buf: &[u8]) -> Result<(u8, Reader<'_>), Malformed> {
    if buf.len() > MAX_DATAGRAM {
        return Err(Malformed::TooLong);
    }
    let mut r = Reader::new(buf);
    if r.array::<2>()? != MAGIC {
        return Err(Malformed::BadMagic);
    }
    if r.u8()? != VERSION {
        return Err(Malformed::BadVersion);
    }
    Ok((r.u8()?, r))
}

/// Decodes a datagram sent to the server.
pub fn decode_client(buf: &[u8]) -> Result<ClientMsg<'_>, Malformed> {
    let (kind, mut r) = header(buf)?;
    let msg = match kind {
        kind::JOIN => {
            if buf.len() != JOIN_SIZE {
                return Err(Malformed::BadLength);
            }
            let msg = ClientMsg::Join {
                nonce: r.u64()?,
                prev_token: r.u64()?,
                cookie: r.array()?,
                name: r.name()?,
            };
            return Ok(msg); // the rest is padding
        }
        kind::SAY => ClientMsg::Say {
            token: r.u64()?,
            seq: r.u32()?,
            text: r.text()?,
        },
        kind::PRIVATE => ClientMsg::Private {
            token: r.u64()?,
            seq: r.u32()?,
            to: r.name()?,
            text: r.text()?,
        },
        kind::WHO => ClientMsg::Who {
            token: r.u64()?,
            start: r.u32()?,
        },
        kind::LEAVE => ClientMsg::Leave { token: r.u64()? },
        kind::PING => ClientMsg::Ping { token: r.u64()? },
        _ => return Err(Malformed::UnknownKind),
    };
    r.end()?;
    Ok(msg)
}

/// Decodes a datagram sent to a client.
pub fn decode_server(buf: &[u8]) -> Result<ServerMsg<'_>, Malformed> {
    let (kind, mut r) = header(buf)?;
    let msg = match kind {
        kind::CHALLENGE => ServerMsg::Challenge {
            nonce: r.u64()?,
            cookie: r.array()?,
        },
        kind::REFUSED => ServerMsg::Refused {
            nonce: r.u64()?,
            reason: code(RefuseReason::from_u8(r.u8()?))?,
        },
        kind::WELCOME => ServerMsg::Welcome {
            nonce: r.u64()?,
            token: r.u64()?,
            members: r.u32()?,
            timeout_ms: r.u32()?,
            name: r.name()?,
        },
        kind::ACK => ServerMsg::Ack { seq: r.u32()? },
        kind::REJECT => ServerMsg::Reject {
            seq: r.u32()?,
            reason: code(RejectReason::from_u8(r.u8()?))?,
        },
        kind::EVENTS => {
            let first_seq = r.u32()?;
            let body = r.buf;
            if body.is_empty() {
                return Err(Malformed::Truncated);
            }
            while !r.is_empty() {
                read_event(&mut r)?;
            }
            ServerMsg::Events {
                first_seq,
                events: Events(body),
            }
        }
        kind::BYE => ServerMsg::Bye {
            reason: code(ByeReason::from_u8(r.u8()?))?,
        },
        kind::PONG => ServerMsg::Pong { last_seq: r.u32()? },
        kind::WHO_PAGE => {
            let start = r.u32()?;
            let total = r.u32()?;
            let body = r.buf;
            while !r.is_empty() {
                r.name()?;
            }
            ServerMsg::WhoPage {
                start,
                total,
                names: Names(body),
            }
        }
        kind::UNKNOWN_SESSION => ServerMsg::UnknownSession { token: r.u64()? },
        _ => return Err(Malformed::UnknownKind),
    };
    r.end()?;
    Ok(msg)
}

/// Appends the 4-byte header of a `kind` datagram.
pub fn put_header(out: &mut Vec<u8>, kind: u8) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind);
}

/// Appends a length-prefixed name. The caller keeps it within [`MAX_NAME_BYTES`].
pub fn put_name(out: &mut Vec<u8>, name: &str) {
    debug_assert!(!name.is_empty() && name.len() <= MAX_NAME_BYTES);
    out.push(name.len() as u8);
    out.extend_from_slice(name.as_bytes());
}

/// Appends a length-prefixed text. The caller keeps it within [`MAX_TEXT_BYTES`].
pub fn put_text(out: &mut Vec<u8>, text: &str) {
    debug_assert!(!text.is_empty() && text.len() <= MAX_TEXT_BYTES);
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text.as_bytes());
}

/// The 8-byte header of an EVENTS datagram whose first event is number `first_seq`.
pub fn events_header(first_seq: u32) -> [u8; EVENTS_HEADER_LEN] {
    let s = first_seq.to_be_bytes();
    [
        MAGIC[0],
        MAGIC[1],
        VERSION,
        kind::EVENTS,
        s[0],
        s[1],
        s[2],
        s[3],
    ]
}

impl Event<'_> {
    /// Appends this event (type and fields) to an EVENTS body.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            Event::Joined { name } => {
                out.push(event_type::JOINED);
                put_name(out, name);
            }
            Event::Left { reason, name } => {
                out.push(event_type::LEFT);
                out.push(reason as u8);
                put_name(out, name);
            }
            Event::Said { from, text } => {
                out.push(event_type::SAID);
                put_name(out, from);
                put_text(out, text);
            }
            Event::PrivateFrom { from, text } => {
                out.push(event_type::PRIVATE_FROM);
                put_name(out, from);
                put_text(out, text);
            }
            Event::Admin { text } => {
                out.push(event_type::ADMIN);
                put_text(out, text);
            }
        }
    }

    /// Encoded length of this event.
    pub fn encoded_len(&self) -> usize {
        match *self {
            Event::Joined { name } => 2 + name.len(),
            Event::Left { name, .. } => 3 + name.len(),
            Event::Said { from, text } | Event::PrivateFrom { from, text } => {
                4 + from.len() + text.len()
            }
            Event::Admin { text } => 3 + text.len(),
        }
    }
}

impl ClientMsg<'_> {
    /// Appends this message as one datagram (JOIN padded to [`JOIN_SIZE`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        let start = out.len();
        match *self {
            ClientMsg::Join {
                nonce,
                prev_token,
                cookie,
                name,
            } => {
                put_header(out, kind::JOIN);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&prev_token.to_be_bytes());
                out.extend_from_slice(&cookie);
                put_name(out, name);
                out.resize(start + JOIN_SIZE, 0);
            }
            ClientMsg::Say { token, seq, text } => {
                put_header(out, kind::SAY);
                out.extend_from_slice(&token.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                put_text(out, text);
            }
            ClientMsg::Private {
                token,
                seq,
                to,
                text,
            } => {
                put_header(out, kind::PRIVATE);
                out.extend_from_slice(&token.to_be_bytes());
                out.extend_from_slice(&seq.to_be_bytes());
                put_name(out, to);
                put_text(out, text);
            }
            ClientMsg::Who { token, start } => {
                put_header(out, kind::WHO);
                out.extend_from_slice(&token.to_be_bytes());
                out.extend_from_slice(&start.to_be_bytes());
            }
            ClientMsg::Leave { token } => {
                put_header(out, kind::LEAVE);
                out.extend_from_slice(&token.to_be_bytes());
            }
            ClientMsg::Ping { token } => {
                put_header(out, kind::PING);
                out.extend_from_slice(&token.to_be_bytes());
            }
        }
    }

    /// This message as a new datagram.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

impl ServerMsg<'_> {
    /// Appends this message as one datagram.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match *self {
            ServerMsg::Challenge { nonce, cookie } => {
                put_header(out, kind::CHALLENGE);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&cookie);
            }
            ServerMsg::Refused { nonce, reason } => {
                put_header(out, kind::REFUSED);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.push(reason as u8);
            }
            ServerMsg::Welcome {
                nonce,
                token,
                members,
                timeout_ms,
                name,
            } => {
                put_header(out, kind::WELCOME);
                out.extend_from_slice(&nonce.to_be_bytes());
                out.extend_from_slice(&token.to_be_bytes());
                out.extend_from_slice(&members.to_be_bytes());
                out.extend_from_slice(&timeout_ms.to_be_bytes());
                put_name(out, name);
            }
            ServerMsg::Ack { seq } => {
                put_header(out, kind::ACK);
                out.extend_from_slice(&seq.to_be_bytes());
            }
            ServerMsg::Reject { seq, reason } => {
                put_header(out, kind::REJECT);
                out.extend_from_slice(&seq.to_be_bytes());
                out.push(reason as u8);
            }
            ServerMsg::Events { first_seq, events } => {
                out.extend_from_slice(&events_header(first_seq));
                out.extend_from_slice(events.0);
            }
            ServerMsg::Bye { reason } => {
                put_header(out, kind::BYE);
                out.push(reason as u8);
            }
            ServerMsg::Pong { last_seq } => {
                put_header(out, kind::PONG);
                out.extend_from_slice(&last_seq.to_be_bytes());
            }
            ServerMsg::WhoPage {
                start,
                total,
                names,
            } => {
                put_header(out, kind::WHO_PAGE);
                out.extend_from_slice(&start.to_be_bytes());
                out.extend_from_slice(&total.to_be_bytes());
                out.extend_from_slice(names.0);
            }
            ServerMsg::UnknownSession { token } => {
                put_header(out, kind::UNKNOWN_SESSION);
                out.extend_from_slice(&token.to_be_bytes());
            }
        }
    }

    /// This message as a new datagram.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(64);
        self.encode(&mut v);
        v
    }
}

/// Encodes a WHO_PAGE from `names[start..]`, as many as fit in [`MAX_DATAGRAM`].
/// Returns how many names it holds.
pub fn encode_who_page<'n>(
    out: &mut Vec<u8>,
    start: u32,
    total: u32,
    names: impl IntoIterator<Item = &'n str>,
) -> usize {
    let begin = out.len();
    put_header(out, kind::WHO_PAGE);
    out.extend_from_slice(&start.to_be_bytes());
    out.extend_from_slice(&total.to_be_bytes());
    let mut n = 0;
    for name in names {
        if out.len() - begin + 1 + name.len() > MAX_DATAGRAM {
            break;
        }
        put_name(out, name);
        n += 1;
    }
    n
}

/// Encodes a list of already encoded events as the body of an EVENTS datagram.
/// (Used by tests and clients; the server assembles header and bodies itself.)
pub fn encode_events(out: &mut Vec<u8>, first_seq: u32, events: &[Event<'_>]) {
    out.extend_from_slice(&events_header(first_seq));
    for e in events {
        e.encode(out);
    }
}

/// A small deterministic generator for randomized tests (xorshift64*), shared
/// by the protocol's and the room's tests.
#[cfg(test)]
pub(crate) struct TestRng(pub(crate) u64);

#[cfg(test)]
impl TestRng {
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_samples() -> Vec<ClientMsg<'static>> {
        vec![
            ClientMsg::Join {
                nonce: 7,
                prev_token: 0,
                cookie: [0; 16],
                name: "alice",
            },
            ClientMsg::Join {
                nonce: u64::MAX,
                prev_token: 42,
                cookie: [9; 16],
                name: "𠀀".repeat(24).leak(),
            },
            ClientMsg::Say {
                token: 1,
                seq: 2,
                text: "hi",
            },
            ClientMsg::Say {
                token: u64::MAX,
                seq: u32::MAX,
                text: "x".repeat(1000).leak(),
            },
            ClientMsg::Private {
                token: 5,
                seq: 6,
                to: "bob",
                text: "psst",
            },
            ClientMsg::Who {
                token: 3,
                start: 10,
            },
            ClientMsg::Leave { token: 3 },
            ClientMsg::Ping { token: 3 },
        ]
    }

    fn server_samples() -> Vec<Vec<u8>> {
        let mut events = Vec::new();
        encode_events(
            &mut events,
            17,
            &[
                Event::Joined { name: "bob" },
                Event::Left {
                    reason: LeftReason::TimedOut,
                    name: "carol",
                },
                Event::Said {
                    from: "bob",
                    text: "hello",
                },
                Event::PrivateFrom {
                    from: "dave",
                    text: "secret",
                },
                Event::Admin {
                    text: "maintenance",
                },
            ],
        );
        let mut who = Vec::new();
        encode_who_page(&mut who, 0, 3, ["a", "bb", "ccc"]);
        let msgs = [
            ServerMsg::Challenge {
                nonce: 1,
                cookie: [3; 16],
            },
            ServerMsg::Refused {
                nonce: 1,
                reason: RefuseReason::Reserved,
            },
            ServerMsg::Welcome {
                nonce: 1,
                token: 99,
                members: 2,
                timeout_ms: 30_000,
                name: "alice",
            },
            ServerMsg::Ack { seq: 5 },
            ServerMsg::Reject {
                seq: 5,
                reason: RejectReason::RateLimited,
            },
            ServerMsg::Bye {
                reason: ByeReason::Kicked,
            },
            ServerMsg::Pong { last_seq: 12 },
            ServerMsg::UnknownSession { token: 77 },
        ];
        let mut out: Vec<Vec<u8>> = msgs.iter().map(|m| m.to_vec()).collect();
        out.push(events);
        out.push(who);
        out
    }

    #[test]
    fn client_messages_round_trip_with_documented_sizes() {
        for msg in client_samples() {
            let bytes = msg.to_vec();
            assert!(bytes.len() <= MAX_DATAGRAM);
            assert_eq!(decode_client(&bytes), Ok(msg));
            if let ClientMsg::Join { .. } = msg {
                assert_eq!(bytes.len(), JOIN_SIZE);
            }
        }
        let max_private = ClientMsg::Private {
            token: 1,
            seq: 1,
            to: &"𠀀".repeat(24),
            text: &"x".repeat(1000),
        };
        assert_eq!(max_private.to_vec().len(), 1115);
        assert_eq!(ClientMsg::Ping { token: 1 }.to_vec().len(), 12);
    }

    #[test]
    fn server_messages_round_trip() {
        for bytes in server_samples() {
            let msg = decode_server(&bytes).unwrap();
            assert_eq!(msg.to_vec(), bytes);
        }
        let ev = &server_samples()[8];
        let ServerMsg::Events { first_seq, events } = decode_server(ev).unwrap() else {
            panic!("not events")
        };
        assert_eq!(first_seq, 17);
        let list: Vec<_> = events.iter().collect();
        assert_eq!(list.len(), 5);
        assert_eq!(
            list[2],
            Event::Said {
                from: "bob",
                text: "hello"
            }
        );
        let who = &server_samples()[9];
        let ServerMsg::WhoPage { total, names, .. } = decode_server(who).unwrap() else {
            panic!("not a who page")
        };
        assert_eq!(total, 3);
        assert_eq!(names.iter().collect::<Vec<_>>(), ["a", "bb", "ccc"]);
    }

    #[test]
    fn biggest_event_fits_one_datagram() {
        let e = Event::Said {
            from: &"𠀀".repeat(24),
            text: &"x".repeat(1000),
        };
        let mut out = Vec::new();
        encode_events(&mut out, 1, &[e]);
        assert_eq!(out.len(), EVENTS_HEADER_LEN + e.encoded_len());
        assert!(out.len() <= MAX_DATAGRAM);
    }

    #[test]
    fn who_page_stops_at_the_datagram_limit() {
        let names: Vec<String> = (0..200).map(|i| format!("{i:0>24}")).collect();
        let mut out = Vec::new();
        let n = encode_who_page(&mut out, 0, 200, names.iter().map(|s| s.as_str()));
        assert!(out.len() <= MAX_DATAGRAM);
        assert_eq!(n, (MAX_DATAGRAM - 12) / 25);
        let ServerMsg::WhoPage { names: got, .. } = decode_server(&out).unwrap() else {
            panic!()
        };
        assert_eq!(got.iter().count(), n);
    }

    #[test]
    fn each_malformed_shape_is_named() {
        let say = ClientMsg::Say {
            token: 1,
            seq: 1,
            text: "hi",
        }
        .to_vec();
        assert_eq!(decode_client(&[]), Err(Malformed::Truncated));
        assert_eq!(decode_client(b"UC"), Err(Malformed::Truncated));
        assert_eq!(decode_client(b"XX\x01\x02"), Err(Malformed::BadMagic));
        assert_eq!(decode_client(b"UC\x02\x02"), Err(Malformed::BadVersion));
        assert_eq!(decode_client(b"UC\x01\x7f"), Err(Malformed::UnknownKind));
        assert_eq!(decode_client(b"UC\x01\x86"), Err(Malformed::UnknownKind));
        assert_eq!(
            decode_client(&say[..say.len() - 1]),
            Err(Malformed::Truncated)
        );
        let mut long = say.clone();
        long.push(0);
        assert_eq!(decode_client(&long), Err(Malformed::Trailing));
        let mut zero_len = say.clone();
        zero_len[16] = 0;
        zero_len[17] = 0;
        zero_len.truncate(18);
        assert_eq!(decode_client(&zero_len), Err(Malformed::BadLength));
        let mut bad_utf8 = say.clone();
        bad_utf8[18] = 0xff;
        assert_eq!(decode_client(&bad_utf8), Err(Malformed::BadUtf8));
        // A character cut in half (the Python version's death at its 1024-byte buffer).
        let cut = ClientMsg::Say {
            token: 1,
            seq: 1,
            text: "界",
        }
        .to_vec();
        let mut cut = cut[..cut.len() - 1].to_vec();
        cut[17] = 2;
        assert_eq!(decode_client(&cut), Err(Malformed::BadUtf8));
        let mut join = ClientMsg::Join {
            nonce: 1,
            prev_token: 0,
            cookie: [0; 16],
            name: "a",
        }
        .to_vec();
        join.pop();
        assert_eq!(decode_client(&join), Err(Malformed::BadLength));
        assert_eq!(decode_client(&[0u8; 1201]), Err(Malformed::TooLong));
        assert_eq!(decode_server(b"UC\x01\x87\x09"), Err(Malformed::BadValue));
        assert_eq!(
            decode_server(b"UC\x01\x86\0\0\0\x01"),
            Err(Malformed::Truncated)
        );
    }

    #[test]
    fn decoding_random_and_mutated_bytes_never_panics() {
        let mut rng = TestRng(0x9E37_79B9_7F4A_7C15);
        let mut seeds: Vec<Vec<u8>> = client_samples().iter().map(|m| m.to_vec()).collect();
        seeds.extend(server_samples());
        for _ in 0..200_000 {
            let mut buf = if rng.below(4) == 0 {
                let len = rng.below(MAX_DATAGRAM + 50);
                (0..len).map(|_| rng.next() as u8).collect()
            } else {
                seeds[rng.below(seeds.len())].clone()
            };
            for _ in 0..rng.below(4) {
                match rng.below(3) {
                    0 if !buf.is_empty() => {
                        let i = rng.below(buf.len());
                        buf[i] = rng.next() as u8;
                    }
                    1 => buf.truncate(rng.below(buf.len() + 1)),
                    _ => buf.push(rng.next() as u8),
                }
            }
            if let Ok(msg) = decode_client(&buf) {
                // What decodes re-encodes to a valid datagram of the same kind.
                assert!(decode_client(&msg.to_vec()).is_ok());
            }
            if let Ok(msg) = decode_server(&buf) {
                assert_eq!(msg.to_vec(), buf);
                if let ServerMsg::Events { events, .. } = msg {
                    assert!(events.iter().count() >= 1);
                }
            }
        }
    }
}
