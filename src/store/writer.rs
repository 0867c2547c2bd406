//! The history writer: a thread that owns the database's write connection and
//! takes its work from a bounded channel, so the room never waits on the disk.
//!
//! Each batch is one transaction, committed at most [`GATHER`] after its first
//! row arrived (well inside the required 0.5 s), so a row handed over more than
//! 1 s before a SIGKILL is in the database. Rows that waited more than
//! [`LAG_LIMIT`] (the writer is behind), or that do not fit in the queue, are
//! dropped and counted. A failed batch is reported once, and its rows are tried
//! again with the next batch until they are [`LAG_LIMIT`] old.
//!
//! With `synchronous=NORMAL` a commit reaches the OS, not the disk: the writer
//! runs a checkpoint (which syncs) every [`SYNC_EVERY`] while there were
//! commits, which bounds what a power loss can take.

use super::{Message, Present, StoreEvent};
use crate::error::{Error, Result};
use rusqlite::{params, Connection};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long the writer gathers rows into one batch after the first.
pub(super) const GATHER: Duration = Duration::from_millis(100);
/// Rows older than this when the writer gets to them are dropped.
pub(super) const LAG_LIMIT: Duration = Duration::from_secs(1);
/// How often commits are synced to the disk (a WAL checkpoint).
pub(super) const SYNC_EVERY: Duration = Duration::from_secs(10);
/// The most rows in the queue; more are dropped and counted.
pub(super) const MAX_QUEUED_ROWS: usize = 65_536;
/// The most operations in the queue.
const QUEUE_OPS: usize = 4_096;
/// The most rows in one transaction.
const MAX_BATCH_ROWS: usize = 8_192;

/// Work for the writer.
enum Op {
    /// Rows to store, and when they were handed over.
    Rows(Vec<Message>, Instant),
    /// A name present now.
    Present(Present),
    /// A name no longer held.
    Gone(String),
    /// Answer once everything before this is committed (or given up).
    Flush(mpsc::Sender<()>),
}

/// Counters shared by the writer and its owner.
#[derive(Default)]
struct Shared {
    not_stored: AtomicU64,
    queued_rows: AtomicUsize,
}

/// The owner's end: hands work to the writer thread without blocking.
pub(super) struct Writer {
    tx: Option<SyncSender<Op>>,
    thread: Option<JoinHandle<()>>,
    shared: Arc<Shared>,
    events: Receiver<StoreEvent>,
}

impl Writer {
    /// Starts the writer thread over `conn`, keeping `history_size` rows.
    pub(super) fn start(conn: Connection, history_size: usize) -> Result<Writer> {
        let (tx, rx) = mpsc::sync_channel(QUEUE_OPS);
        let (ev_tx, events) = mpsc::sync_channel(64);
        let shared = Arc::new(Shared::default());
        let mut thread = Thread {
            conn,
            history_size,
            shared: Arc::clone(&shared),
            events: ev_tx,
            failing: false,
            rows: Vec::new(),
            names: HashMap::new(),
            unsynced_since: None,
        };
        let handle = std::thread::Builder::new()
            .name("history-writer".into())
            .spawn(move || thread.run(rx))
            .map_err(|e| Error::io("start", "history writer", e))?;
        Ok(Writer {
            tx: Some(tx),
            thread: Some(handle),
            shared,
            events,
        })
    }

    /// Queues `rows`; drops and counts them when the queue is full.
    pub(super) fn rows(&self, rows: Vec<Message>) {
        let n = rows.len();
        if n == 0 {
            return;
        }
        let queued = self.shared.queued_rows.fetch_add(n, Ordering::Relaxed);
        if queued + n > MAX_QUEUED_ROWS || !self.send(Op::Rows(rows, Instant::now())) {
            self.shared.queued_rows.fetch_sub(n, Ordering::Relaxed);
            self.shared
                .not_stored
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// Queues a name that is present now.
    pub(super) fn present(&self, who: Present) {
        self.send(Op::Present(who));
    }

    /// Queues a name that is no longer held.
    pub(super) fn gone(&self, name_key: &str) {
        self.send(Op::Gone(name_key.to_string()));
    }

    fn send(&self, op: Op) -> bool {
        match &self.tx {
            Some(tx) => match tx.try_send(op) {
                Ok(()) => true,
                Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => false,
            },
            None => false,
        }
    }

    /// Rows dropped instead of stored so far.
    pub(super) fn not_stored(&self) -> u64 {
        self.shared.not_stored.load(Ordering::Relaxed)
    }

    /// The next event for the log, if any.
    pub(super) fn take_event(&self) -> Option<StoreEvent> {
        self.events.try_recv().ok()
    }

    /// Waits (at most `limit`) until everything queued so far is committed or given up.
    pub(super) fn flush(&self, db: &str, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        let (reply, answer) = mpsc::channel();
        let mut op = Op::Flush(reply);
        let queued = loop {
            match self.tx.as_ref().map(|q| q.try_send(op)) {
                Some(Ok(())) => break true,
                Some(Err(TrySendError::Full(back))) if Instant::now() < deadline => {
                    op = back;
                    std::thread::sleep(Duration::from_millis(1));
                }
                _ => break false,
            }
        };
        if queued
            && answer
                .recv_timeout(deadline.saturating_duration_since(Instant::now()))
                .is_ok()
        {
            Ok(())
        } else {
            Err(Error::msg(
                "write",
                db,
                "the history writer does not answer",
            ))
        }
    }
}

impl Drop for Writer {
    /// Closes the queue and waits for the writer to commit what is left.
    fn drop(&mut self) {
        self.tx = None;
        if let Some(handle) = self.thread.take() {
            let _ = handle.join();
        }
    }
}

/// The writer thread's state.
struct Thread {
    conn: Connection,
    history_size: usize,
    shared: Arc<Shared>,
    events: SyncSender<StoreEvent>,
    /// Whether the last batch failed (a failure is reported once).
    failing: bool,
    /// Rows waiting for the next commit, with when they were handed over.
    rows: Vec<(Message, Instant)>,
    /// Name changes waiting for the next commit: the latest state of each
    /// name key (None: no longer held).
    names: HashMap<String, Option<Present>>,
    /// When the first commit not yet synced to the disk was made.
    unsynced_since: Option<Instant>,
}

impl Thread {
    fn run(&mut self, rx: Receiver<Op>) {
        loop {
            let first = match self.unsynced_since {
                Some(t) => match rx
                    .recv_timeout((t + SYNC_EVERY).saturating_duration_since(Instant::now()))
                {
                    Ok(op) => op,
                    Err(RecvTimeoutError::Timeout) => {
                        self.sync();
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => break,
                },
                None => match rx.recv() {
                    Ok(op) => op,
                    Err(_) => break,
                },
            };
            let deadline = Instant::now() + GATHER;
            let mut flushes = Vec::new();
            let mut closed = false;
            let mut next = Some(first);
            while let Some(op) = next.take() {
                match op {
                    Op::Flush(reply) => flushes.push(reply),
                    op => self.take(op),
                }
                if !flushes.is_empty() || self.rows.len() >= MAX_BATCH_ROWS {
                    break;
                }
                match rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(op) => next = Some(op),
                    Err(RecvTimeoutError::Timeout) => {}
                    Err(RecvTimeoutError::Disconnected) => closed = true,
                }
            }
            self.commit();
            for reply in flushes {
                let _ = reply.send(());
            }
            if closed {
                break;
            }
        }
        self.commit();
        self.sync();
    }

    /// Adds one operation to the batch being gathered.
    fn take(&mut self, op: Op) {
        match op {
            Op::Rows(rows, handed) => {
                self.shared
                    .queued_rows
                    .fetch_sub(rows.len(), Ordering::Relaxed);
                self.rows.extend(rows.into_iter().map(|m| (m, handed)));
            }
            Op::Present(p) => {
                self.names.insert(p.name_key.clone(), Some(p));
            }
            Op::Gone(key) => {
                self.names.insert(key, None);
            }
            Op::Flush(_) => {}
        }
    }

    /// Commits the gathered batch, after dropping rows older than [`LAG_LIMIT`].
    fn commit(&mut self) {
        let now = Instant::now();
        let before = self.rows.len();
        self.rows
            .retain(|(_, handed)| now.duration_since(*handed) <= LAG_LIMIT);
        self.count_lost(before - self.rows.len());
        if self.rows.is_empty() && self.names.is_empty() {
            return;
        }
        match self.write() {
            Ok(()) => {
                self.rows.clear();
                self.names.clear();
                self.unsynced_since.get_or_insert(now);
                if self.failing {
                    self.failing = false;
                    let _ = self.events.try_send(StoreEvent::WritesResumed);
                }
            }
            Err(e) => {
                if !self.failing {
                    self.failing = true;
                    let reason = e.to_string();
                    let _ = self.events.try_send(StoreEvent::WriteFailed { reason });
                }
            }
        }
    }

    fn count_lost(&self, n: usize) {
        if n > 0 {
            self.shared
                .not_stored
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }

    /// One transaction: the rows, the name changes, the highest sequence, the trim.
    fn write(&mut self) -> rusqlite::Result<()> {
        let tx = self.conn.transaction()?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR IGNORE INTO messages \
                 (room_seq, time_ms, sender, kind, client_id, client_seq, text) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut high = 0;
            for (m, _) in &self.rows {
                high = high.max(m.room_seq);
                insert.execute(params![
                    super::sqlite::seq_to_sql(m.room_seq),
                    m.time_ms,
                    m.sender,
                    m.kind.as_str(),
                    m.id.client as i64,
                    m.id.seq as i64,
                    m.text,
                ])?;
            }
            if high > 0 {
                tx.execute(
                    "UPDATE meta SET value = max(value, ?1) WHERE key = 'high_seq'",
                    [super::sqlite::seq_to_sql(high)],
                )?;
            }
            for (key, state) in &self.names {
                match state {
                    Some(p) => tx.execute(
                        "INSERT OR REPLACE INTO present (name_key, name, client_id) \
                         VALUES (?1, ?2, ?3)",
                        params![key, p.name, p.client as i64],
                    )?,
                    None => tx.execute("DELETE FROM present WHERE name_key = ?1", [key])?,
                };
            }
            if !self.rows.is_empty() {
                tx.execute(
                    "DELETE FROM messages WHERE room_seq < (SELECT room_seq FROM messages \
                     ORDER BY room_seq DESC LIMIT 1 OFFSET ?1)",
                    [self.history_size.saturating_sub(1) as i64],
                )?;
                if self.history_size == 0 {
                    tx.execute("DELETE FROM messages", [])?;
                }
            }
        }
        tx.commit()
    }

    /// Syncs the commits made so far to the disk (a passive WAL checkpoint).
    fn sync(&mut self) {
        if self.unsynced_since.take().is_some() {
            // A failed checkpoint is tried again after the next commit.
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()));
        }
    }
}
