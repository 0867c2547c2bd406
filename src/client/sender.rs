//! The sender half (the parent): reads the user's input — lines through a
//! pipe, keys through the line editor on a terminal — and sends SAY, PRIVATE
//! and commands. It never reads the socket while the receiver lives; ACK,
//! REJECT and new tokens reach it over the socketpair. It reaps the receiver
//! before it exits, and takes over the LEAVE if the receiver was killed.

use crate::client::editor::{Action, Editor};
use crate::client::link::{ToReceiver, ToSender};
use crate::client::outbox::{Outbox, Outgoing};
use crate::client::render::{self, Lang, Notice, Undelivered};
use crate::client::term::{self, StdinReader, TermModes};
use crate::client::{code, leave_and_wait, pending_signals, reap, Session};
use crate::protocol::{Token, MAX_NAME_BYTES, MAX_TEXT_BYTES};
use mio::net::UnixDatagram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

const STDIN: MioToken = MioToken(0);
const LINK: MioToken = MioToken(1);
const SIGNALS: MioToken = MioToken(2);

/// After asking the receiver to quit, how long before it is killed.
const QUIT_GRACE: Duration = Duration::from_millis(900);
/// On end of input, how long we wait for the next acknowledgement before what
/// is still unsent or unacknowledged is reported "not delivered". Each
/// acknowledgement restarts it, so a long file piped in at the server's rate
/// limit is sent whole, however long that takes.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// What a line of input asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    Say(String),
    Private { to: String, text: String },
    Who,
    Quit,
    Help,
    Unknown(String),
    Usage(&'static str),
    Nothing,
}

/// Parses one line of input. `//text` says `/text`.
pub fn parse_line(line: &str) -> Command {
    let line = line.trim_end();
    if line.trim().is_empty() {
        return Command::Nothing;
    }
    let Some(rest) = line.strip_prefix('/') else {
        return Command::Say(line.to_string());
    };
    if rest.starts_with('/') {
        return Command::Say(rest.to_string());
    }
    let (cmd, args) = match rest.find(char::is_whitespace) {
        Some(i) => (&rest[..i], rest[i..].trim_start()),
        None => (rest, ""),
    };
    match cmd {
        "quit" | "exit" => Command::Quit,
        "who" => Command::Who,
        "help" | "?" => Command::Help,
        "msg" => {
            let (to, text) = match args.find(char::is_whitespace) {
                Some(i) => (&args[..i], args[i..].trim_start()),
                None => (args, ""),
            };
            if to.is_empty() || to.len() > MAX_NAME_BYTES || text.is_empty() {
                Command::Usage("/msg NAME TEXT")
            } else {
                Command::Private {
                    to: to.to_string(),
                    text: text.to_string(),
                }
            }
        }
        _ => Command::Unknown(format!("/{cmd}")),
    }
}

struct Sender {
    socket: UdpSocket,
    link: UnixDatagram,
    link_open: bool,
    signals: SignalFd,
    stdin: StdinReader,
    stdin_live: bool,
    token: Token,
    name: String,
    lang: Lang,
    term: Option<TermModes>,
    editor: Editor,
    pending: Vec<u8>,
    outbox: Outbox,
    /// End of input or `/quit`: quit once the outbox is empty (or at this deadline).
    draining: Option<Instant>,
    /// Quit was asked of the receiver, which is killed at this deadline.
    quit_sent: Option<(u8, Instant)>,
    receiver_leaving: bool,
    child: Pid,
    status: Option<WaitStatus>,
}

/// Runs the sender until the receiver has ended; returns the exit code.
pub fn run(session: Session, link: OwnedFd, child: Pid, stdin: StdinReader) -> u8 {
    let mut mask = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ] {
        mask.add(s);
    }
    let signals = match SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
    {
        Ok(s) => s,
        Err(e) => {
            crate::stdio::err_line(&format!("chat-client: cannot read signals: {e}"));
            let _ = nix::sys::signal::kill(child, Signal::SIGTERM);
            let status = reap(child, QUIT_GRACE);
            return finish_without_loop(&session, &stdin, status);
        }
    };
    let s = Sender {
        link: UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(link)),
        link_open: true,
        signals,
        stdin,
        stdin_live: true,
        token: session.token,
        name: session.name.clone(),
        lang: session.lang,
        term: session.term.clone(),
        editor: Editor::new(),
        pending: Vec::new(),
        outbox: Outbox::new(session.token),
        draining: None,
        quit_sent: None,
        receiver_leaving: false,
        child,
        status: None,
        socket: session.socket,
    };
    s.run()
}

fn finish_without_loop(session: &Session, stdin: &StdinReader, status: Option<WaitStatus>) -> u8 {
    if let Some(m) = &session.term {
        let _ = m.restore(term::stdin_fd());
    }
    term::restore_stdin_flags(stdin.saved_flags());
    match status {
        Some(WaitStatus::Exited(_, c)) => c as u8,
        _ => code::FAIL,
    }
}

impl Sender {
    fn run(mut self) -> u8 {
        let mut poll = match Poll::new() {
            Ok(p) => p,
            Err(_) => return self.abandon(),
        };
        let sfd = self.signals.as_raw_fd();
        let ok = poll
            .registry()
            .register(&mut self.link, LINK, Interest::READABLE)
            .and_then(|_| {
                poll.registry()
                    .register(&mut SourceFd(&sfd), SIGNALS, Interest::READABLE)
            });
        if ok.is_err() {
            return self.abandon();
        }
        let stdin_raw = self.stdin.fd.as_raw_fd();
        let pollable = poll
            .registry()
            .register(&mut SourceFd(&stdin_raw), STDIN, Interest::READABLE)
            .is_ok();
        // A regular file or /dev/null cannot be polled (EPERM) but never blocks:
        // read it all now.
        if !pollable {
            self.drain_stdin();
        }
        let mut events = Events::with_capacity(16);
        self.drain_signals();
        loop {
            self.pump(Instant::now());
            if self.status.is_some() {
                break;
            }
            let wait = self
                .next_deadline()
                .saturating_duration_since(Instant::now());
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return self.abandon();
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    STDIN => self.drain_stdin(),
                    LINK => self.drain_link(),
                    SIGNALS => self.drain_signals(),
                    _ => {}
                }
            }
        }
        self.finish()
    }

    fn next_deadline(&self) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(3600);
        if let Some(d) = self.outbox.next_deadline() {
            t = t.min(d);
        }
        if let Some(d) = self.draining {
            t = t.min(d);
        }
        if let Some((_, d)) = self.quit_sent {
            t = t.min(d);
        }
        t
    }

    /// Sends what is due, reports what failed, and moves the quit along.
    fn pump(&mut self, now: Instant) {
        if !self.receiver_leaving {
            let (datagrams, failed) = self.outbox.poll(now);
            for d in datagrams {
                let _ = self.socket.send(&d);
            }
            for (msg, why) in failed {
                self.not_delivered(&msg, why);
            }
        }
        if let Some(deadline) = self.draining {
            if self.outbox.is_empty() || now >= deadline {
                self.draining = None;
                for msg in self.outbox.cancel_all() {
                    self.not_delivered(&msg, Undelivered::NoAnswer);
                }
                self.ask_quit(code::OK);
            }
        }
        if let Some((_, deadline)) = self.quit_sent {
            if now >= deadline && self.status.is_none() {
                // The receiver did not end in time: it is killed and reaped,
                // and `finish` does its LEAVE.
                let _ = nix::sys::signal::kill(self.child, Signal::SIGKILL);
                self.status = reap(self.child, QUIT_GRACE);
            }
        }
    }

    fn tell_receiver(&mut self, m: ToReceiver) {
        if self.link_open {
            let _ = self.link.send(&m.encode());
        }
    }

    fn notice(&mut self, n: Notice<'_>) {
        let line = render::notice_line(self.lang, &n);
        self.tell_receiver(ToReceiver::Print(line));
    }

    fn not_delivered(&mut self, msg: &Outgoing, why: Undelivered) {
        let text = msg.describe();
        self.notice(Notice::NotDelivered { text: &text, why });
    }

    /// Asks the receiver to leave and exit with `code`; it is killed if it
    /// has not ended within [`QUIT_GRACE`].
    fn ask_quit(&mut self, code: u8) {
        self.stdin_live = false;
        if self.quit_sent.is_none() {
            self.quit_sent = Some((code, Instant::now() + QUIT_GRACE));
        }
        self.tell_receiver(ToReceiver::Quit(code));
    }

    /// End of input or `/quit`: what is in flight is delivered first.
    fn start_draining(&mut self) {
        self.stdin_live = false;
        if self.draining.is_none() && self.quit_sent.is_none() {
            self.draining = Some(Instant::now() + DRAIN_LIMIT);
        }
    }

    fn drain_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        while self.stdin_live {
            match nix::unistd::read(self.stdin.fd.as_fd(), &mut buf) {
                Ok(0) => {
                    self.end_of_input();
                    break;
                }
                Ok(n) => self.input(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => {
                    // EIO: the terminal hung up.
                    self.end_of_input();
                    break;
                }
            }
        }
    }

    fn end_of_input(&mut self) {
        if self.term.is_none() && !self.pending.is_empty() {
            let rest = std::mem::take(&mut self.pending);
            self.line(&String::from_utf8_lossy(&rest));
        }
        self.start_draining();
    }

    fn input(&mut self, bytes: &[u8]) {
        if self.term.is_some() {
            let before = (self.editor.text(), self.editor.cursor());
            for action in self.editor.feed(bytes) {
                self.send_edit();
                match action {
                    Action::Submit(line) => self.line(&line),
                    Action::Eof => {
                        self.start_draining();
                        return;
                    }
                }
                if !self.stdin_live {
                    return;
                }
            }
            if (self.editor.text(), self.editor.cursor()) != before {
                self.send_edit();
            }
        } else {
            self.pending.extend_from_slice(bytes);
            while let Some(i) = self.pending.iter().position(|&b| b == b'\n') {
                let mut line: Vec<u8> = self.pending.drain(..=i).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                self.line(&String::from_utf8_lossy(&line));
                if !self.stdin_live {
                    return;
                }
            }
        }
    }

    fn send_edit(&mut self) {
        let m = ToReceiver::Edit {
            line: self.editor.text(),
            cursor: self.editor.cursor() as u32,
        };
        self.tell_receiver(m);
    }

    fn line(&mut self, line: &str) {
        match parse_line(line) {
            Command::Nothing => {}
            Command::Say(text) => {
                if text.len() > MAX_TEXT_BYTES {
                    self.notice(Notice::TooLong(text.len()));
                    return;
                }
                if self.term.is_some() {
                    let echo = render::own_said(self.lang, &self.name, &text);
                    self.tell_receiver(ToReceiver::Print(echo));
                }
                self.outbox.push(Outgoing::Say(text));
            }
            Command::Private { to, text } => {
                if text.len() > MAX_TEXT_BYTES {
                    self.notice(Notice::TooLong(text.len()));
                    return;
                }
                if self.term.is_some() {
                    let echo = render::own_private(self.lang, &to, &text);
                    self.tell_receiver(ToReceiver::Print(echo));
                }
                self.outbox.push(Outgoing::Private { to, text });
            }
            Command::Who => self.tell_receiver(ToReceiver::Who),
            Command::Quit => self.start_draining(),
            Command::Help => self.notice(Notice::Help),
            Command::Unknown(c) => self.notice(Notice::UnknownCommand(&c)),
            Command::Usage(u) => self.notice(Notice::Usage(u)),
        }
    }

    fn drain_link(&mut self) {
        let mut buf = [0u8; 64];
        while self.link_open {
            match self.link.recv(&mut buf) {
                Ok(0) => {
                    // The receiver is gone (or going): reap it.
                    self.link_open = false;
                    if self.status.is_none() {
                        self.status = reap(self.child, QUIT_GRACE);
                    }
                }
                Ok(n) => match ToSender::decode(&buf[..n]) {
                    Some(ToSender::Ack(seq)) => {
                        self.outbox.ack(seq);
                        if let Some(deadline) = &mut self.draining {
                            *deadline = Instant::now() + DRAIN_LIMIT;
                        }
                    }
                    Some(ToSender::Reject(seq, reason)) => {
                        if let Some((msg, why)) = self.outbox.reject(seq, reason, Instant::now()) {
                            self.not_delivered(&msg, why);
                        }
                    }
                    Some(ToSender::Rejoining) => self.outbox.hold(),
                    Some(ToSender::Token(t)) => {
                        self.token = t;
                        self.outbox.new_token(t);
                    }
                    Some(ToSender::Leaving) => {
                        self.receiver_leaving = true;
                        self.stdin_live = false;
                        self.draining = None;
                    }
                    None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.link_open = false;
                    if self.status.is_none() {
                        self.status = reap(self.child, QUIT_GRACE);
                    }
                }
            }
        }
    }

    fn drain_signals(&mut self) {
        for sig in pending_signals(&mut self.signals) {
            match sig {
                Signal::SIGINT => self.ask_quit(code::SIGINT),
                Signal::SIGTERM => self.ask_quit(code::SIGTERM),
                Signal::SIGHUP => self.ask_quit(code::SIGHUP),
                Signal::SIGCHLD => {
                    use nix::sys::wait::{waitpid, WaitPidFlag};
                    if self.status.is_none() {
                        match waitpid(self.child, Some(WaitPidFlag::WNOHANG)) {
                            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => {
                                self.status = Some(s)
                            }
                            Err(nix::errno::Errno::ECHILD) => {
                                self.status = Some(WaitStatus::Exited(self.child, 1))
                            }
                            _ => {}
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Something broke before the loop could run: the receiver is told to quit,
    /// then reaped.
    fn abandon(mut self) -> u8 {
        self.ask_quit(code::FAIL);
        self.status = reap(self.child, QUIT_GRACE);
        self.finish()
    }

    /// The receiver has ended (its status is known). If it was killed, this
    /// process is the last one: it tells the server, then gives the terminal
    /// its modes back.
    fn finish(mut self) -> u8 {
        let code = match self.status {
            Some(WaitStatus::Exited(_, c)) => c as u8,
            other => {
                let how = match other {
                    Some(WaitStatus::Signaled(_, sig, _)) => format!("killed by {sig}"),
                    _ => "lost".to_string(),
                };
                if self.term.is_some() {
                    let _ = crate::stdio::line(&mut io::stdout().lock(), "\r\x1b[K");
                }
                crate::stdio::err_line(&format!(
                    "chat-client: the receiver process was {how}; leaving"
                ));
                let requested = self.quit_sent.map(|(c, _)| c);
                for msg in self.outbox.cancel_all() {
                    let _ = msg; // nothing can print them any more
                }
                leave_and_wait(&self.socket, self.token);
                requested.unwrap_or(code::FAIL)
            }
        };
        if let Some(m) = &self.term {
            let _ = m.restore(term::stdin_fd());
        }
        term::restore_stdin_flags(self.stdin.saved_flags());
        let _ = self.stdin.fd.as_fd();
        code
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        assert_eq!(parse_line("hi there "), Command::Say("hi there".into()));
        assert_eq!(parse_line("   "), Command::Nothing);
        assert_eq!(parse_line("/quit"), Command::Quit);
        assert_eq!(parse_line("/who"), Command::Who);
        assert_eq!(parse_line("/help"), Command::Help);
        assert_eq!(
            parse_line("/msg bob  hello you"),
            Command::Private {
                to: "bob".into(),
                text: "hello you".into()
            }
        );
        assert_eq!(parse_line("/msg bob"), Command::Usage("/msg NAME TEXT"));
        assert_eq!(parse_line("/msg"), Command::Usage("/msg NAME TEXT"));
        assert_eq!(parse_line("/frob x"), Command::Unknown("/frob".into()));
        assert_eq!(parse_line("//who"), Command::Say("/who".into()));
    }
}
