//! The chat room as a pure state machine (sans-IO): a datagram, its source
//! and the time go in; the datagrams to send come out as values.
//!
//! No sockets and no clock: the caller passes a monotonic `now` and the unix
//! time (for the cookie window), and the randomness (the cookie key, a token
//! source) is given at construction, so tests are deterministic.
//!
//! One turn of the server's loop: any number of [`Room::handle`],
//! [`Room::console`], [`Room::expire`] calls, then [`Room::flush`] (which packs
//! the events queued for each member into EVENTS datagrams) and, once the
//! output is sent, [`Room::end_turn`].

pub mod budget;
mod console;
mod join;
mod limits;
mod members;
mod outbox;
pub mod repair;

pub use limits::{Bucket, SeqWindow, SourceLimiter, SEQ_WINDOW};
pub use outbox::{Outbox, Transmit};

use crate::protocol::{
    check_text, decode_client, encode_who_page, name_key, ByeReason, ClientMsg, Event, LeftReason,
    Malformed, RejectReason, ServerMsg, Token,
};
use members::{Member, Members};
use siphasher::sip128::SipHasher24;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// Seconds per cookie window (PROTOCOL.md).
pub const COOKIE_WINDOW_SECS: u64 = 30;

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

/// The two ends of a datagram: the remote address (the identity) and the
/// local address it arrived on, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote address: the member's identity, and where replies go.
    pub addr: SocketAddr,
    /// The local end the datagram arrived on, to reply from; `None` when not known.
    pub local: Option<Local>,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer { addr, local: None }
    }
}

/// The room's limits and switches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Joins beyond this many members are refused as "room full".
    pub max_members: usize,
    /// In a room with more members than this, JOINED and LEFT are not sent.
    pub announce_limit: usize,
    /// A member silent this long is removed.
    pub member_timeout: Duration,
    /// SAY/PRIVATE per second per member; 0 turns flood control off.
    pub rate: f64,
    /// How many SAY/PRIVATE a member may send at once.
    pub burst: f64,
    /// Replies per second to one non-member IP address.
    pub stranger_rate: f64,
    /// How many replies one non-member IP address may get at once.
    pub stranger_burst: f64,
    /// Pack a turn's events for a member into as few datagrams as fit.
    pub packing: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_members: 10_000,
            announce_limit: 500,
            member_timeout: Duration::from_secs(30),
            rate: 5.0,
            burst: 10.0,
            stranger_rate: 20.0,
            stranger_burst: 40.0,
            packing: true,
        }
    }
}

/// Counters for the console's `/stats`. The server adds what only it sees.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Datagrams handed to [`Room::handle`].
    pub datagrams_in: u64,
    /// Datagrams sent (counted by the server).
    pub datagrams_out: u64,
    /// Datagrams that could not be decoded.
    pub malformed: u64,
    /// Datagrams the kernel refused to send (counted by the server).
    pub dropped_sends: u64,
    /// Messages refused by flood control, and replies to non-members not
    /// sent because of their per-address limit.
    pub rate_limited: u64,
    /// A known token from an address that is not its member's.
    pub forged: u64,
    /// Datagrams with a token the room does not know.
    pub unknown_sessions: u64,
    /// The most members the room has had at once.
    pub peak: usize,
}

/// A malformed-datagram tally since the last summary, by kind.
const MALFORMED_KINDS: [Malformed; 9] = [
    Malformed::TooLong,
    Malformed::Truncated,
    Malformed::BadMagic,
    Malformed::BadVersion,
    Malformed::UnknownKind,
    Malformed::BadLength,
    Malformed::BadUtf8,
    Malformed::Trailing,
    Malformed::BadValue,
];

/// An event queued for every member but one (`except`, or 0 for none).
#[derive(Debug, Clone, Copy)]
struct Broadcast {
    start: u32,
    end: u32,
    except: Token,
}

/// The room.
pub struct Room {
    cfg: Config,
    cookie_key: [u8; 16],
    tokens: Box<dyn FnMut() -> u64 + Send>,
    members: Members,
    strangers: SourceLimiter,
    out: Outbox,
    broadcasts: Vec<Broadcast>,
    /// Members with private events this turn (when there is no broadcast).
    dirty: Vec<Token>,
    turn: u64,
    recent_malformed: [u64; MALFORMED_KINDS.len()],
    log: Vec<String>,
    /// The counters of `/stats`.
    pub stats: Stats,
}

impl Room {
    /// A room with the given limits, cookie key (16 random bytes) and token
    /// source (random 64-bit numbers; 0 and duplicates are skipped).
    pub fn new(
        cfg: Config,
        cookie_key: [u8; 16],
        tokens: Box<dyn FnMut() -> u64 + Send>,
        now: Instant,
    ) -> Self {
        // The limiter's hash key is derived from the cookie key (another domain).
        let lim_key = SipHasher24::new_with_key(&cookie_key)
            .hash(b"source limiter")
            .as_bytes();
        let strangers = SourceLimiter::new(lim_key, now, cfg.stranger_rate, cfg.stranger_burst);
        Room {
            cfg,
            cookie_key,
            tokens,
            members: Members::new(),
            strangers,
            out: Outbox::default(),
            broadcasts: Vec::new(),
            dirty: Vec::new(),
            turn: 0,
            recent_malformed: [0; MALFORMED_KINDS.len()],
            log: Vec::new(),
            stats: Stats::default(),
        }
    }

    /// How many members there are.
    pub fn member_count(&self) -> usize {
        self.members.len()
    }

    /// Handles one datagram from `peer`.
    pub fn handle(&mut self, now: Instant, unix_secs: u64, peer: Peer, datagram: &[u8]) {
        self.stats.datagrams_in += 1;
        let msg = match decode_client(datagram) {
            Ok(m) => m,
            Err(e) => {
                self.stats.malformed += 1;
                if let Some(k) = MALFORMED_KINDS.iter().position(|&k| k == e) {
                    self.recent_malformed[k] += 1;
                }
                return;
            }
        };
        let token = match msg {
            ClientMsg::Join {
                nonce,
                prev_token,
                cookie,
                name,
            } => return self.join(now, unix_secs, peer, nonce, prev_token, cookie, name),
            ClientMsg::Say { token, .. }
            | ClientMsg::Private { token, .. }
            | ClientMsg::Who { token, .. }
            | ClientMsg::Leave { token }
            | ClientMsg::Ping { token } => token,
        };
        let Some(i) = self.members.by_token(token) else {
            // Decoding guarantees at least 12 bytes: the reply is never larger.
            self.stats.unknown_sessions += 1;
            if self.strangers.allow(now, peer.addr.ip()) {
                self.out.reply(peer, &ServerMsg::UnknownSession { token });
            } else {
                self.stats.rate_limited += 1;
            }
            return;
        };
        if self.members.get(i).peer.addr != peer.addr {
            self.stats.forged += 1;
            return;
        }
        self.members.touch(i, now);
        let me = self.members.get(i).peer;
        match msg {
            ClientMsg::Say { seq, text, .. } => self.say(now, i, seq, None, text),
            ClientMsg::Private { seq, to, text, .. } => self.say(now, i, seq, Some(to), text),
            ClientMsg::Who { start, .. } => {
                let total = self.members.len() as u32;
                let names = self.members.from(start as usize).iter().map(|m| &*m.name);
                self.out.reply_with(me, |buf| {
                    encode_who_page(buf, start, total, names);
                });
            }
            ClientMsg::Leave { .. } => {
                self.out.reply(
                    me,
                    &ServerMsg::Bye {
                        reason: ByeReason::Left,
                    },
                );
                self.remove(i, LeftReason::Left);
            }
            ClientMsg::Ping { .. } => {
                let last_seq = self.members.get(i).next_seq.wrapping_sub(1);
                self.out.reply(me, &ServerMsg::Pong { last_seq });
            }
            ClientMsg::Join { .. } => {}
        }
    }

    /// A SAY (`to == None`) or PRIVATE from member `i`.
    fn say(&mut self, now: Instant, i: usize, seq: u32, to: Option<&str>, text: &str) {
        let m = self.members.get(i);
        let peer = m.peer;
        if m.seen.seen(seq) {
            self.out.reply(peer, &ServerMsg::Ack { seq });
            return;
        }
        let reject = |room: &mut Room, reason| {
            room.out.reply(peer, &ServerMsg::Reject { seq, reason });
        };
        if !check_text(text) {
            return reject(self, RejectReason::InvalidText);
        }
        let to = match to {
            None => None,
            Some(name) => match self.members.by_key(&name_key(name)) {
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
        m.seen.accept(seq);
        let (from, sender) = (&*m.name, m.token);
        match to {
            None => {
                let (start, end) = self.out.event(&Event::Said { from, text });
                self.broadcasts.push(Broadcast {
                    start,
                    end,
                    except: sender,
                });
            }
            Some(j) => {
                let ev = self.out.event(&Event::PrivateFrom { from, text });
                let r = self.members.get_mut(j);
                if r.private.is_empty() {
                    self.dirty.push(r.token);
                }
                r.private.push(ev);
            }
        }
        self.out.reply(peer, &ServerMsg::Ack { seq });
    }

    /// Are joins and leaves announced (the room is not above the announce limit)?
    fn announce(&self) -> bool {
        self.members.len() <= self.cfg.announce_limit
    }

    /// Removes member `i`, tells the others (within the announce limit), logs why.
    fn remove(&mut self, i: usize, reason: LeftReason) {
        let announce = self.announce();
        let m = self.members.remove(i);
        let why = match reason {
            LeftReason::Left => "left",
            LeftReason::TimedOut => "timed out",
            LeftReason::Removed => "was removed by the admin",
        };
        self.log.push(format!(
            "{} ({}) {why} ({} in the room)",
            m.name,
            m.peer.addr,
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
                except: m.token,
            });
        }
    }

    /// When [`Room::expire`] next has work to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        let i = self.members.oldest()?;
        Some(self.members.get(i).last_heard + self.cfg.member_timeout)
    }

    /// Removes the members silent for the member timeout or longer.
    pub fn expire(&mut self, now: Instant) {
        while let Some(i) = self.members.oldest() {
            if self.members.get(i).last_heard + self.cfg.member_timeout > now {
                break;
            }
            self.remove(i, LeftReason::TimedOut);
        }
    }

    /// Tells every member the server is shutting down, and empties the room.
    pub fn shutdown(&mut self) {
        let n = self.members.len();
        let bye = ServerMsg::Bye {
            reason: ByeReason::Shutdown,
        };
        for m in self.members.drain() {
            self.out.reply(m.peer, &bye);
        }
        self.broadcasts.clear();
        self.dirty.clear();
        self.log.push(format!("shutting down: told {n} members"));
    }

    /// Packs the events queued this turn into EVENTS datagrams and returns
    /// everything to send: the direct replies first, then the events.
    pub fn flush(&mut self) -> &Outbox {
        let packing = self.cfg.packing;
        let turn = self.turn;
        let (out, bcasts) = (&mut self.out, &self.broadcasts);
        if !bcasts.is_empty() {
            for m in self.members.iter_mut() {
                flush_member(m, bcasts, out, turn, packing);
            }
        } else {
            for &t in &self.dirty {
                if let Some(i) = self.members.by_token(t) {
                    flush_member(self.members.get_mut(i), bcasts, out, turn, packing);
                }
            }
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

    /// Were malformed datagrams dropped since the last summary?
    pub fn malformed_pending(&self) -> bool {
        self.recent_malformed.iter().any(|&n| n > 0)
    }

    /// One line summing up the malformed datagrams since the last call.
    pub fn malformed_summary(&mut self) -> Option<String> {
        let total: u64 = self.recent_malformed.iter().sum();
        if total == 0 {
            return None;
        }
        let parts: Vec<String> = MALFORMED_KINDS
            .iter()
            .zip(&self.recent_malformed)
            .filter(|(_, &n)| n > 0)
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        self.recent_malformed = [0; MALFORMED_KINDS.len()];
        Some(format!(
            "dropped {total} malformed datagram{} ({})",
            if total == 1 { "" } else { "s" },
            parts.join(", ")
        ))
    }
}

/// Packs the events of this turn meant for `m`: the broadcasts not from it
/// and not from before it joined, and its private events, in arena order.
fn flush_member(m: &mut Member, bcasts: &[Broadcast], out: &mut Outbox, turn: u64, packing: bool) {
    let since = if m.joined_turn == turn {
        m.joined_at
    } else {
        0
    };
    let token = m.token;
    let mut b = bcasts
        .iter()
        .filter(move |b| b.except != token && b.start >= since)
        .map(|b| (b.start, b.end))
        .peekable();
    let mut p = m.private.iter().copied().peekable();
    let merged = std::iter::from_fn(|| match (b.peek(), p.peek()) {
        (Some(x), Some(y)) if y.0 < x.0 => p.next(),
        (Some(_), _) => b.next(),
        (None, _) => p.next(),
    });
    out.pack(m.peer, &mut m.next_seq, packing, merged);
    m.private.clear();
}

#[cfg(test)]
mod tests;
