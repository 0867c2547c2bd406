//! What the client shows: remote text escaped, actions, and Chinese lines.

use crate::common::*;
use nix::sys::signal::Signal;
use udpchat::protocol::sealed::{
    decode_client, ByeReason, ClientMsg, Event, LeftReason, LineFlags, RejectReason, ServerMsg,
    WelcomeFlags,
};

#[test]
fn remote_text_arrives_escaped() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.find_helper();
    srv.events(
        from,
        1,
        &[
            Event::Said(line(
                1,
                "mallory",
                "\x1b[2J\x1b]0;pwned\x07\rX\u{202e}abc\u{9b}",
            )),
            Event::Joined {
                name: "e\x1b[31mvil",
            },
            Event::Admin {
                room_seq: 2,
                time_ms: 0,
                flags: LineFlags::NONE,
                text: "\x1b]52;c;aGk=\x07",
            },
        ],
    );
    let said = c.out.wait_for("mallory:", WAIT).expect("the message");
    assert!(
        said.ends_with("mallory: \\x1b[2J\\x1b]0;pwned\\x07\\x0dX\\u202eabc\\u009b"),
        "{said:?}"
    );
    let joined = c.out.wait_for("joined", WAIT).unwrap();
    assert!(joined.ends_with("* e\\x1b[31mvil joined"), "{joined:?}");
    let admin = c.out.wait_for("[admin]", WAIT).unwrap();
    assert!(admin.ends_with("[admin] \\x1b]52;c;aGk=\\x07"), "{admin:?}");
    for line in &c.out.seen {
        assert!(!line.chars().any(|ch| ch.is_control()), "{line:?}");
    }
    c.signal(Signal::SIGTERM);
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn me_is_sent_and_shown_as_an_action() {
    let srv = FakeServer::new();
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    let from = srv.accept(30_000);
    c.send("/me waves");
    let (d, _) = srv
        .recv_where(WAIT, |m| matches!(m, ClientMsg::Me { .. }))
        .expect("a ME");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Me {
            seq: 1,
            text: "waves"
        }
    );
    srv.send(
        from,
        &ServerMsg::Reject {
            seq: 1,
            reason: RejectReason::NotSupported,
        },
    );
    let said = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        said.ends_with("-- not delivered (the server does not support /me): /me waves"),
        "{said}"
    );
    srv.events(from, 1, &[Event::Me(line(1, "bob", "bows"))]);
    let shown = c.out.wait_for("bows", WAIT).unwrap();
    assert!(shown.ends_with(" * bob bows"), "{shown}");
    c.close_stdin();
    srv.answer_leave("LEAVE");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));

    // A server whose WELCOME does not offer ME is not sent one.
    let mut srv = FakeServer::new();
    srv.flags = WelcomeFlags::NONE;
    let mut c = Client::spawn(&srv.addr_text(), "alice", &[]);
    srv.accept(30_000);
    c.send("/me waves");
    let said = c.out.wait_for("not delivered", WAIT).unwrap();
    assert!(
        said.ends_with("-- not delivered (the server does not support /me): /me waves"),
        "{said}"
    );
    c.close_stdin();
    let (d, from) = srv
        .recv_where(WAIT, |m| {
            matches!(m, ClientMsg::Me { .. } | ClientMsg::Leave)
        })
        .expect("a LEAVE");
    assert_eq!(
        decode_client(&d).unwrap(),
        ClientMsg::Leave,
        "no ME before it"
    );
    srv.bye(from, ByeReason::Left, "");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn chinese_lines_by_flag_and_by_locale() {
    for (flag, env) in [(Some("zh"), None), (None, Some("zh_CN.UTF-8"))] {
        let srv = FakeServer::new();
        let mut cmd = std::process::Command::new(CLIENT);
        cmd.args(["--server", &srv.addr_text(), "--name", "张伟"]);
        cmd.env_remove("LC_ALL").env_remove("LC_MESSAGES");
        match (flag, env) {
            (Some(l), _) => {
                cmd.args(["--lang", l]).env("LANG", "C");
            }
            (None, Some(v)) => {
                cmd.env("LANG", v);
            }
            _ => unreachable!(),
        }
        let mut c = Client::spawn_cmd(cmd);
        let from = srv.accept(30_000);
        c.out
            .wait_for("欢迎 张伟", WAIT)
            .expect("welcome in Chinese");
        srv.events(
            from,
            1,
            &[
                Event::Joined { name: "alice" },
                Event::Said(line(1, "alice", "你好")),
                Event::Admin {
                    room_seq: 2,
                    time_ms: 0,
                    flags: LineFlags::NONE,
                    text: "维护",
                },
                Event::Left {
                    reason: LeftReason::Left,
                    name: "alice",
                },
            ],
        );
        for want in [
            "alice 进入了聊天室",
            "alice 说: 你好",
            "[管理员] 说: 维护",
            "alice 退出了聊天室",
        ] {
            let line = c
                .out
                .wait_for(want, WAIT)
                .unwrap_or_else(|| panic!("{want}"));
            assert!(line.ends_with(want), "{line}");
        }
        c.close_stdin();
        srv.answer_leave("LEAVE");
        assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    }
}
