//! Helpers for the chat-client tests: spawning the real binaries with pipes
//! (each client with its own known-servers file in a temporary directory),
//! reading their lines with bounded waits, finding the client's second
//! process in /proc, and a scripted version-2 server (the real gate, with
//! bodies the test chooses).
//!
//! Never forks inside the test process: every process is a `Command`.

#![allow(dead_code)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use udpchat::gate::{Action, Config, ConnId, Gate};
use udpchat::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, EventsWriter, Line, LineFlags, MessageId,
    ServerMsg, Welcome, WelcomeFlags,
};
use udpchat::session::{parse_data_header, ServerKey, MAX_BODY, MAX_DATAGRAM};
use udpchat::trust::Fingerprint;

pub const CLIENT: &str = env!("CARGO_BIN_EXE_chat-client");

/// Long enough for a loaded 2-core machine; only failures wait this long.
pub const WAIT: Duration = Duration::from_secs(10);

/// Waits until `cond` holds, looking every 10 ms; panics naming `what` if it
/// still does not after [`WAIT`] (a bound on a wait for an event, not a speed).
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        if Instant::now() >= deadline {
            panic!("waited {WAIT:?} for: {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Makes this test process the subreaper of its descendants, so a client's
/// second process that outlives its parent (or is left a zombie) is re-parented
/// here, where [`leftovers`] sees it.
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// `(pid, ppid, state)` of every process, from /proc.
pub fn process_table() -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((ppid, state)) = stat(pid) {
            out.push((pid, ppid, state));
        }
    }
    out
}

/// `(ppid, state)` of one process, if it exists.
pub fn stat(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The children of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    process_table()
        .into_iter()
        .filter(|&(_, ppid, _)| ppid == pid)
        .map(|(p, _, _)| p)
        .collect()
}

/// Is `pid` still in the process table (running or a zombie)?
pub fn exists(pid: i32) -> bool {
    stat(pid).is_some()
}

/// Waits until `pid` has left the process table; false if it has not within `limit`.
/// A zombie re-parented to this (subreaper) process is reaped and reported as a leftover.
pub fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        match stat(pid) {
            None => return true,
            Some((ppid, 'Z')) if ppid == std::process::id() as i32 => {
                // A zombie nobody reaped: its parent exited without waiting.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return false;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The second process (the receiver) of the chat-client `pid`, once it has
/// forked; panics if it has not within [`WAIT`].
pub fn find_second_process(pid: i32) -> i32 {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(&p) = children_of(pid).first() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("chat-client {pid} never forked");
}

/// Asserts that a client's second process, if one was found, has left the
/// process table within 3 s (after the client itself exited).
#[track_caller]
pub fn assert_second_process_gone(helper: Option<i32>) {
    if let Some(h) = helper {
        assert!(
            gone_within(h, Duration::from_secs(3)),
            "the client's second process {h} was left behind"
        );
    }
}

/// Kills a client's second process, if one was found, and reaps it when it
/// was re-parented to this (subreaper) process.
pub fn kill_second_process(helper: Option<i32>) {
    if let Some(h) = helper {
        let pid = nix::unistd::Pid::from_raw(h);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        if stat(h).map(|(ppid, _)| ppid) == Some(std::process::id() as i32) {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Lines from a child's stdout or stderr, read by a thread, waited for with bounds.
pub struct Lines {
    rx: Receiver<String>,
    pub seen: Vec<String>,
}

impl Lines {
    fn new(r: impl std::io::Read + Send + 'static) -> Lines {
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            loop {
                let mut buf = Vec::new();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let s = String::from_utf8_lossy(&buf)
                            .trim_end_matches('\n')
                            .to_string();
                        if tx.send(s).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
        }
    }

    /// The first line not yet returned that contains `pat`, waiting up to `limit`.
    pub fn wait_for(&mut self, pat: &str, limit: Duration) -> Option<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(pat) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                    return None
                }
            }
        }
    }

    /// Every line until the stream ends (bounded by `limit`).
    pub fn rest(&mut self, limit: Duration) -> Vec<String> {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => return self.seen.clone(),
            }
        }
    }
}

/// A running `chat-client` with piped stdio, in its own process group.
pub struct Client {
    pub child: Child,
    stdin: Option<ChildStdin>,
    pub out: Lines,
    pub err: Lines,
    pub helper: Option<i32>,
    /// Holds the client's known-servers file.
    pub home: tempfile::TempDir,
}

impl Client {
    pub fn spawn(server: &str, name: &str, extra: &[&str]) -> Client {
        let mut cmd = Client::command(server, name);
        cmd.args(extra);
        Client::spawn_cmd(cmd)
    }

    /// The `chat-client` command for `name` at `server` in English, before
    /// any known-servers file is named.
    pub fn command(server: &str, name: &str) -> Command {
        let mut cmd = Command::new(CLIENT);
        cmd.args(["--server", server, "--name", name, "--lang", "en"]);
        cmd
    }

    pub fn spawn_cmd(cmd: Command) -> Client {
        Client::spawn_cmd_with_stdin(cmd, Stdio::piped())
    }

    /// Like [`Client::spawn_cmd`], with this stdin instead of a pipe. The
    /// client gets `--known-servers` in a temporary directory of its own.
    pub fn spawn_cmd_with_stdin(mut cmd: Command, stdin: Stdio) -> Client {
        let home = tempfile::tempdir().unwrap();
        cmd.arg("--known-servers")
            .arg(home.path().join("known_servers"));
        Client::spawn_in(cmd, stdin, home)
    }

    /// Spawns `cmd` as it is (it names its own known-servers file or key).
    pub fn spawn_in(mut cmd: Command, stdin: Stdio, home: tempfile::TempDir) -> Client {
        become_subreaper();
        cmd.stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        let mut child = cmd.spawn().expect("spawn chat-client");
        let stdin = child.stdin.take();
        let out = Lines::new(child.stdout.take().unwrap());
        let err = Lines::new(child.stderr.take().unwrap());
        Client {
            child,
            stdin,
            out,
            err,
            helper: None,
            home,
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Writes bytes on stdin as they are (no newline added).
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// The client's second process (the receiver), once it has forked.
    pub fn find_helper(&mut self) -> i32 {
        let p = find_second_process(self.pid());
        self.helper = Some(p);
        p
    }

    /// Waits for the client to exit, up to `limit`.
    pub fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        wait_child(&mut self.child, limit)
    }

    /// Every line of stderr until it ends, but the note that the server's
    /// key was recorded (said at every first login with a new file).
    pub fn err_rest(&mut self) -> Vec<String> {
        let mut lines = self.err.rest(WAIT);
        lines.retain(|l| !l.starts_with("chat-client: recorded the key of "));
        lines
    }

    /// Waits for the exit and checks that no process of this client is left.
    pub fn wait_clean(&mut self, limit: Duration) -> ExitStatus {
        let status = self
            .wait(limit)
            .unwrap_or_else(|| panic!("chat-client did not exit; stderr: {:?}", self.err.seen));
        assert_second_process_gone(self.helper);
        status
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.pid()), sig);
    }

    pub fn signal_group(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::killpg(nix::unistd::Pid::from_raw(self.pid()), sig);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.stdin = None;
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_group(nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
        kill_second_process(self.helper);
    }
}

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

/// Starts a client and waits until it is in the room (its second process found).
pub fn member(server: &str, name: &str) -> Client {
    let mut c = Client::spawn(server, name, &[]);
    c.out
        .wait_for(&format!("welcome, {name}"), WAIT)
        .unwrap_or_else(|| panic!("{name} did not join: {:?}", c.err.rest(WAIT)));
    c.find_helper();
    c
}

/// The next line of `c`'s stdout that holds `pat`; panics after [`WAIT`].
pub fn saw(c: &mut Client, pat: &str) -> String {
    c.out
        .wait_for(pat, WAIT)
        .unwrap_or_else(|| panic!("never saw {pat:?}; saw {:?}", c.out.seen))
}

/// Waits until `pid` (an orphan re-parented to this subreaper) has ended, and
/// reaps it; false if it is still running after `limit`.
pub fn orphan_ended_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        match stat(pid) {
            None => return true,
            Some((_, 'Z')) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return true;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// A running `chat-server` with its stdin piped (the admin console).
pub struct Server {
    pub child: Child,
    pub addr: String,
    stdin: Option<ChildStdin>,
    pub err: Lines,
    /// Holds the server's key file.
    pub dir: tempfile::TempDir,
}

impl Server {
    pub const BIN: &'static str = env!("CARGO_BIN_EXE_chat-server");

    /// Starts a server on an ephemeral loopback port.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", extra)
    }

    /// Starts a server on `bind`; waits for its `listening on ADDR` line.
    pub fn start_on(bind: &str, extra: &[&str]) -> Server {
        Server::start_in(tempfile::tempdir().unwrap(), bind, extra)
    }

    /// Starts a server on `bind` with the key file `server.key` and the
    /// database `history.db` in `dir` (created on first use): a restart in
    /// the same `dir` has the same key and history.
    pub fn start_in(dir: tempfile::TempDir, bind: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new(Server::BIN);
        cmd.args(["--bind", bind])
            .arg("--key")
            .arg(dir.path().join("server.key"))
            // The history beside the key (a restart in `dir` keeps it), none
            // shown on join unless `extra` says otherwise.
            .arg("--db")
            .arg(dir.path().join("history.db"));
        if !extra.contains(&"--history-on-join") {
            cmd.args(["--history-on-join", "0"]);
        }
        cmd.args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn chat-server");
        let stdin = child.stdin.take();
        let mut err = Lines::new(child.stderr.take().unwrap());
        let line = err
            .wait_for("listening on ", WAIT)
            .expect("the server's 'listening on' line");
        let addr = line[line.find("listening on ").unwrap() + 13..]
            .trim()
            .to_string();
        Server {
            child,
            addr,
            stdin,
            err,
            dir,
        }
    }

    /// Kills the server and starts it again on the same address with the
    /// same key file and database.
    pub fn restart(self, extra: &[&str]) -> Server {
        self.restart_after(nix::sys::signal::Signal::SIGKILL, extra)
    }

    /// Ends the server with `sig` (waiting for it to exit), then starts it
    /// again on the same address with the same key file and database.
    pub fn restart_after(mut self, sig: nix::sys::signal::Signal, extra: &[&str]) -> Server {
        self.signal(sig);
        if wait_child(&mut self.child, WAIT).is_none() {
            self.kill();
        }
        let dir = tempfile::tempdir().unwrap();
        let dir = std::mem::replace(&mut self.dir, dir);
        Server::start_in(dir, &self.addr, extra)
    }

    /// Types a line on the admin console.
    pub fn admin(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("console open");
        stdin.write_all(line.as_bytes()).unwrap();
        stdin.write_all(b"\n").unwrap();
        stdin.flush().unwrap();
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig);
    }

    pub fn kill(&mut self) {
        self.signal(nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stdin = None;
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal(nix::sys::signal::Signal::SIGCONT);
            self.kill();
        }
    }
}

/// A UDP relay between one client and the server that drops the server's
/// datagrams for which `drop` holds.
pub struct Relay {
    pub addr: String,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<usize>>,
}

impl Relay {
    pub fn start(server: &str, drop: impl Fn(&[u8]) -> bool + Send + 'static) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let front = UdpSocket::bind("127.0.0.1:0").unwrap();
        let back = UdpSocket::bind("127.0.0.1:0").unwrap();
        back.connect(server).unwrap();
        let addr = front.local_addr().unwrap().to_string();
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        front.set_nonblocking(true).unwrap();
        back.set_nonblocking(true).unwrap();
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut client: Option<SocketAddr> = None;
            let mut dropped = 0;
            let mut buf = [0u8; 2048];
            while !flag.load(Ordering::Relaxed) {
                let mut idle = true;
                while let Ok((n, from)) = front.recv_from(&mut buf) {
                    idle = false;
                    client = Some(from);
                    let _ = back.send(&buf[..n]);
                }
                while let Ok(n) = back.recv(&mut buf) {
                    idle = false;
                    if drop(&buf[..n]) {
                        dropped += 1;
                    } else if let Some(c) = client {
                        let _ = front.send_to(&buf[..n], c);
                    }
                }
                if idle {
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
            dropped
        });
        Relay {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the relay; returns how many datagrams it dropped.
    pub fn stop(mut self) -> usize {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.thread.take().unwrap().join().unwrap()
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
