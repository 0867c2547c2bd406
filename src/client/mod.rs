//! `chat-client`: log in, then fork into a sender and a receiver.
//!
//! * Before the fork (one process, one thread): resolve the server, create one
//!   UDP socket connected to it (so only its datagrams are read), ask for a
//!   name (`name_prompt`) and log in ([`login`]). Then block the signals both halves read
//!   through a signalfd, put a terminal in chat mode (`term`), create the
//!   socketpair (`link`), flush stdout and fork.
//! * The parent is the **sender** (`sender`): it reads the user's input —
//!   keys through the line editor (`editor`) on a terminal, lines cut as
//!   they arrive through a pipe (`lines`) — parses it (`command`) and sends
//!   SAY and PRIVATE, retransmitting until acknowledged (`outgoing`); Tab
//!   completes the names seen (`names`). It never reads the socket while the
//!   receiver lives, and it reaps the receiver before it exits.
//! * The child is the **receiver** (`receiver`): the only reader of the
//!   socket and the only writer to stdout (`screen`). It prints events in
//!   the user's language (`render`, `lang`, `reasons`), forwards ACK and
//!   REJECT to the sender, pages `/who` (`tally`), keeps the session alive,
//!   re-joins after a server restart, and owns the LEAVE.
//!
//! Each side ends when the other does: the socketpair reaches EOF, the child
//! also has `PR_SET_PDEATHSIG`, and the parent a SIGCHLD. The terminal's modes
//! are restored by the process that ends last.

mod command;
pub mod conn;
mod editor;
mod lang;
mod lines;
mod link;
pub mod login;
mod name_prompt;
mod names;
mod outgoing;
mod reasons;
mod receiver;
mod render;
pub mod reorder;
mod screen;
mod sender;
mod tally;
mod term;

pub use lang::{error_text, Lang};

use crate::error::{Error, Result};
use crate::protocol::{self, ClientMsg, ServerMsg, Token, MAX_DATAGRAM};
use login::{Login, Step, Welcome};
use name_prompt::NameInput;
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::ForkResult;
use render::Notice;
use std::io::{self, Write};
use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};
use term::TermModes;

/// The command line, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// The name to join as; asked for when absent.
    pub name: Option<String>,
    /// The language of every line the client prints.
    pub lang: Lang,
    /// Ring the terminal's bell when mentioned (`--no-bell` turns it off).
    pub bell: bool,
    /// When to colour: `--color=auto|always|never`.
    pub color: ColorChoice,
}

/// `--color`: when lines are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    /// When stdout is a terminal, `TERM` is not `dumb` and `NO_COLOR` is unset.
    Auto,
    /// Always.
    Always,
    /// Never.
    Never,
}

impl ColorChoice {
    /// Whether to colour, given the environment.
    pub fn enabled(self, stdout_is_tty: bool, get: impl Fn(&str) -> Option<String>) -> bool {
        match self {
            ColorChoice::Always => true,
            ColorChoice::Never => false,
            ColorChoice::Auto => {
                stdout_is_tty
                    && get("TERM").is_none_or(|t| t != "dumb")
                    && get("NO_COLOR").is_none_or(|v| v.is_empty())
            }
        }
    }
}

/// The signal the child gets when the parent dies.
pub(crate) const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR1;
/// How long the LEAVE is repeated while waiting for BYE.
pub(crate) const LEAVE_WAIT: Duration = Duration::from_millis(500);
/// LEAVE is repeated this often until BYE.
pub(crate) const LEAVE_RESEND: Duration = Duration::from_millis(200);

/// Exit codes.
pub(crate) mod code {
    /// `/quit`, end of input.
    pub const OK: u8 = 0;
    /// Every end the user did not ask for: no answer, refused, kicked,
    /// shutdown, lost contact, the other process killed.
    pub const FAIL: u8 = 1;
    /// Ended by SIGHUP (the terminal hung up).
    pub const SIGHUP: u8 = 128 + 1;
    /// Ended by SIGINT (Ctrl-C).
    pub const SIGINT: u8 = 128 + 2;
    /// Ended by SIGTERM.
    pub const SIGTERM: u8 = 128 + 15;
}

/// What both halves know after the login.
pub(crate) struct Session {
    pub socket: UdpSocket,
    pub server_text: String,
    pub token: Token,
    pub timeout_ms: u32,
    pub name: String,
    pub lang: Lang,
    /// Set when stdin and stdout are both terminals.
    pub term: Option<TermModes>,
    /// Ring the bell on a mention.
    pub bell: bool,
    /// Highlight mentions.
    pub color: bool,
}

/// Runs the client as the whole process, for `main` only; returns the exit code
/// (in whichever of the two processes returns).
///
/// Process-wide effects, each in a function named for it: after the login it
/// blocks the signals both halves read through their signalfd and ignores SIGTTOU
/// (`block_signals`: the login itself must stay interruptible by Ctrl-C, so this
/// cannot happen in `main` before it), switches the terminal's modes
/// (`term::TermModes`) and restores them on every way out, forks once through
/// [`crate::process::fork_single_threaded`], and reaps only its own child through
/// [`crate::process::reap_within`] and [`crate::process::reap_one_of`].
pub fn run(opts: &Options) -> Result<u8> {
    let server = crate::net::find_server(&opts.server)?;
    let socket = connect(server, &opts.server)?;
    let interactive = term::is_tty(term::stdin_fd());
    let terminal = interactive && term::is_tty(term::stdout_fd());
    let welcome = match join_loop(&socket, opts, interactive, terminal)? {
        Ok(w) => w,
        Err(code) => return Ok(code),
    };
    say_line(&render::notice_line(
        opts.lang,
        &Notice::Welcome {
            name: &welcome.name,
            members: welcome.members,
        },
    ));
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io("set up socket for", &opts.server, e))?;
    let mut session = Session {
        socket,
        server_text: opts.server.clone(),
        token: welcome.token,
        timeout_ms: if welcome.timeout_ms == 0 {
            30_000
        } else {
            welcome.timeout_ms
        },
        name: welcome.name,
        lang: opts.lang,
        term: None,
        bell: opts.bell,
        color: opts
            .color
            .enabled(term::is_tty(term::stdout_fd()), |k| std::env::var(k).ok()),
    };
    block_signals().map_err(|e| Error::io("block", "signals", e.into()))?;
    if terminal {
        let modes = TermModes::read(term::stdin_fd())
            .map_err(|e| Error::io("read the modes of", "stdin", e))?;
        modes
            .enter(term::stdin_fd())
            .map_err(|e| Error::io("set the modes of", "stdin", e))?;
        session.term = Some(modes);
    }
    let (to_child, to_parent) = match socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC | SockFlag::SOCK_NONBLOCK,
    ) {
        Ok(pair) => pair,
        Err(e) => {
            give_back_terminal(&session);
            leave_once(&session.socket, session.token);
            return Err(Error::io("create", "socketpair", e.into()));
        }
    };
    let stdin = match term::StdinReader::open() {
        Ok(r) => r,
        Err(e) => {
            give_back_terminal(&session);
            leave_once(&session.socket, session.token);
            return Err(Error::io("open", "stdin", e));
        }
    };
    let _ = io::stdout().flush();
    let parent = nix::unistd::getpid();
    match crate::process::fork_single_threaded("chat-client into sender and receiver") {
        Ok(ForkResult::Child) => {
            drop(to_child);
            let stdin_flags = stdin.saved_flags();
            drop(stdin);
            let parent_gone = nix::sys::prctl::set_pdeathsig(PARENT_DEATH_SIGNAL).is_err()
                || nix::unistd::getppid() != parent;
            Ok(receiver::run(
                session,
                to_parent,
                parent,
                parent_gone,
                stdin_flags,
            ))
        }
        Ok(ForkResult::Parent { child }) => {
            drop(to_parent);
            Ok(sender::run(session, to_child, child, stdin))
        }
        Err(e) => {
            give_back_terminal(&session);
            term::restore_stdin_flags(stdin.saved_flags());
            leave_once(&session.socket, session.token);
            Err(e)
        }
    }
}

/// A UDP socket on an ephemeral port, connected to the server.
fn connect(server: SocketAddr, text: &str) -> Result<UdpSocket> {
    let local: SocketAddr = if server.is_ipv4() {
        ([0, 0, 0, 0], 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let socket = UdpSocket::bind(local).map_err(|e| Error::io("create socket for", text, e))?;
    socket
        .connect(server)
        .map_err(|e| Error::io("connect to", text, e))?;
    Ok(socket)
}

/// Asks for names and logs in until welcomed (or it is hopeless).
/// `Ok(Err(code))`: no name was given (Ctrl-D or Ctrl-C at the prompt).
fn join_loop(
    socket: &UdpSocket,
    opts: &Options,
    interactive: bool,
    terminal: bool,
) -> Result<std::result::Result<Welcome, u8>> {
    let lang = opts.lang;
    let mut given = opts.name.clone();
    loop {
        let name = match given.take() {
            Some(n) => n.trim().to_string(),
            None => match name_prompt::read_name(lang, interactive)? {
                NameInput::Name(n) => n,
                NameInput::Quit(code) => return Ok(Err(code)),
            },
        };
        let refusal = match protocol::check_name(&name) {
            Err(protocol::NameError::Invalid(why)) => {
                Some(Err(reasons::invalid_name(lang, &name, Some(why))))
            }
            Err(e) => Some(Ok(e.refuse_reason())),
            Ok(()) => match login_showing_progress(socket, &name, opts, terminal)? {
                LoginOutcome::Welcome(w) => return Ok(Ok(w)),
                LoginOutcome::Refused(r) => Some(Ok(r)),
                LoginOutcome::NoAnswer => {
                    let server = &opts.server;
                    let f = reasons::Fatal::NoAnswer { server };
                    return Err(Error::plain(reasons::fatal_line(lang, &f)));
                }
                LoginOutcome::ConnectionRefused => {
                    let server = &opts.server;
                    let f = reasons::Fatal::ConnectionRefused { server };
                    return Err(Error::plain(reasons::fatal_line(lang, &f)));
                }
            },
        };
        let reason = match refusal.expect("set above") {
            Err(text) => text,
            Ok(protocol::RefuseReason::InvalidName) => reasons::invalid_name(lang, &name, None),
            Ok(r) => reasons::refusal(lang, r),
        };
        if !interactive {
            let f = reasons::Fatal::CannotJoin {
                name: &name,
                reason: &reason,
                again: false,
            };
            return Err(Error::plain(reasons::fatal_line(lang, &f)));
        }
        let _ = writeln!(io::stderr(), "{}: {reason}", render::escape(&name));
    }
}

/// [`login_blocking`], with `-- connecting to ADDR…` on a terminal while it
/// waits (erased when it is over).
fn login_showing_progress(
    socket: &UdpSocket,
    name: &str,
    opts: &Options,
    terminal: bool,
) -> Result<LoginOutcome> {
    let mut out = io::stdout();
    if terminal {
        let line = render::notice_line(opts.lang, &Notice::Connecting(&opts.server));
        let _ = write!(out, "{line}").and_then(|_| out.flush());
    }
    let outcome = login_blocking(socket, name, 0);
    if terminal {
        let _ = write!(out, "\r\x1b[K").and_then(|_| out.flush());
    }
    outcome
}

/// The end of one login attempt.
pub enum LoginOutcome {
    /// Let in.
    Welcome(Welcome),
    /// Refused, with the server's reason.
    Refused(protocol::RefuseReason),
    /// No answer within [`login::LOGIN_TIMEOUT`].
    NoAnswer,
    /// The server's host answered with ICMP port unreachable: nothing
    /// listens on that port.
    ConnectionRefused,
}

/// Logs in with a blocking socket: the handshake of [`login`], bounded by
/// [`login::LOGIN_TIMEOUT`]. ICMP "connection refused" ends it at once.
pub fn login_blocking(socket: &UdpSocket, name: &str, prev: Token) -> Result<LoginOutcome> {
    let refused = |e: &io::Error| e.kind() == io::ErrorKind::ConnectionRefused;
    let (mut login, join) = Login::start(name, prev, login::random_nonce(), Instant::now());
    if socket.send(&join).as_ref().is_err_and(refused) {
        return Ok(LoginOutcome::ConnectionRefused);
    }
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    loop {
        let now = Instant::now();
        let wake = login.next_wakeup();
        let step = if now >= wake {
            login.on_timer(now)
        } else {
            let wait = (wake - now).max(Duration::from_millis(1));
            let _ = socket.set_read_timeout(Some(wait));
            match socket.recv(&mut buf) {
                Ok(n) if n <= MAX_DATAGRAM => match protocol::decode_server(&buf[..n]) {
                    Ok(msg) => login.on_message(&msg, Instant::now()),
                    Err(_) => Step::Wait,
                },
                Ok(_) => Step::Wait,
                Err(e) if refused(&e) => return Ok(LoginOutcome::ConnectionRefused),
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted => Step::Wait,
                    _ => return Err(Error::io("receive from", socket_peer(socket), e)),
                },
            }
        };
        match step {
            Step::Send(d) => {
                if socket.send(&d).as_ref().is_err_and(refused) {
                    return Ok(LoginOutcome::ConnectionRefused);
                }
            }
            Step::Wait => {}
            Step::Welcome(w) => return Ok(LoginOutcome::Welcome(w)),
            Step::Refused(r) => return Ok(LoginOutcome::Refused(r)),
            Step::GiveUp => return Ok(LoginOutcome::NoAnswer),
        }
    }
}

fn socket_peer(socket: &UdpSocket) -> String {
    socket
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default()
}

/// Blocks the signals both halves read through their signalfd, and ignores
/// SIGTTOU so the last process can restore the terminal even from the background.
fn block_signals() -> nix::Result<()> {
    let mut set = SigSet::empty();
    for s in [
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
        PARENT_DEATH_SIGNAL,
    ] {
        set.add(s);
    }
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None)?;
    // SAFETY: SIG_IGN installs no handler code, so nothing runs in signal
    // context, and no handler is replaced that other code relies on.
    unsafe {
        nix::sys::signal::signal(Signal::SIGTTOU, nix::sys::signal::SigHandler::SigIgn)?;
    }
    Ok(())
}

/// Restores the terminal's modes, if they were changed.
fn give_back_terminal(session: &Session) {
    if let Some(modes) = &session.term {
        let _ = modes.restore(term::stdin_fd());
    }
}

/// Sends one LEAVE, without waiting (the best that can be done on an error path).
fn leave_once(socket: &UdpSocket, token: Token) {
    let _ = socket.send(&ClientMsg::Leave { token }.to_vec());
}

/// Sends LEAVE and repeats it until BYE or UNKNOWN_SESSION, for at most
/// [`LEAVE_WAIT`]. Used by a process that reads the socket itself (the sender
/// once the receiver is gone). The socket is non-blocking.
pub fn leave_and_wait(socket: &UdpSocket, token: Token) -> bool {
    leave_until_bye(&[(socket, token)]) == 0
}

/// [`leave_and_wait`] for many members at once, each with its own
/// non-blocking socket connected to the server: LEAVE every [`LEAVE_RESEND`]
/// until BYE or UNKNOWN_SESSION, for at most [`LEAVE_WAIT`]. Returns how
/// many members heard neither.
pub fn leave_until_bye(members: &[(&UdpSocket, Token)]) -> usize {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::os::fd::AsFd;
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut pending: Vec<usize> = (0..members.len()).collect();
    while !pending.is_empty() && start.elapsed() < LEAVE_WAIT {
        for (n, &k) in pending.iter().enumerate() {
            leave_once(members[k].0, members[k].1);
            if n % 256 == 255 {
                // Do not overrun the server's receive buffer.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let round = Instant::now() + LEAVE_RESEND;
        while !pending.is_empty() && Instant::now() < round {
            pending.retain(|&k| {
                let (socket, token) = members[k];
                loop {
                    match socket.recv(&mut buf) {
                        Ok(n) if n <= MAX_DATAGRAM => match protocol::decode_server(&buf[..n]) {
                            Ok(ServerMsg::Bye { .. }) => return false,
                            Ok(ServerMsg::UnknownSession { token: t }) if t == token => {
                                return false
                            }
                            _ => {}
                        },
                        Ok(_) => {}
                        // A pending ICMP error is reported once: read on.
                        Err(e)
                            if matches!(
                                e.kind(),
                                io::ErrorKind::ConnectionRefused | io::ErrorKind::Interrupted
                            ) => {}
                        Err(_) => return true, // would block, or nothing to read
                    }
                }
            });
            let wait = round.saturating_duration_since(Instant::now());
            let mut fds: Vec<PollFd> = pending
                .iter()
                .map(|&k| PollFd::new(members[k].0.as_fd(), PollFlags::POLLIN))
                .collect();
            let _ = poll(
                &mut fds,
                PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
            );
        }
    }
    pending.len()
}

/// Writes a line stamped with the local time to stdout (before the fork, or
/// by a process that is the only one left).
pub(crate) fn say_line(text: &str) {
    let _ = crate::stdio::out_line(&render::stamped(&render::local_hhmm(), text));
}

/// The signals waiting on a signalfd, read until it would block.
pub(crate) fn pending_signals(fd: &mut nix::sys::signalfd::SignalFd) -> Vec<Signal> {
    let mut out = Vec::new();
    loop {
        match fd.read_signal() {
            Ok(Some(info)) => out.extend(Signal::try_from(info.ssi_signo as i32).ok()),
            Ok(None) => break,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => break,
        }
    }
    out
}
