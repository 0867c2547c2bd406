//! chat-client through pipes: the real binary against a scripted peer (for
//! what a correct server never does: escapes in text, lost events, a forged
//! reply) and against the real chat-server.

#[path = "common/client.rs"]
mod common;

use common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use udpchat::protocol::{self, ByeReason, ClientMsg, Event, RefuseReason, ServerMsg};

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

#[test]
fn refusal_through_a_pipe_is_fatal() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "bob", &[]);
    let (d, from) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Join { .. }))
        .unwrap();
    let ClientMsg::Join { nonce, .. } = protocol::decode_client(&d).unwrap() else {
        unreachable!()
    };
    // A refusal for another attempt is ignored; ours is fatal.
    srv.send(
        from,
        &ServerMsg::Refused {
            nonce: nonce ^ 1,
            reason: RefuseReason::Reserved,
        },
    );
    srv.send(
        from,
        &ServerMsg::Refused {
            nonce,
            reason: RefuseReason::Taken,
        },
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err.rest(WAIT),
        ["chat-client: cannot join as 'bob': name taken"]
    );
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
        ("ＡＤＭＩＮ", "name reserved"),
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
        "no JOIN sent"
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
    let (from, prev) = srv.accept(11, 30_000);
    assert_eq!(prev, 0);
    c.out.wait_for("welcome, carol", WAIT).expect("welcome");
    srv.expect_say("the line after the name is said", 11, 1, "first words");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.close_stdin();
    srv.answer_leave(from, "LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    assert!(c.err.rest(WAIT).is_empty());
}

#[test]
fn remote_text_arrives_escaped() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let (from, _) = srv.accept(5, 30_000);
    c.find_helper();
    srv.events(
        from,
        1,
        &[
            Event::Said {
                from: "mallory",
                text: "\x1b[2J\x1b]0;pwned\x07\rX\u{202e}abc\u{9b}",
            },
            Event::Joined {
                name: "e\x1b[31mvil",
            },
            Event::Admin {
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
    srv.answer_leave(from, "LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn lost_events_are_counted_from_gaps_and_pongs() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    // A short timeout: PING every 300 ms.
    let (from, _) = srv.accept(5, 900);
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
    // Events 6..=8 never arrive; the PONG says 8 were sent.
    srv.recv_where(WAIT, |m| matches!(m, ClientMsg::Ping { token: 5 }))
        .expect("a PING");
    srv.send(from, &ServerMsg::Pong { last_seq: 8 });
    let lost = c.out.wait_for("lost", WAIT).expect("a tail-loss notice");
    assert!(lost.ends_with(" (3 messages lost)"), "{lost:?}");
    assert!(!c.out.seen.iter().any(|l| l.contains("again")));
    c.close_stdin();
    srv.answer_leave(from, "LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn silence_for_the_timeout_is_lost_contact() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(5, 600);
    c.find_helper();
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(
        err,
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
    let (from, _) = srv.accept(5, 30_000);
    c.send("hello");
    let is_say = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Say { .. });
    let (first, _) = srv.recv_where(WAIT, is_say).unwrap();
    let (again, _) = srv.recv_where(WAIT, is_say).expect("a retransmission");
    assert_eq!(first, again, "same token, same number, same text");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.send("/msg nobody psst");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Private { .. }))
        .unwrap();
    assert_eq!(
        protocol::decode_client(&d).unwrap(),
        ClientMsg::Private {
            token: 5,
            seq: 2,
            to: "nobody",
            text: "psst"
        }
    );
    srv.send(
        from,
        &ServerMsg::Reject {
            seq: 2,
            reason: protocol::RejectReason::NoSuchMember,
        },
    );
    let line = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        line.ends_with("-- not delivered (no such member): /msg nobody psst"),
        "{line}"
    );
    // Never acknowledged: given up after the last retry.
    c.send("into the void");
    let line = c
        .out
        .wait_for("not delivered", Duration::from_secs(15))
        .unwrap();
    assert!(
        line.ends_with("-- not delivered (no answer from the server): into the void"),
        "{line}"
    );
    c.send("/frobnicate");
    assert!(c
        .out
        .wait_for("unknown command /frobnicate", WAIT)
        .is_some());
    c.send("/quit");
    srv.answer_leave(from, "LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn unknown_session_for_our_token_rejoins_with_the_previous_token() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let (from, _) = srv.accept(5, 30_000);
    c.find_helper();
    // A forged reply (another token) changes nothing.
    srv.send(from, &ServerMsg::UnknownSession { token: 6 });
    srv.send(from, &ServerMsg::UnknownSession { token: 5 });
    let (_, prev) = srv.accept(77, 30_000);
    assert_eq!(prev, 5, "the re-join names the old session");
    c.out.wait_for("joined again", WAIT).expect("said so");
    c.send("after");
    srv.expect_say("the SAY", 77, 1, "after");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    // Event numbers restart at 1 in the new session.
    srv.said(from, 1, "bob", "new");
    c.out.wait_for("bob: new", WAIT).unwrap();
    c.close_stdin();
    let d = srv.answer_leave(from, "LEAVE");
    assert_eq!(
        protocol::decode_client(&d).unwrap(),
        ClientMsg::Leave { token: 77 }
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    assert!(!c.out.seen.iter().any(|l| l.contains("lost")));
}

#[test]
fn kicked_ends_with_the_reason() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let (from, _) = srv.accept(5, 30_000);
    c.find_helper();
    srv.send(
        from,
        &ServerMsg::Bye {
            reason: ByeReason::Kicked,
        },
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err.rest(WAIT),
        ["chat-client: you were removed by the admin"]
    );
    assert!(
        srv.recv_where(Duration::from_millis(300), is_leave)
            .is_none(),
        "no LEAVE after BYE"
    );
}

/// A joined client and its peer, with the client's second process found.
fn joined(srv: &FakeServer, name: &str) -> (Client, std::net::SocketAddr) {
    let mut c = Client::spawn(&srv.addr_text(), name, &[]);
    let (from, _) = srv.accept(5, 30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    c.find_helper();
    (c, from)
}

/// Exactly one LEAVE reaches the peer (it answers with BYE) and no more follow.
fn one_leave(srv: &FakeServer, from: std::net::SocketAddr) {
    let d = srv.answer_leave(from, "LEAVE");
    assert_eq!(
        protocol::decode_client(&d).unwrap(),
        ClientMsg::Leave { token: 5 }
    );
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
fn sigkill_of_the_receiver_the_parent_leaves() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGKILL).unwrap();
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(
        err,
        ["chat-client: the receiver process was killed by SIGKILL; leaving"]
    );
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
        let (from, _) = srv.accept(5, 30_000);
        c.out
            .wait_for("欢迎 张伟", WAIT)
            .expect("welcome in Chinese");
        srv.events(
            from,
            1,
            &[
                Event::Joined { name: "alice" },
                Event::Said {
                    from: "alice",
                    text: "你好",
                },
                Event::Admin { text: "维护" },
                Event::Left {
                    reason: protocol::LeftReason::Left,
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
        srv.answer_leave(from, "LEAVE");
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
    let (from, _) = srv.accept(5, 30_000);
    srv.answer_leave(from, "LEAVE on end of input");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));

    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "bob"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: the closure runs in the child between fork and exec and makes one
    // async-signal-safe call, close(0), on the child's own stdin, which no Rust
    // object owns there.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::close(0);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let (from, _) = srv.accept(6, 30_000);
    srv.answer_leave(from, "LEAVE: fd 0 was /dev/null");
    let status = wait_child(&mut child, WAIT).expect("did not exit");
    assert_eq!(status.code(), Some(0));
}

// ---- against the real chat-server ----

/// Starts a client and waits until it is in the room.
fn member(server: &str, name: &str) -> Client {
    let mut c = Client::spawn(server, name, &[]);
    c.out
        .wait_for(&format!("welcome, {name}"), WAIT)
        .unwrap_or_else(|| panic!("{name} did not join: {:?}", c.err.rest(WAIT)));
    c.find_helper();
    c
}

fn saw(c: &mut Client, pat: &str) -> String {
    c.out
        .wait_for(pat, WAIT)
        .unwrap_or_else(|| panic!("never saw {pat:?}; saw {:?}", c.out.seen))
}

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
        carol.err.rest(WAIT),
        ["chat-client: you were removed by the admin"]
    );
    saw(&mut alice, "* carol was removed");

    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    assert!(alice.err.rest(WAIT).is_empty());
}

#[test]
fn a_taken_name_through_a_pipe_is_fatal() {
    let srv = Server::start(&[]);
    let _alice = member(&srv.addr, "alice");
    let mut again = Client::spawn(&srv.addr, "ALICE", &[]);
    assert_eq!(again.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        again.err.rest(WAIT),
        ["chat-client: cannot join as 'ALICE': name taken"]
    );
}

#[test]
fn killed_clients_still_leave_with_the_real_server() {
    let srv = Server::start(&[]);
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
    // The receiver killed: the parent leaves.
    let mut b = member(&srv.addr, "b1");
    saw(&mut watcher, "* b1 joined");
    let h = b.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGKILL).unwrap();
    assert_eq!(b.wait_clean(WAIT).code(), Some(1));
    assert!(saw(&mut watcher, "* b1 left").ends_with("* b1 left"));
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
fn server_shutdown_and_lost_contact() {
    let srv = Server::start(&[]);
    let mut a = member(&srv.addr, "alice");
    srv.signal(Signal::SIGTERM);
    assert_eq!(a.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        a.err.rest(WAIT),
        ["chat-client: the chat server is shutting down"]
    );

    let srv = Server::start(&["--member-timeout", "1"]);
    let mut a = member(&srv.addr, "alice");
    srv.signal(Signal::SIGSTOP);
    assert_eq!(a.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        a.err.rest(WAIT),
        [format!(
            "chat-client: lost contact with the server at {}",
            srv.addr
        )]
    );
}

#[test]
fn the_server_restarts_on_the_same_port_and_the_client_rejoins() {
    let mut srv = Server::start(&[]);
    let addr = srv.addr.clone();
    let mut alice = member(&addr, "alice");
    srv.kill();
    let _srv = Server::start_on(&addr, &[]);
    let mut bob = member(&addr, "bob");
    alice.send("still here");
    saw(&mut alice, "joined again");
    assert!(saw(&mut bob, "alice: still here").ends_with(" alice: still here"));
    bob.send("welcome back");
    saw(&mut alice, "bob: welcome back");
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    saw(&mut bob, "* alice left");
}

#[test]
fn events_dropped_on_the_way_are_reported_lost() {
    // One event per datagram, so a dropped datagram is one lost event.
    let srv = Server::start(&["--no-packing", "--member-timeout", "1.5"]);
    let drop_marked = |d: &[u8]| match protocol::decode_server(d) {
        Ok(ServerMsg::Events { events, .. }) => events
            .iter()
            .any(|e| matches!(e, Event::Said { text, .. } if text.starts_with("drop"))),
        _ => false,
    };
    let relay = Relay::start(&srv.addr, drop_marked);
    let mut alice = member(&relay.addr, "alice");
    let mut bob = member(&srv.addr, "bob");
    for line in ["one", "drop two", "drop three", "four", "drop five"] {
        bob.send(line);
    }
    saw(&mut alice, "bob: one");
    assert!(saw(&mut alice, "lost").ends_with(" (2 messages lost)"));
    saw(&mut alice, "bob: four");
    // "drop five" is lost at the end: the next PONG (every 0.5 s) tells.
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
