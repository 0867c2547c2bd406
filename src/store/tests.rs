//! The store's tests: one body run against both implementations through the
//! trait, then what only the database does (restarts, names, failed batches).

use super::sqlite::RECENT;
use super::writer::{LAG_LIMIT, MAX_QUEUED_ROWS};
use super::*;
use tempfile::TempDir;

/// A message of `client` with sequence `seq` at room sequence `room_seq`.
fn msg(room_seq: u64, client: u64, seq: u64) -> Message {
    Message {
        room_seq,
        time_ms: 1_700_000_000_000 + room_seq as i64,
        sender: format!("user{client}"),
        kind: [Kind::Member, Kind::Admin, Kind::Action][(room_seq % 3) as usize],
        id: MessageId { client, seq },
        text: format!("line {room_seq} ☃"),
    }
}

/// Messages with room sequences `range`, one sender.
fn msgs(range: std::ops::RangeInclusive<u64>) -> Vec<Message> {
    range.map(|i| msg(i, 7, i)).collect()
}

fn seqs(page: &[Message]) -> Vec<u64> {
    page.iter().map(|m| m.room_seq).collect()
}

fn span(range: std::ops::RangeInclusive<u64>) -> Vec<u64> {
    range.collect()
}

fn open_db(dir: &TempDir, size: usize) -> SqliteStore {
    SqliteStore::open(&dir.path().join("state/history.db"), size).unwrap()
}

/// Runs `body` on a memory store and on a new database, both of `size` messages.
fn for_both(size: usize, body: impl Fn(&mut dyn HistoryStore)) {
    body(&mut MemoryStore::new(size));
    let dir = tempfile::tempdir().unwrap();
    body(&mut open_db(&dir, size));
}

#[test]
fn pages_back_and_forward() {
    for_both(100, |s| {
        s.append(msgs(1..=30));
        s.append(msgs(31..=50));
        s.flush().unwrap();
        assert_eq!(seqs(&s.last(20).unwrap()), span(31..=50));
        assert_eq!(seqs(&s.before(31, 20).unwrap()), span(11..=30));
        assert_eq!(seqs(&s.before(11, 20).unwrap()), span(1..=10));
        assert!(s.before(1, 20).unwrap().is_empty());
        assert_eq!(seqs(&s.after(45, 10).unwrap()), span(46..=50));
        assert_eq!(seqs(&s.after(0, 5).unwrap()), span(1..=5));
        assert!(s.after(50, 5).unwrap().is_empty());
        assert_eq!(s.last(1).unwrap()[0], msg(50, 7, 50));
        assert_eq!(s.last_seq(), 50);
    });
}

#[test]
fn pages_older_than_the_recent_window() {
    let n = RECENT as u64 + 500;
    for_both(RECENT + 1000, |s| {
        s.append(msgs(1..=n));
        s.flush().unwrap();
        assert_eq!(seqs(&s.before(101, 20).unwrap()), span(81..=100));
        assert_eq!(seqs(&s.after(10, 20).unwrap()), span(11..=30));
        assert_eq!(seqs(&s.after(n - 3, 20).unwrap()), span(n - 2..=n));
        assert_eq!(s.before(u64::MAX, 5000).unwrap().len(), MAX_PAGE);
    });
}

#[test]
fn a_repeated_id_is_dropped() {
    for_both(100, |s| {
        s.append(vec![msg(1, 5, 1), msg(2, 5, 2), msg(3, 5, 1)]);
        s.append(vec![msg(4, 5, 2), msg(5, 6, 1)]);
        s.flush().unwrap();
        assert_eq!(seqs(&s.last(10).unwrap()), vec![1, 2, 5]);
        assert_eq!(s.not_stored(), 0);
    });
}

#[test]
fn the_oldest_are_dropped_first() {
    for_both(10, |s| {
        s.append(msgs(1..=18));
        s.append(msgs(19..=25));
        s.flush().unwrap();
        assert_eq!(seqs(&s.last(100).unwrap()), span(16..=25));
        assert!(s.before(16, 10).unwrap().is_empty());
        assert_eq!(s.last_seq(), 25);
    });
}

#[test]
fn a_new_room_starts_at_zero_with_its_own_epoch() {
    for_both(10, |s| {
        assert_eq!(s.last_seq(), 0);
        assert!(s.last(20).unwrap().is_empty());
        assert!(s.present_at_start().is_empty());
        assert_ne!(s.epoch(), MemoryStore::new(10).epoch());
    });
}

#[test]
fn the_database_keeps_history_epoch_and_sequence_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let epoch = {
        let mut s = open_db(&dir, 10);
        s.append(msgs(1..=12));
        s.epoch()
    };
    let mut s = open_db(&dir, 10);
    assert_eq!(s.epoch(), epoch);
    assert_eq!(s.last_seq(), 12);
    assert_eq!(seqs(&s.last(20).unwrap()), span(3..=12));
    // An id stored before the restart is still recognised.
    s.append(vec![msg(13, 7, 12), msg(14, 7, 13)]);
    s.flush().unwrap();
    assert_eq!(seqs(&s.last(3).unwrap()), vec![11, 12, 14]);
    drop(s);
    // With history size 0 nothing is kept, but the sequence still never goes back.
    let mut s = open_db(&dir, 0);
    s.append(msgs(15..=16));
    drop(s);
    let s = open_db(&dir, 0);
    assert!(s.last(20).unwrap().is_empty());
    assert_eq!(s.last_seq(), 16);
}

#[test]
fn the_database_keeps_the_names_present() {
    let dir = tempfile::tempdir().unwrap();
    let who = |name: &str, client| Present {
        name: name.to_uppercase(),
        name_key: name.to_string(),
        client,
    };
    {
        let mut s = open_db(&dir, 10);
        s.name_present(who("ann", 1));
        s.name_present(who("bob", 2));
        s.name_present(who("cid", 3));
        s.name_gone("bob");
        s.name_present(who("cid", 4));
    }
    let mut s = open_db(&dir, 10);
    assert_eq!(s.present_at_start(), &[who("ann", 1), who("cid", 4)]);
    s.name_gone("ann");
    drop(s);
    assert_eq!(open_db(&dir, 10).present_at_start(), &[who("cid", 4)]);
}

/// A new database whose inserts fail with `reason` until the returned
/// connection drops the trigger `failing`.
fn failing_writes(dir: &TempDir, reason: &str) -> (SqliteStore, rusqlite::Connection) {
    let s = open_db(dir, 100);
    let admin = rusqlite::Connection::open(s.path()).unwrap();
    admin
        .execute_batch(&format!(
            "CREATE TRIGGER failing BEFORE INSERT ON messages \
             BEGIN SELECT RAISE(ABORT, '{reason}'); END"
        ))
        .unwrap();
    (s, admin)
}

#[test]
fn a_failed_batch_is_reported_once_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, admin) = failing_writes(&dir, "database or disk is full");
    s.append(msgs(1..=2));
    s.flush().unwrap();
    s.append(msgs(3..=3));
    s.flush().unwrap();
    assert_eq!(
        s.take_event(),
        Some(StoreEvent::WriteFailed {
            reason: "database or disk is full".into()
        })
    );
    assert_eq!(s.take_event(), None);
    // The room goes on: recent pages still come from memory.
    assert_eq!(seqs(&s.last(5).unwrap()), span(1..=3));
    admin.execute_batch("DROP TRIGGER failing").unwrap();
    s.append(msgs(4..=4));
    s.flush().unwrap();
    assert_eq!(s.take_event(), Some(StoreEvent::WritesResumed));
    let stored: i64 = admin
        .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
        .unwrap();
    assert_eq!(stored, 4);
    assert_eq!(s.not_stored(), 0);
}

#[test]
fn rows_that_cannot_be_written_in_time_are_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, admin) = failing_writes(&dir, "disk I/O error");
    s.append(msgs(1..=2));
    s.flush().unwrap();
    std::thread::sleep(LAG_LIMIT + LAG_LIMIT / 2);
    admin.execute_batch("DROP TRIGGER failing").unwrap();
    s.append(msgs(3..=3));
    s.flush().unwrap();
    assert_eq!(s.not_stored(), 2);
    assert_eq!(seqs(&s.after(0, 10).unwrap()), span(1..=3));
    drop(s);
    assert_eq!(seqs(&open_db(&dir, 100).last(10).unwrap()), vec![3]);
}

#[test]
fn a_batch_larger_than_the_queue_is_dropped_and_counted() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = open_db(&dir, 100);
    let n = MAX_QUEUED_ROWS as u64 + 1;
    s.append(msgs(1..=n));
    s.append(msgs(n + 1..=n + 1));
    s.flush().unwrap();
    assert_eq!(s.not_stored(), n);
    drop(s);
    assert_eq!(seqs(&open_db(&dir, 100).last(10).unwrap()), vec![n + 1]);
}

#[test]
fn db_choice_and_default_path() {
    assert_eq!(DbChoice::from_arg("none"), DbChoice::Memory);
    assert_eq!(
        DbChoice::from_arg("h.db"),
        DbChoice::File(PathBuf::from("h.db"))
    );
    let p = |s: &str| Some(PathBuf::from(s));
    assert_eq!(
        db_path_from(p("/st"), p("/home/a")).unwrap(),
        PathBuf::from("/st/udpchat/history.db")
    );
    assert_eq!(
        db_path_from(p("rel"), p("/home/a")).unwrap(),
        PathBuf::from("/home/a/.local/state/udpchat/history.db")
    );
    assert_eq!(
        db_path_from(None, p("/home/a")).unwrap(),
        PathBuf::from("/home/a/.local/state/udpchat/history.db")
    );
    assert!(db_path_from(None, None).is_err());
}

#[test]
fn a_new_database_and_its_directory_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let s = open_db(&dir, 10);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.path()), 0o600);
    assert_eq!(mode(s.path().parent().unwrap()), 0o700);
    assert_eq!(mode(&lock_path(s.path())), 0o600);
}
