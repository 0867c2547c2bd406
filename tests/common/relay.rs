//! A UDP relay in the test process between one client and the server, with
//! seeded, switchable faults in each direction: drop, duplicate, reorder,
//! flip a bit (a changed copy goes first), replay an earlier datagram, forge
//! (a datagram with a genuine clear header, a newer counter and garbage for
//! ciphertext), inject given bytes, move to a new source port toward the
//! server (roaming), and race a copy of each client datagram from a third
//! socket. Threads, not forks; every receive is bounded by [`TICK`] and every
//! thread stops (and is joined) when the relay is dropped.
//!
//! Shared by test files: `#[path = "common/relay.rs"] mod relay;`.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long a relay thread blocks in one receive before it looks at its stop flag.
pub const TICK: Duration = Duration::from_millis(10);
/// How long a datagram held back for reordering waits for the next one before it goes anyway.
pub const HOLD: Duration = Duration::from_millis(30);
/// How many datagrams per direction the relay remembers (for replays and inspection).
pub const KEEP: usize = 50_000;

/// The direction of a datagram through the relay.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// From the client to the server.
    ToServer = 0,
    /// From the server to the client.
    ToClient = 1,
}

/// The probabilities (0.0 ..= 1.0) of each fault, drawn per datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Faults {
    /// The datagram is not forwarded.
    pub drop: f64,
    /// The datagram is forwarded twice.
    pub duplicate: f64,
    /// The datagram is held back and sent after the next one (or after [`HOLD`]).
    pub reorder: f64,
    /// A copy with one random bit flipped is sent first, then the datagram.
    pub flip: f64,
    /// An earlier datagram of the same direction and session (the same first
    /// 12 bytes), or this one, is sent again after this one.
    pub replay: f64,
    /// A forged datagram is sent after this one: this datagram's first 12
    /// bytes (magic, version, kind, receiver id), a counter far ahead, and
    /// random bytes for the rest, of the same length.
    pub forge: f64,
}

impl Faults {
    /// No faults.
    pub const NONE: Faults = Faults {
        drop: 0.0,
        duplicate: 0.0,
        reorder: 0.0,
        flip: 0.0,
        replay: 0.0,
        forge: 0.0,
    };
}

/// What the relay did in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Datagrams received from that side.
    pub received: u64,
    /// Datagrams sent on (duplicates, replays and forgeries included).
    pub sent: u64,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
    pub flipped: u64,
    pub replayed: u64,
    pub forged: u64,
    pub injected: u64,
}

/// A small seeded generator (SplitMix64): reproducible faults, not cryptography.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        let unit = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        p > 0.0 && unit < p
    }

    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = self.next_u64() as u8;
        }
    }
}

struct Side {
    /// This direction's own generator, so the other direction's traffic does not change its draws.
    rng: Rng,
    faults: Faults,
    counts: Counts,
    /// Every datagram received from this side, as received (at most [`KEEP`]).
    log: Vec<Vec<u8>>,
    /// A datagram held back for reordering, and when it must go at the latest.
    held: Option<(Vec<u8>, Instant)>,
}

struct State {
    sides: [Side; 2],
    /// The client's address (the source of the last datagram on the front socket).
    client: Option<SocketAddr>,
    /// The socket that now carries the client's datagrams to the server.
    back: Arc<UdpSocket>,
    /// Every back socket used so far (the server may still answer an old one).
    backs: Vec<Arc<UdpSocket>>,
    /// When set, every client datagram is first sent from this socket.
    copier: Option<Arc<UdpSocket>>,
    /// Bytes sent from the copier socket.
    copier_sent: u64,
}

struct Shared {
    stop: AtomicBool,
    state: Mutex<State>,
    /// The socket the client talks to (the client's "server").
    front: UdpSocket,
    server: SocketAddr,
}

/// A running relay; its threads stop when it is dropped.
pub struct Relay {
    /// The address a client must use as its server.
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

fn bind_loopback() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a relay socket");
    s.set_read_timeout(Some(TICK)).expect("relay read timeout");
    s
}

impl Relay {
    /// A relay toward `server`, with no faults yet and faults drawn from `seed`.
    pub fn start(server: SocketAddr, seed: u64) -> Relay {
        let front = bind_loopback();
        let addr = front.local_addr().expect("relay address");
        let back = Arc::new(bind_loopback());
        back.connect(server)
            .expect("connect the relay to the server");
        let side = |seed| Side {
            rng: Rng::new(seed),
            faults: Faults::NONE,
            counts: Counts::default(),
            log: Vec::new(),
            held: None,
        };
        let shared = Arc::new(Shared {
            stop: AtomicBool::new(false),
            state: Mutex::new(State {
                sides: [side(seed), side(seed ^ 0x5EED_0000_0000_0002)],
                client: None,
                back: back.clone(),
                backs: vec![back.clone()],
                copier: None,
                copier_sent: 0,
            }),
            front,
            server,
        });
        let mut relay = Relay {
            addr,
            shared: shared.clone(),
            threads: Vec::new(),
        };
        relay
            .threads
            .push(std::thread::spawn(move || front_loop(&shared)));
        relay.spawn_back_reader(back);
        relay
    }

    /// The address as text, for `--server`.
    pub fn addr_text(&self) -> String {
        self.addr.to_string()
    }

    fn spawn_back_reader(&mut self, back: Arc<UdpSocket>) {
        let shared = self.shared.clone();
        self.threads
            .push(std::thread::spawn(move || back_loop(&shared, &back)));
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.shared)
    }

    /// Sets the faults of one direction.
    pub fn set(&self, dir: Dir, faults: Faults) {
        self.state().sides[dir as usize].faults = faults;
    }

    /// Sets the same faults in both directions.
    pub fn set_both(&self, faults: Faults) {
        self.set(Dir::ToServer, faults);
        self.set(Dir::ToClient, faults);
    }

    /// What the relay did in one direction so far.
    pub fn counts(&self, dir: Dir) -> Counts {
        self.state().sides[dir as usize].counts
    }

    /// Every datagram received from one side so far, as received.
    pub fn log(&self, dir: Dir) -> Vec<Vec<u8>> {
        self.state().sides[dir as usize].log.clone()
    }

    /// How many datagrams of the clear `kind` (byte 3) came from one side.
    pub fn count_kind(&self, dir: Dir, kind: u8) -> usize {
        self.state().sides[dir as usize]
            .log
            .iter()
            .filter(|d| d.len() >= 4 && d[3] == kind)
            .count()
    }

    /// The last datagram received from one side whose clear kind is `kind`.
    pub fn last_of_kind(&self, dir: Dir, kind: u8) -> Option<Vec<u8>> {
        self.state().sides[dir as usize]
            .log
            .iter()
            .rev()
            .find(|d| d.len() >= 4 && d[3] == kind)
            .cloned()
    }

    /// The client's address as the relay sees it.
    pub fn client(&self) -> Option<SocketAddr> {
        self.state().client
    }

    /// The relay's present source address toward the server.
    pub fn back_addr(&self) -> SocketAddr {
        self.state().back.local_addr().expect("back address")
    }

    /// Sends `bytes` toward one side as if it came through the relay: to the
    /// client from the relay's front address (the client's view of the
    /// server), or to the server from the present back socket.
    pub fn inject(&self, dir: Dir, bytes: &[u8]) {
        let mut st = self.state();
        st.sides[dir as usize].counts.injected += 1;
        send_toward(&self.shared, &st, dir, bytes);
    }

    /// From now on the client's datagrams leave from a new source port
    /// (a NAT rebinding). The old port keeps being read: whatever the server
    /// still sends there reaches the client too. Returns the new address.
    pub fn roam(&mut self) -> SocketAddr {
        let back = Arc::new(bind_loopback());
        back.connect(self.shared.server)
            .expect("connect the relay to the server");
        {
            let mut st = self.state();
            st.back = back.clone();
            st.backs.push(back.clone());
        }
        let addr = back.local_addr().expect("new back address");
        self.spawn_back_reader(back);
        addr
    }

    /// From now on every client datagram is first sent to the server from
    /// `sock` (a third address racing the client with a copy), then
    /// forwarded as usual. The test reads `sock` itself.
    pub fn race_from(&self, sock: &UdpSocket) {
        let sock = sock.try_clone().expect("clone the third socket");
        self.state().copier = Some(Arc::new(sock));
    }

    /// Stops racing; returns the bytes sent from the third socket.
    pub fn stop_race(&self) -> u64 {
        let mut st = self.state();
        st.copier = None;
        st.copier_sent
    }

    /// Bytes sent from the third socket so far.
    pub fn race_sent(&self) -> u64 {
        self.state().copier_sent
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, State> {
    shared.state.lock().unwrap_or_else(|e| e.into_inner())
}

/// Sends one datagram on toward `dir`'s destination (errors are a lost datagram).
fn send_toward(shared: &Shared, st: &State, dir: Dir, bytes: &[u8]) {
    match dir {
        Dir::ToServer => {
            let _ = st.back.send(bytes);
        }
        Dir::ToClient => {
            if let Some(c) = st.client {
                let _ = shared.front.send_to(bytes, c);
            }
        }
    }
}

/// Reads the client's datagrams and passes them on toward the server.
fn front_loop(shared: &Shared) {
    let mut buf = [0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        let got = shared.front.recv_from(&mut buf);
        let mut st = lock(shared);
        if let Ok((n, from)) = got {
            st.client = Some(from);
            if let Some(copier) = st.copier.clone() {
                if copier.send_to(&buf[..n], shared.server).is_ok() {
                    st.copier_sent += n as u64;
                }
            }
            pass(shared, &mut st, Dir::ToServer, &buf[..n]);
        }
        release_due(shared, &mut st, Dir::ToServer);
    }
}

/// Reads the server's datagrams on one back socket and passes them on to the client.
fn back_loop(shared: &Shared, back: &UdpSocket) {
    let mut buf = [0u8; 2048];
    while !shared.stop.load(Ordering::Relaxed) {
        let got = back.recv(&mut buf);
        let mut st = lock(shared);
        if let Ok(n) = got {
            pass(shared, &mut st, Dir::ToClient, &buf[..n]);
        }
        release_due(shared, &mut st, Dir::ToClient);
    }
}

/// Sends a held datagram whose time is up.
fn release_due(shared: &Shared, st: &mut State, dir: Dir) {
    let side = &mut st.sides[dir as usize];
    if matches!(side.held, Some((_, due)) if due <= Instant::now()) {
        let (d, _) = side.held.take().expect("held");
        side.counts.sent += 1;
        send_toward(shared, st, dir, &d);
    }
}

/// Applies the faults of `dir` to one datagram and sends what results.
fn pass(shared: &Shared, st: &mut State, dir: Dir, d: &[u8]) {
    let i = dir as usize;
    let f = st.sides[i].faults;
    let mut rng = st.sides[i].rng.clone();
    st.sides[i].counts.received += 1;
    if st.sides[i].log.len() < KEEP {
        st.sides[i].log.push(d.to_vec());
    }
    let mut out: Vec<Vec<u8>> = Vec::new();
    if rng.chance(f.drop) {
        st.sides[i].counts.dropped += 1;
    } else {
        if rng.chance(f.flip) && !d.is_empty() {
            let mut bad = d.to_vec();
            let bit = rng.below(d.len() * 8);
            bad[bit / 8] ^= 1 << (bit % 8);
            st.sides[i].counts.flipped += 1;
            out.push(bad);
        }
        out.push(d.to_vec());
        if rng.chance(f.duplicate) {
            st.sides[i].counts.duplicated += 1;
            out.push(d.to_vec());
        }
    }
    if rng.chance(f.replay) {
        // One of the last 64 datagrams with the same first 12 bytes (for
        // DATA: the same session), this one included.
        let key = &d[..d.len().min(12)];
        let same: Vec<&Vec<u8>> = st.sides[i]
            .log
            .iter()
            .rev()
            .filter(|o| o.starts_with(key))
            .take(64)
            .collect();
        let old = match same.len() {
            0 => d.to_vec(), // the log is full
            n => same[rng.below(n)].clone(),
        };
        st.sides[i].counts.replayed += 1;
        out.push(old);
    }
    if rng.chance(f.forge) && d.len() >= 20 {
        let mut fake = vec![0u8; d.len()];
        fake[..12].copy_from_slice(&d[..12]);
        let counter = u64::from_be_bytes(d[12..20].try_into().expect("8 bytes"));
        fake[12..20].copy_from_slice(&counter.saturating_add(1 << 20).to_be_bytes());
        rng.fill(&mut fake[20..]);
        st.sides[i].counts.forged += 1;
        out.push(fake);
    }
    // Reordering: hold this datagram back, or send a held one after it.
    let held = st.sides[i].held.take();
    if held.is_none() && !out.is_empty() && rng.chance(f.reorder) {
        st.sides[i].counts.reordered += 1;
        let first = out.remove(0);
        st.sides[i].held = Some((first, Instant::now() + HOLD));
    }
    if let Some((h, _)) = held {
        out.push(h);
    }
    st.sides[i].rng = rng;
    st.sides[i].counts.sent += out.len() as u64;
    for o in &out {
        send_toward(shared, st, dir, o);
    }
}
