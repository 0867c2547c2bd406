//! Test harness for the real `chat-server` binary: start it (stdin piped,
//! `--bind 127.0.0.1:0`, `--key` in a temporary directory), read its
//! `listening on ADDR` line, talk to it as version-2 members built on the
//! library's client connection (`client::conn::Conn` with `SealedBodies`, a
//! UDP socket each), and always kill and reap it.
//!
//! Every datagram the server sends a member is checked: its (session id,
//! counter) pair must never repeat.
//!
//! Shared by test files: `#[path = "common/server.rs"] mod server_harness;`.
//! Every wait is bounded by [`WAIT`].
#![allow(dead_code)]

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use udpchat::client::conn::{Conn, End, Event as ConnEvent, Progress, SealedBodies};
use udpchat::protocol::sealed::{
    decode_server, encode_nack, ByeReason, ClientMsg, Event, LeftReason, Refusal, RejectReason,
    ServerMsg,
};
use udpchat::session::{parse_data_header, MAX_BODY, MAX_DATAGRAM};

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
    /// The temporary directory of its key file (when [`Server::start`] made one).
    dir: Option<tempfile::TempDir>,
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

/// A temporary directory for a server's key (and later its database), never $HOME.
pub fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("udpchat-server-test")
        .tempdir()
        .expect("a temporary directory")
}

impl Server {
    /// Starts `chat-server --bind 127.0.0.1:0 --key DIR/server.key ARGS`
    /// with stdin piped (DIR: a new temporary directory, removed on drop;
    /// see [`Server::command_with_key`] for the history).
    pub fn start(args: &[&str]) -> Server {
        let dir = temp_dir();
        let mut cmd = Server::command_with_key(&dir.path().join("server.key"), args);
        cmd.arg("--bind").arg("127.0.0.1:0");
        let mut s = Server::spawn(cmd, Stdio::piped());
        s.dir = Some(dir);
        s
    }

    /// `chat-server --key KEY ARGS` (no `--bind`), for tests that start a
    /// server again with the same key, or wrap the command. Unless ARGS say
    /// otherwise, the history is `history.db` beside the key and a newcomer
    /// is shown none of it (`--history-on-join 0`: exact transcripts).
    pub fn command_with_key(key: &std::path::Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--key").arg(key);
        if !args.contains(&"--db") {
            let dir = key.parent().expect("the key's directory");
            cmd.arg("--db").arg(dir.join("history.db"));
        }
        if !args.contains(&"--history-on-join") {
            cmd.args(["--history-on-join", "0"]);
        }
        cmd.args(args);
        cmd
    }

    /// The temporary directory [`Server::start`] made (its key is `server.key`).
    pub fn dir(&self) -> Option<PathBuf> {
        self.dir.as_ref().map(|d| d.path().to_path_buf())
    }

    /// Takes the temporary directory [`Server::start`] made, so that it
    /// outlives this server (to start another on its key and history).
    pub fn take_dir(&mut self) -> tempfile::TempDir {
        self.dir.take().expect("a directory made by Server::start")
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Starts the command given (the server binary or a wrapper of it); it
    /// must pass `--key` itself.
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
            dir: None,
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
    Me(String, String),
    Private(String, String),
    Admin(String),
    /// Room messages no longer kept: first room sequence, count.
    Gap(u64, u32),
}

/// The fields of a room message the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMeta {
    /// Bit 0 history, bit 1 catch-up.
    pub flags: u8,
    pub room_seq: u64,
    pub time_ms: u64,
    pub client_id: u64,
    pub seq: u32,
}

/// A body from the server, owned; EVENTS split into one `Event` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Welcome {
        flags: u8,
        members: u32,
        timeout_ms: u32,
        epoch: u32,
        room_seq: u64,
        client_id: u64,
        name: String,
        ticket: Vec<u8>,
    },
    /// REFUSED: reason code, detail, like.
    Refused(u8, u8, String),
    Ack(u32),
    Reject(u32, RejectReason),
    Event(u32, Ev),
    Bye {
        reason: ByeReason,
        missed: u32,
        text: String,
    },
    Keepalive(u32),
    /// A HISTORY_PAGE: `before`, `more`, the lines (sender, text, room sequence).
    History(u64, bool, Vec<(String, String, u64)>),
    /// LOST: first event, count.
    Lost(u32, u32),
    Who {
        start: u32,
        total: u32,
        names: Vec<String>,
    },
    /// The connection ended otherwise (no answer, reset while leaving …).
    Ended(String),
    /// The connection lost contact and is trying again.
    Reconnecting,
}

/// The REFUSED fields: reason code, detail, like.
fn refusal(r: &Refusal<'_>) -> (u8, u8, String) {
    let (detail, like) = match *r {
        Refusal::Taken { like } | Refusal::Reserved { like } => (0, like.to_string()),
        Refusal::InvalidName(rule) => (rule.code(), String::new()),
        _ => (0, String::new()),
    };
    (r.code(), detail, like)
}

/// Decodes a server body (panics on a malformed one: the server never sends
/// those); `meta` gets the fields of each room message.
pub fn decode(body: &[u8], meta: &mut Vec<LineMeta>) -> Vec<Got> {
    let msg = decode_server(body).unwrap_or_else(|e| panic!("server sent a malformed body: {e:?}"));
    let one = match msg {
        ServerMsg::Events {
            first_event,
            events,
        } => {
            return events
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let ev = match e {
                        Event::Joined { name } => Ev::Joined(name.into()),
                        Event::Left { reason, name } => Ev::Left(reason, name.into()),
                        Event::Said(l) | Event::Me(l) => {
                            meta.push(LineMeta {
                                flags: l.flags.bits(),
                                room_seq: l.room_seq,
                                time_ms: l.time_ms,
                                client_id: l.id.client_id,
                                seq: l.id.seq,
                            });
                            if matches!(e, Event::Me(_)) {
                                Ev::Me(l.from.into(), l.text.into())
                            } else {
                                Ev::Said(l.from.into(), l.text.into())
                            }
                        }
                        Event::PrivateFrom { from, text, .. } => {
                            Ev::Private(from.into(), text.into())
                        }
                        Event::Admin {
                            text,
                            room_seq,
                            time_ms,
                            flags,
                        } => {
                            meta.push(LineMeta {
                                flags: flags.bits(),
                                room_seq,
                                time_ms,
                                client_id: 0,
                                seq: 0,
                            });
                            Ev::Admin(text.into())
                        }
                        Event::Gap {
                            first_room_seq,
                            count,
                        } => Ev::Gap(first_room_seq, count),
                    };
                    Got::Event(first_event.wrapping_add(k as u32), ev)
                })
                .collect();
        }
        ServerMsg::Welcome(w) => Got::Welcome {
            flags: w.flags.bits(),
            members: w.members,
            timeout_ms: w.timeout_ms,
            epoch: w.epoch,
            room_seq: w.room_seq,
            client_id: w.client_id,
            name: w.name.into(),
            ticket: w.ticket.to_vec(),
        },
        ServerMsg::Refused(r) => {
            let (reason, detail, like) = refusal(&r);
            Got::Refused(reason, detail, like)
        }
        ServerMsg::Ack { seq } => Got::Ack(seq),
        ServerMsg::Reject { seq, reason } => Got::Reject(seq, reason),
        ServerMsg::Bye {
            reason,
            missed,
            text,
        } => Got::Bye {
            reason,
            missed,
            text: text.into(),
        },
        ServerMsg::Keepalive { last_event } => Got::Keepalive(last_event),
        ServerMsg::WhoPage {
            start,
            total,
            names,
        } => Got::Who {
            start,
            total,
            names: names.iter().map(String::from).collect(),
        },
        ServerMsg::HistoryPage {
            before,
            more,
            events,
        } => Got::History(
            before,
            more,
            events
                .iter()
                .map(|e| match e {
                    Event::Said(l) | Event::Me(l) => {
                        assert_eq!(l.flags.bits(), 1, "history lines are flagged");
                        (l.from.to_string(), l.text.to_string(), l.room_seq)
                    }
                    Event::Admin { text, room_seq, .. } => {
                        (String::new(), text.to_string(), room_seq)
                    }
                    other => panic!("not a room message: {other:?}"),
                })
                .collect(),
        ),
        ServerMsg::Lost { first_event, count } => Got::Lost(first_event, count),
        other => panic!("unexpected body {other:?}"),
    };
    vec![one]
}

/// Encodes a client body.
pub fn body(msg: &ClientMsg<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_BODY];
    let n = msg.encode(&mut out).expect("a valid client body");
    out.truncate(n);
    out
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
    pending: VecDeque<Got>,
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
    fn take(&mut self, bytes: &[u8]) {
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
    fn events(&mut self) {
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

/// Joins `names.len()` members quickly: each on its own socket, spread over
/// loopback addresses (10 on each, within the server's per-IP limits), the
/// logins pipelined (a connection holds a random source that stays on its
/// thread, so one thread). Bounded: panics if the joins do not finish in time.
pub fn join_many(server: SocketAddr, names: &[String]) -> Vec<Client> {
    join_part(server, 0, names, 10)
}

fn join_part(server: SocketAddr, base: usize, names: &[String], per_ip: usize) -> Vec<Client> {
    const WINDOW: usize = 50;
    let mut clients = Vec::with_capacity(names.len());
    let end = Instant::now() + Duration::from_secs(120);
    let mut buf = [0u8; 2048];
    // Pipelined in small windows, so a small server receive buffer is not
    // overrun; the connection resends what gets no answer.
    for (w, window) in names.chunks(WINDOW).enumerate() {
        let mut joining: Vec<Client> = window
            .iter()
            .enumerate()
            .map(|(k, name)| {
                let g = ((base + w * WINDOW + k) / per_ip) as u32 + 1;
                let ip = Ipv4Addr::new(127, 1, (g >> 8) as u8, g as u8);
                let mut c = Client::on(socket_on(ip), server, name);
                c.sock.set_nonblocking(true).expect("nonblocking");
                c.flush();
                c
            })
            .collect();
        while !joining.is_empty() {
            assert!(Instant::now() < end, "joins did not finish in time");
            let mut k = 0;
            while k < joining.len() {
                let c = &mut joining[k];
                while let Ok((n, _)) = c.sock.recv_from(&mut buf) {
                    c.take(&buf[..n]);
                }
                let now = Instant::now();
                if c.conn.next_timeout().is_some_and(|t| now >= t) {
                    c.conn.on_timeout(now);
                    c.events();
                }
                let done = c.pending.iter().position(|g| {
                    matches!(g, Got::Welcome { .. } | Got::Refused(..) | Got::Ended(_))
                });
                match done.map(|i| c.pending.remove(i).expect("present")) {
                    None => k += 1,
                    Some(Got::Welcome { client_id, .. }) => {
                        let mut c = joining.swap_remove(k);
                        c.client_id = client_id;
                        c.sock.set_nonblocking(false).expect("blocking");
                        c.sock.set_read_timeout(Some(WAIT)).expect("timeout");
                        clients.push(c);
                    }
                    Some(other) => panic!("{} not joined: {other:?}", c.name),
                }
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }
    clients
}

/// Joins `names` in order; each member then reads the JOINED events of those
/// who came after it.
pub fn in_the_room<const N: usize>(server: SocketAddr, names: [&str; N]) -> [Client; N] {
    let mut members = names.map(|name| Client::join(server, name));
    for (i, m) in members.iter_mut().enumerate() {
        for _ in i + 1..N {
            m.event();
        }
    }
    members
}
