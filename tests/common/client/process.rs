//! The client's processes as seen from /proc: its second process, orphans
//! re-parented to this test process (a subreaper), and bounded waits for their
//! end; and any program run to its end within a bound.

use super::WAIT;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Makes this test process the subreaper of its descendants, so a client's
/// second process that outlives its parent (or is left a zombie) is re-parented
/// here, where [`leftovers`] sees it.
pub fn become_subreaper() {
    nix::sys::prctl::set_child_subreaper(true).expect("PR_SET_CHILD_SUBREAPER");
}

/// `(pid, ppid, state)` of every process, from /proc.
pub fn process_table() -> Vec<(i32, i32, char)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for entry in dir.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Some((ppid, state)) = stat(pid) {
            out.push((pid, ppid, state));
        }
    }
    out
}

/// `(ppid, state)` of one process, if it exists.
pub fn stat(pid: i32) -> Option<(i32, char)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: parse after the last ')'.
    let rest = &text[text.rfind(')')? + 2..];
    let mut f = rest.split_whitespace();
    let state = f.next()?.chars().next()?;
    let ppid = f.next()?.parse().ok()?;
    Some((ppid, state))
}

/// The children of `pid`.
pub fn children_of(pid: i32) -> Vec<i32> {
    process_table()
        .into_iter()
        .filter(|&(_, ppid, _)| ppid == pid)
        .map(|(p, _, _)| p)
        .collect()
}

/// Is `pid` still in the process table (running or a zombie)?
pub fn exists(pid: i32) -> bool {
    stat(pid).is_some()
}

/// Waits until `pid` has left the process table; false if it has not within `limit`.
/// A zombie re-parented to this (subreaper) process is reaped and reported as a leftover.
pub fn gone_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        match stat(pid) {
            None => return true,
            Some((ppid, 'Z')) if ppid == std::process::id() as i32 => {
                // A zombie nobody reaped: its parent exited without waiting.
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return false;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_child(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` (stdin /dev/null) to its end within [`WAIT`]: its exit status,
/// stdout and stderr. Kills, reaps and panics if it does not end in time (its
/// output must fit the pipes: it is read after the exit).
pub fn run_to_end(mut cmd: Command) -> (ExitStatus, String, String) {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    if wait_child(&mut child, WAIT).is_none() {
        let _ = child.kill();
        let _ = child.wait();
        panic!("{cmd:?} did not exit within {WAIT:?}");
    }
    let out = child
        .wait_with_output()
        .expect("the output of an ended child");
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The second process (the receiver) of the chat-client `pid`, once it has
/// forked; panics if it has not within [`WAIT`].
pub fn find_second_process(pid: i32) -> i32 {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        if let Some(&p) = children_of(pid).first() {
            return p;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("chat-client {pid} never forked");
}

/// Asserts that a client's second process, if one was found, has left the
/// process table within 3 s (after the client itself exited).
#[track_caller]
pub fn assert_second_process_gone(helper: Option<i32>) {
    if let Some(h) = helper {
        assert!(
            gone_within(h, Duration::from_secs(3)),
            "the client's second process {h} was left behind"
        );
    }
}

/// Kills a client's second process, if one was found, and reaps it when it
/// was re-parented to this (subreaper) process.
pub fn kill_second_process(helper: Option<i32>) {
    if let Some(h) = helper {
        let pid = nix::unistd::Pid::from_raw(h);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
        if stat(h).map(|(ppid, _)| ppid) == Some(std::process::id() as i32) {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Waits until `pid` (an orphan re-parented to this subreaper) has ended, and
/// reaps it; false if it is still running after `limit`.
pub fn orphan_ended_within(pid: i32, limit: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < limit {
        match stat(pid) {
            None => return true,
            Some((_, 'Z')) => {
                let _ = nix::sys::wait::waitpid(nix::unistd::Pid::from_raw(pid), None);
                return true;
            }
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
