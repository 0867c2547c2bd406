//! Against the real chat-server: a whole conversation, restarts, repair and pastes.

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Duration;

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
