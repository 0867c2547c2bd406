//! Standard streams made safe for a Unix tool.
//!
//! * [`reopen_closed_std_fds`]: a program started with fd 0, 1 or 2 closed
//!   would hand that number to its next `open` or `socket` (a destination file
//!   becoming "stdout", a socket becoming "stdin"). Every binary calls it first.
//! * [`line()`]: write one line and flush, reporting EPIPE and friends as an
//!   error instead of panicking like `println!` (`pcopy … | head`).

use std::io::{self, Write};
use std::os::fd::{AsRawFd, IntoRawFd};

/// Opens `/dev/null` onto each of fds 0, 1 and 2 that is closed.
///
/// Must run before anything else opens a file descriptor.
///
/// Belt and braces: on Linux, Rust's standard runtime already does this before
/// `main` runs (std's start-up code checks fds 0-2 and opens `/dev/null` on any
/// that is closed), so in our binaries this normally finds nothing to do. It stays
/// because the project's specification requires the guarantee explicitly, and
/// because it keeps it true where that start-up code does not run or differs (a
/// library caller with its own `main`, another platform or a future std).
pub fn reopen_closed_std_fds() -> io::Result<()> {
    for fd in 0..=2 {
        // SAFETY: F_GETFD takes no pointer: whatever the number, it only looks
        // the descriptor up in this process's table.
        if unsafe { nix::libc::fcntl(fd, nix::libc::F_GETFD) } != -1 {
            continue;
        }
        // The lowest free number is taken: the closed one, since 0..fd are open.
        let null = std::fs::OpenOptions::new()
            .read(fd == 0)
            .write(fd != 0)
            .open("/dev/null")?;
        if null.as_raw_fd() == fd {
            let _ = null.into_raw_fd(); // keep it open as fd `fd`
            continue;
        }
        // Defensive: if another number came back, move it into place
        // (`null` closes its own number on drop).
        match fd {
            0 => nix::unistd::dup2_stdin(&null)?,
            1 => nix::unistd::dup2_stdout(&null)?,
            _ => nix::unistd::dup2_stderr(&null)?,
        }
    }
    Ok(())
}

/// Writes `text` and a newline to `out` and flushes it.
pub fn line(out: &mut impl Write, text: &str) -> io::Result<()> {
    out.write_all(text.as_bytes())?;
    out.write_all(b"\n")?;
    out.flush()
}

/// Writes one line to stdout; errors (a closed pipe) are returned, never a panic.
pub fn out_line(text: &str) -> io::Result<()> {
    line(&mut io::stdout().lock(), text)
}

/// Writes one line to stderr, ignoring failures: there is nowhere left to report them.
pub fn err_line(text: &str) {
    let _ = line(&mut io::stderr().lock(), text);
}
