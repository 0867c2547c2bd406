//! The session's ChaCha20-Poly1305 keys, one of them compact.
//!
//! snow's ring resolver keeps each cipher as a `ring::aead::LessSafeKey`,
//! which is sized for AES-GCM's key schedule (544 bytes) whatever the
//! algorithm: two per session, 1 KiB per member of the room. The direction
//! a side seals in is on the hot path (the fan-out seals for every member),
//! so it keeps ring's key as snow made it. The direction it opens, and the
//! handshake's own cipher, get [`Compact`]: the 32-byte key only, ring's key
//! made from it for each datagram (a copy: ChaCha20 has no key schedule;
//! tens of nanoseconds on a path that costs microseconds). A session thus
//! keeps one ring key, not two. Everything else (X25519, BLAKE2s,
//! randomness) is snow's own resolver, unchanged; the bytes on the wire are
//! the same.

use ring::aead::{self, LessSafeKey, UnboundKey};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{
    BoxedCryptoResolver, CryptoResolver, DefaultResolver, FallbackResolver, RingResolver,
};
use snow::types::{Cipher, Dh, Hash, Random};
use std::cell::Cell;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// snow's ring resolver (its default resolver as fallback) for one
/// handshake, the side that initiates it or not, with [`Compact`] where the
/// key is not sealed with.
pub(super) fn resolver(initiator: bool) -> BoxedCryptoResolver {
    // snow's `Builder::build` asks for three ciphers, in this order: the
    // handshake's, the initiator's sending one, the responder's sending one
    // (snow 0.10, `builder.rs`). Were that order to change, only where the
    // compact key is would: both kinds seal and open alike.
    let sealing = if initiator { 2 } else { 3 };
    Box::new(SessionResolver {
        rest: FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver)),
        sealing,
        ciphers: Cell::new(0),
    })
}

struct SessionResolver {
    rest: FallbackResolver,
    /// Which cipher asked for (1, 2, 3) this side seals with.
    sealing: u8,
    /// Ciphers asked for so far.
    ciphers: Cell<u8>,
}

impl CryptoResolver for SessionResolver {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        self.rest.resolve_rng()
    }

    fn resolve_dh(&self, choice: &DHChoice) -> Option<Box<dyn Dh>> {
        self.rest.resolve_dh(choice)
    }

    fn resolve_hash(&self, choice: &HashChoice) -> Option<Box<dyn Hash>> {
        self.rest.resolve_hash(choice)
    }

    fn resolve_cipher(&self, choice: &CipherChoice) -> Option<Box<dyn Cipher>> {
        let n = self.ciphers.get().saturating_add(1);
        self.ciphers.set(n);
        match choice {
            CipherChoice::ChaChaPoly if n != self.sealing => {
                Some(Box::new(Compact { key: [0; KEY_LEN] }))
            }
            _ => self.rest.resolve_cipher(choice),
        }
    }
}

/// ChaCha20-Poly1305 as Noise uses it (the nonce is 4 zero bytes and the
/// 64-bit counter little-endian), keeping only its key.
struct Compact {
    key: [u8; KEY_LEN],
}

impl Compact {
    fn ring_key(&self) -> LessSafeKey {
        // A 32-byte key is the only thing ChaCha20-Poly1305 can refuse.
        let key = UnboundKey::new(&aead::CHACHA20_POLY1305, &self.key)
            .unwrap_or_else(|_| unreachable!("a ChaCha20-Poly1305 key is 32 bytes"));
        LessSafeKey::new(key)
    }
}

fn nonce(n: u64) -> aead::Nonce {
    let mut bytes = [0u8; aead::NONCE_LEN];
    bytes[4..].copy_from_slice(&n.to_le_bytes());
    aead::Nonce::assume_unique_for_key(bytes)
}

impl Cipher for Compact {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; KEY_LEN]) {
        self.key = *key;
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .ring_key()
            .seal_in_place_separate_tag(nonce(n), aead::Aad::from(authtext), &mut out[..len])
            .unwrap_or_else(|_| unreachable!("snow bounds the plaintext"));
        out[len..len + TAG_LEN].copy_from_slice(tag.as_ref());
        len + TAG_LEN
    }

    fn decrypt(
        &self,
        n: u64,
        authtext: &[u8],
        ciphertext: &[u8],
        out: &mut [u8],
    ) -> Result<usize, snow::Error> {
        let key = self.ring_key();
        let aad = aead::Aad::from(authtext);
        if out.len() >= ciphertext.len() {
            let in_out = &mut out[..ciphertext.len()];
            in_out.copy_from_slice(ciphertext);
            let plain = key
                .open_in_place(nonce(n), aad, in_out)
                .map_err(|_| snow::Error::Decrypt)?;
            Ok(plain.len())
        } else {
            let mut in_out = ciphertext.to_vec();
            let plain = key
                .open_in_place(nonce(n), aad, &mut in_out)
                .map_err(|_| snow::Error::Decrypt)?;
            out[..plain.len()].copy_from_slice(plain);
            Ok(plain.len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The compact cipher and snow's ring one seal to the same bytes and
    /// open each other's.
    #[test]
    fn compact_and_ring_ciphers_agree() {
        let key = [7u8; KEY_LEN];
        let mut compact = Compact { key: [0; KEY_LEN] };
        compact.set(&key);
        let mut ring = RingResolver
            .resolve_cipher(&CipherChoice::ChaChaPoly)
            .unwrap();
        ring.set(&key);
        let plain = b"a line said in the room";
        let (mut a, mut b) = ([0u8; 64], [0u8; 64]);
        let n = compact.encrypt(9, b"header", plain, &mut a);
        assert_eq!(ring.encrypt(9, b"header", plain, &mut b), n);
        assert_eq!(a[..n], b[..n]);
        let mut out = [0u8; 64];
        let m = ring.decrypt(9, b"header", &a[..n], &mut out).unwrap();
        assert_eq!(&out[..m], plain);
        // Room for the plaintext, not the tag (snow's check allows it).
        let mut small = [0u8; 23];
        let m = compact.decrypt(9, b"header", &b[..n], &mut small).unwrap();
        assert_eq!(&small[..m], plain);
        b[3] ^= 1;
        assert!(compact.decrypt(9, b"header", &b[..n], &mut out).is_err());
        assert!(compact.decrypt(8, b"header", &a[..n], &mut out).is_err());
    }
}
