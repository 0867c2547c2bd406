//! A member talking to the server: a version-2 connection
//! (`client::conn::Conn` with `SealedBodies`) on a UDP socket of its own.

use super::{body, decode, Ev, Got, LineMeta, QUIET, WAIT};
use std::collections::{HashSet, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use udpchat::client::conn::{Conn, End, Event as ConnEvent, Progress, SealedBodies};
use udpchat::protocol::sealed::{decode_server, encode_nack, ClientMsg, ServerMsg};
use udpchat::session::{parse_data_header, MAX_BODY, MAX_DATAGRAM};

/// A UDP socket on 127.0.0.1 with a read timeout.
pub fn socket() -> UdpSocket {
    socket_on(Ipv4Addr::LOCALHOST)
}

/// A UDP socket on the given loopback address (any of 127/8) with a read timeout.
pub fn socket_on(ip: Ipv4Addr) -> UdpSocket {
    let s = UdpSocket::bind((ip, 0)).expect("bind a client socket");
    s.set_read_timeout(Some(WAIT)).expect("read timeout");
    s
}

/// Random numbers for a connection.
fn random() -> Box<dyn FnMut() -> u64 + Send> {
    Box::new(|| getrandom::u64().expect("random"))
}

/// A member (or a would-be member) talking to the server: a version-2
/// connection on its own socket.
pub struct Client {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub name: String,
    pub conn: Conn<SealedBodies>,
    /// The server key of the handshake.
    pub server_key: Option<[u8; 32]>,
    /// This member's client id and epoch (from its last WELCOME).
    pub client_id: u64,
    pub epoch: u32,
    /// The last SAY/ME/PRIVATE number used.
    pub seq: u32,
    /// The number the next event should carry.
    pub next_event: u32,
    /// The room messages received, in order.
    pub lines: Vec<LineMeta>,
    /// Every (session id, counter) of the server's DATA datagrams.
    counters: HashSet<(u64, u64)>,
    /// Server datagrams received, and their bytes.
    pub datagrams_in: u64,
    pub bytes_in: u64,
    /// Are the server's KEEPALIVEs kept (else dropped: one comes 0.5 s after
    /// every burst of events)?
    pub keepalives: bool,
    pub(super) pending: VecDeque<Got>,
}

impl Client {
    /// A client on a new socket that starts its handshake (not joined).
    pub fn new(server: SocketAddr, name: &str) -> Client {
        Client::on(socket(), server, name)
    }

    /// A client on `sock` that starts its handshake (not joined).
    pub fn on(sock: UdpSocket, server: SocketAddr, name: &str) -> Client {
        let conn = Conn::connect(SealedBodies, name, None, random(), Instant::now());
        Client {
            sock,
            server,
            name: name.into(),
            conn,
            server_key: None,
            client_id: 0,
            epoch: 0,
            seq: 0,
            next_event: 1,
            lines: Vec::new(),
            counters: HashSet::new(),
            datagrams_in: 0,
            bytes_in: 0,
            keepalives: false,
            pending: VecDeque::new(),
        }
    }

    /// Joins as `name`, panicking on a refusal.
    pub fn join(server: SocketAddr, name: &str) -> Client {
        let mut c = Client::new(server, name);
        c.try_join()
            .unwrap_or_else(|r| panic!("{name} refused: {r:?}"));
        c
    }

    /// Waits for the WELCOME or REFUSED of the login in progress.
    pub fn try_join(&mut self) -> Result<Got, Got> {
        let got =
            self.expect(|g| matches!(g, Got::Welcome { .. } | Got::Refused(..) | Got::Ended(_)));
        match got {
            Got::Welcome { client_id, .. } => {
                self.client_id = client_id;
                self.next_event = 1;
                Ok(got)
            }
            other => Err(other),
        }
    }

    /// After a REFUSED: asks for `name` in the same session.
    pub fn try_join_as(&mut self, name: &str) -> Result<Got, Got> {
        self.name = name.into();
        assert!(
            self.conn.join(Instant::now(), name),
            "not waiting for a name"
        );
        self.flush();
        self.try_join()
    }

    /// Sends what the connection has queued.
    pub fn flush(&mut self) {
        while let Some(d) = self.conn.poll_transmit() {
            self.send_raw(&d);
        }
    }

    /// Sends a datagram as it is.
    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .expect("send to the server");
    }

    /// Seals one body and sends it.
    pub fn send(&mut self, msg: &ClientMsg<'_>) {
        self.conn
            .send(Instant::now(), &body(msg))
            .unwrap_or_else(|e| panic!("{}: cannot send: {e:?}", self.name));
        self.flush();
    }

    /// Seals `msg` as the session's next datagram without sending it (for
    /// tests that replay, change or reroute datagrams).
    pub fn seal(&mut self, msg: &ClientMsg<'_>) -> Vec<u8> {
        self.flush();
        self.conn
            .send(Instant::now(), &body(msg))
            .unwrap_or_else(|e| panic!("{}: cannot send: {e:?}", self.name));
        self.conn.poll_transmit().expect("a sealed datagram")
    }

    /// Hands the connection one datagram from the server (its counter must
    /// not repeat), and collects its events.
    pub(super) fn take(&mut self, bytes: &[u8]) {
        assert!(
            bytes.len() <= MAX_DATAGRAM,
            "the server sent {} bytes",
            bytes.len()
        );
        self.datagrams_in += 1;
        self.bytes_in += bytes.len() as u64;
        if let Some(h) = parse_data_header(bytes) {
            assert!(
                self.counters.insert((h.receiver_id, h.counter)),
                "{}: the server used counter {} of session {:x} twice",
                self.name,
                h.counter,
                h.receiver_id
            );
        }
        self.conn.on_datagram(Instant::now(), bytes);
        self.events();
    }

    /// Moves the connection's events into the pending list.
    pub(super) fn events(&mut self) {
        while let Some(e) = self.conn.poll_event() {
            match e {
                ConnEvent::VerifyKey(key) => {
                    self.server_key = Some(key);
                    self.conn.key_checked(Instant::now(), true);
                }
                ConnEvent::Welcome { body, .. } => {
                    // Event numbers start again at 1 after every WELCOME.
                    if let Ok(ServerMsg::Welcome(w)) = decode_server(&body) {
                        self.next_event = 1;
                        self.client_id = w.client_id;
                        self.epoch = w.epoch;
                    }
                    let got = decode(&body, &mut self.lines);
                    self.pending.extend(got);
                }
                ConnEvent::Refused { body }
                | ConnEvent::Body(body)
                | ConnEvent::Ended(End::Bye { body }) => {
                    let got = decode(&body, &mut self.lines);
                    let keep = self.keepalives;
                    self.pending.extend(
                        got.into_iter()
                            .filter(|g| keep || !matches!(g, Got::Keepalive(_))),
                    );
                }
                ConnEvent::Ended(end) => self.pending.push_back(Got::Ended(format!("{end:?}"))),
                ConnEvent::Reconnecting { .. } => self.pending.push_back(Got::Reconnecting),
            }
        }
        // What a RESUME says: the last room message shown, and every
        // message number acknowledged.
        let last_room_seq = self.lines.iter().map(|l| l.room_seq).max().unwrap_or(0);
        self.conn.set_progress(Progress {
            last_event: self.next_event.wrapping_sub(1),
            last_room_seq,
            lowest_unacked: self.seq.wrapping_add(1),
        });
        self.flush();
    }

    /// Runs the connection for up to `limit`: reads the server's datagrams,
    /// keeps its timers. True when a datagram from the server arrived.
    fn read(&mut self, limit: Duration) -> bool {
        let end = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        loop {
            self.flush();
            let now = Instant::now();
            let timer = self.conn.next_timeout();
            let until = timer.map_or(end, |t| t.min(end));
            let wait = until.saturating_duration_since(now);
            self.sock
                .set_read_timeout(Some(wait.max(Duration::from_millis(1))))
                .expect("timeout");
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) if from == self.server => {
                    self.take(&buf[..n]);
                    return true;
                }
                Ok(_) => {} // not from the server: a client must ignore it
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => {}
            }
            let now = Instant::now();
            if timer.is_some_and(|t| now >= t) {
                self.conn.on_timeout(now);
                self.events();
            }
            if now >= end {
                return false;
            }
        }
    }

    /// The first message (pending or arriving within [`WAIT`]) that `pred` accepts.
    pub fn expect(&mut self, pred: impl Fn(&Got) -> bool) -> Got {
        self.expect_within(WAIT, pred)
    }

    /// The first message (pending or arriving within `limit`) that `pred` accepts.
    pub fn expect_within(&mut self, limit: Duration, pred: impl Fn(&Got) -> bool) -> Got {
        let end = Instant::now() + limit;
        loop {
            if let Some(i) = self.pending.iter().position(&pred) {
                let g = self.pending.remove(i).expect("present");
                if let Got::Event(n, _) = &g {
                    self.next_event = n.wrapping_add(1);
                }
                return g;
            }
            let now = Instant::now();
            if now >= end {
                panic!(
                    "{}: nothing expected arrived; pending {:?}",
                    self.name, self.pending
                );
            }
            self.read(end - now);
        }
    }

    /// The next event; its number must follow the previous one.
    pub fn event(&mut self) -> Ev {
        let want = self.next_event;
        match self.expect(|g| matches!(g, Got::Event(..))) {
            Got::Event(n, ev) => {
                assert_eq!(
                    n, want,
                    "{}: event numbers must be contiguous ({ev:?})",
                    self.name
                );
                ev
            }
            _ => unreachable!(),
        }
    }

    /// The next message of any kind.
    pub fn next(&mut self) -> Got {
        self.expect(|_| true)
    }

    /// Keeps the connection running for `d` (answering keepalives, rekeys,
    /// path checks); what arrives stays pending.
    pub fn run_for(&mut self, d: Duration) {
        let end = Instant::now() + d;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            self.read(left);
        }
    }

    /// Asserts that nothing but keepalives arrives for [`QUIET`].
    pub fn silence(&mut self) {
        self.run_for(QUIET);
        self.pending.retain(|g| !matches!(g, Got::Keepalive(_)));
        assert!(
            self.pending.is_empty(),
            "{}: unexpected {:?}",
            self.name,
            self.pending
        );
    }

    /// Takes what arrived so far (and within [`QUIET`]) and forgets it.
    pub fn drain(&mut self) {
        self.run_for(QUIET);
        self.forget();
    }

    /// Takes what is in the socket now, without waiting, and forgets it.
    pub fn drain_now(&mut self) {
        self.sock.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = self.sock.recv_from(&mut buf) {
            if from == self.server {
                self.take(&buf[..n]);
            }
        }
        self.sock.set_nonblocking(false).expect("blocking");
        self.forget();
    }

    /// The next message already pending, if any.
    pub fn try_next(&mut self) -> Option<Got> {
        let g = self.pending.pop_front()?;
        if let Got::Event(n, _) = &g {
            self.next_event = n.wrapping_add(1);
        }
        Some(g)
    }

    /// Forgets what is pending (events counted as received).
    fn forget(&mut self) {
        if let Some(Got::Event(n, _)) = self
            .pending
            .iter()
            .rev()
            .find(|g| matches!(g, Got::Event(..)))
        {
            self.next_event = n.wrapping_add(1);
        }
        self.pending.clear();
    }

    /// Sends a SAY with the next number; returns that number.
    pub fn say(&mut self, text: &str) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMsg::Say { seq, text });
        seq
    }

    /// Sends a SAY with number `seq` (a retransmission, or out of order).
    pub fn say_as(&mut self, seq: u32, text: &str) {
        self.send(&ClientMsg::Say { seq, text });
    }

    /// Says `text` and waits for its ACK.
    pub fn say_acked(&mut self, text: &str) {
        let seq = self.say(text);
        assert_eq!(self.answer_to(seq), Got::Ack(seq));
    }

    /// The ACK or REJECT of message `seq`.
    pub fn answer_to(&mut self, seq: u32) -> Got {
        self.expect(|g| matches!(g, Got::Ack(s) | Got::Reject(s, _) if *s == seq))
    }

    /// Sends a ME with the next number; returns that number.
    pub fn me(&mut self, text: &str) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMsg::Me { seq, text });
        seq
    }

    pub fn private(&mut self, to: &str, text: &str) -> u32 {
        self.seq += 1;
        let seq = self.seq;
        self.send(&ClientMsg::Private { seq, to, text });
        seq
    }

    /// Sends a KEEPALIVE and returns the server's `last_event`.
    pub fn keepalive(&mut self) -> u32 {
        let last_event = self.next_event.wrapping_sub(1);
        self.keepalives = true;
        self.pending.retain(|g| !matches!(g, Got::Keepalive(_)));
        self.send(&ClientMsg::Keepalive { last_event });
        let got = self.expect(|g| matches!(g, Got::Keepalive(_)));
        self.keepalives = false;
        match got {
            Got::Keepalive(n) => n,
            _ => unreachable!(),
        }
    }

    /// Asks again for the events of `ranges` (NACK).
    pub fn nack(&mut self, ranges: &[(u32, u32)]) {
        let mut body = [0u8; MAX_BODY];
        let n = encode_nack(ranges, &mut body).expect("valid ranges");
        self.conn
            .send(Instant::now(), &body[..n])
            .expect("a member sends");
        self.flush();
    }

    /// Asks for a HISTORY_PAGE and waits for it.
    pub fn history(&mut self, before: u64, max: u8) -> Got {
        self.send(&ClientMsg::History { before, max });
        self.expect(|g| matches!(g, Got::History(..)))
    }

    /// Sends one LEAVE (the connection resends it until BYE).
    pub fn leave(&mut self) {
        self.conn.leave(Instant::now());
        self.flush();
    }

    /// Every name in the room, page by page.
    pub fn who(&mut self) -> (u32, Vec<String>) {
        let mut names = Vec::new();
        loop {
            self.send(&ClientMsg::Who {
                start: names.len() as u32,
            });
            match self.expect(|g| matches!(g, Got::Who { .. })) {
                Got::Who {
                    total,
                    names: page,
                    start,
                } => {
                    assert_eq!(start as usize, names.len());
                    if page.is_empty() || names.len() + page.len() >= total as usize {
                        names.extend(page);
                        return (total, names);
                    }
                    names.extend(page);
                }
                _ => unreachable!(),
            }
        }
    }
}
