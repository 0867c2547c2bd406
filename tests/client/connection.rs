//! The connection against a scripted server: lost events, lost contact,
//! retransmissions, a reset session, kicks and closing.

use crate::common::*;
use std::time::Duration;
use udpchat::protocol::sealed::{decode_client, ByeReason, ClientMsg, RejectReason, ServerMsg};

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
