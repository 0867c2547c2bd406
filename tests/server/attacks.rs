//! Attacks: forged, replayed, malformed and random datagrams, floods, too many members.

use crate::server_harness::*;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::{Duration, Instant};
use udpchat::protocol::sealed::{ClientMsg, RejectReason};
use udpchat::session::{ClientHandshake, INIT_SIZE};

#[test]
fn forged_and_replayed_datagrams_are_dropped_and_counted() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let datagram = alice.seal(&ClientMsg::Say {
        seq: 1,
        text: "once",
    });
    alice.send_raw(&datagram);
    assert_eq!(alice.answer_to(1), Got::Ack(1));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "once".into()));
    // Replayed: from alice's address, and from a third one.
    alice.send_raw(&datagram);
    socket().send_to(&datagram, s.addr).expect("send");
    // Changed (a datagram not sent yet): a bit of the clear header's
    // counter, of the ciphertext, of the tag.
    let fresh = alice.seal(&ClientMsg::Say {
        seq: 2,
        text: "never",
    });
    for at in [19, 30, fresh.len() - 1] {
        let mut forged = fresh.clone();
        forged[at] ^= 0x40;
        alice.send_raw(&forged);
    }
    bob.silence();
    alice.silence();
    let st = s.stats();
    assert_eq!(st["replayed"], 2, "{st:?}");
    assert_eq!(st["forged"], 3, "{st:?}");
    assert_eq!(st["members"], 2);
    // The conversation goes on.
    alice.seq = 2;
    alice.say_acked("still me");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "still me".into()));
    // Names of members and of the admin are not for others.
    for name in ["bob", "BOB", "admin", "管理员"] {
        assert!(Client::new(s.addr, name).try_join().is_err());
    }
}

#[test]
fn strangers_never_get_more_bytes_than_they_send() {
    let mut s = Server::start(&[]);
    let _alice = Client::join(s.addr, "alice");
    let stranger = socket();
    let init = ClientHandshake::new(0x1234).init_datagram().to_vec();
    assert_eq!(init.len(), INIT_SIZE);
    let mut data = b"UC\x02\x04".to_vec();
    data.extend_from_slice(&0xDEAD_BEEFu64.to_be_bytes());
    data.extend_from_slice(&[7; 72]);
    let probes: Vec<Vec<u8>> = vec![
        init.clone(),
        data,
        b"UC\x02\x01".to_vec(),
        b"UC\x02\x04\0\0".to_vec(),
        vec![0x55; 300],
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
    // A flood of INITs from one address gets at most 40 answers at once.
    stranger
        .set_read_timeout(Some(Duration::from_millis(300)))
        .expect("timeout");
    for _ in 0..200 {
        stranger.send_to(&init, s.addr).expect("send");
    }
    let mut answers = 0;
    while stranger.recv_from(&mut buf).is_ok() {
        answers += 1;
    }
    assert!(answers <= 60, "{answers} answers to 200 INITs");
    assert!(s.stats()["over budget"] > 100);
}

#[test]
fn retransmissions_are_forwarded_once_and_in_order() {
    let s = Server::start(&["--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    for (seq, text) in [(1, "one"), (2, "two"), (3, "three"), (2, "two"), (1, "one")] {
        alice.say_as(seq, text);
        assert_eq!(alice.next(), Got::Ack(seq), "every copy is acknowledged");
    }
    // 5 before 4 (4 lost or late): 5 waits for 4, unacknowledged.
    alice.say_as(5, "five");
    alice.say_as(3, "three");
    assert_eq!(alice.next(), Got::Ack(3));
    alice.say_as(4, "four");
    assert_eq!(alice.next(), Got::Ack(4));
    assert_eq!(alice.next(), Got::Ack(5));
    for text in ["one", "two", "three", "four", "five"] {
        assert_eq!(bob.event(), Ev::Said("alice".into(), text.into()));
    }
    bob.silence();
}

#[test]
fn a_number_below_the_window_is_too_old() {
    let mut s = Server::start(&["--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    alice.say_as(1, "one");
    assert_eq!(alice.next(), Got::Ack(1));
    // 2,000 numbers on (the client's rule forbids it): the window slides.
    alice.say_as(2001, "far");
    assert_eq!(alice.next(), Got::Ack(2001));
    for seq in [1, 2, 500] {
        alice.say_as(seq, "late");
        assert_eq!(alice.next(), Got::Reject(seq, RejectReason::TooOld));
    }
    assert_eq!(bob.event(), Ev::Said("alice".into(), "one".into()));
    assert_eq!(bob.event(), Ev::Said("alice".into(), "far".into()));
    bob.silence();
    assert_eq!(s.stats()["too old"], 3);
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
    assert!(s.stats()["rate limited"] >= 15);
}

#[test]
fn members_and_joins_per_address_are_limited() {
    let s = Server::start(&["--max-per-ip", "2", "--joins-per-minute", "4"]);
    let ip = Ipv4Addr::new(127, 0, 3, 1);
    let mut a = Client::on(socket_on(ip), s.addr, "a1");
    a.try_join().expect("first");
    let mut b = Client::on(socket_on(ip), s.addr, "a2");
    b.try_join().expect("second");
    let mut c = Client::on(socket_on(ip), s.addr, "a3");
    assert_eq!(c.try_join(), Err(Got::Refused(5, 0, String::new())));
    // Another IP is not concerned.
    Client::join(s.addr, "elsewhere");
    // A place freed is a place to take, until the joins of the minute run out.
    b.leave();
    b.expect(|g| matches!(g, Got::Ended(_)));
    c.try_join_as("a3").expect("third, once the second left");
    c.leave();
    c.expect(|g| matches!(g, Got::Ended(_)));
    let mut d = Client::on(socket_on(ip), s.addr, "a4");
    d.try_join().expect("the fourth join of the minute");
    d.leave();
    d.expect(|g| matches!(g, Got::Ended(_)));
    let mut e = Client::on(socket_on(ip), s.addr, "a5");
    assert_eq!(e.try_join(), Err(Got::Refused(6, 0, String::new())));
}

#[test]
fn a_rekey_keeps_the_member_and_nobody_notices() {
    let mut s = Server::start(&["--rekey-after", "1", "--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let end = Instant::now() + Duration::from_millis(3500);
    let mut k = 0;
    while Instant::now() < end {
        alice.say_acked(&format!("line {k}"));
        assert_eq!(bob.event(), Ev::Said("alice".into(), format!("line {k}")));
        bob.say_acked(&format!("reply {k}"));
        assert_eq!(alice.event(), Ev::Said("bob".into(), format!("reply {k}")));
        alice.run_for(Duration::from_millis(100));
        bob.run_for(Duration::from_millis(100));
        k += 1;
    }
    let st = s.stats();
    assert!(st["rekeys"] >= 4, "{st:?}");
    assert_eq!((st["members"], st["handshakes"]), (2, 2), "{st:?}");
    assert!(!s
        .log
        .iter()
        .any(|l| l.contains("joined from") && l.contains("(3 in")));
}

#[test]
fn malformed_datagrams_are_counted_never_answered() {
    let mut s = Server::start(&[]);
    let mut alice = Client::join(s.addr, "alice");
    let shapes: Vec<Vec<u8>> = vec![
        vec![],
        b"U".to_vec(),
        b"UC\x02".to_vec(),
        b"XX\x02\x01".to_vec(),
        b"UC\x01\x01".to_vec(),
        b"UC\x02\x7f".to_vec(),
        b"UC\x02\x04\0\0\0\0".to_vec(),
        vec![0x55; 1201],
        vec![0x55; 5000],
    ];
    for shape in &shapes {
        alice.send_raw(shape);
    }
    alice.silence();
    assert_eq!(s.stats()["malformed"], shapes.len() as u64);
    // Logged as summaries, at most one every 5 seconds: add them up.
    let mut logged = 0;
    while logged < shapes.len() {
        let line = s.wait_new_log("malformed", Duration::from_secs(12));
        let n = line
            .split("malformed ")
            .nth(1)
            .and_then(|r| r.split([',', ')']).next());
        logged += n.and_then(|n| n.parse::<usize>().ok()).expect("a count");
    }
    assert_eq!(logged, shapes.len());
    // Still serving.
    assert_eq!(alice.keepalive(), 0);
}

#[test]
fn random_datagrams_do_not_hurt() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let samples: Vec<Vec<u8>> = vec![
        ClientHandshake::new(5).init_datagram().to_vec(),
        alice.seal(&ClientMsg::Say {
            seq: 99,
            text: "hello",
        }),
        bob.seal(&ClientMsg::Who { start: 0 }),
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
    for k in 0..50_000u32 {
        let mut d = if rnd() % 3 == 0 {
            let len = (rnd() % 1300) as usize;
            (0..len).map(|_| rnd() as u8).collect()
        } else {
            samples[(rnd() % samples.len() as u64) as usize].clone()
        };
        for _ in 0..1 + rnd() % 3 {
            match rnd() % 3 {
                0 if !d.is_empty() => {
                    let i = (rnd() % d.len() as u64) as usize;
                    d[i] ^= 1 + (rnd() % 255) as u8;
                }
                1 => d.truncate((rnd() % (d.len() as u64 + 1)) as usize),
                _ => d.push(rnd() as u8),
            }
        }
        let _ = senders[(k % 4) as usize].send_to(&d, s.addr);
    }
    assert!(s.alive());
    alice.drain();
    bob.drain();
    alice.say_acked("still here?");
    assert_eq!(bob.event(), Ev::Said("alice".into(), "still here?".into()));
    bob.say_acked("yes");
    assert_eq!(alice.event(), Ev::Said("bob".into(), "yes".into()));
    let st = s.stats();
    assert!(st["malformed"] + st["forged"] > 1000, "{st:?}");
    assert_eq!(st["members"], 2);
}
