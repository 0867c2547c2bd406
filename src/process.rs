//! Process-wide effects, each in a function whose name says so: forking (checked at
//! run time to happen in a single-threaded process), waiting only for the children
//! the caller forked, and signal dispositions and masks.
//!
//! A binary's `main` sets the dispositions and the mask; the code that owns the
//! children forks and reaps them. Nothing here waits for "any child"
//! (`waitpid(-1)`), which would take the children of a host program.

use std::io;
use std::sync::atomic::{AtomicI32, Ordering};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{
    kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::error::{Error, Result};

// ---------------------------------------------------------------------------
// Fork

/// The number of threads of this process, from the `Threads:` line of
/// `/proc/self/status`.
pub fn thread_count() -> io::Result<usize> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    parse_thread_count(&status).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            "no Threads: line in /proc/self/status",
        )
    })
}

fn parse_thread_count(status: &str) -> Option<usize> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
}

/// Forks this process after checking, at run time, that it has exactly one thread.
///
/// After a fork only the calling thread exists in the child; a lock another thread
/// held (the allocator's, say) would stay locked there forever. So this refuses,
/// with `cannot fork WHAT: the process has N threads`, when the process has more
/// than one, or when the count cannot be read.
pub fn fork_single_threaded(what: &str) -> Result<ForkResult> {
    let threads =
        thread_count().map_err(|e| Error::io("count the threads before forking", what, e))?;
    if threads != 1 {
        return Err(Error::msg(
            "fork",
            what,
            format!("the process has {threads} threads (forking is safe only with one)"),
        ));
    }
    // SAFETY: the process has exactly one thread (checked just above), the one running
    // this code, and only a running thread can start another: so no other thread
    // exists at the fork, none holds a lock the child could wait on forever, and the
    // child may run any code.
    unsafe { fork() }.map_err(|e| Error::io("fork", what, e.into()))
}

// ---------------------------------------------------------------------------
// Waiting for the children one forked

/// What [`reap_one_of`] found.
#[derive(Debug)]
pub enum Reaped {
    /// This child ended (exited or was killed) and is reaped.
    Ended(Pid, WaitStatus),
    /// Waiting for this child failed: ECHILD means someone else reaped it (SIGCHLD
    /// ignored, say), so how it ended is unknown.
    Lost(Pid, Errno),
    /// None of them ended within the time (or a signal cut the wait short).
    Running,
}

/// Reaps one of `children` (pids the caller forked, never any other) if one has
/// ended, waiting up to `timeout` for it; `Duration::ZERO` only looks (WNOHANG).
///
/// The wait sleeps on SIGCHLD when the caller blocked it (see [`block_sigchld`]),
/// so it wakes as soon as a child ends; otherwise it looks every few milliseconds.
/// It returns [`Reaped::Running`] early when another signal arrives, so the caller
/// can see a stop flag.
pub fn reap_one_of(children: &[Pid], timeout: Duration) -> Reaped {
    let deadline = Instant::now() + timeout;
    loop {
        for &pid in children {
            match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => {}
                Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                    return Reaped::Ended(pid, status)
                }
                // Stopped or continued: not an end (and not asked for).
                Ok(_) | Err(Errno::EINTR) => {}
                Err(e) => return Reaped::Lost(pid, e),
            }
        }
        let now = Instant::now();
        if now >= deadline || children.is_empty() {
            return Reaped::Running;
        }
        if !sleep_until_sigchld(deadline - now) {
            return Reaped::Running;
        }
    }
}

/// Sleeps until SIGCHLD (when blocked) or a few milliseconds pass, at most `limit`.
/// Returns false when another signal cut the sleep short.
fn sleep_until_sigchld(limit: Duration) -> bool {
    let chld_blocked = SigSet::thread_get_mask().is_ok_and(|m| m.contains(Signal::SIGCHLD));
    if !chld_blocked {
        std::thread::sleep(limit.min(Duration::from_millis(5)));
        return true;
    }
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let ts = nix::libc::timespec {
        tv_sec: limit.as_secs().min(i32::MAX as u64) as nix::libc::time_t,
        tv_nsec: limit.subsec_nanos() as nix::libc::c_long,
    };
    // nix 0.32 has no sigtimedwait.
    // SAFETY: `set` and `ts` are valid for the call and the info pointer may be null.
    // SIGCHLD is blocked, so one that arrived before this call is pending and ends it
    // at once: no wakeup is lost.
    let r = unsafe { nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts) };
    r >= 0 || Errno::last() != Errno::EINTR
}

/// Waits up to `limit` for `child` (which the caller forked) to end; past it, kills
/// it with SIGKILL and waits for that. Returns how it ended, or `None` when it
/// cannot be waited for (someone else reaped it).
pub fn reap_within(child: Pid, limit: Duration) -> Option<WaitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reap_one_of(&[child], left) {
            Reaped::Ended(_, status) => return Some(status),
            Reaped::Lost(..) => return None,
            Reaped::Running if left.is_zero() => break,
            Reaped::Running => {}
        }
    }
    let _ = kill(child, Signal::SIGKILL);
    loop {
        match waitpid(child, None) {
            Ok(status @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                return Some(status)
            }
            Ok(_) | Err(Errno::EINTR) => {}
            Err(_) => return None,
        }
    }
}

// ---------------------------------------------------------------------------
// Signal dispositions and masks

/// The signals that ask a program to stop: SIGINT, SIGTERM, SIGHUP.
pub const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// The first stop signal received since [`set_stop_signals_to_flag`], or 0.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_stop_signal(sig: nix::libc::c_int) {
    // Async-signal-safe: one atomic operation. The first signal wins.
    let _ = STOP_SIGNAL.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
}

/// Sets `sig`'s disposition to `handler`, except that a signal ignored when the
/// program started (`nohup`, `&` in a script) stays ignored.
fn set_unless_ignored(sig: Signal, handler: SigHandler) -> io::Result<()> {
    let action = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
    // SAFETY: the handlers set here are SIG_DFL or `record_stop_signal`, which does
    // one atomic store (async-signal-safe); the old action put back is one this
    // process already had.
    unsafe {
        let old = sigaction(sig, &action)?;
        if matches!(old.handler(), SigHandler::SigIgn) {
            sigaction(sig, &old)?;
        }
    }
    Ok(())
}

/// Sets the disposition of SIGINT, SIGTERM and SIGHUP to a handler that records the
/// signal for [`stop_signal`], so the program can clean up before it ends; a stop
/// signal the program was started with ignored stays ignored. No SA_RESTART: a
/// blocking call returns EINTR and the flag is seen at once.
pub fn set_stop_signals_to_flag() -> io::Result<()> {
    for sig in STOP_SIGNALS {
        set_unless_ignored(sig, SigHandler::Handler(record_stop_signal))?;
    }
    Ok(())
}

/// Sets the disposition of SIGINT, SIGTERM and SIGHUP back to the default (the
/// process dies), except for the ignored ones: for a forked child that has no
/// cleanup of its own.
pub fn set_stop_signals_to_default() -> io::Result<()> {
    for sig in STOP_SIGNALS {
        set_unless_ignored(sig, SigHandler::SigDfl)?;
    }
    Ok(())
}

/// The stop signal received since [`set_stop_signals_to_flag`], if any.
pub fn stop_signal() -> Option<Signal> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Sets SIGXFSZ's disposition to ignored, so that writing past the file-size limit
/// (`ulimit -f`) fails with EFBIG instead of killing the process.
pub fn ignore_sigxfsz() -> io::Result<()> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_IGN runs no code in the process.
    unsafe { sigaction(Signal::SIGXFSZ, &ignore) }?;
    Ok(())
}

/// Sets SIGCHLD's disposition to the default whatever the program inherited: an
/// ignored SIGCHLD survives exec, and with it the kernel reaps children itself, so
/// a wait could never tell how a child ended.
pub fn set_sigchld_to_default() -> io::Result<()> {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code in the process.
    unsafe { sigaction(Signal::SIGCHLD, &default) }?;
    Ok(())
}

/// Blocks SIGCHLD in the signal mask, so that [`reap_one_of`] sleeps until a child
/// ends instead of polling. Children inherit the mask.
pub fn block_sigchld() -> io::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block()?;
    Ok(())
}

/// Ends this process by `sig` itself: default disposition, unblocked, raised. So a
/// shell running the program in a loop sees death by signal (and stops the loop on
/// Ctrl-C) as it would for `cp`. Returns only if the process is somehow still
/// alive; the caller then exits with 128 + N.
pub fn die_by_signal(sig: Signal) {
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: SIG_DFL runs no code in the process.
    if unsafe { sigaction(sig, &default) }.is_err() {
        return;
    }
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = nix::sys::signal::sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_line_is_parsed() {
        let status = "Name:\tx\nState:\tR\nThreads:\t7\nSigQ:\t0/1\n";
        assert_eq!(parse_thread_count(status), Some(7));
        assert_eq!(parse_thread_count("Name:\tx\n"), None);
    }

    #[test]
    fn the_test_harness_is_counted_and_fork_is_refused() {
        // The test harness runs each test on a thread of its own, so this process
        // has at least two: the checked fork must refuse (and not fork).
        let n = thread_count().unwrap();
        assert!(n >= 2, "{n} threads");
        let err = fork_single_threaded("a test child")
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("cannot fork 'a test child': the process has "),
            "{err}"
        );
    }

    #[test]
    fn reaping_nothing_returns_at_once() {
        assert!(matches!(
            reap_one_of(&[], Duration::from_secs(5)),
            Reaped::Running
        ));
    }
}
