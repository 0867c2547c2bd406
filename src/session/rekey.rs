//! The rekey of PROTOCOL.md ("Rekey"): a new Noise NX handshake carried
//! inside an established session (REKEY_INIT, REKEY_RESPONSE), bound to it by
//! the prologue; the member stays.

use super::handshake::{
    finish, initiate, prologue, server_session, Established, HandshakeError, ServerKey,
    INIT_PROLOGUE_LEN, KEY_LEN,
};
use super::transport::Session;
use super::{body_type, SessionId, NOISE_MSG2_LEN};
use snow::HandshakeState;
use std::time::Instant;

/// REKEY_INIT's body: type, `new_id_c`, Noise message 1.
const REKEY_INIT_LEN: usize = 1 + 8 + KEY_LEN;
/// REKEY_RESPONSE's body: type, Noise message 2.
pub const REKEY_RESPONSE_LEN: usize = 1 + NOISE_MSG2_LEN;

/// The rekey prologue: `UC 02 0C`, `new_id_c`, then the old session's `id_s` and `id_c`.
fn rekey_prologue(new_id_c: SessionId, old: &Session) -> [u8; INIT_PROLOGUE_LEN] {
    let (id_s, id_c) = if old.is_client() {
        (old.peer_id(), old.local_id())
    } else {
        (old.local_id(), old.peer_id())
    };
    let mut ids = [0u8; 16];
    ids[..8].copy_from_slice(&id_s.to_be_bytes());
    ids[8..].copy_from_slice(&id_c.to_be_bytes());
    prologue(body_type::REKEY_INIT, new_id_c, &ids)
}

impl ServerKey {
    /// Answers a REKEY_INIT body that arrived on `old`: the new session (with
    /// server id `new_id_s`) and the REKEY_RESPONSE body to seal on `old`.
    pub fn respond_rekey(
        &self,
        old: &Session,
        body: &[u8],
        new_id_s: SessionId,
        rekey_after_s: u32,
        now: Instant,
    ) -> Result<(Session, [u8; REKEY_RESPONSE_LEN]), HandshakeError> {
        if body.len() < REKEY_INIT_LEN || body[0] != body_type::REKEY_INIT {
            return Err(HandshakeError::Forged);
        }
        let new_id_c = super::u64_at(body, 1);
        let prologue = rekey_prologue(new_id_c, old);
        let (hs, msg2) =
            self.respond_noise(&prologue, &body[9..REKEY_INIT_LEN], new_id_s, rekey_after_s)?;
        let mut out = [0u8; REKEY_RESPONSE_LEN];
        out[0] = body_type::REKEY_RESPONSE;
        out[1..].copy_from_slice(&msg2);
        Ok((
            server_session(hs, new_id_s, new_id_c, rekey_after_s, now)?,
            out,
        ))
    }
}

/// The client's side of a rekey: REKEY_INIT sealed on the old session,
/// REKEY_RESPONSE read from it.
pub struct ClientRekey {
    hs: Option<Box<HandshakeState>>,
    new_id_c: SessionId,
    body: [u8; REKEY_INIT_LEN],
}

impl ClientRekey {
    /// Starts a rekey of `old` with the new client session id `new_id_c`.
    pub fn start(old: &Session, new_id_c: SessionId) -> Result<Self, HandshakeError> {
        Self::start_with(old, new_id_c, None)
    }

    pub(super) fn start_with(
        old: &Session,
        new_id_c: SessionId,
        eph: Option<&[u8; KEY_LEN]>,
    ) -> Result<Self, HandshakeError> {
        let mut body = [0u8; REKEY_INIT_LEN];
        body[0] = body_type::REKEY_INIT;
        body[1..9].copy_from_slice(&new_id_c.to_be_bytes());
        let hs = initiate(&rekey_prologue(new_id_c, old), 0, &mut body[9..], eph)?;
        Ok(ClientRekey {
            hs: Some(Box::new(hs)),
            new_id_c,
            body,
        })
    }

    /// The REKEY_INIT body to seal on the old session (resend it unchanged).
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// Takes a REKEY_RESPONSE body (from the old session); `pin` as for
    /// [`super::ClientHandshake::on_response`]. After an error the rekey is over:
    /// start another one.
    pub fn on_response(
        &mut self,
        body: &[u8],
        pin: Option<&[u8; 32]>,
        now: Instant,
    ) -> Result<Established, HandshakeError> {
        if body.len() != REKEY_RESPONSE_LEN || body[0] != body_type::REKEY_RESPONSE {
            return Err(HandshakeError::Forged);
        }
        let hs = self.hs.take().ok_or(HandshakeError::Ignored)?;
        finish(*hs, &body[1..], self.new_id_c, pin, now)
    }
}
