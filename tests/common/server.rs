//! Test harness for the real `chat-server` binary: start it (stdin piped,
//! `--bind 127.0.0.1:0`), read its `listening on ADDR` line, talk to it with
//! plain UDP sockets and the library's codec, and always kill and reap it.
//!
//! Shared by test files: `#[path = "common/server.rs"] mod server_harness;`.
//! Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use udpchat::client::login::{Login, Step};
use udpchat::protocol::{
    decode_server, ByeReason, ClientMsg, Cookie, Event, LeftReason, RefuseReason, RejectReason,
    ServerMsg, Token,
};

/// The server binary under test.
pub const BIN: &str = env!("CARGO_BIN_EXE_chat-server");
/// The bound on every wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(5);
/// How long to listen when asserting that nothing arrives.
pub const QUIET: Duration = Duration::from_millis(300);

/// A running chat-server, killed and reaped on drop.
pub struct Server {
    child: Child,
    /// The address from its `listening on` line.
    pub addr: SocketAddr,
    stdin: Option<ChildStdin>,
    stderr: Receiver<String>,
    stdout: Receiver<String>,
    /// Every stderr line read so far (the first is `listening on …`).
    pub log: Vec<String>,
}

fn lines_of(r: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Server {
    /// Starts `chat-server --bind 127.0.0.1:0 ARGS` with stdin piped.
    pub fn start(args: &[&str]) -> Server {
        let mut cmd = Command::new(BIN);
        cmd.args(["--bind", "127.0.0.1:0"]).args(args);
        Server::spawn(cmd, Stdio::piped())
    }

    /// Starts the command given (the server binary or a wrapper of it).
    /// The server's process id.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn spawn(mut cmd: Command, stdin: Stdio) -> Server {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-server");
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stdin = child.stdin.take();
        let mut s = Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdin,
            stderr,
            stdout,
            log: Vec::new(),
        };
        let first = s.next_stderr().expect("chat-server printed nothing");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stderr line is {first:?}"));
        s.addr = addr.parse().expect("listening address");
        if s.addr.ip().is_unspecified() {
            s.addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
        s
    }

    fn next_stderr(&mut self) -> Option<String> {
        let line = self.stderr.recv_timeout(WAIT).ok()?;
        self.log.push(line.clone());
        Some(line)
    }

    /// Waits for a stderr line containing `text` (searching those seen already too).
    pub fn wait_log(&mut self, text: &str) -> String {
        if let Some(l) = self.log.iter().find(|l| l.contains(text)) {
            return l.clone();
        }
        let end = Instant::now() + WAIT;
        while Instant::now() < end {
            match self.stderr.recv_timeout(end - Instant::now()) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(RecvTimeoutError::Timeout) => break,
                Err(RecvTimeoutError::Disconnected) => break,
            }
        }
        panic!("no stderr line with {text:?}; got {:#?}", self.log)
    }

    /// Waits up to `limit` for a stderr line not read before that contains `text`.
    pub fn wait_new_log(&mut self, text: &str, limit: Duration) -> String {
        let end = Instant::now() + limit;
        while let Some(left) = end.checked_duration_since(Instant::now()) {
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(text) {
                        return line;
                    }
                }
                Err(_) => break,
            }
        }
        panic!("no new stderr line with {text:?}; got {:#?}", self.log)
    }

    /// Types a line on the admin console.
    pub fn console(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin is piped");
        writeln!(stdin, "{line}").expect("write to the console");
        stdin.flush().expect("flush the console");
    }

    /// Closes the console (EOF on the server's stdin).
    pub fn close_console(&mut self) {
        self.stdin = None;
    }

    /// The next line the console printed on stdout.
    pub fn reply(&mut self) -> String {
        self.stdout
            .recv_timeout(WAIT)
            .expect("a console reply on stdout")
    }

    /// Types a console command and returns its first reply line.
    pub fn command(&mut self, line: &str) -> String {
        self.console(line);
        self.reply()
    }

    /// The `/stats` counters by name.
    pub fn stats(&mut self) -> HashMap<String, u64> {
        let line = self.command("/stats");
        line.split(", ")
            .map(|kv| {
                let (k, v) = kv
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("stats {line:?}"));
                (
                    k.to_string(),
                    v.parse().unwrap_or_else(|_| panic!("stats {line:?}")),
                )
            })
            .collect()
    }

    /// Sends a signal to the server.
    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).expect("signal the server");
    }

    /// Waits (bounded) for the server to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let end = Instant::now() + limit;
        loop {
            if let Some(st) = self.child.try_wait().expect("wait for the server") {
                return Some(st);
            }
            if Instant::now() >= end {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Is the server still running?
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Joined(String),
    Left(LeftReason, String),
    Said(String, String),
    Private(String, String),
    Admin(String),
}

/// A datagram from the server, owned; EVENTS split into one `Event` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Challenge {
        nonce: u64,
        cookie: Cookie,
    },
    Refused {
        nonce: u64,
        reason: RefuseReason,
    },
    Welcome {
        nonce: u64,
        token: Token,
        members: u32,
        timeout_ms: u32,
        name: String,
    },
    Ack(u32),
    Reject(u32, RejectReason),
    Event(u32, Ev),
    Bye(ByeReason),
    Pong(u32),
    Who {
        start: u32,
        total: u32,
        names: Vec<String>,
    },
    Unknown(Token),
}

/// Decodes a datagram from the server (panics on a malformed one: the server never sends those).
pub fn decode(bytes: &[u8]) -> Vec<Got> {
    let msg =
        decode_server(bytes).unwrap_or_else(|e| panic!("server sent a malformed datagram: {e}"));
    let one = match msg {
        ServerMsg::Events { first_seq, events } => {
            return events
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let ev = match e {
                        Event::Joined { name } => Ev::Joined(name.into()),
                        Event::Left { reason, name } => Ev::Left(reason, name.into()),
                        Event::Said { from, text } => Ev::Said(from.into(), text.into()),
                        Event::PrivateFrom { from, text } => Ev::Private(from.into(), text.into()),
                        Event::Admin { text } => Ev::Admin(text.into()),
                    };
                    Got::Event(first_seq.wrapping_add(k as u32), ev)
                })
                .collect();
        }
        ServerMsg::Challenge { nonce, cookie } => Got::Challenge { nonce, cookie },
        ServerMsg::Refused { nonce, reason } => Got::Refused { nonce, reason },
        ServerMsg::Welcome {
            nonce,
            token,
            members,
            timeout_ms,
            name,
        } => Got::Welcome {
            nonce,
            token,
            members,
            timeout_ms,
            name: name.into(),
        },
        ServerMsg::Ack { seq } => Got::Ack(seq),
        ServerMsg::Reject { seq, reason } => Got::Reject(seq, reason),
        ServerMsg::Bye { reason } => Got::Bye(reason),
        ServerMsg::Pong { last_seq } => Got::Pong(last_seq),
        ServerMsg::WhoPage {
            start,
            total,
            names,
        } => Got::Who {
            start,
            total,
            names: names.iter().map(String::from).collect(),
        },
        ServerMsg::UnknownSession { token } => Got::Unknown(token),
    };
    vec![one]
}

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

/// A member (or a would-be member) talking to the server.
pub struct Client {
    pub sock: UdpSocket,
    pub server: SocketAddr,
    pub name: String,
    pub token: Token,
    /// The last SAY/PRIVATE sequence number used.
    pub seq: u32,
    /// The number the next event should carry.
    pub next_event: u32,
    pending: VecDeque<Got>,
}

impl Client {
    /// A client on a new socket that has not joined.
    pub fn new(server: SocketAddr, name: &str) -> Client {
        Client::on(socket(), server, name)
    }

    pub fn on(sock: UdpSocket, server: SocketAddr, name: &str) -> Client {
        Client {
            sock,
            server,
            name: name.into(),
            token: 0,
            seq: 0,
            next_event: 1,
            pending: VecDeque::new(),
        }
    }

    /// Joins as `name` (the cookie round-trip), panicking on a refusal.
    pub fn join(server: SocketAddr, name: &str) -> Client {
        let mut c = Client::new(server, name);
        c.try_join(0)
            .unwrap_or_else(|r| panic!("{name} refused: {r}"));
        c
    }

    /// The login of `udpchat::client::login` (the cookie round-trip, with its
    /// resends); on success the client holds its token. Whatever else arrives
    /// meanwhile stays pending.
    pub fn try_join(&mut self, prev_token: Token) -> Result<Got, RefuseReason> {
        let nonce = getrandom::u64().expect("random");
        let (mut login, join) = Login::start(&self.name, prev_token, nonce, Instant::now());
        self.send_raw(&join);
        let end = Instant::now() + WAIT;
        let mut buf = [0u8; 2048];
        loop {
            let now = Instant::now();
            assert!(now < end, "{}: no answer to the login", self.name);
            let wait = login.next_wakeup().min(end).saturating_duration_since(now);
            let step = match self.recv_from_server(&mut buf, wait) {
                Some(n) => match decode_server(&buf[..n]) {
                    Ok(msg) => match login.on_message(&msg, Instant::now()) {
                        Step::Wait => {
                            self.pending.extend(decode(&buf[..n]));
                            Step::Wait
                        }
                        step => step,
                    },
                    Err(_) => {
                        self.pending.extend(decode(&buf[..n]));
                        Step::Wait
                    }
                },
                None => login.on_timer(Instant::now()),
            };
            match step {
                Step::Wait => {}
                Step::Send(d) => self.send_raw(&d),
                Step::Welcome(w) => {
                    self.token = w.token;
                    self.seq = 0;
                    self.next_event = 1;
                    return Ok(Got::Welcome {
                        nonce,
                        token: w.token,
                        members: w.members,
                        timeout_ms: w.timeout_ms,
                        name: w.name,
                    });
                }
                Step::Refused(reason) => return Err(reason),
                Step::GiveUp => panic!("{}: no answer to the login", self.name),
            }
        }
    }

    /// One datagram from the server within `limit` (others are ignored);
    /// its length, or None.
    fn recv_from_server(&mut self, buf: &mut [u8], limit: Duration) -> Option<usize> {
        let end = Instant::now() + limit;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            self.sock
                .set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .expect("timeout");
            match self.sock.recv_from(buf) {
                Ok((n, from)) if from == self.server => {
                    assert!(n <= 1200, "the server sent {n} bytes");
                    return Some(n);
                }
                Ok(_) => {} // not from the server: a client must ignore it
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
            if Instant::now() >= end {
                return None;
            }
        }
    }

    /// Sends one message.
    pub fn send(&self, msg: &ClientMsg<'_>) {
        self.send_raw(&msg.to_vec());
    }

    pub fn send_raw(&self, bytes: &[u8]) {
        self.sock
            .send_to(bytes, self.server)
            .expect("send to the server");
    }

    /// Reads one datagram from the server into the pending list; false on timeout.
    fn read(&mut self, limit: Duration) -> bool {
        let mut buf = [0u8; 2048];
        self.sock
            .set_read_timeout(Some(limit.max(Duration::from_millis(1))))
            .expect("timeout");
        loop {
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    assert!(n <= 1200, "the server sent {n} bytes");
                    if from != self.server {
                        continue; // not from the server: a client must ignore it
                    }
                    self.pending.extend(decode(&buf[..n]));
                    return true;
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return false,
            }
        }
    }

    /// The first message (pending or arriving within [`WAIT`]) that `pred` accepts.
    pub fn expect(&mut self, pred: impl Fn(&Got) -> bool) -> Got {
        let end = Instant::now() + WAIT;
        loop {
            if let Some(i) = self.pending.iter().position(&pred) {
                let g = self.pending.remove(i).expect("present");
                if let Got::Event(n, _) = &g {
                    self.next_event = n.wrapping_add(1);
                }
                return g;
            }
            let now = Instant::now();
            if now >= end || !self.read(end - now) {
                panic!(
                    "{}: nothing expected arrived; pending {:?}",
                    self.name, self.pending
                );
            }
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

    /// Asserts that nothing arrives for [`QUIET`].
    pub fn silence(&mut self) {
        let end = Instant::now() + QUIET;
        while Instant::now() < end {
            self.read(end - Instant::now());
        }
        assert!(
            self.pending.is_empty(),
            "{}: unexpected {:?}",
            self.name,
            self.pending
        );
    }

    /// Throws away what arrived so far (for sockets that got many announcements).
    pub fn drain(&mut self) {
        self.sock.set_nonblocking(true).expect("nonblocking");
        let mut buf = [0u8; 2048];
        while self.sock.recv_from(&mut buf).is_ok() {}
        self.sock.set_nonblocking(false).expect("blocking");
        self.pending.clear();
    }

    /// Sends a SAY with the next sequence number; returns that number.
    pub fn say(&mut self, text: &str) -> u32 {
        self.seq += 1;
        self.send(&ClientMsg::Say {
            token: self.token,
            seq: self.seq,
            text,
        });
        self.seq
    }

    /// Says `text` and waits for its ACK.
    pub fn say_acked(&mut self, text: &str) {
        let seq = self.say(text);
        assert_eq!(
            self.expect(|g| matches!(g, Got::Ack(_) | Got::Reject(..))),
            Got::Ack(seq)
        );
    }

    pub fn private(&mut self, to: &str, text: &str) -> u32 {
        self.seq += 1;
        self.send(&ClientMsg::Private {
            token: self.token,
            seq: self.seq,
            to,
            text,
        });
        self.seq
    }

    pub fn ping(&mut self) -> u32 {
        self.send(&ClientMsg::Ping { token: self.token });
        match self.expect(|g| matches!(g, Got::Pong(_))) {
            Got::Pong(n) => n,
            _ => unreachable!(),
        }
    }

    pub fn leave(&mut self) {
        self.send(&ClientMsg::Leave { token: self.token });
    }

    /// Every name in the room, page by page.
    pub fn who(&mut self) -> (u32, Vec<String>) {
        let mut names = Vec::new();
        loop {
            self.send(&ClientMsg::Who {
                token: self.token,
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

/// Joins `names.len()` members quickly: each on its own socket (one address,
/// one member), spread over loopback addresses (the server limits answers to
/// strangers per IP), the cookie round-trips pipelined and retried, in
/// parallel threads. Bounded: panics if the joins do not finish in time.
pub fn join_many(server: SocketAddr, names: &[String]) -> Vec<Client> {
    const THREADS: usize = 4;
    const PER_IP: usize = 10;
    let chunk = names.len().div_ceil(THREADS).max(1);
    let handles: Vec<_> = names
        .chunks(chunk)
        .enumerate()
        .map(|(t, part)| {
            let part = part.to_vec();
            let base = t * chunk;
            std::thread::spawn(move || join_part(server, base, &part, PER_IP))
        })
        .collect();
    handles
        .into_iter()
        .flat_map(|h| h.join().expect("join thread"))
        .collect()
}

fn join_part(server: SocketAddr, base: usize, names: &[String], per_ip: usize) -> Vec<Client> {
    let mut clients: Vec<Client> = names
        .iter()
        .enumerate()
        .map(|(k, name)| {
            let g = ((base + k) / per_ip) as u32 + 1;
            let ip = Ipv4Addr::new(127, 1, (g >> 8) as u8, g as u8);
            Client::on(socket_on(ip), server, name)
        })
        .collect();
    for c in &clients {
        c.sock.set_nonblocking(true).expect("nonblocking");
    }
    let end = Instant::now() + Duration::from_secs(60);
    let mut buf = [0u8; 2048];
    // Pipelined in small windows, so a small server receive buffer is not
    // overrun; the login machine resends what gets no answer.
    let all: Vec<usize> = (0..clients.len()).collect();
    for window in all.chunks(25) {
        let mut logins: Vec<(usize, Login)> = window
            .iter()
            .map(|&i| {
                let c = &clients[i];
                let nonce = getrandom::u64().expect("random");
                let (login, join) = Login::start(&c.name, 0, nonce, Instant::now());
                c.send_raw(&join);
                (i, login)
            })
            .collect();
        while !logins.is_empty() {
            assert!(Instant::now() < end, "joins did not finish in time");
            logins.retain_mut(|(i, login)| {
                let c = &mut clients[*i];
                let now = Instant::now();
                let mut step = Step::Wait;
                while step == Step::Wait {
                    let Ok((n, _)) = c.sock.recv_from(&mut buf) else {
                        break;
                    };
                    if let Ok(msg) = decode_server(&buf[..n]) {
                        step = login.on_message(&msg, now); // others' joins: Wait
                    }
                }
                if step == Step::Wait {
                    step = login.on_timer(now);
                }
                match step {
                    Step::Wait => true,
                    Step::Send(d) => {
                        c.send_raw(&d);
                        true
                    }
                    Step::Welcome(w) => {
                        c.token = w.token;
                        false
                    }
                    Step::Refused(reason) => panic!("{} refused: {reason}", c.name),
                    Step::GiveUp => panic!("{}: no answer to the login", c.name),
                }
            });
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    for c in &mut clients {
        c.sock.set_nonblocking(false).expect("blocking");
        c.sock.set_read_timeout(Some(WAIT)).expect("timeout");
    }
    clients
}
