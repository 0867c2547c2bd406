//! `chat-client`: log in, then fork into a sender and a receiver.
//!
//! * Before the fork (one process, one thread): resolve the server, create one
//!   UDP socket connected to it (so only its datagrams are read), ask for a
//!   name and log in ([`login`]). Then block the signals both halves read
//!   through a signalfd, put a terminal in chat mode ([`term`]), create the
//!   socketpair ([`link`]), flush stdout and fork.
//! * The parent is the **sender** ([`sender`]): it reads the user's input and
//!   sends SAY, PRIVATE and WHO requests, retransmitting until acknowledged
//!   ([`outbox`]). It never reads the socket while the receiver lives, and it
//!   reaps the receiver before it exits.
//! * The child is the **receiver** ([`receiver`]): the only reader of the
//!   socket and the only writer to stdout. It prints events ([`render`]),
//!   forwards ACK and REJECT to the sender, keeps the session alive, re-joins
//!   after a server restart, and owns the LEAVE.
//!
//! Each side ends when the other does: the socketpair reaches EOF, the child
//! also has `PR_SET_PDEATHSIG`, and the parent a SIGCHLD. The terminal's modes
//! are restored by the process that ends last.

pub mod editor;
pub mod link;
pub mod login;
pub mod outbox;
pub mod receiver;
pub mod render;
pub mod reorder;
pub mod screen;
pub mod sender;
pub mod tally;
pub mod term;

use crate::error::{Error, Result};
use crate::protocol::{self, ClientMsg, ServerMsg, Token, MAX_DATAGRAM};
use login::{Login, Step, Welcome};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use nix::unistd::{fork, ForkResult, Pid};
use render::{Lang, Notice};
use std::io::{self, Write};
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::time::{Duration, Instant};
use term::TermModes;

/// The command line, parsed.
#[derive(Debug, Clone)]
pub struct Options {
    /// `HOST:PORT` of the server.
    pub server: String,
    /// The name to join as; asked for when absent.
    pub name: Option<String>,
    pub lang: Lang,
}

/// The signal the child gets when the parent dies.
pub const PARENT_DEATH_SIGNAL: Signal = Signal::SIGUSR1;
/// How long the LEAVE is repeated while waiting for BYE.
pub const LEAVE_WAIT: Duration = Duration::from_millis(500);
/// LEAVE is repeated this often until BYE.
pub const LEAVE_RESEND: Duration = Duration::from_millis(200);

/// Exit codes.
pub mod code {
    /// `/quit`, end of input.
    pub const OK: u8 = 0;
    /// Every end the user did not ask for: no answer, refused, kicked,
    /// shutdown, lost contact, the other process killed.
    pub const FAIL: u8 = 1;
    pub const SIGHUP: u8 = 128 + 1;
    pub const SIGINT: u8 = 128 + 2;
    pub const SIGTERM: u8 = 128 + 15;
}

/// What both halves know after the login.
pub struct Session {
    pub socket: UdpSocket,
    pub server: SocketAddr,
    pub server_text: String,
    pub token: Token,
    pub timeout_ms: u32,
    pub name: String,
    pub lang: Lang,
    /// Set when stdin and stdout are both terminals.
    pub term: Option<TermModes>,
}

/// Runs the client; returns the exit code (in whichever process returns).
pub fn run(opts: &Options) -> Result<u8> {
    let server = resolve(&opts.server)?;
    let socket = connect(server, &opts.server)?;
    let interactive = term::is_tty(term::stdin_fd());
    let terminal = interactive && term::is_tty(term::stdout_fd());
    let welcome = join_loop(&socket, opts, interactive)?;
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
        server,
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
    // SAFETY: the process is single-threaded here (no thread was ever started),
    // so the child may run any code.
    match unsafe { fork() } {
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
            Err(Error::io("fork", "chat-client", e.into()))
        }
    }
}

/// The address `text` resolves to: the first IPv4 one if there is one (the
/// server listens on `127.0.0.1` by default, and `localhost` often resolves to
/// `::1` first), else the first.
fn resolve(text: &str) -> Result<SocketAddr> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| Error::io("resolve", text, e))?
        .collect();
    addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| Error::msg("resolve", text, "no address"))
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
fn join_loop(socket: &UdpSocket, opts: &Options, interactive: bool) -> Result<Welcome> {
    let lang = opts.lang;
    let mut given = opts.name.clone();
    loop {
        let name = match given.take() {
            Some(n) => n.trim().to_string(),
            None => read_name(lang, interactive)?,
        };
        let refusal = match protocol::check_name(&name) {
            Err(protocol::NameError::Invalid) => Some(protocol::RefuseReason::InvalidName),
            Err(protocol::NameError::Reserved) => Some(protocol::RefuseReason::Reserved),
            Ok(()) => match login_blocking(socket, &name, 0)? {
                Joined::Welcome(w) => return Ok(w),
                Joined::Refused(r) => Some(r),
                Joined::NoAnswer => {
                    return Err(Error::plain(format!(
                        "no answer from chat server at {}",
                        opts.server
                    )))
                }
            },
        };
        let reason = render::refusal(lang, refusal.expect("set above"));
        if !interactive {
            return Err(Error::plain(format!(
                "cannot join as '{}': {reason}",
                render::escape(&name)
            )));
        }
        let _ = writeln!(io::stderr(), "{}: {reason}", render::escape(&name));
    }
}

/// Reads a name from stdin: with a prompt on a terminal, without one otherwise.
/// Reads byte by byte so that no later input is taken from stdin.
fn read_name(lang: Lang, interactive: bool) -> Result<String> {
    loop {
        if interactive {
            let mut err = io::stderr();
            let _ = err.write_all(render::name_prompt(lang).as_bytes());
            let _ = err.flush();
        }
        let mut bytes = Vec::new();
        let mut b = [0u8; 1];
        loop {
            match nix::unistd::read(term::stdin_fd(), &mut b) {
                Ok(0) if bytes.is_empty() => {
                    return Err(Error::msg("read a name from", "stdin", "end of input"))
                }
                Ok(0) => break,
                Ok(_) if b[0] == b'\n' => break,
                Ok(_) => bytes.push(b[0]),
                Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(Error::io("read a name from", "stdin", e.into())),
            }
        }
        let name = String::from_utf8_lossy(&bytes).trim().to_string();
        if !name.is_empty() || !interactive {
            return Ok(name);
        }
    }
}

/// The end of one login attempt.
pub enum Joined {
    Welcome(Welcome),
    Refused(protocol::RefuseReason),
    NoAnswer,
}

/// Logs in with a blocking socket: the handshake of [`login`], bounded by
/// [`login::LOGIN_TIMEOUT`]. ICMP "connection refused" counts as silence.
pub fn login_blocking(socket: &UdpSocket, name: &str, prev: Token) -> Result<Joined> {
    let (mut login, join) = Login::start(name, prev, login::random_nonce(), Instant::now());
    let _ = socket.send(&join);
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
                Err(e) => match e.kind() {
                    io::ErrorKind::WouldBlock
                    | io::ErrorKind::TimedOut
                    | io::ErrorKind::Interrupted
                    | io::ErrorKind::ConnectionRefused => Step::Wait,
                    _ => return Err(Error::io("receive from", socket_peer(socket), e)),
                },
            }
        };
        match step {
            Step::Send(d) => {
                let _ = socket.send(&d);
            }
            Step::Wait => {}
            Step::Welcome(w) => return Ok(Joined::Welcome(w)),
            Step::Refused(r) => return Ok(Joined::Refused(r)),
            Step::GiveUp => return Ok(Joined::NoAnswer),
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
    // SAFETY: SIG_IGN installs no handler code.
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
    let start = Instant::now();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut next = start;
    while start.elapsed() < LEAVE_WAIT {
        if Instant::now() >= next {
            leave_once(socket, token);
            next = Instant::now() + LEAVE_RESEND;
        }
        loop {
            match socket.recv(&mut buf) {
                Ok(n) if n <= MAX_DATAGRAM => match protocol::decode_server(&buf[..n]) {
                    Ok(ServerMsg::Bye { .. }) => return true,
                    Ok(ServerMsg::UnknownSession { token: t }) if t == token => return true,
                    _ => {}
                },
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(_) => {}
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}

/// Writes a line stamped with the local time to stdout (before the fork, or
/// by a process that is the only one left).
pub fn say_line(text: &str) {
    let _ = crate::stdio::out_line(&render::stamped(&render::local_hhmm(), text));
}

/// The signals waiting on a signalfd, read until it would block.
pub fn pending_signals(fd: &mut nix::sys::signalfd::SignalFd) -> Vec<Signal> {
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

/// Waits up to `limit` for `child` to end, then kills it; returns its status.
pub fn reap(child: Pid, limit: Duration) -> Option<nix::sys::wait::WaitStatus> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let start = Instant::now();
    loop {
        match waitpid(child, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::StillAlive) => {}
            Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Some(s),
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return None,
        }
        if start.elapsed() >= limit {
            let _ = nix::sys::signal::kill(child, Signal::SIGKILL);
            loop {
                match waitpid(child, None) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    Ok(s @ (WaitStatus::Exited(..) | WaitStatus::Signaled(..))) => return Some(s),
                    Ok(_) => continue,
                    Err(_) => return None,
                }
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}
