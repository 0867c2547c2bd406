//! The terminal: its saved modes, the chat mode (no canonical input, no echo,
//! but signals and output processing kept), the window width, and a private
//! non-blocking description of stdin.
//!
//! Terminal modes belong to the terminal, not to a process: they are set once
//! before the fork, changed only by the receiver afterwards (Ctrl-Z, `fg`), and
//! restored by whichever process ends last.

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::termios::{self, LocalFlags, SetArg, SpecialCharacterIndices, Termios};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

/// Standard input, borrowed.
pub fn stdin_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 0 stays open for the life of the process: `main` reopens it on
    // /dev/null if it was closed, and nothing closes it.
    unsafe { BorrowedFd::borrow_raw(0) }
}

/// Standard output, borrowed.
pub fn stdout_fd() -> BorrowedFd<'static> {
    // SAFETY: fd 1 stays open for the life of the process: `main` reopens it on
    // /dev/null if it was closed, and nothing closes it.
    unsafe { BorrowedFd::borrow_raw(1) }
}

/// Is `fd` a terminal?
pub fn is_tty(fd: BorrowedFd<'_>) -> bool {
    nix::unistd::isatty(fd).unwrap_or(false)
}

/// Is this process in the terminal's foreground process group?
pub fn in_foreground(fd: BorrowedFd<'_>) -> bool {
    match nix::unistd::tcgetpgrp(fd) {
        Ok(pgrp) => pgrp == nix::unistd::getpgrp(),
        Err(_) => false,
    }
}

/// The saved modes of the terminal on stdin and the chat mode derived from them.
#[derive(Clone)]
pub struct TermModes {
    pub saved: Termios,
    pub chat: Termios,
}

impl TermModes {
    /// Reads the terminal's modes and derives the chat mode: ICANON, ECHO and
    /// IEXTEN off (keys arrive one by one, unechoed, Ctrl-V not special), ISIG
    /// and OPOST kept (Ctrl-C, Ctrl-Z, `\n` as CR LF), VMIN 1, VTIME 0.
    pub fn read(fd: BorrowedFd<'_>) -> io::Result<TermModes> {
        let saved = termios::tcgetattr(fd)?;
        let mut chat = saved.clone();
        chat.local_flags &=
            !(LocalFlags::ICANON | LocalFlags::ECHO | LocalFlags::ECHONL | LocalFlags::IEXTEN);
        chat.local_flags |= LocalFlags::ISIG;
        chat.control_chars[SpecialCharacterIndices::VMIN as usize] = 1;
        chat.control_chars[SpecialCharacterIndices::VTIME as usize] = 0;
        Ok(TermModes { saved, chat })
    }

    /// Puts the terminal in chat mode.
    pub fn enter(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &self.chat)?;
        Ok(())
    }

    /// Gives the terminal back its saved modes.
    pub fn restore(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        termios::tcsetattr(fd, SetArg::TCSADRAIN, &self.saved)?;
        Ok(())
    }
}

/// The terminal's width in columns (80 when unknown).
pub fn columns(fd: BorrowedFd<'_>) -> usize {
    window_size(fd).0
}

/// The terminal's width in columns and height in rows (80 by 24 when unknown).
pub fn window_size(fd: BorrowedFd<'_>) -> (usize, usize) {
    use std::os::fd::AsRawFd;
    let mut ws = nix::libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one `winsize` through the pointer, which points
    // to `ws`, alive and writable for the call; `fd` is open (borrowed).
    let r = unsafe { nix::libc::ioctl(fd.as_raw_fd(), nix::libc::TIOCGWINSZ, &mut ws) };
    if r == 0 && ws.ws_col > 0 && ws.ws_row > 0 {
        (ws.ws_col as usize, ws.ws_row as usize)
    } else {
        (80, 24)
    }
}

/// Does the terminal rewrap its lines when its width changes? Most do (tmux,
/// VTE, kitty, iTerm2, Windows Terminal); xterm (`XTERM_VERSION` set) and the
/// Linux console (`TERM=linux`) do not.
pub fn reflows(get: impl Fn(&str) -> Option<String>) -> bool {
    get("TMUX").is_some()
        || !(get("XTERM_VERSION").is_some() || get("TERM").is_some_and(|t| t == "linux"))
}

/// A non-blocking reader of stdin that leaves fd 0's own flags alone.
///
/// O_NONBLOCK lives on the open file description, which a terminal shares with
/// the shell: setting it on fd 0 would make the shell's next read fail. So
/// stdin is opened anew through `/proc/self/fd/0` (a new description of the
/// same terminal or pipe). Where that fails, fd 0 is duplicated and made
/// non-blocking, and [`restore_stdin_flags`] must run on every way out.
pub struct StdinReader {
    pub fd: OwnedFd,
    /// fd 0's original flags, when they were changed.
    restore_flags: Option<OFlag>,
}

impl StdinReader {
    pub fn open() -> io::Result<StdinReader> {
        let flags = OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC | OFlag::O_NOCTTY;
        match nix::fcntl::open("/proc/self/fd/0", flags, nix::sys::stat::Mode::empty()) {
            Ok(fd) => Ok(StdinReader {
                fd,
                restore_flags: None,
            }),
            Err(_) => {
                let fd = stdin_fd().try_clone_to_owned()?;
                let old = OFlag::from_bits_truncate(fcntl(fd.as_fd(), FcntlArg::F_GETFL)?);
                fcntl(fd.as_fd(), FcntlArg::F_SETFL(old | OFlag::O_NONBLOCK))?;
                Ok(StdinReader {
                    fd,
                    restore_flags: Some(old),
                })
            }
        }
    }

    /// The flags to put back on fd 0 at exit, if they were changed.
    pub fn saved_flags(&self) -> Option<OFlag> {
        self.restore_flags
    }
}

/// Puts fd 0's flags back (see [`StdinReader`]).
pub fn restore_stdin_flags(flags: Option<OFlag>) {
    if let Some(f) = flags {
        let _ = fcntl(stdin_fd(), FcntlArg::F_SETFL(f));
    }
}
