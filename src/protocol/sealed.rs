//! The messages inside a sealed DATA body (PROTOCOL.md version 2, "The sealed
//! body"): every client → server and server → client body, the events, and
//! the reason codes, flags and refusal details. Pure: no I/O, no state.
//!
//! * Decoding ([`decode_client`], [`decode_server`]) borrows from the body,
//!   checks every length, code and UTF-8 string, and never panics, whatever
//!   the bytes. Content rules (which characters a name or text may hold) are
//!   not decoding errors: the room checks them ([`super::admit_name`],
//!   [`super::validate_text`]) and answers with a reason.
//! * Encoding (`encode` on each message, the writers for the bodies that run
//!   to their end) writes into the caller's buffer, at most
//!   [`MAX_BODY`](crate::session::MAX_BODY) bytes, and refuses (never
//!   truncates) what would be malformed.
//!
//! The session makes and reads the rekey's bodies itself (`crate::session`,
//! which takes the whole body); they are decoded here too, with the path
//! check's, so that a receiver dispatches every body through one function.

#[path = "sealed_client.rs"]
mod client;
#[path = "sealed_codes.rs"]
mod codes;
#[path = "sealed_events.rs"]
mod events;
#[path = "sealed_server.rs"]
mod server;
#[cfg(test)]
#[path = "sealed_tests.rs"]
mod tests;
#[cfg(test)]
#[path = "sealed_vectors.rs"]
mod vectors;

pub use client::{decode_client, encode_nack, ClientMsg, NackRanges};
pub use codes::{ByeReason, LeftReason, LineFlags, NameRule, Refusal, RejectReason, WelcomeFlags};
pub use events::{EncodedEvent, Event, Events, EventsWriter, Line, MessageId};
pub use server::{decode_server, Names, ServerMsg, Welcome, WhoPageWriter};

use super::{Malformed, Reader, MAX_NAME_BYTES, MAX_TEXT_BYTES};
use crate::session::MAX_BODY;

/// Client → server body types (the body's first byte).
pub mod client_type {
    use crate::session::body_type;
    /// `name` (any length: rule 1 of the names is answered, not dropped).
    pub const JOIN: u8 = 0x01;
    /// `ticket`, `epoch u32`, `last_room_seq u64`, `lowest_unacked u32`.
    pub const RESUME: u8 = 0x02;
    /// `seq u32`, `text`.
    pub const SAY: u8 = 0x03;
    /// `seq u32`, `text`: an action (`/me waves`).
    pub const ME: u8 = 0x04;
    /// `seq u32`, `to name`, `text`.
    pub const PRIVATE: u8 = 0x05;
    /// `start u32`.
    pub const WHO: u8 = 0x06;
    /// No fields.
    pub const LEAVE: u8 = 0x07;
    /// `last_event u32`.
    pub const KEEPALIVE: u8 = 0x08;
    /// `count u8`, then `count` × (`first u32`, `last u32`).
    pub const NACK: u8 = 0x09;
    /// `before u64`, `max u8`.
    pub const HISTORY: u8 = 0x0A;
    /// `data [8]` (made and read by the session's path check).
    pub const PATH_RESPONSE: u8 = body_type::PATH_RESPONSE;
    /// `new_id_c u64`, Noise message 1 (made and read by the session's rekey).
    pub const REKEY_INIT: u8 = body_type::REKEY_INIT;
}

/// Server → client body types (the body's first byte).
pub mod server_type {
    use crate::session::body_type;
    /// The answer to an accepted JOIN or RESUME.
    pub const WELCOME: u8 = 0x81;
    /// `reason u8`, `detail u8`, `like name0`.
    pub const REFUSED: u8 = 0x82;
    /// `seq u32`.
    pub const ACK: u8 = 0x83;
    /// `seq u32`, `reason u8`.
    pub const REJECT: u8 = 0x84;
    /// `first_event u32`, then events to the end of the body.
    pub const EVENTS: u8 = 0x85;
    /// `reason u8`, `missed u32`, `text0`.
    pub const BYE: u8 = 0x86;
    /// `last_event u32`.
    pub const KEEPALIVE: u8 = 0x87;
    /// `start u32`, `total u32`, then names to the end of the body.
    pub const WHO_PAGE: u8 = 0x88;
    /// `data [8]` (made by the session's path check).
    pub const PATH_CHALLENGE: u8 = body_type::PATH_CHALLENGE;
    /// Noise message 2 (made and read by the session's rekey).
    pub const REKEY_RESPONSE: u8 = body_type::REKEY_RESPONSE;
    /// `before u64`, `more u8`, then room messages to the end of the body.
    pub const HISTORY_PAGE: u8 = 0x8B;
    /// `first_event u32`, `count u32`: events no longer kept.
    pub const LOST: u8 = 0x8C;
}

/// Event types inside EVENTS and HISTORY_PAGE.
pub mod event_type {
    /// Padding: this byte and every byte after it to the end of an EVENTS
    /// body are zeros, ignored (PROTOCOL.md "Events").
    pub const PADDING: u8 = 0x00;
    /// `name`.
    pub const JOINED: u8 = 0x01;
    /// `reason u8`, `name`.
    pub const LEFT: u8 = 0x02;
    /// A room message: see [`super::Line`].
    pub const SAID: u8 = 0x03;
    /// `time_ms u64`, `client_id u64`, `seq u32`, `from name`, `text`.
    pub const PRIVATE_FROM: u8 = 0x04;
    /// A room message: `room_seq u64`, `time_ms u64`, `flags u8`, `text`.
    pub const ADMIN: u8 = 0x05;
    /// A room message laid out as SAID.
    pub const ME: u8 = 0x06;
    /// `first_room_seq u64`, `count u32`.
    pub const GAP: u8 = 0x07;
}

/// The longest resume ticket.
pub const MAX_TICKET: usize = 255;
/// The most ranges in one NACK.
pub const MAX_NACK_RANGES: usize = 32;
/// The most room messages one HISTORY asks for.
pub const MAX_HISTORY: u8 = 50;
/// The length of a path challenge's data.
pub const PATH_DATA_LEN: usize = 8;
/// The length of the Noise message 1 in REKEY_INIT: the ephemeral X25519 key.
pub const REKEY_MESSAGE1_LEN: usize = 32;
/// The first bytes of an EVENTS body: type and `first_event`.
pub const EVENTS_HEADER_LEN: usize = 5;

/// Writes one body into the caller's buffer, at most [`MAX_BODY`] bytes.
pub(super) struct Writer<'b> {
    out: &'b mut [u8],
    len: usize,
}

impl<'b> Writer<'b> {
    /// A writer at the start of `out` (of which at most [`MAX_BODY`] bytes are used).
    fn new(out: &'b mut [u8]) -> Self {
        Writer { out, len: 0 }
    }
    /// The bytes written so far.
    fn len(&self) -> usize {
        self.len
    }
    /// How many more bytes fit.
    fn room(&self) -> usize {
        self.out.len().min(MAX_BODY) - self.len
    }
    fn put(&mut self, bytes: &[u8]) -> Result<(), Malformed> {
        if bytes.len() > self.room() {
            return Err(Malformed::TooLong);
        }
        self.out[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        Ok(())
    }
    fn u8(&mut self, v: u8) -> Result<(), Malformed> {
        self.put(&[v])
    }
    fn u32(&mut self, v: u32) -> Result<(), Malformed> {
        self.put(&v.to_be_bytes())
    }
    fn u64(&mut self, v: u64) -> Result<(), Malformed> {
        self.put(&v.to_be_bytes())
    }
    /// `u8 len` and the bytes, with `min <= len <= max`.
    fn short(&mut self, bytes: &[u8], min: usize, max: usize) -> Result<(), Malformed> {
        if bytes.len() < min || bytes.len() > max.min(255) {
            return Err(Malformed::BadLength);
        }
        self.u8(bytes.len() as u8)?;
        self.put(bytes)
    }
    /// `u16 len` and the bytes, with `min <= len <= max`.
    fn long(&mut self, bytes: &[u8], min: usize, max: usize) -> Result<(), Malformed> {
        if bytes.len() < min || bytes.len() > max.min(65535) {
            return Err(Malformed::BadLength);
        }
        self.put(&(bytes.len() as u16).to_be_bytes())?;
        self.put(bytes)
    }
    fn name(&mut self, name: &str) -> Result<(), Malformed> {
        self.short(name.as_bytes(), 1, MAX_NAME_BYTES)
    }
    fn name0(&mut self, name: &str) -> Result<(), Malformed> {
        self.short(name.as_bytes(), 0, MAX_NAME_BYTES)
    }
    fn text(&mut self, text: &str) -> Result<(), Malformed> {
        self.long(text.as_bytes(), 1, MAX_TEXT_BYTES)
    }
    fn text0(&mut self, text: &str) -> Result<(), Malformed> {
        self.long(text.as_bytes(), 0, MAX_TEXT_BYTES)
    }
    /// Forgets what was written after the first `len` bytes.
    fn truncate(&mut self, len: usize) {
        self.len = self.len.min(len);
    }
    /// Overwrites the byte at `at`, already written.
    fn set(&mut self, at: usize, v: u8) {
        if at < self.len {
            self.out[at] = v;
        }
    }
}

impl<'a> Reader<'a> {
    /// `u8 len` and that many bytes, `min <= len <= max`.
    fn short_bytes(&mut self, min: usize, max: usize) -> Result<&'a [u8], Malformed> {
        let len = self.u8()? as usize;
        if len < min || len > max {
            return Err(Malformed::BadLength);
        }
        self.take(len)
    }
    /// A `name0`: a name or nothing.
    fn name0(&mut self) -> Result<&'a str, Malformed> {
        let bytes = self.short_bytes(0, MAX_NAME_BYTES)?;
        std::str::from_utf8(bytes).map_err(|_| Malformed::BadUtf8)
    }
    /// A `text0`: a text or nothing.
    fn text0(&mut self) -> Result<&'a str, Malformed> {
        let len = self.u16()? as usize;
        if len > MAX_TEXT_BYTES {
            return Err(Malformed::BadLength);
        }
        std::str::from_utf8(self.take(len)?).map_err(|_| Malformed::BadUtf8)
    }
    /// The bytes not read yet (the list that runs to the end of a body).
    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }
}

/// Checks the length of a body before it is decoded.
fn body_reader(body: &[u8]) -> Result<(u8, Reader<'_>), Malformed> {
    if body.len() > MAX_BODY {
        return Err(Malformed::TooLong);
    }
    let mut r = Reader::new(body);
    Ok((r.u8()?, r))
}

/// `a` is before `b` in RFC 1982 serial order over `u32`: `(b - a) mod 2^32`
/// is in `1..2^31`.
pub fn serial_before(a: u32, b: u32) -> bool {
    let d = b.wrapping_sub(a);
    d != 0 && d < 1 << 31
}
