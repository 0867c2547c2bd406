//! The admin console's input: stdin, opened as a new open file description so
//! that making it non-blocking does not affect the shell or a terminal shared
//! with stdout, split into lines by hand (edge-triggered: read to WouldBlock).
//!
//! On a terminal the console follows job control: while the server is not in
//! the terminal's foreground process group (`chat-server &`) it does not read
//! (a read would stop the whole server with SIGTTIN; SIGTTIN is ignored, so it
//! fails with EIO instead) and says `admin console paused (background)` once;
//! after `fg` it reads again and says `admin console on`. Ctrl-D on
//! a terminal does not turn it off: the server keeps running.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::os::unix::fs::OpenOptionsExt;
use std::time::Duration;

/// A console line longer than this is discarded.
const MAX_CONSOLE_LINE: usize = 64 * 1024;

/// While paused, the server looks this often whether it is in the
/// foreground again (`fg` sends no signal to a job that was running).
pub const PAUSED_CHECK: Duration = Duration::from_millis(300);

/// The console's commands, for the log line that turns it on and `/help`.
pub const COMMANDS: &str = "/who, /kick NAME, /stats, /shutdown, /help";

/// What a read of the console gave, besides lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleState {
    /// Reading (or nothing new to say).
    On,
    /// Not in the terminal's foreground: not reading until continued.
    Paused,
    /// Ctrl-D on a terminal: the console stays on.
    EndOfInputOnTerminal,
    /// Finished (end of a pipe or file, or an error), with the reason.
    Off(String),
}

/// Stdin as the admin console.
pub struct Console {
    pub file: File,
    buf: Vec<u8>,
    /// Dropping the rest of a line that was too long.
    skipping: bool,
    /// Stdin is a terminal: job control and Ctrl-D apply.
    tty: bool,
    /// Paused in the background (said once).
    paused: bool,
}

/// Ignores SIGTTIN and SIGTTOU for the whole process, so that a server in the
/// background of a terminal is never stopped by reading its console (the read
/// fails with EIO instead) or by writing its log.
pub fn ignore_terminal_stop_signals() -> nix::Result<()> {
    use nix::sys::signal::{signal, SigHandler, Signal};
    for sig in [Signal::SIGTTIN, Signal::SIGTTOU] {
        // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal
        // context; no other code of the server relies on these two signals.
        unsafe { signal(sig, SigHandler::SigIgn) }?;
    }
    Ok(())
}

impl Console {
    /// Opens stdin for reading without blocking, or says why it cannot be.
    pub fn open() -> Result<Console, String> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
            .open("/proc/self/fd/0")
            .map_err(|e| format!("cannot open stdin: {}", crate::error::os_reason(&e)))?;
        let tty = nix::unistd::isatty(file.as_fd()).unwrap_or(false);
        Ok(Console {
            file,
            buf: Vec::new(),
            skipping: false,
            tty,
            paused: false,
        })
    }

    /// Is the server in the background of the console's terminal?
    pub fn in_background(&self) -> bool {
        self.tty
            && nix::unistd::tcgetpgrp(self.file.as_fd())
                .is_ok_and(|pgrp| pgrp != nix::unistd::getpgrp())
    }

    /// At start: paused when started in the background.
    pub fn start_state(&mut self) -> ConsoleState {
        if self.in_background() {
            self.paused = true;
            ConsoleState::Paused
        } else {
            ConsoleState::On
        }
    }

    /// Paused in the background?
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// Reads again if paused and now in the foreground (`fg`). Returns `On`
    /// when that changed (to be said), else nothing.
    pub fn back_in_foreground(&mut self) -> Option<ConsoleState> {
        if self.paused && !self.in_background() {
            self.paused = false;
            return Some(ConsoleState::On);
        }
        None
    }

    /// Reads what is there; returns the complete lines, and what changed.
    pub fn read(&mut self) -> (Vec<String>, ConsoleState) {
        let mut chunk = [0u8; 4096];
        let mut state = ConsoleState::On;
        if self.paused {
            return (Vec::new(), state);
        }
        loop {
            match self.file.read(&mut chunk) {
                Ok(0) if self.tty => {
                    // Ctrl-D: what was typed before it is a line; the console stays.
                    state = ConsoleState::EndOfInputOnTerminal;
                    break;
                }
                Ok(0) => {
                    state = ConsoleState::Off("end of input".to_string());
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.raw_os_error() == Some(nix::libc::EIO) && self.in_background() => {
                    self.paused = true;
                    state = ConsoleState::Paused;
                    break;
                }
                Err(e) => {
                    state = ConsoleState::Off(format!(
                        "cannot read stdin: {}",
                        crate::error::os_reason(&e)
                    ));
                    break;
                }
            }
        }
        let mut lines = Vec::new();
        while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = self.buf.drain(..=nl).collect();
            if std::mem::take(&mut self.skipping) {
                continue;
            }
            lines.push(String::from_utf8_lossy(&line[..nl]).into_owned());
        }
        if self.buf.len() > MAX_CONSOLE_LINE {
            self.buf.clear();
            if !self.skipping {
                super::log(&format!(
                    "console: line longer than {MAX_CONSOLE_LINE} bytes, ignored"
                ));
            }
            self.skipping = true;
        }
        let finished = matches!(
            state,
            ConsoleState::Off(_) | ConsoleState::EndOfInputOnTerminal
        );
        if finished && !self.buf.is_empty() && !self.skipping {
            lines.push(String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned());
        }
        (lines, state)
    }
}
