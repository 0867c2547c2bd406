//! Joining many members at once: each member's login is the library's
//! sans-IO login machine ([`Login`]), pipelined `WINDOW` at a time per
//! thread over a few threads.

use super::net::{self, count, member_name};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpchat::client::login::{random_nonce, Login, Step, LOGIN_TIMEOUT};
use udpchat::error::os_reason;
use udpchat::protocol::{decode_server, Token, MAX_DATAGRAM};

/// Logins in flight per thread.
const WINDOW: usize = 32;
/// Threads that join members.
const THREADS: usize = 4;
/// All joins of a run must be done within this long.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// Members joined to the server: their sockets and tokens, and how long the
/// joins took.
pub struct JoinedMembers {
    pub socks: Vec<Arc<UdpSocket>>,
    pub tokens: Vec<Token>,
    pub join_secs: f64,
}

/// Member sockets for `n` members, connected to `peer`.
pub fn sockets(n: usize, rcvbuf: usize, peer: SocketAddr) -> Result<Vec<Arc<UdpSocket>>, String> {
    (0..n)
        .map(|i| {
            net::member_socket(i, rcvbuf, peer)
                .map(Arc::new)
                .map_err(|e| {
                    format!(
                        "cannot open the socket of member {i} on {}: {}",
                        net::member_addr(i, &peer),
                        os_reason(&e)
                    )
                })
        })
        .collect()
}

/// Opens the sockets of `n` members of the server at `addr` and joins them.
pub fn join_members(n: usize, rcvbuf: usize, addr: SocketAddr) -> Result<JoinedMembers, String> {
    let socks = sockets(n, rcvbuf, addr)?;
    let t = Instant::now();
    let tokens = join_all(&socks, addr)?;
    Ok(JoinedMembers {
        socks,
        tokens,
        join_secs: t.elapsed().as_secs_f64(),
    })
}

/// Joins every member (name `m{i}`) of the server at `server`. Returns the
/// tokens in member order; an error after [`JOIN_LIMIT`], when the server
/// refuses (ICMP port unreachable) or refuses a member, or when it has not
/// answered anything for [`LOGIN_TIMEOUT`].
fn join_all(socks: &[Arc<UdpSocket>], server: SocketAddr) -> Result<Vec<Token>, String> {
    let chunk = socks.len().div_ceil(THREADS).max(1);
    let end = Instant::now() + JOIN_LIMIT;
    std::thread::scope(|scope| {
        let handles: Vec<_> = socks
            .chunks(chunk)
            .enumerate()
            .map(|(t, part)| scope.spawn(move || join_part(part, t * chunk, server, end)))
            .collect();
        let mut tokens = Vec::with_capacity(socks.len());
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(t)) => tokens.extend(t),
                Ok(Err(e)) => {
                    first_err.get_or_insert(e);
                }
                Err(_) => {
                    first_err.get_or_insert_with(|| "a join thread panicked".to_string());
                }
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(tokens),
        }
    })
}

/// Joins the members `base..` whose sockets are `socks`.
fn join_part(
    socks: &[Arc<UdpSocket>],
    base: usize,
    server: SocketAddr,
    end: Instant,
) -> Result<Vec<Token>, String> {
    let n = socks.len();
    let names: Vec<String> = (0..n).map(|k| member_name(base + k)).collect();
    let mut tokens = vec![0 as Token; n];
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut next = 0; // members below `next` have been started
    let mut waiting: Vec<(usize, Login)> = Vec::new();
    let mut heard = Instant::now(); // the last datagram from the server (or the start)
                                    // A connected UDP socket reports the server's ICMP port unreachable as
                                    // ECONNREFUSED on its next send or receive: nobody is listening there.
    let refused = |e: &io::Error| {
        (e.kind() == io::ErrorKind::ConnectionRefused)
            .then(|| format!("cannot join chat server at {server}: {}", os_reason(e)))
    };
    let send = |k: usize, datagram: &[u8]| match socks[k].send(datagram) {
        Err(e) => refused(&e).map_or(Ok(()), Err), // anything else: sent again later
        Ok(_) => Ok(()),
    };
    while next < n || !waiting.is_empty() {
        let now = Instant::now();
        if now > end {
            let left = tokens.iter().filter(|&&t| t == 0).count();
            return Err(format!(
                "{} did not finish in time",
                count(left, "join", "joins")
            ));
        }
        while waiting.len() < WINDOW && next < n {
            let (login, join) = Login::start(&names[next], 0, random_nonce(), now);
            send(next, &join)?;
            waiting.push((next, login));
            next += 1;
        }
        let mut progressed = false;
        let mut k = 0;
        while k < waiting.len() {
            let (m, login) = &mut waiting[k];
            let m = *m;
            let mut step = Step::Wait;
            while step == Step::Wait {
                let len = match socks[m].recv(&mut buf) {
                    Ok(len) => len,
                    Err(e) => match refused(&e) {
                        Some(msg) => return Err(msg),
                        None => break, // would block (or interrupted: next turn)
                    },
                };
                heard = now;
                if let Ok(msg) = decode_server(&buf[..len.min(MAX_DATAGRAM)]) {
                    step = login.on_message(&msg, now); // others' joins: Wait
                }
            }
            if step == Step::Wait {
                step = login.on_timer(now);
            }
            match step {
                Step::Wait => {}
                Step::Send(d) => {
                    send(m, &d)?;
                    progressed = true;
                }
                Step::Welcome(w) => {
                    tokens[m] = w.token;
                    waiting.swap_remove(k);
                    progressed = true;
                    continue;
                }
                Step::Refused(reason) => {
                    return Err(format!("{} was refused: {reason}", names[m]));
                }
                Step::GiveUp if now.duration_since(heard) >= LOGIN_TIMEOUT => {
                    return Err(format!("no answer from chat server at {server}"));
                }
                Step::GiveUp => {
                    // The server is busy, not gone: this member tries again.
                    let (login, join) = Login::start(&names[m], 0, random_nonce(), now);
                    send(m, &join)?;
                    waiting[k].1 = login;
                }
            }
            k += 1;
        }
        if !progressed {
            wait_readable(socks, &waiting);
        }
    }
    Ok(tokens)
}

/// Sleeps until one of the `waiting` members' sockets has a datagram or an
/// error, or the next resend of one is due.
fn wait_readable(socks: &[Arc<UdpSocket>], waiting: &[(usize, Login)]) {
    let Some(wake) = waiting.iter().map(|(_, l)| l.next_wakeup()).min() else {
        return;
    };
    let wait = wake
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    let mut fds: Vec<PollFd> = waiting
        .iter()
        .map(|&(m, _)| PollFd::new(socks[m].as_fd(), PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let _ = poll(&mut fds, timeout); // EINTR: the caller's loop looks again
}
