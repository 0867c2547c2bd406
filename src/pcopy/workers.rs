//! Forked workers: the shared counters page, the fork, the wait, and signals.
//!
//! The parent forks one child per share but the first, copies the first share
//! itself, and reaps every child with `waitpid`. Children die with the parent
//! (`PR_SET_PDEATHSIG`), report their bytes through atomics in a MAP_SHARED anonymous
//! mapping made before the fork, and leave their error text there when they fail.
//! Children never touch the temporary file's name: cleanup is the parent's job.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::{addr_of, addr_of_mut, NonNull};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{
    kill, sigaction, sigprocmask, SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, Signal,
};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, getpid, getppid, ForkResult, Pid};

use crate::error::{Error, Result};

/// The most workers `-j` allows.
pub const MAX_WORKERS: usize = 64;

/// Bytes of error text a child can hand to the parent.
const MSG_MAX: usize = 1000;

/// Child exit codes.
const EXIT_FAILED: i32 = 1; // its message is in its slot
const EXIT_STOPPED: i32 = 3; // stopped early because a sibling failed or a signal came

// ---------------------------------------------------------------------------
// Signals

/// The signal that asked us to stop (SIGINT, SIGTERM, SIGHUP), or 0.
static STOP_SIGNAL: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_stop_signal(sig: nix::libc::c_int) {
    // Async-signal-safe: one atomic store. The first signal wins.
    let _ = STOP_SIGNAL.compare_exchange(0, sig, Ordering::Relaxed, Ordering::Relaxed);
}

const STOP_SIGNALS: [Signal; 3] = [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP];

/// Ignores SIGXFSZ (a file-size limit becomes EFBIG instead of a kill) and turns
/// SIGINT, SIGTERM and SIGHUP into a flag that workers check between chunks, so the
/// parent can kill and reap its children and remove the temporary file. A signal
/// that was ignored when pcopy started (`nohup`, `&` in a script) stays ignored.
///
/// SIGCHLD goes back to its default action whatever pcopy inherited: an ignored
/// SIGCHLD survives exec, and with it the kernel reaps the workers itself, so
/// `waitpid` could never tell a killed worker from a finished one. Call this before
/// any fork.
pub fn install_signal_handlers() -> io::Result<()> {
    let ignore = SigAction::new(SigHandler::SigIgn, SaFlags::empty(), SigSet::empty());
    let default = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // No SA_RESTART: a blocked wait returns EINTR and the flag is seen at once.
    let flag = SigAction::new(
        SigHandler::Handler(on_stop_signal),
        SaFlags::empty(),
        SigSet::empty(),
    );
    // SAFETY: the handler only stores to an atomic; SIG_IGN is always safe.
    unsafe {
        sigaction(Signal::SIGXFSZ, &ignore)?;
        sigaction(Signal::SIGCHLD, &default)?;
        for sig in STOP_SIGNALS {
            let old = sigaction(sig, &flag)?;
            if matches!(old.handler(), SigHandler::SigIgn) {
                sigaction(sig, &ignore)?;
            }
        }
    }
    Ok(())
}

/// The stop signal received so far, if any.
pub fn stop_signal() -> Option<Signal> {
    match STOP_SIGNAL.load(Ordering::Relaxed) {
        0 => None,
        n => Signal::try_from(n).ok(),
    }
}

/// Ends this process by `sig` itself, after pcopy's cleanup: default action,
/// unblocked, raised. Returns only if the process is somehow still alive (the
/// caller then exits with 128 + N).
pub fn die_by(sig: Signal) {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    // SAFETY: restoring the default action of a stop signal.
    if unsafe { sigaction(sig, &dfl) }.is_err() {
        return;
    }
    let mut set = SigSet::empty();
    set.add(sig);
    let _ = sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None);
    let _ = nix::sys::signal::raise(sig);
}

/// In a child: stop signals kill it (default action), as for any process.
fn default_stop_signals() {
    let dfl = SigAction::new(SigHandler::SigDfl, SaFlags::empty(), SigSet::empty());
    for sig in STOP_SIGNALS {
        // SAFETY: restoring the default action.
        if let Ok(old) = unsafe { sigaction(sig, &dfl) } {
            if matches!(old.handler(), SigHandler::SigIgn) {
                // SAFETY: as above.
                let _ = unsafe { sigaction(sig, &old) };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The shared page

/// One worker's slot in the shared mapping.
#[repr(C)]
struct Slot {
    /// Bytes this worker has done (copied or verified).
    done: AtomicU64,
    /// Length of the error text in `msg`, written last (Release) by a failing child.
    msg_len: AtomicU32,
    msg: [u8; MSG_MAX],
}

#[repr(C)]
struct Page {
    /// Set by a failing worker so its siblings stop early.
    abort: AtomicBool,
    slots: [Slot; MAX_WORKERS],
}

/// Counters and error slots shared by the parent and its children: an anonymous
/// MAP_SHARED mapping made before the fork, so every process sees the same memory.
pub struct Shared {
    page: NonNull<Page>,
}

impl Shared {
    pub fn new() -> Result<Self> {
        let len = NonZeroUsize::new(std::mem::size_of::<Page>()).expect("non-empty");
        // SAFETY: a fresh anonymous mapping; zeroed memory is a valid `Page` (all atomics
        // and bytes are zero).
        let ptr = unsafe {
            mmap_anonymous(
                None,
                len,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
            )
        }
        .map_err(|e| Error::io("map", "shared counters", e.into()))?;
        Ok(Shared { page: ptr.cast() })
    }

    fn slot(&self, i: usize) -> *mut Slot {
        assert!(i < MAX_WORKERS);
        // SAFETY: in bounds of the mapping; no reference is made.
        unsafe { addr_of_mut!((*self.page.as_ptr()).slots[i]) }
    }

    fn done(&self, i: usize) -> &AtomicU64 {
        // SAFETY: atomics may be shared between processes and threads alike.
        unsafe { &*addr_of!((*self.slot(i)).done) }
    }

    fn abort_flag(&self) -> &AtomicBool {
        // SAFETY: as above.
        unsafe { &*addr_of!((*self.page.as_ptr()).abort) }
    }

    /// Resets the counters and messages of the first `n` workers.
    pub fn reset(&self, n: usize) {
        self.abort_flag().store(false, Ordering::Relaxed);
        for i in 0..n {
            self.done(i).store(0, Ordering::Relaxed);
            self.msg_len(i).store(0, Ordering::Relaxed);
        }
    }

    fn msg_len(&self, i: usize) -> &AtomicU32 {
        // SAFETY: as above.
        unsafe { &*addr_of!((*self.slot(i)).msg_len) }
    }

    /// Bytes done by the first `n` workers together.
    pub fn total_done(&self, n: usize) -> u64 {
        (0..n).map(|i| self.done(i).load(Ordering::Relaxed)).sum()
    }

    /// Bytes done by worker `i`.
    pub fn done_by(&self, i: usize) -> u64 {
        self.done(i).load(Ordering::Relaxed)
    }

    fn add_done(&self, i: usize, n: u64) {
        self.done(i).fetch_add(n, Ordering::Relaxed);
    }

    fn aborted(&self) -> bool {
        self.abort_flag().load(Ordering::Relaxed)
    }

    /// In a child: leaves the error text for the parent.
    fn set_msg(&self, i: usize, text: &str) {
        let bytes = text.as_bytes();
        let mut n = bytes.len().min(MSG_MAX);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        // SAFETY: only worker `i` writes slot `i`'s text, and the parent reads it only
        // after this worker exits (or after seeing `msg_len` with Acquire).
        unsafe {
            let dst = addr_of_mut!((*self.slot(i)).msg) as *mut u8;
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n);
        }
        self.msg_len(i).store(n as u32, Ordering::Release);
    }

    /// The error text worker `i` left, if any.
    fn msg(&self, i: usize) -> Option<String> {
        let n = self.msg_len(i).load(Ordering::Acquire) as usize;
        if n == 0 {
            return None;
        }
        // SAFETY: the writer finished before the Release store of `msg_len`.
        let bytes = unsafe {
            std::slice::from_raw_parts(addr_of!((*self.slot(i)).msg) as *const u8, n.min(MSG_MAX))
        };
        Some(String::from_utf8_lossy(bytes).into_owned())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length.
        let _ = unsafe { munmap(self.page.cast(), std::mem::size_of::<Page>()) };
    }
}

// ---------------------------------------------------------------------------
// Running the workers

/// Why a run of workers failed.
pub enum Stop {
    /// A worker failed; the error is the one to show.
    Failed(Error),
    /// A stop signal arrived; children are reaped.
    Signal(Signal),
}

/// What each worker calls after every chunk.
pub struct Tick<'a> {
    shared: &'a Shared,
    worker: usize,
    /// Called in the parent only, between chunks: draws progress.
    on_parent_tick: Option<&'a mut dyn FnMut(&Shared)>,
    /// Set when `advance` asked the worker to stop (signal, or a sibling failed):
    /// its error then is a consequence, not a cause.
    stopped: bool,
}

impl Tick<'_> {
    /// Counts `n` more bytes; fails when the worker should stop.
    pub fn advance(&mut self, n: u64) -> Result<()> {
        self.shared.add_done(self.worker, n);
        if let Some(draw) = self.on_parent_tick.as_mut() {
            draw(self.shared);
        }
        if let Some(sig) = stop_signal() {
            self.stopped = true;
            return Err(Error::plain(format!("interrupted by {sig}")));
        }
        if self.shared.aborted() {
            self.stopped = true;
            return Err(Error::plain("stopped: another worker failed"));
        }
        Ok(())
    }
}

/// Forks `n - 1` children that each run `work(i, tick)` for their index i in 1..n,
/// runs `work(0, tick)` in this process, and waits for every child.
///
/// `on_tick` runs in the parent between its chunks and while it waits (a few times a
/// second): the progress line. Returns the first failure by worker order, so with
/// ranges in file order the error names the lowest offset.
pub fn run(
    n: usize,
    shared: &Shared,
    work: &dyn Fn(usize, &mut Tick) -> Result<()>,
    on_tick: &mut dyn FnMut(&Shared),
) -> Result<(), Stop> {
    assert!((1..=MAX_WORKERS).contains(&n));
    shared.reset(n);
    if n == 1 {
        let mut tick = Tick {
            shared,
            worker: 0,
            on_parent_tick: Some(on_tick),
            stopped: false,
        };
        let r = work(0, &mut tick);
        return match (stop_signal(), r) {
            (Some(sig), _) => Err(Stop::Signal(sig)),
            (None, Err(e)) => Err(Stop::Failed(e)),
            (None, Ok(())) => Ok(()),
        };
    }

    let parent = getpid();
    // Anything buffered would be printed once per process.
    let _ = io::stdout().flush();
    let _ = io::stderr().flush();
    // SIGCHLD stays blocked in the parent so `sigtimedwait` can wait for it without a
    // race; children restore the old mask.
    let mut chld = SigSet::empty();
    chld.add(Signal::SIGCHLD);
    let mut old_mask = SigSet::empty();
    sigprocmask(SigmaskHow::SIG_BLOCK, Some(&chld), Some(&mut old_mask))
        .map_err(|e| Stop::Failed(Error::io("block", "SIGCHLD", e.into())))?;

    let mut children: Vec<(usize, Pid)> = Vec::with_capacity(n - 1);
    let mut fork_error = None;
    for i in 1..n {
        // SAFETY: this process is single-threaded (pcopy starts no thread), so the
        // child may run any code.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => child_main(i, parent, shared, work, &old_mask),
            Ok(ForkResult::Parent { child }) => children.push((i, child)),
            Err(e) => {
                fork_error = Some(Error::io("fork", format!("worker {}", i + 1), e.into()));
                break;
            }
        }
    }

    // Each worker's own failure; a worker that only stopped because of another's
    // failure or a signal leaves None.
    let mut results: Vec<Option<Error>> = (0..n).map(|_| None).collect();
    let mut any_failed = false;
    let mut own_failed = false;
    if let Some(e) = fork_error {
        results[0] = Some(e);
        own_failed = true;
    } else {
        let mut tick = Tick {
            shared,
            worker: 0,
            on_parent_tick: Some(&mut *on_tick),
            stopped: false,
        };
        if let Err(e) = work(0, &mut tick) {
            own_failed = true;
            if !tick.stopped {
                results[0] = Some(e);
            }
        }
    }
    if own_failed {
        shared.abort_flag().store(true, Ordering::Relaxed);
    }

    // Reap every child. On our own failure or a stop signal, kill them first.
    let mut killed = false;
    while !children.is_empty() {
        if !killed && (own_failed || stop_signal().is_some()) {
            for &(_, pid) in &children {
                let _ = kill(pid, Signal::SIGKILL);
            }
            killed = true;
        }
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {
                on_tick(shared);
                wait_for_sigchld(Duration::from_millis(100));
            }
            Ok(status) => {
                let Some(pid) = status.pid() else { continue };
                let Some(pos) = children.iter().position(|&(_, p)| p == pid) else {
                    continue;
                };
                let (i, _) = children.swap_remove(pos);
                if let Some(e) = child_result(i, pid, status, shared, killed) {
                    results[i] = e;
                    any_failed = true;
                    shared.abort_flag().store(true, Ordering::Relaxed);
                }
            }
            Err(Errno::EINTR) => {}
            Err(e) => {
                // ECHILD with children still listed: someone else reaped them (SIGCHLD
                // ignored, which `install_signal_handlers` undoes). Their outcome is
                // unknown, so each counts as failed; never as done.
                for &(i, pid) in &children {
                    results[i].get_or_insert(Error::io(
                        "wait for",
                        format!("worker {} (pid {pid})", i + 1),
                        e.into(),
                    ));
                }
                any_failed = true;
                break;
            }
        }
    }
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&old_mask), None);

    if let Some(sig) = stop_signal() {
        return Err(Stop::Signal(sig));
    }
    // The first failure by worker order.
    if let Some(e) = results.into_iter().flatten().next() {
        return Err(Stop::Failed(e));
    }
    if own_failed || any_failed {
        return Err(Stop::Failed(Error::plain("a worker stopped early")));
    }
    Ok(())
}

/// Sleeps until a child changes state, a signal arrives, or `timeout` passes.
fn wait_for_sigchld(timeout: Duration) {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    let ts = nix::libc::timespec {
        tv_sec: timeout.as_secs() as nix::libc::time_t,
        tv_nsec: timeout.subsec_nanos() as nix::libc::c_long,
    };
    // SAFETY: valid set and timespec; the siginfo pointer may be null. SIGCHLD is
    // blocked, so a child that exits before this call leaves it pending: no lost wakeup.
    unsafe {
        nix::libc::sigtimedwait(set.as_ref(), std::ptr::null_mut(), &ts);
    }
}

/// What a reaped child's status means: `None` for success, `Some(None)` for a
/// child that only stopped because of another failure (or was killed by us), and
/// `Some(Some(error))` for a failure of its own.
fn child_result(
    i: usize,
    pid: Pid,
    status: WaitStatus,
    shared: &Shared,
    killed: bool,
) -> Option<Option<Error>> {
    if let WaitStatus::Exited(_, 0) = status {
        return None;
    }
    // A child that wrote its reason and was then killed by us still has its say.
    if let Some(text) = shared.msg(i) {
        return Some(Some(Error::plain(text)));
    }
    let who = format!("worker {} (pid {pid})", i + 1);
    Some(match status {
        WaitStatus::Exited(_, EXIT_STOPPED) => None,
        WaitStatus::Signaled(_, _, _) if killed => None,
        WaitStatus::Exited(_, code) => {
            Some(Error::plain(format!("{who} exited with status {code}")))
        }
        WaitStatus::Signaled(_, sig, _) => Some(Error::plain(format!("{who} was killed by {sig}"))),
        other => Some(Error::plain(format!(
            "{who}: unexpected wait status {other:?}"
        ))),
    })
}

/// The child's whole life: die with the parent, do the work, exit without running
/// any of the parent's cleanup (no destructors, no atexit, no stdio flush).
fn child_main(
    i: usize,
    parent: Pid,
    shared: &Shared,
    work: &dyn Fn(usize, &mut Tick) -> Result<()>,
    old_mask: &SigSet,
) -> ! {
    let code = catch_unwind(AssertUnwindSafe(|| {
        // Die with the parent. The parent may have died before this line: then
        // getppid() is no longer the pid saved before the fork.
        if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
            return EXIT_STOPPED;
        }
        default_stop_signals();
        let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(old_mask), None);
        let mut tick = Tick {
            shared,
            worker: i,
            on_parent_tick: None,
            stopped: false,
        };
        match work(i, &mut tick) {
            Ok(()) => 0,
            Err(_) if tick.stopped => EXIT_STOPPED,
            Err(e) => {
                shared.set_msg(i, &e.to_string());
                shared.abort_flag().store(true, Ordering::Relaxed);
                EXIT_FAILED
            }
        }
    }))
    .unwrap_or_else(|_| {
        shared.set_msg(i, &format!("worker {} panicked", i + 1));
        EXIT_FAILED
    });
    // SAFETY: _exit ends this process at once; nothing of the parent's runs twice.
    unsafe { nix::libc::_exit(code) }
}
