//! Turns at writing DST: workers that copy into one file in the kernel (`splice`,
//! `copy_file_range`) write one at a time, and the others sleep meanwhile.
//!
//! A file system holds the file's inode lock for every write: `copy_file_range`
//! without a clone is a splice that takes it for each 64 KiB piece. Two workers
//! writing one file at once hand it over thousands of times a second, and the
//! waiter spins on it (`rwsem_spin_on_owner`) on the core it could leave to others:
//! measured here, two such workers took 0.85-2.5 s for 2 GiB where one took 0.6 s.
//! Taking turns of [`TURN`] bytes, they copy as fast as one in-kernel stream.
//!
//! A turn is a POSIX record lock on a private memfd made before the fork: such a
//! lock belongs to a process (so forked workers sharing the descriptor exclude each
//! other), the waiter sleeps in the kernel, a signal interrupts the wait, and the
//! kernel drops the lock when its holder dies, so a killed worker cannot leave the
//! others waiting. Nothing else can see the memfd, so no other program's lock can
//! get in the way.

use std::fs::File;

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg};
use nix::libc;
use nix::sys::memfd::{memfd_create, MFdFlags};

use crate::error::{Error, Result};
use crate::process;

/// Bytes a worker copies per turn: long enough that handing over costs nothing
/// (a turn is about 20 ms here), short enough that a waiting worker starts soon.
pub const TURN: u64 = 64 << 20;

/// The lock the workers of one copy take turns with.
pub struct Turns {
    file: File,
}

/// A worker's turn: the others wait until it is dropped.
struct Turn<'a> {
    turns: &'a Turns,
}

/// One worker's use of the turns, if the workers take turns: it holds a turn for
/// [`TURN`] bytes of writing, then lets the others go.
pub struct Schedule<'a> {
    turns: Option<&'a Turns>,
    held: Option<Turn<'a>>,
    /// Bytes left in the turn held.
    left: u64,
}

impl<'a> Schedule<'a> {
    /// Taking turns with `turns`, or writing whenever it likes with `None`.
    pub fn new(turns: Option<&'a Turns>) -> Self {
        Schedule {
            turns,
            held: None,
            left: 0,
        }
    }

    /// Before writing up to `want` bytes: waits for a turn if need be, and returns
    /// how many of them this turn allows (at least 1 when `want` is not 0).
    pub fn allow(&mut self, want: usize) -> Result<usize> {
        let Some(turns) = self.turns else {
            return Ok(want);
        };
        if self.left == 0 {
            self.held = None; // a worker waiting may go next
            self.held = Some(turns.take()?);
            self.left = TURN;
        }
        Ok(want.min(self.left as usize))
    }

    /// After writing `n` bytes.
    pub fn wrote(&mut self, n: u64) {
        self.left = self.left.saturating_sub(n);
    }

    /// Ends the turn held, if any.
    pub fn end(&mut self) {
        self.held = None;
        self.left = 0;
    }
}

impl Turns {
    /// A new lock, free; make it before the fork.
    pub fn new() -> Result<Self> {
        let fd = memfd_create(c"pcopy-turns", MFdFlags::MFD_CLOEXEC)
            .map_err(|e| Error::io("create", "the workers' lock", e.into()))?;
        Ok(Turns {
            file: File::from(fd),
        })
    }

    /// Waits for this process's turn. A stop signal ends the wait with an error.
    fn take(&self) -> Result<Turn<'_>> {
        loop {
            match fcntl(&self.file, FcntlArg::F_SETLKW(&lock(libc::F_WRLCK))) {
                Ok(_) => return Ok(Turn { turns: self }),
                Err(Errno::EINTR) => {
                    if let Some(sig) = process::stop_signal() {
                        return Err(Error::plain(format!("interrupted by {sig}")));
                    }
                }
                Err(e) => return Err(Error::io("lock", "the workers' lock", e.into())),
            }
        }
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        // Cannot fail on a lock this process holds; should it, the lock goes when
        // the process ends, and the others only wait longer.
        let _ = fcntl(&self.turns.file, FcntlArg::F_SETLK(&lock(libc::F_UNLCK)));
    }
}

/// A lock request of `kind` (`F_WRLCK`, `F_UNLCK`) on the memfd's first byte.
fn lock(kind: libc::c_int) -> libc::flock {
    libc::flock {
        l_type: kind as libc::c_short,
        l_whence: libc::SEEK_SET as libc::c_short,
        l_start: 0,
        l_len: 1,
        l_pid: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn without_turns_every_write_is_allowed_whole() {
        let mut s = Schedule::new(None);
        assert_eq!(s.allow(usize::MAX).unwrap(), usize::MAX);
        s.wrote(u64::MAX);
        assert_eq!(s.allow(7).unwrap(), 7);
    }

    #[test]
    fn a_turn_allows_turn_bytes_then_a_new_turn_begins() {
        let turns = Turns::new().unwrap();
        let mut s = Schedule::new(Some(&turns));
        assert_eq!(s.allow(usize::MAX).unwrap(), TURN as usize);
        s.wrote(TURN - 10);
        assert_eq!(s.allow(usize::MAX).unwrap(), 10);
        s.wrote(10);
        // The turn is used up: the next allowance is a whole new turn.
        assert_eq!(s.allow(usize::MAX).unwrap(), TURN as usize);
        s.end();
        assert!(s.held.is_none());
        assert_eq!(s.allow(3).unwrap(), 3);
        assert!(s.held.is_some());
    }
}
