//! The member table: a dense `Vec` (so who-paging is a slice) with O(1)
//! lookups by connection and by name key, and an intrusive list in order of
//! last activity (so the next timeout is the list's head, O(1)).

use super::budget::{AnswerQueue, Budget};
use super::limits::{AckWindow, Bucket};
use super::Local;
use crate::gate::ConnId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

const NIL: u32 = u32::MAX;

/// One member of the room.
#[derive(Debug)]
pub struct Member {
    /// Its connection behind the gate (its identity).
    pub conn: ConnId,
    /// The name as its JOIN spelled it.
    pub name: Box<str>,
    /// The name's comparison key (`protocol::name_key`).
    pub key: Box<str>,
    /// Its validated address (where the gate sends), and the local address
    /// its datagrams arrive on.
    pub addr: SocketAddr,
    pub local: Option<Local>,
    /// Its id in message ids.
    pub client_id: u64,
    /// When the last authenticated datagram arrived.
    pub last_heard: Instant,
    /// The number the next event sent to this member gets (on the wire, its
    /// low 32 bits).
    pub next_event: u64,
    /// Its events kept for repair.
    pub slot: Option<super::repair::Slot>,
    /// When events were last sent to it, whether a KEEPALIVE after them
    /// is scheduled, and how many were sent since (or the limit once it has
    /// shown that it has the last event).
    pub events_at: Instant,
    pub tail_pending: bool,
    pub tail_sent: u8,
    /// When its next repair can go, if one waits.
    pub repair_at: Option<Instant>,
    /// While it catches up after a RESUME: the room sequence sent so far,
    /// and when the next part can go.
    pub catch_up: Option<u64>,
    pub catch_up_at: Option<Instant>,
    /// Room messages up to this room sequence are not sent to it live (a
    /// catch-up sends them).
    pub live_after: u64,
    /// The message numbers forwarded so far.
    pub window: AckWindow,
    /// Its messages in its order (those ahead of a gap wait).
    pub order: super::order::InOrder,
    /// The flood-control bucket.
    pub bucket: Bucket,
    /// Its answer budget, and the answers waiting for it.
    pub budget: Option<Box<Budget>>,
    pub answers: AnswerQueue<super::messages::Answer>,
    /// Events for this member alone queued this turn (ranges in the turn's event arena).
    pub private: Vec<(u32, u32)>,
    /// The turn in which it joined, and the event arena length then: a
    /// newcomer gets none of the events queued before it joined.
    pub joined_turn: u64,
    pub joined_at: u32,
    prev: u32,
    next: u32,
}

/// What a new member starts with.
pub struct NewMember<'a> {
    pub conn: ConnId,
    pub name: &'a str,
    pub key: String,
    pub addr: SocketAddr,
    pub local: Option<Local>,
    pub client_id: u64,
    pub now: Instant,
    pub burst: f64,
    pub joined: (u64, u32),
}

impl Member {
    /// A new member; the table links it in.
    pub fn new(m: NewMember<'_>) -> Self {
        Member {
            conn: m.conn,
            name: m.name.into(),
            key: m.key.into_boxed_str(),
            addr: m.addr,
            local: m.local,
            client_id: m.client_id,
            last_heard: m.now,
            next_event: 1,
            slot: None,
            events_at: m.now,
            tail_pending: false,
            tail_sent: 0,
            repair_at: None,
            catch_up: None,
            catch_up_at: None,
            live_after: 0,
            window: AckWindow::new(),
            order: super::order::InOrder::starting_at(1),
            bucket: Bucket::full(m.now, m.burst),
            budget: None,
            answers: AnswerQueue::new(),
            private: Vec::new(),
            joined_turn: m.joined.0,
            joined_at: m.joined.1,
            prev: NIL,
            next: NIL,
        }
    }
}

/// All members, indexed every way the room needs.
#[derive(Debug, Default)]
pub struct Members {
    list: Vec<Member>,
    by_conn: HashMap<ConnId, u32>,
    by_key: HashMap<Box<str>, u32>,
    /// Least recently heard member (the next to time out), and the most recent.
    head: u32,
    tail: u32,
}

impl Members {
    pub fn new() -> Self {
        Members {
            head: NIL,
            tail: NIL,
            ..Default::default()
        }
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn get(&self, i: usize) -> &Member {
        &self.list[i]
    }

    pub fn get_mut(&mut self, i: usize) -> &mut Member {
        &mut self.list[i]
    }

    /// Members `start..` in the table's order (the order of who pages).
    pub fn from(&self, start: usize) -> &[Member] {
        self.list.get(start..).unwrap_or(&[])
    }

    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Member> {
        self.list.iter_mut()
    }

    pub fn by_conn(&self, c: ConnId) -> Option<usize> {
        self.by_conn.get(&c).map(|&i| i as usize)
    }

    pub fn by_key(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).map(|&i| i as usize)
    }

    /// The member heard from least recently.
    pub fn oldest(&self) -> Option<usize> {
        (self.head != NIL).then_some(self.head as usize)
    }

    /// Adds a member (its connection and key must be free) and returns its index.
    pub fn insert(&mut self, m: Member) -> usize {
        let i = self.list.len() as u32;
        self.by_conn.insert(m.conn, i);
        self.by_key.insert(m.key.clone(), i);
        self.list.push(m);
        self.link_tail(i);
        i as usize
    }

    /// Records activity of member `i` at `now`.
    pub fn touch(&mut self, i: usize, now: Instant) {
        let m = &mut self.list[i];
        m.last_heard = m.last_heard.max(now);
        if self.tail != i as u32 {
            self.unlink(i as u32);
            self.link_tail(i as u32);
        }
    }

    /// Removes member `i`; the last member takes its index.
    pub fn remove(&mut self, i: usize) -> Member {
        self.unlink(i as u32);
        let m = self.list.swap_remove(i);
        self.by_conn.remove(&m.conn);
        self.by_key.remove(&m.key);
        if i < self.list.len() {
            // The former last member moved to `i`: repoint everything at it.
            let new = i as u32;
            let moved = &self.list[i];
            self.by_conn.insert(moved.conn, new);
            if let Some(v) = self.by_key.get_mut(&moved.key) {
                *v = new;
            }
            let (prev, next) = (moved.prev, moved.next);
            if prev == NIL {
                self.head = new;
            } else {
                self.list[prev as usize].next = new;
            }
            if next == NIL {
                self.tail = new;
            } else {
                self.list[next as usize].prev = new;
            }
        }
        m
    }

    /// Removes every member.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Member> {
        self.by_conn.clear();
        self.by_key.clear();
        self.head = NIL;
        self.tail = NIL;
        self.list.drain(..)
    }

    fn unlink(&mut self, i: u32) {
        let (prev, next) = (self.list[i as usize].prev, self.list[i as usize].next);
        if prev == NIL {
            self.head = next;
        } else {
            self.list[prev as usize].next = next;
        }
        if next == NIL {
            self.tail = prev;
        } else {
            self.list[next as usize].prev = prev;
        }
        self.list[i as usize].prev = NIL;
        self.list[i as usize].next = NIL;
    }

    fn link_tail(&mut self, i: u32) {
        self.list[i as usize].prev = self.tail;
        self.list[i as usize].next = NIL;
        if self.tail == NIL {
            self.head = i;
        } else {
            self.list[self.tail as usize].next = i;
        }
        self.tail = i;
    }

    /// Panics if any index disagrees with the list (for tests).
    #[cfg(test)]
    pub fn check(&self) {
        let n = self.list.len();
        assert_eq!(self.by_conn.len(), n, "connection index size");
        assert_eq!(self.by_key.len(), n, "key index size (names unique)");
        for (i, m) in self.list.iter().enumerate() {
            assert_eq!(self.by_conn[&m.conn] as usize, i);
            assert_eq!(self.by_key[&m.key] as usize, i);
        }
        // The activity list visits every member once, oldest first.
        let mut seen = 0;
        let mut cur = self.head;
        let mut prev = NIL;
        let mut last: Option<Instant> = None;
        while cur != NIL {
            let m = &self.list[cur as usize];
            assert_eq!(m.prev, prev);
            if let Some(t) = last {
                assert!(m.last_heard >= t, "activity list out of order");
            }
            last = Some(m.last_heard);
            prev = cur;
            cur = m.next;
            seen += 1;
            assert!(seen <= n, "cycle in the activity list");
        }
        assert_eq!(seen, n);
        assert_eq!(self.tail, prev);
    }
}
