//! Stateless reset (PROTOCOL.md, "Stateless reset"; QUIC §10.3): a token per
//! session id that only the owner of the server's long-term key can compute,
//! also after a restart.

use super::{kind, ResetToken, SessionId, RESET_SIZE};
use blake2::digest::consts::{U16, U32};

/// What the reset key is derived over, keyed with the server's static private key.
const RESET_KEY_LABEL: &[u8] = b"udpchat v2 reset key";

/// The key reset tokens are made with, derived from the server's long-term secret.
#[derive(Clone)]
pub struct ResetKey([u8; 32]);

impl ResetKey {
    /// The reset key of the server whose X25519 static private key is `private`.
    pub fn from_static(private: &[u8; 32]) -> Self {
        ResetKey(super::keyed_blake2s::<U32>(private, &[RESET_KEY_LABEL]).into())
    }

    /// The reset token of session id `id`.
    pub fn token(&self, id: SessionId) -> ResetToken {
        super::keyed_blake2s::<U16>(&self.0, &[&id.to_be_bytes()]).into()
    }

    /// The RESET datagram for `id` (the caller checked that `id` is not live,
    /// that it answers a DATA datagram and that the source is within its limit).
    pub fn reset_datagram(&self, id: SessionId) -> [u8; RESET_SIZE] {
        super::id_datagram(kind::RESET, id, &self.token(id))
    }
}

/// The id and token of a RESET datagram, or `None` when malformed.
pub fn parse_reset(datagram: &[u8]) -> Option<(SessionId, ResetToken)> {
    super::parse_id_datagram(kind::RESET, datagram)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_depend_on_the_id_and_the_static_key() {
        let k = ResetKey::from_static(&[3; 32]);
        assert_eq!(
            k.token(42),
            ResetKey::from_static(&[3; 32]).token(42),
            "after a restart"
        );
        assert_ne!(k.token(42), k.token(43));
        assert_ne!(k.token(42), ResetKey::from_static(&[4; 32]).token(42));
    }

    #[test]
    fn reset_datagram_round_trip() {
        let k = ResetKey::from_static(&[3; 32]);
        let d = k.reset_datagram(0xfeed);
        assert_eq!(&d[..4], b"UC\x02\x05");
        assert_eq!(parse_reset(&d), Some((0xfeed, k.token(0xfeed))));
        assert_eq!(parse_reset(&d[..27]), None);
        let mut longer = d.to_vec();
        longer.push(0);
        assert_eq!(parse_reset(&longer), None);
    }
}
