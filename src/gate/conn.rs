//! One connection behind the gate: the session the server sends on, the one
//! a rekey made (until its first datagram), the one before (read for the
//! grace), the member's path, and the half-open state before the room
//! admits it.

use super::limits::IpKey;
use crate::session::rekey::REKEY_RESPONSE_LEN;
use crate::session::{
    Path, Session, SessionId, HALF_OPEN_TIMEOUT, INIT_SIZE, REJECT_AFTER_EXTRA, REKEY_GRACE,
    RESPONSE_SIZE,
};
use std::net::SocketAddr;
use std::time::Instant;

/// Which of a connection's sessions an id names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Which {
    /// The session the server sends on.
    Current,
    /// A rekey's new session, before its first datagram.
    Pending,
    /// The session before the last rekey, read until its grace ends.
    Old,
}

/// A completed handshake the room has not admitted yet.
pub(super) struct HalfOpen {
    /// The INIT it answered, to recognize a retransmission.
    pub(super) init: [u8; INIT_SIZE],
    /// The RESPONSE, sent again for a retransmitted INIT.
    pub(super) response: [u8; RESPONSE_SIZE],
    /// The last authenticated datagram (or the handshake).
    pub(super) last_used: Instant,
    /// Where the INIT came from, and the source IP it counts against.
    pub(super) from: SocketAddr,
    pub(super) ip: IpKey,
}

/// The last rekey answered: its REKEY_INIT body, the REKEY_RESPONSE body.
pub(super) struct Rekeyed {
    pub(super) init: Box<[u8]>,
    pub(super) response: [u8; REKEY_RESPONSE_LEN],
    pub(super) at: Instant,
}

/// One connection: a member, or a half-open session.
pub(super) struct Conn {
    pub(super) current: Session,
    /// When `current` was made (its reject deadline counts from here).
    pub(super) since: Instant,
    /// (Boxed, as `old`: most connections have neither, and a connection is
    /// then a third of the size.)
    pub(super) pending: Option<Box<(Session, Instant)>>,
    /// The previous session and the end of its grace.
    pub(super) old: Option<Box<(Session, Instant)>>,
    pub(super) path: Path,
    /// Boxed, as `rekeyed`: a member admitted (or not rekeyed) keeps only a
    /// null pointer.
    pub(super) half_open: Option<Box<HalfOpen>>,
    /// Has an authenticated datagram arrived (so the server may send)?
    pub(super) heard: bool,
    pub(super) rekeyed: Option<Box<Rekeyed>>,
    /// The earliest deadline queued for this connection.
    pub(super) scheduled: Option<Instant>,
}

impl Conn {
    /// A half-open connection made at `now` by the handshake from `path`.
    pub(super) fn new(session: Session, now: Instant, path: Path, half_open: HalfOpen) -> Self {
        Conn {
            current: session,
            since: now,
            pending: None,
            old: None,
            path,
            half_open: Some(Box::new(half_open)),
            heard: false,
            rekeyed: None,
            scheduled: None,
        }
    }

    /// The session `which` names, if it is still there.
    pub(super) fn session(&mut self, which: Which) -> Option<&mut Session> {
        match which {
            Which::Current => Some(&mut self.current),
            Which::Pending => self.pending.as_mut().map(|p| &mut p.0),
            Which::Old => self.old.as_mut().map(|o| &mut o.0),
        }
    }

    /// Every session id of this connection that is live.
    pub(super) fn ids(&self) -> impl Iterator<Item = SessionId> {
        let pending = self.pending.as_ref().map(|p| p.0.local_id());
        let old = self.old.as_ref().map(|o| o.0.local_id());
        std::iter::once(self.current.local_id())
            .chain(pending)
            .chain(old)
    }

    /// The first datagram on the pending session arrived: it becomes the
    /// one the server sends on, and the current one is read for the grace.
    /// Returns the id of the session forgotten now, if any.
    pub(super) fn promote(&mut self, now: Instant) -> Option<SessionId> {
        let (next, since) = *self.pending.take()?;
        let before = std::mem::replace(&mut self.current, next);
        self.since = since;
        let dropped = self.old.take().map(|o| o.0.local_id());
        self.old = Some(Box::new((before, now + REKEY_GRACE)));
        dropped
    }

    /// When the session the server sends on may no longer be used.
    pub(super) fn reject_at(&self) -> Instant {
        self.since + self.current.rekey_after() + REJECT_AFTER_EXTRA
    }

    /// When something about this connection is due next.
    pub(super) fn next_deadline(&self) -> Instant {
        let mut t = self.reject_at();
        if let Some(h) = &self.half_open {
            t = t.min(h.last_used + HALF_OPEN_TIMEOUT);
        }
        if let Some(o) = &self.old {
            t = t.min(o.1);
        }
        t
    }
}
