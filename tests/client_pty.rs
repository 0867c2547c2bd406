//! chat-client on a pseudo-terminal: the half-typed line survives incoming
//! messages, Ctrl-C and Ctrl-Z work through the terminal, and the terminal's
//! modes are given back on every way out.

#[path = "common/client.rs"]
mod common;
#[path = "common/pty.rs"]
mod pty;

use common::*;
use nix::sys::signal::Signal;
use nix::sys::termios::LocalFlags;
use pty::PtyClient;
use udpchat::gate::ConnId;
use udpchat::protocol::sealed::{decode_client, ClientMsg, Event, Refusal, ServerMsg};

/// alice's client on a pty of `cols` columns, pinning the scripted server's key.
fn spawn_alice(srv: &FakeServer, cols: u16) -> PtyClient {
    let addr = srv.addr_text();
    let key = srv.fingerprint();
    let args = ["--server", &addr, "--name", "alice", "--lang", "en"];
    PtyClient::spawn(&[&args[..], &["--server-key", &key]].concat(), cols)
}

fn start(srv: &FakeServer, cols: u16) -> (PtyClient, ConnId) {
    let mut c = spawn_alice(srv, cols);
    let from = srv.accept(30_000);
    c.find_helper();
    c.wait_screen("the prompt", |s| s.cursor_line() == ">");
    (c, from)
}

fn chat_mode(flags: LocalFlags) -> bool {
    !flags.contains(LocalFlags::ICANON) && !flags.contains(LocalFlags::ECHO)
}

fn assert_restored(c: &PtyClient) {
    let now = nix::sys::termios::tcgetattr(&c.slave).unwrap();
    assert_eq!(now.local_flags, c.modes_at_start.local_flags, "local modes");
    assert_eq!(now.input_flags, c.modes_at_start.input_flags, "input modes");
    assert_eq!(
        now.output_flags, c.modes_at_start.output_flags,
        "output modes"
    );
}

#[test]
fn a_half_typed_line_survives_incoming_messages() {
    let srv = FakeServer::new();
    let (c, from) = start(&srv, 80);
    assert!(
        chat_mode(c.local_flags()),
        "ICANON and ECHO off while chatting"
    );
    assert!(c.local_flags().contains(LocalFlags::ISIG), "ISIG kept");
    c.type_bytes("hel 你好".as_bytes());
    c.wait_screen("the typed text", |s| {
        s.cursor_line() == "> hel 你好" && s.col == 10
    });
    srv.said(from, 1, "bob", "hi there");
    srv.events(from, 2, &[Event::Joined { name: "carol" }]);
    let s = c.wait_screen("the messages above the input line", |s| {
        s.text().iter().any(|l| l.ends_with("* carol joined"))
    });
    let lines = s.text();
    let n = s.row;
    assert_eq!(
        s.cursor_line(),
        "> hel 你好",
        "the line is intact: {lines:#?}"
    );
    assert_eq!(s.col, 10, "and the cursor where it was");
    assert!(lines[n - 2].ends_with(" bob: hi there"), "{lines:#?}");
    assert!(lines[n - 1].ends_with(" * carol joined"), "{lines:#?}");
    assert!(
        lines[n - 2].as_bytes()[2] == b':',
        "HH:MM first: {:?}",
        lines[n - 2]
    );
    // Editing keys: left twice, backspace, then Enter.
    c.type_bytes(b"\x1b[D\x1b[D\x7f");
    c.wait_screen("the edit", |s| s.cursor_line() == "> hel你好" && s.col == 5);
    c.type_bytes(b"\r");
    srv.expect_say("the line is said", 1, "hel你好");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    let s = c.wait_screen("the own line echoed", |s| {
        s.text().iter().any(|l| l.ends_with(" alice: hel你好")) && s.cursor_line() == ">"
    });
    assert_eq!(s.col, 2);
    // An escape sequence in a message is shown, not obeyed.
    srv.said(from, 3, "eve", "\x1b[2J\x1b[1;1Hgotcha");
    c.wait_screen("the escaped message", |s| {
        s.text()
            .iter()
            .any(|l| l.ends_with(" eve: \\x1b[2J\\x1b[1;1Hgotcha"))
    });
    c.type_bytes(b"\x04"); // Ctrl-D on an empty line
    srv.answer_leave("LEAVE");
    let mut c = c;
    assert_eq!(c.wait_clean().code(), Some(0));
    assert_restored(&c);
}

#[test]
fn ctrl_c_through_the_terminal_leaves_and_restores_the_modes() {
    let srv = FakeServer::new();
    let (mut c, _) = start(&srv, 80);
    c.type_bytes(b"half");
    c.wait_screen("typed", |s| s.cursor_line() == "> half");
    c.type_bytes(b"\x03");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean().code(), Some(130));
    assert_restored(&c);
}

#[test]
fn modes_are_restored_when_the_parent_is_killed() {
    let srv = FakeServer::new();
    let (mut c, _) = start(&srv, 80);
    let helper = c.helper.unwrap();
    assert!(chat_mode(c.local_flags()));
    let before = c.output().len();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(c.pid()), Signal::SIGKILL).unwrap();
    c.wait(WAIT).expect("killed");
    srv.answer_leave("the receiver's LEAVE");
    assert!(orphan_ended_within(helper, WAIT));
    assert_restored(&c);
    // The shell has its prompt up again: the receiver drew nothing over it.
    let after = String::from_utf8_lossy(&c.output()[before..]).into_owned();
    assert!(!after.contains("> "), "{after:?}");
}

#[test]
fn the_first_login_shows_it_is_connecting_then_erases_it() {
    let srv = FakeServer::new();
    let addr = srv.addr_text();
    let mut c = spawn_alice(&srv, 80);
    c.wait_screen("the connecting line", |s| {
        s.cursor_line() == format!("-- connecting to {addr}…")
    });
    srv.accept(30_000);
    c.find_helper();
    let s = c.wait_screen("the prompt", |s| s.cursor_line() == ">");
    assert!(
        !s.text().iter().any(|l| l.contains("connecting")),
        "{:#?}",
        s.text()
    );
    c.type_bytes(b"\x03");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean().code(), Some(130));
}

#[test]
fn ctrl_d_at_the_name_prompt_ends_quietly_on_a_new_line() {
    let srv = FakeServer::new();
    let addr = srv.addr_text();
    let mut c = PtyClient::spawn(&["--server", &addr, "--lang", "en"], 80);
    c.wait_screen("the name prompt", |s| s.cursor_line() == "name:");
    c.type_bytes(b"bo\x1b[D\x1b[C\x04\x15\x04");
    assert_eq!(c.wait_clean().code(), Some(0));
    let s = c.wait_screen("the new line", |s| s.row == 1);
    assert_eq!(s.text(), ["name:", ""], "nothing more said");
    assert_eq!((s.row, s.col), (1, 0), "on a new line");
    assert_restored(&c);
    assert!(srv.recv(std::time::Duration::from_millis(200)).is_none());
}

#[test]
fn a_half_typed_line_stays_on_the_screen_at_the_end() {
    let srv = FakeServer::new();
    let (mut c, _) = start(&srv, 80);
    c.type_bytes(b"half a tho");
    c.wait_screen("typed", |s| s.cursor_line() == "> half a tho");
    c.type_bytes(b"\x03");
    srv.answer_leave("the LEAVE after Ctrl-C");
    assert_eq!(c.wait_clean().code(), Some(130));
    let s = c.wait_screen("the line kept above the cursor", |s| {
        s.row > 0 && s.line(s.row - 1) == "> half a tho"
    });
    assert_eq!(s.cursor_line(), "", "the cursor below it");
}

#[test]
fn modes_are_restored_when_the_receiver_is_killed() {
    let srv = FakeServer::new();
    let (mut c, _) = start(&srv, 80);
    let helper = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(helper), Signal::SIGKILL).unwrap();
    assert_eq!(c.wait_clean().code(), Some(1));
    assert_restored(&c);
}

#[test]
fn ctrl_z_gives_the_modes_back_and_continuing_redraws() {
    let srv = FakeServer::new();
    let (mut c, from) = start(&srv, 80);
    let helper = c.helper.unwrap();
    c.type_bytes(b"draft");
    c.wait_screen("typed", |s| s.cursor_line() == "> draft");
    c.type_bytes(b"\x1a");
    wait_until(
        "Ctrl-Z to give the terminal back and stop the helper",
        || !chat_mode(c.local_flags()) && stat(helper).map(|s| s.1) == Some('T'),
    );
    assert_restored(&c);
    let before = c.output().len();
    // What `fg` does: the whole group continues.
    nix::sys::signal::killpg(nix::unistd::Pid::from_raw(c.pid()), Signal::SIGCONT).unwrap();
    wait_until("chat mode after SIGCONT", || chat_mode(c.local_flags()));
    c.wait_screen("the redrawn line", |s| {
        s.cursor_line() == "> draft" && c.output().len() > before
    });
    // Still chatting.
    c.type_bytes(b"!\r");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Say { .. }))
        .expect("the line is said after fg");
    assert!(matches!(
        decode_client(&d).unwrap(),
        ClientMsg::Say { text: "draft!", .. }
    ));
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.type_bytes(b"/quit\r");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean().code(), Some(0));
    assert_restored(&c);
}

#[test]
fn a_narrow_window_scrolls_the_input_line() {
    let srv = FakeServer::new();
    let (c, _) = start(&srv, 20);
    c.type_bytes(b"abcdefghijklmnopqrstuvwxyz");
    let s = c.wait_screen("the tail of the line", |s| s.cursor_line().ends_with('z'));
    assert!(s.cursor_line().starts_with("> "));
    assert!(s.col < 20, "the cursor stays on the row: {}", s.col);
    // Resize wider: SIGWINCH redraws with more of the line.
    c.resize(60);
    c.wait_screen("the whole line", |s| {
        s.cursor_line() == "> abcdefghijklmnopqrstuvwxyz"
    });
    c.type_bytes(b"\x03");
    srv.answer_leave("LEAVE");
}

#[test]
fn a_message_wider_than_the_window_wraps_above_the_input_line() {
    let srv = FakeServer::new();
    let (c, from) = start(&srv, 20);
    c.type_bytes(b"draft");
    c.wait_screen("typed", |s| s.cursor_line() == "> draft");
    let text = "0123456789".repeat(4);
    srv.said(from, 1, "bob", &text);
    let s = c.wait_screen("the message, then the input line", |s| {
        s.cursor_line() == "> draft" && s.row >= 3 && s.line(s.row - 1).ends_with("789")
    });
    // "HH:MM bob: " and 40 digits: 51 columns on three rows of 20.
    let rows = s.text();
    let shown = rows[s.row - 3..s.row].concat();
    assert!(shown.ends_with(&format!("bob: {text}")), "{rows:#?}");
    assert_eq!(rows[s.row - 3].chars().count(), 20, "{rows:#?}");
    c.type_bytes(b"\x03");
    srv.answer_leave("LEAVE");
}

#[test]
fn on_a_terminal_a_refused_name_is_asked_again() {
    let srv = FakeServer::new();
    let addr = srv.addr_text();
    let key = srv.fingerprint();
    let mut c = PtyClient::spawn(
        &["--server", &addr, "--lang", "en", "--server-key", &key],
        80,
    );
    c.wait_screen("the name prompt", |s| s.cursor_line() == "name:");
    // Checked locally first: no round-trip for a reserved or invalid name.
    c.type_bytes(b"Admin\r");
    c.wait_screen("the reason and a new prompt", |s| {
        s.text()
            .iter()
            .any(|l| l == "Admin: name reserved: looks like 'admin'")
            && s.cursor_line() == "name:"
    });
    // The line editor at the prompt: arrows move, Backspace deletes.
    c.type_bytes(b"a b\r");
    c.wait_screen("why the name is refused", |s| {
        s.text()
            .iter()
            .any(|l| l == "a b: invalid name: spaces are not allowed")
            && s.cursor_line() == "name:"
    });
    c.type_bytes(b"bxb\x1b[D\x7fo");
    c.wait_screen("the edited name", |s| s.cursor_line() == "name: bob");
    c.type_bytes(b"\r");
    let (d, from) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Join { .. }))
        .expect("JOIN");
    let ClientMsg::Join { name } = decode_client(&d).unwrap() else {
        unreachable!()
    };
    assert_eq!(name, "bob");
    srv.send(from, &ServerMsg::Refused(Refusal::Taken { like: "Bob" }));
    c.wait_screen("the server's reason", |s| {
        s.text()
            .iter()
            .any(|l| l == "bob: name taken: looks like 'Bob'")
            && s.cursor_line() == "name:"
    });
    c.type_bytes(b"bob2\r");
    srv.accept(30_000);
    c.find_helper();
    c.wait_screen("the chat prompt", |s| {
        s.text()
            .iter()
            .any(|l| l.ends_with("welcome, bob2: 2 in the room (type /help for commands)"))
            && s.cursor_line() == ">"
    });
    c.type_bytes(b"/quit\r");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean().code(), Some(0));
    assert_restored(&c);
}

#[test]
fn a_name_taken_while_reconnecting_is_asked_for_again_and_the_draft_survives() {
    let srv = FakeServer::new();
    let mut c = spawn_alice(&srv, 80);
    // A short member timeout: a keepalive every second finds the loss.
    let from = srv.accept(3000);
    c.find_helper();
    c.type_bytes(b"draft");
    c.wait_screen("typed", |s| s.cursor_line() == "> draft");
    srv.forget(from);
    let is_join = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Join { .. });
    let (_, again) = srv.recv_where(WAIT, is_join).expect("a JOIN again");
    srv.send(again, &ServerMsg::Refused(Refusal::Taken { like: "Alice" }));
    c.wait_screen("why, and the name prompt", |s| {
        s.text()
            .iter()
            .any(|l| l.ends_with("alice: name taken: looks like 'Alice'"))
            && s.cursor_line() == "name:"
    });
    c.type_bytes(b"alice2\r");
    let (d, again) = srv.recv_where(WAIT, is_join).expect("the new name");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Join { name: "alice2" }
    );
    srv.welcome(again, "alice2", 30_000);
    c.wait_screen("back, with the draft", |s| {
        s.text().iter().any(|l| l.ends_with("-- back in the room")) && s.cursor_line() == "> draft"
    });
    c.type_bytes(b"\x15/quit\r");
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean().code(), Some(0));
    assert_restored(&c);
}

#[test]
fn a_reconnect_that_goes_on_shows_one_line_that_it_updates() {
    let srv = FakeServer::new();
    let mut c = spawn_alice(&srv, 80);
    // A short member timeout; then the server says nothing at all.
    srv.accept(1500);
    c.find_helper();
    c.type_bytes(b"draft");
    // Each attempt gives up after 4.5 s: the second notice comes about 6.5 s
    // after the welcome; 40 s is more than 5 times that.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(40);
    let second = || {
        let out = String::from_utf8_lossy(&c.output()).into_owned();
        out.matches("-- reconnecting…").count() >= 2
    };
    while !second() {
        assert!(std::time::Instant::now() < deadline, "no second notice");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let s = c.wait_screen("the line kept", |s| s.cursor_line() == "> draft");
    let shown = s
        .text()
        .iter()
        .filter(|l| l.contains("reconnecting"))
        .count();
    assert_eq!(shown, 1, "{:#?}", s.text());
    c.type_bytes(b"\x03");
    assert_eq!(c.wait_clean().code(), Some(130));
    assert_restored(&c);
}
