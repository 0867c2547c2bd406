//! The receiver half: it owns the connection ([`Conn`]) and the socket,
//! and is the only process that seals. It is the only reader of the socket
//! and the only writer to stdout. It prints events, reports lost ones,
//! seals what the sender hands it and forwards ACK and REJECT back, keeps
//! the session alive, pages `/who`, reconnects after lost contact, owns the
//! LEAVE, and on a terminal draws the sender's half-typed line under the
//! messages.

mod conn_events;
mod delivery;
mod members;
mod signals;

use crate::client::conn::{Conn, Progress, SealedBodies, ServerTrust};
use crate::client::lang::error_text;
use crate::client::link::{ToReceiver, ToSender};
use crate::client::login::Welcome;
use crate::client::render::{self, Lang, Notice};
use crate::client::screen::Screen;
use crate::client::tally::WhoPager;
use crate::client::term::{self, TermModes};
use crate::client::{code, Session, PARENT_DEATH_SIGNAL};
use crate::error::Error;
use crate::protocol::sealed::{decode_server, ServerMsg};
use crate::protocol::MAX_DATAGRAM;
use delivery::Repair;
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

struct ReceiverProcess {
    socket: UdpSocket,
    conn: Conn<SealedBodies>,
    trust: ServerTrust,
    link: UnixDatagram,
    signals: SignalFd,
    server_text: String,
    name: String,
    welcome: Welcome,
    lang: Lang,
    /// Reordering, repair, dedup and history.
    repair: Repair,
    /// A name is being asked for (taken during a reconnect, on a terminal).
    asking_name: bool,
    /// The sender's lowest unacknowledged message number (for a RESUME).
    lowest_unacked: u32,
    /// Contact is lost: the sender holds its messages until the next WELCOME.
    reconnecting: bool,
    who: Option<WhoPager>,
    /// What the `/who` in progress is for.
    who_for: WhoFor,
    /// End of input or `/quit` arrived while a `/who` was still paging: the
    /// quit waits for it (until this deadline), so a script's last `/who` prints.
    quit_after_who: Option<(u8, Instant)>,
    /// Leaving (LEAVE sent until BYE) with this exit code.
    leaving: Option<u8>,
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
        Err((e, mut session)) => {
            let e = error_text(lang, &e);
            crate::stdio::err_line(&format!("chat-client: {e}"));
            crate::client::leave_once(&session.socket, &mut session.conn);
            return code::FAIL;
        }
    };
    if parent_gone {
        r.parent_gone();
    }
    r.run()
}

type StartError = (Error, Box<Session>);

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
        let signals = match nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
            .and_then(|_| {
                SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            }) {
            Ok(fd) => fd,
            Err(e) => return Err((Error::io("create", "signalfd", e.into()), Box::new(s))),
        };
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
            status_shown: false,
        };
        Ok(ReceiverProcess {
            socket: UdpSocket::from_std(s.socket),
            conn: s.conn,
            trust: s.trust,
            link: UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(link)),
            signals,
            server_text: s.server_text,
            name: s.name,
            welcome: s.welcome,
            lang: s.lang,
            repair: Repair::new(Instant::now()),
            asking_name: false,
            lowest_unacked: 1,
            reconnecting: false,
            who: None,
            who_for: WhoFor::Printing,
            quit_after_who: None,
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
        self.pump();
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
            self.pump();
        }
        self.finish()
    }

    fn next_deadline(&self) -> Instant {
        let now = Instant::now();
        let mut t = now + Duration::from_secs(3600);
        if let Some(c) = self.conn.next_timeout() {
            t = t.min(c);
        }
        if let Some(r) = self.repair.next_deadline() {
            t = t.min(r);
        }
        if let Some(w) = &self.who {
            t = t.min(w.next_wakeup());
        }
        if let Some((_, until)) = self.quit_after_who {
            t = t.min(if self.who.is_none() { now } else { until });
        }
        t
    }

    /// Seals `body` for the server (dropped while not a member: the sender
    /// sends its messages again, and `/who` gives up).
    fn send_body(&mut self, body: &[u8]) {
        let _ = self.conn.send(Instant::now(), body);
    }

    /// Handles what the connection says, shows what the reorder buffer
    /// hands on (and asks for gaps), and sends what the connection has sealed.
    fn pump(&mut self) {
        self.handle_conn();
        self.deliver();
        self.conn.set_progress(Progress {
            last_event: self.repair.reorder.last_in_order() as u32,
            last_room_seq: self.repair.last_room_seq,
            lowest_unacked: self.lowest_unacked,
        });
        self.flush();
    }

    /// Handles what the connection says and sends what it sealed (but shows
    /// nothing held: every datagram of a turn goes in first, so a repair
    /// still in the socket after a long pause is not given up too early).
    fn handle_conn(&mut self) {
        while let Some(ev) = self.conn.poll_event() {
            self.flush();
            self.conn_event(ev);
        }
        self.flush();
    }

    /// Sends what the connection has sealed.
    fn flush(&mut self) {
        while let Some(d) = self.conn.poll_transmit() {
            let _ = self.socket.send(&d);
        }
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

    /// Starts leaving: LEAVE until BYE, for at most the leave's wait.
    fn leave(&mut self, code: u8) {
        if self.leaving.is_some() || self.done.is_some() {
            return;
        }
        self.who = None;
        self.leaving = Some(code);
        self.tell_sender(ToSender::Leaving);
        self.conn.leave(Instant::now());
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
                Ok(n) if n <= MAX_DATAGRAM => self.conn.on_datagram(Instant::now(), &buf[..n]),
                Ok(_) => {} // longer than any valid datagram: malformed
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // ICMP errors (connection refused): only counted once a member.
                Err(_) => self.conn.on_unreachable(Instant::now()),
            }
            self.handle_conn();
            if self.done.is_some() {
                break;
            }
        }
    }

    /// A body from the server while a member.
    fn on_body(&mut self, body: &[u8]) {
        let now = Instant::now();
        let Ok(msg) = decode_server(body) else {
            return;
        };
        match msg {
            ServerMsg::Ack { seq } => {
                self.acked(seq);
                self.tell_sender(ToSender::Ack(seq));
            }
            ServerMsg::Reject { seq, reason } => self.tell_sender(ToSender::Reject(seq, reason)),
            ServerMsg::Events {
                first_event,
                events,
            } => self.on_events(first_event, events),
            ServerMsg::Keepalive { last_event } => self.on_server_keepalive(last_event),
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
            ServerMsg::Lost { first_event, count } => self.on_lost(first_event, count),
            ServerMsg::HistoryPage { before, events, .. } => self.on_history_page(before, events),
            _ => {}
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
        if self.conn.next_timeout().is_some_and(|t| now >= t) {
            self.conn.on_timeout(now);
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
                    Some(ToReceiver::Send(body)) => {
                        self.sealed_own(&body);
                        self.send_body(&body);
                    }
                    Some(ToReceiver::Unacked(low)) => self.lowest_unacked = low,
                    Some(ToReceiver::History(n)) => self.ask_history(n),
                    Some(ToReceiver::Name(name)) => self.name_given(&name),
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
