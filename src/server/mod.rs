//! The chat server's event loop: one UDP socket, the admin console on stdin
//! and SIGINT/SIGTERM, all in one mio poll. It only moves bytes: datagrams and
//! console lines go into the [`Room`] (which opens and seals them through its
//! gate), the sealed datagrams it returns go out in `sendmmsg` batches, and
//! the loop sleeps until the room's next deadline.

mod console;

use crate::error::{Error, Result};
use crate::net::{
    bind_server_socket, enable_segments, BatchReceiver, BatchSender, Outgoing, BATCH,
};
use crate::protocol::sealed::ByeReason;
use crate::room::{Config, Room};
use crate::session::MAX_DATAGRAM;
use crate::stdio;
use crate::store::HistoryStore;
use crate::trust::ticket::TicketKey;
use crate::trust::ServerKey;
use console::{Console, ConsoleState};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use siphasher::sip128::SipHasher24;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Poll token of the UDP socket.
const SOCKET: Token = Token(0);
/// Poll token of the admin console (stdin).
const STDIN: Token = Token(1);
/// Poll token of the signalfd (SIGINT, SIGTERM).
const SIGNALS: Token = Token(2);

/// Datagrams handled per loop turn before the output is flushed: what one
/// turn queues for a member is packed together, and timers, the console and
/// signals still get their turn under a flood.
const TURN_BUDGET: usize = 4 * BATCH;
/// The dropped-datagram summary is logged at most this often.
const DROPS_SUMMARY_EVERY: Duration = Duration::from_secs(5);

/// Everything the server needs to know.
pub struct Options {
    /// Address to listen on.
    pub bind: SocketAddr,
    /// The room's limits.
    pub room: Config,
    /// The server's long-term key.
    pub key: ServerKey,
    /// Where the room's history is kept.
    pub store: Box<dyn HistoryStore>,
    /// Room messages a newcomer is shown.
    pub history_on_join: usize,
    /// SIGINT and SIGTERM close the room (BYE 2) instead of announcing a
    /// restart (BYE 3).
    pub close_on_signal: bool,
}

/// Writes one log line to stderr, with a UTC timestamp.
fn log(msg: &str) {
    stdio::err_line(&format!("{} {msg}", timestamp(SystemTime::now())));
}

/// `YYYY-MM-DD HH:MM:SS.mmm` in UTC.
fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (days, rem) = ((secs / 86_400) as i64, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + (month <= 2) as i64;
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

/// The Unix time in milliseconds.
fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Blocks SIGINT and SIGTERM and returns a signalfd that reports them.
fn signal_fd() -> Result<SignalFd> {
    SignalFd::with_flags(
        &stop_signals(),
        SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC,
    )
    .map_err(|e| Error::io("create", "signalfd", e.into()))
}

/// The signals that end the server, read through its signalfd.
fn stop_signals() -> SigSet {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGINT);
    mask.add(Signal::SIGTERM);
    mask
}

/// The server's process-wide signal setup, for `main` to call before [`run`]:
/// blocks SIGINT and SIGTERM in the calling thread (so they wait for the loop's
/// signalfd instead of killing the process) and ignores SIGTTIN and SIGTTOU for
/// the whole process (a server in the background of a shell is not stopped by
/// its console; see `console::ignore_terminal_stop_signals`).
pub fn set_up_signals() -> Result<()> {
    stop_signals()
        .thread_block()
        .map_err(|e| Error::io("block", "SIGINT and SIGTERM", e.into()))?;
    console::ignore_terminal_stop_signals()
        .map_err(|e| Error::io("ignore", "SIGTTIN and SIGTTOU", e.into()))
}

/// Reads every pending signal; returns the name of the last one.
fn read_signals(sfd: &SignalFd) -> Option<String> {
    let mut got = None;
    loop {
        match sfd.read_signal() {
            Ok(Some(info)) => {
                got = Some(
                    Signal::try_from(info.ssi_signo as i32)
                        .map_or_else(|_| format!("signal {}", info.ssi_signo), |s| s.to_string()),
                )
            }
            Ok(None) => return got,
            Err(nix::errno::Errno::EINTR) => {}
            Err(_) => return got,
        }
    }
}

/// Opens and registers the console, or says why it is off.
fn open_console(poll: &Poll) -> std::result::Result<Console, String> {
    let c = Console::open()?;
    poll.registry()
        .register(
            &mut SourceFd(&c.file.as_raw_fd()),
            STDIN,
            Interest::READABLE,
        )
        .map_err(|e| {
            format!(
                "stdin is not a terminal or pipe, epoll refuses it: {}",
                crate::error::os_reason(&e)
            )
        })?;
    Ok(c)
}

/// Logs what changed in the console's state.
fn log_console(state: &ConsoleState) {
    match state {
        ConsoleState::On => log(&format!(
            "admin console on: type a line to send it to everyone; {}",
            console::COMMANDS
        )),
        ConsoleState::Paused => log("admin console paused (background)"),
        ConsoleState::EndOfInputOnTerminal => {
            log("(the server keeps running; /shutdown closes the room)")
        }
        ConsoleState::Off(why) => log(&format!("admin console off ({why})")),
    }
}

/// Receives and handles datagrams until the socket is drained (returns
/// false) or the turn's budget is spent (returns true: more may be waiting).
fn drain_socket(
    fd: BorrowedFd<'_>,
    rx: &mut BatchReceiver,
    room: &mut Room,
    now: Instant,
) -> Result<bool> {
    let unix = unix_ms();
    let mut handled = 0;
    while handled < TURN_BUDGET {
        match rx.recv(fd) {
            Ok(n) => {
                for k in 0..n {
                    if let Some((peer, data)) = rx.get(k) {
                        room.handle(now, unix, peer, data);
                    }
                }
                handled += n.max(1);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => match e.raw_os_error() {
                Some(
                    nix::libc::EBADF | nix::libc::EFAULT | nix::libc::EINVAL | nix::libc::ENOTSOCK,
                ) => return Err(Error::io("receive on", "socket", e)),
                // Transient (ENOMEM, a pending ICMP error): try again next turn.
                _ => return Ok(true),
            },
        }
    }
    Ok(true)
}

/// Runs the server until SIGINT or SIGTERM, which [`set_up_signals`] must have
/// blocked first.
pub fn run(opts: Options) -> Result<()> {
    // The signalfd first: once "listening on" is out, SIGTERM must find it.
    let sfd = signal_fd()?;
    let sock = bind_server_socket(opts.bind)?;
    let local = sock
        .local_addr()
        .map_err(|e| Error::io("read the address of", opts.bind, e))?;
    stdio::err_line(&format!("listening on {local}"));
    log(&format!("server key {}", opts.key.fingerprint()));

    // The cookie secret, and a key for random numbers should the OS random
    // source fail later (SipHash of a counter under a secret key is as
    // unpredictable).
    let mut secrets = [0u8; 48];
    getrandom::fill(&mut secrets)
        .map_err(|e| Error::msg("read", "the OS random source", e.to_string()))?;
    let (mut cookie_secret, mut prf_key) = ([0u8; 32], [0u8; 16]);
    cookie_secret.copy_from_slice(&secrets[..32]);
    prf_key.copy_from_slice(&secrets[32..]);
    let mut counter = 0u64;
    let random = move || {
        getrandom::u64().unwrap_or_else(|_| {
            counter += 1;
            SipHasher24::new_with_key(&prf_key)
                .hash(&counter.to_be_bytes())
                .h1
        })
    };
    let key = crate::session::ServerKey::new(*opts.key.secret());
    let now = Instant::now();
    let mut cfg = opts.room.clone();
    cfg.segments = cfg.segments && enable_segments(&sock, MAX_DATAGRAM as u16);
    let mut room = Room::new(cfg, key, cookie_secret, Box::new(random), now);
    let tickets = TicketKey::derive(opts.key.secret());
    room.keep_history(opts.store, tickets, opts.history_on_join, now);

    let mut poll = Poll::new().map_err(|e| Error::io("create", "poll", e))?;
    let fd = sock.as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&fd), SOCKET, Interest::READABLE)
        .map_err(|e| Error::io("register", local, e))?;
    poll.registry()
        .register(&mut SourceFd(&sfd.as_raw_fd()), SIGNALS, Interest::READABLE)
        .map_err(|e| Error::io("register", "signalfd", e))?;
    let mut console = match open_console(&poll) {
        Ok(mut c) => {
            log_console(&c.start_state());
            Some(c)
        }
        Err(why) => {
            log(&format!("admin console off ({why})"));
            None
        }
    };

    let mut events = Events::with_capacity(16);
    let mut rx = BatchReceiver::new();
    let mut tx = BatchSender::new();
    let mut socket_ready = true; // drain what arrived before registration
    let mut console_ready = true;
    let mut last_summary: Option<Instant> = None;
    loop {
        let now = Instant::now();
        let mut deadline = room.next_deadline();
        if room.drops_pending() {
            let at = last_summary.map_or(now, |t| t + DROPS_SUMMARY_EVERY);
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        if console.as_ref().is_some_and(Console::is_paused) {
            let at = now + console::PAUSED_CHECK;
            deadline = Some(deadline.map_or(at, |d| d.min(at)));
        }
        let timeout = if socket_ready {
            Some(Duration::ZERO)
        } else {
            deadline.map(|d| d.saturating_duration_since(now))
        };
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(Error::io("poll", local, e));
        }
        let now = Instant::now();
        let mut stop = None;
        for ev in events.iter() {
            match ev.token() {
                SOCKET => socket_ready = true,
                SIGNALS => stop = read_signals(&sfd).or(stop),
                STDIN => console_ready = true,
                _ => {}
            }
        }
        // `fg` sends no signal to a job that was running: look each turn.
        if let Some(state) = console.as_mut().and_then(Console::back_in_foreground) {
            log_console(&state);
            console_ready = true;
        }
        if let Some(c) = console.as_mut().filter(|_| console_ready) {
            console_ready = false;
            let (lines, state) = c.read();
            for line in lines {
                if line.trim() == "/shutdown" {
                    stop = Some("/shutdown".to_string());
                    break;
                }
                let reply = room.console(now, unix_ms(), &line);
                if !reply.is_empty() {
                    let _ = stdio::out_line(&reply);
                }
            }
            if state != ConsoleState::On {
                log_console(&state);
            }
            if let ConsoleState::Off(_) = state {
                let _ = poll
                    .registry()
                    .deregister(&mut SourceFd(&c.file.as_raw_fd()));
                console = None;
            }
        }
        if socket_ready && stop.is_none() {
            socket_ready = drain_socket(sock.as_fd(), &mut rx, &mut room, now)?;
        }
        room.expire(now);
        if let Some(sig) = &stop {
            let restart = sig != "/shutdown" && !opts.close_on_signal;
            log(&format!(
                "{sig}: telling every member the server is {}",
                if restart {
                    "restarting"
                } else {
                    "closing the room"
                }
            ));
            room.shutdown(
                if restart {
                    ByeReason::Restarting
                } else {
                    ByeReason::Closing
                },
                "",
            );
        }
        let out = room.flush(now);
        let n = tx.send(
            &sock,
            out.datagrams().iter().map(|d| Outgoing {
                to: Some(d.to),
                from: d.from,
                pieces: std::iter::once(out.bytes(d)),
                segment: (d.segments() > 1).then_some(MAX_DATAGRAM as u16),
            }),
        );
        if n.unsegmented > 0 && room.segments() {
            room.stop_segments();
            log("segmented sends (UDP GSO) refused by the kernel: sending datagrams one by one");
        }
        room.end_turn();
        room.stats.datagrams_out += n.sent;
        room.stats.dropped_sends += n.dropped;
        room.stats.segmented_sends += n.segmented;
        for line in room.take_log() {
            log(&line);
        }
        if room.drops_pending() && last_summary.is_none_or(|t| now >= t + DROPS_SUMMARY_EVERY) {
            if let Some(s) = room.drops_summary() {
                log(&s);
            }
            last_summary = Some(now);
        }
        if stop.is_some() {
            // What was dropped since the last summary is said before the end.
            if let Some(s) = room.drops_summary() {
                log(&s);
            }
            if let Err(e) = room.finish() {
                log(&format!("history: {e}"));
            }
            log("exiting");
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_are_utc_civil_time() {
        let t = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(timestamp(t), "2023-11-14 22:13:20.123");
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000");
        let leap = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(timestamp(leap), "2000-02-29 00:00:00.000");
    }
}
