//! The sealed channel of a connection: the session in use, the one it
//! replaced during a rekey's grace period, and the rekey in progress
//! (PROTOCOL.md, "Rekey"). Every client datagram of a connection is sealed
//! here, so each key has exactly one counter sequence.

use crate::session::{
    body_type, parse_data_header, ClientRekey, HandshakeError, OpenError, SealError, Session,
    SessionId, MAX_DATAGRAM, REJECT_AFTER_EXTRA, REKEY_GRACE,
};
use std::time::{Duration, Instant};

/// An unanswered REKEY_INIT is sent again after this long.
const REKEY_RETRY: Duration = Duration::from_secs(1);

/// Which of the channel's sessions a datagram came on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    /// The session in use.
    Current,
    /// The session a rekey replaced, still read during its grace period.
    Previous,
}

/// A rekey in progress: the handshake and when to send its REKEY_INIT again.
struct Rekeying {
    rekey: ClientRekey,
    resend_at: Instant,
}

/// The sessions of one sealed channel.
pub(super) struct Channel {
    current: Session,
    /// When `current` was established (its rekey and expiry count from here).
    since: Instant,
    /// The replaced session and when it is forgotten.
    previous: Option<(Session, Instant)>,
    rekeying: Option<Rekeying>,
    /// When the last authenticated datagram arrived.
    pub(super) last_heard: Instant,
    /// When the last datagram was sealed.
    pub(super) last_sent: Instant,
}

impl Channel {
    /// A channel over a session just established at `now`.
    pub(super) fn new(session: Session, now: Instant) -> Channel {
        Channel {
            current: session,
            since: now,
            previous: None,
            rekeying: None,
            last_heard: now,
            last_sent: now,
        }
    }

    /// Seals `body` on the session `which` (the previous one only while it
    /// is kept; else the current one).
    pub(super) fn seal(
        &mut self,
        which: Which,
        body: &[u8],
        now: Instant,
    ) -> Result<Vec<u8>, SealError> {
        let session = match (which, &mut self.previous) {
            (Which::Previous, Some((old, _))) => old,
            _ => &mut self.current,
        };
        let mut out = [0u8; MAX_DATAGRAM];
        let n = session.seal(body, &mut out)?;
        self.last_sent = now;
        Ok(out[..n].to_vec())
    }

    /// Opens a DATA datagram on the session its receiver id names. The first
    /// datagram on a new session ends the old one's grace period.
    pub(super) fn open(&mut self, datagram: &[u8]) -> Result<(Vec<u8>, Which), OpenError> {
        let id = parse_data_header(datagram)
            .ok_or(OpenError::Malformed)?
            .receiver_id;
        let mut plain = [0u8; MAX_DATAGRAM];
        if id == self.current.local_id() {
            let body = self.current.open(datagram, &mut plain)?.body.to_vec();
            self.previous = None;
            return Ok((body, Which::Current));
        }
        match &mut self.previous {
            Some((old, _)) if old.local_id() == id => {
                let body = old.open(datagram, &mut plain)?.body.to_vec();
                Ok((body, Which::Previous))
            }
            _ => Err(OpenError::WrongSession),
        }
    }

    /// Is `datagram` a RESET with the token of the current or the previous session?
    pub(super) fn is_reset(&self, datagram: &[u8]) -> bool {
        self.current.is_reset(datagram)
            || self
                .previous
                .as_ref()
                .is_some_and(|(old, _)| old.is_reset(datagram))
    }

    /// Is the current session too old to be used (`rekey_after` + 60 s)?
    pub(super) fn is_expired(&self, now: Instant) -> bool {
        self.current.is_expired(now)
    }

    /// Rekey work due at `now`: forgets an old session whose grace is over,
    /// starts a rekey when the current session is due for one (`new_id`
    /// gives a fresh random client id), and returns the REKEY_INIT datagram
    /// to send (a start or a retry), if any.
    pub(super) fn rekey_work(
        &mut self,
        now: Instant,
        new_id: impl FnOnce() -> SessionId,
    ) -> Option<Vec<u8>> {
        if self
            .previous
            .as_ref()
            .is_some_and(|(_, until)| now >= *until)
        {
            self.previous = None;
        }
        if self.rekeying.is_none() && self.current.needs_rekey(now) {
            // Only a failure inside the Noise library refuses a start; the
            // next turn tries again.
            let rekey = ClientRekey::start(&self.current, new_id()).ok()?;
            self.rekeying = Some(Rekeying {
                rekey,
                resend_at: now,
            });
        }
        let r = self.rekeying.as_mut()?;
        if now < r.resend_at {
            return None;
        }
        r.resend_at = now + REKEY_RETRY;
        let body = r.rekey.body().to_vec();
        self.seal(Which::Current, &body, now).ok()
    }

    /// A REKEY_RESPONSE body that came on `which`: with the right key, the
    /// new session is used at once and the old one read for
    /// [`REKEY_GRACE`]. `Err(WrongKey)` means the server's key changed; an
    /// answer to no rekey in progress is ignored; after any other error a
    /// new rekey starts at the next turn.
    pub(super) fn on_rekey_response(
        &mut self,
        which: Which,
        body: &[u8],
        pin: &[u8; 32],
        now: Instant,
    ) -> Result<(), HandshakeError> {
        if which != Which::Current || body.first() != Some(&body_type::REKEY_RESPONSE) {
            return Err(HandshakeError::Ignored);
        }
        let mut r = self.rekeying.take().ok_or(HandshakeError::Ignored)?;
        let est = r.rekey.on_response(body, Some(pin), now)?;
        let old = std::mem::replace(&mut self.current, est.session);
        self.previous = Some((old, now + REKEY_GRACE));
        self.since = now;
        Ok(())
    }

    /// The next instant [`Channel::rekey_work`] or an expiry has something to do.
    pub(super) fn next_deadline(&self) -> Instant {
        let rekey_after = self.current.rekey_after();
        let mut t = match &self.rekeying {
            Some(r) => r.resend_at,
            None => self.since + rekey_after,
        };
        t = t.min(self.since + rekey_after + REJECT_AFTER_EXTRA);
        if let Some((_, until)) = &self.previous {
            t = t.min(*until);
        }
        t
    }

    /// The ids the server receives on: the current session's (and the
    /// previous one's, while kept).
    #[cfg(test)]
    pub(super) fn server_ids(&self) -> (SessionId, Option<SessionId>) {
        (
            self.current.peer_id(),
            self.previous.as_ref().map(|(old, _)| old.peer_id()),
        )
    }
}
