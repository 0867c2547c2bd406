//! chat-server's admin console on a terminal, driven through an interactive
//! `bash -i` on a pseudo-terminal: `chat-server &` is not stopped by what is
//! typed in the shell, `fg` turns the console on again, Ctrl-D keeps the
//! server running, `/help` lists the commands, and `kill %1` ends it.

#[path = "common/client.rs"]
mod common;
#[path = "common/pty.rs"]
mod pty;
#[path = "common/server.rs"]
mod server_harness;

use common::*;
use pty::PtyClient;
use std::time::{Duration, Instant};

/// An interactive bash on a pty, with a plain prompt and no history file.
fn shell() -> PtyClient {
    let sh = PtyClient::spawn_program(
        "bash",
        &["--norc", "--noprofile", "-i"],
        &[("PS1", "$ "), ("HISTFILE", "/dev/null")],
        200,
    );
    sh.wait_screen("the shell's prompt", |s| s.cursor_line() == "$");
    sh
}

/// The first screen line containing `pat`, once there is one.
fn wait_line(sh: &PtyClient, what: &str, pat: &str) -> String {
    let s = sh.wait_screen(what, |s| s.text().iter().any(|l| l.contains(pat)));
    s.text().into_iter().find(|l| l.contains(pat)).unwrap()
}

/// How many screen lines contain `pat`.
fn count(sh: &PtyClient, pat: &str) -> usize {
    sh.screen()
        .text()
        .iter()
        .filter(|l| l.contains(pat))
        .count()
}

/// Waits until `pid` has ended (gone, or a zombie for bash to reap).
fn ended_within(pid: i32, limit: Duration) -> bool {
    let end = Instant::now() + limit;
    while Instant::now() < end {
        match stat(pid) {
            None | Some((_, 'Z')) => return true,
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
    false
}

#[test]
fn a_server_in_the_background_of_a_shell_keeps_serving() {
    let dir = server_harness::temp_dir();
    let key = dir.path().join("server.key");
    let sh = shell();
    sh.type_bytes(
        format!(
            "{} --bind 127.0.0.1:0 --key '{}' --db none & echo pid=$!\r",
            Server::BIN,
            key.display()
        )
        .as_bytes(),
    );
    let s = sh.wait_screen("the server's pid", |s| {
        s.text().iter().any(|l| l.starts_with("pid="))
    });
    let line = s
        .text()
        .into_iter()
        .find(|l| l.starts_with("pid="))
        .unwrap();
    let pid: i32 = line[4..].trim().parse().expect("a pid");
    let line = wait_line(&sh, "the server listening", "listening on ");
    let addr = line[line.find("listening on ").unwrap() + 13..]
        .trim()
        .to_string();
    wait_line(
        &sh,
        "the console paused",
        "admin console paused (background)",
    );
    // What is typed next is the shell's: the server does not read it, and is
    // not stopped by trying (SIGTTIN).
    sh.type_bytes(b"hello-there\r");
    wait_line(&sh, "the shell's answer", "hello-there: command not found");
    sh.wait_screen("the prompt again", |s| s.cursor_line() == "$");
    assert_ne!(stat(pid).map(|s| s.1), Some('T'), "the server was stopped");
    let mut alice = server_harness::Client::join(addr.parse().expect("an address"), "alice");
    alice.say_acked("a server in the background answers");
    alice.leave();
    alice.expect(|g| matches!(g, server_harness::Got::Ended(_)));
    assert_eq!(count(&sh, "admin console paused"), 1, "said once");

    // In the foreground the console reads again.
    sh.type_bytes(b"fg\r");
    wait_line(&sh, "the console on again", "admin console on");
    sh.type_bytes(b"/help\r");
    wait_line(
        &sh,
        "the console's help",
        "tells every member the room is closing",
    );
    // Ctrl-D on the terminal: the server keeps running, the console stays on.
    sh.type_bytes(b"\x04");
    wait_line(
        &sh,
        "the keep-running note",
        "(the server keeps running; /shutdown closes the room)",
    );
    sh.type_bytes(b"/who\r");
    wait_line(&sh, "the console still answers", "0 members");
    // Stopped and continued in the background, `kill %1` still ends it.
    sh.type_bytes(b"\x1a");
    sh.wait_screen("the prompt after Ctrl-Z", |s| s.cursor_line() == "$");
    sh.type_bytes(b"bg\r");
    sh.wait_screen("the prompt after bg", |s| s.cursor_line() == "$");
    sh.type_bytes(b"kill %1\r");
    // It exits at once on SIGTERM; WAIT is ten times a second.
    assert!(ended_within(pid, WAIT), "kill %1 ended the server");
    wait_line(&sh, "the server's last words", "exiting");
    sh.type_bytes(b"exit\r");
}
