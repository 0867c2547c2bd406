//! The member table: a dense `Vec` (so who-paging is a slice) with O(1)
//! lookups by token, by name key and by address, and an intrusive list in
//! order of last activity (so the next timeout is the list's head, O(1)).

use super::limits::{Bucket, SeqWindow};
use super::Peer;
use crate::protocol::Token;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Instant;

const NIL: u32 = u32::MAX;

/// One member of the room.
#[derive(Debug)]
pub struct Member {
    /// The session token (never 0).
    pub token: Token,
    /// The name as registered.
    pub name: Box<str>,
    /// The name's comparison key (`protocol::name_key`).
    pub key: Box<str>,
    /// Where the member's datagrams come from, and the local address they arrive on.
    pub peer: Peer,
    /// The nonce of the JOIN that created this session (a retransmitted JOIN gets the WELCOME again).
    pub join_nonce: u64,
    /// When the last valid datagram arrived.
    pub last_heard: Instant,
    /// The number the next event sent to this member gets.
    pub next_seq: u32,
    /// The client sequence numbers accepted so far.
    pub seen: SeqWindow,
    /// The flood-control bucket.
    pub bucket: Bucket,
    /// Events for this member alone queued this turn (ranges in the turn's event arena).
    pub private: Vec<(u32, u32)>,
    /// The turn in which this session started, and the event arena length then:
    /// a newcomer gets none of the events queued before it joined.
    pub joined_turn: u64,
    pub joined_at: u32,
    prev: u32,
    next: u32,
}

impl Member {
    /// A new member; the table links it in.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        token: Token,
        name: &str,
        key: String,
        peer: Peer,
        join_nonce: u64,
        now: Instant,
        bucket: Bucket,
        joined: (u64, u32),
    ) -> Self {
        Member {
            token,
            name: name.into(),
            key: key.into_boxed_str(),
            peer,
            join_nonce,
            last_heard: now,
            next_seq: 1,
            seen: SeqWindow::new(),
            bucket,
            private: Vec::new(),
            joined_turn: joined.0,
            joined_at: joined.1,
            prev: NIL,
            next: NIL,
        }
    }
}

/// All members, indexed every way the room needs.
#[derive(Debug, Default)]
pub struct Members {
    list: Vec<Member>,
    by_token: HashMap<Token, u32>,
    by_key: HashMap<Box<str>, u32>,
    by_addr: HashMap<SocketAddr, u32>,
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

    pub fn by_token(&self, t: Token) -> Option<usize> {
        self.by_token.get(&t).map(|&i| i as usize)
    }

    pub fn by_key(&self, key: &str) -> Option<usize> {
        self.by_key.get(key).map(|&i| i as usize)
    }

    pub fn by_addr(&self, a: &SocketAddr) -> Option<usize> {
        self.by_addr.get(a).map(|&i| i as usize)
    }

    /// The member heard from least recently.
    pub fn oldest(&self) -> Option<usize> {
        (self.head != NIL).then_some(self.head as usize)
    }

    /// Adds a member (its token, key and address must be free) and returns its index.
    pub fn insert(&mut self, m: Member) -> usize {
        let i = self.list.len() as u32;
        self.by_token.insert(m.token, i);
        self.by_key.insert(m.key.clone(), i);
        self.by_addr.insert(m.peer.addr, i);
        self.list.push(m);
        self.link_tail(i);
        i as usize
    }

    /// Gives member `i` a new token (a re-join).
    pub fn set_token(&mut self, i: usize, t: Token) {
        let old = std::mem::replace(&mut self.list[i].token, t);
        self.by_token.remove(&old);
        self.by_token.insert(t, i as u32);
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
        self.by_token.remove(&m.token);
        self.by_key.remove(&m.key);
        self.by_addr.remove(&m.peer.addr);
        if i < self.list.len() {
            // The former last member moved to `i`: repoint everything at it.
            let (old, new) = (self.list.len() as u32, i as u32);
            let moved = &self.list[i];
            self.by_token.insert(moved.token, new);
            if let Some(v) = self.by_key.get_mut(&moved.key) {
                *v = new;
            }
            self.by_addr.insert(moved.peer.addr, new);
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
            debug_assert!(self.head != old && self.tail != old);
        }
        m
    }

    /// Removes every member.
    pub fn drain(&mut self) -> std::vec::Drain<'_, Member> {
        self.by_token.clear();
        self.by_key.clear();
        self.by_addr.clear();
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
        assert_eq!(self.by_token.len(), n, "token index size");
        assert_eq!(self.by_key.len(), n, "key index size (names unique)");
        assert_eq!(
            self.by_addr.len(),
            n,
            "address index size (one member per address)"
        );
        for (i, m) in self.list.iter().enumerate() {
            assert_ne!(m.token, 0);
            assert_eq!(self.by_token[&m.token] as usize, i);
            assert_eq!(self.by_key[&m.key] as usize, i);
            assert_eq!(self.by_addr[&m.peer.addr] as usize, i);
            assert_eq!(&*m.key, crate::protocol::name_key(&m.name));
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
