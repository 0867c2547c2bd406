//! `chat-client`: log in, then fork into a sender and a receiver.
//!
//! * Before the fork (one process, one thread): resolve the server, create one
//!   UDP socket connected to it (so only its datagrams are read), ask for a
//!   name (`name_prompt`) and log in (`login`): the version-2 handshake and
//!   JOIN through the connection state machine ([`conn::Conn`]), the server's
//!   key checked against `--server-key` or the known-servers file first. Then
//!   block the signals both halves read through a signalfd, put a terminal in
//!   chat mode (`term`), create the socketpair (`link`), flush stdout and fork.
//! * The parent is the **sender** (`sender`): it reads the user's input —
//!   keys through the line editor (`editor`) on a terminal, lines cut as
//!   they arrive through a pipe (`lines`) — parses it (`command`) and makes
//!   the bodies of SAY, ME and PRIVATE, retransmitting until acknowledged
//!   (`outgoing`); Tab completes the names seen (`names`). It never touches
//!   the socket: it hands each body to the receiver over the socketpair.
//!   It reaps the receiver before it exits.
//! * The child is the **receiver** (`receiver`): it owns the connection and
//!   the socket, and is **the only process that seals**, so each key's
//!   counter sequence has one writer and no counter is used twice. It is the
//!   only reader of the socket and the only writer to stdout (`screen`). It
//!   seals what the sender hands it, puts events in order and asks for the
//!   missing ones ([`reorder`]), prints them once in the user's language
//!   (`render`, `notice`, `lang`, `reasons`), forwards ACK and REJECT to the
//!   sender, pages `/who` (`tally`) and `/history`, keeps the session alive
//!   (keepalives, rekeys, path checks), reconnects and catches up after lost
//!   contact, and owns the LEAVE.
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
mod login;
mod name_prompt;
mod names;
mod notice;
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
use crate::protocol::sealed::WelcomeFlags;
use crate::trust::{Fingerprint, KnownServers};
use conn::{Conn, Pin, SealedBodies, ServerTrust};
use login::Welcome;
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
    /// `--known-servers FILE` (default under `$XDG_DATA_HOME`).
    pub known_servers: Option<std::path::PathBuf>,
    /// `--server-key FINGERPRINT`: pins the key, writes nothing.
    pub server_key: Option<Fingerprint>,
    /// Through pipes, give up reconnecting this long after contact was lost.
    pub reconnect_timeout: Duration,
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

/// What both halves know after the login. Only the receiver keeps `conn`
/// (the sender drops its copy unused: one process seals).
pub(crate) struct Session {
    pub socket: UdpSocket,
    pub conn: Conn<SealedBodies>,
    pub trust: ServerTrust,
    pub server_text: String,
    pub welcome: Welcome,
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
    let trust = server_trust(opts)?;
    let server = crate::net::find_server(&opts.server)?;
    let socket = connect(server, &opts.server)?;
    let interactive = term::is_tty(term::stdin_fd());
    let terminal = interactive && term::is_tty(term::stdout_fd());
    let joined = match login::first_login(&socket, opts, &trust, interactive, terminal)? {
        Ok(j) => j,
        Err(code) => return Ok(code),
    };
    let welcome = joined.welcome;
    say_line(&render::notice_line(
        opts.lang,
        &Notice::Welcome {
            name: &welcome.name,
            members: welcome.members,
        },
    ));
    if welcome.flags.contains(WelcomeFlags::HISTORY) {
        say_line(&render::notice_line(opts.lang, &Notice::KeepsHistory));
    }
    socket
        .set_nonblocking(true)
        .map_err(|e| Error::io("set up socket for", &opts.server, e))?;
    let mut session = Session {
        socket,
        conn: joined.conn,
        trust,
        server_text: opts.server.clone(),
        name: welcome.name.clone(),
        welcome,
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
            leave_once(&session.socket, &mut session.conn);
            return Err(Error::io("create", "socketpair", e.into()));
        }
    };
    let stdin = match term::StdinReader::open() {
        Ok(r) => r,
        Err(e) => {
            give_back_terminal(&session);
            leave_once(&session.socket, &mut session.conn);
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
            leave_once(&session.socket, &mut session.conn);
            Err(e)
        }
    }
}

/// What the server's key is checked against: `--server-key`, or the
/// known-servers file (`--known-servers`, or the default one).
fn server_trust(opts: &Options) -> Result<ServerTrust> {
    let pin = match (&opts.server_key, &opts.known_servers) {
        (Some(fp), _) => Pin::Fingerprint(*fp),
        (None, Some(path)) => Pin::KnownServers(KnownServers::new(path.clone())),
        (None, None) => Pin::KnownServers(KnownServers::new(KnownServers::default_path()?)),
    };
    Ok(ServerTrust::new(&opts.server, pin).in_lang(opts.lang))
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

/// Sends one LEAVE, without waiting (the best that can be done on an error
/// path before the fork).
pub(crate) fn leave_once(socket: &UdpSocket, conn: &mut Conn<SealedBodies>) {
    conn.leave(Instant::now());
    while let Some(d) = conn.poll_transmit() {
        let _ = socket.send(&d);
    }
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
