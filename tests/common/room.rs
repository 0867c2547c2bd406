//! A room for the version-2 tests through the real binaries: a temporary
//! directory (key, known-servers file, database), a chat-server in it and
//! chat-clients that keep their known-servers file there; and reading what
//! members printed (`NAME: TEXT` lines).
//!
//! Needs `client_harness` (common/client.rs) and `server_harness`
//! (common/server.rs) declared at the test crate's root.
#![allow(dead_code)]

use crate::client_harness::{self, Client};
use crate::server_harness::{self, Server};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The bound on every wait for something that should happen.
pub const WAIT: Duration = Duration::from_secs(10);

/// A room: a temporary directory (key, known-servers file) and a server in it.
pub struct Room {
    pub dir: tempfile::TempDir,
    pub server: Server,
}

impl Room {
    /// A server with `--rate 0` (the tests send in bursts), its key and
    /// history in the directory, and `extra` options.
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

/// Starts `chat-server --bind BIND --rate 0 --key DIR/KEY EXTRA`, with
/// `--db DIR/history.db` and `--history-on-join 0` unless `extra` names them
/// (nothing outside `dir`, never `$HOME`).
pub fn start_server(dir: &Path, bind: &str, key: &str, extra: &[&str]) -> Server {
    let mut cmd = Command::new(server_harness::BIN);
    cmd.args(["--bind", bind, "--rate", "0", "--key"])
        .arg(dir.join(key));
    if !extra.contains(&"--db") {
        cmd.arg("--db").arg(dir.join("history.db"));
    }
    if !extra.contains(&"--history-on-join") {
        cmd.args(["--history-on-join", "0"]);
    }
    cmd.args(extra);
    Server::spawn(cmd, Stdio::piped())
}

pub fn spawn_client(known: &Path, server: &str, name: &str) -> Client {
    spawn_client_with(known, server, name, &[])
}

/// A chat-client with `--known-servers known` and `extra` options.
pub fn spawn_client_with(known: &Path, server: &str, name: &str, extra: &[&str]) -> Client {
    let mut cmd = Command::new(client_harness::CLIENT);
    cmd.args(["--server", server, "--name", name, "--lang", "en"])
        .arg("--known-servers")
        .arg(known)
        .args(extra);
    let unused_home = tempfile::tempdir().expect("a temporary directory");
    Client::spawn_in(cmd, Stdio::piped(), unused_home)
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
        shows(witness, name, l);
    }
}

/// Says each line and waits until `witness` printed them all, in any order.
pub fn talk_unordered(speaker: &mut Client, name: &str, witness: &mut Client, lines: &[String]) {
    for l in lines {
        speaker.send(l);
    }
    let end = Instant::now() + WAIT;
    loop {
        let shown = said(witness);
        let missing: Vec<&String> = lines
            .iter()
            .filter(|l| !shown.contains(&(name.to_string(), l.to_string())))
            .collect();
        if missing.is_empty() {
            return;
        }
        let Some(left) = end.checked_duration_since(Instant::now()) else {
            panic!(
                "never shown: {name}: {missing:?}; shown: {:#?}",
                witness.out.seen
            );
        };
        witness.out.wait_for(&format!("{name}: "), left);
    }
}

/// Waits (bounded by [`WAIT`]) until `c` prints the line `name` said `text`
/// (lines before it are kept in `c.out.seen`).
#[track_caller]
pub fn shows(c: &mut Client, name: &str, text: &str) {
    let want = (name.to_string(), text.to_string());
    let end = Instant::now() + WAIT;
    while let Some(left) = end.checked_duration_since(Instant::now()) {
        match c.out.wait_for(&format!("{name}: {text}"), left) {
            Some(line) if member_line(&line).as_ref() == Some(&want) => return,
            Some(_) => {}
            None => break,
        }
    }
    panic!(
        "never shown (or out of order): {name}: {text}; shown: {:#?}",
        c.out.seen
    );
}

/// The lines `c` printed so far that a member said, as `(NAME, TEXT)`.
pub fn said(c: &Client) -> Vec<(String, String)> {
    c.out.seen.iter().filter_map(|l| member_line(l)).collect()
}

/// `(NAME, TEXT)` of a line a member said, shown as `HH:MM NAME: TEXT` (said
/// live) or `[HH:MM] NAME: TEXT` / `[YYYY-MM-DD HH:MM] NAME: TEXT` (history
/// and catch-up), with a name without spaces (the tests' names); None for
/// any other line.
pub fn member_line(line: &str) -> Option<(String, String)> {
    let b = line.as_bytes();
    let rest = if line.starts_with('[') {
        &line[line.find("] ")? + 2..]
    } else if b.len() > 6 && b[2] == b':' && b[5] == b' ' {
        &line[6..]
    } else {
        line
    };
    let (who, text) = rest.split_once(": ")?;
    let name_like = !who.is_empty() && !who.contains(' ') && !who.starts_with(['-', '*', '(']);
    name_like.then(|| (who.to_string(), text.to_string()))
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
