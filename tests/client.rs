//! chat-client through pipes: the real binary against a scripted version-2
//! server (for what a correct server never does: escapes in text, lost
//! events, refusals on demand) and against the real chat-server.

#[path = "common/client.rs"]
mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use udpchat::gate::ConnId;
use udpchat::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, LeftReason, LineFlags, NameRule, Refusal,
    RejectReason, ServerMsg, WelcomeFlags,
};

#[test]
fn no_answer_is_reported() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    // The login gives up after 4.5 s: 20 s is more than 4 times that.
    let mut c = Client::spawn(&addr, "alice", &[]);
    let status = c.wait_clean(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(
        err,
        [format!("chat-client: no answer from chat server at {addr}")]
    );
    assert!(c.out.rest(WAIT).is_empty(), "nothing on stdout");
}

#[test]
fn connection_refused_is_said_at_the_first_login() {
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let mut c = Client::spawn(&addr, "alice", &[]);
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err.rest(WAIT),
        [format!(
            "chat-client: connection refused: is chat-server running on {addr}?"
        )]
    );
}

/// The JOIN of a client that just connected, answered with `refusal`;
/// returns the client's stderr after it exited 1.
fn refused_with(name: &str, refusal: Refusal<'_>) -> Vec<String> {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), name, &[]);
    let (_, from) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Join { .. }))
        .unwrap();
    srv.send(from, &ServerMsg::Refused(refusal));
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    c.err_rest()
}

#[test]
fn refusals_through_a_pipe_are_fatal_and_say_why() {
    for (name, refusal, why) in [
        ("bob", Refusal::Taken { like: "bob" }, "name taken"),
        (
            "b0b",
            Refusal::Taken { like: "bob" },
            "name taken: looks like 'bob'",
        ),
        (
            "bob",
            Refusal::Reserved { like: "server" },
            "name reserved: looks like 'server'",
        ),
        (
            "bob",
            Refusal::InvalidName(NameRule::MixedScripts),
            "invalid name: it mixes scripts (letters of several alphabets)",
        ),
        ("bob", Refusal::RoomFull, "room full"),
        (
            "bob",
            Refusal::TooManyFromAddress,
            "too many members from your address",
        ),
        (
            "bob",
            Refusal::TooManyJoins,
            "too many joins from your address in the last minute",
        ),
    ] {
        assert_eq!(
            refused_with(name, refusal),
            [format!("chat-client: cannot join as '{name}': {why}")]
        );
    }
}

#[test]
fn invalid_and_reserved_names_are_refused_before_sending() {
    let srv = FakeServer::new();
    for (name, why) in [
        ("a b", "invalid name: spaces are not allowed"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "invalid name: more than 24 characters",
        ),
        (
            "bob!",
            "invalid name: '!' is not allowed (letters, digits, _ - . only)",
        ),
        ("ＡＤＭＩＮ", "name reserved: looks like 'admin'"),
    ] {
        let mut c = Client::spawn(&srv.addr_text(), name, &[]);
        assert_eq!(c.wait_clean(WAIT).code(), Some(1));
        assert_eq!(
            c.err.rest(WAIT),
            [format!("chat-client: cannot join as '{name}': {why}")]
        );
    }
    assert!(
        srv.recv(Duration::from_millis(200)).is_none(),
        "nothing sent"
    );
}

#[test]
fn name_from_stdin_without_a_prompt() {
    let srv = FakeServer::new();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--lang", "en"]);
    let mut c = Client::spawn_cmd(cmd);
    c.send("carol");
    c.send("first words");
    let from = srv.accept(30_000);
    c.out.wait_for("welcome, carol", WAIT).expect("welcome");
    srv.expect_say("the line after the name is said", 1, "first words");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    assert!(c.err_rest().is_empty());
}

#[test]
fn the_first_key_is_recorded_and_a_changed_one_refused() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(30_000);
    c.out.wait_for("welcome, alice", WAIT).expect("welcome");
    let file = c.home.path().join("known_servers");
    let recorded = c.err.wait_for("recorded", WAIT).expect("said so");
    assert_eq!(
        recorded,
        format!(
            "chat-client: recorded the key of {} ({}) in '{}'",
            srv.addr_text(),
            srv.fingerprint(),
            file.display()
        )
    );
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("{} {}", srv.addr_text(), srv.fingerprint())),
        "{text}"
    );

    // The same address with another key: refused before anything is sent in
    // the session, both fingerprints and the line to remove.
    drop(srv);
    let other = FakeServer::with_key([9; 32]);
    let addr = other.addr_text();
    std::fs::write(
        &file,
        format!("{addr} {}\n", FakeServer::new().fingerprint()),
    )
    .unwrap();
    let mut cmd = Client::command(&addr, "alice");
    cmd.arg("--known-servers").arg(&file);
    let mut c = Client::spawn_in(
        cmd,
        std::process::Stdio::piped(),
        tempfile::tempdir().unwrap(),
    );
    assert!(
        other.recv(Duration::from_secs(3)).is_none(),
        "no body after the wrong key"
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(&format!(
            "chat-client: cannot trust '{addr}': its key is SHA256:"
        )),
        "{err:?}"
    );
    assert!(err[0].contains(&FakeServer::new().fingerprint()), "{err:?}");
    assert!(err[0].contains("remove line 1 from"), "{err:?}");

    // A pinned fingerprint: the same refusal, and nothing written.
    let mut c = Client::spawn(
        &addr,
        "alice",
        &["--server-key", &FakeServer::new().fingerprint()],
    );
    assert!(
        other.recv(Duration::from_secs(3)).is_none(),
        "no body after the wrong key"
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert!(err[0].contains("as given with --server-key"), "{err:?}");
}

#[test]
fn a_malformed_known_servers_line_is_reported_and_ignored() {
    let srv = FakeServer::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ks");
    std::fs::write(&file, "garbage\n").unwrap();
    let mut cmd = Client::command(&srv.addr_text(), "alice");
    cmd.arg("--known-servers").arg(&file);
    let mut c = Client::spawn_in(cmd, std::process::Stdio::piped(), dir);
    srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    let warning = c.err.wait_for("line 1", WAIT).expect("the line reported");
    assert!(
        warning.starts_with("chat-client: warning: ignoring line 1 of "),
        "{warning}"
    );
    c.err
        .wait_for("recorded the key", WAIT)
        .expect("then recorded");
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn an_unwritable_known_servers_file_is_a_warning() {
    let srv = FakeServer::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let mut cmd = Client::command(&srv.addr_text(), "alice");
    cmd.arg("--known-servers")
        .arg(dir.path().join("file/known_servers"));
    let mut c = Client::spawn_in(cmd, std::process::Stdio::piped(), dir);
    srv.accept(30_000);
    c.out
        .wait_for("welcome", WAIT)
        .expect("welcome all the same");
    let warning = c.err.wait_for("not recorded", WAIT).expect("a warning");
    assert!(
        warning.starts_with(&format!(
            "chat-client: warning: the key of {} ({}) is not recorded: ",
            srv.addr_text(),
            srv.fingerprint()
        )),
        "{warning}"
    );
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn remote_text_arrives_escaped() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.find_helper();
    srv.events(
        from,
        1,
        &[
            Event::Said(line(
                1,
                "mallory",
                "\x1b[2J\x1b]0;pwned\x07\rX\u{202e}abc\u{9b}",
            )),
            Event::Joined {
                name: "e\x1b[31mvil",
            },
            Event::Admin {
                room_seq: 2,
                time_ms: 0,
                flags: LineFlags::NONE,
                text: "\x1b]52;c;aGk=\x07",
            },
        ],
    );
    let said = c.out.wait_for("mallory:", WAIT).expect("the message");
    assert!(
        said.ends_with("mallory: \\x1b[2J\\x1b]0;pwned\\x07\\x0dX\\u202eabc\\u009b"),
        "{said:?}"
    );
    let joined = c.out.wait_for("joined", WAIT).unwrap();
    assert!(joined.ends_with("* e\\x1b[31mvil joined"), "{joined:?}");
    let admin = c.out.wait_for("[admin]", WAIT).unwrap();
    assert!(admin.ends_with("[admin] \\x1b]52;c;aGk=\\x07"), "{admin:?}");
    for line in &c.out.seen {
        assert!(!line.chars().any(|ch| ch.is_control()), "{line:?}");
    }
    c.signal(Signal::SIGTERM);
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn me_is_sent_and_shown_as_an_action() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.send("/me waves");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Me { .. }))
        .expect("a ME");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Me {
            seq: 1,
            text: "waves"
        }
    );
    srv.send(
        from,
        &ServerMsg::Reject {
            seq: 1,
            reason: RejectReason::NotSupported,
        },
    );
    let said = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        said.ends_with("-- not delivered (the server does not support /me): /me waves"),
        "{said}"
    );
    srv.events(from, 1, &[Event::Me(line(1, "bob", "bows"))]);
    let shown = c.out.wait_for("bows", WAIT).unwrap();
    assert!(shown.ends_with(" * bob bows"), "{shown}");
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));

    // A server whose WELCOME does not offer ME is not sent one.
    let mut srv = FakeServer::new();
    srv.flags = WelcomeFlags::NONE;
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(30_000);
    c.send("/me waves");
    let said = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        said.ends_with("-- not delivered (the server does not support /me): /me waves"),
        "{said}"
    );
    c.close_stdin();
    let (d, from) = srv
        .recv_where(WAIT, |m| {
            matches!(m, ClientMsg::Me { .. } | ClientMsg::Leave)
        })
        .expect("a LEAVE");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Leave,
        "no ME before it"
    );
    srv.bye(from, ByeReason::Left, "");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn lost_events_are_counted_from_gaps_and_keepalives() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    // A short timeout: a KEEPALIVE every second. The server does not offer
    // repair (no NACK): a gap is held for a second, then reported lost.
    let from = srv.accept(3000);
    srv.said(from, 1, "bob", "one");
    srv.said(from, 4, "bob", "four");
    // A duplicate and a late one are not printed again.
    srv.said(from, 4, "bob", "four again");
    srv.said(from, 5, "bob", "five");
    c.out.wait_for("bob: one", WAIT).expect("one");
    let lost = c.out.wait_for("lost", WAIT).expect("a gap notice");
    assert!(lost.ends_with(" (2 messages lost)"), "{lost:?}");
    c.out.wait_for("bob: four", WAIT).expect("four");
    c.out.wait_for("bob: five", WAIT).expect("five");
    // Events 6..=8 never arrive; the server's KEEPALIVE says 8 were sent.
    srv.recv_where(WAIT, |m| matches!(m, ClientMsg::Keepalive { .. }))
        .expect("a KEEPALIVE");
    srv.send(from, &ServerMsg::Keepalive { last_event: 8 });
    let lost = c.out.wait_for("lost", WAIT).expect("a tail-loss notice");
    assert!(lost.ends_with(" (3 messages lost)"), "{lost:?}");
    assert!(!c.out.seen.iter().any(|l| l.contains("again")));
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn silence_is_lost_contact_then_reconnecting_until_the_timeout() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &["--reconnect-timeout", "1.5"]);
    srv.accept(600);
    c.find_helper();
    c.out
        .wait_for("-- reconnecting… (next attempt at ", WAIT)
        .expect("said so");
    // The end comes 1.5 s after the loss was found; 20 s is more than 5 times.
    assert_eq!(c.wait_clean(Duration::from_secs(20)).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        [format!(
            "chat-client: lost contact with the server at {}",
            srv.addr_text()
        )]
    );
}

#[test]
fn retransmits_until_acknowledged_and_reports_refusals() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.send("hello");
    let is_say = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Say { .. });
    let (first, _) = srv.recv_where(WAIT, is_say).unwrap();
    let (again, _) = srv.recv_where(WAIT, is_say).expect("a retransmission");
    assert_eq!(first, again, "same number, same text");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.send("/msg nobody psst");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Private { .. }))
        .unwrap();
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Private {
            seq: 2,
            to: "nobody",
            text: "psst"
        }
    );
    srv.send(
        from,
        &ServerMsg::Reject {
            seq: 2,
            reason: RejectReason::NoSuchMember,
        },
    );
    let line = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        line.ends_with("-- not delivered (no such member): /msg nobody psst"),
        "{line}"
    );
    c.send("old news");
    srv.expect_say("a SAY", 3, "old news");
    srv.send(
        from,
        &ServerMsg::Reject {
            seq: 3,
            reason: RejectReason::TooOld,
        },
    );
    let line = c.out.wait_for("may not have been delivered", WAIT).unwrap();
    assert!(
        line.ends_with("-- may not have been delivered: old news"),
        "{line}"
    );
    // Not answered: resent under the same number while the session lives,
    // never given up (a client that gave up after 4 sends lost about 1 line
    // in 800 at 10% loss each way), until the server answers.
    c.send("into the void");
    for k in 1..=6 {
        srv.expect_say(&format!("send {k} of SAY 4"), 4, "into the void");
    }
    srv.send(from, &ServerMsg::Ack { seq: 4 });
    c.send("/frobnicate");
    assert!(c
        .out
        .wait_for("unknown command /frobnicate", WAIT)
        .is_some());
    let gave_up = c
        .out
        .seen
        .iter()
        .find(|l| l.contains("no answer from the server"));
    assert!(gave_up.is_none(), "{gave_up:?}");
    c.send("/quit");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn at_end_of_input_a_line_never_answered_is_given_up_after_the_drain_limit() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(30_000);
    c.send("into the void");
    srv.expect_say("the SAY", 1, "into the void");
    c.close_stdin();
    // Given up 10 s after the last acknowledgement (none here): 5x that.
    let line = c
        .out
        .wait_for("not delivered", Duration::from_secs(50))
        .expect("given up at the end");
    assert!(
        line.ends_with("-- not delivered (no answer from the server): into the void"),
        "{line}"
    );
    srv.answer_leave("LEAVE after giving up");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn a_forgotten_session_is_reset_and_the_client_comes_back() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.find_helper();
    c.send("before");
    srv.expect_say("the SAY", 1, "before");
    // The server forgets the session: the next datagram draws a RESET, and
    // the client joins again in a new session.
    srv.forget(from);
    let is_join = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Join { name: "alice" });
    let (_, again) = srv.recv_where(WAIT, is_join).expect("a JOIN again");
    assert_ne!(again, from, "a new session");
    c.out.wait_for("-- reconnecting", WAIT).expect("said so");
    srv.welcome(again, "alice", 30_000);
    c.out
        .wait_for("-- back in the room", WAIT)
        .expect("said so");
    srv.expect_say("the unacknowledged SAY, same number", 1, "before");
    srv.send(again, &ServerMsg::Ack { seq: 1 });
    // Event numbers restart at 1 in the new session.
    srv.said(again, 1, "bob", "new");
    c.out.wait_for("bob: new", WAIT).unwrap();
    c.close_stdin();
    assert_eq!(srv.answer_leave("LEAVE"), again);
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    assert!(!c.out.seen.iter().any(|l| l.contains("lost")));
}

#[test]
fn kicked_ends_with_the_reason_and_its_text() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.find_helper();
    srv.bye(from, ByeReason::Removed, "spam");
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        ["chat-client: you were removed by the admin: spam"]
    );
    assert!(
        srv.recv_where(Duration::from_millis(300), is_leave)
            .is_none(),
        "no LEAVE after BYE"
    );
}

#[test]
fn closing_ends_the_client() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.find_helper();
    srv.bye(from, ByeReason::Closing, "");
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(c.err_rest(), ["chat-client: the chat room is closing"]);
}

#[test]
fn no_counter_is_used_twice_while_typing_fast_with_keepalives() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    // A keepalive after 400 ms with nothing sent; the user types bursts of
    // ten lines with pauses of 450 ms between them, so keepalives and SAYs
    // (all sealed by the receiver) alternate.
    let from = srv.accept(1200);
    c.find_helper();
    let lines = 100;
    let (mut typed, mut acked, mut keepalives) = (0, 0, 0);
    let start = std::time::Instant::now();
    let mut type_at = start;
    while acked < lines || keepalives < 9 {
        let now = std::time::Instant::now();
        assert!(
            now < start + WAIT * 3,
            "{acked} acked, {keepalives} keepalives"
        );
        if typed < lines && now >= type_at {
            c.send(&format!("line {typed}"));
            typed += 1;
            if typed % 10 == 0 {
                type_at = now + Duration::from_millis(450);
            }
        }
        let Some((d, _)) = srv.recv(Duration::from_millis(20)) else {
            continue;
        };
        match decode_client(&d) {
            Ok(ClientMsg::Say { seq, .. }) => {
                srv.send(from, &ServerMsg::Ack { seq });
                acked = acked.max(seq);
            }
            Ok(ClientMsg::Keepalive { .. }) => {
                keepalives += 1;
                srv.send(from, &ServerMsg::Keepalive { last_event: 0 });
            }
            _ => {}
        }
    }
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    let seen = srv.data_seen.borrow();
    let mut set = std::collections::HashSet::new();
    for pair in seen.iter() {
        assert!(set.insert(*pair), "counter used twice: {pair:?}");
    }
    assert!(seen.len() > lines as usize, "{} datagrams", seen.len());
}

/// A joined client and its peer, with the client's second process found.
fn joined(srv: &FakeServer, name: &str) -> (Client, ConnId) {
    let mut c = Client::spawn(&srv.addr_text(), name, &[]);
    let from = srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    c.find_helper();
    (c, from)
}

/// Exactly one LEAVE reaches the peer (it answers with BYE) and no more follow.
fn one_leave(srv: &FakeServer, from: ConnId) {
    assert_eq!(srv.answer_leave("LEAVE"), from);
    assert!(
        srv.recv_where(Duration::from_millis(400), is_leave)
            .is_none(),
        "the LEAVE is not repeated after BYE"
    );
}

#[test]
fn ctrl_c_to_the_process_group() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    c.signal_group(Signal::SIGINT);
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(130));
}

#[test]
fn sigterm_to_the_parent_only() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    c.signal(Signal::SIGTERM);
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn sigterm_to_the_receiver_only() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGTERM).unwrap();
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn unanswered_leave_still_ends() {
    let srv = FakeServer::new();
    let (mut c, _) = joined(&srv, "alice");
    c.close_stdin();
    // The LEAVE is given up after 0.5 s: WAIT is 20 times that.
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    let leaves =
        std::iter::from_fn(|| srv.recv_where(Duration::from_millis(200), is_leave)).count();
    assert!(leaves >= 2, "LEAVE is repeated while unanswered");
}

#[test]
fn sigkill_of_the_parent_the_receiver_leaves() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    c.signal(Signal::SIGKILL);
    c.wait(WAIT).expect("killed");
    one_leave(&srv, from);
    assert!(orphan_ended_within(h, WAIT), "the receiver ended");
    let err = c.err.rest(WAIT);
    assert!(err.iter().all(|l| !l.contains("panick")), "{err:?}");
}

#[test]
fn sigkill_of_the_receiver_the_parent_says_so_and_sends_nothing() {
    let srv = FakeServer::new();
    let (mut c, _) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGKILL).unwrap();
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        ["chat-client: the receiver process was killed by SIGKILL"]
    );
    // Only the receiver sealed: the parent cannot, and does not try.
    assert!(srv.recv(Duration::from_millis(500)).is_none());
}

#[test]
fn chinese_lines_by_flag_and_by_locale() {
    for (flag, env) in [(Some("zh"), None), (None, Some("zh_CN.UTF-8"))] {
        let srv = FakeServer::new();
        let mut cmd = std::process::Command::new(CLIENT);
        cmd.args(["--server", &srv.addr_text(), "--name", "张伟"]);
        cmd.env_remove("LC_ALL").env_remove("LC_MESSAGES");
        match (flag, env) {
            (Some(l), _) => {
                cmd.args(["--lang", l]).env("LANG", "C");
            }
            (None, Some(v)) => {
                cmd.env("LANG", v);
            }
            _ => unreachable!(),
        }
        let mut c = Client::spawn_cmd(cmd);
        let from = srv.accept(30_000);
        c.out
            .wait_for("欢迎 张伟", WAIT)
            .expect("welcome in Chinese");
        srv.events(
            from,
            1,
            &[
                Event::Joined { name: "alice" },
                Event::Said(line(1, "alice", "你好")),
                Event::Admin {
                    room_seq: 2,
                    time_ms: 0,
                    flags: LineFlags::NONE,
                    text: "维护",
                },
                Event::Left {
                    reason: LeftReason::Left,
                    name: "alice",
                },
            ],
        );
        for want in [
            "alice 进入了聊天室",
            "alice 说: 你好",
            "[管理员] 说: 维护",
            "alice 退出了聊天室",
        ] {
            let line = c
                .out
                .wait_for(want, WAIT)
                .unwrap_or_else(|| panic!("{want}"));
            assert!(line.ends_with(want), "{line}");
        }
        c.close_stdin();
        srv.answer_leave("LEAVE");
        assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    }
}

#[test]
fn started_with_stdin_closed_it_joins_and_leaves() {
    use std::os::unix::process::CommandExt;
    let srv = FakeServer::new();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "alice"]);
    let mut c = Client::spawn_cmd(cmd);
    // That client has a pipe as stdin; this one has none at all.
    c.close_stdin();
    srv.accept(30_000);
    srv.answer_leave("LEAVE on end of input");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "bob"])
        .arg("--known-servers")
        .arg(dir.path().join("known_servers"));
    // SAFETY: the closure runs in the child between fork and exec and makes one
    // async-signal-safe call, close(0), on the child's own stdin, which no Rust
    // object owns there.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::close(0);
            Ok(())
        });
    }
    // A Client, so that the process is killed and reaped if the test fails.
    let mut c = Client::spawn_in(cmd, std::process::Stdio::null(), dir);
    srv.accept(30_000);
    srv.answer_leave("LEAVE: fd 0 was /dev/null");
    let status = c.wait(WAIT).expect("did not exit");
    assert_eq!(status.code(), Some(0));
}

// ---- against the real chat-server ----

#[test]
fn a_whole_conversation_with_the_real_server() {
    let mut srv = Server::start(&[]);
    let mut alice = member(&srv.addr, "alice");
    let mut bob = member(&srv.addr, "bob");
    saw(&mut alice, "* bob joined");
    let mut carol = member(&srv.addr, "carol");
    saw(&mut alice, "* carol joined");
    saw(&mut bob, "* carol joined");

    alice.send("hello all");
    assert!(saw(&mut bob, "alice: hello all").ends_with(" alice: hello all"));
    saw(&mut carol, "alice: hello all");

    srv.admin("maintenance at noon");
    for c in [&mut alice, &mut bob, &mut carol] {
        assert!(saw(c, "[admin]").ends_with(" [admin] maintenance at noon"));
    }

    bob.send("/who");
    let who = saw(&mut bob, "in the room:");
    assert!(who.contains("-- 3 in the room: "), "{who}");
    for n in ["alice", "bob", "carol"] {
        assert!(who.contains(n), "{who}");
    }

    carol.send("/msg alice psst");
    assert!(saw(&mut alice, "[carol -> you]").ends_with(" [carol -> you] psst"));

    bob.send("/quit");
    assert_eq!(bob.wait_clean(WAIT).code(), Some(0));
    saw(&mut alice, "* bob left");
    saw(&mut carol, "* bob left");
    assert!(
        !bob.out.rest(WAIT).iter().any(|l| l.contains("psst")),
        "a private message reaches only its recipient"
    );

    srv.admin("/kick carol");
    assert_eq!(carol.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        carol.err_rest(),
        ["chat-client: you were removed by the admin"]
    );
    saw(&mut alice, "* carol was removed");

    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    assert!(alice.err_rest().is_empty());
}

#[test]
fn a_taken_name_through_a_pipe_is_fatal() {
    let srv = Server::start(&[]);
    let _alice = member(&srv.addr, "alice");
    let mut again = Client::spawn(&srv.addr, "ALICE", &[]);
    assert_eq!(again.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        again.err_rest(),
        ["chat-client: cannot join as 'ALICE': name taken: looks like 'alice'"]
    );
}

#[test]
fn killed_clients_still_leave_with_the_real_server() {
    let srv = Server::start(&["--member-timeout", "2"]);
    let mut watcher = member(&srv.addr, "watcher");
    // The parent killed: the receiver leaves.
    let mut a = member(&srv.addr, "a1");
    saw(&mut watcher, "* a1 joined");
    let h = a.helper.unwrap();
    a.signal(Signal::SIGKILL);
    a.wait(WAIT).unwrap();
    assert!(
        saw(&mut watcher, "* a1 left").ends_with("* a1 left"),
        "not timed out"
    );
    assert!(orphan_ended_within(h, WAIT));
    // The receiver killed: the parent cannot seal a LEAVE; the server times
    // the member out.
    let mut b = member(&srv.addr, "b1");
    saw(&mut watcher, "* b1 joined");
    let h = b.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGKILL).unwrap();
    assert_eq!(b.wait_clean(WAIT).code(), Some(1));
    assert!(saw(&mut watcher, "* b1 left").ends_with("* b1 left (timed out)"));
    // Ctrl-C to the group.
    let mut c = member(&srv.addr, "c1");
    saw(&mut watcher, "* c1 joined");
    c.signal_group(Signal::SIGINT);
    assert_eq!(c.wait_clean(WAIT).code(), Some(130));
    saw(&mut watcher, "* c1 left");
    // SIGTERM.
    let mut d = member(&srv.addr, "d1");
    saw(&mut watcher, "* d1 joined");
    d.signal(Signal::SIGTERM);
    assert_eq!(d.wait_clean(WAIT).code(), Some(143));
    saw(&mut watcher, "* d1 left");
}

#[test]
fn closing_ends_and_restarting_reconnects_then_gives_up_through_a_pipe() {
    // /shutdown and --close-on-signal close the room: the clients end.
    let mut srv = Server::start(&[]);
    let mut a = member(&srv.addr, "alice");
    srv.admin("/shutdown");
    assert_eq!(a.wait_clean(WAIT).code(), Some(1));
    assert_eq!(a.err_rest(), ["chat-client: the chat room is closing"]);
    let srv = Server::start(&["--close-on-signal"]);
    let mut a = member(&srv.addr, "alice");
    srv.signal(Signal::SIGTERM);
    assert_eq!(a.wait_clean(WAIT).code(), Some(1));
    assert_eq!(a.err_rest(), ["chat-client: the chat room is closing"]);

    // SIGTERM says "restarting", and a stopped server says nothing: the
    // client reconnects, and through a pipe gives up after
    // --reconnect-timeout when nobody comes back.
    for (args, sig) in [
        (&[][..], Signal::SIGTERM),
        (&["--member-timeout", "1"][..], Signal::SIGSTOP),
    ] {
        let srv = Server::start(args);
        let mut a = Client::spawn(&srv.addr, "alice", &["--reconnect-timeout", "1"]);
        a.out.wait_for("welcome", WAIT).expect("welcome");
        srv.signal(sig);
        saw(&mut a, "-- reconnecting… (next attempt at ");
        assert_eq!(a.wait_clean(WAIT).code(), Some(1));
        assert_eq!(
            a.err_rest(),
            [format!(
                "chat-client: lost contact with the server at {}",
                srv.addr
            )]
        );
    }
}

#[test]
fn the_server_restarts_on_the_same_port_and_the_client_rejoins() {
    let srv = Server::start(&[]);
    let addr = srv.addr.clone();
    let mut alice = member(&addr, "alice");
    // Killed, and started again on the same port with the same key.
    let _srv = srv.restart(&[]);
    let mut bob = member(&addr, "bob");
    alice.send("still here");
    saw(&mut alice, "-- reconnecting");
    saw(&mut alice, "-- back in the room");
    assert!(saw(&mut bob, "alice: still here").ends_with(" alice: still here"));
    bob.send("welcome back");
    saw(&mut alice, "bob: welcome back");
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    saw(&mut bob, "* alice left");
}

/// A relay that drops the first three of the server's long datagrams (it
/// cannot read sealed ones: the long lines of [`five_lines`] make the
/// longest datagrams of these tests).
fn relay_dropping_three_long(server: &str) -> Relay {
    let dropped = std::sync::atomic::AtomicUsize::new(0);
    Relay::start(server, move |d: &[u8]| {
        use std::sync::atomic::Ordering;
        d.len() > 250 && dropped.fetch_add(1, Ordering::Relaxed) < 3
    })
}

/// Five lines, the second, third and fifth long.
fn five_lines() -> [String; 5] {
    let long = "x".repeat(200);
    [
        "one".to_string(),
        format!("two {long}"),
        format!("three {long}"),
        "four".to_string(),
        format!("five {long}"),
    ]
}

#[test]
fn events_dropped_on_the_way_are_repaired_in_order() {
    let srv = Server::start(&[]);
    let relay = relay_dropping_three_long(&srv.addr);
    let mut alice = member(&relay.addr, "alice");
    let mut bob = member(&srv.addr, "bob");
    let lines = five_lines();
    for line in &lines {
        bob.send(line);
    }
    for line in &lines {
        let got = saw(&mut alice, "bob: ");
        assert!(got.ends_with(&format!("bob: {line}")), "in order: {got}");
    }
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    assert!(!alice.out.seen.iter().any(|l| l.contains("lost")));
    assert_eq!(relay.stop(), 3, "three were dropped, and repaired");
}

#[test]
fn events_dropped_without_repair_are_reported_lost() {
    // One event per datagram, so a dropped datagram is one lost event.
    let srv = Server::start(&["--no-packing", "--no-repair", "--member-timeout", "1.5"]);
    let relay = relay_dropping_three_long(&srv.addr);
    let mut alice = member(&relay.addr, "alice");
    let mut bob = member(&srv.addr, "bob");
    for line in five_lines() {
        bob.send(&line);
    }
    saw(&mut alice, "bob: one");
    assert!(saw(&mut alice, "lost").ends_with(" (2 messages lost)"));
    saw(&mut alice, "bob: four");
    // "five" is lost at the end: the server's next KEEPALIVE tells.
    assert!(saw(&mut alice, "lost").ends_with(" (1 message lost)"));
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    assert_eq!(relay.stop(), 3);
}

/// `lines` lines piped into one client arrive in order at another, and the
/// sender exits 0 without a "not delivered".
fn paste_arrives_whole(server_args: &[&str], lines: usize) {
    let srv = Server::start(server_args);
    let mut watcher = member(&srv.addr, "watcher");
    let mut paster = member(&srv.addr, "paster");
    for i in 1..=lines {
        paster.send(&format!("line {i}"));
    }
    paster.close_stdin();
    for i in 1..=lines {
        let want = format!("paster: line {i}");
        let got = saw(&mut watcher, "paster: line");
        assert!(got.ends_with(&want), "in order: {got} for {want}");
    }
    assert_eq!(paster.wait_clean(Duration::from_secs(30)).code(), Some(0));
    assert!(!paster
        .out
        .rest(WAIT)
        .iter()
        .any(|l| l.contains("not delivered")));
}

#[test]
fn a_pasted_burst_is_paced_by_the_rate_limit_not_lost() {
    paste_arrives_whole(&[], 25);
}

#[test]
fn a_piped_file_longer_than_the_drain_limit_is_sent_whole() {
    // At 2 messages a second after a burst of 10, 36 lines take about 13 s after
    // end of input: longer than the 10 s the sender waits for the next ACK, so
    // only a drain that each ACK extends sends the whole file.
    paste_arrives_whole(&["--rate", "2"], 36);
}

#[test]
fn a_scripts_last_who_is_printed_before_the_client_leaves() {
    // `printf 'hello\n/who\n' | chat-client`: end of input right behind /who
    // must not cut the member list off (it did, about one run in three).
    let srv = Server::start(&[]);
    let _watcher = member(&srv.addr, "watcher");
    for round in 0..5 {
        let mut c = member(&srv.addr, &format!("script{round}"));
        c.send("hello");
        c.send("/who");
        c.close_stdin();
        assert_eq!(c.wait_clean(WAIT).code(), Some(0));
        let out = c.out.rest(WAIT);
        assert!(
            out.iter().any(|l| l.contains("-- 2 in the room: ")),
            "round {round}: no member list in {out:?}"
        );
    }
}

#[test]
fn the_welcome_says_whether_the_room_keeps_its_history() {
    let kept = "-- this room keeps its history: /history shows earlier messages";
    let srv = Server::start(&[]);
    let mut alice = member(&srv.addr, "alice");
    saw(&mut alice, kept);
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    // A fake server whose WELCOME says nothing of history: no such line.
    let fake = FakeServer::new();
    let mut bob = Client::spawn(&fake.addr_text(), "bob", &[]);
    fake.accept(30_000);
    bob.out.wait_for("welcome, bob", WAIT).expect("welcome");
    bob.close_stdin();
    fake.answer_leave("LEAVE");
    assert_eq!(bob.wait_clean(WAIT).code(), Some(0));
    let all = bob.out.rest(WAIT);
    assert!(all.iter().any(|l| l.contains("you left")), "{all:?}");
    assert!(
        !all.iter().any(|l| l.contains("keeps its history")),
        "{all:?}"
    );
}
