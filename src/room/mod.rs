//! The chat room as a pure state machine (sans-IO): a datagram, its source
//! and the time go in; the datagrams to send come out as values.
//!
//! The room owns the [`Gate`] (PROTOCOL.md version 2: cookies, handshakes,
//! sealing, replay windows, rekeys, roaming, resets) and sees what comes
//! through it: a member is a connection ([`ConnId`]), not an address, and
//! every reply and event is sealed for its connection at the end of the turn.
//!
//! No sockets and no clock: the caller passes a monotonic `now` and the Unix
//! time in milliseconds (for the cookie window and the events' time), and the
//! randomness (the cookie secret, a random source) is given at construction.
//!
//! One turn of the server's loop: any number of [`Room::handle`],
//! [`Room::console`], [`Room::expire`] calls, then [`Room::flush`] (which
//! packs the events queued for each member into EVENTS bodies, sends what
//! leavers were owed before their BYE, and seals everything) and, once the
//! output is sent, [`Room::end_turn`].

pub mod budget;
mod console;
mod join;
mod limits;
mod members;
mod outbox;
pub mod repair;
#[cfg(test)]
mod tests;

pub use limits::{AckWindow, Bucket, Seen, SEQ_WINDOW};
pub use outbox::{Datagram, Outbox};

use crate::gate::{self, Action, ConnId, Gate, IpKey};
use crate::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, LeftReason, Line, LineFlags, MessageId,
    RejectReason, ServerMsg, WhoPageWriter,
};
use crate::protocol::{name_key, validate_text};
use crate::session::{ServerKey, DATA_OVERHEAD, MAX_BODY};
use budget::Offer;
use members::{Member, Members};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// The local end a datagram arrived on (from IP_PKTINFO / IPV6_PKTINFO), so
/// replies leave from the same address on a host with several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Local {
    /// The local address to reply from (for a unicast datagram, the one it
    /// was sent to).
    pub ip: IpAddr,
    /// The index of the interface it arrived on, for IPv6 (0 for IPv4, where
    /// it is not used).
    pub ifindex: u32,
}

/// The two ends of a datagram: the remote address and the local address it
/// arrived on, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The local end the datagram arrived on, to reply from; `None` when not known.
    pub local: Option<Local>,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer { addr, local: None }
    }
}

/// How often the per-IP join counters of quiet addresses are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The room's limits and switches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Joins beyond this many members are refused as "room full".
    pub max_members: usize,
    /// In a room with more members than this, JOINED and LEFT are not sent.
    pub announce_limit: usize,
    /// A member silent this long is removed.
    pub member_timeout: Duration,
    /// SAY/ME/PRIVATE per second per member; 0 turns flood control off.
    pub rate: f64,
    /// How many SAY/ME/PRIVATE a member may send at once.
    pub burst: f64,
    /// Pack a turn's events for a member into as few datagrams as fit.
    pub packing: bool,
    /// Members per IP (an IPv4 address or an IPv6 /64).
    pub max_per_ip: usize,
    /// Joins per IP in a minute.
    pub joins_per_minute: u32,
    /// The gate's limits (and the rekey period).
    pub gate: gate::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_members: 10_000,
            announce_limit: 500,
            member_timeout: Duration::from_secs(30),
            rate: 5.0,
            burst: 10.0,
            packing: true,
            max_per_ip: 64,
            joins_per_minute: 64,
            gate: gate::Config::default(),
        }
    }
}

/// The room's counters for the console's `/stats` (the gate keeps its own).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Datagrams sent (counted by the server).
    pub datagrams_out: u64,
    /// Datagrams the kernel refused to send (counted by the server).
    pub dropped_sends: u64,
    /// Authenticated bodies that could not be decoded.
    pub bad_bodies: u64,
    /// Authenticated bodies not allowed in their session's state (SAY
    /// before JOIN), or for a reserved part this server does not serve.
    pub not_allowed: u64,
    /// Messages refused by flood control.
    pub rate_limited: u64,
    /// Message numbers below the window (REJECT 4).
    pub too_old: u64,
    /// Answers not queued because the member's answer queue was full.
    pub answers_refused: u64,
    /// Bodies that could not be sealed (their session was gone).
    pub unsealed: u64,
    /// The most members the room has had at once.
    pub peak: usize,
}

/// An event queued for every member but one.
#[derive(Debug, Clone, Copy)]
struct Broadcast {
    start: u32,
    end: u32,
    except: Option<ConnId>,
}

/// A member removed this turn: what was queued for it before then is still
/// sent, then its BYE (none when it timed out), then its connection closes.
struct Leaver {
    m: Member,
    /// The event arena's length when it left: later events are not for it.
    removed_at: u32,
    bye: Option<(ByeReason, Box<str>)>,
}

/// The room.
pub struct Room {
    cfg: Config,
    gate: Gate,
    rng: Box<dyn FnMut() -> u64 + Send>,
    members: Members,
    leavers: Vec<Leaver>,
    out: Outbox,
    broadcasts: Vec<Broadcast>,
    /// Members with private events this turn (when there is no broadcast).
    dirty: Vec<ConnId>,
    turn: u64,
    /// This run of the room's sequence, and the last room message's number.
    epoch: u32,
    room_seq: u64,
    per_ip: HashMap<IpKey, usize>,
    joins: HashMap<IpKey, Bucket>,
    next_prune: Instant,
    /// Members whose answers wait for their budget (some may be gone).
    answering: Vec<ConnId>,
    /// The drop counters at the last summary.
    drops_said: [u64; 7],
    log: Vec<String>,
    /// The counters of `/stats`.
    pub stats: Stats,
}

impl Room {
    /// A room with the given limits and server key, `cookie_secret` (32
    /// random bytes, never stored) and a random source (session ids, path
    /// challenges, client ids, the epoch).
    pub fn new(
        cfg: Config,
        key: ServerKey,
        cookie_secret: [u8; 32],
        mut rng: Box<dyn FnMut() -> u64 + Send>,
        now: Instant,
    ) -> Self {
        let gate = Gate::new(cfg.gate.clone(), key, cookie_secret, now, &mut *rng);
        let epoch = rng() as u32;
        Room {
            cfg,
            gate,
            rng,
            members: Members::new(),
            leavers: Vec::new(),
            out: Outbox::default(),
            broadcasts: Vec::new(),
            dirty: Vec::new(),
            turn: 0,
            epoch,
            room_seq: 0,
            per_ip: HashMap::new(),
            joins: HashMap::new(),
            next_prune: now + PRUNE_EVERY,
            answering: Vec::new(),
            drops_said: [0; 7],
            log: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// How many members there are.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// The gate's counters.
    pub fn gate_stats(&self) -> &gate::Stats {
        &self.gate.stats
    }

    /// Handles one datagram from `peer` at `now` (`unix_ms`: the Unix time
    /// in milliseconds).
    pub fn handle(&mut self, now: Instant, unix_ms: u64, peer: Peer, datagram: &[u8]) {
        let actions = self
            .gate
            .handle(now, unix_ms / 1000, peer.addr, datagram, &mut *self.rng);
        for a in actions {
            match a {
                Action::Send { to, bytes } => self.out.raw(to, peer.local, &bytes),
                Action::Deliver { conn, addr, body } => self.deliver(
                    now,
                    unix_ms,
                    conn,
                    Peer {
                        addr,
                        local: peer.local,
                    },
                    &body,
                ),
                Action::Heard { conn } => {
                    if let Some(i) = self.members.by_conn(conn) {
                        self.members.touch(i, now);
                    }
                }
                Action::Moved { conn, addr } => self.moved(conn, addr),
                Action::Gone { conn } => self.gone(conn),
                Action::Dropped(_) => {}
            }
        }
    }

    /// An authenticated body from `conn`.
    fn deliver(&mut self, now: Instant, unix_ms: u64, conn: ConnId, peer: Peer, body: &[u8]) {
        let Ok(msg) = decode_client(body) else {
            self.stats.bad_bodies += 1;
            return;
        };
        let Some(i) = self.members.by_conn(conn) else {
            match msg {
                ClientMsg::Join { name } => self.join(now, conn, peer, name),
                _ => self.stats.not_allowed += 1,
            }
            return;
        };
        self.members.touch(i, now);
        self.members.get_mut(i).local = peer.local;
        match msg {
            // The WELCOME may have been lost: the same one again.
            ClientMsg::Join { name } if name == &*self.members.get(i).name => self.welcome(i),
            ClientMsg::Say { seq, text } => self.say(unix_ms, now, i, seq, Said::Room(false), text),
            ClientMsg::Me { seq, text } => self.say(unix_ms, now, i, seq, Said::Room(true), text),
            ClientMsg::Private { seq, to, text } => {
                self.say(unix_ms, now, i, seq, Said::Private(to), text)
            }
            ClientMsg::Who { start } => self.who(now, i, start),
            ClientMsg::Leave => self.remove(i, LeftReason::Left, Some((ByeReason::Left, ""))),
            ClientMsg::Keepalive { .. } => {
                let m = self.members.get(i);
                let last_event = m.next_event.wrapping_sub(1);
                self.out
                    .reply(m.conn, m.local, &ServerMsg::Keepalive { last_event });
            }
            // A JOIN for another name, and what this server does not serve.
            _ => self.stats.not_allowed += 1,
        }
    }

    /// A SAY, ME or PRIVATE from member `i` (PROTOCOL.md "At most once").
    fn say(&mut self, unix_ms: u64, now: Instant, i: usize, seq: u32, what: Said<'_>, text: &str) {
        let m = self.members.get(i);
        let (conn, local) = (m.conn, m.local);
        let reject = |room: &mut Room, reason| {
            room.out
                .reply(conn, local, &ServerMsg::Reject { seq, reason });
        };
        match m.window.check(seq) {
            Seen::New => {}
            Seen::Again => return self.out.reply(conn, local, &ServerMsg::Ack { seq }),
            Seen::TooOld => {
                self.stats.too_old += 1;
                return reject(self, RejectReason::TooOld);
            }
        }
        if validate_text(text).is_err() {
            return reject(self, RejectReason::InvalidText);
        }
        let to = match what {
            Said::Room(_) => None,
            Said::Private(name) => match self.members.by_key(&name_key(name)) {
                Some(j) => Some(j),
                None => return reject(self, RejectReason::NoSuchMember),
            },
        };
        let (rate, burst) = (self.cfg.rate, self.cfg.burst);
        let m = self.members.get_mut(i);
        if rate > 0.0 && !m.bucket.take(now, rate, burst) {
            self.stats.rate_limited += 1;
            return reject(self, RejectReason::RateLimited);
        }
        m.window.accept(seq);
        let m = self.members.get(i);
        let id = MessageId {
            client_id: m.client_id,
            seq,
        };
        match (what, to) {
            (Said::Room(me), _) => {
                self.room_seq += 1;
                let line = Line {
                    room_seq: self.room_seq,
                    time_ms: unix_ms,
                    flags: LineFlags::NONE,
                    id,
                    from: &m.name,
                    text,
                };
                let ev = if me {
                    Event::Me(line)
                } else {
                    Event::Said(line)
                };
                let (start, end) = self.out.event(&ev);
                self.broadcasts.push(Broadcast {
                    start,
                    end,
                    except: Some(conn),
                });
            }
            (Said::Private(_), Some(j)) => {
                let ev = self.out.event(&Event::PrivateFrom {
                    time_ms: unix_ms,
                    id,
                    from: &m.name,
                    text,
                });
                let r = self.members.get_mut(j);
                if r.private.is_empty() {
                    self.dirty.push(r.conn);
                }
                r.private.push(ev);
            }
            (Said::Private(_), None) => {}
        }
        self.out.reply(conn, local, &ServerMsg::Ack { seq });
    }

    /// A WHO from member `i`: a page now, or when its answer budget allows.
    fn who(&mut self, now: Instant, i: usize, start: u32) {
        let cost = self.who_page_len(start) + DATA_OVERHEAD;
        let m = self.members.get_mut(i);
        match m.answers.offer(&mut m.budget, now, cost as u64, start) {
            Offer::Now(start) => self.who_page(i, start),
            Offer::Queued => {
                let conn = m.conn;
                if !self.answering.contains(&conn) {
                    self.answering.push(conn);
                }
            }
            Offer::Busy(_) => self.stats.answers_refused += 1,
        }
    }

    /// The length of the WHO_PAGE body from `start` (as it would be now).
    fn who_page_len(&self, start: u32) -> usize {
        const HEAD: usize = 1 + 4 + 4;
        let mut len = HEAD;
        for m in self.members.from(start as usize) {
            if len + 1 + m.name.len() > MAX_BODY {
                break;
            }
            len += 1 + m.name.len();
        }
        len
    }

    /// Sends member `i` the WHO_PAGE from `start`.
    fn who_page(&mut self, i: usize, start: u32) {
        let m = self.members.get(i);
        let total = self.members.len() as u32;
        let names = self.members.from(start as usize).iter().map(|m| &*m.name);
        self.out.reply_with(m.conn, m.local, |buf| {
            let mut page = WhoPageWriter::new(buf, start, total)?;
            for name in names {
                if !page.push(name)? {
                    break;
                }
            }
            Ok(page.finish())
        });
    }

    /// Sends the answers whose budget allows them now.
    fn send_answers(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.answering.len() {
            let Some(i) = self.members.by_conn(self.answering[k]) else {
                self.answering.swap_remove(k);
                continue;
            };
            loop {
                let m = self.members.get_mut(i);
                let Some(start) = m.answers.pop_ready(&mut m.budget, now) else {
                    break;
                };
                self.who_page(i, start);
            }
            if self.members.get(i).answers.is_empty() {
                self.answering.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// `conn`'s path check moved it to `addr`.
    fn moved(&mut self, conn: ConnId, addr: SocketAddr) {
        let Some(i) = self.members.by_conn(conn) else {
            return;
        };
        let m = self.members.get_mut(i);
        let before = std::mem::replace(&mut m.addr, addr);
        self.log
            .push(format!("{} moved from {before} to {addr}", m.name));
        // A roam is not a join: the per-IP count follows, never refuses.
        self.count_ip(before, false);
        self.count_ip(addr, true);
    }

    /// The gate forgot `conn` (its session is too old): removed as timed out.
    fn gone(&mut self, conn: ConnId) {
        if let Some(i) = self.members.by_conn(conn) {
            self.remove(i, LeftReason::TimedOut, None);
        }
    }

    /// Counts a member at `addr`'s IP in (`add`) or out.
    fn count_ip(&mut self, addr: SocketAddr, add: bool) {
        let key = gate::ip_key(addr.ip());
        if add {
            *self.per_ip.entry(key).or_insert(0) += 1;
        } else if let Some(n) = self.per_ip.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_ip.remove(&key);
            }
        }
    }

    /// Are joins and leaves announced (the room, counting the member who
    /// joins or leaves, is within the announce limit)?
    fn announce(&self) -> bool {
        self.members.len() <= self.cfg.announce_limit
    }

    /// Removes member `i`, tells the others (within the announce limit), logs
    /// why; `bye` is sent after what was queued for it (none on a timeout).
    fn remove(&mut self, i: usize, reason: LeftReason, bye: Option<(ByeReason, &str)>) {
        let announce = self.announce();
        let removed_at = self.out.events_len();
        let m = self.members.remove(i);
        self.count_ip(m.addr, false);
        let why = match reason {
            LeftReason::Left => "left",
            LeftReason::TimedOut => "timed out",
            LeftReason::Removed => "was removed by the admin",
        };
        self.log.push(format!(
            "{} ({}) {why} ({} in the room)",
            m.name,
            m.addr,
            self.members.len()
        ));
        if announce {
            let (start, end) = self.out.event(&Event::Left {
                reason,
                name: &m.name,
            });
            self.broadcasts.push(Broadcast {
                start,
                end,
                except: Some(m.conn),
            });
        }
        self.leavers.push(Leaver {
            m,
            removed_at,
            bye: bye.map(|(r, text)| (r, text.into())),
        });
    }

    /// When [`Room::expire`] or [`Room::flush`] next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let timeout = self
            .members
            .oldest()
            .map(|i| self.members.get(i).last_heard + self.cfg.member_timeout);
        let answers = self
            .answering
            .iter()
            .filter_map(|&c| self.members.by_conn(c))
            .filter_map(|i| {
                let m = self.members.get(i);
                m.answers.next_ready(&m.budget)
            })
            .min();
        [timeout, answers, self.gate.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Removes the members silent for the member timeout or longer, and
    /// those whose session the gate forgot.
    pub fn expire(&mut self, now: Instant) {
        for a in self.gate.expire(now) {
            if let Action::Gone { conn } = a {
                self.gone(conn);
            }
        }
        while let Some(i) = self.members.oldest() {
            if self.members.get(i).last_heard + self.cfg.member_timeout > now {
                break;
            }
            self.remove(i, LeftReason::TimedOut, None);
        }
        if now >= self.next_prune {
            let (rate, burst) = self.join_rate();
            self.joins.retain(|_, b| !b.is_full(now, rate, burst));
            self.next_prune = now + PRUNE_EVERY;
        }
    }

    /// The per-IP join bucket's rate (a second) and burst.
    fn join_rate(&self) -> (f64, f64) {
        let n = self.cfg.joins_per_minute as f64;
        (n / 60.0, n)
    }

    /// Tells every member the room is closing (BYE `reason` with `text`)
    /// after what was queued for it, and empties the room.
    pub fn shutdown(&mut self, reason: ByeReason, text: &str) {
        let n = self.members.len();
        let removed_at = self.out.events_len();
        let gone: Vec<Member> = self.members.drain().collect();
        self.leavers.extend(gone.into_iter().map(|m| Leaver {
            m,
            removed_at,
            bye: Some((reason, text.into())),
        }));
        self.per_ip.clear();
        self.log.push(format!("shutting down: told {n} members"));
    }

    /// Packs the events queued this turn into EVENTS bodies (a leaver's
    /// before its BYE), sends the answers the budgets allow, seals it all,
    /// and returns everything to send: the gate's datagrams and the direct
    /// replies first, then the events.
    pub fn flush(&mut self, now: Instant) -> &Outbox {
        self.send_answers(now);
        let packing = self.cfg.packing;
        let turn = self.turn;
        let (out, bcasts) = (&mut self.out, &self.broadcasts);
        if !bcasts.is_empty() {
            for m in self.members.iter_mut() {
                flush_member(m, u32::MAX, bcasts, out, turn, packing);
            }
        } else {
            for &c in &self.dirty {
                if let Some(i) = self.members.by_conn(c) {
                    flush_member(
                        self.members.get_mut(i),
                        u32::MAX,
                        bcasts,
                        out,
                        turn,
                        packing,
                    );
                }
            }
        }
        for l in &mut self.leavers {
            let Some((reason, text)) = &l.bye else {
                continue;
            };
            flush_member(&mut l.m, l.removed_at, bcasts, out, turn, packing);
            out.reply(
                l.m.conn,
                l.m.local,
                &ServerMsg::Bye {
                    reason: *reason,
                    missed: 0,
                    text,
                },
            );
        }
        self.stats.unsealed += self.out.seal(&mut self.gate, now);
        for l in self.leavers.drain(..) {
            self.gate.close(l.m.conn);
        }
        self.broadcasts.clear();
        self.dirty.clear();
        &self.out
    }

    /// Forgets the output of this turn (after the server sent it).
    pub fn end_turn(&mut self) {
        self.out.clear();
        self.broadcasts.clear();
        self.dirty.clear();
        self.turn += 1;
    }

    /// The log lines since the last call (joins, leaves and why, kicks, shutdown).
    pub fn take_log(&mut self) -> Vec<String> {
        std::mem::take(&mut self.log)
    }

    /// The drop counters, in the order of [`DROP_NAMES`].
    fn drops(&self) -> [u64; 7] {
        let g = &self.gate.stats;
        [
            g.malformed,
            g.forged,
            g.replayed,
            g.over_budget,
            g.wrong_state,
            self.stats.bad_bodies,
            self.stats.not_allowed,
        ]
    }

    /// Were datagrams dropped since the last summary?
    pub fn drops_pending(&self) -> bool {
        self.drops() != self.drops_said
    }

    /// One line summing up the datagrams dropped since the last call.
    pub fn drops_summary(&mut self) -> Option<String> {
        let now = self.drops();
        let parts: Vec<String> = DROP_NAMES
            .iter()
            .zip(now.iter().zip(self.drops_said))
            .filter(|(_, (&n, was))| n > *was)
            .map(|(name, (&n, was))| format!("{name} {}", n - was))
            .collect();
        let total: u64 = now.iter().sum::<u64>() - self.drops_said.iter().sum::<u64>();
        self.drops_said = now;
        (total > 0).then(|| {
            format!(
                "dropped {total} datagram{} ({})",
                if total == 1 { "" } else { "s" },
                parts.join(", ")
            )
        })
    }
}

/// The names of the drop counters in the log's summary.
const DROP_NAMES: [&str; 7] = [
    "malformed",
    "forged",
    "replayed",
    "over budget",
    "wrong state",
    "bad body",
    "not allowed",
];

/// What a member said: a line for the room (`true`: an action, ME) or a
/// private message to a name.
#[derive(Debug, Clone, Copy)]
enum Said<'a> {
    Room(bool),
    Private(&'a str),
}

/// Packs the events of this turn meant for `m`: the broadcasts not from it,
/// not from before it joined and not from after `until` (when it left), and
/// its private events, in arena order.
fn flush_member(
    m: &mut Member,
    until: u32,
    bcasts: &[Broadcast],
    out: &mut Outbox,
    turn: u64,
    packing: bool,
) {
    let since = if m.joined_turn == turn {
        m.joined_at
    } else {
        0
    };
    let conn = Some(m.conn);
    let mut b = bcasts
        .iter()
        .filter(move |b| b.except != conn && b.start >= since && b.start < until)
        .map(|b| (b.start, b.end))
        .peekable();
    let mut p = m.private.iter().copied().peekable();
    let merged = std::iter::from_fn(|| match (b.peek(), p.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => p.next(),
        (Some(_), _) => b.next(),
        (None, _) => p.next(),
    });
    out.pack(m.conn, m.local, &mut m.next_event, packing, merged);
    m.private.clear();
}
