//! Delivery: events one per datagram without packing, and repair of lost events (issue 10).

use crate::server_harness::*;

#[test]
fn no_packing_sends_one_event_per_datagram() {
    let s = Server::start(&["--no-packing", "--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    let before = bob.datagrams_in;
    for k in 0..20 {
        alice.say(&format!("m{k}"));
    }
    for k in 0..20 {
        assert_eq!(bob.event(), Ev::Said("alice".into(), format!("m{k}")));
    }
    assert_eq!(bob.datagrams_in - before, 20, "one event per datagram");
    assert_eq!(bob.next_event, 21);
}

// ---- repair (issue 10) ----

#[test]
fn a_nack_is_answered_with_the_events_again_or_lost() {
    let mut s = Server::start(&["--rate", "0"]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    for k in 1..=3 {
        alice.say_acked(&format!("line {k}"));
        assert_eq!(bob.event(), Ev::Said("alice".into(), format!("line {k}")));
    }
    bob.nack(&[(2, 3)]);
    for n in [2, 3] {
        assert_eq!(
            bob.expect(|g| matches!(g, Got::Event(..))),
            Got::Event(n, Ev::Said("alice".into(), format!("line {n}"))),
            "sent again under its number"
        );
    }
    // Acknowledged events are forgotten: asked again, they are lost.
    assert_eq!(bob.keepalive(), 3);
    bob.nack(&[(1, 3)]);
    assert_eq!(bob.expect(|g| matches!(g, Got::Lost(..))), Got::Lost(1, 3));
    let st = s.stats();
    assert_eq!((st["nacks"], st["resent"], st["lost"]), (2, 2, 3), "{st:?}");
    // A lost tail is noticed: a KEEPALIVE follows the last events, unasked.
    bob.keepalives = true;
    alice.say_acked("the tail");
    assert_eq!(
        bob.expect(|g| matches!(g, Got::Event(..))),
        Got::Event(4, Ev::Said("alice".into(), "the tail".into()))
    );
    assert_eq!(
        bob.expect(|g| matches!(g, Got::Keepalive(_))),
        Got::Keepalive(4)
    );
}

#[test]
fn without_repair_no_nack_is_served() {
    let mut s = Server::start(&["--no-repair", "--rate", "0"]);
    let mut alice = Client::new(s.addr, "alice");
    let Ok(Got::Welcome { flags, .. }) = alice.try_join() else {
        panic!("alice joins")
    };
    assert_eq!(flags & 1 << 2, 0, "no repair served");
    let mut bob = Client::join(s.addr, "bob");
    bob.say_acked("one");
    assert_eq!(alice.event(), Ev::Joined("bob".into()));
    assert_eq!(alice.event(), Ev::Said("bob".into(), "one".into()));
    alice.nack(&[(1, 2)]);
    alice.silence();
    let st = s.stats();
    assert_eq!((st["nacks"], st["not allowed"]), (0, 1), "{st:?}");
}
