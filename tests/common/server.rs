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
//! Every wait is bounded by [`WAIT`]. This file runs the server process; the
//! members are in server/member.rs, many at once in server/crowd.rs, the
//! bodies as owned values in server/wire.rs.
#![allow(dead_code)]

#[path = "server/crowd.rs"]
mod crowd;
#[path = "server/member.rs"]
mod member;
#[path = "server/wire.rs"]
mod wire;

// Each test file uses a part of the harness.
#[allow(unused_imports)]
pub use crowd::*;
#[allow(unused_imports)]
pub use member::*;
#[allow(unused_imports)]
pub use wire::*;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

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

    /// Starts the command given (the server binary or a wrapper of it) and
    /// waits for its `listening on` line; it must pass `--key` itself.
    pub fn spawn(cmd: Command, stdin: Stdio) -> Server {
        let mut s = Server::launch(cmd, stdin);
        s.wait_listening();
        s
    }

    /// Starts the command given like [`Server::spawn`] without waiting for
    /// it to listen (then [`Server::wait_listening`]): servers started at once.
    pub fn launch(mut cmd: Command, stdin: Stdio) -> Server {
        let mut child = cmd
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn chat-server");
        let stderr = lines_of(child.stderr.take().expect("stderr"));
        let stdout = lines_of(child.stdout.take().expect("stdout"));
        let stdin = child.stdin.take();
        Server {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            stdin,
            stderr,
            stdout,
            log: Vec::new(),
            dir: None,
        }
    }

    /// Waits (bounded) for the first stderr line, `listening on ADDR`, and
    /// sets [`Server::addr`] (127.0.0.1 for a wildcard bind).
    pub fn wait_listening(&mut self) {
        let first = self.next_stderr().expect("chat-server printed nothing");
        let addr = first
            .strip_prefix("listening on ")
            .unwrap_or_else(|| panic!("first stderr line is {first:?}"));
        self.addr = addr.parse().expect("listening address");
        if self.addr.ip().is_unspecified() {
            self.addr.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
        }
    }

    /// The next stderr line not read before, within [`WAIT`] (None if none comes).
    pub fn next_stderr(&mut self) -> Option<String> {
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
