//! The room's history and the members who come back (issue 10): the room
//! messages of each turn handed to the store, the last ones for a newcomer,
//! HISTORY pages, message ids already forwarded, resume tickets, the names
//! held for their holders after a restart, and the catch-up after RESUME.

use super::budget::Budget;
use super::{AckWindow, Peer, Room};
use crate::gate::ConnId;
use crate::protocol::name_key;
use crate::protocol::sealed::EVENTS_HEADER_LEN;
use crate::protocol::sealed::{
    ByeReason, Event, EventsWriter, Line, LineFlags, MessageId, Refusal, ServerMsg,
};
use crate::session::{DATA_OVERHEAD, MAX_BODY};
use crate::store::{self, HistoryStore, Kind, Present, StoreEvent, MAX_PAGE};
use crate::trust::ticket::{Ticket, TicketKey};
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::Instant;

/// How many message ids the room remembers as forwarded (besides each
/// session's window): a message sent again after a resume or a restart is
/// acknowledged, not forwarded twice.
const SEEN_IDS: usize = 65_536;

/// What the room keeps of its history.
pub(super) struct History {
    pub(super) store: Box<dyn HistoryStore>,
    tickets: TicketKey,
    /// Messages shown to a newcomer.
    on_join: usize,
    /// The room messages of this turn, for the store.
    rows: Vec<store::Message>,
    /// Names present when the server started, held for their tickets'
    /// holders until then: key → (name, client id, until).
    held: HashMap<String, (String, u64, Instant)>,
    seen: HashSet<(u64, u32)>,
    seen_order: VecDeque<(u64, u32)>,
    /// A read failed: said once in the log.
    read_failed: bool,
}

/// The event of a stored room message, with `flags`.
pub(super) fn message_event(m: &store::Message, flags: LineFlags) -> Event<'_> {
    let line = Line {
        room_seq: m.room_seq,
        time_ms: m.time_ms.max(0) as u64,
        flags,
        id: MessageId {
            client_id: m.id.client,
            seq: m.id.seq as u32,
        },
        from: &m.sender,
        text: &m.text,
    };
    match m.kind {
        Kind::Member => Event::Said(line),
        Kind::Action => Event::Me(line),
        Kind::Admin => Event::Admin {
            room_seq: m.room_seq,
            time_ms: m.time_ms.max(0) as u64,
            flags,
            text: &m.text,
        },
    }
}

impl History {
    /// Has the message `id` been forwarded already (in any session)?
    pub(super) fn seen(&self, client_id: u64, seq: u32) -> bool {
        self.seen.contains(&(client_id, seq))
    }

    fn remember(&mut self, client_id: u64, seq: u32) {
        if client_id == 0 || !self.seen.insert((client_id, seq)) {
            return;
        }
        self.seen_order.push_back((client_id, seq));
        if self.seen_order.len() > SEEN_IDS {
            if let Some(old) = self.seen_order.pop_front() {
                self.seen.remove(&old);
            }
        }
    }

    /// Keeps a room message of this turn.
    pub(super) fn record(&mut self, m: store::Message) {
        self.remember(m.id.client, m.id.seq as u32);
        self.rows.push(m);
    }

    /// Reads from the store; a failure is logged once and reads as nothing.
    fn read(
        &mut self,
        log: &mut Vec<String>,
        f: impl FnOnce(&dyn HistoryStore) -> crate::error::Result<Vec<store::Message>>,
    ) -> Vec<store::Message> {
        match f(&*self.store) {
            Ok(v) => v,
            Err(e) => {
                if !self.read_failed {
                    log.push(format!("history: {e}"));
                    self.read_failed = true;
                }
                Vec::new()
            }
        }
    }
}

impl Room {
    /// Keeps the room's history in `store`: the room sequence goes on from
    /// it, the names present when it last stopped are held for their
    /// tickets' holders for one member timeout, newcomers get the last
    /// `on_join` messages, and members get resume tickets sealed with
    /// `tickets`.
    pub fn keep_history(
        &mut self,
        store: Box<dyn HistoryStore>,
        tickets: TicketKey,
        on_join: usize,
        now: Instant,
    ) {
        self.epoch = store.epoch() as u32;
        self.room_seq = store.last_seq();
        let until = now + self.cfg.member_timeout;
        let held = store
            .present_at_start()
            .iter()
            .map(|p| (p.name_key.clone(), (p.name.clone(), p.client, until)))
            .collect();
        let mut h = History {
            store,
            tickets,
            on_join,
            rows: Vec::new(),
            held,
            seen: HashSet::new(),
            seen_order: VecDeque::new(),
            read_failed: false,
        };
        let recent = h.read(&mut self.log, |s| s.last(MAX_PAGE));
        for m in &recent {
            h.remember(m.id.client, m.id.seq as u32);
        }
        self.history = Some(h);
    }

    /// Does the room serve NACK and HISTORY (WELCOME's flag bit 2)?
    pub(super) fn serves_repair(&self) -> bool {
        self.repairs.is_some() && self.history.is_some()
    }

    /// Is the room keeping history?
    pub fn keeps_history(&self) -> bool {
        self.history.is_some()
    }

    /// Hands the turn's room messages to the store and logs what it reports.
    pub(super) fn store_turn(&mut self, now: Instant) {
        let Some(h) = &mut self.history else {
            return;
        };
        if !h.rows.is_empty() {
            h.store.append(std::mem::take(&mut h.rows));
        }
        while let Some(e) = h.store.take_event() {
            self.log.push(match e {
                StoreEvent::WriteFailed { reason } => {
                    format!("history: cannot write to the database: {reason}")
                }
                StoreEvent::WritesResumed => "history: writing again".to_string(),
            });
        }
        let over: Vec<String> = h
            .held
            .iter()
            .filter(|(_, (_, _, until))| now >= *until)
            .map(|(k, _)| k.clone())
            .collect();
        for key in over {
            h.held.remove(&key);
            h.store.name_gone(&key);
        }
    }

    /// The name held for a ticket's holder under `key`, if any.
    pub(super) fn held_name(&self, key: &str) -> Option<String> {
        let h = self.history.as_ref()?;
        h.held.get(key).map(|(name, _, _)| name.clone())
    }

    /// The store learns that member `i` is present.
    pub(super) fn name_present(&mut self, i: usize) {
        let m = self.members.get(i);
        if let Some(h) = &mut self.history {
            h.store.name_present(Present {
                name: m.name.to_string(),
                name_key: m.key.to_string(),
                client: m.client_id,
            });
        }
    }

    /// The store learns that the name with `key` is free.
    pub(super) fn name_gone(&mut self, key: &str) {
        if let Some(h) = &mut self.history {
            h.store.name_gone(key);
        }
    }

    /// A resume ticket for member `i` (empty without history).
    pub(super) fn ticket_for(&self, i: usize, unix_ms: u64) -> Vec<u8> {
        let (Some(h), m) = (&self.history, self.members.get(i)) else {
            return Vec::new();
        };
        let ticket = Ticket {
            name: m.name.to_string(),
            client_id: m.client_id,
            issued: unix_ms / 1000,
        };
        h.tickets.seal(&ticket).unwrap_or_default()
    }

    /// Queues `msgs` for member `i` as events with `flags`.
    fn queue_messages(&mut self, i: usize, msgs: &[store::Message], flags: LineFlags) {
        let m = self.members.get_mut(i);
        for msg in msgs {
            let ev = self.out.event(&message_event(msg, flags));
            if m.private.is_empty() {
                self.dirty.push(m.conn);
            }
            m.private.push(ev);
        }
    }

    /// A newcomer's last messages of the room, flagged history.
    pub(super) fn history_on_join(&mut self, i: usize) {
        let Some(h) = &mut self.history else {
            return;
        };
        if h.on_join == 0 {
            return;
        }
        let n = h.on_join;
        let msgs = h.read(&mut self.log, |s| s.last(n));
        self.queue_messages(i, &msgs, LineFlags::HISTORY);
    }

    /// Sends member `i` the HISTORY_PAGE of up to `max` room messages before
    /// `before` (0: the newest), as many as fit.
    pub(super) fn history_page(&mut self, i: usize, before: u64, max: u8) {
        let Some(h) = &mut self.history else {
            return;
        };
        let below = if before == 0 { u64::MAX } else { before };
        let max = max as usize;
        let mut msgs = h.read(&mut self.log, |s| s.before(below, max + 1));
        let mut more = msgs.len() > max;
        if more {
            msgs.remove(0);
        }
        // The newest that fit, oldest first.
        let mut len = 1 + 8 + 1;
        let mut from = msgs.len();
        while from > 0 {
            let n = message_event(&msgs[from - 1], LineFlags::HISTORY).encoded_len();
            if len + n > MAX_BODY {
                more = true;
                break;
            }
            len += n;
            from -= 1;
        }
        let page = &msgs[from..];
        let m = self.members.get(i);
        self.out.reply_with(m.conn, m.local, |buf| {
            let mut w = EventsWriter::history_page(buf, before)?;
            w.set_more(more);
            for msg in page {
                w.push(&message_event(msg, LineFlags::HISTORY))?;
            }
            w.finish()
        });
    }

    /// A RESUME on `conn`, which is not a member.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn resume(
        &mut self,
        now: Instant,
        unix_ms: u64,
        conn: ConnId,
        peer: Peer,
        ticket: &[u8],
        epoch: u32,
        last_room_seq: u64,
        lowest_unacked: u32,
    ) {
        let refuse = |room: &mut Room, refusal: Refusal<'_>| {
            room.out
                .reply(conn, peer.local, &ServerMsg::Refused(refusal));
        };
        let Some(h) = &mut self.history else {
            self.stats.not_allowed += 1;
            return;
        };
        let Some(t) = h.tickets.open(ticket) else {
            return refuse(self, Refusal::BadTicket);
        };
        let key = name_key(&t.name);
        if let Some((name, client, _)) = h.held.get(&key) {
            if *client != t.client_id {
                let like = name.clone();
                return refuse(self, Refusal::Taken { like: &like });
            }
        }
        let held = h.held.remove(&key).is_some();
        let mut replaced = false;
        if let Some(j) = self.members.by_key(&key) {
            let m = self.members.get(j);
            if m.client_id != t.client_id {
                let like = m.name.to_string();
                return refuse(self, Refusal::Taken { like: &like });
            }
            // The same holder in a new session: the old one is replaced.
            self.remove(j, None, Some((ByeReason::Replaced, "")));
            replaced = true;
        }
        if self.members.len() >= self.cfg.max_members {
            return refuse(self, Refusal::RoomFull);
        }
        let ip = crate::gate::ip_key(peer.addr.ip());
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.max_per_ip {
            return refuse(self, Refusal::TooManyFromAddress);
        }
        let quiet = replaced || held;
        let i = self.admit(
            now,
            conn,
            peer,
            (&t.name, key),
            t.client_id,
            "resumed",
            !quiet,
        );
        let m = self.members.get_mut(i);
        m.window = AckWindow::starting_at(lowest_unacked);
        m.order = super::order::InOrder::starting_at(lowest_unacked);
        self.welcome(i, unix_ms, true);
        let from = if epoch == self.epoch {
            last_room_seq
        } else {
            0
        };
        self.catch_up(i, from, epoch == self.epoch);
        self.name_present(i);
    }

    /// Member `i` catches up with the room messages after `from`, flagged
    /// catch-up, through its answer budget ([`Room::send_catch_up`]); a GAP
    /// first for those no longer kept when the numbers are comparable
    /// (`same_epoch`). Until it has caught up, room messages are not sent
    /// to it live.
    fn catch_up(&mut self, i: usize, from: u64, same_epoch: bool) {
        let Some(h) = &mut self.history else {
            return;
        };
        if from >= self.room_seq {
            return;
        }
        let first = h.read(&mut self.log, |s| s.after(from, 1));
        let first = first.first().map_or(self.room_seq + 1, |m| m.room_seq);
        if same_epoch && first > from + 1 {
            let count = (first - from - 1).min(u32::MAX as u64) as u32;
            let ev = self.out.event(&Event::Gap {
                first_room_seq: from + 1,
                count,
            });
            let m = self.members.get_mut(i);
            if m.private.is_empty() {
                self.dirty.push(m.conn);
            }
            m.private.push(ev);
        }
        let m = self.members.get_mut(i);
        m.catch_up = Some(first.saturating_sub(1).max(from));
        m.live_after = u64::MAX;
        if !self.answering.contains(&m.conn) {
            self.answering.push(m.conn);
        }
    }

    /// Sends member `i` the next parts of its catch-up that its budget
    /// allows (a datagram's worth each); true when more wait.
    pub(super) fn send_catch_up(&mut self, now: Instant, i: usize) -> bool {
        const BATCH: usize = 64;
        let Some(cursor) = self.members.get(i).catch_up else {
            return false;
        };
        let mut cursor = cursor;
        loop {
            let Some(h) = &mut self.history else {
                return false;
            };
            let msgs = h.read(&mut self.log, |s| s.after(cursor, BATCH));
            if msgs.is_empty() {
                let m = self.members.get_mut(i);
                m.catch_up = None;
                m.catch_up_at = None;
                m.live_after = cursor;
                return false;
            }
            // As many as one EVENTS body holds (at least one).
            let mut bytes = EVENTS_HEADER_LEN;
            let mut n = 0;
            for msg in &msgs {
                let len = message_event(msg, LineFlags::CATCH_UP).encoded_len();
                if n > 0 && bytes + len > MAX_BODY {
                    break;
                }
                bytes += len;
                n += 1;
            }
            let m = self.members.get_mut(i);
            let cost = (bytes + DATA_OVERHEAD) as u64;
            let budget = Budget::get_or_new(&mut m.budget, now);
            if !budget.try_spend(now, cost) {
                m.catch_up = Some(cursor);
                m.catch_up_at = Some(budget.ready_at(cost));
                return true;
            }
            cursor = msgs[n - 1].room_seq;
            self.queue_messages(i, &msgs[..n], LineFlags::CATCH_UP);
            self.members.get_mut(i).catch_up = Some(cursor);
        }
    }
}
