//! Logging in: no answer, refusals, names, and the known-servers file.

use crate::common::*;
use std::time::Duration;
use udpchat::protocol::sealed::{ClientMsg, NameRule, Refusal, ServerMsg};

#[test]
fn no_answer_is_reported() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    // The login gives up after 4.5 s: 20 s is more than 4 times that.
    let mut c = Client::spawn(&addr, "alice", &[]);
    let status = c.wait_clean(Duration::from_secs(20));
    assert_eq!(status.code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(
        err,
        [format!("chat-client: no answer from chat server at {addr}")]
    );
    assert!(c.out.rest(WAIT).is_empty(), "nothing on stdout");
}

#[test]
fn connection_refused_is_said_at_the_first_login() {
    let addr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().to_string()
    };
    let mut c = Client::spawn(&addr, "alice", &[]);
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err.rest(WAIT),
        [format!(
            "chat-client: connection refused: is chat-server running on {addr}?"
        )]
    );
}

/// The JOIN of a client that just connected, answered with `refusal`;
/// returns the client's stderr after it exited 1.
fn refused_with(name: &str, refusal: Refusal<'_>) -> Vec<String> {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), name, &[]);
    let (_, from) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Join { .. }))
        .unwrap();
    srv.send(from, &ServerMsg::Refused(refusal));
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    c.err_rest()
}

#[test]
fn refusals_through_a_pipe_are_fatal_and_say_why() {
    for (name, refusal, why) in [
        ("bob", Refusal::Taken { like: "bob" }, "name taken"),
        (
            "b0b",
            Refusal::Taken { like: "bob" },
            "name taken: looks like 'bob'",
        ),
        (
            "bob",
            Refusal::Reserved { like: "server" },
            "name reserved: looks like 'server'",
        ),
        (
            "bob",
            Refusal::InvalidName(NameRule::MixedScripts),
            "invalid name: it mixes scripts (letters of several alphabets)",
        ),
        ("bob", Refusal::RoomFull, "room full"),
        (
            "bob",
            Refusal::TooManyFromAddress,
            "too many members from your address",
        ),
        (
            "bob",
            Refusal::TooManyJoins,
            "too many joins from your address in the last minute",
        ),
    ] {
        assert_eq!(
            refused_with(name, refusal),
            [format!("chat-client: cannot join as '{name}': {why}")]
        );
    }
}

#[test]
fn invalid_and_reserved_names_are_refused_before_sending() {
    let srv = FakeServer::new();
    for (name, why) in [
        ("a b", "invalid name: spaces are not allowed"),
        (
            "abcdefghijklmnopqrstuvwxyz",
            "invalid name: more than 24 characters",
        ),
        (
            "bob!",
            "invalid name: '!' is not allowed (letters, digits, _ - . only)",
        ),
        ("ＡＤＭＩＮ", "name reserved: looks like 'admin'"),
    ] {
        let mut c = Client::spawn(&srv.addr_text(), name, &[]);
        assert_eq!(c.wait_clean(WAIT).code(), Some(1));
        assert_eq!(
            c.err.rest(WAIT),
            [format!("chat-client: cannot join as '{name}': {why}")]
        );
    }
    assert!(
        srv.recv(Duration::from_millis(200)).is_none(),
        "nothing sent"
    );
}

#[test]
fn name_from_stdin_without_a_prompt() {
    let srv = FakeServer::new();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--lang", "en"]);
    let mut c = Client::spawn_cmd(cmd);
    c.send("carol");
    c.send("first words");
    let from = srv.accept(30_000);
    c.out.wait_for("welcome, carol", WAIT).expect("welcome");
    srv.expect_say("the line after the name is said", 1, "first words");
    srv.send(from, &ServerMsg::Ack { seq: 1 });
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    assert!(c.err_rest().is_empty());
}

#[test]
fn the_first_key_is_recorded_and_a_changed_one_refused() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(30_000);
    c.out.wait_for("welcome, alice", WAIT).expect("welcome");
    let file = c.home.path().join("known_servers");
    let recorded = c.err.wait_for("recorded", WAIT).expect("said so");
    assert_eq!(
        recorded,
        format!(
            "chat-client: recorded the key of {} ({}) in '{}'",
            srv.addr_text(),
            srv.fingerprint(),
            file.display()
        )
    );
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(
        text.contains(&format!("{} {}", srv.addr_text(), srv.fingerprint())),
        "{text}"
    );

    // The same address with another key: refused before anything is sent in
    // the session, both fingerprints and the line to remove.
    drop(srv);
    let other = FakeServer::with_key([9; 32]);
    let addr = other.addr_text();
    std::fs::write(
        &file,
        format!("{addr} {}\n", FakeServer::new().fingerprint()),
    )
    .unwrap();
    let mut cmd = Client::command(&addr, "alice");
    cmd.arg("--known-servers").arg(&file);
    let mut c = Client::spawn_in(
        cmd,
        std::process::Stdio::piped(),
        tempfile::tempdir().unwrap(),
    );
    assert!(
        other.recv(Duration::from_secs(3)).is_none(),
        "no body after the wrong key"
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert_eq!(err.len(), 1, "{err:?}");
    assert!(
        err[0].starts_with(&format!(
            "chat-client: cannot trust '{addr}': its key is SHA256:"
        )),
        "{err:?}"
    );
    assert!(err[0].contains(&FakeServer::new().fingerprint()), "{err:?}");
    assert!(err[0].contains("remove line 1 from"), "{err:?}");

    // A pinned fingerprint: the same refusal, and nothing written.
    let mut c = Client::spawn(
        &addr,
        "alice",
        &["--server-key", &FakeServer::new().fingerprint()],
    );
    assert!(
        other.recv(Duration::from_secs(3)).is_none(),
        "no body after the wrong key"
    );
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    let err = c.err.rest(WAIT);
    assert!(err[0].contains("as given with --server-key"), "{err:?}");
}

#[test]
fn a_malformed_known_servers_line_is_reported_and_ignored() {
    let srv = FakeServer::new();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ks");
    std::fs::write(&file, "garbage\n").unwrap();
    let mut cmd = Client::command(&srv.addr_text(), "alice");
    cmd.arg("--known-servers").arg(&file);
    let mut c = Client::spawn_in(cmd, std::process::Stdio::piped(), dir);
    srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    let warning = c.err.wait_for("line 1", WAIT).expect("the line reported");
    assert!(
        warning.starts_with("chat-client: warning: ignoring line 1 of "),
        "{warning}"
    );
    c.err
        .wait_for("recorded the key", WAIT)
        .expect("then recorded");
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn an_unwritable_known_servers_file_is_a_warning() {
    let srv = FakeServer::new();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("file"), "").unwrap();
    let mut cmd = Client::command(&srv.addr_text(), "alice");
    cmd.arg("--known-servers")
        .arg(dir.path().join("file/known_servers"));
    let mut c = Client::spawn_in(cmd, std::process::Stdio::piped(), dir);
    srv.accept(30_000);
    c.out
        .wait_for("welcome", WAIT)
        .expect("welcome all the same");
    let warning = c.err.wait_for("not recorded", WAIT).expect("a warning");
    assert!(
        warning.starts_with(&format!(
            "chat-client: warning: the key of {} ({}) is not recorded: ",
            srv.addr_text(),
            srv.fingerprint()
        )),
        "{warning}"
    );
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}
