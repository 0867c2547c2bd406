//! The gate: what stands between the network and the room (PROTOCOL.md,
//! version 2), sans-IO. A datagram, its source, the time and random numbers
//! go in; decisions come out as values ([`Action`]): send these bytes there,
//! deliver this opened body from that connection, drop (and count).
//!
//! The gate owns every session: the cookie round-trip and the handshake
//! (with its budgets), opening and sealing, the replay windows, rekeys,
//! roaming and stateless resets. The room sees connections ([`ConnId`]),
//! which stay the same across rekeys and roams, and sealed bodies.
//!
//! * [`Gate::handle`] takes one datagram.
//! * [`Gate::seal_to`] seals a body for a connection (to its validated address).
//! * [`Gate::admit`] when the room accepted a JOIN (the connection is no
//!   longer half-open); [`Gate::close`] when the room is done with it.
//! * [`Gate::expire`] at [`Gate::next_deadline`].

mod conn;
mod data;
mod init;
mod limits;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_sealed;

use crate::room::Bucket;
use crate::session::{CookieKey, ServerKey, SessionId, MAX_DATAGRAM, REKEY_AFTER_TIME};
use conn::{Conn, Which};
use limits::Buckets;
pub use limits::{ip_key, IpKey};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::Instant;

/// A connection behind the gate: one member (or half-open session), the same
/// across its rekeys and roams. Never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// The gate's limits (PROTOCOL.md, "Limits and constants").
#[derive(Debug, Clone)]
pub struct Config {
    /// `rekey_after_s` given in every handshake (`REKEY_AFTER_TIME`, 120).
    pub rekey_after_s: u32,
    /// COOKIEs and RESETs a second to one source address (`STRANGER_RATE`, 20).
    pub stranger_rate: f64,
    /// How many of them at once (40).
    pub stranger_burst: f64,
    /// Half-open sessions per IP (an IPv4 address or IPv6 /64; 16).
    pub half_open_per_ip: usize,
    /// Half-open sessions in all (4096); the oldest makes room for a new one.
    pub half_open_total: usize,
    /// Handshakes (Diffie-Hellman) a second per IP, counted only for INITs
    /// that echoed a valid cookie (10).
    pub handshake_rate_per_ip: f64,
    /// How many of them at once (20).
    pub handshake_burst_per_ip: f64,
    /// Handshakes a second in all (2000, also the burst).
    pub handshake_rate: f64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            rekey_after_s: REKEY_AFTER_TIME.as_secs() as u32,
            stranger_rate: 20.0,
            stranger_burst: 40.0,
            half_open_per_ip: 16,
            half_open_total: 4096,
            handshake_rate_per_ip: 10.0,
            handshake_burst_per_ip: 20.0,
            handshake_rate: 2000.0,
        }
    }
}

/// Why a datagram was dropped (each is also counted in [`Stats`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    /// Not a well-formed datagram of this version.
    Malformed,
    /// It failed authentication (tag, sealed header, or Noise's checks).
    Forged,
    /// A counter already seen, or below the replay window.
    Replayed,
    /// Beyond a budget: stranger rate, handshakes, half-open sessions, rekeys.
    OverBudget,
    /// Authentic, but not allowed in the connection's state (a REKEY_INIT
    /// from a half-open session, or on a session a rekey replaced).
    WrongState,
}

/// What the caller does with a datagram's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `bytes` to `to`: a COOKIE, RESPONSE or RESET, or a datagram the
    /// gate sealed itself (PATH_CHALLENGE, REKEY_RESPONSE).
    Send {
        /// Where to.
        to: SocketAddr,
        /// The whole datagram.
        bytes: Vec<u8>,
    },
    /// An authenticated body for the room (a client's body, with its
    /// padding), from `conn` whose validated address is `addr` (where replies
    /// go, and which the per-IP rules count; not always the datagram's source).
    Deliver {
        /// The connection.
        conn: ConnId,
        /// Its validated address.
        addr: SocketAddr,
        /// The opened body.
        body: Vec<u8>,
    },
    /// An authenticated datagram whose body the gate used itself (a path
    /// response, a rekey): it refreshes the member as any datagram does.
    Heard {
        /// The connection.
        conn: ConnId,
    },
    /// `conn`'s path check succeeded: its validated address is now `addr`.
    Moved {
        /// The connection.
        conn: ConnId,
        /// The new address.
        addr: SocketAddr,
    },
    /// `conn` is gone (half-open too long, or its session is past
    /// `REJECT_AFTER_TIME`): the room removes its member as timed out.
    Gone {
        /// The connection.
        conn: ConnId,
    },
    /// The datagram was dropped (and counted).
    Dropped(DropReason),
}

/// Counters for the console's `/stats`.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Datagrams handed to [`Gate::handle`].
    pub datagrams_in: u64,
    /// Dropped as [`DropReason::Malformed`].
    pub malformed: u64,
    /// Dropped as [`DropReason::Forged`].
    pub forged: u64,
    /// Dropped as [`DropReason::Replayed`].
    pub replayed: u64,
    /// Dropped as [`DropReason::OverBudget`].
    pub over_budget: u64,
    /// Dropped as [`DropReason::WrongState`].
    pub wrong_state: u64,
    /// COOKIEs sent.
    pub cookies: u64,
    /// Handshakes made (each one Diffie-Hellman work), rekeys excluded.
    pub handshakes: u64,
    /// Stored RESPONSEs sent again for a retransmitted INIT.
    pub responses_resent: u64,
    /// Rekeys answered (new REKEY_INITs).
    pub rekeys: u64,
    /// RESETs sent.
    pub resets: u64,
    /// PATH_CHALLENGEs sent.
    pub challenges: u64,
    /// Connections whose path check moved them.
    pub moves: u64,
    /// Half-open sessions forgotten (unused for 10 s, or evicted by a newer one).
    pub half_open_dropped: u64,
    /// Connections forgotten because their session was too old.
    pub expired: u64,
}

/// Why [`Gate::seal_to`] sealed nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealToError {
    /// No such connection (closed, or gone).
    Unknown,
    /// Nothing authenticated has come on it yet: nothing is sent on a
    /// session before the client's first DATA.
    Silent,
    /// Its session is past `REJECT_AFTER_TIME` (it is gone at the next
    /// [`Gate::expire`]).
    Expired,
    /// The body is empty or longer than `MAX_BODY`.
    BadLength,
    /// The session's counter ran out (it needed a rekey).
    Exhausted,
}

/// The gate.
pub struct Gate {
    cfg: Config,
    key: ServerKey,
    cookies: CookieKey,
    /// Boxed: a table of 10,000 connections keeps its spare buckets small.
    conns: HashMap<ConnId, Box<Conn>>,
    /// Every live session id (half-open, current, pending, old in grace).
    ids: HashMap<SessionId, (ConnId, Which)>,
    next_conn: u64,
    /// Half-open connections by (source, `id_c`), for retransmitted INITs.
    half_open_by_init: HashMap<(SocketAddr, SessionId), ConnId>,
    half_open_per_ip: HashMap<IpKey, usize>,
    /// Half-open connections, oldest first (some may be gone or admitted).
    half_open_order: VecDeque<ConnId>,
    strangers: Buckets,
    handshakes_per_ip: Buckets,
    handshakes: Bucket,
    deadlines: BinaryHeap<Reverse<(Instant, ConnId)>>,
    /// The counters of `/stats`.
    pub stats: Stats,
}

impl Gate {
    /// A gate for the server key `key`, with `cookie_secret` (32 bytes from
    /// the OS random source, never stored) and `rng` for the keys of its
    /// budget tables.
    pub fn new(
        cfg: Config,
        key: ServerKey,
        cookie_secret: [u8; 32],
        now: Instant,
        rng: &mut dyn FnMut() -> u64,
    ) -> Self {
        let mut table_key = || {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&rng().to_ne_bytes());
            k[8..].copy_from_slice(&rng().to_ne_bytes());
            k
        };
        let strangers = Buckets::new(table_key(), now, cfg.stranger_rate, cfg.stranger_burst);
        let handshakes_per_ip = Buckets::new(
            table_key(),
            now,
            cfg.handshake_rate_per_ip,
            cfg.handshake_burst_per_ip,
        );
        Gate {
            handshakes: Bucket::full(now, cfg.handshake_rate),
            cfg,
            key,
            cookies: CookieKey::new(cookie_secret),
            conns: HashMap::new(),
            ids: HashMap::new(),
            next_conn: 1,
            half_open_by_init: HashMap::new(),
            half_open_per_ip: HashMap::new(),
            half_open_order: VecDeque::new(),
            strangers,
            handshakes_per_ip,
            deadlines: BinaryHeap::new(),
            stats: Stats::default(),
        }
    }

    /// Handles one datagram from `from`: `now` is the monotonic time,
    /// `unix_secs` the Unix time (for the cookie window), `rng` random
    /// numbers (session ids, path challenges); returns what to do.
    pub fn handle(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn FnMut() -> u64,
    ) -> Vec<Action> {
        let mut out = Vec::new();
        self.handle_into(now, unix_secs, from, datagram, rng, &mut out);
        out
    }

    /// [`Gate::handle`] appending to `out`, a list the caller keeps from
    /// datagram to datagram (the server's path: no allocation per datagram).
    pub fn handle_into(
        &mut self,
        now: Instant,
        unix_secs: u64,
        from: SocketAddr,
        datagram: &[u8],
        rng: &mut dyn FnMut() -> u64,
        out: &mut Vec<Action>,
    ) {
        self.stats.datagrams_in += 1;
        match crate::session::clear_kind(datagram) {
            _ if datagram.len() > MAX_DATAGRAM => self.discard(out, DropReason::Malformed),
            Some(crate::session::kind::INIT) => {
                self.on_init(now, unix_secs, from, datagram, rng, out)
            }
            Some(crate::session::kind::DATA) => self.on_data(now, from, datagram, rng, out),
            _ => self.discard(out, DropReason::Malformed),
        }
    }

    /// Seals `body` for `conn` into `out`: its length and where to send it
    /// (the connection's validated address; during a rekey, on the old
    /// session until the client has used the new one).
    pub fn seal_to(
        &mut self,
        now: Instant,
        conn: ConnId,
        body: &[u8],
        out: &mut [u8; MAX_DATAGRAM],
    ) -> Result<(usize, SocketAddr), SealToError> {
        let c = self.conns.get_mut(&conn).ok_or(SealToError::Unknown)?;
        if !c.heard {
            return Err(SealToError::Silent);
        }
        if now >= c.reject_at() {
            return Err(SealToError::Expired);
        }
        match c.current.seal(body, out) {
            Ok(n) => Ok((n, c.path.addr())),
            Err(crate::session::SealError::BadLength) => Err(SealToError::BadLength),
            Err(crate::session::SealError::Exhausted) => Err(SealToError::Exhausted),
        }
    }

    /// The room accepted `conn` (a JOIN or a RESUME): it is no longer
    /// half-open (no 10-second limit, not counted in the caps). False when
    /// there is no such connection.
    pub fn admit(&mut self, conn: ConnId) -> bool {
        let Some(c) = self.conns.get_mut(&conn) else {
            return false;
        };
        if let Some(h) = c.half_open.take() {
            self.forget_half_open(conn, &h);
        }
        true
    }

    /// The room is done with `conn` (after its BYE was sealed, or it timed
    /// out): every id of it is forgotten, so the client's next datagram
    /// draws a RESET.
    pub fn close(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.remove(&conn) {
            for id in c.ids() {
                self.ids.remove(&id);
            }
            if let Some(h) = &c.half_open {
                self.forget_half_open(conn, h);
            }
        }
    }

    /// The validated address of `conn`.
    pub fn addr(&self, conn: ConnId) -> Option<SocketAddr> {
        self.conns.get(&conn).map(|c| c.path.addr())
    }

    /// How many connections there are (members and half-open).
    pub fn conn_count(&self) -> usize {
        self.conns.len()
    }

    /// When [`Gate::expire`] has something to do (it may find nothing).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.peek().map(|Reverse((t, _))| *t)
    }

    /// Forgets what is due at `now`: half-open sessions unused for 10 s,
    /// sessions past `REJECT_AFTER_TIME` (both as [`Action::Gone`]) and old
    /// sessions whose grace after a rekey ended.
    pub fn expire(&mut self, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        while let Some(&Reverse((t, conn))) = self.deadlines.peek() {
            if t > now {
                break;
            }
            self.deadlines.pop();
            let Some(c) = self.conns.get_mut(&conn) else {
                continue;
            };
            if c.scheduled != Some(t) {
                continue; // a stale entry; the live one is queued too
            }
            c.scheduled = None;
            let half_open_over = c
                .half_open
                .as_ref()
                .is_some_and(|h| now >= h.last_used + crate::session::HALF_OPEN_TIMEOUT);
            if half_open_over || now >= c.reject_at() {
                if half_open_over {
                    self.stats.half_open_dropped += 1;
                } else {
                    self.stats.expired += 1;
                }
                self.close(conn);
                out.push(Action::Gone { conn });
                continue;
            }
            if c.old.as_ref().is_some_and(|o| now >= o.1) {
                if let Some(o) = c.old.take() {
                    self.ids.remove(&o.0.local_id());
                }
            }
            self.schedule(conn);
        }
        out
    }

    /// Queues `conn`'s next deadline unless an earlier one is queued.
    fn schedule(&mut self, conn: ConnId) {
        if let Some(c) = self.conns.get_mut(&conn) {
            let t = c.next_deadline();
            if c.scheduled.is_none_or(|s| t < s) {
                c.scheduled = Some(t);
                self.deadlines.push(Reverse((t, conn)));
            }
        }
    }

    /// Removes a half-open connection from the half-open accounting.
    fn forget_half_open(&mut self, conn: ConnId, h: &conn::HalfOpen) {
        let id_c = crate::session::parse_init(&h.init[..]).map_or(0, |i| i.id_c);
        if self.half_open_by_init.get(&(h.from, id_c)) == Some(&conn) {
            self.half_open_by_init.remove(&(h.from, id_c));
        }
        if let Some(n) = self.half_open_per_ip.get_mut(&h.ip) {
            *n -= 1;
            if *n == 0 {
                self.half_open_per_ip.remove(&h.ip);
            }
        }
    }

    /// A random session id, never 0 and not in use.
    fn fresh_id(&self, rng: &mut dyn FnMut() -> u64) -> SessionId {
        loop {
            let id = rng();
            if id != 0 && !self.ids.contains_key(&id) {
                return id;
            }
        }
    }

    fn discard(&mut self, out: &mut Vec<Action>, why: DropReason) {
        let n = match why {
            DropReason::Malformed => &mut self.stats.malformed,
            DropReason::Forged => &mut self.stats.forged,
            DropReason::Replayed => &mut self.stats.replayed,
            DropReason::OverBudget => &mut self.stats.over_budget,
            DropReason::WrongState => &mut self.stats.wrong_state,
        };
        *n += 1;
        out.push(Action::Dropped(why));
    }
}
