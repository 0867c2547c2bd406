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
mod config;
mod console;
mod fanout;
mod history;
mod join;
mod limits;
mod members;
mod messages;
mod order;
mod outbox;
pub mod repair;
mod resend;
#[cfg(test)]
mod tests;

pub use config::{Config, Local, Peer, Stats};
pub use limits::{AckWindow, Bucket, Seen, SEQ_WINDOW};
pub use outbox::{Datagram, Outbox};

use crate::gate::{self, Action, ConnId, Gate, IpKey};
use crate::protocol::sealed::{decode_client, ByeReason, ClientMsg, Event, LeftReason, ServerMsg};
use crate::session::ServerKey;
use fanout::{flush_member, Turn};
use members::{Member, Members};
use messages::{Answer, Msg};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How often the per-IP join counters of quiet addresses are forgotten.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// An event queued for every member but one.
#[derive(Debug, Clone, Copy)]
struct Broadcast {
    start: u32,
    end: u32,
    except: Option<ConnId>,
    /// The room sequence of a room message (0 for other events).
    room_seq: u64,
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
    /// The gate's actions for the datagram being handled (the list is kept
    /// from datagram to datagram: no allocation per datagram).
    actions: Vec<Action>,
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
    /// Members with messages waiting for a gap (some may be gone).
    holding: Vec<ConnId>,
    /// The drop counters at the last summary.
    drops_said: [u64; 7],
    /// The history, when the room keeps one ([`Room::keep_history`]).
    history: Option<history::History>,
    /// What is kept for repair (with `Config::repair`).
    repairs: Option<resend::Repairs>,
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
        let repairs = cfg.repair.then(resend::Repairs::new);
        Room {
            cfg,
            gate,
            rng,
            actions: Vec::new(),
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
            holding: Vec::new(),
            drops_said: [0; 7],
            history: None,
            repairs,
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
        let mut actions = std::mem::take(&mut self.actions);
        let rng = &mut *self.rng;
        self.gate
            .handle_into(now, unix_ms / 1000, peer.addr, datagram, rng, &mut actions);
        for a in actions.drain(..) {
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
        self.actions = actions;
    }

    /// An authenticated body from `conn`.
    fn deliver(&mut self, now: Instant, unix_ms: u64, conn: ConnId, peer: Peer, body: &[u8]) {
        let Ok(msg) = decode_client(body) else {
            self.stats.bad_bodies += 1;
            return;
        };
        let Some(i) = self.members.by_conn(conn) else {
            match msg {
                ClientMsg::Join { name } => self.join(now, unix_ms, conn, peer, name),
                ClientMsg::Resume {
                    ticket,
                    epoch,
                    last_room_seq,
                    lowest_unacked,
                } => self.resume(
                    now,
                    unix_ms,
                    conn,
                    peer,
                    ticket,
                    epoch,
                    last_room_seq,
                    lowest_unacked,
                ),
                _ => self.stats.not_allowed += 1,
            }
            return;
        };
        self.members.touch(i, now);
        self.members.get_mut(i).local = peer.local;
        match msg {
            // The WELCOME may have been lost: the same one again.
            ClientMsg::Join { name } if name == &*self.members.get(i).name => {
                self.welcome(i, unix_ms, false)
            }
            ClientMsg::Say { .. } | ClientMsg::Me { .. } | ClientMsg::Private { .. } => {
                if let Some(m) = Msg::of(&msg, unix_ms) {
                    self.say(now, i, m);
                }
            }
            ClientMsg::Who { start } => self.ask(now, i, Answer::Who(start)),
            ClientMsg::History { before, max }
                if self.history.is_some() && self.serves_repair() =>
            {
                self.ask(now, i, Answer::History { before, max })
            }
            ClientMsg::Leave => self.remove(i, Some(LeftReason::Left), Some((ByeReason::Left, ""))),
            ClientMsg::Nack { ranges } if self.serves_repair() => self.nack(i, ranges.iter()),
            ClientMsg::Keepalive { last_event } => {
                self.acknowledged(i, last_event);
                let m = self.members.get(i);
                let last_event = (m.next_event - 1) as u32;
                self.out
                    .reply(m.conn, m.local, &ServerMsg::Keepalive { last_event });
            }
            // A JOIN for another name, and what this server does not serve.
            _ => self.stats.not_allowed += 1,
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
            self.remove(i, Some(LeftReason::TimedOut), None);
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

    /// Removes member `i`, tells the others why (within the announce limit;
    /// `None`: nobody is told, its session was replaced), logs it; `bye` is
    /// sent after what was queued for it (none on a timeout).
    fn remove(&mut self, i: usize, reason: Option<LeftReason>, bye: Option<(ByeReason, &str)>) {
        let announce = self.announce() && reason.is_some();
        let removed_at = self.out.events_len();
        let m = self.members.remove(i);
        self.count_ip(m.addr, false);
        let why = match reason {
            Some(LeftReason::Left) => "left",
            Some(LeftReason::TimedOut) => "timed out",
            Some(LeftReason::Removed) => "was removed by the admin",
            None => "was replaced by a new session",
        };
        if reason.is_some() {
            self.name_gone(&m.key);
        }
        self.log.push(format!(
            "{} ({}) {why} ({} in the room)",
            m.name,
            m.addr,
            self.members.len()
        ));
        if let (true, Some(reason)) = (announce, reason) {
            let (start, end) = self.out.event(&Event::Left {
                reason,
                name: &m.name,
            });
            self.broadcasts.push(Broadcast {
                start,
                end,
                except: Some(m.conn),
                room_seq: 0,
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
                // Only an offer queues an answer, and it makes the budget.
                let answer = m.budget.as_deref().and_then(|b| m.answers.next_ready(b));
                [answer, m.repair_at, m.catch_up_at]
                    .into_iter()
                    .flatten()
                    .min()
            })
            .min();
        let tail = self.repairs.as_ref().and_then(resend::Repairs::next_tail);
        let held = self
            .holding()
            .filter_map(|c| self.members.by_conn(c))
            .filter_map(|i| self.members.get(i).order.release_at())
            .min();
        [timeout, answers, tail, held, self.gate.next_deadline()]
            .into_iter()
            .flatten()
            .min()
    }

    /// Removes the members silent for the member timeout or longer, and
    /// those whose session the gate forgot.
    pub fn expire(&mut self, now: Instant) {
        self.give_up_gaps(now);
        for a in self.gate.expire(now) {
            if let Action::Gone { conn } = a {
                self.gone(conn);
            }
        }
        while let Some(i) = self.members.oldest() {
            if self.members.get(i).last_heard + self.cfg.member_timeout > now {
                break;
            }
            self.remove(i, Some(LeftReason::TimedOut), None);
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

    /// Tells every member the room is closing or the server restarting (BYE
    /// `reason` with `text`) after what was queued for it, and empties the
    /// room. When it is restarting, the names stay present in the store, to
    /// be held for their holders at the next start.
    pub fn shutdown(&mut self, reason: ByeReason, text: &str) {
        let n = self.members.len();
        let removed_at = self.out.events_len();
        let gone: Vec<Member> = self.members.drain().collect();
        if reason != ByeReason::Restarting {
            for m in &gone {
                self.name_gone(&m.key);
            }
        }
        self.leavers.extend(gone.into_iter().map(|m| Leaver {
            m,
            removed_at,
            bye: Some((reason, text.into())),
        }));
        self.per_ip.clear();
        self.log.push(format!("shutting down: told {n} members"));
    }

    /// Whether a member's datagrams of one turn go as one segmented send.
    pub fn segments(&self) -> bool {
        self.cfg.segments
    }

    /// Sends every datagram on its own from now on (the kernel refused a
    /// segmented send).
    pub fn stop_segments(&mut self) {
        self.cfg.segments = false;
    }

    /// Packs the events queued this turn into EVENTS bodies (a leaver's
    /// before its BYE), sends the answers the budgets allow, seals it all,
    /// and returns everything to send: the gate's datagrams and the direct
    /// replies first, then the events.
    pub fn flush(&mut self, now: Instant) -> &Outbox {
        // The turn's room messages are stored first: a catch-up goes on
        // through them.
        self.store_turn(now);
        self.send_answers(now);
        self.send_tails(now);
        let t = Turn {
            turn: self.turn,
            packing: self.cfg.packing,
            now,
        };
        if let Some(r) = &mut self.repairs {
            r.keep_turn(&self.out);
        }
        let (out, bcasts) = (&mut self.out, &self.broadcasts);
        let mut repairs = self.repairs.as_mut();
        if !bcasts.is_empty() {
            for m in self.members.iter_mut() {
                flush_member(m, u32::MAX, bcasts, out, &t, repairs.as_deref_mut());
            }
        } else {
            for &c in &self.dirty {
                if let Some(i) = self.members.by_conn(c) {
                    let m = self.members.get_mut(i);
                    flush_member(m, u32::MAX, bcasts, out, &t, repairs.as_deref_mut());
                }
            }
        }
        for l in &mut self.leavers {
            let Some((reason, text)) = &l.bye else {
                continue;
            };
            flush_member(&mut l.m, l.removed_at, bcasts, out, &t, None);
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
        // Without packing (one event per datagram), padding each to full
        // size would cost more than segmenting saves.
        let segments = self.cfg.segments && self.cfg.packing;
        self.stats.unsealed += self.out.seal(&mut self.gate, now, segments);
        for l in self.leavers.drain(..) {
            self.gate.close(l.m.conn);
            if let (Some(r), Some(slot)) = (&mut self.repairs, l.m.slot) {
                r.store.leave(slot);
            }
        }
        self.broadcasts.clear();
        self.dirty.clear();
        &self.out
    }

    /// Waits until the history handed to the store is written (at exit).
    pub fn finish(&mut self) -> crate::error::Result<()> {
        match &mut self.history {
            Some(h) => h.store.flush(),
            None => Ok(()),
        }
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
}
