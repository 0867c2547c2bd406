//! The session's ChaCha20-Poly1305, keyed compactly.
//!
//! snow's ring resolver keeps each cipher as a `ring::aead::LessSafeKey`,
//! which is sized for AES-GCM's key schedule (544 bytes) whatever the
//! algorithm: two per session, 1 KiB per member of the room. [`resolver`]
//! gives snow the same ring ChaCha20-Poly1305 keeping its 32-byte key, and
//! ring's key made from it only where it is needed on every datagram: a
//! sealing direction makes it at its first datagram and keeps it (the
//! fan-out seals for every member: nothing is added there), an opening
//! direction makes it for each datagram (a copy of the key: ChaCha20 has no
//! key schedule; tens of nanoseconds on a path that costs microseconds).
//! A session thus keeps one ring key, not two. Everything else (X25519,
//! BLAKE2s, randomness) is snow's own resolver, unchanged; the bytes on the
//! wire are the same.

use ring::aead::{self, LessSafeKey, UnboundKey};
use snow::params::{CipherChoice, DHChoice, HashChoice};
use snow::resolvers::{
    BoxedCryptoResolver, CryptoResolver, DefaultResolver, FallbackResolver, RingResolver,
};
use snow::types::{Cipher, Dh, Hash, Random};
use std::sync::OnceLock;

const KEY_LEN: usize = 32;
const TAG_LEN: usize = 16;

/// snow's ring resolver (default resolver as fallback), with the compact
/// ChaCha20-Poly1305.
pub(super) fn resolver() -> BoxedCryptoResolver {
    Box::new(CompactResolver {
        rest: FallbackResolver::new(Box::new(RingResolver), Box::new(DefaultResolver)),
    })
}

struct CompactResolver {
    rest: FallbackResolver,
}

impl CryptoResolver for CompactResolver {
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
        match choice {
            CipherChoice::ChaChaPoly => Some(Box::new(ChaChaPoly {
                key: [0; KEY_LEN],
                sealing: OnceLock::new(),
            })),
            _ => self.rest.resolve_cipher(choice),
        }
    }
}

/// ChaCha20-Poly1305 as Noise uses it: the nonce is 4 zero bytes and the
/// 64-bit counter little-endian.
struct ChaChaPoly {
    key: [u8; KEY_LEN],
    /// ring's key, once this direction sealed something.
    sealing: OnceLock<Box<LessSafeKey>>,
}

impl ChaChaPoly {
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

impl Cipher for ChaChaPoly {
    fn name(&self) -> &'static str {
        "ChaChaPoly"
    }

    fn set(&mut self, key: &[u8; KEY_LEN]) {
        self.key = *key;
        self.sealing = OnceLock::new();
    }

    fn encrypt(&self, n: u64, authtext: &[u8], plaintext: &[u8], out: &mut [u8]) -> usize {
        let len = plaintext.len();
        out[..len].copy_from_slice(plaintext);
        let tag = self
            .sealing
            .get_or_init(|| Box::new(self.ring_key()))
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
