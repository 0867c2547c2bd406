//! The receiver half: the only reader of the socket and the only writer to
//! stdout. It prints events, reports lost ones, forwards ACK and REJECT to the
//! sender, pings, pages `/who`, re-joins after a server restart, owns the
//! LEAVE, and on a terminal draws the sender's half-typed line under the
//! messages.

mod members;
mod rejoin;
mod signals;

use crate::client::lang::error_text;
use crate::client::link::{ToReceiver, ToSender};
use crate::client::login::Login;
use crate::client::reasons::{self, Fatal};
use crate::client::render::{self, Lang, Notice};
use crate::client::screen::Screen;
use crate::client::tally::{SeqTracker, WhoPager};
use crate::client::term::{self, TermModes};
use crate::client::{code, Session, LEAVE_RESEND, LEAVE_WAIT, PARENT_DEATH_SIGNAL};
use crate::error::Error;
use crate::protocol::{self, ByeReason, ClientMsg, ServerMsg, Token, MAX_DATAGRAM};
use members::WhoFor;
use mio::net::{UdpSocket, UnixDatagram};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken};
use nix::fcntl::OFlag;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

const SOCKET: MioToken = MioToken(0);
const LINK: MioToken = MioToken(1);
const SIGNALS: MioToken = MioToken(2);
/// How long a quit on end of input waits for a `/who` still paging (its pages
/// take milliseconds; the sender kills a receiver that has not ended 0.9 s after
/// the quit, LEAVE included).
const WHO_BEFORE_QUIT: Duration = Duration::from_millis(300);

struct Leaving {
    code: u8,
    next_send: Instant,
    until: Instant,
}

struct ReceiverProcess {
    socket: UdpSocket,
    link: UnixDatagram,
    signals: SignalFd,
    server_text: String,
    token: Token,
    name: String,
    lang: Lang,
    timeout: Duration,
    last_heard: Instant,
    next_ping: Instant,
    seq: SeqTracker,
    who: Option<WhoPager>,
    /// What the `/who` in progress is for.
    who_for: WhoFor,
    /// End of input or `/quit` arrived while a `/who` was still paging: the
    /// quit waits for it (until this deadline), so a script's last `/who` prints.
    quit_after_who: Option<(u8, Instant)>,
    rejoin: Option<Login>,
    leaving: Option<Leaving>,
    done: Option<(u8, Option<String>)>,
    parent: Pid,
    parent_alive: bool,
    link_open: bool,
    term: Option<TermModes>,
    stdin_flags: Option<OFlag>,
    screen: Screen,
}

/// Runs the receiver until the session ends; returns the exit code.
pub fn run(
    session: Session,
    link: OwnedFd,
    parent: Pid,
    parent_gone: bool,
    stdin_flags: Option<OFlag>,
) -> u8 {
    let lang = session.lang;
    let mut r = match ReceiverProcess::new(session, link, parent, stdin_flags) {
        Ok(r) => r,
        Err((e, socket, token)) => {
            let e = error_text(lang, &e);
            crate::stdio::err_line(&format!("chat-client: {e}"));
            let _ = socket.send(&ClientMsg::Leave { token }.to_vec());
            return code::FAIL;
        }
    };
    if parent_gone {
        r.parent_gone();
    }
    r.run()
}

type StartError = (Error, std::net::UdpSocket, Token);

impl ReceiverProcess {
    fn new(
        s: Session,
        link: OwnedFd,
        parent: Pid,
        stdin_flags: Option<OFlag>,
    ) -> Result<ReceiverProcess, StartError> {
        let tty = s.term.is_some();
        let mut mask = SigSet::empty();
        for sig in [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            PARENT_DEATH_SIGNAL,
        ] {
            mask.add(sig);
        }
        if tty {
            for sig in [Signal::SIGTSTP, Signal::SIGCONT, Signal::SIGWINCH] {
                mask.add(sig);
            }
        }
        let token = s.token;
        let signals = match nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .and_then(|_| {
                SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            }) {
            Ok(fd) => fd,
            Err(e) => return Err((Error::io("create", "signalfd", e.into()), s.socket, token)),
        };
        let now = Instant::now();
        let timeout = Duration::from_millis(s.timeout_ms as u64);
        let (cols, rows) = if tty {
            term::window_size(term::stdout_fd())
        } else {
            (80, 24)
        };
        let screen = Screen {
            tty,
            prompt: render::input_prompt(s.lang).into_owned(),
            line: Vec::new(),
            cursor: 0,
            cols,
            rows,
            reflows: term::reflows(|k| std::env::var(k).ok()),
            bell: s.bell,
            color: s.color,
            broken: false,
            silent: false,
        };
        Ok(ReceiverProcess {
            socket: UdpSocket::from_std(s.socket),
            link: UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(link)),
            signals,
            server_text: s.server_text,
            token,
            name: s.name,
            lang: s.lang,
            timeout,
            last_heard: now,
            next_ping: now + timeout / 3,
            seq: SeqTracker::new(),
            who: None,
            who_for: WhoFor::Printing,
            quit_after_who: None,
            rejoin: None,
            leaving: None,
            done: None,
            parent,
            parent_alive: true,
            link_open: true,
            term: s.term,
            stdin_flags,
            screen,
        })
    }

    fn run(mut self) -> u8 {
        let mut poll = match Poll::new() {
            Ok(p) => p,
            Err(e) => {
                self.end(
                    code::FAIL,
                    Some(error_text(self.lang, &Error::io("create", "poll", e))),
                );
                return self.finish();
            }
        };
        let sfd = self.signals.as_raw_fd();
        let registered = poll
            .registry()
            .register(&mut self.socket, SOCKET, Interest::READABLE)
            .and_then(|_| {
                poll.registry()
                    .register(&mut self.link, LINK, Interest::READABLE)
            })
            .and_then(|_| {
                poll.registry()
                    .register(&mut SourceFd(&sfd), SIGNALS, Interest::READABLE)
            });
        if let Err(e) = registered {
            self.end(
                code::FAIL,
                Some(error_text(self.lang, &Error::io("register", "poll", e))),
            );
            return self.finish();
        }
        self.screen.redraw();
        if self.screen.tty {
            self.start_who(WhoFor::Welcome);
        }
        let mut events = Events::with_capacity(16);
        // Signals that arrived before the signalfd existed are pending on it.
        self.drain_signals();
        while self.done.is_none() {
            let now = Instant::now();
            let wait = self.next_deadline().saturating_duration_since(now);
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    self.end(
                        code::FAIL,
                        Some(error_text(self.lang, &Error::io("poll", "socket", e))),
                    );
                    break;
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    SOCKET => self.drain_socket(),
                    LINK => self.drain_link(),
                    SIGNALS => self.drain_signals(),
                    _ => {}
                }
            }
            self.timers(Instant::now());
            if self.screen.broken && self.leaving.is_none() {
                self.leave(code::FAIL);
            }
        }
        self.finish()
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut t = now + Duration::from_secs(3600);
        if let Some(l) = &self.leaving {
            return l.next_send.min(l.until);
        }
        if let Some(login) = &self.rejoin {
            t = t.min(login.next_wakeup());
        } else {
            t = t.min(self.next_ping).min(self.last_heard + self.timeout);
        }
        if let Some(w) = &self.who {
            t = t.min(w.next_wakeup());
        }
        if let Some((_, until)) = self.quit_after_who {
            t = t.min(if self.who.is_none() { now } else { until });
        }
        t
    }

    fn send(&self, d: &[u8]) {
        let _ = self.socket.send(d);
    }

    fn tell_sender(&mut self, m: ToSender) {
        if self.link_open {
            let _ = self.link.send(&m.encode());
        }
    }

    fn print(&mut self, text: &str) {
        self.screen.print(text);
    }

    fn notice(&mut self, n: Notice<'_>) {
        let line = render::notice_line(self.lang, &n);
        self.print(&line);
    }

    fn end(&mut self, code: u8, msg: Option<String>) {
        if self.done.is_none() {
            self.done = Some((code, msg));
        }
    }

    /// Starts leaving: LEAVE until BYE, for at most [`LEAVE_WAIT`].
    fn leave(&mut self, code: u8) {
        if self.leaving.is_some() || self.done.is_some() {
            return;
        }
        let now = Instant::now();
        self.who = None;
        self.rejoin = None;
        self.leaving = Some(Leaving {
            code,
            next_send: now,
            until: now + LEAVE_WAIT,
        });
        self.tell_sender(ToSender::Leaving);
        self.timers(now);
    }

    fn parent_gone(&mut self) {
        if !self.parent_alive {
            return;
        }
        self.parent_alive = false;
        self.link_open = false;
        // The shell has the terminal again: no line, no prompt over its own.
        self.screen.silent = self.screen.tty;
        self.leave(code::FAIL);
    }

    fn drain_socket(&mut self) {
        let mut buf = [0u8; MAX_DATAGRAM + 1];
        loop {
            match self.socket.recv(&mut buf) {
                Ok(n) if n <= MAX_DATAGRAM => {
                    if let Ok(msg) = protocol::decode_server(&buf[..n]) {
                        self.on_message(msg);
                    }
                }
                Ok(_) => {} // longer than any valid datagram: malformed
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {} // ICMP errors (connection refused): the timeout decides
            }
            if self.done.is_some() {
                break;
            }
        }
    }

    fn on_message(&mut self, msg: ServerMsg<'_>) {
        let now = Instant::now();
        if !matches!(msg, ServerMsg::UnknownSession { token } if token != self.token) {
            self.last_heard = now;
        }
        match msg {
            ServerMsg::Ack { seq } => self.tell_sender(ToSender::Ack(seq)),
            ServerMsg::Reject { seq, reason } => self.tell_sender(ToSender::Reject(seq, reason)),
            ServerMsg::Events { first_seq, events } => {
                for (i, ev) in events.iter().enumerate() {
                    let n = first_seq.wrapping_add(i as u32);
                    if let Some(missed) = self.seq.event(n) {
                        if missed > 0 {
                            self.notice(Notice::Lost(missed as u64));
                        }
                        self.event(&ev);
                    }
                }
            }
            ServerMsg::Pong { last_seq } => {
                let missed = self.seq.pong(last_seq);
                if missed > 0 {
                    self.notice(Notice::Lost(missed as u64));
                }
            }
            ServerMsg::WhoPage {
                start,
                total,
                names,
            } => {
                if let Some(w) = &mut self.who {
                    let step = w.on_page(start, total, names.iter(), now);
                    self.who_step(step);
                }
            }
            ServerMsg::Bye { reason } => {
                if let Some(l) = &self.leaving {
                    let code = l.code;
                    if reason == ByeReason::Left {
                        self.notice(Notice::YouLeft);
                    }
                    self.end(code, None);
                } else {
                    let why = reasons::fatal_line(self.lang, &Fatal::Bye(reason));
                    self.tell_sender(ToSender::Leaving);
                    self.end(code::FAIL, Some(why));
                }
            }
            ServerMsg::UnknownSession { token } if token == self.token => {
                if let Some(l) = &self.leaving {
                    let code = l.code;
                    self.end(code, None);
                } else if self.rejoin.is_none() {
                    self.who = None;
                    let (login, join) = Login::start(
                        &self.name,
                        self.token,
                        crate::client::login::random_nonce(),
                        now,
                    );
                    self.rejoin = Some(login);
                    self.send(&join);
                    self.tell_sender(ToSender::Rejoining);
                    self.notice(Notice::Rejoining);
                }
            }
            ServerMsg::UnknownSession { .. } => {}
            ServerMsg::Challenge { .. } | ServerMsg::Refused { .. } | ServerMsg::Welcome { .. } => {
                if let Some(login) = &mut self.rejoin {
                    let step = login.on_message(&msg, now);
                    self.rejoin_step(step);
                }
            }
        }
    }

    fn timers(&mut self, now: Instant) {
        if self.done.is_some() {
            return;
        }
        if let Some((code, until)) = self.quit_after_who {
            if self.who.is_none() || now >= until {
                self.quit_after_who = None;
                self.leave(code);
                return;
            }
        }
        if let Some(l) = &mut self.leaving {
            if now >= l.until {
                let code = l.code;
                self.end(code, None);
            } else if now >= l.next_send {
                l.next_send = now + LEAVE_RESEND;
                self.send(&ClientMsg::Leave { token: self.token }.to_vec());
            }
            return;
        }
        if let Some(login) = &mut self.rejoin {
            let step = login.on_timer(now);
            self.rejoin_step(step);
        } else if now >= self.last_heard + self.timeout {
            self.lost_contact();
            return;
        } else if now >= self.next_ping {
            self.next_ping = now + self.timeout / 3;
            self.send(&ClientMsg::Ping { token: self.token }.to_vec());
        }
        if let Some(w) = &mut self.who {
            if let Some(step) = w.on_timer(now) {
                self.who_step(step);
            }
        }
    }

    fn drain_link(&mut self) {
        let mut buf = vec![0u8; 64 * 1024];
        while self.link_open {
            match self.link.recv(&mut buf) {
                Ok(0) => {
                    self.link_open = false;
                    self.parent_gone();
                }
                Ok(n) => match ToReceiver::decode(&buf[..n]) {
                    Some(ToReceiver::Edit { line, cursor }) => {
                        self.screen.line = line.chars().collect();
                        self.screen.cursor = cursor as usize;
                        self.screen.redraw();
                    }
                    Some(ToReceiver::Print(text)) => self.print(&text),
                    Some(ToReceiver::Who) => self.start_who(WhoFor::Printing),
                    Some(ToReceiver::RefreshNames) if self.who.is_none() => {
                        self.start_who(WhoFor::Completion)
                    }
                    Some(ToReceiver::Redraw) => self.screen.clear_all(),
                    Some(ToReceiver::Quit(code)) if code == code::OK && self.who.is_some() => {
                        self.quit_after_who = Some((code, Instant::now() + WHO_BEFORE_QUIT));
                    }
                    Some(ToReceiver::Quit(code)) => self.leave(code),
                    Some(ToReceiver::RefreshNames) | None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.link_open = false;
                    self.parent_gone();
                }
            }
        }
    }

    /// Clears the input line, reports why the session ended, and, when the
    /// sender is already gone, gives the terminal back its modes.
    fn finish(mut self) -> u8 {
        let (code, msg) = self.done.take().unwrap_or((code::FAIL, None));
        if self.parent_alive {
            self.screen.keep_input();
        }
        if let Some(m) = msg {
            crate::stdio::err_line(&format!("chat-client: {m}"));
        }
        if !self.parent_alive {
            if let Some(m) = &self.term {
                let _ = m.restore(term::stdin_fd());
            }
            term::restore_stdin_flags(self.stdin_flags);
        }
        code
    }
}
