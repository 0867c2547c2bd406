//! The connection against a server in memory: the handshake and the pin,
//! what it ignores, sealing with one counter sequence, rekey, path
//! challenges, leaving (the reconnect is in `reconnect_tests`).

use super::test_server::*;
use super::*;
use crate::session::{
    body_type, cookie_datagram, parse_data_header, ServerKey, SessionId, REKEY_GRACE, RESET_SIZE,
    RESPONSE_SIZE,
};
use std::collections::HashSet;

#[test]
fn the_key_is_checked_before_anything_is_sent_in_the_session() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut s = TestServer::new(1);
    let init = transmits(&mut c);
    assert_eq!(init.len(), 1);
    assert_eq!((init[0].len(), &init[0][12..28]), (256, &[0u8; 16][..]));
    let cookie = s.handle(t0, &init[0]);
    c.on_datagram(t0, &cookie[0]);
    let init2 = transmits(&mut c);
    assert_ne!(&init2[0][12..28], &[0u8; 16][..], "the cookie is echoed");
    let response = s.handle(t0, &init2[0]);
    c.on_datagram(t0, &response[0]);
    let ev = events(&mut c);
    let [Event::VerifyKey(key)] = ev[..] else {
        panic!("{ev:?}")
    };
    assert_eq!(key, public(1));
    assert!(transmits(&mut c).is_empty(), "nothing before the verdict");
    c.key_checked(t0, true);
    let join = transmits(&mut c);
    assert_eq!(join.len(), 1);
    let answer = s.handle(t0, &join[0]);
    assert_eq!(s.bodies[0][..8], *b"\x01\x05alice\0", "JOIN, padded");
    c.on_datagram(t0, &answer[0]);
    assert!(matches!(
        &events(&mut c)[..],
        [Event::Welcome { resumed: false, .. }]
    ));
}

#[test]
fn a_rejected_key_ends_with_nothing_sent() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut s = TestServer::new(1);
    let ev = pump(&mut c, &mut s, t0, false);
    assert_eq!(ev.last(), Some(&Event::Ended(End::KeyRejected)));
    assert!(s.data_seen.is_empty());
    assert_eq!(c.next_timeout(), None);
}

#[test]
fn a_forged_response_costs_a_retry_only() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut s = TestServer::new(1);
    let first = transmits(&mut c).remove(0);
    c.on_datagram(t0, &s.handle(t0, &first)[0]);
    let init = transmits(&mut c).remove(0);
    let mut forged = vec![0u8; RESPONSE_SIZE];
    forged[..4].copy_from_slice(b"UC\x02\x03");
    forged[4..12].copy_from_slice(&init[4..12]);
    c.on_datagram(t0, &forged);
    assert_eq!(c.stats().forged, 1);
    assert!(events(&mut c).is_empty());
    let again = transmits(&mut c).remove(0);
    assert_eq!(again[..28], init[..28], "same id and cookie");
    assert_ne!(again, init, "a new ephemeral key");
    c.on_datagram(t0, &s.handle(t0, &again)[0]);
    c.key_checked(t0, true);
    let ev = pump(&mut c, &mut s, t0, true);
    assert!(matches!(ev.last(), Some(Event::Welcome { .. })), "{ev:?}");
}

#[test]
fn outside_the_session_only_its_cookie_and_reset_count() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    let before = s.data_seen.len();
    let other_key = ServerKey::new([9; 32]);
    let strangers: Vec<Vec<u8>> = vec![
        cookie_datagram(42, &[1; 16]).to_vec(),
        other_key.reset_key().reset_datagram(42).to_vec(),
        vec![0u8; RESET_SIZE],
        b"UC\x02\x05 garbage".to_vec(),
        b"UC\x01\x04 version one".to_vec(),
        vec![0x55; 300],
    ];
    for d in &strangers {
        c.on_datagram(t0, d);
    }
    // A RESET for our server id with the wrong token, and a DATA for an unknown session.
    let (id_s, _) = c.channel.as_ref().unwrap().server_ids();
    c.on_datagram(t0, &other_key.reset_key().reset_datagram(id_s));
    let mut data = s.seal(s.session_ids()[0], &[SERVER_KEEPALIVE, 0, 0, 0, 0]);
    data[4] ^= 1;
    c.on_datagram(t0, &data);
    c.on_unreachable(t0);
    assert!(events(&mut c).is_empty());
    assert!(transmits(&mut c).is_empty());
    assert!(c.is_member());
    let st = c.stats();
    assert_eq!(st.ignored_resets, 3);
    assert_eq!(st.icmp_errors, 1);
    assert!(st.unexpected >= 2 && st.malformed >= 2, "{st:?}");
    assert_eq!(s.data_seen.len(), before);
}

#[test]
fn connection_refused_ends_only_a_first_login() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    transmits(&mut c);
    c.on_unreachable(t0);
    assert_eq!(events(&mut c), [Event::Ended(End::Unreachable)]);
}

#[test]
fn a_first_login_without_answer_gives_up_as_in_version_1() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut sends = vec![t0];
    transmits(&mut c);
    let mut now = t0;
    while let Some(t) = c.next_timeout() {
        now = t;
        c.on_timeout(now);
        if !transmits(&mut c).is_empty() {
            sends.push(now);
        }
    }
    assert_eq!(now - t0, LOGIN_TIMEOUT);
    let at: Vec<u128> = sends.iter().map(|t| (*t - t0).as_millis()).collect();
    assert_eq!(at, [0, 500, 1500, 3500]);
    assert_eq!(events(&mut c), [Event::Ended(End::NoAnswer)]);
}

#[test]
fn refused_then_another_name_in_the_same_session() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut s = TestServer::new(1);
    s.on_join = OnJoin::Refuse;
    let ev = pump(&mut c, &mut s, t0, true);
    assert!(matches!(ev.last(), Some(Event::Refused { .. })), "{ev:?}");
    assert!(c.send(t0, &[SAY, 0, 0, 0, 1]).is_err());
    s.on_join = OnJoin::Welcome;
    assert!(c.join(t0, "bob"));
    let ev = pump(&mut c, &mut s, t0, true);
    assert!(matches!(ev[..], [Event::Welcome { .. }]), "{ev:?}");
    assert_eq!(s.session_ids().len(), 1, "one handshake");
    assert_eq!(s.bodies.last().unwrap()[..5], *b"\x01\x03bob");
}

#[test]
fn keepalives_rekeys_and_path_checks_keep_one_counter_sequence_per_key() {
    let t0 = Instant::now();
    let mut s = TestServer::new(1);
    s.rekey_after_s = 3;
    s.timeout_ms = 3000;
    let (mut c, mut s) = member_of(s, t0);
    let mut now = t0;
    for i in 0..160u32 {
        now += Duration::from_millis(250);
        c.on_timeout(now);
        if i % 9 == 0 {
            c.send(now, &[SAY, 0, 0, 0, i as u8 + 1]).unwrap();
        }
        if i % 7 == 0 {
            let ids = s.session_ids();
            let challenge = s.seal(*ids.last().unwrap(), &[0x89, 1, 2, 3, 4, 5, 6, 7, i as u8]);
            c.on_datagram(now, &challenge);
        }
        let ev = pump(&mut c, &mut s, now, true);
        assert!(ev.iter().all(|e| matches!(e, Event::Body(_))), "{ev:?}");
    }
    assert!(c.is_member());
    assert!(s.session_ids().len() >= 3, "rekeyed: {:?}", s.session_ids());
    assert!(s.data_seen.len() > 60, "{} datagrams", s.data_seen.len());
    let mut seen = HashSet::new();
    for (id, counter, _) in &s.data_seen {
        assert!(
            seen.insert((*id, *counter)),
            "counter {counter} repeated on {id:x}"
        );
    }
    let kinds: HashSet<u8> = s.bodies.iter().map(|b| b[0]).collect();
    for k in [
        KEEPALIVE,
        SAY,
        body_type::REKEY_INIT,
        body_type::PATH_RESPONSE,
    ] {
        assert!(kinds.contains(&k), "no body of type {k:#x}: {kinds:?}");
    }
    let echoes: Vec<_> = s.bodies.iter().filter(|b| b[0] == 0x0B).collect();
    assert_eq!(echoes[0][..9], [0x0B, 1, 2, 3, 4, 5, 6, 7, 0]);
}

/// The rekey due at `now`, up to the KEEPALIVE the client sends on the new
/// session at once (the server's answer to it is lost): the old and the new
/// server session ids.
fn rekey_unanswered(
    c: &mut Conn<TestCodec>,
    s: &mut TestServer,
    now: Instant,
) -> (SessionId, SessionId) {
    let old = s.session_ids()[0];
    c.on_timeout(now);
    let rekey_init = transmits(c);
    assert_eq!(rekey_init.len(), 1);
    let response = s.handle(now, &rekey_init[0]);
    assert_eq!(s.bodies.last().unwrap()[0], body_type::REKEY_INIT);
    c.on_datagram(now, &response[0]);
    assert_eq!(events(c), []);
    let new = *s.session_ids().last().unwrap();
    assert_ne!(new, old);
    let keepalive = transmits(c);
    assert_eq!(keepalive.len(), 1, "a datagram on the new session at once");
    assert_eq!(parse_data_header(&keepalive[0]).unwrap().receiver_id, new);
    s.handle(now, &keepalive[0]);
    assert_eq!(s.bodies.last().unwrap()[0], KEEPALIVE);
    (old, new)
}

#[test]
fn a_rekey_moves_sending_to_the_new_session_and_reads_the_old_for_a_while() {
    let t0 = Instant::now();
    let mut s = TestServer::new(1);
    s.rekey_after_s = 5;
    let (mut c, mut s) = member_of(s, t0);
    let now = t0 + Duration::from_secs(5);
    let (old, new) = rekey_unanswered(&mut c, &mut s, now);
    c.send(now, &[SAY, 0, 0, 0, 9]).unwrap();
    let d = transmits(&mut c).remove(0);
    assert_eq!(parse_data_header(&d).unwrap().receiver_id, new);
    // The server still sends on the old session for a while: read.
    let late = s.seal(old, &[0x85, 1]);
    c.on_datagram(now, &late);
    assert_eq!(events(&mut c), [Event::Body(vec![0x85, 1])]);
    // The first datagram on the new one ends the old one.
    c.on_datagram(now, &s.seal(new, &[0x85, 2]));
    c.on_datagram(now, &s.seal(old, &[0x85, 3]));
    assert_eq!(events(&mut c), [Event::Body(vec![0x85, 2])]);
}

#[test]
fn a_leave_ends_at_the_bye() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    c.leave(t0);
    let ev = pump(&mut c, &mut s, t0, true);
    assert_eq!(ev, [Event::Ended(End::Left)]);
    assert_eq!(s.bodies.last().unwrap()[0], LEAVE);
}

#[test]
fn the_old_session_is_forgotten_after_the_grace_period() {
    let t0 = Instant::now();
    let mut s = TestServer::new(1);
    s.rekey_after_s = 5;
    let (mut c, mut s) = member_of(s, t0);
    let now = t0 + Duration::from_secs(5);
    let (old, _) = rekey_unanswered(&mut c, &mut s, now);
    let within = s.seal(old, &[0x85, 1]);
    let after = s.seal(old, &[0x85, 2]);
    c.on_timeout(now + REKEY_GRACE - Duration::from_millis(1));
    c.on_datagram(now, &within);
    assert_eq!(events(&mut c), [Event::Body(vec![0x85, 1])]);
    c.on_timeout(now + REKEY_GRACE);
    c.on_datagram(now + REKEY_GRACE, &after);
    assert_eq!(events(&mut c), []);
    assert_eq!(c.stats().unexpected, 1);
}

#[test]
fn a_rekey_answered_with_another_key_ends_with_the_refusal() {
    let t0 = Instant::now();
    let mut s = TestServer::new(1);
    s.rekey_after_s = 5;
    s.rekey_key = Some(ServerKey::new([2; 32]));
    let (mut c, mut s) = member_of(s, t0);
    let now = t0 + Duration::from_secs(5);
    c.on_timeout(now);
    let ev = pump(&mut c, &mut s, now, true);
    assert_eq!(
        ev,
        [Event::Ended(End::KeyChanged {
            key: public(2),
            pinned: public(1)
        })]
    );
    assert_eq!(c.next_timeout(), None);
}
