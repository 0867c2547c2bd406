//! Bad stores at open (corrupt, newer schema, another program's, unreadable,
//! in use), a writer killed with SIGKILL, and `sqlite3` reading while the store is open.

use crate::helper::{helper_cmd, Helper};
use crate::{tempdir, KILL_BOUND};
use libtest_mimic::{Completion, Failed};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use udpchat::store::{HistoryStore, SqliteStore};

/// Opens `db` in this process, expecting a refusal; returns the message.
fn refusal(db: &Path) -> String {
    match SqliteStore::open(db, 100) {
        Ok(_) => panic!("'{}' was opened", db.display()),
        Err(e) => e.to_string(),
    }
}

pub(crate) fn corrupt_file() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&db, &garbage).unwrap();
    assert_eq!(
        refusal(&db),
        format!("cannot open '{}': file is not a database", db.display())
    );
    assert_eq!(std::fs::read(&db).unwrap(), garbage);
    Ok(())
}

pub(crate) fn newer_schema() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    drop(SqliteStore::open(&db, 100).unwrap());
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 2")
        .unwrap();
    let before = std::fs::read(&db).unwrap();
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': schema version 2 is newer than this chat-server's 1",
            db.display()
        )
    );
    assert_eq!(std::fs::read(&db).unwrap(), before);
    Ok(())
}

pub(crate) fn foreign_database() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("other.db");
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch("CREATE TABLE accounts (id INTEGER)")
        .unwrap();
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': not a udpchat history database",
            db.display()
        )
    );
    Ok(())
}

pub(crate) fn unreadable() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    drop(SqliteStore::open(&db, 100).unwrap());
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o000)).unwrap();
    let expected = format!("cannot open '{}': Permission denied", db.display());
    if !nix::unistd::geteuid().is_root() {
        assert_eq!(refusal(&db), expected);
        return Ok(());
    }
    // Root reads any file: open it as `nobody` in a helper process instead.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cmd = helper_cmd("open", &db);
    // SAFETY: setgroups/setgid/setuid are async-signal-safe system calls; this
    // runs in Command's child between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let nobody = nix::unistd::Gid::from_raw(65534);
            nix::unistd::setgroups(&[nobody])?;
            nix::unistd::setgid(nobody)?;
            nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
            Ok(())
        });
    }
    let out = cmd.stdin(Stdio::null()).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!("store-helper: {expected}\n")
    );
    Ok(())
}

pub(crate) fn in_use() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let mut holder = Helper::start("hold", &db);
    assert_eq!(holder.line().0, "ready");
    assert_eq!(
        refusal(&db),
        format!(
            "cannot open '{}': in use by chat-server pid {}",
            db.display(),
            holder.pid()
        )
    );
    // The lock of a dead process is taken over, and nothing was lost.
    holder.sigkill();
    let store = SqliteStore::open(&db, 100).unwrap();
    assert_eq!(store.last_seq(), 5);
    assert_eq!(store.present_at_start().len(), 1);
    let pid = std::fs::read_to_string(format!("{}.lock", db.display())).unwrap();
    assert_eq!(pid, format!("{}\n", std::process::id()));
    Ok(())
}

pub(crate) fn foreign_lock() -> Result<Completion, Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let lock = format!("{}.lock", db.display());
    let mut cmd = Command::new("flock");
    cmd.args([
        "--exclusive",
        "--no-fork",
        &lock,
        "-c",
        "echo ready; exec cat",
    ]);
    let holder = match Command::new("flock").arg("--version").output() {
        Ok(_) => Helper::spawn(cmd),
        Err(_) => return Ok(Completion::ignored_with("flock(1) is not installed")),
    };
    assert_eq!(holder.line().0, "ready");
    assert_eq!(
        refusal(&db),
        format!("cannot open '{}': in use by another process", db.display())
    );
    Ok(Completion::Completed)
}

pub(crate) fn sigkill() -> Result<(), Failed> {
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let mut writer = Helper::start("write", &db);
    let mut handed = Vec::new();
    let start = Instant::now();
    while start.elapsed() < KILL_BOUND + Duration::from_secs(2) {
        handed.push(writer.line());
    }
    let killed = Instant::now();
    writer.sigkill();
    let conn = rusqlite::Connection::open(&db).unwrap();
    let stored: Vec<u64> = conn
        .prepare("SELECT room_seq FROM messages ORDER BY room_seq")
        .unwrap()
        .query_map([], |r| r.get::<_, i64>(0).map(|v| v as u64))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let old: Vec<u64> = handed
        .iter()
        .filter(|(_, at)| killed.duration_since(*at) > KILL_BOUND)
        .map(|(n, _)| n.parse().unwrap())
        .collect();
    assert!(
        old.len() > 10,
        "too few messages handed over: {}",
        old.len()
    );
    assert_eq!(
        stored[..old.len()],
        old[..],
        "a message handed over earlier is missing"
    );
    let newest = *stored.last().unwrap();
    if let Some((_, at)) = handed.get(newest as usize - 1) {
        println!(
            "  newest stored message was handed over {} ms before the kill ({} of {} stored)",
            killed.duration_since(*at).as_millis(),
            stored.len(),
            handed.len()
        );
    }
    Ok(())
}

pub(crate) fn sqlite3_reads() -> Result<Completion, Failed> {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        return Ok(Completion::ignored_with("sqlite3 is not installed"));
    }
    let dir = tempdir();
    let db = dir.path().join("history.db");
    let holder = Helper::start("hold", &db);
    assert_eq!(holder.line().0, "ready");
    let out = Command::new("sqlite3")
        .arg(&db)
        .arg("SELECT count(*), max(room_seq), min(kind) FROM messages; SELECT name FROM present;")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "5|5|member\nAnn\n");
    Ok(Completion::Completed)
}
