//! Tests of the handshake and the transport together: both sides in memory.

use super::cookie::{cookie_datagram, parse_cookie};
use super::handshake::parse_init;
use super::rekey::REKEY_RESPONSE_LEN;
use super::transport::{data_header, OpenError, SealError};
use super::*;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

const SERVER_PRIVATE: [u8; 32] = [0x11; 32];
const ID_C: SessionId = 0x0123_4567_89ab_cdef;
const ID_S: SessionId = 0x0fed_cba9_8765_4321;

fn addr() -> SocketAddr {
    "192.0.2.1:4000".parse().unwrap()
}

/// The server's public key, as the client learns it (no pin).
fn server_public() -> [u8; 32] {
    let (_, _, est) = handshake(None);
    est.server_key
}

/// A full handshake: cookie round-trip, INIT, RESPONSE.
fn handshake(pin: Option<&[u8; 32]>) -> (ClientHandshake, Session, Established) {
    handshake_at(pin, Instant::now())
}

fn handshake_at(pin: Option<&[u8; 32]>, now: Instant) -> (ClientHandshake, Session, Established) {
    let key = ServerKey::new(SERVER_PRIVATE);
    let cookies = CookieKey::new([9; 32]);
    let mut client = ClientHandshake::new(ID_C);
    let first = client.init_datagram();
    let init = parse_init(&first).expect("a well-formed INIT");
    assert_eq!(init.cookie, [0; 16]);
    assert!(!cookies.check(1000, addr(), &init.cookie));
    client
        .on_cookie(&cookie_datagram(init.id_c, &cookies.make(1000, addr())))
        .unwrap();
    let second = client.init_datagram();
    assert_eq!(second, client.init_datagram(), "a resend is the same bytes");
    let init = parse_init(&second).unwrap();
    assert!(cookies.check(1010, addr(), &init.cookie));
    let (server, response) = key.respond(&init, ID_S, 120, now).unwrap();
    assert_eq!(response.len(), RESPONSE_SIZE);
    let est = client.on_response(&response, pin, now).unwrap();
    (client, server, est)
}

fn pair() -> (Session, Session) {
    let (_, server, est) = handshake(None);
    (est.session, server)
}

fn seal(s: &mut Session, body: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_DATAGRAM];
    let n = s.seal(body, &mut out).unwrap();
    out[..n].to_vec()
}

fn open(s: &mut Session, d: &[u8]) -> Result<(Vec<u8>, bool), OpenError> {
    let mut plain = [0u8; MAX_DATAGRAM];
    s.open(d, &mut plain).map(|o| (o.body.to_vec(), o.newest))
}

#[test]
fn handshake_gives_both_sides_matching_sessions() {
    let (client, server) = pair();
    assert_eq!((client.local_id(), client.peer_id()), (ID_C, ID_S));
    assert_eq!((server.local_id(), server.peer_id()), (ID_S, ID_C));
    assert!(client.is_client() && !server.is_client());
    assert_eq!(client.rekey_after(), Duration::from_secs(120));
}

#[test]
fn the_pin_is_checked_before_anything_is_sent() {
    let public = server_public();
    let (_, _, est) = handshake(Some(&public));
    assert_eq!(est.server_key, public);
    let now = Instant::now();
    let key = ServerKey::new([0x22; 32]); // another server
    let mut client = ClientHandshake::new(ID_C);
    client.on_cookie(&cookie_datagram(ID_C, &[1; 16])).unwrap();
    let init = parse_init(&client.init_datagram()).unwrap();
    let (_, response) = key.respond(&init, ID_S, 120, now).unwrap();
    match client.on_response(&response, Some(&public), now) {
        Err(HandshakeError::WrongKey(got)) => assert_ne!(got, public),
        other => panic!("{:?}", other.err()),
    }
    assert_eq!(
        client.on_response(&response, None, now).err(),
        Some(HandshakeError::Ignored),
        "the attempt is over"
    );
}

#[test]
fn answers_for_another_id_or_state_are_ignored() {
    let now = Instant::now();
    let mut client = ClientHandshake::new(ID_C);
    assert_eq!(
        client.on_cookie(&cookie_datagram(ID_C + 1, &[1; 16])),
        Err(HandshakeError::Ignored)
    );
    assert_eq!(
        client.on_cookie(b"UC\x02\x02 short"),
        Err(HandshakeError::Ignored)
    );
    let mut response = [0u8; RESPONSE_SIZE];
    response[..4].copy_from_slice(b"UC\x02\x03");
    response[4..12].copy_from_slice(&ID_C.to_be_bytes());
    assert_eq!(
        client.on_response(&response, None, now).err(),
        Some(HandshakeError::Ignored),
        "no INIT sent yet"
    );
    client.on_cookie(&cookie_datagram(ID_C, &[1; 16])).unwrap();
    assert_eq!(
        client.on_cookie(&cookie_datagram(ID_C, &[1; 16])),
        Err(HandshakeError::Ignored),
        "the same cookie again"
    );
    let init = client.init_datagram();
    client.on_cookie(&cookie_datagram(ID_C, &[2; 16])).unwrap();
    assert_ne!(
        client.init_datagram(),
        init,
        "a fresh cookie makes a new INIT"
    );
}

#[test]
fn a_forged_response_costs_a_retry_only() {
    let now = Instant::now();
    let key = ServerKey::new(SERVER_PRIVATE);
    let mut client = ClientHandshake::new(ID_C);
    client.on_cookie(&cookie_datagram(ID_C, &[1; 16])).unwrap();
    let init = parse_init(&client.init_datagram()).unwrap();
    let (_, mut response) = key.respond(&init, ID_S, 120, now).unwrap();
    response[100] ^= 1;
    assert_eq!(
        client.on_response(&response, None, now).err(),
        Some(HandshakeError::Forged)
    );
    let retry = parse_init(&client.init_datagram()).unwrap();
    assert_eq!(retry.cookie, [1; 16]);
    assert_ne!(retry.bytes(), init.bytes(), "a new ephemeral key");
    let (_, response) = key.respond(&retry, ID_S, 120, now).unwrap();
    assert!(client.on_response(&response, None, now).is_ok());
}

#[test]
fn malformed_inits_are_refused() {
    let client = ClientHandshake::new(ID_C);
    let d = client.init_datagram();
    assert!(parse_init(&d).is_some());
    assert!(parse_init(&d[..255]).is_none());
    let mut longer = d.to_vec();
    longer.push(0);
    assert!(parse_init(&longer).is_none());
    let mut zero_id = d;
    zero_id[4..12].fill(0);
    assert!(parse_init(&zero_id).is_none());
    let mut v1 = d;
    v1[2] = 1;
    assert!(parse_init(&v1).is_none());
    // A tampered prologue (the cookie) breaks the handshake: the client's
    // hash covers it.
    let mut c = ClientHandshake::new(ID_C);
    c.on_cookie(&cookie_datagram(ID_C, &[1; 16])).unwrap();
    let mut bytes = c.init_datagram();
    bytes[20] ^= 1;
    let (_, response) = ServerKey::new(SERVER_PRIVATE)
        .respond(&parse_init(&bytes).unwrap(), ID_S, 120, Instant::now())
        .unwrap();
    assert_eq!(
        c.on_response(&response, None, Instant::now()).err(),
        Some(HandshakeError::Forged)
    );
}

#[test]
fn data_both_ways_with_client_padding() {
    let (mut c, mut s) = pair();
    let d = seal(&mut c, b"\x03hi");
    assert_eq!(d.len(), MIN_CLIENT_DATAGRAM, "padded");
    assert_eq!(&d[..20], &data_header(ID_S, 0));
    let (body, newest) = open(&mut s, &d).unwrap();
    assert!(newest);
    assert_eq!(&body[..3], b"\x03hi");
    assert!(body[3..].iter().all(|&b| b == 0));
    let d = seal(&mut s, b"\x87\0\0\0\x01");
    assert_eq!(d.len(), DATA_OVERHEAD + 5, "server bodies are not padded");
    assert_eq!(open(&mut c, &d).unwrap().0, b"\x87\0\0\0\x01");
    let big = vec![7u8; MAX_BODY];
    let d = seal(&mut s, &big);
    assert_eq!(d.len(), MAX_DATAGRAM);
    assert_eq!(open(&mut c, &d).unwrap().0, big);
}

#[test]
fn seal_refuses_bad_lengths_and_an_exhausted_counter() {
    let (mut c, _) = pair();
    let mut out = [0u8; MAX_DATAGRAM];
    assert_eq!(c.seal(b"", &mut out), Err(SealError::BadLength));
    assert_eq!(
        c.seal(&[0; MAX_BODY + 1], &mut out),
        Err(SealError::BadLength)
    );
    c.set_next_counter(REKEY_AFTER_MESSAGES);
    assert_eq!(c.seal(b"x", &mut out), Err(SealError::Exhausted));
}

#[test]
fn counters_never_repeat_and_replays_are_dropped() {
    let (mut c, mut s) = pair();
    let a = seal(&mut c, b"a");
    let b = seal(&mut c, b"b");
    assert_eq!(&a[12..20], &0u64.to_be_bytes());
    assert_eq!(&b[12..20], &1u64.to_be_bytes());
    assert_eq!(c.next_counter(), 2);
    assert!(open(&mut s, &b).unwrap().1, "newest");
    assert!(
        !open(&mut s, &a).unwrap().1,
        "reordered: accepted, not newest"
    );
    assert_eq!(open(&mut s, &a), Err(OpenError::Replay));
    assert_eq!(open(&mut s, &b), Err(OpenError::Replay));
}

#[test]
fn a_counter_below_the_window_is_dropped() {
    let (mut c, mut s) = pair();
    let old = seal(&mut c, b"old");
    c.set_next_counter(REPLAY_WINDOW + 1);
    open(&mut s, &seal(&mut c, b"new")).unwrap();
    assert_eq!(
        open(&mut s, &old),
        Err(OpenError::Replay),
        "counter 0 is now too old"
    );
}

#[test]
fn changed_bytes_are_dropped_and_mark_nothing() {
    let (mut c, mut s) = pair();
    let d = seal(&mut c, b"text");
    let mut huge = d.clone();
    huge[12] ^= 0x40;
    assert_eq!(
        open(&mut s, &huge),
        Err(OpenError::Replay),
        "a counter beyond 2^60"
    );
    for i in [19, 20, 40, d.len() - 1] {
        let mut bad = d.clone();
        bad[i] ^= 0x40;
        assert_eq!(open(&mut s, &bad), Err(OpenError::Forged), "byte {i}");
    }
    let mut bad = d.clone();
    bad[4] ^= 1;
    assert_eq!(open(&mut s, &bad), Err(OpenError::WrongSession));
    for bad in [&d[..MIN_DATA - 1], &d[..3]] {
        assert_eq!(open(&mut s, bad), Err(OpenError::Malformed));
    }
    let mut bad = d.clone();
    bad[3] = kind::RESET;
    assert_eq!(open(&mut s, &bad), Err(OpenError::Malformed));
    assert!(open(&mut s, &d).is_ok(), "failures marked nothing");
}

#[test]
fn a_sealed_header_that_differs_from_the_clear_one_is_forged() {
    let (c, mut s) = pair();
    // Valid AEAD under counter 0, but the sealed copy names counter 1.
    let mut plain = data_header(ID_S, 1).to_vec();
    plain.extend_from_slice(b"payload");
    let mut d = data_header(ID_S, 0).to_vec();
    d.resize(20 + plain.len() + TAG_LEN, 0);
    c.transport()
        .write_message(0, &plain, &mut d[20..])
        .unwrap();
    assert_eq!(open(&mut s, &d), Err(OpenError::Forged));
}

#[test]
fn the_wrong_key_cannot_open() {
    let (mut c1, _) = pair();
    let (_, mut s2) = pair(); // same ids, other ephemeral keys
    assert_eq!(open(&mut s2, &seal(&mut c1, b"x")), Err(OpenError::Forged));
}

#[test]
fn reset_tokens_are_checked_by_id_and_token() {
    let (c, s) = pair();
    let key = ServerKey::new(SERVER_PRIVATE);
    assert!(c.is_reset(&key.reset_key().reset_datagram(ID_S)));
    assert!(
        !c.is_reset(&key.reset_key().reset_datagram(ID_S + 1)),
        "the token of another id"
    );
    let mut wrong = key.reset_key().reset_datagram(ID_S);
    wrong[4..12].copy_from_slice(&(ID_S + 1).to_be_bytes());
    assert!(!c.is_reset(&wrong), "our token under another id");
    assert!(
        !c.is_reset(&ServerKey::new([0x22; 32]).reset_key().reset_datagram(ID_S)),
        "another server's key"
    );
    assert!(
        !s.is_reset(&key.reset_key().reset_datagram(ID_S)),
        "the server holds no token"
    );
}

#[test]
fn rekey_inside_the_session() {
    let now = Instant::now();
    let public = server_public();
    let (_, mut s, est) = handshake_at(None, now);
    let mut c = est.session;
    assert!(!c.needs_rekey(now) && c.needs_rekey(now + Duration::from_secs(120)));
    assert!(
        !c.is_expired(now + Duration::from_secs(179))
            && c.is_expired(now + Duration::from_secs(180))
    );
    let mut rekey = ClientRekey::start(&c, 77).unwrap();
    let d = seal(&mut c, rekey.body());
    let (body, _) = open(&mut s, &d).unwrap();
    let key = ServerKey::new(SERVER_PRIVATE);
    let (mut s2, answer) = key.respond_rekey(&s, &body, 88, 60, now).unwrap();
    assert_eq!(answer.len(), REKEY_RESPONSE_LEN);
    let (body, _) = open(&mut c, &seal(&mut s, &answer)).unwrap();
    let est = rekey.on_response(&body, Some(&public), now).unwrap();
    let mut c2 = est.session;
    assert_eq!((c2.local_id(), c2.peer_id()), (77, 88));
    assert_eq!(c2.rekey_after(), Duration::from_secs(60));
    assert_eq!(
        open(&mut s2, &seal(&mut c2, b"new")).unwrap().0[..3],
        *b"new"
    );
    assert_eq!(open(&mut c2, &seal(&mut s2, b"back")).unwrap().0, b"back");
    assert!(c2.is_reset(&key.reset_key().reset_datagram(88)));
    assert_eq!(
        rekey.on_response(&body, None, now).err(),
        Some(HandshakeError::Ignored),
        "used once"
    );
}

#[test]
fn a_rekey_for_another_session_fails() {
    let now = Instant::now();
    let key = ServerKey::new(SERVER_PRIVATE);
    let (c, s) = pair();
    let mut rekey = ClientRekey::start(&c, 77).unwrap();
    // A changed new_id_c changes the server's prologue: the client's check fails.
    let mut body = rekey.body().to_vec();
    body[1] ^= 1; // another new_id_c: another prologue
    let (_, answer) = key.respond_rekey(&s, &body, 88, 60, now).unwrap();
    assert_eq!(
        rekey.on_response(&answer, None, now).err(),
        Some(HandshakeError::Forged)
    );
    assert_eq!(
        key.respond_rekey(&s, &body[..40], 88, 60, now).err(),
        Some(HandshakeError::Forged)
    );
    assert_eq!(
        ClientRekey::start(&c, 1)
            .unwrap()
            .on_response(&[0x8A; 10], None, now)
            .err(),
        Some(HandshakeError::Forged)
    );
}

#[test]
fn the_cookie_reply_is_smaller_than_init() {
    let d = cookie_datagram(ID_C, &[3; 16]);
    assert!(d.len() < INIT_SIZE);
    assert_eq!(parse_cookie(&d), Some((ID_C, [3; 16])));
}

#[test]
fn no_bytes_make_anything_panic() {
    let mut rng = crate::protocol::TestRng(0x5EED_0F5E_5510_11AA);
    let now = Instant::now();
    let key = ServerKey::new(SERVER_PRIVATE);
    let (mut c, mut s) = pair();
    let mut client = ClientHandshake::new(ID_C);
    client.on_cookie(&cookie_datagram(ID_C, &[1; 16])).unwrap();
    let mut rekey = ClientRekey::start(&c, 5).unwrap();
    let mut path = Path::new(addr());
    let seeds: Vec<Vec<u8>> = vec![
        client.init_datagram().to_vec(),
        cookie_datagram(ID_C, &[2; 16]).to_vec(),
        key.respond(
            &parse_init(&client.init_datagram()).unwrap(),
            ID_S,
            120,
            now,
        )
        .unwrap()
        .1
        .to_vec(),
        seal(&mut s, b"x"),
        seal(&mut c, b"y"),
        key.reset_key().reset_datagram(ID_S).to_vec(),
    ];
    let mut plain = [0u8; MAX_DATAGRAM];
    for _ in 0..20_000 {
        let mut d = if rng.below(3) == 0 {
            let len = rng.below(MAX_DATAGRAM + 50);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..rng.below(3) {
            if !d.is_empty() {
                let i = rng.below(d.len());
                d[i] ^= 1 << rng.below(8);
            }
        }
        if rng.below(8) == 0 {
            d.truncate(rng.below(d.len() + 1));
        }
        let _ = parse_init(&d).map(|i| key.respond(&i, ID_S, 120, now));
        let _ = parse_cookie(&d);
        let _ = reset::parse_reset(&d);
        let _ = transport::parse_data_header(&d);
        assert!(s.open(&d, &mut plain).is_err() || d == seeds[4]);
        let _ = c.open(&d, &mut plain);
        let _ = c.is_reset(&d);
        let _ = client.on_cookie(&d);
        let _ = client.on_response(&d, None, now);
        let _ = key.respond_rekey(&s, &d, 9, 60, now);
        let _ = rekey.on_response(&d, None, now);
        if d.len() >= 8 {
            let _ = path.on_response(addr(), &d[..8].try_into().unwrap());
        }
    }
}
