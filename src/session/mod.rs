//! The sealed session of PROTOCOL.md version 2, sans-IO: bytes and time in,
//! bytes out. No sockets, no clock reads (the caller passes `Instant`s and
//! Unix seconds); the only thing taken from the system is the randomness of
//! the Noise ephemeral keys, inside `snow`.
//!
//! * [`cookie`]: the stateless cookie (keyed BLAKE2s over window and address).
//! * [`handshake`]: INIT, COOKIE and RESPONSE, the client's states and the
//!   server's answer over `Noise_NX_25519_ChaChaPoly_BLAKE2s` (the parts the
//!   rekey shares too).
//! * [`rekey`]: the rekey handshake carried inside a session.
//! * [`transport`]: an established [`Session`]: ids, counter, replay window,
//!   sealing and opening one DATA datagram, rekey deadlines.
//! * `cipher`: the resolver giving snow a compact ChaCha20-Poly1305 where a
//!   side opens (ring's full key only where it seals).
//! * [`replay`]: the sliding replay window of 1024 counters.
//! * [`reset`]: stateless reset tokens and the RESET datagram.
//! * [`path`]: the server's path check of a roaming member.

mod cipher;
pub mod cookie;
pub mod handshake;
pub mod path;
pub mod rekey;
pub mod replay;
pub mod reset;
#[cfg(test)]
mod tests;
pub mod transport;
#[cfg(test)]
pub(crate) mod vectors;

pub use cookie::{cookie_datagram, parse_cookie, CookieKey};
pub use handshake::{
    parse_init, ClientHandshake, Established, HandshakeError, Init, ServerKey, INIT_PROLOGUE_LEN,
};
pub use path::Path;
pub use rekey::ClientRekey;
pub use replay::ReplayWindow;
pub use reset::{parse_reset, ResetKey};
pub use transport::{parse_data_header, DataHeader, OpenError, Opened, SealError, Session};

use blake2::digest::consts::U32;
use blake2::digest::generic_array::{ArrayLength, GenericArray};
use blake2::digest::typenum::{IsLessOrEqual, LeEq, NonZero};
use blake2::digest::{KeyInit, Mac};
use blake2::Blake2sMac;
use std::time::Duration;

/// First two bytes of every datagram: ASCII `UC` (the one constant of [`crate::protocol`]).
pub use crate::protocol::MAGIC;
/// The protocol version of this module.
pub const VERSION: u8 = 2;
/// No datagram, in either direction, is longer than this (the one constant of [`crate::protocol`]).
pub use crate::protocol::MAX_DATAGRAM;
/// The one handshake of version 2.
pub const NOISE_PARAMS: &str = "Noise_NX_25519_ChaChaPoly_BLAKE2s";

/// The clear kinds (the header's fourth byte).
pub mod kind {
    /// Handshake message 1 (client → server), exactly [`super::INIT_SIZE`] bytes.
    pub const INIT: u8 = 0x01;
    /// The cookie challenge (server → client).
    pub const COOKIE: u8 = 0x02;
    /// Handshake message 2 (server → client).
    pub const RESPONSE: u8 = 0x03;
    /// A sealed datagram (both ways).
    pub const DATA: u8 = 0x04;
    /// A stateless reset (server → client).
    pub const RESET: u8 = 0x05;
}

/// The sealed body types this module makes and reads (the others belong to
/// the protocol module).
pub mod body_type {
    /// Client → server: the echo of a path challenge, `data [8]`.
    pub const PATH_RESPONSE: u8 = 0x0B;
    /// Client → server: `new_id_c u64` and Noise message 1 (32 bytes).
    pub const REKEY_INIT: u8 = 0x0C;
    /// Server → client: `data [8]`, sent to a member's new address.
    pub const PATH_CHALLENGE: u8 = 0x89;
    /// Server → client: Noise message 2 (124 bytes).
    pub const REKEY_RESPONSE: u8 = 0x8A;
}

/// Every INIT is exactly this long.
pub const INIT_SIZE: usize = 256;
/// A COOKIE datagram: header, `id_c`, cookie.
pub const COOKIE_SIZE: usize = 28;
/// A RESPONSE datagram: header, `id_c`, Noise message 2.
pub const RESPONSE_SIZE: usize = 12 + NOISE_MSG2_LEN;
/// A RESET datagram: header, id, token.
pub const RESET_SIZE: usize = 28;
const _: () = assert!(COOKIE_SIZE == 28 && RESET_SIZE == 28);
/// Noise message 2 of NX with the 28-byte payload: e, sealed s, sealed payload.
pub const NOISE_MSG2_LEN: usize = 32 + 48 + HANDSHAKE_PAYLOAD_LEN + TAG_LEN;
/// The handshake payload: `id_s`, reset token, `rekey_after_s`.
pub const HANDSHAKE_PAYLOAD_LEN: usize = 28;
/// The clear header of DATA: magic, version, kind, receiver id, counter.
pub const DATA_HEADER_LEN: usize = 20;
/// The AEAD tag.
pub const TAG_LEN: usize = 16;
/// What sealing adds to a body: the clear header, its sealed copy, the tag.
pub const DATA_OVERHEAD: usize = 2 * DATA_HEADER_LEN + TAG_LEN;
/// The longest sealed body.
pub const MAX_BODY: usize = MAX_DATAGRAM - DATA_OVERHEAD;
/// The shortest DATA datagram (a one-byte body).
pub const MIN_DATA: usize = DATA_OVERHEAD + 1;
/// Client DATA datagrams are padded to at least this size.
pub const MIN_CLIENT_DATAGRAM: usize = 80;
/// The size of a sealed PATH_CHALLENGE datagram (type and 8 bytes).
pub const PATH_CHALLENGE_SIZE: usize = DATA_OVERHEAD + 9;
/// Counters per receiving key that the replay window covers.
pub const REPLAY_WINDOW: u64 = 1024;
/// No counter at or above this is used or accepted.
pub const REKEY_AFTER_MESSAGES: u64 = 1 << 60;
/// The default age after which the client re-keys a session.
pub const REKEY_AFTER_TIME: Duration = Duration::from_secs(120);
/// A session is not used once it is this much older than its rekey age.
pub const REJECT_AFTER_EXTRA: Duration = Duration::from_secs(60);
/// The old session is still read this long after a rekey.
pub const REKEY_GRACE: Duration = Duration::from_secs(10);
/// A cookie window, in seconds; a cookie is accepted in its window and the next.
pub const COOKIE_WINDOW_SECS: u64 = 30;
/// A completed handshake with no JOIN is dropped after this.
pub const HALF_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// A session id: random, never 0; the receiver's id is in every DATA.
pub type SessionId = u64;
/// A cookie.
pub type Cookie = [u8; 16];
/// A stateless reset token.
pub type ResetToken = [u8; 16];

/// The 4-byte clear header of `kind`.
fn header(kind: u8) -> [u8; 4] {
    [MAGIC[0], MAGIC[1], VERSION, kind]
}

/// The kind of a datagram with a valid magic and version, or `None`.
pub fn clear_kind(datagram: &[u8]) -> Option<u8> {
    match datagram {
        [m0, m1, v, k, ..] if [*m0, *m1] == MAGIC && *v == VERSION => Some(*k),
        _ => None,
    }
}

/// A 28-byte datagram of `kind`: header, `id`, 16 bytes (COOKIE, RESET).
fn id_datagram(kind: u8, id: SessionId, bytes: &[u8; 16]) -> [u8; 28] {
    let mut d = [0u8; 28];
    d[..4].copy_from_slice(&header(kind));
    d[4..12].copy_from_slice(&id.to_be_bytes());
    d[12..].copy_from_slice(bytes);
    d
}

/// The id and the 16 bytes of a 28-byte datagram of `kind`, or `None`.
fn parse_id_datagram(kind: u8, datagram: &[u8]) -> Option<(SessionId, [u8; 16])> {
    if datagram.len() != 28 || clear_kind(datagram) != Some(kind) {
        return None;
    }
    Some((u64_at(datagram, 4), array_at(datagram, 12)))
}

/// Reads a big-endian `u64` at `at` (the caller checked the length).
fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(b)
}

/// Reads an array at `at` (the caller checked the length).
fn array_at<const N: usize>(buf: &[u8], at: usize) -> [u8; N] {
    let mut a = [0u8; N];
    a.copy_from_slice(&buf[at..at + N]);
    a
}

/// Keyed BLAKE2s (RFC 7693) with digest size `N` (a parameter of the hash,
/// not a truncation) over the concatenation of `parts`.
fn keyed_blake2s<N>(key: &[u8; 32], parts: &[&[u8]]) -> GenericArray<u8, N>
where
    N: ArrayLength<u8> + IsLessOrEqual<U32>,
    LeEq<N, U32>: NonZero,
{
    let mut mac = <Blake2sMac<N> as KeyInit>::new(key.into());
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes()
}

/// Compares two byte strings in time independent of their contents.
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod constant_tests {
    use super::*;

    #[test]
    fn sizes_match_protocol_md() {
        assert_eq!(RESPONSE_SIZE, 136);
        assert_eq!(NOISE_MSG2_LEN, 124);
        assert_eq!(MAX_BODY, 1144);
        assert_eq!(MIN_DATA, 57);
        assert_eq!(PATH_CHALLENGE_SIZE, 65);
        const { assert!(MIN_CLIENT_DATAGRAM >= PATH_CHALLENGE_SIZE) };
        const { assert!(COOKIE_SIZE < INIT_SIZE && RESPONSE_SIZE < INIT_SIZE) };
        const { assert!(RESET_SIZE < MIN_DATA) };
    }

    #[test]
    fn clear_kind_checks_magic_and_version() {
        assert_eq!(clear_kind(b"UC\x02\x04rest"), Some(kind::DATA));
        assert_eq!(clear_kind(b"UC\x01\x04rest"), None);
        assert_eq!(clear_kind(b"UD\x02\x04"), None);
        assert_eq!(clear_kind(b"UC\x02"), None);
    }

    #[test]
    fn ct_eq_compares_length_and_bytes() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
    }
}
