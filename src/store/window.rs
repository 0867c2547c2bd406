//! What both stores keep in memory: the ids of the last kept messages (to drop
//! a repeated one), the most recent messages themselves (to answer recent
//! pages without the disk), and the highest room sequence.

use super::{Message, MessageId};
use std::collections::{HashSet, VecDeque};

/// The ids of the last `cap` kept messages.
struct Ids {
    order: VecDeque<MessageId>,
    set: HashSet<MessageId>,
    cap: usize,
}

impl Ids {
    /// Adds `id`; false when it is already there (never with no room for ids).
    fn insert(&mut self, id: MessageId) -> bool {
        if self.cap == 0 {
            return true;
        }
        if !self.set.insert(id) {
            return false;
        }
        self.order.push_back(id);
        if self.order.len() > self.cap {
            if let Some(old) = self.order.pop_front() {
                self.set.remove(&old);
            }
        }
        true
    }
}

/// The messages kept in memory, the newest `recent_cap` of them, with the ids
/// of the newest `ids_cap` and the highest room sequence.
pub(super) struct Window {
    ids: Ids,
    recent: VecDeque<Message>,
    recent_cap: usize,
    last_seq: u64,
}

impl Window {
    /// An empty window; `last_seq` is where the room sequence stands.
    pub(super) fn new(ids_cap: usize, recent_cap: usize, last_seq: u64) -> Window {
        Window {
            ids: Ids {
                order: VecDeque::new(),
                set: HashSet::new(),
                cap: ids_cap,
            },
            recent: VecDeque::new(),
            recent_cap,
            last_seq,
        }
    }

    /// Remembers the id of a message kept earlier (read back from the disk).
    pub(super) fn remember(&mut self, id: MessageId) {
        self.ids.insert(id);
    }

    /// Keeps the messages of `batch` whose id is new and returns them.
    pub(super) fn accept(&mut self, batch: Vec<Message>) -> Vec<Message> {
        let mut fresh = Vec::with_capacity(batch.len());
        for m in batch {
            if !self.ids.insert(m.id) {
                continue;
            }
            self.last_seq = self.last_seq.max(m.room_seq);
            if self.recent_cap > 0 {
                if self.recent.len() == self.recent_cap {
                    self.recent.pop_front();
                }
                self.recent.push_back(m.clone());
            }
            fresh.push(m);
        }
        fresh
    }

    /// The highest room sequence kept.
    pub(super) fn last_seq(&self) -> u64 {
        self.last_seq
    }

    /// The last `n` recent messages below `room_seq`.
    pub(super) fn before(&self, room_seq: u64, n: usize) -> Vec<Message> {
        let end = self.recent.partition_point(|m| m.room_seq < room_seq);
        let start = end.saturating_sub(n);
        self.recent.range(start..end).cloned().collect()
    }

    /// The first `n` recent messages above `room_seq`.
    pub(super) fn after(&self, room_seq: u64, n: usize) -> Vec<Message> {
        let start = self.recent.partition_point(|m| m.room_seq <= room_seq);
        let end = (start + n).min(self.recent.len());
        self.recent.range(start..end).cloned().collect()
    }

    /// Whether every message above `room_seq` that was ever kept is in memory:
    /// true when the oldest recent message is at or below `room_seq + 1`
    /// (anything older on the disk is then below `room_seq`).
    pub(super) fn holds_all_after(&self, room_seq: u64) -> bool {
        self.recent
            .front()
            .is_some_and(|m| m.room_seq <= room_seq.saturating_add(1))
    }
}

/// Merges two pages in ascending room sequence into one, each message once.
pub(super) fn merge(a: Vec<Message>, b: Vec<Message>) -> Vec<Message> {
    let mut all = a;
    all.extend(b);
    all.sort_by_key(|m| m.room_seq);
    all.dedup_by_key(|m| m.room_seq);
    all
}
