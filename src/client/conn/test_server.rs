//! A server in memory for the connection's tests, made of the real session
//! parts (cookie, handshake, rekey, reset); a body codec laid out as
//! PROTOCOL.md says for the few bodies the connection makes and reads; and
//! the harness that moves datagrams between them.

use super::{Conn, Event};
use crate::session::{
    body_type, clear_kind, cookie_datagram, kind, parse_data_header, parse_init, CookieKey,
    ServerKey, Session, SessionId, MAX_DATAGRAM, MIN_CLIENT_DATAGRAM,
};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

pub(super) const JOIN: u8 = 0x01;
pub(super) const RESUME: u8 = 0x02;
pub(super) const SAY: u8 = 0x03;
pub(super) const LEAVE: u8 = 0x07;
pub(super) const KEEPALIVE: u8 = 0x08;
pub(super) const WELCOME: u8 = 0x81;
pub(super) const REFUSED: u8 = 0x82;
pub(super) const ACK: u8 = 0x83;
pub(super) const BYE: u8 = 0x86;
pub(super) const SERVER_KEEPALIVE: u8 = 0x87;

/// The connection's tests use the real body codec.
pub(super) type TestCodec = super::SealedBodies;

/// A WELCOME body for `name` with `ticket`.
pub(super) fn welcome(timeout_ms: u32, resumed: bool, name: &str, ticket: &[u8]) -> Vec<u8> {
    let serves_resume = if ticket.is_empty() { 0 } else { 8 };
    let mut b = vec![WELCOME, if resumed { 2 } else { 0 } | serves_resume];
    b.extend_from_slice(&1u32.to_be_bytes()); // members
    b.extend_from_slice(&timeout_ms.to_be_bytes());
    b.extend_from_slice(&1u32.to_be_bytes()); // epoch
    b.extend_from_slice(&0u64.to_be_bytes()); // room_seq
    b.extend_from_slice(&7u64.to_be_bytes()); // client_id
    b.push(name.len() as u8);
    b.extend_from_slice(name.as_bytes());
    b.push(ticket.len() as u8);
    b.extend_from_slice(ticket);
    b
}

/// What the test server does with a JOIN.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum OnJoin {
    Welcome,
    Refuse,
}

/// A server with one key, answering as PROTOCOL.md says.
pub(super) struct TestServer {
    key: ServerKey,
    cookies: CookieKey,
    sessions: HashMap<SessionId, Session>,
    next_id: SessionId,
    pub(super) rekey_after_s: u32,
    pub(super) timeout_ms: u32,
    pub(super) on_join: OnJoin,
    /// What it does with a RESUME (with the right ticket).
    pub(super) on_resume: OnJoin,
    /// Answers REKEY_INIT with this key instead of its own (a forgery no
    /// real server makes: it shows that the rekey checks the pin).
    pub(super) rekey_key: Option<ServerKey>,
    /// The ticket its WELCOME gives (empty: it does not serve RESUME).
    pub(super) ticket: Vec<u8>,
    /// Every client DATA datagram's receiver id, counter and size.
    pub(super) data_seen: Vec<(SessionId, u64, usize)>,
    /// Every body opened, in order.
    pub(super) bodies: Vec<Vec<u8>>,
}

pub(super) const TICKET: &[u8] = b"ticket-1";

fn addr() -> SocketAddr {
    "127.0.0.1:40000".parse().unwrap()
}

impl TestServer {
    pub(super) fn new(private: u8) -> TestServer {
        TestServer {
            key: ServerKey::new([private; 32]),
            cookies: CookieKey::new([private ^ 0x55; 32]),
            sessions: HashMap::new(),
            next_id: (private as u64) << 32 | 1,
            rekey_after_s: 120,
            timeout_ms: 30_000,
            on_join: OnJoin::Welcome,
            on_resume: OnJoin::Welcome,
            ticket: TICKET.to_vec(),
            rekey_key: None,
            data_seen: Vec::new(),
            bodies: Vec::new(),
        }
    }

    /// Forgets every session (a restart with the same key).
    pub(super) fn restart(&mut self) {
        self.sessions.clear();
    }

    /// The ids of the sessions it has.
    pub(super) fn session_ids(&self) -> Vec<SessionId> {
        let mut ids: Vec<_> = self.sessions.keys().copied().collect();
        ids.sort();
        ids
    }

    /// Seals `body` on the session `id_s`.
    pub(super) fn seal(&mut self, id_s: SessionId, body: &[u8]) -> Vec<u8> {
        let s = self.sessions.get_mut(&id_s).expect("a session");
        let mut out = [0u8; MAX_DATAGRAM];
        let n = s.seal(body, &mut out).unwrap();
        out[..n].to_vec()
    }

    /// One client datagram in, the answers out.
    pub(super) fn handle(&mut self, now: Instant, d: &[u8]) -> Vec<Vec<u8>> {
        match clear_kind(d) {
            Some(kind::INIT) => {
                let init = parse_init(d).expect("a well-formed INIT");
                if !self.cookies.check(1000, addr(), &init.cookie) {
                    let c = self.cookies.make(1000, addr());
                    return vec![cookie_datagram(init.id_c, &c).to_vec()];
                }
                let id_s = self.new_id();
                let (s, r) = self
                    .key
                    .respond(&init, id_s, self.rekey_after_s, now)
                    .unwrap();
                self.sessions.insert(id_s, s);
                vec![r.to_vec()]
            }
            Some(kind::DATA) => self.data(now, d),
            k => panic!("a client sent kind {k:?}"),
        }
    }

    fn new_id(&mut self) -> SessionId {
        self.next_id += 1;
        self.next_id
    }

    fn data(&mut self, now: Instant, d: &[u8]) -> Vec<Vec<u8>> {
        let h = parse_data_header(d).expect("a well-formed DATA");
        assert!(d.len() >= MIN_CLIENT_DATAGRAM, "padded: {} bytes", d.len());
        self.data_seen.push((h.receiver_id, h.counter, d.len()));
        let Some(s) = self.sessions.get_mut(&h.receiver_id) else {
            return vec![self.key.reset_key().reset_datagram(h.receiver_id).to_vec()];
        };
        let mut plain = [0u8; MAX_DATAGRAM];
        let body = s.open(d, &mut plain).expect("the server opens it").body;
        let body = body.to_vec();
        self.bodies.push(body.clone());
        let id = h.receiver_id;
        let answer = match body[0] {
            body_type::REKEY_INIT => {
                let new_id = self.new_id();
                let old = &self.sessions[&id];
                let (new, r) = self
                    .rekey_key
                    .as_ref()
                    .unwrap_or(&self.key)
                    .respond_rekey(old, &body, new_id, self.rekey_after_s, now)
                    .unwrap();
                self.sessions.insert(new_id, new);
                r.to_vec()
            }
            JOIN => match self.on_join {
                OnJoin::Welcome => {
                    let name = std::str::from_utf8(&body[2..2 + body[1] as usize]).unwrap();
                    welcome(self.timeout_ms, false, name, &self.ticket)
                }
                OnJoin::Refuse => vec![REFUSED, 4, 0, 0],
            },
            RESUME => {
                assert_eq!(&body[2..2 + body[1] as usize], TICKET);
                match self.on_resume {
                    OnJoin::Welcome => welcome(self.timeout_ms, true, "alice", &self.ticket),
                    OnJoin::Refuse => vec![REFUSED, 7, 0, 0],
                }
            }
            KEEPALIVE => vec![SERVER_KEEPALIVE, 0, 0, 0, 0],
            LEAVE => vec![BYE, 0, 0, 0, 0, 0, 0, 0],
            SAY => vec![ACK, body[1], body[2], body[3], body[4]],
            _ => return vec![],
        };
        vec![self.seal(id, &answer)]
    }
}

/// A deterministic random source (xorshift), never the OS's in tests.
pub(super) fn random(seed: u64) -> Box<dyn FnMut() -> u64 + Send> {
    let mut x = seed | 1;
    Box::new(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    })
}
pub(super) fn connect(now: Instant, reconnect_timeout: Option<Duration>) -> Conn<TestCodec> {
    Conn::connect(
        TestCodec::default(),
        "alice",
        reconnect_timeout,
        random(7),
        now,
    )
}
pub(super) fn events(c: &mut Conn<TestCodec>) -> Vec<Event> {
    std::iter::from_fn(|| c.poll_event()).collect()
}
pub(super) fn transmits(c: &mut Conn<TestCodec>) -> Vec<Vec<u8>> {
    std::iter::from_fn(|| c.poll_transmit()).collect()
}
/// Moves datagrams both ways until both sides are quiet; answers
/// [`Event::VerifyKey`] with `trust`. Returns the events.
pub(super) fn pump(
    c: &mut Conn<TestCodec>,
    s: &mut TestServer,
    now: Instant,
    trust: bool,
) -> Vec<Event> {
    let mut seen = Vec::new();
    for _ in 0..100 {
        let out = transmits(c);
        let mut new = events(c);
        for e in &new {
            if let Event::VerifyKey(_) = e {
                c.key_checked(now, trust);
            }
        }
        let quiet = out.is_empty() && new.is_empty();
        seen.append(&mut new);
        for d in out {
            for answer in s.handle(now, &d) {
                c.on_datagram(now, &answer);
            }
        }
        if quiet {
            return seen;
        }
    }
    panic!("never quiet: {seen:?}")
}
/// Runs the timers until `until`, pumping at each; returns the events.
pub(super) fn run_until(
    c: &mut Conn<TestCodec>,
    s: &mut TestServer,
    mut now: Instant,
    until: Instant,
) -> (Instant, Vec<Event>) {
    let mut seen = pump(c, s, now, true);
    while let Some(t) = c.next_timeout() {
        if t > until {
            break;
        }
        assert!(t >= now, "a timeout in the past");
        now = t;
        c.on_timeout(now);
        seen.extend(pump(c, s, now, true));
    }
    (until.max(now), seen)
}
pub(super) fn member(now: Instant) -> (Conn<TestCodec>, TestServer) {
    member_of(TestServer::new(1), now)
}
/// A member of `s`, reconnecting for up to 60 s.
pub(super) fn member_of(mut s: TestServer, now: Instant) -> (Conn<TestCodec>, TestServer) {
    let mut c = connect(now, Some(Duration::from_secs(60)));
    let ev = pump(&mut c, &mut s, now, true);
    assert!(
        matches!(ev.last(), Some(Event::Welcome { resumed: false, .. })),
        "{ev:?}"
    );
    assert!(c.is_member());
    (c, s)
}
/// The public key of the test server with private key `[n; 32]`.
pub(super) fn public(n: u8) -> [u8; 32] {
    x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from([n; 32])).to_bytes()
}
pub(super) fn id_c_of(init: &[u8]) -> u64 {
    u64::from_be_bytes(init[4..12].try_into().unwrap())
}
