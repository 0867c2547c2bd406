//! The room history: the room's messages kept with their room sequence, and
//! the names present, behind one small trait ([`HistoryStore`]) so that a
//! later store shared by several servers can take its place.
//!
//! Two implementations:
//! * [`SqliteStore`] (`--db PATH`): an SQLite database in WAL mode, written by
//!   a thread of its own fed by a bounded channel; the caller never waits on
//!   the disk. It survives restarts and can be read with `sqlite3` while the
//!   server runs (its schema is in [`SqliteStore`]'s documentation).
//! * [`MemoryStore`] (`--db none`): the last `--history-size` messages in
//!   memory only; every start is a new epoch.
//!
//! The options named here (`--db`, `--history-size`) are the ones chat-server
//! gets when its room starts keeping history; no binary has them yet.
//!
//! Private messages are never given to a store. Only a process that never
//! forks may open an [`SqliteStore`] (it starts a thread).
//!
//! How a server uses it:
//! * at start, [`DbChoice::open`]; the room sequence goes on from
//!   [`HistoryStore::last_seq`] in [`HistoryStore::epoch`], and each name of
//!   [`HistoryStore::present_at_start`] is held for its ticket's holder for one
//!   member timeout ([`HistoryStore::name_gone`] when a hold ends unclaimed);
//! * on each turn of the poll loop, [`HistoryStore::append`] with the room
//!   messages of that turn, [`HistoryStore::name_present`] and
//!   [`HistoryStore::name_gone`] as members come and go, and
//!   [`HistoryStore::take_event`] until `None`, for the log;
//! * a newcomer gets [`HistoryStore::last`], `/history` pages with
//!   [`HistoryStore::before`] (the oldest room sequence shown), and a client
//!   that comes back catches up with [`HistoryStore::after`] (the last shown);
//! * `/stats` shows [`HistoryStore::not_stored`]; at shutdown,
//!   [`HistoryStore::flush`], then drop the store.

mod lock;
mod memory;
mod sqlite;
mod window;
mod writer;

#[cfg(test)]
mod tests;

pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Messages kept when `--history-size` is not given.
pub const DEFAULT_HISTORY_SIZE: usize = 10_000;

/// The most messages one page read returns, whatever is asked.
pub const MAX_PAGE: usize = 1_000;

/// What kind of room line a message is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A member's line.
    Member,
    /// A line from the admin console.
    Admin,
    /// A member's `/me` action.
    Action,
}

impl Kind {
    /// The word stored in the database's `kind` column.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Member => "member",
            Kind::Admin => "admin",
            Kind::Action => "me",
        }
    }

    /// The kind stored as `word`, if it is one.
    pub(crate) fn parse(word: &str) -> Option<Kind> {
        match word {
            "member" => Some(Kind::Member),
            "admin" => Some(Kind::Admin),
            "me" => Some(Kind::Action),
            _ => None,
        }
    }
}

/// A message's stable id: the sender's client id (from its resume ticket) and
/// the sender's own sequence number. Admin lines use client id 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId {
    /// The sender's client id.
    pub client: u64,
    /// The sender's sequence number for this message.
    pub seq: u64,
}

/// One room message as the history keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The room-wide sequence number; it never goes back, also across restarts.
    pub room_seq: u64,
    /// The server's time when the room accepted it, in milliseconds since the
    /// Unix epoch (UTC).
    pub time_ms: i64,
    /// The sender's name as shown.
    pub sender: String,
    /// Member line, admin line or `/me` action.
    pub kind: Kind,
    /// The stable id a repeated message is recognised by.
    pub id: MessageId,
    /// The text.
    pub text: String,
}

/// A name present in the room, kept so that a restarted server can hold it
/// for its resume ticket's holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Present {
    /// The name as shown.
    pub name: String,
    /// The name's comparison key (`protocol::name_key`).
    pub name_key: String,
    /// The client id in the holder's resume ticket.
    pub client: u64,
}

/// Something the store reports for the server's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreEvent {
    /// A batch could not be written (disk full, I/O error); reported once until
    /// a batch succeeds again. Its rows are retried with the next batch.
    WriteFailed {
        /// Why, in the database's words.
        reason: String,
    },
    /// Writing works again after [`StoreEvent::WriteFailed`].
    WritesResumed,
}

/// The room's history. Appends and name updates never block; reads are
/// bounded (at most [`MAX_PAGE`] rows, answered from memory when the page is
/// recent). Every page is in ascending room sequence.
pub trait HistoryStore: Send {
    /// Keeps `batch` (in ascending room sequence). A message whose id is
    /// already kept is dropped. Never blocks: what cannot be queued for the
    /// disk is dropped and counted in [`HistoryStore::not_stored`].
    fn append(&mut self, batch: Vec<Message>);

    /// The last `n` messages.
    fn last(&self, n: usize) -> Result<Vec<Message>> {
        self.before(u64::MAX, n)
    }

    /// The last `n` messages whose room sequence is below `room_seq` (`/history`).
    fn before(&self, room_seq: u64, n: usize) -> Result<Vec<Message>>;

    /// The first `n` messages whose room sequence is above `room_seq` (catch-up).
    fn after(&self, room_seq: u64, n: usize) -> Result<Vec<Message>>;

    /// The highest room sequence ever kept, 0 for a new room.
    fn last_seq(&self) -> u64;

    /// The room's epoch: the same for as long as the room sequence goes on, a
    /// new random one when it starts again (always so with no database).
    fn epoch(&self) -> u64;

    /// The names present when the previous server stopped or crashed (those
    /// not yet released with [`HistoryStore::name_gone`]).
    fn present_at_start(&self) -> &[Present];

    /// Records that `who` holds its name now. Like rows, a name change that
    /// does not fit in a full queue is dropped.
    fn name_present(&mut self, who: Present);

    /// Records that the name with key `name_key` is no longer held.
    fn name_gone(&mut self, name_key: &str);

    /// How many messages were dropped instead of stored so far (writer behind,
    /// queue full, failed writes given up): `/stats`' "history not stored: N".
    fn not_stored(&self) -> u64;

    /// The next event for the log, if any. Never blocks.
    fn take_event(&mut self) -> Option<StoreEvent>;

    /// Waits until everything handed over so far is written (shutdown, tests).
    fn flush(&mut self) -> Result<()>;
}

/// Where the history lives: `--db PATH` or `--db none`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DbChoice {
    /// No database: the history is kept in memory only.
    Memory,
    /// An SQLite database at this path.
    File(PathBuf),
}

impl DbChoice {
    /// The choice an argument of `--db` names: `none` or a path.
    pub fn from_arg(arg: &str) -> DbChoice {
        if arg == "none" {
            DbChoice::Memory
        } else {
            DbChoice::File(PathBuf::from(arg))
        }
    }

    /// Opens the store this choice names, keeping `history_size` messages.
    pub fn open(&self, history_size: usize) -> Result<Box<dyn HistoryStore>> {
        Ok(match self {
            DbChoice::Memory => Box::new(MemoryStore::new(history_size)),
            DbChoice::File(path) => Box::new(SqliteStore::open(path, history_size)?),
        })
    }
}

/// The default database: `$XDG_STATE_HOME/udpchat/history.db`, or
/// `~/.local/state/udpchat/history.db` when `XDG_STATE_HOME` is unset, empty
/// or relative (as the XDG base directory specification says).
pub fn default_db_path() -> Result<PathBuf> {
    db_path_from(
        std::env::var_os("XDG_STATE_HOME").map(PathBuf::from),
        std::env::var_os("HOME").map(PathBuf::from),
    )
}

fn db_path_from(state_home: Option<PathBuf>, home: Option<PathBuf>) -> Result<PathBuf> {
    let base = match (state_home, home) {
        (Some(s), _) if s.is_absolute() => s,
        (_, Some(h)) if h.is_absolute() => h.join(".local/state"),
        _ => {
            return Err(Error::msg(
                "find",
                "~/.local/state",
                "neither XDG_STATE_HOME nor HOME is an absolute path (give --db)",
            ))
        }
    };
    Ok(base.join("udpchat").join("history.db"))
}

/// The lock file beside a database: `PATH.lock`.
fn lock_path(db: &Path) -> PathBuf {
    let mut s = db.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// A new random epoch from the OS random source.
fn random_epoch() -> u64 {
    // A failing OS random source leaves a time-based epoch: still new per start.
    getrandom::u64().unwrap_or_else(|_| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    })
}
