//! The gate's rules for sealed datagrams: sessions found by id, the replay
//! window, roaming with path checks, rekeys, sealing to a connection.

use super::tests::{addr, delivered, open, seal, sends, Client, T};
use super::*;
use crate::session::{body_type, ClientRekey, PATH_CHALLENGE_SIZE};
use std::time::Duration;

const KEEPALIVE: &[u8] = b"\x08\0\0\0\0";

fn to_member(t: &mut T, c: &Client, body: &[u8]) -> (usize, SocketAddr, Vec<u8>) {
    let mut out = [0u8; MAX_DATAGRAM];
    let (n, to) = t.gate.seal_to(t.now, c.conn, body, &mut out).unwrap();
    (n, to, out[..n].to_vec())
}

#[test]
fn a_replay_is_dropped_and_counted_and_a_forgery_too() {
    let mut t = T::new(Config::default());
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    let d = seal(&mut c.session, KEEPALIVE);
    assert_eq!(delivered(&t.send(c.addr, &d)).len(), 1);
    assert_eq!(
        t.send(c.addr, &d),
        vec![Action::Dropped(DropReason::Replayed)]
    );
    assert_eq!(t.gate.stats.replayed, 1);
    // Changed bytes (counter, sealed header copy, text, tag): forged, and
    // nothing is marked, so the real datagram still goes through.
    let d = seal(&mut c.session, KEEPALIVE);
    for i in [13, 19, 20, 45, d.len() - 1] {
        let mut f = d.clone();
        f[i] ^= 0x40;
        assert_eq!(
            t.send(c.addr, &f),
            vec![Action::Dropped(DropReason::Forged)],
            "{i}"
        );
    }
    assert_eq!(t.gate.stats.forged, 5);
    assert_eq!(delivered(&t.send(c.addr, &d)).len(), 1);
    // Still a member: the next datagram is delivered.
    let d = seal(&mut c.session, KEEPALIVE);
    assert_eq!(delivered(&t.send(c.addr, &d))[0].0, c.conn);
}

#[test]
fn nothing_is_sealed_to_a_session_before_the_clients_first_datagram() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let _ = t.handshake(a, 5);
    let mut out = [0u8; MAX_DATAGRAM];
    assert_eq!(
        t.gate.seal_to(t.now, ConnId(1), b"\x81", &mut out),
        Err(SealToError::Silent)
    );
    assert_eq!(
        t.gate.seal_to(t.now, ConnId(9), b"\x81", &mut out),
        Err(SealToError::Unknown)
    );
}

#[test]
fn sessions_are_found_by_id_and_a_new_address_is_checked_before_the_move() {
    let mut t = T::new(Config::default());
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    let (old, new) = (c.addr, addr("192.0.2.1:5555"));
    let d = seal(&mut c.session, KEEPALIVE);
    let got = t.send(new, &d);
    // Delivered as the same member, with the validated (old) address.
    let mut padded = KEEPALIVE.to_vec();
    padded.resize(d.len() - crate::session::DATA_OVERHEAD, 0);
    assert_eq!(delivered(&got), vec![(c.conn, old, padded)]);
    let s = sends(&got);
    assert_eq!(s.len(), 1);
    let (to, challenge) = &s[0];
    assert_eq!((*to, challenge.len()), (new, PATH_CHALLENGE_SIZE));
    assert!(challenge.len() <= d.len());
    let body = open(&mut c.session, challenge);
    assert_eq!(body[0], body_type::PATH_CHALLENGE);
    // Everything else still goes to the old address.
    assert_eq!(to_member(&mut t, &c, b"\x87\0\0\0\0").1, old);
    // The echo from the new address moves the session.
    let mut echo = vec![body_type::PATH_RESPONSE];
    echo.extend_from_slice(&body[1..9]);
    let got = t.send(new, &seal(&mut c.session, &echo));
    assert!(got.contains(&Action::Moved {
        conn: c.conn,
        addr: new
    }));
    assert_eq!(to_member(&mut t, &c, b"\x87\0\0\0\0").1, new);
    assert_eq!(t.gate.addr(c.conn), Some(new));
    assert_eq!(t.gate.stats.moves, 1);
}

#[test]
fn an_echo_from_elsewhere_or_with_other_data_moves_nothing() {
    let mut t = T::new(Config::default());
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    let new = addr("198.51.100.3:1");
    let got = t.send(new, &seal(&mut c.session, KEEPALIVE));
    let body = open(&mut c.session, &sends(&got)[0].1);
    let mut echo = vec![body_type::PATH_RESPONSE];
    echo.extend_from_slice(&body[1..9]);
    let mut wrong = echo.clone();
    wrong[8] ^= 1;
    for (from, e) in [
        (new, &wrong),
        (c.addr, &echo),
        (addr("198.51.100.4:1"), &echo),
    ] {
        let got = t.send(from, &seal(&mut c.session, e));
        assert!(
            !got.iter().any(|a| matches!(a, Action::Moved { .. })),
            "{from}"
        );
    }
    assert_eq!(t.gate.addr(c.conn), Some(c.addr));
}

#[test]
fn a_copied_datagram_from_a_third_address_gets_it_at_most_what_it_sent() {
    let mut t = T::new(Config::default());
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    let third = addr("203.0.113.66:53");
    let (mut from_third, mut to_third) = (0, 0);
    let mut tally = |d: &[u8], got: &[Action]| {
        from_third += d.len();
        to_third += sends(got)
            .iter()
            .filter(|(to, _)| *to == third)
            .map(|(_, b)| b.len())
            .sum::<usize>();
    };
    // A copy of a datagram already delivered: a replay, nothing sent.
    let d = seal(&mut c.session, KEEPALIVE);
    t.send(c.addr, &d);
    let got = t.send(third, &d);
    assert_eq!(got, vec![Action::Dropped(DropReason::Replayed)]);
    tally(&d, &got);
    // A copy that wins the race: processed, and one challenge at most.
    for _ in 0..50 {
        let d = seal(&mut c.session, KEEPALIVE);
        let got = t.send(third, &d);
        tally(&d, &got);
        assert_eq!(
            t.send(c.addr, &d),
            vec![Action::Dropped(DropReason::Replayed)]
        );
        // The room's fan-out keeps going to the member's real address.
        assert_eq!(to_member(&mut t, &c, b"\x85\0\0\0\x01").1, c.addr);
        t.advance(Duration::from_millis(50));
    }
    assert!(to_third <= from_third, "{to_third} > {from_third}");
    assert!(to_third > 0, "the third address was challenged");
    assert_eq!(t.gate.addr(c.conn), Some(c.addr));
    // An older counter from yet another address never starts a check.
    let older = seal(&mut c.session, KEEPALIVE);
    let newer = seal(&mut c.session, KEEPALIVE);
    t.send(c.addr, &newer);
    let got = t.send(addr("203.0.113.67:53"), &older);
    assert_eq!(delivered(&got).len(), 1);
    assert!(sends(&got).is_empty());
}

#[test]
fn a_rekey_keeps_the_member_and_reads_the_old_session_for_the_grace() {
    let mut t = T::new(Config::default());
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    let rekey = ClientRekey::start(&c.session, 0x2222).unwrap();
    let init = seal(&mut c.session, rekey.body());
    let got = t.send(c.addr, &init);
    assert!(got.contains(&Action::Heard { conn: c.conn }));
    let answer = sends(&got);
    assert_eq!((answer.len(), answer[0].0), (1, c.addr));
    let body = open(&mut c.session, &answer[0].1);
    assert_eq!(t.gate.stats.rekeys, 1);
    // A retransmission of the same REKEY_INIT: the stored answer.
    let again = sends(&t.send(c.addr, &seal(&mut c.session, rekey.body())));
    assert_eq!(open(&mut c.session, &again[0].1), body);
    assert_eq!(t.gate.stats.rekeys, 1);
    let mut rekey = rekey;
    let mut new = rekey.on_response(&body, None, t.now).unwrap().session;
    // The new id is live before its first datagram: a forgery draws no RESET.
    let mut forged = seal(&mut new, KEEPALIVE);
    forged[30] ^= 1;
    assert_eq!(
        t.send(c.addr, &forged),
        vec![Action::Dropped(DropReason::Forged)]
    );
    // Until the client uses the new session, the server sends on the old.
    let (_, _, d) = to_member(&mut t, &c, b"\x87\0\0\0\0");
    assert_eq!(open(&mut c.session, &d), b"\x87\0\0\0\0");
    let got = delivered(&t.send(c.addr, &seal(&mut new, KEEPALIVE)));
    assert_eq!(got[0].0, c.conn, "the same member");
    let (_, _, d) = to_member(&mut t, &c, b"\x87\0\0\0\0");
    assert_eq!(open(&mut new, &d), b"\x87\0\0\0\0", "now on the new one");
    // The old one is read for the grace, then its id is not live.
    t.advance(Duration::from_secs(9));
    t.gate.expire(t.now);
    let got = delivered(&t.send(c.addr, &seal(&mut c.session, KEEPALIVE)));
    assert_eq!(got[0].0, c.conn);
    t.advance(Duration::from_secs(1));
    t.gate.expire(t.now);
    let got = sends(&t.send(c.addr, &seal(&mut c.session, KEEPALIVE)));
    assert!(c.session.is_reset(&got[0].1));
    // Another rekey so soon is refused; after rekey_after_s / 2 it is answered.
    let r2 = ClientRekey::start(&new, 0x3333).unwrap();
    let got = t.send(c.addr, &seal(&mut new, r2.body()));
    assert!(got.contains(&Action::Dropped(DropReason::OverBudget)));
    t.advance(Duration::from_secs(50));
    let got = t.send(c.addr, &seal(&mut new, r2.body()));
    assert_eq!(sends(&got).len(), 1);
    assert_eq!(t.gate.stats.rekeys, 2);
}

#[test]
fn a_half_open_session_cannot_rekey() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut s = t.handshake(a, 5);
    let r = ClientRekey::start(&s, 0x2222).unwrap();
    let got = t.send(a, &seal(&mut s, r.body()));
    assert!(got.contains(&Action::Dropped(DropReason::WrongState)));
    assert_eq!(t.gate.stats.rekeys, 0);
}

#[test]
fn a_session_is_not_used_past_reject_after_time() {
    let mut t = T::new(Config {
        rekey_after_s: 4,
        ..Config::default()
    });
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    // The admitted member's half-open deadline passes without effect.
    t.advance(Duration::from_secs(10));
    assert!(t.gate.expire(t.now).is_empty());
    assert_eq!(
        t.gate.next_deadline(),
        Some(t.now + Duration::from_secs(54))
    );
    t.advance(Duration::from_secs(53));
    assert!(t.gate.expire(t.now).is_empty());
    t.advance(Duration::from_secs(1));
    let mut out = [0u8; MAX_DATAGRAM];
    assert_eq!(
        t.gate.seal_to(t.now, c.conn, b"\x87\0\0\0\0", &mut out),
        Err(SealToError::Expired)
    );
    assert_eq!(t.gate.expire(t.now), vec![Action::Gone { conn: c.conn }]);
    let got = sends(&t.send(c.addr, &seal(&mut c.session, KEEPALIVE)));
    assert!(c.session.is_reset(&got[0].1));
}

#[test]
fn a_rekey_with_a_shortened_period_keeps_the_member_past_reject_after_time() {
    let mut t = T::new(Config {
        rekey_after_s: 4,
        ..Config::default()
    });
    let mut c = t.member(addr("192.0.2.1:4000"), 5);
    for round in 0..20u64 {
        t.advance(Duration::from_secs(4));
        assert!(t.gate.expire(t.now).is_empty(), "round {round}");
        assert!(c.session.needs_rekey(t.now));
        let mut r = ClientRekey::start(&c.session, 0x1000 + round).unwrap();
        let got = sends(&t.send(c.addr, &seal(&mut c.session, r.body())));
        let body = open(&mut c.session, &got[0].1);
        c.session = r.on_response(&body, None, t.now).unwrap().session;
        let got = delivered(&t.send(c.addr, &seal(&mut c.session, KEEPALIVE)));
        assert_eq!(got[0].0, c.conn);
    }
    assert_eq!(t.gate.stats.rekeys, 20);
}
