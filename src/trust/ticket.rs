//! Resume tickets: what the server hands a member in WELCOME so that it can
//! come back after lost contact or a restart, and what only that server (the
//! same long-term key) can read or make.
//!
//! A ticket holds the member's name as it registered it, its client id and
//! the time it was issued, sealed with XChaCha20-Poly1305 under a key
//! derived from the server's 32-byte long-term secret with HKDF-SHA256
//! (RFC 5869: no salt, the info [`TICKET_KEY_LABEL`]). The same secret gives
//! the same ticket key after every restart; another secret opens nothing.
//! The nonce is 24 random bytes: long enough to be picked at random with no
//! practical chance of a repeat, which is why XChaCha20 and not ChaCha20.
//! Opening fails on any change to any byte, on a length that does not match,
//! and on a ticket sealed under another key.
//!
//! Layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, [`TICKET_VERSION`] (also the associated data) |
//! | 24 | nonce |
//! | 17 + k + 16 | sealed: `issued u64` (unix seconds), `client_id u64`, `name_len u8`, the name (k bytes of UTF-8), then the 16-byte tag |
//!
//! A ticket is [`TICKET_OVERHEAD`] (58) + k bytes, k at most
//! [`MAX_TICKET_NAME_BYTES`] (197; names are at most 96), so never longer
//! than [`MAX_TICKET_LEN`] (255) bytes: it fits a `u8` length prefix.
//!
//! The name, not its key, is sealed: the key follows from the name
//! (`protocol::name_key`), the name does not follow from the key, and a
//! server restarted without its database needs the name to give it back.
//! The key is also far longer at worst: 24 Hangul syllables (72 bytes) have
//! a 504-byte key, the skeleton decomposing each into confusable jamo.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The first byte of every ticket.
pub const TICKET_VERSION: u8 = 1;

/// The HKDF info that derives the ticket key from the server's secret.
pub const TICKET_KEY_LABEL: &[u8] = b"udpchat v2 resume ticket key";

/// The longest name a ticket holds, in bytes (names are at most 96).
pub const MAX_TICKET_NAME_BYTES: usize = MAX_TICKET_LEN - TICKET_OVERHEAD;

/// The bytes of a ticket besides its name key: version, nonce, the fixed
/// fields and the tag.
pub const TICKET_OVERHEAD: usize = 1 + NONCE_LEN + FIXED_LEN + TAG_LEN;

/// The longest ticket (a `u8` length on the wire).
pub const MAX_TICKET_LEN: usize = crate::protocol::sealed::MAX_TICKET;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const FIXED_LEN: usize = 8 + 8 + 1;

/// HKDF-SHA256(salt none, ikm secret, info [`TICKET_KEY_LABEL`]), 32 bytes.
fn derive_key(secret: &[u8; 32]) -> [u8; 32] {
    let mut key = [0u8; 32];
    // 32 bytes is far below HKDF-SHA256's limit of 8,160: expand cannot fail.
    let _ = Hkdf::<Sha256>::new(None, secret).expand(TICKET_KEY_LABEL, &mut key);
    key
}

/// What a ticket says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// The member's name as it registered it.
    pub name: String,
    /// The member's client id (the first half of its messages' stable ids).
    pub client_id: u64,
    /// When the ticket was issued, in unix seconds.
    pub issued: u64,
}

/// The key that seals and opens tickets, derived from the server's secret.
pub struct TicketKey {
    aead: XChaCha20Poly1305,
}

impl TicketKey {
    /// The ticket key of the server whose long-term secret is `secret`.
    pub fn derive(secret: &[u8; 32]) -> Self {
        let mut key = derive_key(secret);
        let aead = XChaCha20Poly1305::new(&key.into());
        key.fill(0);
        TicketKey { aead }
    }

    /// Seals `ticket` with a nonce from the OS random source.
    pub fn seal(&self, ticket: &Ticket) -> Result<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce)
            .map_err(|e| Error::msg("seal", "a resume ticket", e.to_string()))?;
        self.seal_with_nonce(ticket, &nonce)
    }

    /// Seals `ticket` with the given nonce (which must never be used twice:
    /// [`TicketKey::seal`] picks a random one; this is for test vectors).
    pub fn seal_with_nonce(&self, ticket: &Ticket, nonce: &[u8; NONCE_LEN]) -> Result<Vec<u8>> {
        let name = ticket.name.as_bytes();
        if name.len() > MAX_TICKET_NAME_BYTES {
            return Err(Error::msg(
                "seal",
                "a resume ticket",
                format!("name longer than {MAX_TICKET_NAME_BYTES} bytes"),
            ));
        }
        let mut plain = Vec::with_capacity(FIXED_LEN + name.len());
        plain.extend_from_slice(&ticket.issued.to_be_bytes());
        plain.extend_from_slice(&ticket.client_id.to_be_bytes());
        plain.push(name.len() as u8);
        plain.extend_from_slice(name);
        let aad = [TICKET_VERSION];
        let sealed = self
            .aead
            .encrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: &plain,
                    aad: &aad,
                },
            )
            .map_err(|_| Error::msg("seal", "a resume ticket", "encryption failed"))?;
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(TICKET_VERSION);
        out.extend_from_slice(nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// Opens a ticket this key sealed; `None` for anything else (another
    /// key, another version, any changed byte, a wrong length).
    pub fn open(&self, ticket: &[u8]) -> Option<Ticket> {
        if ticket.len() < TICKET_OVERHEAD || ticket.len() > MAX_TICKET_LEN {
            return None;
        }
        let (&version, rest) = ticket.split_first()?;
        if version != TICKET_VERSION {
            return None;
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let aad = [TICKET_VERSION];
        let plain = self
            .aead
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad,
                },
            )
            .ok()?;
        let issued = u64::from_be_bytes(plain.get(0..8)?.try_into().ok()?);
        let client_id = u64::from_be_bytes(plain.get(8..16)?.try_into().ok()?);
        let name_len = usize::from(*plain.get(16)?);
        let name = plain.get(FIXED_LEN..)?;
        if name.len() != name_len {
            return None;
        }
        Some(Ticket {
            name: String::from_utf8(name.to_vec()).ok()?,
            client_id,
            issued,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ticket() -> Ticket {
        Ticket {
            name: "alice".into(),
            client_id: 0x0123_4567_89AB_CDEF,
            issued: 1_790_000_000,
        }
    }

    #[test]
    fn opens_what_it_sealed_with_the_stated_length() {
        let k = TicketKey::derive(&[7; 32]);
        let t = ticket();
        let sealed = k.seal(&t).unwrap();
        assert_eq!(sealed.len(), TICKET_OVERHEAD + 5);
        assert_eq!(k.open(&sealed), Some(t));
        assert_eq!(TICKET_OVERHEAD, 58);
        assert_eq!(MAX_TICKET_NAME_BYTES, 197);
    }

    /// Computed independently with Python's hmac and hashlib (RFC 5869 by hand).
    #[test]
    fn key_derivation_vector() {
        let expect = "548e79e1a4af77a3505d61eba8e5146a331837adda3b85da2b4395bf95173454";
        let hex: String = derive_key(&[7; 32])
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hex, expect);
    }

    #[test]
    fn the_same_secret_derives_the_same_key_after_a_restart() {
        let sealed = TicketKey::derive(&[7; 32]).seal(&ticket()).unwrap();
        assert_eq!(TicketKey::derive(&[7; 32]).open(&sealed), Some(ticket()));
        let mut other = [7; 32];
        other[31] = 8;
        assert_eq!(TicketKey::derive(&other).open(&sealed), None);
    }

    #[test]
    fn any_changed_byte_fails() {
        let k = TicketKey::derive(&[1; 32]);
        let sealed = k.seal(&ticket()).unwrap();
        for i in 0..sealed.len() {
            for bit in [0x01, 0x80] {
                let mut bad = sealed.clone();
                bad[i] ^= bit;
                assert_eq!(k.open(&bad), None, "byte {i} bit {bit:#x}");
            }
        }
        // Cut short, extended, empty, all zeros, the longest possible garbage.
        assert_eq!(k.open(&sealed[..sealed.len() - 1]), None);
        let mut longer = sealed.clone();
        longer.push(0);
        assert_eq!(k.open(&longer), None);
        assert_eq!(k.open(&[]), None);
        assert_eq!(k.open(&[0; TICKET_OVERHEAD]), None);
        assert_eq!(k.open(&[1; MAX_TICKET_LEN + 1]), None);
    }

    #[test]
    fn random_nonces_differ_and_a_given_nonce_is_deterministic() {
        let k = TicketKey::derive(&[2; 32]);
        assert_ne!(k.seal(&ticket()).unwrap(), k.seal(&ticket()).unwrap());
        let n = [9; 24];
        let a = k.seal_with_nonce(&ticket(), &n).unwrap();
        assert_eq!(a, k.seal_with_nonce(&ticket(), &n).unwrap());
        assert_eq!(&a[1..25], &n);
    }

    #[test]
    fn names_up_to_the_limit_and_not_beyond() {
        let k = TicketKey::derive(&[3; 32]);
        let mut t = ticket();
        t.name = "é".repeat(MAX_TICKET_NAME_BYTES / 2) + "x";
        let sealed = k.seal(&t).unwrap();
        assert_eq!(sealed.len(), MAX_TICKET_LEN);
        assert_eq!(k.open(&sealed), Some(t.clone()));
        t.name.push('x');
        let err = k.seal(&t).unwrap_err().to_string();
        assert!(err.contains("cannot seal") && err.contains("197"), "{err}");
        t.name = String::new();
        assert_eq!(k.open(&k.seal(&t).unwrap()), Some(t));
    }
}
