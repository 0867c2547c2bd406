//! The real chat-server for the client tests, and a relay between a client and
//! it that drops some of its datagrams.

use super::{wait_child, Lines, WAIT};
use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::Duration;

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
