//! The receiver's output: plain flushed lines through a pipe; on a terminal,
//! messages above an input line that is redrawn after each one.

use crate::client::{names, render};

/// Bold yellow, and back to normal.
const HIGHLIGHT_ON: &str = "\x1b[1;33m";
const HIGHLIGHT_OFF: &str = "\x1b[0m";
use std::io::{self, Write};

/// stdout: plain flushed lines through a pipe; on a terminal, messages above
/// an input line that is redrawn after each one.
pub struct Screen {
    pub tty: bool,
    pub prompt: String,
    pub line: Vec<char>,
    pub cursor: usize,
    pub cols: usize,
    /// The window's height in rows.
    pub rows: usize,
    /// Ring the bell when this member is mentioned (only on a terminal).
    pub bell: bool,
    /// Highlight this member's name where it is mentioned.
    pub color: bool,
    /// The terminal rewraps its lines when its width changes (tmux, VTE,
    /// kitty…; not xterm or the Linux console).
    pub reflows: bool,
    /// A write failed (a closed pipe, a hung-up terminal): nothing more is written.
    pub broken: bool,
    /// The terminal is no longer ours (the sender was killed, the shell has
    /// its prompt up): nothing more is written.
    pub silent: bool,
    /// The last line printed on a terminal was a status line that fits one
    /// row (`-- reconnecting…`): the next status line replaces it.
    pub status_shown: bool,
}

impl Screen {
    fn input_seq(&self) -> String {
        let pw = render::str_width(&self.prompt);
        let (text, col) = render::input_view(&self.line, self.cursor, pw, self.cols);
        let mut s = format!("\r\x1b[K{}{}\r", self.prompt, text);
        if pw + col > 0 {
            s.push_str(&format!("\x1b[{}C", pw + col));
        }
        s
    }

    /// A line stamped with the local time now.
    pub fn print(&mut self, text: &str) {
        self.print_at(&render::local_hhmm(), text);
    }

    /// A status line: on a terminal it replaces the status line printed
    /// just before it, if any (so a reconnect that goes on shows one line);
    /// through a pipe it is a line like any other.
    pub fn print_status(&mut self, text: &str) {
        let line = render::stamped(&render::local_hhmm(), text);
        if self.tty && self.status_shown {
            // Up from the input line to the status line, then both anew.
            let s = format!("\r\x1b[K\x1b[A\r\x1b[K{line}\n{}", self.input_seq());
            self.write(&s);
        } else {
            self.print(text);
        }
        self.status_shown = render::str_width(&line) < self.cols;
    }

    /// A line with this stamp (a history line's own time).
    pub fn print_at(&mut self, stamp: &str, text: &str) {
        self.status_shown = false;
        let line = render::stamped(stamp, text);
        if self.tty {
            let s = format!("\r\x1b[K{line}\n{}", self.input_seq());
            self.write(&s);
        } else {
            self.write(&format!("{line}\n"));
        }
    }

    /// A line that mentions this member (or a private message): the bell
    /// once, and the name highlighted.
    pub fn print_mention(&mut self, stamp: &str, text: &str, name: &str) {
        if self.bell && self.tty {
            self.write("\x07");
        }
        if self.color {
            self.print_at(
                stamp,
                &names::highlight(text, name, HIGHLIGHT_ON, HIGHLIGHT_OFF),
            );
        } else {
            self.print_at(stamp, text);
        }
    }

    /// The window's width changed to `cols`. A terminal that rewraps its
    /// lines (tmux, the reference terminal) has wrapped the input line over
    /// several rows if it got narrower, the cursor on the row of its old
    /// column: the rows from the line's first down are cleared, then the line
    /// is drawn anew for the new width, so no stale prompt row stays.
    pub fn resize(&mut self, cols: usize) {
        self.status_shown = false;
        if self.tty {
            let pw = render::str_width(&self.prompt);
            let (_, col) = render::input_view(&self.line, self.cursor, pw, self.cols);
            let rows_above = if self.reflows {
                (pw + col) / cols.max(1)
            } else {
                0
            };
            let mut s = String::from("\r");
            if rows_above > 0 {
                s.push_str(&format!("\x1b[{rows_above}A"));
            }
            s.push_str("\x1b[J");
            self.write(&s);
        }
        self.cols = cols;
        self.redraw();
    }

    /// How many of `names` fit in a screenful (the window's rows but three),
    /// joined with `, ` (at least one).
    pub fn names_in_a_screenful(&self, names: &[String]) -> usize {
        let budget = self.cols * self.rows.saturating_sub(3).max(1);
        let mut used = 0;
        names
            .iter()
            .take_while(|n| {
                used += render::str_width(n) + 2;
                used <= budget
            })
            .count()
            .max(1)
            .min(names.len())
    }

    /// Ctrl-L: clears the screen and draws the input line at the top.
    pub fn clear_all(&mut self) {
        self.status_shown = false;
        if self.tty {
            self.write("\x1b[H\x1b[2J");
            self.redraw();
        }
    }

    pub fn redraw(&mut self) {
        if self.tty {
            let s = self.input_seq();
            self.write(&s);
        }
    }

    pub fn clear(&mut self) {
        if self.tty {
            self.write("\r\x1b[K");
        }
    }

    /// At the end: a half-typed line stays on the screen, above whatever
    /// follows; an empty one is cleared.
    pub fn keep_input(&mut self) {
        if self.tty && !self.line.is_empty() {
            let text: String = self.line.iter().collect();
            self.write(&format!("\r\x1b[K{}{text}\r\n", self.prompt));
        } else {
            self.clear();
        }
    }

    fn write(&mut self, s: &str) {
        if self.broken || self.silent {
            return;
        }
        let mut out = io::stdout().lock();
        if out
            .write_all(s.as_bytes())
            .and_then(|_| out.flush())
            .is_err()
        {
            self.broken = true;
        }
    }
}
