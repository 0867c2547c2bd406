//! Forked workers: the shared counters page, the fork and the wait.
//!
//! The parent forks one child per share but the first (with the checked fork of
//! [`crate::process`]), copies the first share itself, and reaps those children,
//! and only them. Children die with the parent
//! (`PR_SET_PDEATHSIG`), report their bytes through atomics in a MAP_SHARED anonymous
//! mapping made before the fork, and leave their error text there when they fail.
//! Children never touch the temporary file's name: cleanup is the parent's job.

use std::io::{self, Write};
use std::num::NonZeroUsize;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicU8, Ordering};
use std::time::Duration;

use nix::sys::mman::{mmap_anonymous, munmap, MapFlags, ProtFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::WaitStatus;
use nix::unistd::{getpid, getppid, ForkResult, Pid};

use crate::error::{Error, Result};
use crate::process::{self, stop_signal, Reaped};

/// The most workers `-j` allows.
pub const MAX_WORKERS: usize = 64;

/// Bytes of error text a child can hand to the parent.
const MSG_MAX: usize = 1000;

/// Child exit codes.
const EXIT_FAILED: i32 = 1; // its message is in its slot
const EXIT_STOPPED: i32 = 3; // stopped early because a sibling failed or a signal came

// ---------------------------------------------------------------------------
// The shared page

/// One worker's slot in the shared mapping.
#[repr(C)]
struct Slot {
    /// Bytes this worker has done (copied or verified).
    done: AtomicU64,
    /// Length of the error text in `msg`, written last (Release) by a failing child.
    msg_len: AtomicU32,
    msg: [AtomicU8; MSG_MAX],
}

/// The shared mapping: atomics only, so every process may read and write any of
/// it through a shared reference.
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
    /// Maps a new, zeroed page of counters.
    pub fn new() -> Result<Self> {
        let len = NonZeroUsize::new(std::mem::size_of::<Page>()).expect("non-empty");
        // SAFETY: a new anonymous mapping at an address the kernel picks: it replaces
        // no existing memory of this process.
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

    fn page(&self) -> &Page {
        // SAFETY: `page` points to a live mapping of `size_of::<Page>()` bytes, page
        // aligned, readable and writable, unmapped only by `drop`; the kernel zeroed
        // it, and all-zero bytes are a valid `Page` (atomics only). Other processes
        // write it only through atomics as well.
        unsafe { self.page.as_ref() }
    }

    fn slot(&self, i: usize) -> &Slot {
        &self.page().slots[i]
    }

    fn abort_flag(&self) -> &AtomicBool {
        &self.page().abort
    }

    /// Resets the counters and messages of the first `n` workers.
    pub fn reset(&self, n: usize) {
        self.abort_flag().store(false, Ordering::Relaxed);
        for i in 0..n {
            self.slot(i).done.store(0, Ordering::Relaxed);
            self.slot(i).msg_len.store(0, Ordering::Relaxed);
        }
    }

    /// Bytes done by the first `n` workers together.
    pub fn total_done(&self, n: usize) -> u64 {
        (0..n).map(|i| self.done_by(i)).sum()
    }

    /// Bytes done by worker `i`.
    pub fn done_by(&self, i: usize) -> u64 {
        self.slot(i).done.load(Ordering::Relaxed)
    }

    fn add_done(&self, i: usize, n: u64) {
        self.slot(i).done.fetch_add(n, Ordering::Relaxed);
    }

    fn aborted(&self) -> bool {
        self.abort_flag().load(Ordering::Relaxed)
    }

    /// In a child: leaves the error text for the parent.
    fn set_msg(&self, i: usize, text: &str) {
        let mut n = text.len().min(MSG_MAX);
        while !text.is_char_boundary(n) {
            n -= 1;
        }
        let slot = self.slot(i);
        for (cell, &b) in slot.msg.iter().zip(&text.as_bytes()[..n]) {
            cell.store(b, Ordering::Relaxed);
        }
        slot.msg_len.store(n as u32, Ordering::Release);
    }

    /// The error text worker `i` left, if any.
    fn msg(&self, i: usize) -> Option<String> {
        let slot = self.slot(i);
        let n = (slot.msg_len.load(Ordering::Acquire) as usize).min(MSG_MAX);
        if n == 0 {
            return None;
        }
        let bytes: Vec<u8> = slot.msg[..n]
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        Some(String::from_utf8_lossy(&bytes).into_owned())
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `new`, with its length; no reference into it
        // outlives `self`, whose drop this is.
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

    let mut children: Vec<(usize, Pid)> = Vec::with_capacity(n - 1);
    let mut fork_error = None;
    for i in 1..n {
        match process::fork_single_threaded(&format!("worker {}", i + 1)) {
            Ok(ForkResult::Child) => child_main(i, parent, shared, work),
            Ok(ForkResult::Parent { child }) => children.push((i, child)),
            Err(e) => {
                fork_error = Some(e);
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

    // Reap every child, and only them. On our own failure or a stop signal, kill
    // them first.
    let mut killed = false;
    while !children.is_empty() {
        if !killed && (own_failed || stop_signal().is_some()) {
            for &(_, pid) in &children {
                let _ = kill(pid, Signal::SIGKILL);
            }
            killed = true;
        }
        let pids: Vec<Pid> = children.iter().map(|&(_, pid)| pid).collect();
        match process::reap_one_of(&pids, Duration::from_millis(100)) {
            Reaped::Running => on_tick(shared),
            Reaped::Ended(pid, status) => {
                let pos = pids.iter().position(|&p| p == pid).expect("a listed pid");
                let (i, _) = children.swap_remove(pos);
                if let Some(e) = child_result(i, pid, status, shared, killed) {
                    results[i] = e;
                    any_failed = true;
                    shared.abort_flag().store(true, Ordering::Relaxed);
                }
            }
            Reaped::Lost(pid, e) => {
                // ECHILD: someone else reaped it (SIGCHLD ignored, which the binary
                // undoes). Its outcome is unknown, so it counts as failed; never
                // as done.
                let pos = pids.iter().position(|&p| p == pid).expect("a listed pid");
                let (i, _) = children.swap_remove(pos);
                results[i].get_or_insert(Error::io(
                    "wait for",
                    format!("worker {} (pid {pid})", i + 1),
                    e.into(),
                ));
                any_failed = true;
                shared.abort_flag().store(true, Ordering::Relaxed);
            }
        }
    }

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
        WaitStatus::Signaled(_, Signal::SIGBUS, _) => Some(Error::plain(format!(
            "{who} was killed by SIGBUS: the file system could not back a mapped page \
             (out of space, or an I/O error)"
        ))),
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
) -> ! {
    let code = catch_unwind(AssertUnwindSafe(|| {
        // Die with the parent. The parent may have died before this line: then
        // getppid() is no longer the pid saved before the fork.
        if nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).is_err() || getppid() != parent {
            return EXIT_STOPPED;
        }
        // A stop signal kills a worker; the parent cleans up. Should this fail, a
        // worker keeps the parent's flag, which `advance` checks.
        let _ = process::set_stop_signals_to_default();
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
    // Neither std nor nix 0.32 has a safe _exit (std::process::exit would run the
    // exit-time cleanup the child shares with its parent).
    // SAFETY: _exit only ends this process; it touches no memory of this program.
    unsafe { nix::libc::_exit(code) }
}
