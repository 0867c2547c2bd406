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
        Net { room, now }
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
        let sent: Vec<(SocketAddr, Vec<u8>)> = out
            .datagrams()
            .iter()
            .map(|d| (d.to, out.bytes(d).to_vec()))
            .collect();
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
    let mut net = Net::new(Config::default());
    net.room.keep_history(
        Box::new(crate::store::MemoryStore::new(100)),
        crate::trust::ticket::TicketKey::derive(&[4; 32]),
        0,
        net.now,
    );
    let mut alice = net.join("alice", 1);
    let mut bob = net.join("bob", 2);
    net.run(&mut [&mut alice, &mut bob]);
    net.room.take_log();
    bob.bodies.clear();
    // Alice's connection thinks it lost contact (the room did not time her
    // out yet): it comes back in a new session with its ticket.
    net.now += std::time::Duration::from_secs(31);
    alice.conn.on_timeout(net.now);
    while !alice.conn.is_member() {
        let t = alice.conn.next_timeout().expect("a reconnect attempt");
        net.now = net.now.max(t);
        alice.conn.on_timeout(net.now);
        net.run(&mut [&mut alice, &mut bob]);
    }
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
