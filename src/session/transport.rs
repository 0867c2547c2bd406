//! An established session (PROTOCOL.md, "DATA"): the two ids, the sending
//! counter, the replay window, and sealing and opening one DATA datagram.

use super::replay::ReplayWindow;
use super::{
    header, kind, ResetToken, SessionId, DATA_HEADER_LEN, DATA_OVERHEAD, MAX_BODY, MAX_DATAGRAM,
    MIN_CLIENT_DATAGRAM, MIN_DATA, REJECT_AFTER_EXTRA, REKEY_AFTER_MESSAGES, TAG_LEN,
};
use snow::StatelessTransportState;
use std::time::{Duration, Instant};

/// Why a datagram was not opened (each is dropped and counted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpenError {
    /// Not a DATA datagram of this version, or too short or too long.
    Malformed,
    /// For another session id.
    WrongSession,
    /// A counter already accepted, or below the window.
    Replay,
    /// The tag or the sealed copy of the header did not match.
    Forged,
}

/// Why a body was not sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// Empty, or longer than [`MAX_BODY`].
    BadLength,
    /// The counter reached [`REKEY_AFTER_MESSAGES`]: the session must be re-keyed.
    Exhausted,
}

/// The clear fields of a DATA datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DataHeader {
    /// The receiver's session id: which session to open it with.
    pub receiver_id: SessionId,
    /// The sender's counter (the nonce).
    pub counter: u64,
}

/// Checks the size and the clear header of a DATA datagram.
pub fn parse_data_header(datagram: &[u8]) -> Option<DataHeader> {
    if !(MIN_DATA..=MAX_DATAGRAM).contains(&datagram.len())
        || super::clear_kind(datagram) != Some(kind::DATA)
    {
        return None;
    }
    Some(DataHeader {
        receiver_id: super::u64_at(datagram, 4),
        counter: super::u64_at(datagram, 12),
    })
}

/// An opened datagram.
#[derive(Debug, PartialEq, Eq)]
pub struct Opened<'a> {
    /// The body (for a client's datagram, with its zero padding).
    pub body: &'a [u8],
    /// Its counter.
    pub counter: u64,
    /// Was its counter newer than every one accepted before (the only kind of
    /// datagram that may start a path check)?
    pub newest: bool,
}

/// One side of an established session.
pub struct Session {
    transport: StatelessTransportState,
    local_id: SessionId,
    peer_id: SessionId,
    next_counter: u64,
    window: ReplayWindow,
    established: Instant,
    rekey_after: Duration,
    /// The client's copy of the server's reset token for `peer_id`.
    reset_token: Option<ResetToken>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("local_id", &self.local_id)
            .field("peer_id", &self.peer_id)
            .field("next_counter", &self.next_counter)
            .finish_non_exhaustive()
    }
}

impl Session {
    pub(super) fn new(
        transport: StatelessTransportState,
        local_id: SessionId,
        peer_id: SessionId,
        established: Instant,
        rekey_after: Duration,
        reset_token: Option<ResetToken>,
    ) -> Self {
        Session {
            transport,
            local_id,
            peer_id,
            next_counter: 0,
            window: ReplayWindow::new(),
            established,
            rekey_after,
            reset_token,
        }
    }

    /// The id this side receives on (in every datagram the peer sends).
    pub fn local_id(&self) -> SessionId {
        self.local_id
    }

    /// The id the peer receives on (in every datagram this side sends).
    pub fn peer_id(&self) -> SessionId {
        self.peer_id
    }

    /// Is this the client's side (which pads its datagrams)?
    pub fn is_client(&self) -> bool {
        self.transport.is_initiator()
    }

    /// Is it time for the client to re-key this session?
    pub fn needs_rekey(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.established) >= self.rekey_after
    }

    /// Is the session too old to be used (`rekey_after` + 60 s)?
    pub fn is_expired(&self, now: Instant) -> bool {
        now.saturating_duration_since(self.established) >= self.rekey_after + REJECT_AFTER_EXTRA
    }

    /// The rekey age the server gave.
    pub fn rekey_after(&self) -> Duration {
        self.rekey_after
    }

    /// Is `datagram` a RESET with this session's token for its server id
    /// (client side; always false on the server's side)?
    pub fn is_reset(&self, datagram: &[u8]) -> bool {
        match (self.reset_token, super::reset::parse_reset(datagram)) {
            (Some(mine), Some((id, token))) => id == self.peer_id && super::ct_eq(&mine, &token),
            _ => false,
        }
    }

    /// Seals `body` into `out` as the next DATA datagram and returns its
    /// length. A client's body is padded with zeros to
    /// [`MIN_CLIENT_DATAGRAM`]. Every call uses a new counter.
    pub fn seal(&mut self, body: &[u8], out: &mut [u8; MAX_DATAGRAM]) -> Result<usize, SealError> {
        if body.is_empty() || body.len() > MAX_BODY {
            return Err(SealError::BadLength);
        }
        if self.next_counter >= REKEY_AFTER_MESSAGES {
            return Err(SealError::Exhausted);
        }
        let counter = self.next_counter;
        self.next_counter += 1;
        let min_body = if self.is_client() {
            MIN_CLIENT_DATAGRAM - DATA_OVERHEAD
        } else {
            1
        };
        let body_len = body.len().max(min_body);
        let clear = data_header(self.peer_id, counter);
        let mut plain = [0u8; MAX_DATAGRAM];
        plain[..DATA_HEADER_LEN].copy_from_slice(&clear);
        plain[DATA_HEADER_LEN..DATA_HEADER_LEN + body.len()].copy_from_slice(body);
        let plain = &plain[..DATA_HEADER_LEN + body_len];
        out[..DATA_HEADER_LEN].copy_from_slice(&clear);
        let sealed = self
            .transport
            .write_message(counter, plain, &mut out[DATA_HEADER_LEN..])
            .map_err(|_| SealError::Exhausted)?;
        debug_assert_eq!(sealed, plain.len() + TAG_LEN);
        Ok(DATA_HEADER_LEN + sealed)
    }

    /// Opens a DATA datagram for this session into `plain` and marks its
    /// counter seen. Nothing is marked when it fails.
    pub fn open<'p>(
        &mut self,
        datagram: &[u8],
        plain: &'p mut [u8; MAX_DATAGRAM],
    ) -> Result<Opened<'p>, OpenError> {
        let h = parse_data_header(datagram).ok_or(OpenError::Malformed)?;
        if h.receiver_id != self.local_id {
            return Err(OpenError::WrongSession);
        }
        if !self.window.check(h.counter) {
            return Err(OpenError::Replay);
        }
        let n = self
            .transport
            .read_message(h.counter, &datagram[DATA_HEADER_LEN..], plain)
            .map_err(|_| OpenError::Forged)?;
        if n < DATA_HEADER_LEN + 1
            || !super::ct_eq(&plain[..DATA_HEADER_LEN], &datagram[..DATA_HEADER_LEN])
        {
            return Err(OpenError::Forged);
        }
        let newest = self.window.is_newest(h.counter);
        self.window.mark(h.counter);
        Ok(Opened {
            body: &plain[DATA_HEADER_LEN..n],
            counter: h.counter,
            newest,
        })
    }

    /// The counter the next sealed datagram will use.
    pub fn next_counter(&self) -> u64 {
        self.next_counter
    }

    #[cfg(test)]
    pub(super) fn transport(&self) -> &StatelessTransportState {
        &self.transport
    }

    /// Replaces both transport keys (test vectors with a fixed key).
    #[cfg(test)]
    pub(super) fn set_keys(&mut self, key: &[u8; 32]) {
        self.transport.rekey_manually(Some(key), Some(key));
    }

    #[cfg(test)]
    pub(super) fn set_next_counter(&mut self, c: u64) {
        self.next_counter = c;
    }
}

/// The 20 clear bytes of a DATA datagram.
pub(super) fn data_header(receiver_id: SessionId, counter: u64) -> [u8; DATA_HEADER_LEN] {
    let mut h = [0u8; DATA_HEADER_LEN];
    h[..4].copy_from_slice(&header(kind::DATA));
    h[4..12].copy_from_slice(&receiver_id.to_be_bytes());
    h[12..].copy_from_slice(&counter.to_be_bytes());
    h
}
