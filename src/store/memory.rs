//! `--db none`: the last `--history-size` messages in memory only. Catch-up
//! works across an absence, not across a restart: every start is a new epoch.

use super::window::Window;
use super::{random_epoch, HistoryStore, Message, Present, StoreEvent, MAX_PAGE};
use crate::error::Result;

/// The history kept in memory only.
pub struct MemoryStore {
    window: Window,
    epoch: u64,
}

impl MemoryStore {
    /// An empty history of at most `history_size` messages, with a new random epoch.
    pub fn new(history_size: usize) -> MemoryStore {
        MemoryStore {
            window: Window::new(history_size, history_size, 0),
            epoch: random_epoch(),
        }
    }
}

impl HistoryStore for MemoryStore {
    fn append(&mut self, batch: Vec<Message>) {
        self.window.accept(batch);
    }

    fn before(&self, room_seq: u64, n: usize) -> Result<Vec<Message>> {
        Ok(self.window.before(room_seq, n.min(MAX_PAGE)))
    }

    fn after(&self, room_seq: u64, n: usize) -> Result<Vec<Message>> {
        Ok(self.window.after(room_seq, n.min(MAX_PAGE)))
    }

    fn last_seq(&self) -> u64 {
        self.window.last_seq()
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn present_at_start(&self) -> &[Present] {
        &[]
    }

    fn name_present(&mut self, _who: Present) {}

    fn name_gone(&mut self, _name_key: &str) {}

    fn not_stored(&self) -> u64 {
        0
    }

    fn take_event(&mut self) -> Option<StoreEvent> {
        None
    }

    fn flush(&mut self) -> Result<()> {
        Ok(())
    }
}
