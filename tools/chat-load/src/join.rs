//! Joining many members at once: each member's login is the library's
//! client state machine (cookie round-trip, Noise handshake, sealed JOIN;
//! [`super::member`]), pipelined `WINDOW` at a time per thread over a few
//! threads.

use super::member::{self, KeyPin, Member, MemberConn};
use super::net::{self, count, member_name};
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpchat::client::conn::{End, Event, LOGIN_TIMEOUT};
use udpchat::error::os_reason;
use udpchat::protocol::sealed::{decode_server, ServerMsg, WelcomeFlags};
use udpchat::session::MAX_DATAGRAM;
use udpchat::trust::Fingerprint;

/// Logins in flight per thread.
const WINDOW: usize = 32;
/// Threads that join members.
const THREADS: usize = 4;
/// All joins of a run must be done within this long.
const JOIN_LIMIT: Duration = Duration::from_secs(60);

/// Members joined to the server, how long the joins took, and whether
/// every WELCOME said the server serves repair (NACK).
pub struct JoinedMembers {
    pub members: Vec<Arc<Member>>,
    pub join_secs: f64,
    pub repair: bool,
}

/// Member sockets for `n` members, connected to `peer`.
pub fn sockets(n: usize, rcvbuf: usize, peer: SocketAddr) -> Result<Vec<UdpSocket>, String> {
    (0..n)
        .map(|i| {
            net::member_socket(i, rcvbuf, peer).map_err(|e| {
                format!(
                    "cannot open the socket of member {i} on {}: {}",
                    net::member_addr(i, &peer),
                    os_reason(&e)
                )
            })
        })
        .collect()
}

/// Opens the sockets of `n` members of the server at `addr` and joins them;
/// every member must be shown the key `pin` holds (or the first one's).
pub fn join_members(
    n: usize,
    rcvbuf: usize,
    addr: SocketAddr,
    pin: &KeyPin,
) -> Result<JoinedMembers, String> {
    let socks = sockets(n, rcvbuf, addr)?;
    let t = Instant::now();
    let conns = join_all(&socks, addr, pin)?;
    let join_secs = t.elapsed().as_secs_f64();
    let repair = conns.iter().all(|(_, r)| *r);
    let members = socks
        .into_iter()
        .zip(conns)
        .map(|(s, (c, _))| Arc::new(Member::new(s, c)))
        .collect();
    Ok(JoinedMembers {
        members,
        join_secs,
        repair,
    })
}

/// Joins every member (name `m{i}`) of the server at `server`. Returns the
/// connections in member order, each with whether its WELCOME offered
/// repair; an error after [`JOIN_LIMIT`], when the
/// server refuses (ICMP port unreachable) or refuses a member, shows another
/// key, or has not answered anything for [`LOGIN_TIMEOUT`].
fn join_all(
    socks: &[UdpSocket],
    server: SocketAddr,
    pin: &KeyPin,
) -> Result<Vec<(MemberConn, bool)>, String> {
    let chunk = socks.len().div_ceil(THREADS).max(1);
    let end = Instant::now() + JOIN_LIMIT;
    std::thread::scope(|scope| {
        let handles: Vec<_> = socks
            .chunks(chunk)
            .enumerate()
            .map(|(t, part)| scope.spawn(move || join_part(part, t * chunk, server, pin, end)))
            .collect();
        let mut conns = Vec::with_capacity(socks.len());
        let mut first_err = None;
        for h in handles {
            match h.join() {
                Ok(Ok(c)) => conns.extend(c),
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
            None => Ok(conns),
        }
    })
}

/// What one member's login came to at this turn.
enum Outcome {
    Waiting,
    /// Welcomed; whether the server serves repair.
    Joined(bool),
    /// The login ended without an answer: the server is busy, or gone.
    NoAnswer,
}

/// Joins the members `base..` whose sockets are `socks`.
fn join_part(
    socks: &[UdpSocket],
    base: usize,
    server: SocketAddr,
    pin: &KeyPin,
    end: Instant,
) -> Result<Vec<(MemberConn, bool)>, String> {
    let n = socks.len();
    let mut done: Vec<Option<(MemberConn, bool)>> = (0..n).map(|_| None).collect();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    let mut next = 0; // members below `next` have been started
    let mut waiting: Vec<(usize, MemberConn)> = Vec::new();
    let mut heard = Instant::now(); // the last datagram from the server (or the start)
                                    // A connected UDP socket reports the server's ICMP port unreachable as
                                    // ECONNREFUSED on its next send or receive: nobody is listening there.
    let refused = |e: &io::Error| {
        (e.kind() == io::ErrorKind::ConnectionRefused)
            .then(|| format!("cannot join chat server at {server}: {}", os_reason(e)))
    };
    let flush = |k: usize, conn: &mut MemberConn| -> Result<(), String> {
        while let Some(d) = conn.poll_transmit() {
            if let Err(e) = socks[k].send(&d) {
                // Anything but a refusal: sent again on the connection's schedule.
                refused(&e).map_or(Ok(()), Err)?;
            }
        }
        Ok(())
    };
    while next < n || !waiting.is_empty() {
        let now = Instant::now();
        if now > end {
            let left = done.iter().filter(|c| c.is_none()).count();
            return Err(format!(
                "{} did not finish in time",
                count(left, "join", "joins")
            ));
        }
        while waiting.len() < WINDOW && next < n {
            let mut conn = member::connect(&member_name(base + next), now);
            flush(next, &mut conn)?;
            waiting.push((next, conn));
            next += 1;
        }
        let mut progressed = false;
        let mut k = 0;
        while k < waiting.len() {
            let (m, conn) = &mut waiting[k];
            let m = *m;
            loop {
                match socks[m].recv(&mut buf) {
                    Ok(len) => {
                        heard = now;
                        progressed = true;
                        conn.on_datagram(now, &buf[..len]);
                    }
                    Err(e) => match refused(&e) {
                        Some(msg) => return Err(msg),
                        None => break, // would block (or interrupted: next turn)
                    },
                }
            }
            if conn.next_timeout().is_some_and(|t| t <= now) {
                conn.on_timeout(now);
            }
            let outcome = login_events(conn, base + m, server, pin, now)?;
            flush(m, conn)?;
            match outcome {
                Outcome::Waiting => k += 1,
                Outcome::Joined(repair) => {
                    let (m, conn) = waiting.swap_remove(k);
                    done[m] = Some((conn, repair));
                    progressed = true;
                }
                Outcome::NoAnswer if now.duration_since(heard) >= LOGIN_TIMEOUT => {
                    return Err(format!("no answer from chat server at {server}"));
                }
                Outcome::NoAnswer => {
                    // The server is busy, not gone: this member tries again.
                    let mut conn = member::connect(&member_name(base + m), now);
                    flush(m, &mut conn)?;
                    waiting[k].1 = conn;
                    k += 1;
                }
            }
        }
        if !progressed {
            wait_readable(socks, &waiting);
        }
    }
    Ok(done.into_iter().flatten().collect())
}

/// Takes the events of member `i`'s login: the server's key checked against
/// the pin, WELCOME, or the end.
fn login_events(
    conn: &mut MemberConn,
    i: usize,
    server: SocketAddr,
    pin: &KeyPin,
    now: Instant,
) -> Result<Outcome, String> {
    while let Some(ev) = conn.poll_event() {
        match ev {
            Event::VerifyKey(key) => {
                let ok = pin.check(&key);
                conn.key_checked(now, ok);
                if !ok {
                    return Err(format!(
                        "chat server at {server} showed {} the key {}, not the one the other members were shown",
                        member_name(i),
                        Fingerprint::of(&key)
                    ));
                }
            }
            Event::Welcome { body, .. } => {
                let repair = match decode_server(&body) {
                    Ok(ServerMsg::Welcome(w)) => w.flags.contains(WelcomeFlags::REPAIR),
                    _ => false,
                };
                return Ok(Outcome::Joined(repair));
            }
            Event::Refused { body } => {
                let why = match decode_server(&body) {
                    Ok(ServerMsg::Refused(r)) => format!("{r:?}"),
                    _ => "a malformed REFUSED".to_string(),
                };
                return Err(format!("{} was refused: {why}", member_name(i)));
            }
            Event::Ended(End::NoAnswer) => return Ok(Outcome::NoAnswer),
            Event::Ended(End::Unreachable) => {
                return Err(format!(
                    "cannot join chat server at {server}: Connection refused"
                ))
            }
            Event::Ended(e) => return Err(format!("{} could not join: {e:?}", member_name(i))),
            Event::Body(_) | Event::Reconnecting { .. } => {}
        }
    }
    Ok(Outcome::Waiting)
}

/// Sleeps until one of the `waiting` members' sockets has a datagram or an
/// error, or the next timer of one is due.
fn wait_readable(socks: &[UdpSocket], waiting: &[(usize, MemberConn)]) {
    let Some(wake) = waiting.iter().filter_map(|(_, c)| c.next_timeout()).min() else {
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
