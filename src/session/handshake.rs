//! The handshake of PROTOCOL.md: INIT (with the cookie), RESPONSE, and the
//! rekey handshake inside a session, over `Noise_NX_25519_ChaChaPoly_BLAKE2s`.
//!
//! The client is the Noise initiator; it learns the server's static key from
//! message 2 and checks it against its pin before anything else is sent.

use super::reset::ResetKey;
use super::transport::Session;
use super::{
    header, kind, Cookie, ResetToken, SessionId, HANDSHAKE_PAYLOAD_LEN, INIT_SIZE, NOISE_MSG2_LEN,
    NOISE_PARAMS, RESPONSE_SIZE,
};
use snow::{Builder, HandshakeState};
use std::fmt;
use std::time::{Duration, Instant};

/// Bytes 0..28 of INIT: header, `id_c`, cookie (the Noise prologue).
pub const INIT_PROLOGUE_LEN: usize = 28;
/// The clear length of a Noise ephemeral key.
pub(super) const KEY_LEN: usize = 32;

/// Why a handshake message was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandshakeError {
    /// Not for this handshake or not expected now (ignore it).
    Ignored,
    /// Malformed, or it failed Noise's checks (dropped and counted). A client
    /// then has a new INIT to send ([`ClientHandshake::init_datagram`]).
    Forged,
    /// The server's static key is not the pinned one: the attempt is over.
    WrongKey([u8; 32]),
    /// The Noise library refused (cannot happen with valid parameters).
    Noise,
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            HandshakeError::Ignored => "not for this handshake",
            HandshakeError::Forged => "malformed or forged handshake message",
            HandshakeError::WrongKey(_) => "the server's key is not the pinned one",
            HandshakeError::Noise => "the Noise handshake failed",
        })
    }
}

pub(super) fn noise<T>(r: Result<T, snow::Error>) -> Result<T, HandshakeError> {
    r.map_err(|_| HandshakeError::Noise)
}

pub(super) fn builder<'a>(
    prologue: &'a [u8; INIT_PROLOGUE_LEN],
    eph: Option<&'a [u8; KEY_LEN]>,
    initiator: bool,
) -> Result<Builder<'a>, HandshakeError> {
    let params = noise(NOISE_PARAMS.parse())?;
    let b = noise(
        Builder::with_resolver(params, super::cipher::resolver(initiator)).prologue(prologue),
    )?;
    Ok(match eph {
        Some(e) => b.fixed_ephemeral_key_for_testing_only(e),
        None => b,
    })
}

/// The 28-byte prologue: `UC`, version, a kind or type byte, an id, 16 more bytes.
pub(super) fn prologue(kind_byte: u8, id: SessionId, rest: &[u8; 16]) -> [u8; INIT_PROLOGUE_LEN] {
    let mut p = [0u8; INIT_PROLOGUE_LEN];
    p[..4].copy_from_slice(&header(kind_byte));
    p[4..12].copy_from_slice(&id.to_be_bytes());
    p[12..].copy_from_slice(rest);
    p
}

/// The handshake payload of message 2: `id_s`, reset token, `rekey_after_s`.
pub(super) fn payload(
    id_s: SessionId,
    token: &ResetToken,
    rekey_after_s: u32,
) -> [u8; HANDSHAKE_PAYLOAD_LEN] {
    let mut p = [0u8; HANDSHAKE_PAYLOAD_LEN];
    p[..8].copy_from_slice(&id_s.to_be_bytes());
    p[8..24].copy_from_slice(token);
    p[24..].copy_from_slice(&rekey_after_s.to_be_bytes());
    p
}

/// The server's long-term secret: its X25519 static private key.
#[derive(Clone)]
pub struct ServerKey {
    private: [u8; 32],
    reset: ResetKey,
    /// A fixed ephemeral key, for test vectors only.
    test_ephemeral: Option<[u8; KEY_LEN]>,
}

impl ServerKey {
    /// The server key whose X25519 private key is `private`.
    pub fn new(private: [u8; 32]) -> Self {
        ServerKey {
            reset: ResetKey::from_static(&private),
            private,
            test_ephemeral: None,
        }
    }

    #[cfg(test)]
    pub(super) fn with_ephemeral(mut self, e: [u8; KEY_LEN]) -> Self {
        self.test_ephemeral = Some(e);
        self
    }

    /// The reset key derived from it.
    pub fn reset_key(&self) -> &ResetKey {
        &self.reset
    }

    /// Noise responder: reads message 1, writes message 2 with the payload
    /// for `id_s`, and returns the finished state and message 2.
    pub(super) fn respond_noise(
        &self,
        prologue: &[u8; INIT_PROLOGUE_LEN],
        msg1: &[u8],
        id_s: SessionId,
        rekey_after_s: u32,
    ) -> Result<(HandshakeState, [u8; NOISE_MSG2_LEN]), HandshakeError> {
        let eph = self.test_ephemeral.as_ref();
        let hs = noise(builder(prologue, eph, false)?.local_private_key(&self.private))?;
        let mut hs = noise(hs.build_responder())?;
        let mut scratch = [0u8; INIT_SIZE];
        hs.read_message(msg1, &mut scratch)
            .map_err(|_| HandshakeError::Forged)?;
        let mut msg2 = [0u8; NOISE_MSG2_LEN];
        let p = payload(id_s, &self.reset.token(id_s), rekey_after_s);
        let n = noise(hs.write_message(&p, &mut msg2))?;
        debug_assert_eq!(n, NOISE_MSG2_LEN);
        Ok((hs, msg2))
    }

    /// Answers a valid INIT (the caller checked its cookie and the budgets):
    /// the half-open session with server id `id_s` and the RESPONSE to send.
    pub fn respond(
        &self,
        init: &Init,
        id_s: SessionId,
        rekey_after_s: u32,
        now: Instant,
    ) -> Result<(Session, [u8; RESPONSE_SIZE]), HandshakeError> {
        let prologue: [u8; INIT_PROLOGUE_LEN] = super::array_at(&init.bytes, 0);
        let (hs, msg2) = self.respond_noise(
            &prologue,
            &init.bytes[INIT_PROLOGUE_LEN..],
            id_s,
            rekey_after_s,
        )?;
        let mut response = [0u8; RESPONSE_SIZE];
        response[..4].copy_from_slice(&header(kind::RESPONSE));
        response[4..12].copy_from_slice(&init.id_c.to_be_bytes());
        response[12..].copy_from_slice(&msg2);
        let session = server_session(hs, id_s, init.id_c, rekey_after_s, now)?;
        Ok((session, response))
    }
}

pub(super) fn server_session(
    hs: HandshakeState,
    id_s: SessionId,
    id_c: SessionId,
    rekey_after_s: u32,
    now: Instant,
) -> Result<Session, HandshakeError> {
    let t = noise(hs.into_stateless_transport_mode())?;
    Ok(Session::new(
        t,
        id_s,
        id_c,
        now,
        Duration::from_secs(rekey_after_s.into()),
        None,
    ))
}

/// A well-formed INIT.
pub struct Init {
    /// The client's session id.
    pub id_c: SessionId,
    /// Its cookie (all zeros in a first INIT).
    pub cookie: Cookie,
    bytes: [u8; INIT_SIZE],
}

/// Parses an INIT: exactly [`INIT_SIZE`] bytes of kind INIT, `id_c` not 0.
pub fn parse_init(datagram: &[u8]) -> Option<Init> {
    let bytes: [u8; INIT_SIZE] = datagram.try_into().ok()?;
    if super::clear_kind(datagram) != Some(kind::INIT) {
        return None;
    }
    let id_c = super::u64_at(datagram, 4);
    (id_c != 0).then(|| Init {
        id_c,
        cookie: super::array_at(datagram, 12),
        bytes,
    })
}

impl Init {
    /// The 256 bytes, to recognize a retransmission (same bytes, same address).
    pub fn bytes(&self) -> &[u8; INIT_SIZE] {
        &self.bytes
    }
}

/// A finished handshake, as the client sees it.
pub struct Established {
    /// The new session.
    pub session: Session,
    /// The server's static public key (already checked against the pin, if any).
    pub server_key: [u8; 32],
    /// Noise's handshake hash (for test vectors and logs).
    pub handshake_hash: [u8; 32],
}

/// Reads message 2 on the client's side and checks the pin.
pub(super) fn finish(
    mut hs: HandshakeState,
    msg2: &[u8],
    id_c: SessionId,
    pin: Option<&[u8; 32]>,
    now: Instant,
) -> Result<Established, HandshakeError> {
    let mut p = [0u8; NOISE_MSG2_LEN];
    let n = hs
        .read_message(msg2, &mut p)
        .map_err(|_| HandshakeError::Forged)?;
    let server_key: [u8; 32] = hs
        .get_remote_static()
        .and_then(|k| k.try_into().ok())
        .ok_or(HandshakeError::Forged)?;
    if pin.is_some_and(|pin| !super::ct_eq(pin, &server_key)) {
        return Err(HandshakeError::WrongKey(server_key));
    }
    let id_s = super::u64_at(&p, 0);
    let rekey_after_s = u32::from_be_bytes(super::array_at(&p, 24));
    if n != HANDSHAKE_PAYLOAD_LEN || id_s == 0 || rekey_after_s == 0 {
        return Err(HandshakeError::Forged);
    }
    let handshake_hash = hs
        .get_handshake_hash()
        .try_into()
        .map_err(|_| HandshakeError::Noise)?;
    let t = noise(hs.into_stateless_transport_mode())?;
    let rekey_after = Duration::from_secs(rekey_after_s.into());
    let token = super::array_at(&p, 8);
    Ok(Established {
        session: Session::new(t, id_c, id_s, now, rekey_after, Some(token)),
        server_key,
        handshake_hash,
    })
}

/// Starts a Noise initiator and writes message 1 with `padding` zero bytes.
pub(super) fn initiate(
    prologue: &[u8; INIT_PROLOGUE_LEN],
    padding: usize,
    out: &mut [u8],
    eph: Option<&[u8; KEY_LEN]>,
) -> Result<HandshakeState, HandshakeError> {
    let mut hs = noise(builder(prologue, eph, true)?.build_initiator())?;
    let zeros = [0u8; INIT_SIZE];
    // snow wants room for a tag even where message 1 has none.
    let mut msg = [0u8; INIT_SIZE + super::TAG_LEN];
    let n = noise(hs.write_message(&zeros[..padding], &mut msg))?;
    if n != out.len() {
        return Err(HandshakeError::Noise);
    }
    out.copy_from_slice(&msg[..n]);
    Ok(hs)
}

enum ClientState {
    WaitCookie,
    WaitResponse {
        hs: Box<HandshakeState>,
        init: Box<[u8; INIT_SIZE]>,
    },
    Done,
}

/// The client's side of the handshake: INIT, COOKIE, INIT with the cookie,
/// RESPONSE. Sans-IO: it says what to send; the caller sends and resends it.
pub struct ClientHandshake {
    id_c: SessionId,
    state: ClientState,
    ephemeral: Option<[u8; KEY_LEN]>,
}

impl ClientHandshake {
    /// A handshake for client session id `id_c` (random, not 0).
    pub fn new(id_c: SessionId) -> Self {
        ClientHandshake {
            id_c,
            state: ClientState::WaitCookie,
            ephemeral: None,
        }
    }

    #[cfg(test)]
    pub(super) fn with_ephemeral(mut self, e: [u8; KEY_LEN]) -> Self {
        self.ephemeral = Some(e);
        self
    }

    /// The client session id.
    pub fn id_c(&self) -> SessionId {
        self.id_c
    }

    /// The INIT to send now (and to resend, unchanged, when no answer came):
    /// with a zero cookie until a COOKIE arrived.
    pub fn init_datagram(&self) -> [u8; INIT_SIZE] {
        match &self.state {
            ClientState::WaitResponse { init, .. } => **init,
            ClientState::WaitCookie | ClientState::Done => {
                let mut d = [0u8; INIT_SIZE];
                d[..INIT_PROLOGUE_LEN].copy_from_slice(&prologue(kind::INIT, self.id_c, &[0; 16]));
                d
            }
        }
    }

    /// Takes a COOKIE: `Ok(())` when there is a new INIT to send.
    pub fn on_cookie(&mut self, datagram: &[u8]) -> Result<(), HandshakeError> {
        let (id, cookie) = super::cookie::parse_cookie(datagram).ok_or(HandshakeError::Ignored)?;
        match &self.state {
            _ if id != self.id_c => Err(HandshakeError::Ignored),
            ClientState::Done => Err(HandshakeError::Ignored),
            ClientState::WaitResponse { init, .. } if init[12..28] == cookie => {
                Err(HandshakeError::Ignored)
            }
            _ => self.start_noise(&cookie),
        }
    }

    fn start_noise(&mut self, cookie: &Cookie) -> Result<(), HandshakeError> {
        let mut init = Box::new([0u8; INIT_SIZE]);
        let p = prologue(kind::INIT, self.id_c, cookie);
        init[..INIT_PROLOGUE_LEN].copy_from_slice(&p);
        let padding = INIT_SIZE - INIT_PROLOGUE_LEN - KEY_LEN;
        let hs = initiate(
            &p,
            padding,
            &mut init[INIT_PROLOGUE_LEN..],
            self.ephemeral.as_ref(),
        )?;
        self.state = ClientState::WaitResponse {
            hs: Box::new(hs),
            init,
        };
        Ok(())
    }

    /// Takes a RESPONSE. On [`HandshakeError::Forged`] a new INIT is ready
    /// (same cookie, new ephemeral key); on [`HandshakeError::WrongKey`] the
    /// attempt is over. `pin` is the server key to accept (`None`: any, to
    /// be recorded on first use).
    pub fn on_response(
        &mut self,
        datagram: &[u8],
        pin: Option<&[u8; 32]>,
        now: Instant,
    ) -> Result<Established, HandshakeError> {
        if datagram.len() != RESPONSE_SIZE
            || super::clear_kind(datagram) != Some(kind::RESPONSE)
            || super::u64_at(datagram, 4) != self.id_c
        {
            return Err(HandshakeError::Ignored);
        }
        let (hs, cookie) = match std::mem::replace(&mut self.state, ClientState::Done) {
            ClientState::WaitResponse { hs, init } => (hs, super::array_at::<16>(&init[..], 12)),
            other => {
                self.state = other;
                return Err(HandshakeError::Ignored);
            }
        };
        match finish(*hs, &datagram[12..], self.id_c, pin, now) {
            Err(HandshakeError::Forged) => {
                // A failed read leaves the Noise state unusable: start again.
                self.start_noise(&cookie)?;
                Err(HandshakeError::Forged)
            }
            r => r,
        }
    }
}
