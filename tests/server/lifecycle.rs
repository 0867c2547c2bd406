//! The server process: signals, the console on stdin, the address it binds.

use crate::bye;
use crate::server_harness::*;
use nix::sys::signal::Signal;
use std::net::{SocketAddr, UdpSocket};
use std::process::Stdio;
use std::time::Duration;
use udpchat::protocol::sealed::ByeReason;

#[test]
fn sigterm_tells_everyone_and_exits_zero() {
    let mut s = Server::start(&[]);
    let [mut alice, mut bob] = in_the_room(s.addr, ["alice", "bob"]);
    s.signal(Signal::SIGTERM);
    // BYE 3 (restarting): the connections come back by themselves.
    for m in [&mut alice, &mut bob] {
        assert_eq!(m.next(), Got::Reconnecting);
    }
    // It exits at once; 5 s is a bound for a loaded machine.
    let st = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(st.code(), Some(0));
    s.wait_log("shutting down: told 2 members");
}

#[test]
fn console_help_and_shutdown() {
    let mut s = Server::start(&[]);
    let [mut alice] = in_the_room(s.addr, ["alice"]);
    let mut help = vec![s.command("/help")];
    while !help.last().unwrap().starts_with("Ctrl-D") {
        help.push(s.reply());
    }
    for cmd in [
        "/who",
        "/kick NAME [REASON]",
        "/stats",
        "/shutdown",
        "/help",
    ] {
        assert!(help.iter().any(|l| l.starts_with(cmd)), "{cmd}: {help:#?}");
    }
    assert_eq!(s.command("/frob"), "unknown command '/frob': try /help");
    // A line typed just before /shutdown arrives before the BYE.
    s.console("last words");
    s.console("/shutdown");
    assert_eq!(alice.event(), Ev::Admin("last words".into()));
    assert_eq!(alice.next(), bye(ByeReason::Closing, ""));
    let st = s.wait_exit(Duration::from_secs(5)).expect("exited");
    assert_eq!(st.code(), Some(0));
    s.wait_log("shutting down: told 1 members");
}

#[test]
fn sigint_exits_zero_too_and_close_on_signal_closes() {
    let mut s = Server::start(&["--close-on-signal"]);
    let [mut alice] = in_the_room(s.addr, ["alice"]);
    s.signal(Signal::SIGINT);
    assert_eq!(alice.next(), bye(ByeReason::Closing, ""));
    assert_eq!(
        s.wait_exit(Duration::from_secs(5)).and_then(|st| st.code()),
        Some(0)
    );
}

#[test]
fn console_off_when_stdin_is_dev_null_closed_or_ends() {
    let dir = temp_dir();
    let key = dir.path().join("server.key");
    let mut s = Server::spawn(
        Server::command_with_key(&key, &["--bind", "127.0.0.1:0"]),
        Stdio::null(),
    );
    s.wait_log("admin console off");
    let _a = Client::join(s.addr, "alice");

    // fd 0 closed at start: it is reopened on /dev/null, not taken by the socket
    // or the signalfd (either would also turn the console off, so look at fd 0).
    let mut cmd = std::process::Command::new("sh");
    cmd.args([
        "-c",
        "exec \"$0\" --bind 127.0.0.1:0 --key \"$1\" --db none <&-",
        BIN,
    ])
    .arg(&key);
    let mut s = Server::spawn(cmd, Stdio::null());
    s.wait_log("admin console off");
    let fd0 = std::fs::read_link(format!("/proc/{}/fd/0", s.pid())).expect("fd 0 is open");
    assert_eq!(fd0, std::path::Path::new("/dev/null"));
    let _a = Client::join(s.addr, "alice");

    let mut s = Server::start(&[]);
    s.wait_log("admin console on");
    s.close_console();
    s.wait_log("admin console off (end of input)");
    let mut a = Client::join(s.addr, "alice");
    a.say_acked("still serving");
    assert_eq!(
        s.log
            .iter()
            .filter(|l| l.contains("admin console off"))
            .count(),
        1
    );
}

#[test]
fn a_port_in_use_is_an_error() {
    let s = Server::start(&[]);
    let dir = temp_dir();
    let out = Server::command_with_key(&dir.path().join("k"), &["--bind", &s.addr.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("run a second server");
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        format!(
            "chat-server: cannot bind '{}': Address already in use\n",
            s.addr
        )
    );
}

#[test]
fn wildcard_bind_answers_from_the_address_asked() {
    let dir = temp_dir();
    let key = dir.path().join("server.key");
    let s = Server::spawn(
        Server::command_with_key(&key, &["--bind", "0.0.0.0:0"]),
        Stdio::piped(),
    );
    assert!(s.log[0].starts_with("listening on 0.0.0.0:"));
    // Ask on 127.0.0.2 from 127.0.0.1: a socket connected to 127.0.0.2 only
    // sees the answers if they leave from 127.0.0.2.
    let to = SocketAddr::from(([127, 0, 0, 2], s.addr.port()));
    let sock = socket();
    sock.connect(to).expect("connect");
    let mut c = Client::on(sock, to, "alice");
    c.try_join().expect("joined over 127.0.0.2");
    c.say_acked("hi");
    // IPv6, where the host has it.
    if UdpSocket::bind("[::1]:0").is_ok() {
        let s6 = Server::spawn(
            Server::command_with_key(&key, &["--bind", "[::]:0", "--db", "none"]),
            Stdio::piped(),
        );
        let to = SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, s6.addr.port()));
        let sock = UdpSocket::bind("[::1]:0").expect("bind ::1");
        sock.set_read_timeout(Some(WAIT)).expect("timeout");
        sock.connect(to).expect("connect");
        let mut c = Client::on(sock, to, "bob");
        c.try_join().expect("joined over ::1");
        // IPv4 on the dual-stack socket.
        let to = SocketAddr::from(([127, 0, 0, 3], s6.addr.port()));
        let sock = socket();
        sock.connect(to).expect("connect");
        let mut d = Client::on(sock, to, "carol");
        d.try_join().expect("joined over 127.0.0.3 on [::]");
    }
}
