//! The sender half (the parent): reads the user's input — lines through a
//! pipe, keys through the line editor on a terminal — and makes the bodies
//! of SAY, ME and PRIVATE, which it hands to the receiver to seal and send
//! (it never touches the socket: one process seals). ACK, REJECT and
//! "reconnecting" reach it over the socketpair. It reaps the receiver before
//! it exits. If the receiver is killed, nobody can seal a LEAVE any more:
//! the server times the member out.

use crate::client::editor::{Action, Editor};
use crate::client::lang::error_text;
use crate::client::lines::PipeLines;
use crate::client::link::{ToReceiver, ToSender};
use crate::client::names::SeenNames;
use crate::client::outgoing::{Outgoing, OutgoingQueue, WINDOW};
use crate::client::reasons::{self, Fatal};
use crate::client::render::{self, Lang, Notice, Undelivered};
use crate::client::term::{self, StdinReader, TermModes};
use crate::client::{code, pending_signals, Session};
use crate::error::Error;
use crate::process::{reap_one_of, reap_within, Reaped};
use crate::protocol::sealed::WelcomeFlags;
use mio::net::UnixDatagram;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token as MioToken};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::WaitStatus;
use nix::unistd::Pid;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

mod typed;

const STDIN: MioToken = MioToken(0);
const LINK: MioToken = MioToken(1);
const SIGNALS: MioToken = MioToken(2);

/// At most this many reads of stdin per turn of the loop.
const READS_PER_TURN: usize = 4;
/// Stdin is not read while this many messages wait to be sent.
const MAX_BACKLOG: usize = 2 * WINDOW;
/// After asking the receiver to quit, how long before it is killed.
const QUIT_GRACE: Duration = Duration::from_millis(900);
/// On end of input, how long we wait for the next acknowledgement before what
/// is still unsent or unacknowledged is reported "not delivered". Each
/// acknowledgement restarts it, so a long file piped in at the server's rate
/// limit is sent whole, however long that takes.
const DRAIN_LIMIT: Duration = Duration::from_secs(10);

struct SenderProcess {
    link: UnixDatagram,
    link_open: bool,
    signals: SignalFd,
    stdin: StdinReader,
    stdin_live: bool,
    name: String,
    /// The server serves ME (WELCOME's flag): `/me` is sent only then.
    serves_me: bool,
    lang: Lang,
    term: Option<TermModes>,
    /// Stdin may have more to read (edge-triggered: until it would block).
    stdin_ready: bool,
    /// Stdin cannot be polled (a regular file, `/dev/zero`): it is always ready.
    stdin_pollable: bool,
    editor: Editor,
    /// A new name is being typed (the old one was taken during a
    /// reconnect): the chat's half-typed line waits here.
    asking_name: Option<Editor>,
    /// Typed lines given up at the end (said once the receiver is gone).
    undelivered: usize,
    /// Members seen, for Tab completion.
    names: SeenNames,
    pipe: PipeLines,
    queue: OutgoingQueue,
    /// The lowest unacknowledged number last told to the receiver.
    told_unacked: u32,
    /// End of input or `/quit`: quit once the queue is empty (or at this deadline).
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
            let e = Error::io("create", "signalfd", e.into());
            let e = error_text(session.lang, &e);
            crate::stdio::err_line(&format!("chat-client: {e}"));
            let _ = nix::sys::signal::kill(child, Signal::SIGTERM);
            let status = reap_within(child, QUIT_GRACE);
            return finish_without_loop(&session, &stdin, status);
        }
    };
    let s = SenderProcess {
        link: UnixDatagram::from_std(std::os::unix::net::UnixDatagram::from(link)),
        link_open: true,
        signals,
        stdin,
        stdin_live: true,
        name: session.name.clone(),
        serves_me: session.welcome.flags.contains(WelcomeFlags::ME),
        lang: session.lang,
        term: session.term.clone(),
        stdin_ready: true,
        stdin_pollable: false,
        editor: Editor::new(),
        asking_name: None,
        undelivered: 0,
        names: SeenNames::new(),
        pipe: PipeLines::new(),
        queue: OutgoingQueue::new(),
        told_unacked: 1,
        draining: None,
        quit_sent: None,
        receiver_leaving: false,
        child,
        status: None,
    };
    // The connection stays the receiver's: this process never seals.
    drop(session);
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

impl SenderProcess {
    fn run(mut self) -> u8 {
        let mut poll = match Poll::new() {
            Ok(p) => p,
            Err(e) => return self.abandon(Error::io("create", "poll", e)),
        };
        let sfd = self.signals.as_raw_fd();
        let ok = poll
            .registry()
            .register(&mut self.link, LINK, Interest::READABLE)
            .and_then(|_| {
                poll.registry()
                    .register(&mut SourceFd(&sfd), SIGNALS, Interest::READABLE)
            });
        if let Err(e) = ok {
            return self.abandon(Error::io("register", "signalfd", e));
        }
        let stdin_raw = self.stdin.fd.as_raw_fd();
        // A regular file or /dev/zero cannot be polled (EPERM) but never
        // blocks: it is read a little each turn, like a pipe that stays ready.
        self.stdin_pollable = poll
            .registry()
            .register(&mut SourceFd(&stdin_raw), STDIN, Interest::READABLE)
            .is_ok();
        let mut events = Events::with_capacity(16);
        self.drain_signals();
        loop {
            self.pump(Instant::now());
            if self.status.is_some() {
                break;
            }
            let wait = if self.wants_input() {
                Duration::ZERO
            } else {
                self.next_deadline()
                    .saturating_duration_since(Instant::now())
            };
            if let Err(e) = poll.poll(&mut events, Some(wait)) {
                if e.kind() != io::ErrorKind::Interrupted {
                    return self.abandon(Error::io("poll", "stdin", e));
                }
            }
            for ev in events.iter() {
                match ev.token() {
                    STDIN => self.stdin_ready = true,
                    LINK => self.drain_link(),
                    SIGNALS => self.drain_signals(),
                    _ => {}
                }
            }
            self.read_stdin();
        }
        self.finish()
    }

    fn next_deadline(&self) -> Instant {
        let mut t = Instant::now() + Duration::from_secs(3600);
        if let Some(d) = self.queue.next_deadline() {
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
            let (bodies, failed) = self.queue.poll(now);
            for body in bodies {
                self.tell_receiver(ToReceiver::Send(body));
            }
            for (msg, why) in failed {
                self.not_delivered(&msg, why);
            }
            let low = self.queue.lowest_unacked();
            if low != self.told_unacked {
                self.told_unacked = low;
                self.tell_receiver(ToReceiver::Unacked(low));
            }
        }
        if let Some(deadline) = self.draining {
            if self.queue.is_empty() || now >= deadline {
                self.draining = None;
                for msg in self.queue.cancel_all() {
                    self.not_delivered(&msg, Undelivered::NoAnswer);
                }
                self.ask_quit(code::OK);
            }
        }
        if let Some((_, deadline)) = self.quit_sent {
            if now >= deadline && self.status.is_none() {
                // The receiver did not end in time: it is killed and reaped.
                let _ = nix::sys::signal::kill(self.child, Signal::SIGKILL);
                self.status = reap_within(self.child, QUIT_GRACE);
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

    /// Input is read while it is there and the messages it makes can go out
    /// soon: not while [`MAX_BACKLOG`] wait behind the window. While
    /// reconnecting it is read on: up to 100 lines are kept, and those
    /// beyond are said to be not sent, as they are typed.
    fn wants_input(&self) -> bool {
        self.stdin_live
            && self.stdin_ready
            && (self.queue.backlog() < MAX_BACKLOG || self.queue.is_held())
    }

    /// Reads stdin, at most [`READS_PER_TURN`] times, so that an endless input
    /// leaves signals and the receiver their turn.
    fn read_stdin(&mut self) {
        let mut buf = [0u8; 4096];
        for _ in 0..READS_PER_TURN {
            if !self.wants_input() {
                break;
            }
            match nix::unistd::read(self.stdin.fd.as_fd(), &mut buf) {
                Ok(0) => self.end_of_input(),
                Ok(n) => self.input(&buf[..n]),
                Err(nix::errno::Errno::EAGAIN) => self.stdin_ready = !self.stdin_pollable,
                Err(nix::errno::Errno::EINTR) => {}
                // EIO: the terminal hung up.
                Err(_) => self.end_of_input(),
            }
        }
    }

    fn end_of_input(&mut self) {
        if self.term.is_none() {
            for piped in self.pipe.finish() {
                self.piped(piped);
            }
        }
        self.start_draining();
    }

    fn input(&mut self, bytes: &[u8]) {
        if self.term.is_some() {
            let before = (self.editor.text().to_string(), self.editor.cursor());
            for action in self.editor.feed(bytes) {
                self.send_edit();
                match action {
                    Action::Submit(line) if self.asking_name.is_some() => {
                        self.tell_receiver(ToReceiver::Name(line))
                    }
                    Action::Submit(line) => self.line(&line),
                    Action::Eof => {
                        self.start_draining();
                        return;
                    }
                    Action::Redraw => self.tell_receiver(ToReceiver::Redraw),
                    Action::Complete => self.complete(),
                    // ISIG is on while chatting: Ctrl-C is SIGINT, never a key.
                    Action::Interrupt => {}
                }
                if !self.stdin_live {
                    return;
                }
            }
            if (self.editor.text(), self.editor.cursor()) != (before.0.as_str(), before.1) {
                self.send_edit();
            }
        } else {
            for piped in self.pipe.feed(bytes) {
                if !self.stdin_live {
                    return;
                }
                self.piped(piped);
            }
        }
    }

    fn send_edit(&mut self) {
        let m = ToReceiver::Edit {
            line: self.editor.text().to_string(),
            cursor: self.editor.cursor() as u32,
        };
        self.tell_receiver(m);
    }

    fn drain_link(&mut self) {
        let mut buf = [0u8; 256];
        while self.link_open {
            match self.link.recv(&mut buf) {
                Ok(0) => {
                    // The receiver is gone (or going): reap it.
                    self.link_open = false;
                    if self.status.is_none() {
                        self.status = reap_within(self.child, QUIT_GRACE);
                    }
                }
                Ok(n) => match ToSender::decode(&buf[..n]) {
                    Some(ToSender::Ack(seq)) => {
                        let acked = self.queue.ack(seq);
                        if let (Some(Outgoing::Private { to, text }), Some(_)) = (acked, &self.term)
                        {
                            let echo = render::own_private(self.lang, &to, &text);
                            self.tell_receiver(ToReceiver::Print(echo));
                        }
                        if let Some(deadline) = &mut self.draining {
                            *deadline = Instant::now() + DRAIN_LIMIT;
                        }
                    }
                    Some(ToSender::Reject(seq, reason)) => {
                        if let Some((msg, why)) = self.queue.reject(seq, reason, Instant::now()) {
                            self.not_delivered(&msg, why);
                        }
                    }
                    Some(ToSender::Holding) => self.queue.hold(),
                    Some(ToSender::Back { name, serves_me }) => {
                        self.name = name;
                        self.serves_me = serves_me;
                        self.queue.back(Instant::now());
                        if let Some(chat) = self.asking_name.take() {
                            self.editor = chat;
                            self.send_edit();
                        }
                    }
                    Some(ToSender::AskName) => {
                        if self.asking_name.is_none() {
                            let chat = std::mem::replace(&mut self.editor, Editor::new());
                            self.asking_name = Some(chat);
                        }
                        self.send_edit();
                    }
                    Some(ToSender::Seen(name)) => self.names.seen(&name),
                    Some(ToSender::Gone(name)) => self.names.gone(&name),
                    Some(ToSender::Leaving) => {
                        self.receiver_leaving = true;
                        self.stdin_live = false;
                        self.draining = None;
                        self.undelivered += self.queue.cancel_all().len();
                    }
                    None => {}
                },
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => {
                    self.link_open = false;
                    if self.status.is_none() {
                        self.status = reap_within(self.child, QUIT_GRACE);
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
                Signal::SIGCHLD if self.status.is_none() => {
                    match reap_one_of(&[self.child], Duration::ZERO) {
                        Reaped::Ended(_, s) => self.status = Some(s),
                        Reaped::Lost(..) => self.status = Some(WaitStatus::Exited(self.child, 1)),
                        Reaped::Running => {}
                    }
                }
                _ => {}
            }
        }
    }

    /// Something broke before the loop could run: the receiver is told to quit,
    /// then reaped.
    fn abandon(mut self, why: Error) -> u8 {
        let why = error_text(self.lang, &why);
        crate::stdio::err_line(&format!("chat-client: {why}"));
        self.ask_quit(code::FAIL);
        self.status = reap_within(self.child, QUIT_GRACE);
        self.finish()
    }

    /// The receiver has ended (its status is known). If it was killed, this
    /// process is the last one: it says so and gives the terminal its modes
    /// back (the server times the member out: only the receiver could seal
    /// a LEAVE).
    fn finish(self) -> u8 {
        let code = match self.status {
            Some(WaitStatus::Exited(_, c)) => c as u8,
            other => {
                let signal = match other {
                    Some(WaitStatus::Signaled(_, sig, _)) => Some(sig.as_str()),
                    _ => None,
                };
                if self.term.is_some() {
                    let _ = crate::stdio::line(&mut io::stdout().lock(), "\r\x1b[K");
                }
                let why = reasons::fatal_line(self.lang, &Fatal::ReceiverEnded { signal });
                crate::stdio::err_line(&format!("chat-client: {why}"));
                self.quit_sent.map_or(code::FAIL, |(c, _)| c)
            }
        };
        if self.undelivered > 0 {
            let lines = self.undelivered;
            let why = reasons::fatal_line(self.lang, &Fatal::NotDelivered { lines });
            crate::stdio::err_line(&format!("chat-client: {why}"));
        }
        if let Some(m) = &self.term {
            let _ = m.restore(term::stdin_fd());
        }
        term::restore_stdin_flags(self.stdin.saved_flags());
        code
    }
}
