//! Resume tickets: what the server hands a member in WELCOME so that it can
//! come back after lost contact or a restart, and what only that server (the
//! same long-term key) can read or make.
//!
//! A ticket holds the member's name key, its client id and the time it was
//! issued, sealed with XChaCha20-Poly1305 under a key derived from the
//! server's 32-byte long-term secret with HKDF-SHA256 (RFC 5869: no salt, the
//! info [`TICKET_KEY_LABEL`]). The same secret gives the same ticket key after
//! every restart; another secret opens nothing. The nonce is 24 random bytes,
//! so tickets sealed at any rate never repeat one.
//!
//! Layout (all integers big-endian):
//!
//! | bytes | field |
//! |---|---|
//! | 1 | version, [`TICKET_VERSION`] (also the associated data) |
//! | 24 | nonce |
//! | 18 + k + 16 | sealed: `issued u64` (unix seconds), `client_id u64`, `key_len u16`, the name key (k bytes of UTF-8), then the 16-byte tag |
//!
//! A ticket is [`TICKET_OVERHEAD`] + k bytes, k at most
//! [`MAX_NAME_KEY_BYTES`], so never longer than [`MAX_TICKET_LEN`] (443)
//! bytes. Opening fails on any change to any byte, on a length that does not
//! match, and on a ticket from another key.

use crate::error::{Error, Result};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use sha2::Sha256;

/// The first byte of every ticket.
pub const TICKET_VERSION: u8 = 1;

/// The HKDF info that derives the ticket key from the server's secret.
pub const TICKET_KEY_LABEL: &[u8] = b"udpchat v2 resume ticket key";

/// The longest name key a ticket holds, in bytes (a name is at most 96
/// bytes; case folding and the confusable skeleton lengthen it by at most
/// a few times).
pub const MAX_NAME_KEY_BYTES: usize = 384;

/// The bytes of a ticket besides its name key: version, nonce, the fixed
/// fields and the tag.
pub const TICKET_OVERHEAD: usize = 1 + NONCE_LEN + FIXED_LEN + TAG_LEN;

/// The longest ticket.
pub const MAX_TICKET_LEN: usize = TICKET_OVERHEAD + MAX_NAME_KEY_BYTES;

const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const FIXED_LEN: usize = 8 + 8 + 2;

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
    /// The member's name key (its name's identity in the room).
    pub name_key: String,
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
        let key = ticket.name_key.as_bytes();
        if key.len() > MAX_NAME_KEY_BYTES {
            return Err(Error::msg(
                "seal",
                "a resume ticket",
                format!("name key longer than {MAX_NAME_KEY_BYTES} bytes"),
            ));
        }
        let mut plain = Vec::with_capacity(FIXED_LEN + key.len());
        plain.extend_from_slice(&ticket.issued.to_be_bytes());
        plain.extend_from_slice(&ticket.client_id.to_be_bytes());
        plain.extend_from_slice(&(key.len() as u16).to_be_bytes());
        plain.extend_from_slice(key);
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
        let key_len = u16::from_be_bytes(plain.get(16..18)?.try_into().ok()?) as usize;
        let key = plain.get(FIXED_LEN..)?;
        if key.len() != key_len {
            return None;
        }
        Some(Ticket {
            name_key: String::from_utf8(key.to_vec()).ok()?,
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
            name_key: "alice".into(),
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
        assert_eq!(TICKET_OVERHEAD, 59);
        assert_eq!(MAX_TICKET_LEN, 443);
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
    fn name_keys_up_to_the_limit_and_not_beyond() {
        let k = TicketKey::derive(&[3; 32]);
        let mut t = ticket();
        t.name_key = "é".repeat(MAX_NAME_KEY_BYTES / 2);
        let sealed = k.seal(&t).unwrap();
        assert_eq!(sealed.len(), MAX_TICKET_LEN);
        assert_eq!(k.open(&sealed), Some(t.clone()));
        t.name_key.push('x');
        let err = k.seal(&t).unwrap_err().to_string();
        assert!(err.contains("cannot seal") && err.contains("384"), "{err}");
        t.name_key = String::new();
        assert_eq!(k.open(&k.seal(&t).unwrap()), Some(t));
    }
}
