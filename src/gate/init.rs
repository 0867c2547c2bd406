//! INIT at the gate (PROTOCOL.md, "INIT", "Cookies", "Rules the server
//! keeps"): the stateless cookie round-trip before any Diffie-Hellman, the
//! stored RESPONSE for a retransmission, the handshake budgets per IP and in
//! all (counted only for INITs that echoed a valid cookie, so a spoofer
//! cannot spend a victim's), and the caps on half-open sessions.

use super::conn::{Conn, HalfOpen, Which};
use super::limits::ip_key;
use super::{Action, ConnId, DropReason, Gate};
use crate::session::{cookie_datagram, parse_init, Init, Path, INIT_PROLOGUE_LEN, INIT_SIZE};
use std::net::SocketAddr;
use std::time::Instant;

impl Gate {
    pub(super) fn on_init(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        let Some(init) = parse_init(datagram) else {
            return self.discard(out, DropReason::Malformed);
        };
        if init.cookie == [0; 16] {
            if datagram[INIT_PROLOGUE_LEN..].iter().any(|&b| b != 0) {
                return self.discard(out, DropReason::Malformed);
            }
            return self.send_cookie(now, unix_secs, from, &init, out);
        }
        if !self.cookies.check(unix_secs, from, &init.cookie) {
            return self.send_cookie(now, unix_secs, from, &init, out);
        }
        // The source has shown it receives at `from`: from here on every
        // budget is its own.
        if let Some(&conn) = self.half_open_by_init.get(&(from, init.id_c)) {
            match self.conns.get(&conn).and_then(|c| c.half_open.as_deref()) {
                Some(h) if h.init[..] == datagram[..] => {
                    let bytes = h.response.to_vec();
                    self.stats.responses_resent += 1;
                    out.push(Action::Send { to: from, bytes });
                    return;
                }
                // A new handshake with the same id replaces the old one.
                _ => {
                    self.close(conn);
                    out.push(Action::Gone { conn });
                }
            }
        }
        let ip = ip_key(from.ip());
        let held = self.half_open_per_ip.get(&ip).copied().unwrap_or(0);
        if held >= self.cfg.half_open_per_ip
            || !self.handshakes_per_ip.take_ip(now, &ip)
            || !self
                .handshakes
                .take(now, self.cfg.handshake_rate, self.cfg.handshake_rate)
        {
            return self.discard(out, DropReason::OverBudget);
        }
        while self.half_open_by_init.len() >= self.cfg.half_open_total
            && self.evict_oldest_half_open(out)
        {}
        let id_s = self.fresh_id(rng);
        let (session, response) = match self.key.respond(&init, id_s, self.cfg.rekey_after_s, now) {
            Ok(r) => r,
            Err(_) => return self.discard(out, DropReason::Forged),
        };
        self.stats.handshakes += 1;
        let conn = ConnId(self.next_conn);
        self.next_conn += 1;
        let half_open = HalfOpen {
            init: *init.bytes(),
            response,
            last_used: now,
            from,
            ip,
        };
        self.conns.insert(
            conn,
            Box::new(Conn::new(session, now, Path::new(from), half_open)),
        );
        self.ids.insert(id_s, (conn, Which::Current));
        self.half_open_by_init.insert((from, init.id_c), conn);
        *self.half_open_per_ip.entry(ip).or_insert(0) += 1;
        self.half_open_order.push_back(conn);
        if self.half_open_order.len() > 2 * self.half_open_by_init.len() + 64 {
            let conns = &self.conns;
            self.half_open_order
                .retain(|c| conns.get(c).is_some_and(|c| c.half_open.is_some()));
        }
        self.schedule(conn);
        out.push(Action::Send {
            to: from,
            bytes: response.to_vec(),
        });
    }

    /// Answers an INIT without a valid cookie: a COOKIE (28 bytes for 256),
    /// within the stranger rate of its source address; no state is kept.
    fn send_cookie(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        init: &Init,
        out: &mut Vec<Action>,
    ) {
        const { assert!(crate::session::COOKIE_SIZE < INIT_SIZE) };
        if !self.strangers.take_addr(now, from) {
            return self.discard(out, DropReason::OverBudget);
        }
        let cookie = self.cookies.make(unix_secs, from);
        self.stats.cookies += 1;
        out.push(Action::Send {
            to: from,
            bytes: cookie_datagram(init.id_c, &cookie).to_vec(),
        });
    }

    /// Forgets the oldest half-open connection (to make room for a new
    /// one); false when there is none.
    fn evict_oldest_half_open(&mut self, out: &mut Vec<Action>) -> bool {
        while let Some(conn) = self.half_open_order.pop_front() {
            if self.conns.get(&conn).is_some_and(|c| c.half_open.is_some()) {
                self.stats.half_open_dropped += 1;
                self.close(conn);
                out.push(Action::Gone { conn });
                return true;
            }
        }
        false
    }
}
