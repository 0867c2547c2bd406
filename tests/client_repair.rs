//! chat-client's repaired delivery and comeback (issue 10) against a
//! scripted version-2 server: a gap asked for with a NACK and shown in
//! order, a message id shown once, history and `/history` with their own
//! times, a resume with its catch-up, lines typed while reconnecting kept
//! (and the ones beyond 100 not sent), and giving up through a pipe.

#[path = "common/client.rs"]
mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use udpchat::gate::ConnId;
use udpchat::protocol::sealed::{
    decode_client, ClientMsg, Event, EventsWriter, LineFlags, ServerMsg, WelcomeFlags,
};
use udpchat::session::MAX_BODY;

/// A client joined to a server that serves NACK, HISTORY and RESUME.
fn repairing(name: &str, extra: &[&str]) -> (FakeServer, Client, ConnId) {
    let mut srv = FakeServer::new();
    srv.flags = WelcomeFlags::ME.with(WelcomeFlags::REPAIR);
    srv.ticket = b"ticket-1".to_vec();
    let mut c = Client::spawn(&srv.addr_text(), name, extra);
    let from = srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    (srv, c, from)
}

fn end(srv: &FakeServer, mut c: Client) {
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn a_gap_is_asked_for_and_shown_in_order_once() {
    let (srv, mut c, from) = repairing("alice", &[]);
    srv.said(from, 1, "bob", "one");
    srv.said(from, 3, "bob", "three");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Nack { .. }))
        .expect("a NACK for event 2");
    let ClientMsg::Nack { ranges } = decode_client(&d).unwrap() else {
        unreachable!()
    };
    assert_eq!(ranges.iter().collect::<Vec<_>>(), [(2, 2)]);
    srv.said(from, 2, "bob", "two");
    // The same message again under another number: shown once.
    srv.events(from, 4, &[Event::Said(line(2, "bob", "two"))]);
    srv.said(from, 5, "bob", "five");
    for want in ["bob: one", "bob: two", "bob: three", "bob: five"] {
        let got = c.out.wait_for("bob: ", WAIT).expect(want);
        assert!(got.ends_with(want), "in order: {got} for {want}");
    }
    assert!(
        !c.out
            .seen
            .iter()
            .any(|l| l.contains("lost") || l.contains("again")),
        "{:?}",
        c.out.seen
    );
    end(&srv, c);
}

#[test]
fn a_gap_no_longer_kept_is_lost_with_its_count() {
    let (srv, mut c, from) = repairing("alice", &[]);
    srv.said(from, 1, "bob", "one");
    srv.said(from, 5, "bob", "five");
    srv.recv_where(WAIT, |m| matches!(m, ClientMsg::Nack { .. }))
        .expect("a NACK");
    srv.send(
        from,
        &ServerMsg::Lost {
            first_event: 2,
            count: 3,
        },
    );
    c.out.wait_for("bob: one", WAIT).expect("one");
    let lost = c.out.wait_for("lost", WAIT).expect("the loss");
    assert!(lost.ends_with(" (3 messages lost)"), "{lost}");
    c.out.wait_for("bob: five", WAIT).expect("five");
    end(&srv, c);
}

#[test]
fn history_on_join_and_history_pages_carry_their_own_time() {
    let (srv, mut c, from) = repairing("alice", &[]);
    srv.events(
        from,
        1,
        &[
            Event::Said(line_with(8, "bob", "earlier", LineFlags::HISTORY)),
            Event::Said(line(9, "bob", "now")),
        ],
    );
    let earlier = c.out.wait_for("earlier", WAIT).expect("history");
    // 2025-12-01: another day, so the date is shown.
    assert!(earlier.starts_with("[2025-1"), "{earlier}");
    assert!(earlier.ends_with("] bob: earlier"), "{earlier}");
    let now = c.out.wait_for("bob: now", WAIT).unwrap();
    assert!(
        now.as_bytes()[2] == b':',
        "a live line has the time now: {now}"
    );
    c.send("/history 2");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::History { .. }))
        .expect("a HISTORY");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::History { before: 8, max: 2 },
        "before the oldest shown"
    );
    let mut body = [0u8; MAX_BODY];
    let mut w = EventsWriter::history_page(&mut body, 8).unwrap();
    w.set_more(true);
    for (n, text) in [(6, "six"), (7, "seven")] {
        w.push(&Event::Said(line_with(
            n,
            "carol",
            text,
            LineFlags::HISTORY,
        )))
        .unwrap();
    }
    let n = w.finish().unwrap();
    srv.send_body(from, &body[..n]);
    for want in ["carol: six", "carol: seven"] {
        let got = c.out.wait_for("carol:", WAIT).expect(want);
        assert!(got.ends_with(want) && got.starts_with('['), "{got}");
    }
    c.send("/history");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::History { .. }))
        .expect("the next page");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::History { before: 6, max: 20 }
    );
    let mut body = [0u8; MAX_BODY];
    let w = EventsWriter::history_page(&mut body, 6).unwrap();
    let n = w.finish().unwrap();
    srv.send_body(from, &body[..n]);
    c.out
        .wait_for("-- no earlier messages", WAIT)
        .expect("the start");
    end(&srv, c);
}

#[test]
fn a_resume_catches_up_once_and_sends_what_was_typed_meanwhile() {
    let (srv, mut c, from) = repairing("alice", &[]);
    srv.said(from, 1, "bob", "before");
    c.out.wait_for("bob: before", WAIT).expect("before");
    // The server forgets the session; the client types while reconnecting.
    srv.forget(from);
    c.send("typed while away");
    let (d, again) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Resume { .. }))
        .expect("a RESUME");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Resume {
            ticket: b"ticket-1",
            epoch: 1,
            last_room_seq: 1,
            lowest_unacked: 1,
        }
    );
    c.out.wait_for("-- reconnecting", WAIT).expect("said so");
    srv.welcome_as(again, "alice", 30_000, true, 3);
    let catch_up = LineFlags::CATCH_UP;
    srv.events(
        again,
        1,
        &[
            // Already shown before the loss: not shown again.
            Event::Said(line_with(1, "bob", "before", catch_up)),
            Event::Said(line_with(2, "bob", "while away", catch_up)),
            Event::Said(line_with(3, "bob", "also away", catch_up)),
        ],
    );
    srv.expect_say("the line typed meanwhile", 1, "typed while away");
    srv.send(again, &ServerMsg::Ack { seq: 1 });
    c.out.wait_for("-- back in the room", WAIT).expect("back");
    let header = c.out.wait_for("while you were away", WAIT).expect("header");
    assert!(
        header.ends_with("-- 2 messages while you were away"),
        "{header}"
    );
    let a = c.out.wait_for("bob: ", WAIT).expect("the catch-up");
    assert!(a.ends_with("] bob: while away"), "{a}");
    let b = c.out.wait_for("bob: ", WAIT).expect("the catch-up");
    assert!(b.ends_with("] bob: also away"), "{b}");
    end(&srv, c);
}

#[test]
fn beyond_100_lines_while_reconnecting_are_not_sent_and_a_pipe_gives_up() {
    let (srv, mut c, from) = repairing("alice", &["--reconnect-timeout", "2"]);
    srv.forget(from);
    c.send("one line to find out");
    // The RESET starts the reconnect; nobody answers after that.
    srv.recv_where(WAIT, |m| matches!(m, ClientMsg::Resume { .. }))
        .expect("a RESUME");
    // 100 lines are kept (the one in flight among them); the 101st is not.
    for i in 0..100 {
        c.send(&format!("held {i}"));
    }
    let not_sent = c
        .out
        .wait_for("not sent", WAIT)
        .unwrap_or_else(|| panic!("the 101st line: {:?} {:?}", c.out.seen, c.err.rest(WAIT)));
    assert!(
        not_sent.ends_with("-- not sent (reconnecting): held 99"),
        "{not_sent}"
    );
    assert_eq!(c.wait_clean(Duration::from_secs(20)).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        [
            format!(
                "chat-client: lost contact with the server at {}",
                srv.addr_text()
            ),
            "chat-client: 100 lines were not delivered".to_string(),
        ]
    );
}

// ---- against the real chat-server ----

#[test]
fn stopped_longer_than_the_member_timeout_it_catches_up_once_in_order() {
    let srv = Server::start(&["--member-timeout", "1"]);
    let mut alice = member(&srv.addr, "alice");
    let mut bob = member(&srv.addr, "bob");
    bob.send("before");
    saw(&mut alice, "bob: before");
    // Ctrl-Z of a pipe client: the whole group stops, longer than the timeout.
    alice.signal_group(Signal::SIGSTOP);
    saw(&mut bob, "* alice left");
    for line in ["away one", "away two", "away three"] {
        bob.send(line);
    }
    // The server has the three lines once it answers a WHO sent after them.
    bob.send("/who");
    saw(&mut bob, "in the room:");
    alice.signal_group(Signal::SIGCONT);
    saw(&mut alice, "-- back in the room");
    let header = saw(&mut alice, "while you were away");
    assert!(
        header.ends_with("-- 3 messages while you were away"),
        "{header}"
    );
    for want in ["bob: away one", "bob: away two", "bob: away three"] {
        let got = saw(&mut alice, "bob: ");
        assert!(
            got.ends_with(want) && got.starts_with('['),
            "{got} for {want}"
        );
    }
    bob.send("live again");
    let live = saw(&mut alice, "bob: ");
    assert!(live.ends_with("bob: live again"), "{live}");
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    let shown = alice.out.rest(WAIT);
    assert_eq!(
        shown.iter().filter(|l| l.contains("bob: before")).count(),
        1,
        "shown once: {shown:?}"
    );
}

#[test]
fn a_restarted_server_is_come_back_to_without_a_word_typed() {
    let srv = Server::start(&["--member-timeout", "2"]);
    let addr = srv.addr.clone();
    let mut alice = member(&addr, "alice");
    let mut bob = member(&addr, "bob");
    bob.send("said before");
    saw(&mut alice, "bob: said before");
    // SIGTERM: "restarting"; the same key and database come back.
    let _srv = srv.restart_after(Signal::SIGTERM, &["--member-timeout", "2"]);
    saw(&mut alice, "-- reconnecting");
    saw(&mut alice, "-- back in the room");
    saw(&mut bob, "-- back in the room");
    bob.send("after the restart");
    let got = saw(&mut alice, "bob: ");
    assert!(got.ends_with("bob: after the restart"), "{got}");
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    let shown = alice.out.rest(WAIT);
    assert_eq!(
        shown.iter().filter(|l| l.contains("said before")).count(),
        1,
        "shown once: {shown:?}"
    );
}

#[test]
fn a_newcomer_sees_the_history_marked_and_pages_back() {
    let srv = Server::start(&["--history-on-join", "2"]);
    let mut bob = member(&srv.addr, "bob");
    let mut watcher = member(&srv.addr, "watcher");
    for i in 1..=5 {
        bob.send(&format!("line {i}"));
    }
    for i in 1..=5 {
        saw(&mut watcher, &format!("bob: line {i}"));
    }
    let mut carol = member(&srv.addr, "carol");
    for i in 4..=5 {
        let got = saw(&mut carol, "bob: line");
        assert!(
            got.starts_with('[') && got.ends_with(&format!("] bob: line {i}")),
            "{got}"
        );
    }
    carol.send("/history 2");
    for i in 2..=3 {
        let got = saw(&mut carol, "bob: line");
        assert!(got.ends_with(&format!("] bob: line {i}")), "{got}");
    }
    carol.send("/history");
    let got = saw(&mut carol, "bob: line");
    assert!(got.ends_with("] bob: line 1"), "{got}");
    carol.send("/history");
    saw(&mut carol, "-- no earlier messages");
    carol.close_stdin();
    assert_eq!(carol.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn a_name_taken_while_reconnecting_ends_a_piped_client() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    srv.forget(from);
    c.send("hello?");
    let (_, again) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Join { .. }))
        .expect("a JOIN again");
    srv.send(
        again,
        &ServerMsg::Refused(udpchat::protocol::sealed::Refusal::Taken { like: "alice" }),
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        [
            "chat-client: cannot join as 'alice' again: name taken",
            "chat-client: 1 line was not delivered",
        ]
    );
}

#[test]
fn a_server_back_with_another_key_is_refused() {
    let srv = FakeServer::new();
    let addr = srv.addr_text();
    let mut c = Client::spawn(&addr, "alice", &[]);
    // A short member timeout: the loss is found within a second or two.
    srv.accept(1500);
    drop(srv);
    let other = FakeServer::with_key_on([9; 32], &addr);
    let deadline = std::time::Instant::now() + WAIT;
    let ended = loop {
        if let Some(status) = c.wait(Duration::from_millis(10)) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the client never ended"
        );
        assert!(other.recv(Duration::from_millis(100)).is_none(), "no body");
    };
    assert_eq!(ended.code(), Some(1));
    let err = c.err_rest();
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(&format!(
            "chat-client: cannot trust '{addr}': its key is SHA256:"
        )),
        "{err:?}"
    );
    assert!(err[0].contains("remove line 1 from"), "{err:?}");
}

#[test]
fn icmp_after_the_welcome_is_only_counted() {
    let srv = FakeServer::new();
    let addr = srv.addr_text();
    let mut c = Client::spawn(&addr, "alice", &["--reconnect-timeout", "1.5"]);
    // Keepalives every 200 ms; then nothing listens there any more, and each
    // datagram draws an ICMP "port unreachable".
    srv.accept(600);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    drop(srv);
    c.out
        .wait_for("-- reconnecting", WAIT)
        .expect("a reconnect, not the end");
    // The end comes 1.5 s after the loss was found; 20 s is more than 5 times.
    assert_eq!(c.wait_clean(Duration::from_secs(20)).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        [format!(
            "chat-client: lost contact with the server at {addr}"
        )]
    );
}
