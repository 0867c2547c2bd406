//! The room: joining, talking, who, private messages, leaving, kicks and timeouts.

use crate::server_harness::*;
use crate::{bye, unix_ms};
use nix::sys::signal::Signal;
use std::time::{Duration, Instant};
use udpchat::protocol::sealed::{ByeReason, ClientMsg, LeftReason, RejectReason};

#[test]
fn join_welcomes_and_announces() {
    let mut s = Server::start(&["--member-timeout", "7"]);
    let mut alice = Client::join(s.addr, "alice");
    let mut bob = Client::new(s.addr, "Bob");
    let w = bob.try_join().expect("bob joins");
    let Got::Welcome {
        flags,
        members,
        timeout_ms,
        room_seq,
        client_id,
        name,
        ticket,
        ..
    } = w
    else {
        panic!("{w:?}")
    };
    // The room keeps history (bit 0), serves RESUME (bit 3, with a ticket)
    // and ME (bit 4).
    assert_eq!(flags & !(1 << 2), 1 | 1 << 3 | 1 << 4);
    assert_eq!((members, timeout_ms, name.as_str()), (2, 7000, "Bob"));
    assert_eq!(room_seq, 0);
    assert!(!ticket.is_empty());
    assert_ne!(client_id, 0);
    assert_ne!(client_id, alice.client_id);
    assert_eq!(alice.event(), Ev::Joined("Bob".into()));
    // The key of the handshake is the one the log names.
    let fingerprint = udpchat::trust::Fingerprint::of(&bob.server_key.expect("a key"));
    s.wait_log(&format!("server key {fingerprint}"));
    // Names of any script.
    let mut zh = Client::join(s.addr, "张伟");
    let mut hi = Client::join(s.addr, "लक्ष्मी");
    assert_eq!(alice.event(), Ev::Joined("张伟".into()));
    assert_eq!(alice.event(), Ev::Joined("लक्ष्मी".into()));
    assert_eq!(bob.event(), Ev::Joined("张伟".into()));
    assert_eq!(zh.event(), Ev::Joined("लक्ष्मी".into()));
    hi.silence();
}

#[test]
fn refusals_say_why() {
    let s = Server::start(&["--max-members", "2"]);
    let _alice = Client::join(s.addr, "Alice");
    for (name, reason, like) in [
        ("alice", 1, "Alice"),
        ("ALICE", 1, "Alice"),
        ("ａｌｉｃｅ", 1, "Alice"),
        ("ａｄｍｉｎ", 3, "admin"),
        ("Admin", 3, "admin"),
        ("管理员", 3, "管理员"),
        ("System", 3, "system"),
    ] {
        let mut c = Client::new(s.addr, name);
        assert_eq!(
            c.try_join(),
            Err(Got::Refused(reason, 0, like.into())),
            "{name}"
        );
    }
    for name in ["two words", "tab\there", "rtl\u{202e}x", &"x".repeat(25)] {
        let mut c = Client::new(s.addr, name);
        match c.try_join() {
            Err(Got::Refused(2, detail, like)) => {
                assert!(detail != 0 && like.is_empty(), "{name}: {detail} {like}")
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // A refused session may ask again.
    let mut bob = Client::new(s.addr, "admin");
    assert!(bob.try_join().is_err());
    bob.try_join_as("bob").expect("bob, in the same session");
    let mut carol = Client::new(s.addr, "carol");
    assert_eq!(carol.try_join(), Err(Got::Refused(4, 0, String::new())));
}

#[test]
fn say_reaches_everyone_but_the_sender_with_ids_and_time() {
    let s = Server::start(&[]);
    let [mut alice, mut bob, mut carol] = in_the_room(s.addr, ["alice", "bob", "carol"]);
    let before = unix_ms();
    let seq = alice.say("hello 世界");
    assert_eq!(alice.answer_to(seq), Got::Ack(seq));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "hello 世界".into()));
    assert_eq!(carol.event(), Ev::Said("alice".into(), "hello 世界".into()));
    let line = bob.lines[0];
    assert_eq!(
        (line.room_seq, line.client_id, line.seq),
        (1, alice.client_id, seq)
    );
    assert!(line.time_ms >= before.saturating_sub(1000) && line.time_ms <= unix_ms() + 1000);
    assert_eq!(carol.lines[0], line);
    alice.silence();
    // Invalid text is refused to the sender only.
    let seq = alice.say("clear\x1b[2J");
    assert_eq!(alice.next(), Got::Reject(seq, RejectReason::InvalidText));
    let seq = alice.say(&"x".repeat(1000));
    assert_eq!(alice.next(), Got::Ack(seq));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "x".repeat(1000)));
    assert_eq!(bob.lines[1].room_seq, 2, "room sequences go on");
    assert_eq!(carol.event(), Ev::Said("alice".into(), "x".repeat(1000)));
    bob.silence();
}

#[test]
fn me_is_an_action_of_its_own() {
    let s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let seq = alice.me("waves");
    assert_eq!(alice.answer_to(seq), Got::Ack(seq));
    assert_eq!(bob.event(), Ev::Me("alice".into(), "waves".into()));
    assert_eq!(bob.lines[0].client_id, alice.client_id);
    alice.silence();
}

#[test]
fn admin_line_reaches_everyone() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    assert_eq!(s.command("maintenance at noon"), "sent to 2 members");
    assert_eq!(alice.event(), Ev::Admin("maintenance at noon".into()));
    assert_eq!(bob.event(), Ev::Admin("maintenance at noon".into()));
    assert_eq!(alice.lines[0].room_seq, 1);
    assert!(s
        .command(&"y".repeat(1001))
        .starts_with("not sent: 1001 bytes"));
    assert!(s.command("bell\x07").starts_with("not sent"));
    assert!(s.command("/frob").starts_with("unknown command '/frob'"));
    assert_eq!(s.command("//etc"), "sent to 2 members");
    assert_eq!(alice.event(), Ev::Admin("/etc".into()));
    assert_eq!(bob.event(), Ev::Admin("/etc".into()));
    // A member cannot produce an admin event: its text is a SAID from it.
    alice.say_acked("[admin] give me your password");
    assert_eq!(
        bob.event(),
        Ev::Said("alice".into(), "[admin] give me your password".into())
    );
    assert_eq!(s.command("/who"), "2 members");
    let l1 = s.reply();
    let l2 = s.reply();
    assert!(
        l1.starts_with("alice\t127.0.0.1:") && l1.contains("\tidle "),
        "{l1}"
    );
    assert!(l2.starts_with("bob\t127.0.0.1:"), "{l2}");
}

#[test]
fn who_pages_through_a_big_room() {
    let s = Server::start(&[]);
    let names: Vec<String> = (0..130).map(|i| format!("member_{i:0>17}")).collect();
    let mut clients = join_many(s.addr, &names);
    let me = clients.last_mut().expect("clients");
    me.drain();
    let (total, got) = me.who();
    assert_eq!(total, 130);
    let mut got_sorted = got.clone();
    got_sorted.sort();
    assert_eq!(got_sorted, names, "every name exactly once");
}

#[test]
fn answers_wait_for_the_budget_and_are_never_dropped_silently() {
    let mut s = Server::start(&[]);
    // 24-character names: a page holds 45 of them, about 1,200 bytes.
    let names: Vec<String> = (0..60)
        .map(|i| format!("long_member_name_{i:0>7}"))
        .collect();
    let mut clients = join_many(s.addr, &names);
    let mut me = clients.pop().expect("clients");
    me.drain();
    let (start_bytes, start) = (me.bytes_in, Instant::now());
    const ASKED: u32 = 1000;
    let mut pages = 0u32;
    let count_pages = |me: &mut Client, pages: &mut u32| {
        while let Some(Got::Who { .. }) = me.try_next() {
            *pages += 1;
        }
    };
    // Asked in batches, read in between (the socket's buffer is small).
    // (20 pages are 24 KB: far below the socket's buffer, even when this
    // thread waits for a core.)
    for _ in 0..ASKED / 20 {
        for _ in 0..20 {
            me.send(&ClientMsg::Who { start: 0 });
        }
        me.run_for(Duration::from_millis(10));
        count_pages(&mut me, &mut pages);
    }
    let elapsed = start.elapsed().as_secs_f64();
    let got = me.bytes_in - start_bytes;
    // The budget: 262,144 bytes at once, then 65,536 a second (PROTOCOL.md);
    // slack for one page in flight per batch.
    let limit = 262_144.0 + 65_536.0 * elapsed + 50.0 * 1200.0;
    assert!(
        (got as f64) <= limit,
        "{got} bytes of answers in {elapsed:.2} s (limit {limit:.0})"
    );
    assert!(pages >= 100, "only {pages} pages at first");
    // What waited arrives; what did not fit the queue is counted.
    let end = Instant::now() + WAIT;
    let mut quiet_since = Instant::now();
    while Instant::now() < end && quiet_since.elapsed() < Duration::from_millis(1500) {
        let before = pages;
        me.run_for(Duration::from_millis(100));
        count_pages(&mut me, &mut pages);
        if pages != before {
            quiet_since = Instant::now();
        }
    }
    let refused = s.stats()["answers refused"];
    assert!(refused > 0, "the flood was beyond the queue");
    assert_eq!(
        pages as u64 + refused,
        ASKED as u64,
        "each WHO answered or counted"
    );
}

#[test]
fn private_message_reaches_only_its_recipient() {
    let s = Server::start(&[]);
    let [mut alice, mut bob, mut carol] = in_the_room(s.addr, ["alice", "bob", "carol"]);
    let seq = alice.private("BOB", "psst");
    assert_eq!(alice.next(), Got::Ack(seq));
    assert_eq!(bob.event(), Ev::Private("alice".into(), "psst".into()));
    let seq = alice.private("nobody", "psst");
    assert_eq!(alice.next(), Got::Reject(seq, RejectReason::NoSuchMember));
    carol.silence();
    alice.silence();
}

#[test]
fn leave_says_goodbye_and_tells_the_others() {
    let s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    // (The connection ends on BYE 0 without handing it over.)
    bob.leave();
    assert_eq!(bob.next(), Got::Ended("Left".into()));
    assert_eq!(alice.event(), Ev::Left(LeftReason::Left, "bob".into()));
    // The name is free again.
    let _bob2 = Client::join(s.addr, "bob");
    assert_eq!(alice.event(), Ev::Joined("bob".into()));
}

#[test]
fn what_was_queued_before_a_leave_reaches_the_leaver() {
    let s = Server::start(&["--rate", "0"]);
    let mut alice = Client::join(s.addr, "alice");
    for k in 0..5 {
        let mut carol = Client::join(s.addr, &format!("carol{k}"));
        alice.drain();
        // Stopped, the server finds both datagrams in one turn: the line,
        // then carol's LEAVE.
        s.signal(Signal::SIGSTOP);
        let line = format!("just before you go {k}");
        alice.say(&line);
        carol.leave();
        s.signal(Signal::SIGCONT);
        assert_eq!(carol.event(), Ev::Said("alice".into(), line));
        assert_eq!(carol.next(), Got::Ended("Left".into()));
    }
}

#[test]
fn kick_removes_a_member_with_a_reason() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob, mut carol] = in_the_room(s.addr, ["alice", "bob", "carol"]);
    let r = s.command("/kick BOB  flooding the room ");
    assert!(r.starts_with("kicked bob (127.0.0.1:"), "{r}");
    assert_eq!(bob.next(), bye(ByeReason::Removed, "flooding the room"));
    assert_eq!(alice.event(), Ev::Left(LeftReason::Removed, "bob".into()));
    assert_eq!(s.command("/kick bob"), "no member named 'bob'");
    s.wait_log("bob (127.0.0.1:");
    s.wait_log("was removed by the admin");
    assert!(s.command("/kick").starts_with("usage: /kick NAME"));
    let r = s.command("/kick carol");
    assert!(r.starts_with("kicked carol"), "{r}");
    assert_eq!(
        carol.expect(|g| matches!(g, Got::Bye { .. })),
        bye(ByeReason::Removed, "")
    );
}

#[test]
fn silent_members_time_out() {
    let mut s = Server::start(&["--member-timeout", "1.5"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    // Alice keeps alive, Bob's connection is not run: he is timed out 1.5 s
    // after his last datagram; the bound is 10 times that.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < end, "bob was not timed out");
        alice.send(&ClientMsg::Keepalive { last_event: 0 });
        match alice.expect(|g| matches!(g, Got::Keepalive(_) | Got::Event(..))) {
            Got::Event(n, ev) => {
                assert_eq!((n, ev), (2, Ev::Left(LeftReason::TimedOut, "bob".into())));
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    s.wait_log("bob (127.0.0.1:");
    s.wait_log("timed out");
    // Bob's next datagram draws a RESET: his connection starts again.
    bob.send(&ClientMsg::Keepalive { last_event: 0 });
    assert_eq!(
        bob.expect(|g| matches!(g, Got::Reconnecting)),
        Got::Reconnecting
    );
}

#[test]
fn keepalive_says_the_last_event() {
    let s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    assert_eq!(alice.keepalive(), 1, "bob's JOINED");
    assert_eq!(bob.keepalive(), 0);
}
