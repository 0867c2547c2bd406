//! Leaving: signals to the client's processes, an unanswered LEAVE, stdin closed.

use crate::common::*;
use nix::sys::signal::Signal;
use std::time::Duration;
use udpchat::gate::ConnId;

/// A joined client and its peer, with the client's second process found.
fn joined(srv: &FakeServer, name: &str) -> (Client, ConnId) {
    let mut c = Client::spawn(&srv.addr_text(), name, &[]);
    let from = srv.accept(30_000);
    c.out.wait_for("welcome", WAIT).expect("welcome");
    c.find_helper();
    (c, from)
}

/// Exactly one LEAVE reaches the peer (it answers with BYE) and no more follow.
fn one_leave(srv: &FakeServer, from: ConnId) {
    assert_eq!(srv.answer_leave("LEAVE"), from);
    assert!(
        srv.recv_where(Duration::from_millis(400), is_leave)
            .is_none(),
        "the LEAVE is not repeated after BYE"
    );
}

#[test]
fn ctrl_c_to_the_process_group() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    c.signal_group(Signal::SIGINT);
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(130));
}

#[test]
fn sigterm_to_the_parent_only() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    c.signal(Signal::SIGTERM);
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn sigterm_to_the_receiver_only() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGTERM).unwrap();
    one_leave(&srv, from);
    assert_eq!(c.wait_clean(WAIT).code(), Some(143));
}

#[test]
fn unanswered_leave_still_ends() {
    let srv = FakeServer::new();
    let (mut c, _) = joined(&srv, "alice");
    c.close_stdin();
    // The LEAVE is given up after 0.5 s: WAIT is 20 times that.
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));
    let leaves =
        std::iter::from_fn(|| srv.recv_where(Duration::from_millis(200), is_leave)).count();
    assert!(leaves >= 2, "LEAVE is repeated while unanswered");
}

#[test]
fn sigkill_of_the_parent_the_receiver_leaves() {
    let srv = FakeServer::new();
    let (mut c, from) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    c.signal(Signal::SIGKILL);
    c.wait(WAIT).expect("killed");
    one_leave(&srv, from);
    assert!(orphan_ended_within(h, WAIT), "the receiver ended");
    let err = c.err.rest(WAIT);
    assert!(err.iter().all(|l| !l.contains("panick")), "{err:?}");
}

#[test]
fn sigkill_of_the_receiver_the_parent_says_so_and_sends_nothing() {
    let srv = FakeServer::new();
    let (mut c, _) = joined(&srv, "alice");
    let h = c.helper.unwrap();
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(h), Signal::SIGKILL).unwrap();
    assert_eq!(c.wait_clean(WAIT).code(), Some(1));
    assert_eq!(
        c.err_rest(),
        ["chat-client: the receiver process was killed by SIGKILL"]
    );
    // Only the receiver sealed: the parent cannot, and does not try.
    assert!(srv.recv(Duration::from_millis(500)).is_none());
}

#[test]
fn started_with_stdin_closed_it_joins_and_leaves() {
    use std::os::unix::process::CommandExt;
    let srv = FakeServer::new();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "alice"]);
    let mut c = Client::spawn_cmd(cmd);
    // That client has a pipe as stdin; this one has none at all.
    c.close_stdin();
    srv.accept(30_000);
    srv.answer_leave("LEAVE on end of input");
    assert_eq!(c.wait_clean(WAIT).code(), Some(0));

    let dir = tempfile::tempdir().unwrap();
    let mut cmd = std::process::Command::new(CLIENT);
    cmd.args(["--server", &srv.addr_text(), "--name", "bob"])
        .arg("--known-servers")
        .arg(dir.path().join("known_servers"));
    // SAFETY: the closure runs in the child between fork and exec and makes one
    // async-signal-safe call, close(0), on the child's own stdin, which no Rust
    // object owns there.
    unsafe {
        cmd.pre_exec(|| {
            nix::libc::close(0);
            Ok(())
        });
    }
    // A Client, so that the process is killed and reaped if the test fails.
    let mut c = Client::spawn_in(cmd, std::process::Stdio::null(), dir);
    srv.accept(30_000);
    srv.answer_leave("LEAVE: fd 0 was /dev/null");
    let status = c.wait(WAIT).expect("did not exit");
    assert_eq!(status.code(), Some(0));
}
