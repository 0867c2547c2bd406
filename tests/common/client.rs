//! Helpers for the chat-client tests: spawning the real binaries with pipes
//! (each client with its own known-servers file in a temporary directory),
//! reading their lines with bounded waits, finding the client's second
//! process in /proc, and a scripted version-2 server (the real gate, with
//! bodies the test chooses).
//!
//! Never forks inside the test process: every process is a `Command`.
//!
//! This file spawns the client and reads its lines; the rest is in client/:
//! process.rs (the client's processes in /proc), fake_server.rs (the scripted
//! server), real_server.rs (the real chat-server and a dropping relay).
#![allow(dead_code)]

#[path = "client/fake_server.rs"]
mod fake_server;
#[path = "client/process.rs"]
mod process;
#[path = "client/real_server.rs"]
mod real_server;

// Each test file uses a part of the harness.
#[allow(unused_imports)]
pub use fake_server::*;
#[allow(unused_imports)]
pub use process::*;
#[allow(unused_imports)]
pub use real_server::*;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

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
        // One write with its end: a pipe write of up to PIPE_BUF (4096) bytes is
        // atomic, so the client reads the line whole. Written in two, a long line
        // could be read without its end, and the client would send what it has
        // in parts as it arrives (as it must with a long line still coming).
        stdin.write_all(format!("{line}\n").as_bytes()).unwrap();
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
