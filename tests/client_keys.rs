//! chat-client's keys and lines on a pseudo-terminal: input history, word
//! motion, editing by grapheme cluster, Ctrl-L, Tab completion, `/msg` to an
//! absent member, mentions with the bell and a highlight; and `/who` in order.

#[path = "common/client.rs"]
mod common;
#[path = "common/pty.rs"]
mod pty;

use common::*;
use pty::PtyClient;
use udpchat::gate::ConnId;
use udpchat::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, RejectReason, ServerMsg,
};

fn start_with(srv: &FakeServer, extra: &[&str], env: &[(&str, &str)]) -> (PtyClient, ConnId) {
    let addr = srv.addr_text();
    let key = srv.fingerprint();
    let mut args = vec!["--server", addr.as_str(), "--name", "alice", "--lang", "en"];
    args.extend_from_slice(&["--server-key", key.as_str()]);
    args.extend_from_slice(extra);
    let mut c = PtyClient::spawn_program(CLIENT, &args, env, 80);
    let from = srv.accept(30_000);
    c.find_helper();
    c.wait_screen("the prompt", |s| s.cursor_line() == ">");
    (c, from)
}

/// Types `keys`, then waits for the input line to read `want`.
fn keys(c: &PtyClient, keys: &str, want: &str) {
    c.type_bytes(keys.as_bytes());
    c.wait_screen(&format!("{keys:?} to give {want:?}"), |s| {
        s.cursor_line() == want
    });
}

fn end(mut c: PtyClient, srv: &FakeServer) {
    c.type_bytes(b"\x15/quit\r");
    let (_, client) = srv.recv_where(WAIT, is_leave).expect("a LEAVE after /quit");
    srv.bye(client, ByeReason::Left, "");
    assert_eq!(c.wait_clean().code(), Some(0));
}

#[test]
fn history_words_graphemes_and_ctrl_l() {
    let srv = FakeServer::new();
    let (c, from) = start_with(&srv, &[], &[]);
    c.type_bytes(b"first\r");
    srv.expect_say("the first line", 1, "first");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.type_bytes(b"second\r");
    srv.expect_say("the second line", 2, "second");
    srv.send(from, &ServerMsg::Ack { seq: 2 });
    keys(&c, "draft", "> draft");
    keys(&c, "\x1b[A", "> second");
    keys(&c, "\x1b[A", "> first");
    keys(&c, "\x1b[B", "> second");
    keys(&c, "\x1b[B", "> draft");
    // Word motion: Alt-b, Ctrl-Left, Alt-f, Ctrl-Right.
    keys(&c, "\x15one two three", "> one two three");
    keys(&c, "\x1bbX", "> one two Xthree");
    keys(&c, "\x1b[1;5D\x1b[1;5DY", "> one Ytwo Xthree");
    keys(&c, "\x1b[1;5C\x1b[1;5CZ", "> one Ytwo XthreeZ");
    keys(&c, "\x01\x1bfW", "> oneW Ytwo XthreeZ");
    // é typed as e + U+0301 is one character (the model shows `e`; the mark
    // has no width): Backspace takes both, so the next letter is not accented.
    keys(&c, "\x05\x15cafe\u{301}", "> cafe");
    keys(&c, "\x7fs", "> cafs");
    c.type_bytes(b"\r");
    srv.expect_say("no stray accent", 3, "cafs");
    srv.send(from, &ServerMsg::Ack { seq: 3 });
    // Ctrl-L clears the screen and draws the input line again.
    keys(&c, "kept", "> kept");
    let before = c.output().len();
    c.type_bytes(b"\x0c");
    c.wait_screen("the redraw", |s| {
        let out = c.output();
        out.len() > before
            && out[before..].windows(4).any(|w| w == b"\x1b[2J")
            && s.cursor_line() == "> kept"
    });
    end(c, &srv);
}

#[test]
fn tab_completes_names_and_msg_to_an_absent_member_is_not_echoed() {
    let srv = FakeServer::new();
    let (c, from) = start_with(&srv, &[], &[]);
    srv.events(
        from,
        1,
        &[
            Event::Joined { name: "bob" },
            Event::Said(line(1, "Carol", "hi")),
            Event::Joined { name: "bobby" },
        ],
    );
    c.wait_screen("the events", |s| {
        s.text().iter().any(|l| l.ends_with("* bobby joined"))
    });
    keys(&c, "ca\t", "> Carol:");
    keys(&c, "\x15bo\t", "> bob");
    c.type_bytes(b"\t");
    c.wait_screen("the candidates", |s| {
        s.text().iter().any(|l| l.ends_with("-- bob, bobby"))
    });
    keys(&c, "\x15/msg car\t", "> /msg Carol");
    // To someone absent: only the refusal shows, no "[you -> dave]" first.
    keys(&c, "\x15/msg dave hi", "> /msg dave hi");
    c.type_bytes(b"\r");
    let is_private = |m: &ClientMsg<'_>| matches!(m, ClientMsg::Private { .. });
    let (d, _) = srv.recv_where(WAIT, is_private).expect("a PRIVATE");
    let ClientMsg::Private { seq, .. } = decode_client(&d).unwrap() else {
        unreachable!()
    };
    srv.send(
        from,
        &ServerMsg::Reject {
            seq,
            reason: RejectReason::NoSuchMember,
        },
    );
    c.wait_screen("the refusal", |s| {
        s.text()
            .iter()
            .any(|l| l.ends_with("-- not delivered (no such member): /msg dave hi"))
    });
    assert!(
        !c.screen()
            .text()
            .iter()
            .any(|l| l.contains("[you -> dave]")),
        "{:#?}",
        c.screen().text()
    );
    // To someone present: echoed once the server has taken it.
    c.type_bytes(b"/msg Carol yo\r");
    let (d, _) = srv.recv_where(WAIT, is_private).expect("a PRIVATE");
    let ClientMsg::Private { seq, .. } = decode_client(&d).unwrap() else {
        unreachable!()
    };
    srv.send(from, &ServerMsg::Ack { seq });
    c.wait_screen("the echo", |s| {
        s.text().iter().any(|l| l.ends_with("[you -> Carol] yo"))
    });
    end(c, &srv);
}

/// Alice's client, with `extra` options and `env`, receives a line that
/// mentions her; returns its output after that line.
fn mentioned(extra: &[&str], env: &[(&str, &str)]) -> Vec<u8> {
    let srv = FakeServer::new();
    let (c, from) = start_with(&srv, extra, env);
    let before = c.output().len();
    srv.said(from, 1, "bob", "hey Alice, look");
    c.wait_screen("the mention", |s| {
        s.text().iter().any(|l| l.ends_with("bob: hey Alice, look"))
    });
    let out = c.output()[before..].to_vec();
    end(c, &srv);
    out
}

fn has(out: &[u8], what: &[u8]) -> bool {
    out.windows(what.len()).any(|w| w == what)
}

#[test]
fn a_mention_rings_the_bell_once_and_highlights_the_name() {
    let out = mentioned(&[], &[]);
    assert_eq!(out.iter().filter(|&&b| b == 7).count(), 1, "one bell");
    assert!(has(&out, b"\x1b[1;33mAlice\x1b[0m"), "highlighted");
    let out = mentioned(&["--no-bell", "--color=never"], &[]);
    assert!(!out.contains(&7), "--no-bell");
    assert!(!has(&out, b"\x1b[1;33m"), "--color=never");
    let out = mentioned(&[], &[("NO_COLOR", "1")]);
    assert!(!has(&out, b"\x1b[1;33m"), "NO_COLOR");
    let out = mentioned(&[], &[("TERM", "dumb")]);
    assert!(!has(&out, b"\x1b[1;33m"), "TERM=dumb");
    let out = mentioned(&["--color=always"], &[("NO_COLOR", "1")]);
    assert!(has(&out, b"\x1b[1;33mAlice"), "--color=always wins");
}

#[test]
fn who_lists_members_by_name_key() {
    let server = Server::start(&[]);
    let mut members: Vec<Client> = ["carol", "Bob", "alice", "ÉMILE", "dave"]
        .iter()
        .map(|n| {
            let mut c = Client::spawn(&server.addr, n, &[]);
            c.out.wait_for("welcome", WAIT).expect("welcome");
            c
        })
        .collect();
    let dave = members.last_mut().unwrap();
    dave.send("/who");
    let line = dave.out.wait_for("in the room:", WAIT).expect("/who");
    assert!(
        line.ends_with("-- 5 in the room: alice, Bob, carol, dave, ÉMILE"),
        "{line}"
    );
    // On a terminal the welcome is followed by who is in the room.
    let mut zed = PtyClient::spawn(
        &["--server", &server.addr, "--name", "zed", "--lang", "en"],
        80,
    );
    zed.find_helper();
    zed.wait_screen("the members after the welcome", |s| {
        s.text()
            .iter()
            .any(|l| l.ends_with("-- 6 in the room: alice, Bob, carol, dave, zed, ÉMILE"))
    });
    zed.type_bytes(b"/quit\r");
    assert_eq!(zed.wait_clean().code(), Some(0));
}
