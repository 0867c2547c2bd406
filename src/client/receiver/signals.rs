//! The receiver's signals: SIGINT, SIGTERM and SIGHUP leave; the parent's
//! death leaves; on a terminal, Ctrl-Z gives the terminal back and stops,
//! `fg` takes it again, and a resize redraws.

use super::ReceiverProcess;
use crate::client::term;
use crate::client::{code, pending_signals, PARENT_DEATH_SIGNAL};
use crate::protocol::sealed::ClientMsg;
use nix::sys::signal::Signal;

impl ReceiverProcess {
    pub(super) fn drain_signals(&mut self) {
        for sig in pending_signals(&mut self.signals) {
            match sig {
                Signal::SIGINT => self.leave(code::SIGINT),
                Signal::SIGTERM => self.leave(code::SIGTERM),
                Signal::SIGHUP => self.leave(code::SIGHUP),
                s if s == PARENT_DEATH_SIGNAL && nix::unistd::getppid() != self.parent => {
                    self.parent_gone();
                }
                Signal::SIGTSTP => self.suspend(),
                Signal::SIGCONT => self.resume(),
                Signal::SIGWINCH => {
                    let (cols, rows) = term::window_size(term::stdout_fd());
                    self.screen.rows = rows;
                    self.screen.resize(cols);
                }
                _ => {}
            }
        }
    }

    /// Ctrl-Z: give the terminal its modes back, then stop like an ordinary program.
    fn suspend(&mut self) {
        self.screen.clear();
        if let Some(m) = &self.term {
            let _ = m.restore(term::stdin_fd());
        }
        let _ = nix::sys::signal::kill(nix::unistd::getpid(), Signal::SIGSTOP);
    }

    /// `fg` (or `bg`): chat mode again if in the foreground, redraw, and check
    /// the session at once with a KEEPALIVE (the server may have timed it out
    /// meanwhile: its RESET starts a reconnect).
    fn resume(&mut self) {
        if let Some(m) = &self.term {
            if term::in_foreground(term::stdin_fd()) {
                let _ = m.enter(term::stdin_fd());
                self.screen.cols = term::columns(term::stdout_fd());
                self.screen.redraw();
            }
        }
        if self.leaving.is_none() {
            let mut body = [0u8; 8];
            let keepalive = ClientMsg::Keepalive {
                last_event: self.repair.reorder.last_in_order() as u32,
            };
            if let Ok(n) = keepalive.encode(&mut body) {
                self.send_body(&body[..n]);
            }
        }
    }
}
