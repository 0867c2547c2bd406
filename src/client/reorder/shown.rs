//! The stable ids of the messages a client has shown, so that a message is
//! shown once even when it comes again (sent again after a server restart,
//! or both live and in a catch-up).
//!
//! An id is remembered for [`SHOWN_TTL`] (10 minutes, longer than any
//! reconnect-and-catch-up takes), and at most [`SHOWN_MAX`] ids (32,768, a
//! minute of a busy 500 message/s room) are remembered: beyond that the
//! oldest is forgotten first. About 64 bytes each: at most 2 MiB.

use std::collections::{HashSet, VecDeque};
use std::time::{Duration, Instant};

/// How long a shown message's id is remembered.
pub const SHOWN_TTL: Duration = Duration::from_secs(600);

/// How many shown ids are remembered at most.
pub const SHOWN_MAX: usize = 32_768;

/// A message's stable id: its sender's client id and the sender's sequence
/// number for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MessageId {
    /// The sender's client id (from its resume ticket).
    pub client: u64,
    /// The sender's sequence number of the message.
    pub seq: u64,
}

/// The ids of the messages shown lately.
#[derive(Debug, Default)]
pub struct ShownIds {
    ids: HashSet<MessageId>,
    order: VecDeque<(Instant, MessageId)>,
}

impl ShownIds {
    /// Nothing shown yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// True the first time `id` is offered (it is then remembered): show
    /// the message. False when it was shown within [`SHOWN_TTL`].
    pub fn first_time(&mut self, now: Instant, id: MessageId) -> bool {
        // Times that go back are taken as the latest seen, so the order stays sorted.
        let now = self.order.back().map_or(now, |&(last, _)| last.max(now));
        while let Some(&(at, old)) = self.order.front() {
            if at + SHOWN_TTL > now && self.order.len() < SHOWN_MAX {
                break;
            }
            self.order.pop_front();
            self.ids.remove(&old);
        }
        if !self.ids.insert(id) {
            return false;
        }
        self.order.push_back((now, id));
        true
    }

    /// How many ids are remembered.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// Is nothing remembered?
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}
