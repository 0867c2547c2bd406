//! A scripted version-2 server: the real gate with bodies the test chooses.

use super::WAIT;
use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use udpchat::gate::{Action, Config, ConnId, Gate};
use udpchat::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, EventsWriter, Line, LineFlags, MessageId,
    ServerMsg, Welcome, WelcomeFlags,
};
use udpchat::session::{parse_data_header, ServerKey, MAX_BODY, MAX_DATAGRAM};
use udpchat::trust::Fingerprint;

/// The private key of every [`FakeServer`].
pub const FAKE_KEY: [u8; 32] = [7; 32];

/// A version-2 server played from the test, one datagram at a time: the real
/// gate (cookie, handshake, sealing, rekeys, resets) with bodies the test
/// chooses. Clients are named by their connection.
pub struct FakeServer {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
    gate: RefCell<Gate>,
    rng: RefCell<u64>,
    /// (receiver id, counter) of every client DATA datagram, in order.
    pub data_seen: RefCell<Vec<(u64, u64)>>,
    /// The WELCOME's flags (ME served by default).
    pub flags: WelcomeFlags,
    /// The WELCOME's resume ticket (empty: RESUME not served).
    pub ticket: Vec<u8>,
}

impl Default for FakeServer {
    fn default() -> Self {
        Self::new()
    }
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

impl FakeServer {
    pub fn new() -> FakeServer {
        Self::with_key(FAKE_KEY)
    }

    /// A fake server with the X25519 private key `key`.
    pub fn with_key(key: [u8; 32]) -> FakeServer {
        Self::with_key_on(key, "127.0.0.1:0")
    }

    /// A fake server with the X25519 private key `key` on `addr` (another
    /// server in the place of one that went away).
    pub fn with_key_on(key: [u8; 32], addr: &str) -> FakeServer {
        let sock = UdpSocket::bind(addr).unwrap();
        let addr = sock.local_addr().unwrap();
        let mut seed = 0x5eed_0000_0000_0001u64 ^ u64::from(key[0]);
        let mut rng = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let gate = Gate::new(
            Config::default(),
            ServerKey::new(key),
            [key[0] ^ 0x55; 32],
            Instant::now(),
            &mut rng,
        );
        FakeServer {
            sock,
            addr,
            gate: RefCell::new(gate),
            rng: RefCell::new(rng()),
            data_seen: RefCell::new(Vec::new()),
            flags: WelcomeFlags::ME,
            ticket: Vec::new(),
        }
    }

    pub fn addr_text(&self) -> String {
        self.addr.to_string()
    }

    /// The fingerprint of the default fake key (for `--server-key`).
    pub fn fingerprint(&self) -> String {
        Fingerprint::of(udpchat::trust::ServerKey::from_secret(FAKE_KEY).public()).to_string()
    }

    fn random(&self) -> u64 {
        let mut s = self.rng.borrow_mut();
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        *s
    }

    /// The next body from a client (the gate answers handshakes on the
    /// way), within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<(Vec<u8>, ConnId)> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            let Ok((n, from)) = self.sock.recv_from(&mut buf) else {
                continue;
            };
            if let Some(h) = parse_data_header(&buf[..n]) {
                self.data_seen.borrow_mut().push((h.receiver_id, h.counter));
            }
            let mut seed = self.random();
            let mut rng = move || {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1);
                seed
            };
            let actions = self.gate.borrow_mut().handle(
                Instant::now(),
                unix_secs(),
                from,
                &buf[..n],
                &mut rng,
            );
            let mut body = None;
            for a in actions {
                match a {
                    Action::Send { to, bytes } => {
                        let _ = self.sock.send_to(&bytes, to);
                    }
                    Action::Deliver { conn, body: b, .. } => body = Some((b, conn)),
                    _ => {}
                }
            }
            if body.is_some() {
                return body;
            }
        }
    }

    /// The next body for which `want` holds (others are dropped), within `limit`.
    pub fn recv_where(
        &self,
        limit: Duration,
        want: impl Fn(&ClientMsg<'_>) -> bool,
    ) -> Option<(Vec<u8>, ConnId)> {
        let deadline = Instant::now() + limit;
        loop {
            let (d, from) = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            if let Ok(m) = decode_client(&d) {
                if want(&m) {
                    return Some((d, from));
                }
            }
        }
    }

    /// Seals `body` for `to` and sends it.
    pub fn send_body(&self, to: ConnId, body: &[u8]) {
        let mut out = [0u8; MAX_DATAGRAM];
        let (n, addr) = self
            .gate
            .borrow_mut()
            .seal_to(Instant::now(), to, body, &mut out)
            .expect("a session to seal on");
        self.sock.send_to(&out[..n], addr).unwrap();
    }

    pub fn send(&self, to: ConnId, msg: &ServerMsg<'_>) {
        let mut body = [0u8; MAX_BODY];
        let n = msg.encode(&mut body).expect("a valid body");
        self.send_body(to, &body[..n]);
    }

    /// Forgets `to`'s session: its next datagram draws a RESET.
    pub fn forget(&self, to: ConnId) {
        self.gate.borrow_mut().close(to);
    }

    /// Sends `events`, numbered from `first`, in one EVENTS body.
    pub fn events(&self, to: ConnId, first: u32, events: &[Event<'_>]) {
        let mut body = [0u8; MAX_BODY];
        let mut w = EventsWriter::events(&mut body, first).unwrap();
        for e in events {
            assert!(w.push(e).unwrap(), "the events fit one body");
        }
        let n = w.finish().unwrap();
        self.send_body(to, &body[..n]);
    }

    /// Sends one SAID event, number `n`, from the member `from`.
    pub fn said(&self, to: ConnId, n: u32, from: &str, text: &str) {
        self.events(to, n, &[Event::Said(line(n, from, text))]);
    }

    /// Waits for a SAY (panics with `what` if none comes within [`WAIT`]) and
    /// asserts that it is exactly this one.
    #[track_caller]
    pub fn expect_say(&self, what: &str, seq: u32, text: &str) {
        let is_say = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Say { .. });
        let (d, _) = self.recv_where(WAIT, is_say).expect(what);
        assert_eq!(decode_client(&d).unwrap(), ClientMsg::Say { seq, text });
    }

    /// Waits for a LEAVE (panics with `what` if none comes within [`WAIT`])
    /// and answers it with BYE (left). Returns who left.
    #[track_caller]
    pub fn answer_leave(&self, what: &str) -> ConnId {
        let (_, from) = self.recv_where(WAIT, is_leave).expect(what);
        self.bye(from, ByeReason::Left, "");
        from
    }

    /// Sends BYE with `reason` and `text`.
    pub fn bye(&self, to: ConnId, reason: ByeReason, text: &str) {
        self.send(
            to,
            &ServerMsg::Bye {
                reason,
                missed: 0,
                text,
            },
        );
    }

    /// Plays the login: the handshake, then JOIN answered with WELCOME.
    /// Returns the client's connection.
    pub fn accept(&self, timeout_ms: u32) -> ConnId {
        let is_join = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Join { .. });
        let (d, from) = self.recv_where(WAIT, is_join).expect("a JOIN");
        let ClientMsg::Join { name } = decode_client(&d).unwrap() else {
            unreachable!()
        };
        self.welcome(from, name, timeout_ms);
        from
    }

    /// Lets `to` in as `name`.
    pub fn welcome(&self, to: ConnId, name: &str, timeout_ms: u32) {
        self.welcome_as(to, name, timeout_ms, false, 0);
    }

    /// Lets `to` in as `name` (with flag *resumed* when `resumed`), the
    /// room's last message being `room_seq`; epoch 1, client id 7, the
    /// server's flags and ticket.
    pub fn welcome_as(
        &self,
        to: ConnId,
        name: &str,
        timeout_ms: u32,
        resumed: bool,
        room_seq: u64,
    ) {
        self.gate.borrow_mut().admit(to);
        let mut flags = self.flags;
        if resumed {
            flags = flags.with(WelcomeFlags::RESUMED);
        }
        if !self.ticket.is_empty() {
            flags = flags.with(WelcomeFlags::RESUME);
        }
        self.send(
            to,
            &ServerMsg::Welcome(Welcome {
                flags,
                members: 2,
                timeout_ms,
                epoch: 1,
                room_seq,
                client_id: 7,
                name,
                ticket: &self.ticket,
            }),
        );
    }
}

/// A room line number `n` from `from` (client id 99, its seq `n`).
pub fn line<'a>(n: u32, from: &'a str, text: &'a str) -> Line<'a> {
    line_with(n, from, text, LineFlags::NONE)
}

/// [`line`] with these flags (history, catch-up).
pub fn line_with<'a>(n: u32, from: &'a str, text: &'a str, flags: LineFlags) -> Line<'a> {
    Line {
        room_seq: u64::from(n),
        time_ms: 1_764_547_200_000,
        flags,
        id: MessageId {
            client_id: 99,
            seq: n,
        },
        from,
        text,
    }
}

/// Is this body a LEAVE?
pub fn is_leave(m: &ClientMsg<'_>) -> bool {
    matches!(m, ClientMsg::Leave)
}
