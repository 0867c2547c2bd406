//! The real chat-server over loopback: every behaviour and every attack of
//! issue 3, asserted with exact messages. Helpers: tests/common/server.rs.

#[path = "common/server.rs"]
mod server_harness;

use nix::sys::signal::Signal;
use server_harness::*;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use udpchat::protocol::{ByeReason, ClientMsg, LeftReason, RefuseReason, RejectReason, JOIN_SIZE};

fn join_msg(nonce: u64, cookie: [u8; 16], name: &str) -> Vec<u8> {
    ClientMsg::Join {
        nonce,
        prev_token: 0,
        cookie,
        name,
    }
    .to_vec()
}

/// Joins `names` in order; each member then reads the JOINED events of those
/// who came after it.
fn in_the_room<const N: usize>(server: SocketAddr, names: [&str; N]) -> [Client; N] {
    let mut members = names.map(|name| Client::join(server, name));
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i + 1..N {
            m.event();
        }
    }
    members
}

#[test]
fn join_welcomes_and_announces() {
    let s = Server::start(&["--member-timeout", "7"]);
    let mut alice = Client::join(s.addr, "alice");
    let mut bob = Client::new(s.addr, "bob");
    let w = bob.try_join(0).expect("bob joins");
    let Got::Welcome {
        members,
        timeout_ms,
        name,
        token,
        ..
    } = w
    else {
        panic!("{w:?}")
    };
    assert_eq!((members, timeout_ms, name.as_str()), (2, 7000, "bob"));
    assert_ne!(token, 0);
    assert_ne!(token, alice.token);
    assert_eq!(alice.event(), Ev::Joined("bob".into()));
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
    for (name, reason) in [
        ("alice", RefuseReason::Taken),
        ("ALICE", RefuseReason::Taken),
        ("ａｌｉｃｅ", RefuseReason::Taken),
        ("ａｄｍｉｎ", RefuseReason::Reserved),
        ("Admin", RefuseReason::Reserved),
        ("管理员", RefuseReason::Reserved),
        ("System", RefuseReason::Reserved),
        ("two words", RefuseReason::InvalidName),
        ("tab\there", RefuseReason::InvalidName),
        ("rtl\u{202e}x", RefuseReason::InvalidName),
        ("x".repeat(25).as_str(), RefuseReason::InvalidName),
    ] {
        let mut c = Client::new(s.addr, name);
        assert_eq!(c.try_join(0), Err(reason), "{name}");
    }
    let _bob = Client::join(s.addr, "bob");
    let mut carol = Client::new(s.addr, "carol");
    assert_eq!(carol.try_join(0), Err(RefuseReason::RoomFull));
}

#[test]
fn say_reaches_everyone_but_the_sender() {
    let s = Server::start(&[]);
    let [mut alice, mut bob, mut carol] = in_the_room(s.addr, ["alice", "bob", "carol"]);
    alice.say_acked("hello 世界");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "hello 世界".into()));
    assert_eq!(carol.event(), Ev::Said("alice".into(), "hello 世界".into()));
    alice.silence();
    // Invalid text is refused to the sender only.
    let seq = alice.say("clear\x1b[2J");
    assert_eq!(alice.next(), Got::Reject(seq, RejectReason::InvalidText));
    let seq = alice.say(&"x".repeat(1000));
    assert_eq!(alice.next(), Got::Ack(seq));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "x".repeat(1000)));
    assert_eq!(carol.event(), Ev::Said("alice".into(), "x".repeat(1000)));
    bob.silence();
}

#[test]
fn admin_line_reaches_everyone() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    assert_eq!(s.command("maintenance at noon"), "sent to 2 members");
    assert_eq!(alice.event(), Ev::Admin("maintenance at noon".into()));
    assert_eq!(bob.event(), Ev::Admin("maintenance at noon".into()));
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
    bob.leave();
    assert_eq!(bob.next(), Got::Bye(ByeReason::Left));
    assert_eq!(alice.event(), Ev::Left(LeftReason::Left, "bob".into()));
    // The token is dead; a repeated LEAVE learns it is out.
    bob.leave();
    assert_eq!(bob.next(), Got::Unknown(bob.token));
    // The name is free again.
    let _bob2 = Client::join(s.addr, "bob");
    assert_eq!(alice.event(), Ev::Joined("bob".into()));
}

#[test]
fn kick_removes_a_member() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let r = s.command("/kick BOB");
    assert!(r.starts_with("kicked bob (127.0.0.1:"), "{r}");
    assert_eq!(bob.next(), Got::Bye(ByeReason::Kicked));
    assert_eq!(alice.event(), Ev::Left(LeftReason::Removed, "bob".into()));
    assert_eq!(s.command("/kick bob"), "no member named 'bob'");
    s.wait_log("bob (127.0.0.1:");
    s.wait_log("was removed by the admin");
}

#[test]
fn silent_members_time_out() {
    // 1.5 s: alice's pings every 0.1 s keep her in even when a loaded machine
    // stalls the test for a second.
    let mut s = Server::start(&["--member-timeout", "1.5"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    // Alice keeps alive, Bob says nothing: he is timed out 1.5 s after his
    // last word; the bound is 10 times that.
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        assert!(Instant::now() < end, "bob was not timed out");
        alice.send(&ClientMsg::Ping { token: alice.token });
        match alice.expect(|g| matches!(g, Got::Pong(_) | Got::Event(..))) {
            Got::Event(n, ev) => {
                assert_eq!((n, ev), (2, Ev::Left(LeftReason::TimedOut, "bob".into())));
                break;
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    s.wait_log("bob (127.0.0.1:");
    s.wait_log("timed out");
    bob.send(&ClientMsg::Ping { token: bob.token });
    assert_eq!(bob.next(), Got::Unknown(bob.token));
}

#[test]
fn rejoin_with_the_previous_token() {
    let s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    bob.say_acked("one");
    alice.event();
    let old = bob.token;
    // Without the previous token the name is taken, even from the same address.
    assert_eq!(bob.try_join(0), Err(RefuseReason::Taken));
    // From another address, the token does not help.
    let mut thief = Client::new(s.addr, "bob");
    assert_eq!(thief.try_join(old), Err(RefuseReason::Taken));
    // From the same address with it, the session is replaced.
    bob.try_join(old).expect("re-join");
    assert_ne!(bob.token, old);
    alice.silence(); // no leave, no join
                     // New session: SAY numbers and event numbers start again.
    bob.say_acked("again");
    assert_eq!(alice.event(), Ev::Said("bob".into(), "again".into()));
    alice.say_acked("hi bob");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "hi bob".into()));
    assert_eq!(bob.next_event, 2);
    bob.send(&ClientMsg::Ping { token: old });
    assert_eq!(bob.next(), Got::Unknown(old));
}

#[test]
fn sigterm_tells_everyone_and_exits_zero() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    s.signal(Signal::SIGTERM);
    assert_eq!(alice.next(), Got::Bye(ByeReason::Shutdown));
    assert_eq!(bob.next(), Got::Bye(ByeReason::Shutdown));
    // It exits at once; 5 s is a bound for a loaded machine.
    let st = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(st.code(), Some(0));
    s.wait_log("shutting down: told 2 members");
}

#[test]
fn console_help_and_shutdown() {
    let mut s = Server::start(&[]);
    let [mut alice] = in_the_room(s.addr, ["alice"]);
    let mut help = vec![s.command("/help")];
    while !help.last().unwrap().starts_with("Ctrl-D") {
        help.push(s.reply());
    }
    for cmd in ["/who", "/kick NAME", "/stats", "/shutdown", "/help"] {
        assert!(help.iter().any(|l| l.starts_with(cmd)), "{cmd}: {help:#?}");
    }
    assert_eq!(s.command("/frob"), "unknown command '/frob': try /help");
    s.console("/shutdown");
    assert_eq!(alice.next(), Got::Bye(ByeReason::Shutdown));
    let st = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(st.code(), Some(0));
    s.wait_log("shutting down: told 1 members");
}

#[test]
fn sigint_exits_zero_too() {
    let mut s = Server::start(&[]);
    s.signal(Signal::SIGINT);
    assert_eq!(
        s.wait_exit(Duration::from_secs(5)).and_then(|st| st.code()),
        Some(0)
    );
}

#[test]
fn console_off_when_stdin_is_dev_null_closed_or_ends() {
    let mut cmd = Command::new(BIN);
    cmd.args(["--bind", "127.0.0.1:0"]);
    let mut s = Server::spawn(cmd, Stdio::null());
    s.wait_log("admin console off");
    let _a = Client::join(s.addr, "alice");

    // fd 0 closed at start: it is reopened on /dev/null, not taken by the socket
    // or the signalfd (either would also turn the console off, so look at fd 0).
    let mut cmd = Command::new("sh");
    cmd.args(["-c", "exec \"$0\" --bind 127.0.0.1:0 <&-", BIN]);
    let mut s = Server::spawn(cmd, Stdio::null());
    s.wait_log("admin console off");
    let fd0 = std::fs::read_link(format!("/proc/{}/fd/0", s.pid())).expect("fd 0 is open");
    assert_eq!(fd0, std::path::Path::new("/dev/null"));
    let _a = Client::join(s.addr, "alice");

    let mut s = Server::start(&[]);
    s.wait_log("admin console on");
    s.close_console();
    s.wait_log("admin console off (end of input)");
    let mut a = Client::join(s.addr, "alice");
    a.say_acked("still serving");
    assert_eq!(
        s.log
            .iter()
            .filter(|l| l.contains("admin console off"))
            .count(),
        1
    );
}

#[test]
fn a_port_in_use_is_an_error() {
    let s = Server::start(&[]);
    let out = Command::new(BIN)
        .args(["--bind", &s.addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run a second server");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "chat-server: cannot bind '{}': Address already in use\n",
            s.addr
        )
    );
}

#[test]
fn wildcard_bind_answers_from_the_address_asked() {
    let mut cmd = Command::new(BIN);
    cmd.args(["--bind", "0.0.0.0:0"]);
    let s = Server::spawn(cmd, Stdio::piped());
    assert!(s.log[0].starts_with("listening on 0.0.0.0:"));
    // Ask on 127.0.0.2 from 127.0.0.1: a socket connected to 127.0.0.2 only
    // sees the answers if they leave from 127.0.0.2.
    let to = SocketAddr::from(([127, 0, 0, 2], s.addr.port()));
    let sock = socket();
    sock.connect(to).expect("connect");
    let mut c = Client::on(sock, to, "alice");
    c.try_join(0).expect("joined over 127.0.0.2");
    c.say_acked("hi");
    // IPv6, where the host has it.
    if UdpSocket::bind("[::1]:0").is_ok() {
        let mut cmd = Command::new(BIN);
        cmd.args(["--bind", "[::]:0"]);
        let s6 = Server::spawn(cmd, Stdio::piped());
        let to = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, s6.addr.port()));
        let sock = UdpSocket::bind("[::1]:0").expect("bind ::1");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        sock.connect(to).expect("connect");
        let mut c = Client::on(sock, to, "bob");
        c.try_join(0).expect("joined over ::1");
        // IPv4 on the dual-stack socket.
        let to = SocketAddr::from(([127, 0, 0, 3], s6.addr.port()));
        let sock = socket();
        sock.connect(to).expect("connect");
        let mut d = Client::on(sock, to, "carol");
        d.try_join(0).expect("joined over 127.0.0.3 on [::]");
    }
}

// ---- attacks ----

#[test]
fn identity_cannot_be_forged() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    // Mallory cannot take a member's name, in any case, nor the admin's.
    for name in ["bob", "BOB", "admin", "管理员"] {
        assert!(Client::new(s.addr, name).try_join(0).is_err());
    }
    // Alice's token from Mallory's address: dropped, unanswered, counted.
    let mallory = Client::new(s.addr, "mallory");
    mallory.send(&ClientMsg::Say {
        token: alice.token,
        seq: 1,
        text: "I am alice",
    });
    mallory.send(&ClientMsg::Leave { token: bob.token });
    // A made-up token: "unknown session", with the token echoed, and nothing relayed.
    let mut m = Client::new(s.addr, "mallory");
    m.send(&ClientMsg::Say {
        token: 0xDEAD_BEEF,
        seq: 1,
        text: "hi",
    });
    assert_eq!(m.next(), Got::Unknown(0xDEAD_BEEF));
    m.silence();
    let mut mallory = mallory;
    mallory.silence();
    alice.silence();
    bob.silence();
    let st = s.stats();
    assert_eq!(st["forged"], 2);
    assert_eq!(st["unknown sessions"], 1);
    assert_eq!(st["members"], 2);
    // A member speaks only as itself.
    let mut mal = Client::join(s.addr, "mallory");
    alice.event();
    mal.say_acked("bob: I quit");
    assert_eq!(
        alice.event(),
        Ev::Said("mallory".into(), "bob: I quit".into())
    );
}

#[test]
fn a_join_needs_its_own_fresh_cookie() {
    let s = Server::start(&[]);
    let mut eve = Client::new(s.addr, "eve");
    // A made-up cookie: a fresh challenge, no welcome.
    eve.send_raw(&join_msg(1, [0x55; 16], "eve"));
    let Got::Challenge { nonce: 1, cookie } = eve.next() else {
        panic!("expected a challenge")
    };
    // Eve's cookie for another name, or from another address: challenged again.
    eve.send_raw(&join_msg(1, cookie, "eve2"));
    assert!(matches!(eve.next(), Got::Challenge { nonce: 1, .. }));
    let mut other = Client::new(s.addr, "eve");
    other.send_raw(&join_msg(2, cookie, "eve"));
    assert!(matches!(other.next(), Got::Challenge { nonce: 2, .. }));
    // The right one works.
    eve.send_raw(&join_msg(3, cookie, "eve"));
    let Got::Welcome {
        nonce: 3, token, ..
    } = eve.next()
    else {
        panic!("expected a welcome")
    };
    // The same JOIN again (its WELCOME was lost): the same WELCOME again.
    eve.send_raw(&join_msg(3, cookie, "eve"));
    assert!(matches!(eve.next(), Got::Welcome { nonce: 3, token: t, .. } if t == token));
    // (Stale cookies, from two windows back, are refused: room unit tests, which control time.)
}

#[test]
fn strangers_never_get_more_bytes_than_they_send() {
    let mut s = Server::start(&[]);
    let alice = Client::join(s.addr, "alice");
    let stranger = socket();
    let probes: Vec<Vec<u8>> = vec![
        join_msg(1, [0; 16], "stranger"),
        join_msg(2, [1; 16], "stranger"),
        join_msg(3, [0; 16], "alice"),
        join_msg(4, [0; 16], "bad name"),
        ClientMsg::Ping { token: 77 }.to_vec(),
        ClientMsg::Leave { token: 77 }.to_vec(),
        ClientMsg::Who {
            token: 77,
            start: 0,
        }
        .to_vec(),
        ClientMsg::Say {
            token: 77,
            seq: 1,
            text: "x",
        }
        .to_vec(),
        // Alice's token from another address: no answer at all.
        ClientMsg::Who {
            token: alice.token,
            start: 0,
        }
        .to_vec(),
    ];
    let mut buf = [0u8; 2048];
    for p in &probes {
        stranger.send_to(p, s.addr).expect("send");
        stranger
            .set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut replies = 0;
        while let Ok((n, _)) = stranger.recv_from(&mut buf) {
            assert!(n <= p.len(), "{n}-byte answer to {} bytes", p.len());
            replies += 1;
        }
        assert!(replies <= 1, "{replies} answers to one datagram");
    }
    assert_eq!(JOIN_SIZE, 256);
    // A flood of JOINs from one IP gets at most 40 answers at once.
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    let join = join_msg(9, [0; 16], "stranger");
    for _ in 0..200 {
        stranger.send_to(&join, s.addr).expect("send");
    }
    let mut answers = 0;
    while stranger.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!(answers <= 60, "{answers} answers to 200 JOINs");
    assert!(s.stats()["rate limited"] > 100);
}

#[test]
fn retransmissions_are_forwarded_once() {
    let s = Server::start(&["--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let say = |c: &Client, seq: u32, text: &str| {
        c.send(&ClientMsg::Say {
            token: c.token,
            seq,
            text,
        })
    };
    for (seq, text) in [
        (1, "one"),
        (2, "two"),
        (3, "three"),
        (2, "two"),
        (1, "one"),
        (5, "five"),
        (3, "three"),
        (4, "four"),
        (5, "five"),
    ] {
        say(&alice, seq, text);
        assert_eq!(alice.next(), Got::Ack(seq), "every copy is acknowledged");
    }
    for text in ["one", "two", "three", "five", "four"] {
        assert_eq!(bob.event(), Ev::Said("alice".into(), text.into()));
    }
    bob.silence();
}

#[test]
fn a_flood_is_rate_limited() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    for k in 0..30 {
        alice.say(&format!("spam {k}"));
    }
    let mut acked = Vec::new();
    for _ in 0..30 {
        match alice.expect(|g| matches!(g, Got::Ack(_) | Got::Reject(..))) {
            Got::Ack(seq) => acked.push(seq),
            Got::Reject(_, reason) => assert_eq!(reason, RejectReason::RateLimited),
            _ => unreachable!(),
        }
    }
    assert!((10..=15).contains(&acked.len()), "{} accepted", acked.len());
    for seq in &acked {
        assert_eq!(
            bob.event(),
            Ev::Said("alice".into(), format!("spam {}", seq - 1))
        );
    }
    bob.silence();
    assert!(s.stats()["rate limited"] >= 17);
}

#[test]
fn malformed_datagrams_are_counted_never_answered() {
    let mut s = Server::start(&[]);
    let mut alice = Client::join(s.addr, "alice");
    let say = ClientMsg::Say {
        token: alice.token,
        seq: 1,
        text: "hi",
    }
    .to_vec();
    let mut shapes: Vec<Vec<u8>> = vec![
        vec![],
        b"U".to_vec(),
        b"UC\x01".to_vec(),
        b"XX\x01\x02".to_vec(),
        b"UC\x02\x02".to_vec(),
        b"UC\x01\x7f".to_vec(),
        b"UC\x01\x86\0\0\0\x01".to_vec(),
        say[..say.len() - 1].to_vec(),
        [&say[..], b"!"].concat(),
        join_msg(1, [0; 16], "alice")[..255].to_vec(),
        vec![0x55; 1201],
        vec![0x55; 5000],
    ];
    let mut bad_utf8 = say.clone();
    bad_utf8[18] = 0xff;
    shapes.push(bad_utf8);
    let mut zero_len = say.clone();
    zero_len[16] = 0;
    zero_len[17] = 0;
    zero_len.truncate(18);
    shapes.push(zero_len);
    for shape in &shapes {
        alice.send_raw(shape);
    }
    alice.silence();
    assert_eq!(s.stats()["malformed"], shapes.len() as u64);
    // Logged as summaries, at most one every 5 seconds: add them up.
    let mut logged = 0;
    while logged < shapes.len() {
        let line = s.wait_new_log("malformed datagram", Duration::from_secs(12));
        let n = line
            .split("dropped ")
            .nth(1)
            .and_then(|r| r.split(' ').next());
        logged += n.and_then(|n| n.parse::<usize>().ok()).expect("a count");
    }
    assert_eq!(logged, shapes.len());
    // Still serving.
    assert_eq!(alice.ping(), 0);
}

#[test]
fn random_datagrams_do_not_hurt() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let samples: Vec<Vec<u8>> = vec![
        join_msg(1, [0; 16], "x"),
        ClientMsg::Say {
            token: 5,
            seq: 1,
            text: "hello",
        }
        .to_vec(),
        ClientMsg::Private {
            token: 5,
            seq: 1,
            to: "bob",
            text: "hello",
        }
        .to_vec(),
        ClientMsg::Who { token: 5, start: 0 }.to_vec(),
        ClientMsg::Leave { token: 5 }.to_vec(),
        ClientMsg::Ping { token: 5 }.to_vec(),
    ];
    let senders: Vec<UdpSocket> = (0..4)
        .map(|i| socket_on(Ipv4Addr::new(127, 0, 2, i + 1)))
        .collect();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut rnd = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for k in 0..100_000u32 {
        let mut d = if rnd() % 3 == 0 {
            let len = (rnd() % 1300) as usize;
            (0..len).map(|_| rnd() as u8).collect()
        } else {
            samples[(rnd() % samples.len() as u64) as usize].clone()
        };
        for _ in 0..rnd() % 4 {
            match rnd() % 3 {
                0 if !d.is_empty() => {
                    let i = (rnd() % d.len() as u64) as usize;
                    d[i] = rnd() as u8;
                }
                1 => d.truncate((rnd() % (d.len() as u64 + 1)) as usize),
                _ => d.push(rnd() as u8),
            }
        }
        let _ = senders[(k % 4) as usize].send_to(&d, s.addr);
    }
    assert!(s.alive());
    alice.say_acked("still here?");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "still here?".into()));
    bob.say_acked("yes");
    assert_eq!(alice.event(), Ev::Said("bob".into(), "yes".into()));
    let st = s.stats();
    assert!(st["malformed"] > 1000, "{st:?}");
    assert_eq!(st["members"], 2);
}

#[test]
fn ten_thousand_members() {
    // 10,000 client sockets in this process (plus those of other tests): the
    // test raises its own limit (as root, above the hard limit if need be).
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).expect("getrlimit");
    let want = hard.max(10_500);
    setrlimit(Resource::RLIMIT_NOFILE, want, want)
        .expect("raise RLIMIT_NOFILE to 10,500 (needs root, or a hard limit that high)");
    let mut s = Server::start(&[]);
    let names: Vec<String> = (0..10_000).map(|i| format!("m{i}")).collect();
    let t = Instant::now();
    let mut clients = join_many(s.addr, &names);
    eprintln!("10,000 joins in {:?}", t.elapsed());
    assert_eq!(s.stats()["members"], 10_000);
    // Full at the default --max-members.
    let mut late = Client::new(s.addr, "late");
    assert_eq!(late.try_join(0), Err(RefuseReason::RoomFull));
    for c in clients.iter_mut() {
        c.drain();
    }
    let (first, rest) = clients.split_first_mut().expect("clients");
    first.say_acked("hello, ten thousand");
    let mut got = 0;
    for c in rest.iter_mut() {
        match c.expect(|g| matches!(g, Got::Event(..))) {
            Got::Event(_, Ev::Said(from, text)) => {
                assert_eq!(
                    (from.as_str(), text.as_str()),
                    ("m0", "hello, ten thousand")
                );
                got += 1;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, 9_999);
    let (total, names_seen) = rest[0].who();
    assert_eq!((total, names_seen.len()), (10_000, 10_000));
}

#[test]
fn no_packing_sends_one_event_per_datagram() {
    let s = Server::start(&["--no-packing", "--rate", "0"]);
    let [mut alice, bob] = in_the_room(s.addr, ["alice", "bob"]);
    for k in 0..20 {
        alice.say(&format!("m{k}"));
    }
    let mut buf = [0u8; 2048];
    let mut seqs = Vec::new();
    while seqs.len() < 20 {
        let (n, _) = bob.sock.recv_from(&mut buf).expect("an event for bob");
        let got = decode(&buf[..n]);
        assert_eq!(got.len(), 1, "one event per datagram: {got:?}");
        if let Got::Event(seq, Ev::Said(_, text)) = &got[0] {
            assert_eq!(text, &format!("m{}", seqs.len()));
            seqs.push(*seq);
        }
    }
    assert_eq!(seqs, (1..=20).collect::<Vec<u32>>());
}
