//! Helpers for the chat-client tests: spawning the real binaries with pipes,
//! reading their lines with bounded waits, finding the client's second
//! process in /proc, and a scripted UDP peer standing in for a server.
//!
//! Never forks inside the test process: every process is a `Command`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, UdpSocket};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};
use udpchat::protocol::{self, ByeReason, ClientMsg, Event, ServerMsg, Token};

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
}

impl Client {
    pub fn spawn(server: &str, name: &str, extra: &[&str]) -> Client {
        let mut cmd = Command::new(CLIENT);
        cmd.args(["--server", server, "--name", name, "--lang", "en"]);
        cmd.args(extra);
        Client::spawn_cmd(cmd)
    }

    pub fn spawn_cmd(cmd: Command) -> Client {
        Client::spawn_cmd_with_stdin(cmd, Stdio::piped())
    }

    /// Like [`Client::spawn_cmd`], with this stdin instead of a pipe.
    pub fn spawn_cmd_with_stdin(mut cmd: Command, stdin: Stdio) -> Client {
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

/// A UDP peer that plays the server, one datagram at a time, from the test.
pub struct FakeServer {
    pub sock: UdpSocket,
    pub addr: SocketAddr,
}

impl Default for FakeServer {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeServer {
    pub fn new() -> FakeServer {
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = sock.local_addr().unwrap();
        FakeServer { sock, addr }
    }

    pub fn addr_text(&self) -> String {
        self.addr.to_string()
    }

    /// The next datagram, within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + limit;
        let mut buf = [0u8; 2048];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            self.sock.set_read_timeout(Some(left)).unwrap();
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => return Some((buf[..n].to_vec(), from)),
                Err(_) => continue,
            }
        }
    }

    /// The next datagram for which `want` holds (others are dropped), within `limit`.
    pub fn recv_where(
        &self,
        limit: Duration,
        want: impl Fn(&ClientMsg<'_>) -> bool,
    ) -> Option<(Vec<u8>, SocketAddr)> {
        let deadline = Instant::now() + limit;
        loop {
            let (d, from) = self.recv(deadline.saturating_duration_since(Instant::now()))?;
            if let Ok(m) = protocol::decode_client(&d) {
                if want(&m) {
                    return Some((d, from));
                }
            }
        }
    }

    pub fn send(&self, to: SocketAddr, msg: &ServerMsg<'_>) {
        self.sock.send_to(&msg.to_vec(), to).unwrap();
    }

    pub fn events(&self, to: SocketAddr, first_seq: u32, events: &[Event<'_>]) {
        let mut out = Vec::new();
        protocol::encode_events(&mut out, first_seq, events);
        self.sock.send_to(&out, to).unwrap();
    }

    /// Sends one SAID event, number `seq`, from the member `from`.
    pub fn said(&self, to: SocketAddr, seq: u32, from: &str, text: &str) {
        self.events(to, seq, &[Event::Said { from, text }]);
    }

    /// Waits for a SAY (panics with `what` if none comes within [`WAIT`]) and
    /// asserts that it is exactly this one.
    #[track_caller]
    pub fn expect_say(&self, what: &str, token: Token, seq: u32, text: &str) {
        let is_say = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Say { .. });
        let (d, _) = self.recv_where(WAIT, is_say).expect(what);
        assert_eq!(
            protocol::decode_client(&d).unwrap(),
            ClientMsg::Say { token, seq, text }
        );
    }

    /// Waits for a LEAVE (panics with `what` if none comes within [`WAIT`])
    /// and answers it with BYE (left) to `to`. Returns the LEAVE.
    #[track_caller]
    pub fn answer_leave(&self, to: SocketAddr, what: &str) -> Vec<u8> {
        let (d, _) = self.recv_where(WAIT, is_leave).expect(what);
        self.send(
            to,
            &ServerMsg::Bye {
                reason: ByeReason::Left,
            },
        );
        d
    }

    /// Plays the login: JOIN, CHALLENGE, JOIN with the cookie, WELCOME.
    /// Returns the client's address and the `prev_token` it sent.
    pub fn accept(&self, token: Token, timeout_ms: u32) -> (SocketAddr, Token) {
        let is_join = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Join { .. });
        let (d, from) = self.recv_where(WAIT, is_join).expect("a JOIN");
        let ClientMsg::Join {
            nonce, prev_token, ..
        } = protocol::decode_client(&d).unwrap()
        else {
            unreachable!()
        };
        let cookie = [7u8; 16];
        self.send(from, &ServerMsg::Challenge { nonce, cookie });
        let with_cookie =
            move |m: &ClientMsg<'_>| matches!(m, ClientMsg::Join { cookie: c, .. } if *c == cookie);
        let (d, from) = self
            .recv_where(WAIT, with_cookie)
            .expect("a JOIN with the cookie");
        let ClientMsg::Join { name, .. } = protocol::decode_client(&d).unwrap() else {
            unreachable!()
        };
        self.send(
            from,
            &ServerMsg::Welcome {
                nonce,
                token,
                members: 2,
                timeout_ms,
                name,
            },
        );
        (from, prev_token)
    }
}

/// Is this datagram a LEAVE?
pub fn is_leave(m: &ClientMsg<'_>) -> bool {
    matches!(m, ClientMsg::Leave { .. })
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
}

impl Server {
    pub const BIN: &'static str = env!("CARGO_BIN_EXE_chat-server");

    /// Starts a server on an ephemeral loopback port.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_on("127.0.0.1:0", extra)
    }

    /// Starts a server on `bind`; waits for its `listening on ADDR` line.
    pub fn start_on(bind: &str, extra: &[&str]) -> Server {
        let mut cmd = Command::new(Server::BIN);
        cmd.args(["--bind", bind])
            .args(extra)
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
        }
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
