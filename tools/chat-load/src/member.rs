//! A member of a load run, over protocol version 2: its socket and the
//! library's client state machine ([`Conn`] over [`SealedBodies`]), which
//! seals every datagram the member sends and opens every one it receives.
//! The lock lets the receiver thread open, a sender seal SAYs and the
//! conductor send keepalives, all on the one connection, so each key has
//! one counter sequence.
//!
//! The kernel-ceiling runs need members with no server: [`in_memory`] runs
//! the handshake and the JOIN against the server's side of the session
//! library in this process, so those members open their datagrams through
//! the very same code.

use std::net::UdpSocket;
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Instant;
use udpchat::client::conn::{BodyCodec, Conn, Event, SealedBodies};
use udpchat::protocol::sealed::{ServerMsg, Welcome, WelcomeFlags};
use udpchat::session::{cookie_datagram, parse_init, ServerKey, Session, MAX_BODY, MAX_DATAGRAM};

/// A member's connection.
pub type MemberConn = Conn<SealedBodies>;

/// The member timeout the in-memory WELCOME states (ms): longer than any run.
const IN_MEMORY_TIMEOUT_MS: u32 = 3_600_000;
/// The rekey age the in-memory handshake gives (s): longer than any run.
const IN_MEMORY_REKEY_S: u32 = 3600;

/// One member: its socket (connected to the server) and its connection.
pub struct Member {
    pub sock: UdpSocket,
    conn: Mutex<MemberConn>,
}

impl Member {
    pub fn new(sock: UdpSocket, conn: MemberConn) -> Member {
        Member {
            sock,
            conn: Mutex::new(conn),
        }
    }

    /// The connection, locked.
    pub fn conn(&self) -> MutexGuard<'_, MemberConn> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends every datagram the connection has queued (one that cannot go
    /// now is lost, as on any UDP path).
    pub fn flush(&self, conn: &mut MemberConn) {
        while let Some(d) = conn.poll_transmit() {
            let _ = self.sock.send(&d);
        }
    }

    /// Seals `body` and sends it; false when the member is not in the room.
    pub fn send_body(&self, now: Instant, body: &[u8]) -> bool {
        let mut conn = self.conn();
        let ok = conn.send(now, body).is_ok();
        self.flush(&mut conn);
        ok
    }

    /// Asks the server for the number of its last event to this member
    /// (a KEEPALIVE, answered by one).
    pub fn keepalive(&self, now: Instant) -> bool {
        self.send_body(now, &SealedBodies.keepalive(0))
    }

    /// Datagrams this member's connection could not open or did not expect:
    /// forged, replayed, malformed, for no session of its own.
    pub fn failed_opens(&self) -> u64 {
        let s = self.conn().stats();
        s.forged + s.replays + s.malformed + s.unexpected
    }
}

/// The server key every member must be shown: known in advance (the server
/// chat-load started, from its key file) or the first member's.
#[derive(Debug, Default)]
pub struct KeyPin(OnceLock<[u8; 32]>);

impl KeyPin {
    pub fn known(key: [u8; 32]) -> KeyPin {
        let pin = OnceLock::new();
        let _ = pin.set(key);
        KeyPin(pin)
    }

    /// Is `key` the pinned key (pinning it if none is yet)?
    pub fn check(&self, key: &[u8; 32]) -> bool {
        self.0.get_or_init(|| *key) == key
    }
}

/// Fresh random numbers for a connection (session ids, jitter), from the
/// OS random source.
pub fn random() -> Box<dyn FnMut() -> u64 + Send> {
    Box::new(|| {
        getrandom::u64().unwrap_or_else(|_| {
            // No OS random source: still distinct per call and per process.
            use std::hash::{BuildHasher, RandomState};
            RandomState::new().hash_one(Instant::now())
        })
    })
}

/// A connection for member `name`, starting its first login.
pub fn connect(name: &str, now: Instant) -> MemberConn {
    Conn::connect(SealedBodies, name, None, random(), now)
}

/// A member joined with no server: the handshake and the JOIN run here
/// against `key`'s side of the session, and the member is welcomed as
/// client `client_id`. Returns its connection and the server's session to it.
pub fn in_memory(
    key: &ServerKey,
    name: &str,
    client_id: u64,
    now: Instant,
) -> Result<(MemberConn, Session), String> {
    let fail = |what: &str| format!("in-memory handshake of {name}: {what}");
    let mut conn = connect(name, now);
    let init = conn.poll_transmit().ok_or_else(|| fail("no INIT"))?;
    let id_c = parse_init(&init).ok_or_else(|| fail("bad INIT"))?.id_c;
    conn.on_datagram(now, &cookie_datagram(id_c, &[0x5a; 16]));
    let init = conn
        .poll_transmit()
        .and_then(|d| parse_init(&d))
        .ok_or_else(|| fail("no INIT with the cookie"))?;
    let id_s = loop {
        let id = random()();
        if id != 0 {
            break id;
        }
    };
    let (mut server, response) = key
        .respond(&init, id_s, IN_MEMORY_REKEY_S, now)
        .map_err(|e| fail(&e.to_string()))?;
    conn.on_datagram(now, &response);
    match conn.poll_event() {
        Some(Event::VerifyKey(_)) => conn.key_checked(now, true),
        other => return Err(fail(&format!("{other:?} instead of the server's key"))),
    }
    let join = conn.poll_transmit().ok_or_else(|| fail("no JOIN"))?;
    let mut plain = [0u8; MAX_DATAGRAM];
    server
        .open(&join, &mut plain)
        .map_err(|e| fail(&format!("JOIN: {e:?}")))?;
    let welcome = ServerMsg::Welcome(Welcome {
        flags: WelcomeFlags::NONE,
        members: 1,
        timeout_ms: IN_MEMORY_TIMEOUT_MS,
        epoch: 1,
        room_seq: 0,
        client_id,
        name,
        ticket: &[],
    });
    let mut body = [0u8; MAX_BODY];
    let n = welcome
        .encode(&mut body)
        .map_err(|e| fail(&format!("WELCOME: {e:?}")))?;
    let mut sealed = [0u8; MAX_DATAGRAM];
    let len = server
        .seal(&body[..n], &mut sealed)
        .map_err(|e| fail(&format!("WELCOME: {e:?}")))?;
    conn.on_datagram(now, &sealed[..len]);
    match conn.poll_event() {
        Some(Event::Welcome { .. }) if conn.is_member() => Ok((conn, server)),
        other => Err(fail(&format!("{other:?} instead of WELCOME"))),
    }
}
