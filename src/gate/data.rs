//! DATA at the gate (PROTOCOL.md, "DATA", "Rekey", "Roaming", "Stateless
//! reset"): the session is found by the receiver id, never by the address;
//! the replay window and the tag decide; the gate's own bodies (path
//! response, rekey) are used here and the others delivered to the room.

use super::conn::{Conn, Rekeyed, Which};
use super::{Action, ConnId, DropReason, Gate};
use crate::session::{body_type, parse_data_header, OpenError, SessionId, MAX_DATAGRAM};
use std::net::SocketAddr;
use std::time::Instant;

/// Seals a body the gate made on the session `c` sends on.
fn seal_own(c: &mut Conn, body: &[u8]) -> Option<Vec<u8>> {
    let mut buf = [0u8; MAX_DATAGRAM];
    let n = c.current.seal(body, &mut buf).ok()?;
    Some(buf[..n].to_vec())
}

impl Gate {
    pub(super) fn on_data(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        let Some(header) = parse_data_header(datagram) else {
            return self.discard(out, DropReason::Malformed);
        };
        let id = header.receiver_id;
        let Some(&(conn, which)) = self.ids.get(&id) else {
            return self.send_reset(now, from, id, out);
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            self.ids.remove(&id);
            return self.send_reset(now, from, id, out);
        };
        if which == Which::Old && c.old.as_ref().is_some_and(|o| now >= o.1) {
            // Its grace is over: the id is no longer live.
            c.old = None;
            self.ids.remove(&id);
            return self.send_reset(now, from, id, out);
        }
        let Some(session) = c.session(which) else {
            self.ids.remove(&id);
            return self.send_reset(now, from, id, out);
        };
        let mut plain = [0u8; MAX_DATAGRAM];
        let (body, newest) = match session.open(datagram, &mut plain) {
            Ok(o) => (o.body.to_vec(), o.newest),
            Err(OpenError::Replay) => return self.discard(out, DropReason::Replayed),
            Err(_) => return self.discard(out, DropReason::Forged),
        };
        c.heard = true;
        // The validated address before this datagram (a promote keeps it;
        // only a PATH_RESPONSE below may move it, and `check_path` looks
        // again): one lookup of the connection per datagram, not three.
        let addr = c.path.addr();
        if let Some(h) = &mut c.half_open {
            h.last_used = now;
        }
        if which == Which::Pending {
            self.promote(now, conn);
        }
        match body[0] {
            body_type::PATH_RESPONSE => self.on_path_response(conn, from, &body, out),
            body_type::REKEY_INIT if which == Which::Old => {
                out.push(Action::Heard { conn });
                self.discard(out, DropReason::WrongState);
            }
            body_type::REKEY_INIT => {
                out.push(Action::Heard { conn });
                self.on_rekey_init(now, conn, &body, rng, out);
            }
            _ => out.push(Action::Deliver { conn, addr, body }),
        }
        if from != addr {
            self.check_path(now, conn, from, datagram.len(), newest, rng, out);
        }
    }

    /// The client used the rekey's new session: the server sends on it now
    /// and reads the one before for `REKEY_GRACE`.
    fn promote(&mut self, now: Instant, conn: ConnId) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if let Some(forgotten) = c.promote(now) {
            self.ids.remove(&forgotten);
        }
        self.ids
            .insert(c.current.local_id(), (conn, Which::Current));
        if let Some(o) = &c.old {
            self.ids.insert(o.0.local_id(), (conn, Which::Old));
        }
        self.schedule(conn);
    }

    /// A PATH_RESPONSE: the session moves when it echoes the outstanding
    /// challenge from the address that was challenged.
    fn on_path_response(
        &mut self,
        conn: ConnId,
        from: SocketAddr,
        body: &[u8],
        out: &mut Vec<Action>,
    ) {
        out.push(Action::Heard { conn });
        let Some(data) = body.get(1..9).and_then(|d| <[u8; 8]>::try_from(d).ok()) else {
            return self.discard(out, DropReason::Malformed);
        };
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.path.on_response(from, &data) {
            self.stats.moves += 1;
            out.push(Action::Moved { conn, addr: from });
        }
    }

    /// After an authenticated datagram from `from`: a PATH_CHALLENGE to a new
    /// address, within what that address has sent (PROTOCOL.md, "Roaming").
    #[allow(clippy::too_many_arguments)]
    fn check_path(
        &mut self,
        now: Instant,
        conn: ConnId,
        from: SocketAddr,
        len: usize,
        newest: bool,
        rng: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if from == c.path.addr() {
            return;
        }
        let fresh = rng().to_be_bytes();
        if let Some((to, data)) = c.path.on_datagram(now, from, len, newest, fresh) {
            let mut body = [0u8; 9];
            body[0] = body_type::PATH_CHALLENGE;
            body[1..].copy_from_slice(&data);
            if let Some(bytes) = seal_own(c, &body) {
                self.stats.challenges += 1;
                out.push(Action::Send { to, bytes });
            }
        }
    }

    /// A REKEY_INIT on the session the server sends on.
    fn on_rekey_init(
        &mut self,
        now: Instant,
        conn: ConnId,
        body: &[u8],
        rng: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        let new_id = self.fresh_id(rng);
        let rekey_after_s = self.cfg.rekey_after_s;
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        if c.half_open.is_some() {
            return self.discard(out, DropReason::WrongState);
        }
        let to = c.path.addr();
        let resend = (c.pending.is_some())
            .then_some(c.rekeyed.as_deref())
            .flatten()
            .filter(|r| r.init[..] == body[..])
            .map(|r| r.response);
        if let Some(response) = resend {
            // A retransmission: the stored answer, no new Diffie-Hellman.
            if let Some(bytes) = seal_own(c, &response) {
                out.push(Action::Send { to, bytes });
            }
            return;
        }
        let too_soon = |r: &Rekeyed| now < r.at + c.current.rekey_after() / 2;
        if c.rekeyed.as_deref().is_some_and(too_soon) {
            return self.discard(out, DropReason::OverBudget);
        }
        let (session, response) =
            match self
                .key
                .respond_rekey(&c.current, body, new_id, rekey_after_s, now)
            {
                Ok(r) => r,
                Err(_) => return self.discard(out, DropReason::Forged),
            };
        if let Some(replaced) = c.pending.replace(Box::new((session, now))) {
            self.ids.remove(&replaced.0.local_id());
        }
        self.ids.insert(new_id, (conn, Which::Pending));
        c.rekeyed = Some(Box::new(Rekeyed {
            init: body.into(),
            response,
            at: now,
        }));
        self.stats.rekeys += 1;
        if let Some(bytes) = seal_own(c, &response) {
            out.push(Action::Send { to, bytes });
        }
    }

    /// Answers a DATA datagram for an id that is not live with its RESET
    /// (28 bytes for at least 57), within the stranger rate of the source.
    fn send_reset(&mut self, now: Instant, from: SocketAddr, id: SessionId, out: &mut Vec<Action>) {
        if !self.strangers.take_addr(now, from) {
            return self.discard(out, DropReason::OverBudget);
        }
        self.stats.resets += 1;
        let bytes = self.key.reset_key().reset_datagram(id).to_vec();
        out.push(Action::Send { to: from, bytes });
    }
}
