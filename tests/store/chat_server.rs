//! The history through chat-server: what a newcomer sees, HISTORY pages, a
//! restart (the members resume), SIGKILL, and every bad store stopping the server.

use crate::server_harness::*;
use crate::WAIT;
use nix::sys::signal::Signal;
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Starts a server again in `dir` (its key and `history.db`) on `addr`.
fn restart(dir: &std::path::Path, addr: SocketAddr, args: &[&str]) -> Server {
    let mut all = vec!["--bind", &*Box::leak(addr.to_string().into_boxed_str())];
    all.extend_from_slice(args);
    Server::spawn(
        Server::command_with_key(&dir.join("server.key"), &all),
        Stdio::piped(),
    )
}

pub(crate) fn a_newcomer_sees_the_history_and_pages_back() {
    let mut s = Server::start(&["--history-on-join", "3", "--rate", "0"]);
    let mut alice = Client::join(s.addr, "alice");
    for k in 0..5 {
        alice.say_acked(&format!("line {k}"));
    }
    assert_eq!(s.command("notice"), "sent to 1 member");
    let mut bob = Client::join(s.addr, "bob");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "line 3".into()));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "line 4".into()));
    assert_eq!(bob.event(), Ev::Admin("notice".into()));
    let seqs: Vec<(u8, u64)> = bob.lines.iter().map(|l| (l.flags, l.room_seq)).collect();
    assert_eq!(seqs, [(1, 4), (1, 5), (1, 6)], "flagged history");
    // HISTORY pages back from the newest.
    let line = |k: u64| ("alice".to_string(), format!("line {}", k - 1), k);
    assert_eq!(
        bob.history(0, 2),
        Got::History(0, true, vec![line(5), (String::new(), "notice".into(), 6)])
    );
    assert_eq!(
        bob.history(5, 50),
        Got::History(5, false, (1..5).map(line).collect())
    );
}

pub(crate) fn a_restart_keeps_the_history_and_the_members_resume() {
    let mut s = Server::start(&["--rate", "0"]);
    let (dir, addr) = (s.take_dir(), s.addr);
    let [mut alice, mut bob] = in_the_room(addr, ["alice", "bob"]);
    alice.say_acked("before the restart");
    assert_eq!(
        bob.event(),
        Ev::Said("alice".into(), "before the restart".into())
    );
    let epoch = alice.epoch;
    s.signal(Signal::SIGTERM);
    assert_eq!(alice.next(), Got::Reconnecting);
    assert_eq!(bob.next(), Got::Reconnecting);
    assert_eq!(s.wait_exit(WAIT).and_then(|st| st.code()), Some(0));
    drop(s);
    let mut s = restart(dir.path(), addr, &["--rate", "0"]);
    // Until alice comes back (her connection is not run yet), her name is
    // held for her ticket.
    let mut mallory = Client::new(addr, "ALICE");
    assert_eq!(mallory.try_join(), Err(Got::Refused(1, 0, "alice".into())));
    for m in [&mut alice, &mut bob] {
        match m.expect(|g| matches!(g, Got::Welcome { .. })) {
            Got::Welcome {
                flags,
                epoch: e,
                room_seq,
                name,
                ..
            } => {
                assert_eq!(flags & 2, 2, "resumed");
                assert_eq!((e, room_seq, name.as_str()), (epoch, 1, m.name.as_str()));
            }
            _ => unreachable!(),
        }
    }
    // Alice had not shown her own line: it comes as catch-up. Nobody left
    // or joined.
    assert_eq!(
        alice.event(),
        Ev::Said("alice".into(), "before the restart".into())
    );
    assert_eq!(alice.lines.last().map(|l| l.flags), Some(2));
    bob.silence();
    alice.say_acked("after the restart");
    assert_eq!(
        bob.event(),
        Ev::Said("alice".into(), "after the restart".into())
    );
    assert_eq!(bob.lines.last().map(|l| l.room_seq), Some(2));
    s.wait_log("alice resumed from");
    let mut carol = Client::new(addr, "carol");
    carol.try_join().expect("carol");
    let Got::History(_, false, lines) = carol.history(0, 10) else {
        panic!("a page")
    };
    let texts: Vec<&str> = lines.iter().map(|l| l.1.as_str()).collect();
    assert_eq!(texts, ["before the restart", "after the restart"]);
}

pub(crate) fn after_sigkill_what_was_accepted_is_in_the_history() {
    let mut s = Server::start(&["--rate", "0"]);
    let (dir, addr) = (s.take_dir(), s.addr);
    let mut alice = Client::join(addr, "alice");
    for k in 0..5 {
        alice.say_acked(&format!("kept {k}"));
    }
    // Written within 1 s (PROTOCOL.md); the test allows 5.
    let db = dir.path().join("history.db");
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let conn =
            rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
                .expect("read the database");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM messages", [], |r| r.get(0))
            .unwrap_or(0);
        if n == 5 {
            break;
        }
        assert!(Instant::now() < end, "{n} of 5 lines written after 5 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    s.signal(Signal::SIGKILL);
    s.wait_exit(WAIT).expect("killed");
    drop(s);
    let _s = restart(dir.path(), addr, &[]);
    let mut bob = Client::join(addr, "bob");
    let Got::History(_, false, lines) = bob.history(0, 10) else {
        panic!("a page")
    };
    let texts: Vec<String> = lines.into_iter().map(|l| l.1).collect();
    assert_eq!(
        texts,
        (0..5).map(|k| format!("kept {k}")).collect::<Vec<_>>()
    );
}

pub(crate) fn a_bad_store_stops_the_server_naming_the_file() {
    let dir = temp_dir();
    let key = dir.path().join("server.key");
    let start = |db: &std::path::Path| {
        Server::command_with_key(
            &key,
            &["--bind", "127.0.0.1:0", "--db", db.to_str().unwrap()],
        )
        .stdin(Stdio::null())
        .output()
        .expect("run chat-server")
    };
    let refused = |db: &std::path::Path, why: &str| {
        let out = start(db);
        assert_eq!(out.status.code(), Some(1), "{}", db.display());
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            format!("chat-server: cannot open '{}': {why}\n", db.display())
        );
    };
    let corrupt = dir.path().join("corrupt.db");
    let garbage: Vec<u8> = (0..8192u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    std::fs::write(&corrupt, &garbage).expect("write");
    refused(&corrupt, "file is not a database");
    assert_eq!(std::fs::read(&corrupt).expect("read"), garbage, "kept");
    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign)
        .expect("create")
        .execute_batch("CREATE TABLE accounts (id INTEGER)")
        .expect("a table");
    refused(&foreign, "not a udpchat history database");
    // A newer schema, made from a database of this version.
    let newer = dir.path().join("newer.db");
    drop(udpchat::store::SqliteStore::open(&newer, 10).expect("a new store"));
    rusqlite::Connection::open(&newer)
        .expect("open")
        .execute_batch("PRAGMA journal_mode = DELETE; PRAGMA user_version = 2")
        .expect("a newer version");
    refused(
        &newer,
        "schema version 2 is newer than this chat-server's 1",
    );
    // In use by a running server.
    let s = Server::start(&[]);
    let db = s.dir().expect("a directory").join("history.db");
    refused(&db, &format!("in use by chat-server pid {}", s.pid()));
}

pub(crate) fn without_db_the_default_location_is_used() {
    use std::os::unix::fs::MetadataExt;
    let dir = temp_dir();
    for (xdg, db) in [
        (true, dir.path().join("state/udpchat/history.db")),
        (
            false,
            dir.path().join("home/.local/state/udpchat/history.db"),
        ),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.args(["--bind", "127.0.0.1:0", "--key"])
            .arg(dir.path().join("server.key"))
            .env("HOME", dir.path().join("home"));
        if xdg {
            cmd.env("XDG_STATE_HOME", dir.path().join("state"));
        } else {
            cmd.env_remove("XDG_STATE_HOME");
        }
        let mut s = Server::spawn(cmd, Stdio::piped());
        let mut alice = Client::join(s.addr, "alice");
        alice.say_acked("kept by default");
        let mode = std::fs::metadata(&db).expect("the default database").mode();
        assert_eq!(mode & 0o777, 0o600, "{}", db.display());
        s.signal(Signal::SIGTERM);
        assert_eq!(s.wait_exit(WAIT).and_then(|st| st.code()), Some(0));
    }
}
