//! A room for the version-2 tests through the real binaries: a temporary
//! directory (key, known-servers file, database), a chat-server in it and
//! chat-clients that keep their known-servers file there; and reading what
//! members printed (`NAME: TEXT` lines).
//!
//! Needs `client_harness` (common/client.rs) and `server_harness`
//! (common/server.rs) declared at the test crate's root.
#![allow(dead_code)]

use crate::client_harness::Client;
use crate::server_harness::{self, Server};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

/// The bound on every wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A room: a temporary directory (key, known-servers file) and a server in it.
pub struct Room {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

impl Room {
    /// A server with `--rate 0` (the tests send in bursts) and `extra` options.
    pub fn open(extra: &[&str]) -> Room {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let server = start_server(dir.path(), "127.0.0.1:0", "server.key", extra);
        Room { dir, server }
    }

    pub fn known_servers(&self) -> PathBuf {
        self.dir.path().join("known_servers")
    }

    /// A chat-client joined as `name` through `server` (the server itself or a relay).
    pub fn join(&self, server: &str, name: &str) -> Client {
        let mut c = spawn_client(&self.known_servers(), server, name);
        c.out
            .wait_for(&format!("welcome, {name}"), WAIT)
            .unwrap_or_else(|| panic!("{name} did not join: {:?}", c.err.rest(WAIT)));
        c
    }

    pub fn addr(&self) -> String {
        self.server.addr.to_string()
    }
}

pub fn start_server(dir: &Path, bind: &str, key: &str, extra: &[&str]) -> Server {
    let mut cmd = Command::new(server_harness::BIN);
    cmd.args(["--bind", bind, "--rate", "0", "--key"])
        .arg(dir.join(key))
        .args(extra);
    Server::spawn(cmd, Stdio::piped())
}

pub fn spawn_client(known: &Path, server: &str, name: &str) -> Client {
    let known = known.to_str().expect("a UTF-8 temporary path");
    Client::spawn(server, name, &["--known-servers", known])
}

/// The fingerprint `chat-server --key FILE --fingerprint` prints.
pub fn fingerprint(key: &Path) -> String {
    let out = Command::new(server_harness::BIN)
        .arg("--key")
        .arg(key)
        .arg("--fingerprint")
        .output()
        .expect("run chat-server --fingerprint");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .expect("UTF-8")
        .trim()
        .to_string()
}

/// Says each line and waits until `witness` printed them all, in order.
pub fn talk(speaker: &mut Client, name: &str, witness: &mut Client, lines: &[String]) {
    for l in lines {
        speaker.send(l);
    }
    for l in lines {
        let want = format!("{name}: {l}");
        witness
            .out
            .wait_for(&want, WAIT)
            .unwrap_or_else(|| panic!("never shown (or out of order): {want:?}"));
    }
}

/// The lines `c` printed so far that a member said (`NAME: TEXT`), as `(NAME, TEXT)`.
pub fn said(c: &Client) -> Vec<(String, String)> {
    c.out
        .seen
        .iter()
        .filter_map(|l| {
            let (who, text) = l.split_once(": ")?;
            let who = who.rsplit(' ').next()?; // after a time stamp, if any
            Some((who.to_string(), text.to_string()))
        })
        .collect()
}

/// Asserts that every member line `c` printed is one of `genuine`, each at most once.
#[track_caller]
pub fn only_genuine_once(c: &Client, genuine: &[(String, String)]) {
    for l in said(c) {
        assert!(genuine.contains(&l), "shown but never said: {l:?}");
    }
    nothing_twice(c);
}

/// Asserts that no member line was shown twice by `c`.
#[track_caller]
pub fn nothing_twice(c: &Client) {
    let mut seen: HashMap<(String, String), usize> = HashMap::new();
    for l in said(c) {
        *seen.entry(l).or_default() += 1;
    }
    for (l, n) in seen {
        assert_eq!(n, 1, "shown {n} times: {l:?}");
    }
}

pub fn lines(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|k| format!("{prefix} {k}")).collect()
}

pub fn pairs(name: &str, lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .map(|l| (name.to_string(), l.clone()))
        .collect()
}
