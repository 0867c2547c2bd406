//! chat-client's input through pipes and files (an endless input without a
//! newline, a line longer than the text limit), its usage errors, and the
//! form of its error lines.

#[path = "common/client.rs"]
mod common;

use common::*;
use nix::sys::resource::{setrlimit, Resource};
use nix::sys::signal::Signal;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use udpchat::protocol::sealed::{decode_client, ClientMsg, ServerMsg};
use udpchat::protocol::MAX_TEXT_BYTES;

fn is_say(m: &ClientMsg<'_>) -> bool {
    matches!(m, ClientMsg::Say { .. })
}

/// The sequence number and text of a SAY.
fn say_of(d: &[u8]) -> (u32, String) {
    match decode_client(d).unwrap() {
        ClientMsg::Say { seq, text, .. } => (seq, text.to_string()),
        m => panic!("not a SAY: {m:?}"),
    }
}

#[test]
fn endless_input_without_a_newline_still_ends_on_sigterm() {
    let srv = FakeServer::new();
    let zero = std::fs::File::open("/dev/zero").expect("/dev/zero");
    let cmd = Client::command(&srv.addr_text(), "alice");
    let mut c = Client::spawn_cmd_with_stdin(cmd, Stdio::from(zero));
    srv.accept(30_000);
    c.find_helper();
    // The endless line is read and sent in parts, none over the limit.
    let (d, _) = srv
        .recv_where(WAIT, is_say)
        .expect("a part of the endless line");
    let (_, text) = say_of(&d);
    assert!(
        !text.is_empty() && text.len() <= MAX_TEXT_BYTES,
        "{}",
        text.len()
    );
    // SIGTERM ends it (within a second; WAIT is ten times that).
    c.signal(Signal::SIGTERM);
    srv.answer_leave("a LEAVE after SIGTERM");
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn a_long_line_is_sent_in_parts_as_it_arrives_and_none_is_lost() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    let words: Vec<String> = (0..600).map(|i| format!("word{i}")).collect();
    let line = words.join(" ");
    assert!(line.len() > 4 * MAX_TEXT_BYTES);
    let mut parts: Vec<String> = Vec::new();
    let take = |parts: &mut Vec<String>, what: &str| {
        let (d, _) = srv.recv_where(WAIT, is_say).expect(what);
        let (seq, text) = say_of(&d);
        srv.send(from, &ServerMsg::Ack { seq });
        if seq as usize == parts.len() + 1 {
            assert!(text.len() <= MAX_TEXT_BYTES, "{}", text.len());
            parts.push(text);
        }
    };
    // No newline yet: every part but the last goes out all the same.
    c.write_raw(line.as_bytes());
    while parts.iter().map(|p| p.len() + 1).sum::<usize>() + MAX_TEXT_BYTES < line.len() {
        take(&mut parts, "a part before the line has ended");
    }
    c.write_raw(b"\n");
    while parts.join(" ").len() < line.len() {
        take(&mut parts, "the rest of the line");
    }
    assert_eq!(parts.join(" "), line, "split at spaces, in order, whole");
    c.close_stdin();
    srv.answer_leave("a LEAVE at end of input");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn usage_errors_exit_2_like_the_server() {
    for (args, says) in [
        (
            &["--server", "127.0.0.1"][..],
            "error: invalid value '127.0.0.1' for '--server <ADDR>': expected HOST:PORT",
        ),
        (
            &["--server", "::1"][..],
            "error: invalid value '::1' for '--server <ADDR>'",
        ),
        (
            &["--server", "localhost:chat"][..],
            "error: invalid value 'localhost:chat' for '--server <ADDR>'",
        ),
        (
            &["--lang", "fr"][..],
            "error: invalid value 'fr' for '--lang",
        ),
        (&["--bogus"][..], "error: unexpected argument '--bogus'"),
    ] {
        let out = Command::new(CLIENT)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run chat-client");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with(says), "{args:?}: {err}");
    }
    // The server, given the same mistake, answers with the same code and form.
    let out = Command::new(Server::BIN)
        .args(["--bind", "127.0.0.1"])
        .stdin(Stdio::null())
        .output()
        .expect("run chat-server");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).starts_with("error: invalid value '127.0.0.1'"));
}

#[test]
fn errors_are_one_line_naming_what_failed_without_os_error_numbers() {
    let server = Server::start(&[]);
    let mut failures = 0;
    for limit in 4..=9u64 {
        let mut cmd = Client::command(&server.addr, &format!("u{limit}"));
        // SAFETY: between fork and exec the closure makes one system call
        // (setrlimit) and allocates nothing.
        unsafe {
            cmd.pre_exec(move || {
                setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from)
            });
        }
        let mut c = Client::spawn_cmd(cmd);
        c.close_stdin(); // a client that gets going leaves at once
        let status = c.wait(WAIT).expect("chat-client exits");
        // Notes about the known-servers file are not errors.
        let mut err = c.err_rest();
        err.retain(|l| !l.starts_with("chat-client: warning: the key of "));
        for line in &err {
            let form = line
                .strip_prefix("chat-client: cannot ")
                .and_then(|l| l.split_once("': "));
            assert!(
                form.is_some_and(|(what, why)| what.contains(" '") && !why.is_empty()),
                "limit {limit}: {line:?} is not 'chat-client: cannot OP 'THING': reason'"
            );
            assert!(
                !line.contains("os error") && !line.contains("EMFILE"),
                "limit {limit}: {line:?}"
            );
        }
        if status.code() != Some(0) {
            failures += 1;
            assert_eq!(err.len(), 1, "limit {limit}: one line says why: {err:?}");
        }
    }
    assert!(failures >= 3, "the lowest limits make it fail");
}

#[test]
fn traditional_chinese_for_taiwan_and_every_line_in_chinese() {
    let srv = FakeServer::new();
    let mut cmd = Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "阿发"])
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env_remove("LANGUAGE")
        .env("LANG", "zh_TW.UTF-8");
    let mut c = Client::spawn_cmd(cmd);
    let from = srv.accept(30_000);
    c.out
        .wait_for("歡迎 阿发", WAIT)
        .expect("welcome in Traditional");
    let recorded = c.err.wait_for("密鑰", WAIT).expect("the key recorded");
    assert!(
        recorded.starts_with(&format!(
            "chat-client: 已記錄 {} 的密鑰 (SHA256:",
            srv.addr_text()
        )),
        "{recorded}"
    );
    srv.said(from, 1, "小发", "这里");
    // The client's words are converted, the member's name and text are not.
    let line = c.out.wait_for("小发", WAIT).expect("the message");
    assert!(line.ends_with("小发 說: 这里"), "{line}");
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    // Errors too: a refused name and no answer, with no English left.
    let srv = FakeServer::new();
    let mut cmd = Command::new(CLIENT);
    cmd.args([
        "--server",
        &srv.addr_text(),
        "--name",
        "a b",
        "--lang",
        "zh",
    ]);
    let mut c = Client::spawn_cmd(cmd);
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err.rest(WAIT),
        ["chat-client: 无法以 'a b' 加入: 名字不合法: 不能有空格"]
    );
    let mut cmd = Command::new(CLIENT);
    cmd.args([
        "--server",
        &srv.addr_text(),
        "--name",
        "bob",
        "--lang",
        "zh-Hant",
    ]);
    let mut c = Client::spawn_cmd(cmd);
    // No answer: the login gives up after 4.5 s; 20 s is more than 4 times that.
    assert_eq!(
        c.wait_clean(std::time::Duration::from_secs(20)).code(),
        Some(1)
    );
    assert_eq!(
        c.err.rest(WAIT),
        [format!(
            "chat-client: 聊天服務器 {} 沒有回應",
            srv.addr_text()
        )]
    );
}

#[test]
fn a_whole_long_line_says_how_many_parts_it_goes_in() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    let words: Vec<String> = (0..400).map(|i| format!("w{i:03}")).collect();
    let line = words.join(" "); // 1,999 bytes: two parts
    c.send(&line);
    c.out
        .wait_for("-- sending 2 parts…", WAIT)
        .expect("the parts notice");
    let mut parts = Vec::new();
    while parts.len() < 2 {
        let (d, _) = srv.recv_where(WAIT, is_say).expect("a part");
        let (seq, text) = say_of(&d);
        srv.send(from, &ServerMsg::Ack { seq });
        if seq as usize == parts.len() + 1 {
            parts.push(text);
        }
    }
    assert_eq!(parts.join(" "), line);
    c.close_stdin();
    srv.answer_leave("a LEAVE at end of input");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}
