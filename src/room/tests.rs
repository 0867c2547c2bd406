//! The room in memory, with real version-2 connections (`client::conn`)
//! as members: the turn-level guarantees the binary's tests cannot pin down
//! (what one turn of the loop holds is decided here).

use super::*;
use crate::client::conn::{Conn, End, Event as ConnEvent, SealedBodies};
use crate::protocol::sealed::{decode_server, Event, ServerMsg, WelcomeFlags};

/// A deterministic random source.
fn xorshift(mut x: u64) -> impl FnMut() -> u64 + Send {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

struct Member {
    conn: Conn<SealedBodies>,
    addr: SocketAddr,
    /// Every server body it got, in order (a BYE that ended it too).
    bodies: Vec<Vec<u8>>,
}

struct Net {
    room: Room,
    now: Instant,
    /// Where each send of the room went (a segmented send counts once).
    sends: Vec<SocketAddr>,
}

impl Net {
    fn new(cfg: Config) -> Net {
        let now = Instant::now();
        let room = Room::new(
            cfg,
            ServerKey::new([9; 32]),
            [3; 32],
            Box::new(xorshift(0x5EED)),
            now,
        );
        Net {
            room,
            now,
            sends: Vec::new(),
        }
    }

    /// A room that keeps its history in memory (and gives resume tickets).
    fn with_history() -> Net {
        Net::with_history_of(Config::default(), 100)
    }

    /// A room with `cfg` that keeps `size` messages in memory.
    fn with_history_of(cfg: Config, size: usize) -> Net {
        let mut net = Net::new(cfg);
        net.room.keep_history(
            Box::new(crate::store::MemoryStore::new(size)),
            crate::trust::ticket::TicketKey::derive(&[4; 32]),
            0,
            net.now,
        );
        net
    }

    /// A member joined as `name` from port `port` (it has read everything).
    fn join(&mut self, name: &str, port: u16) -> Member {
        let conn = Conn::connect(
            SealedBodies,
            name,
            None,
            Box::new(xorshift(port as u64 * 7919)),
            self.now,
        );
        let mut m = Member {
            conn,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            bodies: Vec::new(),
        };
        self.run(&mut [&mut m]);
        assert!(m.conn.is_member(), "{name} joined");
        m
    }

    /// Hands the room what `m` has to send (the same turn).
    fn send(&mut self, m: &mut Member) {
        while let Some(d) = m.conn.poll_transmit() {
            self.room.handle(self.now, 1_000, m.addr.into(), &d);
        }
    }

    /// Ends the turn and delivers its output; false when there was none.
    fn turn(&mut self, ms: &mut [&mut Member]) -> bool {
        let out = self.room.flush(self.now);
        // A segmented send arrives as datagrams of MAX_DATAGRAM bytes (the last shorter).
        let sent: Vec<(SocketAddr, Vec<u8>)> = out
            .datagrams()
            .iter()
            .flat_map(|d| {
                assert!(d.segments() <= super::outbox::MAX_SEGMENTS, "{d:?}");
                let segments = out.bytes(d).chunks(crate::session::MAX_DATAGRAM);
                segments.map(|b| (d.to, b.to_vec()))
            })
            .collect();
        self.sends.extend(out.datagrams().iter().map(|d| d.to));
        self.room.end_turn();
        for (to, bytes) in &sent {
            if let Some(m) = ms.iter_mut().find(|m| m.addr == *to) {
                m.conn.on_datagram(self.now, bytes);
            }
        }
        for m in ms.iter_mut() {
            while let Some(e) = m.conn.poll_event() {
                match e {
                    ConnEvent::VerifyKey(_) => m.conn.key_checked(self.now, true),
                    ConnEvent::Welcome { body, .. }
                    | ConnEvent::Refused { body }
                    | ConnEvent::Body(body)
                    | ConnEvent::Ended(End::Bye { body }) => m.bodies.push(body),
                    _ => {}
                }
            }
        }
        self.room.members.check();
        !sent.is_empty()
    }

    /// `m`'s connection thinks it lost contact (31 s pass, which the room
    /// does not act on) and comes back in a new session with its ticket;
    /// `other` is there too.
    fn come_back(&mut self, m: &mut Member, other: &mut Member) {
        self.now += std::time::Duration::from_secs(31);
        m.conn.on_timeout(self.now);
        while !m.conn.is_member() {
            let t = m.conn.next_timeout().expect("a reconnect attempt");
            self.now = self.now.max(t);
            m.conn.on_timeout(self.now);
            self.run(&mut [&mut *m, &mut *other]);
        }
    }

    /// Turns until nothing moves.
    fn run(&mut self, ms: &mut [&mut Member]) {
        loop {
            for m in ms.iter_mut() {
                self.send(m);
            }
            if !self.turn(ms) {
                break;
            }
        }
    }
}

/// A room with `cfg` and two members, alice and bob; bob's bodies so far forgotten.
fn alice_and_bob(cfg: Config) -> (Net, Member, Member) {
    let mut net = Net::new(cfg);
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    net.run(&mut [&mut alice, &mut bob]);
    bob.bodies.clear();
    (net, alice, bob)
}

/// What `m` got, one short string a body or event.
fn seen(m: &Member) -> Vec<String> {
    let mut out = Vec::new();
    for b in &m.bodies {
        match decode_server(b).expect("a valid body") {
            ServerMsg::Events { events, .. } => out.extend(events.iter().map(|e| match e {
                Event::Said(l) => format!("said {}", l.text),
                Event::Admin { text, .. } => format!("admin {text}"),
                Event::Joined { name } => format!("joined {name}"),
                Event::Left { name, .. } => format!("left {name}"),
                other => format!("{other:?}"),
            })),
            ServerMsg::Bye { reason, missed, .. } => out.push(format!("bye {reason:?} {missed}")),
            ServerMsg::Welcome(_) => out.push("welcome".into()),
            ServerMsg::Ack { seq } => out.push(format!("ack {seq}")),
            other => out.push(format!("{other:?}")),
        }
    }
    out
}

fn say(text: &str, seq: u32) -> Vec<u8> {
    let mut b = vec![0u8; 1200];
    let n = ClientMsg::Say { seq, text }.encode(&mut b).expect("a SAY");
    b.truncate(n);
    b
}

/// How many server KEEPALIVEs `m` got.
fn keepalives(m: &Member) -> usize {
    let keepalive = |b: &Vec<u8>| matches!(decode_server(b), Ok(ServerMsg::Keepalive { .. }));
    m.bodies.iter().filter(|b| keepalive(b)).count()
}

#[test]
fn the_tail_keepalive_is_repeated_until_the_member_shows_it_has_the_last_event() {
    use super::resend::{TAIL_KEEPALIVE, TAIL_KEEPALIVES};
    // With a history: a room that serves NACK.
    let mut net = Net::with_history();
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    let mut seq = 0;
    // `bob` says a line; `alice` gets it; then time passes a step at a time:
    // the KEEPALIVEs she got at each step.
    let mut burst_then = |net: &mut Net, alice: &mut Member, steps: u32, step: Duration| {
        seq += 1;
        bob.conn.send(net.now, &say("hi", seq)).expect("sent");
        net.send(&mut bob);
        net.run(&mut [&mut *alice, &mut bob]);
        assert_eq!(seen(alice).last().map(String::as_str), Some("said hi"));
        alice.bodies.clear();
        let mut got = Vec::new();
        for _ in 0..steps {
            net.now += step;
            net.run(&mut [&mut *alice, &mut bob]);
            got.push(keepalives(alice));
        }
        got
    };
    let half = TAIL_KEEPALIVE / 2;
    let got = burst_then(&mut net, &mut alice, 12, half);
    assert_eq!(TAIL_KEEPALIVES, 4);
    assert_eq!(
        got,
        [0, 1, 1, 2, 2, 3, 3, 4, 4, 4, 4, 4],
        "0.5, 1, 1.5, 2 s"
    );
    // After the first, her KEEPALIVE says she has the last event: no more
    // (but the answer to hers).
    let got = burst_then(&mut net, &mut alice, 1, TAIL_KEEPALIVE);
    assert_eq!(got, [1]);
    let last_event = match decode_server(&alice.bodies[0]) {
        Ok(ServerMsg::Keepalive { last_event }) => last_event,
        other => panic!("{other:?}"),
    };
    let mut body = vec![0u8; 64];
    let n = ClientMsg::Keepalive { last_event }
        .encode(&mut body)
        .expect("a KEEPALIVE");
    alice.conn.send(net.now, &body[..n]).expect("sent");
    net.send(&mut alice);
    net.run(&mut [&mut alice]);
    assert_eq!(keepalives(&alice), 2, "the answer to hers");
    for _ in 0..6 {
        net.now += TAIL_KEEPALIVE;
        net.run(&mut [&mut alice]);
    }
    assert_eq!(keepalives(&alice), 2, "no tail KEEPALIVE after hers");
    // Or her NACK reaching the last event (she lost it).
    let got = burst_then(&mut net, &mut alice, 1, TAIL_KEEPALIVE);
    assert_eq!(got, [1]);
    let Ok(ServerMsg::Keepalive { last_event }) = decode_server(&alice.bodies[0]) else {
        panic!("{:?}", seen(&alice));
    };
    let mut nack = vec![crate::protocol::sealed::client_type::NACK, 1];
    nack.extend(last_event.to_be_bytes());
    nack.extend(last_event.to_be_bytes());
    alice.conn.send(net.now, &nack).expect("sent");
    net.send(&mut alice);
    for _ in 0..6 {
        net.run(&mut [&mut alice]);
        net.now += TAIL_KEEPALIVE;
    }
    assert_eq!(
        seen(&alice)[1..],
        ["said hi"],
        "resent, and no tail KEEPALIVE"
    );
}

#[test]
fn a_line_of_the_same_turn_reaches_a_leaver_before_its_bye() {
    let mut net = Net::new(Config::default());
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    let mut carol = net.join("carol", 3);
    net.run(&mut [&mut alice, &mut bob, &mut carol]);
    for m in [&mut alice, &mut bob, &mut carol] {
        m.bodies.clear();
    }
    // One turn: alice's line, then carol's LEAVE, then bob's line.
    alice.conn.send(net.now, &say("before", 1)).expect("sent");
    net.send(&mut alice);
    carol.conn.leave(net.now);
    net.send(&mut carol);
    bob.conn.send(net.now, &say("after", 1)).expect("sent");
    net.send(&mut bob);
    net.turn(&mut [&mut alice, &mut bob, &mut carol]);
    assert_eq!(seen(&carol), ["said before"], "then the BYE ended it");
    assert_eq!(seen(&bob), ["ack 1", "said before", "left carol"]);
    assert_eq!(seen(&alice), ["ack 1", "left carol", "said after"]);
}

#[test]
fn shutdown_sends_what_was_queued_then_bye() {
    let mut net = Net::new(Config::default());
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    net.run(&mut [&mut alice, &mut bob]);
    alice.bodies.clear();
    bob.bodies.clear();
    assert_eq!(
        net.room.console(net.now, 2_000, "closing now"),
        "sent to 2 members"
    );
    net.room.shutdown(ByeReason::Closing, "");
    net.turn(&mut [&mut alice, &mut bob]);
    for m in [&alice, &bob] {
        assert_eq!(seen(m), ["admin closing now", "bye Closing 0"]);
    }
    assert_eq!(net.room.member_count(), 0);
    assert_eq!(net.room.gate.conn_count(), 0, "every session closed");
}

#[test]
fn a_resumed_ticket_replaces_the_live_session_quietly() {
    let mut net = Net::with_history();
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    net.run(&mut [&mut alice, &mut bob]);
    net.room.take_log();
    bob.bodies.clear();
    // Alice's connection thinks it lost contact (the room did not time her
    // out yet): it comes back in a new session with its ticket.
    net.come_back(&mut alice, &mut bob);
    let log = net.room.take_log().join("\n");
    assert!(
        log.contains("alice (127.0.0.1:1) was replaced by a new session"),
        "{log}"
    );
    assert!(log.contains("alice resumed from"), "{log}");
    assert_eq!(net.room.member_count(), 2);
    assert!(
        seen(&bob).is_empty(),
        "nobody sees a leave or a join: {:?}",
        seen(&bob)
    );
    let welcome = alice
        .bodies
        .iter()
        .rev()
        .find_map(|b| match decode_server(b) {
            Ok(ServerMsg::Welcome(w)) => Some(w.flags),
            _ => None,
        });
    assert!(welcome.is_some_and(|f| f.contains(WelcomeFlags::RESUMED)));
}

/// Sends a RESUME with a ticket of its own making where a JOIN would go.
struct ForgedResume;

impl crate::client::conn::BodyCodec for ForgedResume {
    fn join(&self, _name: &str) -> Vec<u8> {
        let mut b = vec![0u8; 1200];
        let n = ClientMsg::Resume {
            ticket: &[7; 70],
            epoch: 0,
            last_room_seq: 0,
            lowest_unacked: 1,
        }
        .encode(&mut b)
        .expect("a RESUME");
        b.truncate(n);
        b
    }
    fn resume(&self, r: &crate::client::conn::Resume<'_>) -> Vec<u8> {
        SealedBodies.resume(r)
    }
    fn keepalive(&self, last_event: u32) -> Vec<u8> {
        SealedBodies.keepalive(last_event)
    }
    fn leave(&self) -> Vec<u8> {
        SealedBodies.leave()
    }
    fn classify(&self, body: &[u8]) -> crate::client::conn::ServerBody {
        SealedBodies.classify(body)
    }
}

#[test]
fn a_ticket_the_server_did_not_make_is_refused() {
    let mut net = Net::with_history();
    let addr = SocketAddr::from(([127, 0, 0, 1], 9));
    let mut conn = Conn::connect(ForgedResume, "x", None, Box::new(xorshift(77)), net.now);
    let mut refused = None;
    for _ in 0..10 {
        while let Some(d) = conn.poll_transmit() {
            net.room.handle(net.now, 1_000, addr.into(), &d);
        }
        let out = net.room.flush(net.now);
        let sent: Vec<Vec<u8>> = out
            .datagrams()
            .iter()
            .map(|d| out.bytes(d).to_vec())
            .collect();
        net.room.end_turn();
        for d in sent {
            conn.on_datagram(net.now, &d);
        }
        while let Some(e) = conn.poll_event() {
            match e {
                ConnEvent::VerifyKey(_) => conn.key_checked(net.now, true),
                ConnEvent::Refused { body } => refused = Some(body),
                _ => {}
            }
        }
    }
    let body = refused.expect("an answer");
    assert_eq!(
        decode_server(&body),
        Ok(ServerMsg::Refused(
            crate::protocol::sealed::Refusal::BadTicket
        ))
    );
    assert_eq!(net.room.member_count(), 0);
}

/// The texts of the room messages `m` got, with their flags, in order.
fn lines(m: &Member) -> Vec<(String, u8)> {
    let mut out = Vec::new();
    for b in &m.bodies {
        if let Ok(ServerMsg::Events { events, .. }) = decode_server(b) {
            for e in events.iter() {
                if let Event::Said(l) = e {
                    out.push((l.text.to_string(), l.flags.bits()));
                }
            }
        }
    }
    out
}

#[test]
fn a_catch_up_is_paced_by_the_budget_and_comes_before_live_lines() {
    let cfg = Config {
        rate: 0.0,
        ..Config::default()
    };
    let mut net = Net::with_history_of(cfg, 1000);
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    net.run(&mut [&mut alice, &mut bob]);
    // Bob is away (nothing reaches him) while alice says 400 long lines:
    // about 440 KB, beyond the 256 KiB burst of his answer budget.
    let text = |k: usize| format!("{k:04} {}", "x".repeat(1000 - 5));
    for k in 0..400 {
        alice
            .conn
            .send(net.now, &say(&text(k), k as u32 + 1))
            .expect("sent");
        net.send(&mut alice);
        net.turn(&mut [&mut alice]);
    }
    bob.bodies.clear();
    // He comes back (a new session with his ticket) and is caught up.
    net.come_back(&mut bob, &mut alice);
    let first_part = lines(&bob).len();
    assert!(
        (100..400).contains(&first_part),
        "{first_part} lines at once"
    );
    // A line said meanwhile waits for the catch-up to end.
    alice.conn.send(net.now, &say("live", 401)).expect("sent");
    net.send(&mut alice);
    for _ in 0..20 {
        net.now += std::time::Duration::from_millis(500);
        net.turn(&mut [&mut alice, &mut bob]);
    }
    // Caught up: the next line is live.
    alice.conn.send(net.now, &say("after", 402)).expect("sent");
    net.send(&mut alice);
    net.turn(&mut [&mut alice, &mut bob]);
    let got = lines(&bob);
    // (A line said during the catch-up comes with it, flagged so.)
    let want: Vec<(String, u8)> = (0..400)
        .map(|k| (text(k), 2))
        .chain([("live".to_string(), 2), ("after".to_string(), 0)])
        .collect();
    assert_eq!(got.len(), want.len());
    let diff = got.iter().zip(&want).position(|(a, b)| a != b);
    let show = diff.map(|k| (k, got[k].0.chars().take(8).collect::<String>(), got[k].1));
    assert!(
        diff.is_none(),
        "every line once, in order, the catch-up flagged: {show:?}"
    );
}

#[test]
fn a_members_lines_go_in_its_order_and_a_gap_is_waited_for_a_while() {
    let (mut net, mut alice, mut bob) = alice_and_bob(Config {
        rate: 0.0,
        ..Config::default()
    });
    alice.bodies.clear();
    // 3 overtakes 2 on the way: it waits, unacknowledged, for 2.
    for (seq, text) in [(1, "one"), (3, "three")] {
        alice.conn.send(net.now, &say(text, seq)).expect("sent");
        net.send(&mut alice);
    }
    net.turn(&mut [&mut alice, &mut bob]);
    assert_eq!(seen(&alice), ["ack 1"]);
    alice.conn.send(net.now, &say("two", 2)).expect("sent");
    net.send(&mut alice);
    net.turn(&mut [&mut alice, &mut bob]);
    assert_eq!(seen(&alice), ["ack 1", "ack 2", "ack 3"]);
    assert_eq!(seen(&bob), ["said one", "said two", "said three"]);
    // 5 waits for 4, which never comes: after a while it goes anyway.
    alice.conn.send(net.now, &say("five", 5)).expect("sent");
    net.send(&mut alice);
    net.turn(&mut [&mut alice, &mut bob]);
    assert_eq!(seen(&bob).len(), 3);
    net.now += super::order::HOLD_FOR;
    net.room.expire(net.now);
    net.turn(&mut [&mut alice, &mut bob]);
    let lines: Vec<String> = seen(&bob)
        .into_iter()
        .filter(|s| s.starts_with("said"))
        .collect();
    assert_eq!(lines, ["said one", "said two", "said three", "said five"]);
    assert_eq!(net.room.stats.held, 2);
}

#[test]
fn a_members_datagrams_of_one_turn_go_as_one_segmented_send_and_all_arrive() {
    let run = |segments: bool| {
        let (mut net, mut alice, mut bob) = alice_and_bob(Config {
            rate: 0.0,
            segments,
            ..Config::default()
        });
        // 100 lines of 100 bytes in one turn: about ten EVENTS datagrams for bob.
        let texts: Vec<String> = (0..100).map(|i| format!("{i:0>100}")).collect();
        for (i, t) in texts.iter().enumerate() {
            alice
                .conn
                .send(net.now, &say(t, i as u32 + 1))
                .expect("sent");
        }
        net.send(&mut alice);
        net.sends.clear();
        net.turn(&mut [&mut alice, &mut bob]);
        let want: Vec<String> = texts.iter().map(|t| format!("said {t}")).collect();
        assert_eq!(seen(&bob), want, "segments {segments}");
        let to_bob = net.sends.iter().filter(|&&a| a == bob.addr).count();
        (to_bob, bob.bodies.len())
    };
    let (plain_sends, plain_bodies) = run(false);
    let (sends, bodies) = run(true);
    assert_eq!(bodies, plain_bodies, "as many EVENTS either way");
    assert!(plain_bodies >= 9, "{plain_bodies} bodies");
    assert_eq!(plain_sends, plain_bodies, "one send each without segments");
    assert_eq!(sends, 1, "one segmented send to bob");
}
