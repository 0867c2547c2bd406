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
/// A name has at most this many characters.
pub const MAX_NAME_CHARS: usize = 24;
/// A name has at most this many UTF-8 bytes (24 four-byte characters).
pub const MAX_NAME_BYTES: usize = 96;
/// A text has at most this many UTF-8 bytes.
pub const MAX_TEXT_BYTES: usize = 1000;

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
