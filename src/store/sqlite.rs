//! `--db PATH`: the history in an SQLite database ([`SqliteStore`]), how it
//! is opened and checked, and how pages are read.

use super::lock::{self, DbLock};
use super::window::{merge, Window};
use super::writer::Writer;
use super::{random_epoch, HistoryStore, Kind, Message, MessageId, Present, StoreEvent, MAX_PAGE};
use crate::error::{Error, Result};
use rusqlite::{params, Connection, OpenFlags, Row};
use std::fs::{DirBuilder, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The schema version this build writes and reads.
const SCHEMA_VERSION: i64 = 1;
/// The page cache of each of the two connections (writer, reader), in KiB
/// (`PRAGMA cache_size` = -this; SQLite's default is 2,000 KiB). Appending
/// rows and reading the last pages of the table touch few pages.
const PAGE_CACHE_KIB: i64 = 512;

/// `PRAGMA application_id` of a udpchat history ("udpc").
const APPLICATION_ID: i64 = 0x7564_7063;
/// How many of the newest messages are also kept in memory for reads.
pub(super) const RECENT: usize = 1_024;
/// The most message ids kept in memory to drop a repeated message; beyond
/// them the table's UNIQUE constraint still keeps each id once on the disk.
const MAX_IDS: usize = 100_000;
/// How long a page read waits for a locked database before failing.
const READ_BUSY: Duration = Duration::from_millis(100);
/// How long the writer may take to commit at shutdown.
const FLUSH_LIMIT: Duration = Duration::from_secs(10);

const SCHEMA: &str = "
CREATE TABLE messages (
    room_seq   INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    sender     TEXT NOT NULL,
    kind       TEXT NOT NULL CHECK (kind IN ('member', 'admin', 'me')),
    client_id  INTEGER NOT NULL,
    client_seq INTEGER NOT NULL,
    text       TEXT NOT NULL,
    UNIQUE (client_id, client_seq)
);
CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
CREATE TABLE present (
    name_key  TEXT PRIMARY KEY,
    name      TEXT NOT NULL,
    client_id INTEGER NOT NULL
);
";

const COLUMNS: &str = "room_seq, time_ms, sender, kind, client_id, client_seq, text";

/// `--db PATH`: the history in an SQLite database, written by a thread of its own.
///
/// The file is created `0600` (its directory `0700` when this creates it),
/// kept in WAL mode with `synchronous=NORMAL`, and locked against a second
/// server by `PATH.lock` (an advisory lock, so `sqlite3` can read the database
/// while the server runs). A process SIGKILLed loses nothing it handed over
/// more than 1 s before; a power loss leaves the file intact and can lose the
/// commits since the writer's last sync, at most about 10 s of messages.
///
/// # Schema (version 1, in `PRAGMA user_version`; `PRAGMA application_id` is `0x75647063`)
///
/// ```sql
/// CREATE TABLE messages (            -- the room's history, the newest --history-size rows
///     room_seq   INTEGER PRIMARY KEY, -- room-wide sequence number, never goes back
///     time_ms    INTEGER NOT NULL,    -- server time, milliseconds since 1970-01-01 UTC
///     sender     TEXT NOT NULL,       -- the sender's name as shown
///     kind       TEXT NOT NULL CHECK (kind IN ('member', 'admin', 'me')),
///     client_id  INTEGER NOT NULL,    -- message id: the sender's client id (0: admin) ...
///     client_seq INTEGER NOT NULL,    -- ... and the sender's sequence number
///     text       TEXT NOT NULL,
///     UNIQUE (client_id, client_seq)
/// );
/// CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL); -- 'epoch', 'high_seq'
/// CREATE TABLE present (              -- the names present (or held) when the server stopped
///     name_key  TEXT PRIMARY KEY,     -- the name's comparison key
///     name      TEXT NOT NULL,
///     client_id INTEGER NOT NULL      -- the client id of its resume ticket
/// );
/// ```
///
/// Ids and the epoch are 64-bit unsigned numbers stored in SQLite's signed
/// integers (the same bits). An admin reads the last lines with
/// `sqlite3 PATH "SELECT datetime(time_ms / 1000, 'unixepoch'), sender, kind, text
/// FROM messages ORDER BY room_seq DESC LIMIT 20"`.
///
/// Reads for pages are answered from the last 1,024 messages in memory
/// when they hold the page, and otherwise by a second connection in the
/// caller's thread: WAL readers never wait for the writer, each read is one
/// indexed query of at most [`MAX_PAGE`](super::MAX_PAGE) rows, and a busy
/// database (a checkpoint's brief lock) is given up after 100 ms.
pub struct SqliteStore {
    path: PathBuf,
    window: Window,
    epoch: u64,
    present: Vec<Present>,
    reader: Connection,
    writer: Writer,
    _lock: DbLock,
}

/// A room sequence as SQLite stores it (sequences stay below 2^63).
pub(super) fn seq_to_sql(seq: u64) -> i64 {
    seq.min(i64::MAX as u64) as i64
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`, keeping `history_size`
    /// messages, and starts its writer thread. Refuses a database that is
    /// unreadable, corrupt, of a newer schema, not a udpchat history, or in use
    /// by another server; it never deletes or overwrites one.
    pub fn open(path: &Path, history_size: usize) -> Result<SqliteStore> {
        let shown = path.display().to_string();
        let fail = |e: rusqlite::Error| Error::msg("open", &shown, sql_reason(&e));
        open_file(path)?;
        let lock = lock::take(path)?;
        let flags = OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let conn = Connection::open_with_flags(path, flags).map_err(fail)?;
        conn.busy_timeout(Duration::from_secs(5))
            .and_then(|()| conn.pragma_update(None, "cache_size", -PAGE_CACHE_KIB))
            .map_err(fail)?;
        check(&conn).map_err(|why| Error::msg("open", &shown, why))?;
        let epoch = set_up(&conn).map_err(|why| Error::msg("open", &shown, why))?;
        let (window, present) = load(&conn, history_size).map_err(fail)?;
        let reader = Connection::open_with_flags(path, flags).map_err(fail)?;
        reader
            .busy_timeout(READ_BUSY)
            .and_then(|()| reader.pragma_update(None, "query_only", true))
            .and_then(|()| reader.pragma_update(None, "cache_size", -PAGE_CACHE_KIB))
            .map_err(fail)?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            window,
            epoch,
            present,
            reader,
            writer: Writer::start(conn, history_size)?,
            _lock: lock,
        })
    }

    /// The database's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn query(&self, sql: &str, room_seq: u64, n: usize) -> Result<Vec<Message>> {
        let read = || -> rusqlite::Result<Vec<Message>> {
            let mut stmt = self.reader.prepare_cached(sql)?;
            let rows = stmt.query_map(params![seq_to_sql(room_seq), n as i64], message)?;
            rows.collect()
        };
        read().map_err(|e| Error::msg("read", self.path.display(), sql_reason(&e)))
    }
}

/// Creates the database file (mode 0600, its missing directories 0700) or
/// checks that the existing one can be read and written, with the OS's reason
/// when it cannot.
fn open_file(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir.display(), e))?;
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    match options.clone().create_new(true).mode(0o600).open(path) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => options
            .open(path)
            .map(drop)
            .map_err(|e| Error::io("open", path.display(), e)),
        Err(e) => Err(Error::io("create", path.display(), e)),
    }
}

/// Why a database cannot be used, before anything is written to it: not a
/// database, corrupt, a newer schema, or another program's database.
fn check(conn: &Connection) -> std::result::Result<(), String> {
    let reason = |e: rusqlite::Error| sql_reason(&e);
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(reason)?;
    if version > SCHEMA_VERSION {
        return Err(format!(
            "schema version {version} is newer than this chat-server's {SCHEMA_VERSION}"
        ));
    }
    let app: i64 = conn
        .query_row("PRAGMA application_id", [], |r| r.get(0))
        .map_err(reason)?;
    let tables: i64 = conn
        .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
        .map_err(reason)?;
    if (app != 0 && app != APPLICATION_ID) || (version == 0 && tables > 0) {
        return Err("not a udpchat history database".into());
    }
    let verdict: String = conn
        .query_row("PRAGMA quick_check(1)", [], |r| r.get(0))
        .map_err(reason)?;
    if verdict != "ok" {
        return Err(format!("database is corrupt: {verdict}"));
    }
    Ok(())
}

/// WAL mode, the schema of a new database, and the room's epoch.
fn set_up(conn: &Connection) -> std::result::Result<u64, String> {
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .map_err(|e| sql_reason(&e))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("cannot use WAL mode (journal mode stays {mode})"));
    }
    create_schema(conn).map_err(|e| sql_reason(&e))
}

/// `synchronous`, the schema of a new database, and the stored epoch.
fn create_schema(conn: &Connection) -> rusqlite::Result<u64> {
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version == 0 {
        let tx = conn.unchecked_transaction()?;
        tx.execute_batch(SCHEMA)?;
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('epoch', ?1), ('high_seq', 0)",
            [random_epoch() as i64],
        )?;
        tx.pragma_update(None, "application_id", APPLICATION_ID)?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
    }
    conn.query_row("SELECT value FROM meta WHERE key = 'epoch'", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|e| e as u64)
}

/// The window of kept ids and recent messages, and the names present.
fn load(conn: &Connection, history_size: usize) -> rusqlite::Result<(Window, Vec<Present>)> {
    let high: i64 = conn.query_row("SELECT value FROM meta WHERE key = 'high_seq'", [], |r| {
        r.get(0)
    })?;
    let recent_cap = RECENT.min(history_size);
    let mut recent: Vec<Message> = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM messages ORDER BY room_seq DESC LIMIT ?1"
        ))?
        .query_map([recent_cap as i64], message)?
        .collect::<rusqlite::Result<_>>()?;
    recent.reverse();
    let ids_cap = MAX_IDS.min(history_size);
    let mut window = Window::new(ids_cap, recent_cap, high.max(0) as u64);
    let oldest_recent = recent.first().map_or(i64::MAX, |m| seq_to_sql(m.room_seq));
    let mut stmt = conn.prepare(
        "SELECT client_id, client_seq FROM messages WHERE room_seq < ?1 \
         ORDER BY room_seq DESC LIMIT ?2",
    )?;
    let older: Vec<MessageId> = stmt
        .query_map(
            params![oldest_recent, ids_cap.saturating_sub(recent.len()) as i64],
            |r| {
                Ok(MessageId {
                    client: r.get::<_, i64>(0)? as u64,
                    seq: r.get::<_, i64>(1)? as u64,
                })
            },
        )?
        .collect::<rusqlite::Result<_>>()?;
    for id in older.into_iter().rev() {
        window.remember(id);
    }
    window.accept(recent);
    let present = conn
        .prepare("SELECT name, name_key, client_id FROM present ORDER BY name_key")?
        .query_map([], |r| {
            Ok(Present {
                name: r.get(0)?,
                name_key: r.get(1)?,
                client: r.get::<_, i64>(2)? as u64,
            })
        })?
        .collect::<rusqlite::Result<_>>()?;
    Ok((window, present))
}

/// One row of `messages`, in [`COLUMNS`] order.
fn message(r: &Row) -> rusqlite::Result<Message> {
    let kind: String = r.get(3)?;
    Ok(Message {
        room_seq: r.get::<_, i64>(0)? as u64,
        time_ms: r.get(1)?,
        sender: r.get(2)?,
        // The table's CHECK admits only the three words.
        kind: Kind::parse(&kind).unwrap_or(Kind::Member),
        id: MessageId {
            client: r.get::<_, i64>(4)? as u64,
            seq: r.get::<_, i64>(5)? as u64,
        },
        text: r.get(6)?,
    })
}

/// SQLite's reason, without rusqlite's decoration.
fn sql_reason(e: &rusqlite::Error) -> String {
    match e {
        rusqlite::Error::SqliteFailure(code, Some(msg)) if msg.is_empty() => code.to_string(),
        rusqlite::Error::SqliteFailure(_, Some(msg)) => msg.clone(),
        rusqlite::Error::SqliteFailure(code, None) => code.to_string(),
        other => other.to_string(),
    }
}

impl HistoryStore for SqliteStore {
    fn append(&mut self, batch: Vec<Message>) {
        let fresh = self.window.accept(batch);
        self.writer.rows(fresh);
    }

    fn before(&self, room_seq: u64, n: usize) -> Result<Vec<Message>> {
        let n = n.min(MAX_PAGE);
        let recent = self.window.before(room_seq, n);
        if recent.len() == n {
            return Ok(recent);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room_seq < ?1 ORDER BY room_seq DESC LIMIT ?2"
        );
        let mut page = merge(recent, self.query(&sql, room_seq, n)?);
        let extra = page.len().saturating_sub(n);
        page.drain(..extra);
        Ok(page)
    }

    fn after(&self, room_seq: u64, n: usize) -> Result<Vec<Message>> {
        let n = n.min(MAX_PAGE);
        let recent = self.window.after(room_seq, n);
        if self.window.holds_all_after(room_seq) {
            return Ok(recent);
        }
        let sql = format!(
            "SELECT {COLUMNS} FROM messages WHERE room_seq > ?1 ORDER BY room_seq LIMIT ?2"
        );
        let mut page = merge(recent, self.query(&sql, room_seq, n)?);
        page.truncate(n);
        Ok(page)
    }

    fn last_seq(&self) -> u64 {
        self.window.last_seq()
    }

    fn epoch(&self) -> u64 {
        self.epoch
    }

    fn present_at_start(&self) -> &[Present] {
        &self.present
    }

    fn name_present(&mut self, who: Present) {
        self.writer.present(who);
    }

    fn name_gone(&mut self, name_key: &str) {
        self.writer.gone(name_key);
    }

    fn not_stored(&self) -> u64 {
        self.writer.not_stored()
    }

    fn take_event(&mut self) -> Option<StoreEvent> {
        self.writer.take_event()
    }

    fn flush(&mut self) -> Result<()> {
        self.writer
            .flush(&self.path.display().to_string(), FLUSH_LIMIT)
    }
}
