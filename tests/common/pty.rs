//! A chat-client on a pseudo-terminal: spawned with `setsid` and the pty as
//! its controlling terminal (never `forkpty`, which would fork the test
//! process), a reader thread on the master, and a small screen model that
//! understands what the client writes (CR, LF, `ESC[K`, `ESC[nC`, wide
//! characters).

#![allow(dead_code)]

use nix::pty::{openpty, Winsize};
use nix::sys::termios::{tcgetattr, LocalFlags, Termios};
use std::io::Write;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use unicode_width::UnicodeWidthChar;

/// A terminal's screen as a scrollback of rows, fed with the terminal's
/// output: rows as wide as the window, a character that does not fit wraps
/// to the next row (as xterm and tmux do), and the width can change midway
/// (a resize), from the byte where it happened on.
#[derive(Debug, Clone)]
pub struct Screen {
    pub lines: Vec<Vec<char>>,
    pub row: usize,
    /// The cursor's column; equal to the width after the last column was
    /// written (the next character wraps).
    pub col: usize,
    pub cols: usize,
}

impl Screen {
    /// The screen after `bytes`, in a window `widths[0].1` columns wide whose
    /// width became `w` at byte `at` for each later `(at, w)`.
    pub fn render(bytes: &[u8], widths: &[(usize, usize)]) -> Screen {
        let mut s = Screen {
            lines: vec![Vec::new()],
            row: 0,
            col: 0,
            cols: widths.first().map_or(80, |w| w.1),
        };
        let mut start = 0;
        for &(at, cols) in widths.iter().skip(1) {
            let at = at.min(bytes.len());
            s.feed(&bytes[start..at]);
            start = at;
            s.cols = cols;
            s.col = s.col.min(cols);
        }
        s.feed(&bytes[start..]);
        s
    }

    fn down(&mut self) {
        self.row += 1;
        if self.lines.len() <= self.row {
            self.lines.push(Vec::new());
        }
    }

    fn feed(&mut self, bytes: &[u8]) {
        let text = String::from_utf8_lossy(bytes);
        let s = self;
        let mut chars = text.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '\r' => s.col = 0,
                '\n' => s.down(),
                '\x07' => {}
                '\x1b' => {
                    if chars.peek() == Some(&'[') {
                        chars.next();
                        let mut n = String::new();
                        let mut fin = ' ';
                        for d in chars.by_ref() {
                            if d.is_ascii_digit() || d == ';' || d == '?' {
                                n.push(d);
                            } else {
                                fin = d;
                                break;
                            }
                        }
                        let n: usize = n.parse().unwrap_or(1);
                        let last = s.cols.saturating_sub(1);
                        match fin {
                            'K' => {
                                let col = s.col;
                                s.lines[s.row].truncate(col);
                            }
                            'C' => s.col = (s.col.min(last) + n).min(last),
                            'D' => s.col = s.col.min(last).saturating_sub(n),
                            'A' => s.row = s.row.saturating_sub(n),
                            _ => {}
                        }
                    }
                }
                c => {
                    let w = c.width().unwrap_or(0);
                    if w == 0 {
                        continue;
                    }
                    if s.col + w > s.cols {
                        s.down();
                        s.col = 0;
                    }
                    let col = s.col;
                    let line = &mut s.lines[s.row];
                    while line.len() < col + w {
                        line.push(' ');
                    }
                    line[col] = c;
                    if w == 2 {
                        line[col + 1] = '\0'; // the right half of a wide character
                    }
                    s.col += w;
                }
            }
        }
    }

    /// Line `i` as text (wide characters once, trailing spaces trimmed).
    pub fn line(&self, i: usize) -> String {
        self.lines[i]
            .iter()
            .filter(|&&c| c != '\0')
            .collect::<String>()
            .trim_end()
            .to_string()
    }

    /// The line the cursor is on.
    pub fn cursor_line(&self) -> String {
        self.line(self.row)
    }

    /// Every line, as text.
    pub fn text(&self) -> Vec<String> {
        (0..self.lines.len()).map(|i| self.line(i)).collect()
    }
}

/// A client on a pty.
pub struct PtyClient {
    pub child: Child,
    pub master: OwnedFd,
    /// A slave fd kept open by the test, to read the terminal's modes.
    pub slave: OwnedFd,
    pub modes_at_start: Termios,
    output: Arc<Mutex<Vec<u8>>>,
    /// The window's width from each byte of the output on: `(at, cols)`.
    widths: Mutex<Vec<(usize, usize)>>,
    stop: Arc<AtomicBool>,
    /// How many times the reader found nothing to read for 50 ms.
    quiet: Arc<AtomicU64>,
    /// The client's second process, once found.
    pub helper: Option<i32>,
    /// Holds the client's known-servers file.
    pub home: tempfile::TempDir,
}

impl PtyClient {
    pub fn spawn(args: &[&str], cols: u16) -> PtyClient {
        PtyClient::spawn_program(crate::common::CLIENT, args, &[], cols)
    }

    /// Any program on a pty of `cols` columns, with these environment
    /// variables added (TERM is xterm). chat-client gets `--known-servers`
    /// in a temporary directory of its own.
    pub fn spawn_program(
        program: &str,
        args: &[&str],
        env: &[(&str, &str)],
        cols: u16,
    ) -> PtyClient {
        crate::common::become_subreaper();
        let ws = Winsize {
            ws_row: 24,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        let pty = openpty(&ws, None).expect("openpty");
        let modes_at_start = tcgetattr(&pty.slave).unwrap();
        let home = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(program);
        cmd.args(args);
        if program == crate::common::CLIENT {
            cmd.arg("--known-servers")
                .arg(home.path().join("known_servers"));
        }
        cmd.env("TERM", "xterm")
            .envs(env.iter().copied())
            .stdin(Stdio::from(pty.slave.try_clone().unwrap()))
            .stdout(Stdio::from(pty.slave.try_clone().unwrap()))
            .stderr(Stdio::from(pty.slave.try_clone().unwrap()));
        // SAFETY: the closure runs in the child between fork and exec, where only
        // async-signal-safe calls are allowed: it makes two system calls
        // (setsid, and ioctl TIOCSCTTY with an integer argument) and allocates nothing.
        unsafe {
            cmd.pre_exec(|| {
                if nix::libc::setsid() == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                if nix::libc::ioctl(0, nix::libc::TIOCSCTTY as _, 0) == -1 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = cmd.spawn().expect("spawn a program on a pty");
        let output = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let quiet = Arc::new(AtomicU64::new(0));
        let master = pty.master;
        {
            let master = master.try_clone().unwrap();
            let output = output.clone();
            let stop = stop.clone();
            let quiet = quiet.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                while !stop.load(Ordering::Relaxed) {
                    let mut fds = [nix::poll::PollFd::new(
                        master.as_fd(),
                        nix::poll::PollFlags::POLLIN,
                    )];
                    match nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(50u16)) {
                        Ok(0) => {
                            // Nothing was readable for 50 ms: everything written
                            // before now is in `output` (see `settle`).
                            quiet.fetch_add(1, Ordering::SeqCst);
                            continue;
                        }
                        Ok(_) => {}
                        Err(_) => break,
                    }
                    match nix::unistd::read(&master, &mut buf) {
                        Ok(0) | Err(_) => std::thread::sleep(Duration::from_millis(20)),
                        Ok(n) => output.lock().unwrap().extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
        PtyClient {
            child,
            master,
            slave: pty.slave,
            modes_at_start,
            output,
            widths: Mutex::new(vec![(0, cols as usize)]),
            stop,
            quiet,
            helper: None,
            home,
        }
    }

    /// The client's second process (the receiver), once it has forked.
    pub fn find_helper(&mut self) -> i32 {
        let p = crate::common::find_second_process(self.pid());
        self.helper = Some(p);
        p
    }

    /// Waits for the exit and checks that the second process is gone too.
    pub fn wait_clean(&mut self) -> std::process::ExitStatus {
        let status = self
            .wait(crate::common::WAIT)
            .expect("chat-client did not exit");
        crate::common::assert_second_process_gone(self.helper);
        self.settle();
        status
    }

    /// Waits until the reader has taken everything written to the terminal so far
    /// (after the client ended, its whole output): one quiet poll that began after now.
    pub fn settle(&self) {
        let seen = self.quiet.load(Ordering::SeqCst);
        crate::common::wait_until("the terminal to go quiet", || {
            self.quiet.load(Ordering::SeqCst) >= seen + 2
        });
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// Types bytes on the keyboard.
    pub fn type_bytes(&self, bytes: &[u8]) {
        let mut f = std::fs::File::from(self.master.try_clone().unwrap());
        f.write_all(bytes).unwrap();
    }

    pub fn output(&self) -> Vec<u8> {
        self.output.lock().unwrap().clone()
    }

    pub fn screen(&self) -> Screen {
        Screen::render(&self.output(), &self.widths.lock().unwrap())
    }

    /// Resizes the window (the client gets SIGWINCH); the screen model wraps
    /// at the new width from the output seen so far on.
    pub fn resize(&self, cols: u16) {
        let ws = Winsize {
            ws_row: 24,
            ws_col: cols,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        self.widths
            .lock()
            .unwrap()
            .push((self.output().len(), cols as usize));
        // SAFETY: TIOCSWINSZ reads one winsize from the pointer, which is valid
        // for the call; the master fd is open.
        let r = unsafe {
            nix::libc::ioctl(
                std::os::fd::AsRawFd::as_raw_fd(&self.master),
                nix::libc::TIOCSWINSZ,
                &ws,
            )
        };
        assert_eq!(r, 0, "TIOCSWINSZ");
    }

    /// Waits until `cond` holds for the screen; panics with the screen if not.
    pub fn wait_screen(&self, what: &str, cond: impl Fn(&Screen) -> bool) -> Screen {
        let start = Instant::now();
        loop {
            let s = self.screen();
            if cond(&s) {
                return s;
            }
            if start.elapsed() > crate::common::WAIT {
                panic!("waiting for {what}; screen: {:#?}", s.text());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The local flags of the terminal now.
    pub fn local_flags(&self) -> LocalFlags {
        tcgetattr(&self.slave).unwrap().local_flags
    }

    pub fn wait(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        crate::common::wait_child(&mut self.child, limit)
    }
}

impl Drop for PtyClient {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if self.child.try_wait().ok().flatten().is_none() {
            let pid = nix::unistd::Pid::from_raw(self.pid());
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            let _ = self.child.wait();
        }
        crate::common::kill_second_process(self.helper);
    }
}
