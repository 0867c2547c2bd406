//! The gate's first-contact rules: cookies, handshakes and their budgets,
//! half-open sessions, stateless resets. Fixed time, seeded randomness.

use super::*;
use crate::protocol::TestRng;
use crate::session::{
    parse_cookie, parse_reset, ClientHandshake, ClientRekey, ResetKey, Session, COOKIE_SIZE,
    INIT_SIZE, RESPONSE_SIZE,
};
use std::time::Duration;

pub(super) const SERVER_PRIVATE: [u8; 32] = [0x42; 32];

pub(super) fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// A gate with its clock and randomness.
pub(super) struct T {
    pub(super) gate: Gate,
    pub(super) now: Instant,
    pub(super) unix: u64,
    rng: TestRng,
}

/// A client that finished its handshake.
pub(super) struct Client {
    pub(super) addr: SocketAddr,
    pub(super) session: Session,
    pub(super) conn: ConnId,
}

pub(super) fn sends(actions: &[Action]) -> Vec<(SocketAddr, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { to, bytes } => Some((*to, bytes.clone())),
            _ => None,
        })
        .collect()
}

pub(super) fn delivered(actions: &[Action]) -> Vec<(ConnId, SocketAddr, Vec<u8>)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Deliver { conn, addr, body } => Some((*conn, *addr, body.clone())),
            _ => None,
        })
        .collect()
}

impl T {
    pub(super) fn new(cfg: Config) -> Self {
        let now = Instant::now();
        let mut rng = TestRng(0x5EED_6A7E_0000_0001);
        let gate = Gate::new(
            cfg,
            ServerKey::new(SERVER_PRIVATE),
            [7; 32],
            now,
            &mut || rng.next(),
        );
        T {
            gate,
            now,
            unix: 1_764_547_200,
            rng,
        }
    }

    pub(super) fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
    }

    pub(super) fn send(&mut self, from: SocketAddr, datagram: &[u8]) -> Vec<Action> {
        let rng = &mut self.rng;
        self.gate
            .handle(self.now, self.unix, from, datagram, &mut || rng.next())
    }

    /// The cookie round-trip and the handshake: the client's session.
    pub(super) fn handshake(&mut self, from: SocketAddr, id_c: u64) -> Session {
        let mut hs = ClientHandshake::new(id_c);
        let got = sends(&self.send(from, &hs.init_datagram()));
        assert_eq!(got.len(), 1, "one COOKIE");
        hs.on_cookie(&got[0].1).unwrap();
        let got = sends(&self.send(from, &hs.init_datagram()));
        assert_eq!(got.len(), 1, "one RESPONSE");
        assert_eq!(got[0].1.len(), RESPONSE_SIZE);
        hs.on_response(&got[0].1, None, self.now).unwrap().session
    }

    /// A handshake and a first DATA (as a JOIN would be): a client with its
    /// connection, which the room admits.
    pub(super) fn member(&mut self, from: SocketAddr, id_c: u64) -> Client {
        let mut session = self.handshake(from, id_c);
        let d = seal(&mut session, b"\x01\x05alice");
        let got = delivered(&self.send(from, &d));
        assert_eq!(got.len(), 1);
        let (conn, at, body) = got[0].clone();
        assert_eq!(at, from);
        assert_eq!(&body[..7], b"\x01\x05alice");
        assert!(self.gate.admit(conn));
        Client {
            addr: from,
            session,
            conn,
        }
    }
}

pub(super) fn seal(s: &mut Session, body: &[u8]) -> Vec<u8> {
    let mut out = [0u8; MAX_DATAGRAM];
    let n = s.seal(body, &mut out).unwrap();
    out[..n].to_vec()
}

pub(super) fn open(s: &mut Session, d: &[u8]) -> Vec<u8> {
    let mut plain = [0u8; MAX_DATAGRAM];
    s.open(d, &mut plain).unwrap().body.to_vec()
}

fn zero_init(id_c: u64) -> [u8; INIT_SIZE] {
    ClientHandshake::new(id_c).init_datagram()
}

/// Every answer to a stranger is one datagram, smaller than what it answers.
fn assert_no_amplification(datagram: &[u8], actions: &[Action]) {
    let s = sends(actions);
    assert!(s.len() <= 1, "{actions:?}");
    assert!(s.iter().all(|(_, b)| b.len() < datagram.len()));
}

#[test]
fn the_cookie_round_trip_comes_before_any_state_or_diffie_hellman() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut hs = ClientHandshake::new(11);
    let first = hs.init_datagram();
    let got = t.send(a, &first);
    assert_no_amplification(&first, &got);
    let (to, cookie) = sends(&got).remove(0);
    assert_eq!((to, cookie.len()), (a, COOKIE_SIZE));
    assert_eq!(parse_cookie(&cookie).unwrap().0, 11);
    assert_eq!((t.gate.conn_count(), t.gate.stats.handshakes), (0, 0));
    // A wrong cookie draws a fresh COOKIE, and still no state.
    let mut other = ClientHandshake::new(11);
    other
        .on_cookie(&crate::session::cookie_datagram(11, &[9; 16]))
        .unwrap();
    let wrong = other.init_datagram();
    let got = t.send(a, &wrong);
    assert_no_amplification(&wrong, &got);
    assert_eq!(sends(&got)[0].1, cookie, "the same cookie again");
    assert_eq!((t.gate.conn_count(), t.gate.stats.handshakes), (0, 0));
    // The cookie from another address is wrong here.
    hs.on_cookie(&cookie).unwrap();
    let good = hs.init_datagram();
    let got = t.send(addr("192.0.2.1:4001"), &good);
    assert_eq!(sends(&got)[0].1.len(), COOKIE_SIZE);
    assert_eq!(t.gate.stats.handshakes, 0);
    // The echo from the right address: the handshake.
    let got = t.send(a, &good);
    assert_no_amplification(&good, &got);
    let response = sends(&got).remove(0).1;
    assert_eq!(response.len(), RESPONSE_SIZE);
    assert!(hs.on_response(&response, None, t.now).is_ok());
    assert_eq!((t.gate.conn_count(), t.gate.stats.handshakes), (1, 1));
}

#[test]
fn a_stale_cookie_draws_a_fresh_one() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut hs = ClientHandshake::new(5);
    let c = sends(&t.send(a, &hs.init_datagram())).remove(0).1;
    hs.on_cookie(&c).unwrap();
    t.advance(Duration::from_secs(61));
    let got = sends(&t.send(a, &hs.init_datagram()));
    assert_eq!(got[0].1.len(), COOKIE_SIZE);
    assert_ne!(got[0].1, c);
    assert_eq!(t.gate.stats.handshakes, 0);
    hs.on_cookie(&got[0].1).unwrap();
    let got = sends(&t.send(a, &hs.init_datagram()));
    assert_eq!(got[0].1.len(), RESPONSE_SIZE);
}

#[test]
fn a_retransmitted_init_gets_the_stored_response_without_new_diffie_hellman() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut hs = ClientHandshake::new(5);
    let c = sends(&t.send(a, &hs.init_datagram())).remove(0).1;
    hs.on_cookie(&c).unwrap();
    let init = hs.init_datagram();
    let r1 = sends(&t.send(a, &init)).remove(0).1;
    let r2 = sends(&t.send(a, &init)).remove(0).1;
    assert_eq!(r1, r2);
    assert_eq!(t.gate.stats.handshakes, 1);
    assert_eq!(t.gate.stats.responses_resent, 1);
    assert_eq!(t.gate.conn_count(), 1);
    // The same bytes from another address are a new handshake's INIT there
    // (whose cookie is wrong): a COOKIE, no state.
    let got = sends(&t.send(addr("192.0.2.1:4001"), &init));
    assert_eq!(got[0].1.len(), COOKIE_SIZE);
    assert_eq!(t.gate.conn_count(), 1);
    // A new handshake with the same id (new ephemeral key) replaces the
    // half-open session instead of adding one.
    let mut again = ClientHandshake::new(5);
    again.on_cookie(&c).unwrap();
    let got = t.send(a, &again.init_datagram());
    assert_eq!(got[0], Action::Gone { conn: ConnId(1) });
    assert_eq!(sends(&got)[0].1.len(), RESPONSE_SIZE);
    assert_eq!((t.gate.conn_count(), t.gate.stats.handshakes), (1, 2));
}

#[test]
fn a_half_open_session_unused_for_10_s_is_dropped() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut s = t.handshake(a, 5);
    assert_eq!(t.gate.conn_count(), 1);
    let deadline = t.gate.next_deadline().unwrap();
    assert_eq!(deadline, t.now + Duration::from_secs(10));
    t.advance(Duration::from_millis(9_999));
    assert!(t.gate.expire(t.now).is_empty());
    t.advance(Duration::from_millis(1));
    assert!(matches!(t.gate.expire(t.now)[..], [Action::Gone { .. }]));
    assert_eq!(t.gate.conn_count(), 0);
    assert_eq!(t.gate.stats.half_open_dropped, 1);
    // Its id is no longer live: a RESET with the token the client holds.
    let d = seal(&mut s, b"\x01\x05alice");
    let got = sends(&t.send(a, &d));
    assert_eq!(got.len(), 1);
    assert!(s.is_reset(&got[0].1));
}

#[test]
fn half_open_sessions_are_capped_per_ip_and_in_all() {
    let mut t = T::new(Config::default());
    for port in 0..16 {
        t.handshake(
            SocketAddr::from(([192, 0, 2, 1], 5000 + port)),
            1 + port as u64,
        );
    }
    let mut hs = ClientHandshake::new(99);
    let a = addr("192.0.2.1:6000");
    let c = sends(&t.send(a, &hs.init_datagram())).remove(0).1;
    hs.on_cookie(&c).unwrap();
    let got = t.send(a, &hs.init_datagram());
    assert_eq!(got, vec![Action::Dropped(DropReason::OverBudget)]);
    assert_eq!(t.gate.stats.handshakes, 16, "no Diffie-Hellman spent on it");
    // A member no longer counts: one more from that IP.
    assert!(t.gate.admit(ConnId(1)));
    t.handshake(addr("192.0.2.1:6001"), 98);
    // An IPv6 /64 is one source; another /64 is another.
    for n in 0..16u16 {
        let a = SocketAddr::from(([0x2001, 0xdb8, 0, 0, n, 0, 0, 1], 1));
        t.handshake(a, 1000 + u64::from(n));
    }
    let mut hs = ClientHandshake::new(99);
    let a = addr("[2001:db8::ffff:1]:1");
    let c = sends(&t.send(a, &hs.init_datagram())).remove(0).1;
    hs.on_cookie(&c).unwrap();
    assert_eq!(
        t.send(a, &hs.init_datagram()),
        vec![Action::Dropped(DropReason::OverBudget)]
    );
    t.handshake(addr("[2001:db8:0:1::1]:1"), 2000);
    // In all: with a total of 3, a fourth handshake evicts the oldest.
    let mut t = T::new(Config {
        half_open_total: 3,
        ..Config::default()
    });
    for n in 1..=4u8 {
        t.handshake(SocketAddr::from(([198, 51, 100, n], 1)), n.into());
    }
    assert_eq!(t.gate.conn_count(), 3);
    assert_eq!(t.gate.stats.half_open_dropped, 1);
    assert!(t.gate.addr(ConnId(1)).is_none(), "the oldest went");
    // An admitted member does not count.
    t.gate.admit(ConnId(2));
    t.handshake(addr("198.51.100.9:1"), 9);
    assert!(t.gate.addr(ConnId(2)).is_some());
}

#[test]
fn handshakes_are_limited_per_ip_and_in_all() {
    let mut t = T::new(Config {
        half_open_per_ip: 1000,
        ..Config::default()
    });
    let try_one = |t: &mut T, a: SocketAddr, id: u64| {
        let mut hs = ClientHandshake::new(id);
        let c = sends(&t.send(a, &hs.init_datagram())).remove(0).1;
        hs.on_cookie(&c).unwrap();
        sends(&t.send(a, &hs.init_datagram())).len() == 1
    };
    let ok = (0..30)
        .filter(|&p| {
            try_one(
                &mut t,
                SocketAddr::from(([192, 0, 2, 1], 7000 + p)),
                1 + p as u64,
            )
        })
        .count();
    assert_eq!(ok, 20, "the burst of one IP");
    assert!(try_one(&mut t, addr("192.0.2.2:1"), 100), "another IP");
    t.advance(Duration::from_secs(1));
    let ok = (0..30)
        .filter(|&p| {
            try_one(
                &mut t,
                SocketAddr::from(([192, 0, 2, 1], 8000 + p)),
                200 + p as u64,
            )
        })
        .count();
    assert_eq!(ok, 10, "10 a second");
    // The global budget; members' traffic and rekeys never wait behind it.
    let mut t = T::new(Config {
        handshake_rate: 5.0,
        ..Config::default()
    });
    let mut member = t.member(addr("192.0.2.99:1"), 77);
    let ok = (0..10u8)
        .filter(|&n| {
            try_one(
                &mut t,
                SocketAddr::from(([203, 0, 113, n], 1)),
                1 + n as u64,
            )
        })
        .count();
    assert_eq!(ok, 4);
    let d = seal(&mut member.session, b"\x08\0\0\0\0");
    assert_eq!(delivered(&t.send(member.addr, &d)).len(), 1);
    let r = ClientRekey::start(&member.session, 78).unwrap();
    let d = seal(&mut member.session, r.body());
    assert_eq!(sends(&t.send(member.addr, &d)).len(), 1, "REKEY_RESPONSE");
}

#[test]
fn spoofed_first_contact_from_a_victims_ip_does_not_stop_its_handshake() {
    let mut t = T::new(Config::default());
    let victim = addr("192.0.2.7:40000");
    let mut spoof = TestRng(99);
    let mut hs = ClientHandshake::new(0xacce55);
    let mut session = None;
    let (mut next_try, mut backoff) = (t.now + Duration::from_millis(300), 500);
    // 1,000 spoofed INITs a second carrying the victim's IP (random ports,
    // zero or made-up cookies) for 4.5 s; the victim resends as a client does.
    for ms in 0..4500u64 {
        let port = 1024 + (spoof.next() % 60000) as u16;
        let mut d = zero_init(spoof.next() | 1);
        if ms % 2 == 0 {
            d[12..28].copy_from_slice(&spoof.next().to_be_bytes().repeat(2));
            d[28] = 1;
        }
        let got = t.send(SocketAddr::from(([192, 0, 2, 7], port)), &d);
        assert_no_amplification(&d, &got);
        if session.is_none() && t.now >= next_try {
            for (to, bytes) in sends(&t.send(victim, &hs.init_datagram())) {
                assert_eq!(to, victim);
                if hs.on_cookie(&bytes).is_ok() {
                    next_try = t.now; // send the INIT with the cookie at once
                } else if let Ok(est) = hs.on_response(&bytes, None, t.now) {
                    session = Some(est.session);
                }
            }
            if session.is_none() && next_try != t.now {
                next_try = t.now + Duration::from_millis(backoff);
                backoff = (backoff * 2).min(2000);
            }
        }
        t.advance(Duration::from_millis(1));
    }
    let mut s = session.expect("the victim's handshake completed");
    assert_eq!(t.gate.stats.handshakes, 1, "spoofers made none");
    let got = delivered(&t.send(victim, &seal(&mut s, b"\x01\x05alice")));
    assert_eq!(got.len(), 1);
}

#[test]
fn resets_only_for_unknown_ids_and_within_the_rate() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let mut c = t.member(a, 5);
    // A datagram for a live id that fails authentication: no RESET.
    let mut d = seal(&mut c.session, b"\x08\0\0\0\0");
    d[30] ^= 1;
    assert_eq!(t.send(a, &d), vec![Action::Dropped(DropReason::Forged)]);
    assert_eq!(t.gate.stats.resets, 0);
    // An unknown id: the RESET of that id, smaller than the datagram.
    let mut unknown = d.clone();
    unknown[4..12].copy_from_slice(&0xdead_beef_u64.to_be_bytes());
    let got = sends(&t.send(a, &unknown));
    assert_eq!(got.len(), 1);
    assert!(got[0].1.len() < unknown.len());
    let token = ResetKey::from_static(&SERVER_PRIVATE).token(0xdead_beef);
    assert_eq!(parse_reset(&got[0].1), Some((0xdead_beef, token)));
    // Never larger: a 56-byte DATA is malformed, not answered.
    assert_eq!(
        t.send(a, &unknown[..56]),
        vec![Action::Dropped(DropReason::Malformed)]
    );
    // After close, the member's own id draws its RESET.
    t.gate.close(c.conn);
    let got = sends(&t.send(a, &seal(&mut c.session, b"\x07")));
    assert!(c.session.is_reset(&got[0].1));
    // The stranger rate: 40 at once per source address, then 20 a second.
    let b = addr("198.51.100.1:9");
    let n = (0..100)
        .filter(|_| !sends(&t.send(b, &unknown)).is_empty())
        .count();
    assert_eq!(n, 40);
    assert_eq!(t.gate.stats.over_budget, 60);
}

#[test]
fn malformed_datagrams_are_dropped_counted_and_never_answered() {
    let mut t = T::new(Config::default());
    let a = addr("192.0.2.1:4000");
    let init = zero_init(5);
    let mut bad_version = init;
    bad_version[2] = 1;
    let mut zero_id = init;
    zero_id[4..12].fill(0);
    let mut not_zeros = init;
    not_zeros[100] = 1;
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"UC".to_vec(),
        init[..255].to_vec(),
        [&init[..], &[0]].concat(),
        bad_version.to_vec(),
        zero_id.to_vec(),
        not_zeros.to_vec(),
        b"UC\x02\x05 a reset to the server...".to_vec(),
        b"UC\x02\x02 a cookie to the server..".to_vec(),
        [&b"UC\x02\x04"[..], &[0; 1197]].concat(),
    ];
    for d in &cases {
        assert_eq!(
            t.send(a, d),
            vec![Action::Dropped(DropReason::Malformed)],
            "{d:?}"
        );
    }
    assert_eq!(t.gate.stats.malformed, cases.len() as u64);
    assert_eq!(t.gate.stats.datagrams_in, cases.len() as u64);
}
