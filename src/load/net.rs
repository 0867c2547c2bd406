//! The load tool's plumbing: member sockets on loopback, batched sends
//! (`sendmmsg`), the pipelined cookie round-trips of many joins, and CPU and
//! memory counters read from /proc.

use crate::error::os_reason;
use crate::protocol::{decode_server, ClientMsg, Cookie, ServerMsg, Token};
use nix::libc;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::socket::{setsockopt, sockopt};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::os::fd::{AsFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Members per loopback source address: the server answers a non-member IP at
/// most 20 times a second (burst 40), and each join takes two answers.
const PER_IP: usize = 5;

/// The loopback address member `i` sends from (127.1.0.1, 127.1.0.2, … by fives).
pub fn member_ip(i: usize) -> Ipv4Addr {
    let g = (i / PER_IP + 1) as u32;
    Ipv4Addr::new(127, 1 + (g >> 16) as u8, (g >> 8) as u8, g as u8)
}

/// A member's socket: bound on its own loopback address, a large receive
/// buffer (the kernel caps it at rmem_max), connected to `peer` so that it
/// receives from nothing else and sends without an address lookup.
pub fn member_socket(i: usize, rcvbuf: usize, peer: SocketAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind((member_ip(i), 0))?;
    setsockopt(&s, sockopt::RcvBuf, &rcvbuf).map_err(io::Error::from)?;
    s.connect(peer)?;
    s.set_nonblocking(true)?;
    Ok(s)
}

/// Raises the open-file limit to its hard limit (one socket per member).
pub fn raise_fd_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}

/// Lets short sleeps be short (the default timer slack is 50 µs).
pub fn tight_timer_slack() {
    // SAFETY: PR_SET_TIMERSLACK takes a plain integer and affects this thread only.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1000 as libc::c_ulong, 0, 0, 0);
    }
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    // SAFETY: a zeroed timespec is valid; clock_gettime writes it.
    let mut ts: libc::timespec = unsafe { zeroed() };
    // SAFETY: a valid clock id and a pointer to a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The calling thread's id (for its /proc/self/task entry).
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// Reusable state for `sendmmsg`: many payloads on a connected socket, or
/// one payload to many addresses.
#[derive(Default)]
pub struct MultiSend {
    hdrs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_in>,
}

// SAFETY: the raw pointers inside are rebuilt before every call and never
// outlive it; the struct only keeps their storage.
unsafe impl Send for MultiSend {}

impl MultiSend {
    /// Sends each payload as one datagram on the connected socket `fd`;
    /// returns how many the kernel took (a refused one is skipped).
    pub fn send_many(&mut self, fd: RawFd, payloads: &[&[u8]]) -> usize {
        self.iovs.clear();
        self.hdrs.clear();
        for p in payloads {
            self.iovs.push(libc::iovec {
                iov_base: p.as_ptr() as *mut libc::c_void,
                iov_len: p.len(),
            });
        }
        for k in 0..payloads.len() {
            // SAFETY: a zeroed mmsghdr is valid (null name and control).
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_iov = &mut self.iovs[k];
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        self.flush(fd)
    }

    /// Sends `payload` to every address of `to` from the unconnected socket `fd`.
    pub fn send_to_many(&mut self, fd: RawFd, payload: &[u8], to: &[SocketAddrV4]) -> usize {
        self.iovs.clear();
        self.hdrs.clear();
        self.addrs.clear();
        self.iovs.push(libc::iovec {
            iov_base: payload.as_ptr() as *mut libc::c_void,
            iov_len: payload.len(),
        });
        for a in to {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut s: libc::sockaddr_in = unsafe { zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            self.addrs.push(s);
        }
        let iov = self.iovs.as_mut_ptr();
        for k in 0..to.len() {
            // SAFETY: as above.
            let mut h: libc::mmsghdr = unsafe { zeroed() };
            h.msg_hdr.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_in).cast();
            h.msg_hdr.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.hdrs.push(h);
        }
        self.flush(fd)
    }

    fn flush(&mut self, fd: RawFd) -> usize {
        let mut sent = 0;
        let mut i = 0;
        while i < self.hdrs.len() {
            let n = (self.hdrs.len() - i).min(crate::server::BATCH);
            // SAFETY: headers i..i+n point into self's vectors and the
            // caller's payloads, all alive and unmoved for the call.
            let r = unsafe {
                libc::sendmmsg(
                    fd,
                    self.hdrs[i..].as_mut_ptr(),
                    n as u32,
                    libc::MSG_DONTWAIT,
                )
            };
            if r > 0 {
                sent += r as usize;
                i += r as usize;
            } else if r < 0 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            } else {
                i += 1; // this one was refused: skip it
            }
        }
        sent
    }
}

/// A join run that hears nothing at all from the server for this long ends.
const SILENCE: Duration = Duration::from_secs(5);

/// A member's JOIN with no answer is sent again after this long.
const RESEND: Duration = Duration::from_millis(200);

/// `n` and the noun, singular or plural ("1 join", "3 joins").
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// Joins every member (name `m{i}`) of the server at `server` through the
/// cookie round-trip, pipelined `window` at a time per thread over `threads`
/// threads, resending what gets no answer. Returns the tokens in member
/// order; an error after `limit`, when the server refuses (ICMP port
/// unreachable), or when it has not answered at all for 5 s.
pub fn join_all(
    socks: &[Arc<UdpSocket>],
    server: SocketAddr,
    threads: usize,
    limit: Duration,
) -> Result<Vec<Token>, String> {
    let chunk = socks.len().div_ceil(threads.max(1)).max(1);
    let end = Instant::now() + limit;
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

/// The name of member `i`.
pub fn member_name(i: usize) -> String {
    format!("m{i}")
}

fn join_part(
    socks: &[Arc<UdpSocket>],
    base: usize,
    server: SocketAddr,
    end: Instant,
) -> Result<Vec<Token>, String> {
    const WINDOW: usize = 32;
    let n = socks.len();
    let names: Vec<String> = (0..n).map(|k| member_name(base + k)).collect();
    let mut nonces = vec![0u64; n];
    for v in &mut nonces {
        *v = getrandom::u64().map_err(|e| {
            let reason = match e.raw_os_error() {
                Some(n) => os_reason(&io::Error::from_raw_os_error(n)),
                None => e.to_string(),
            };
            format!("cannot get random numbers: {reason}")
        })?;
    }
    let mut cookies: Vec<Option<Cookie>> = vec![None; n];
    let mut tokens = vec![0 as Token; n];
    let mut buf = [0u8; 2048];
    let mut wire = Vec::with_capacity(256);
    let mut next = 0; // members below `next` have been started
    let mut waiting: Vec<(usize, Instant)> = Vec::new(); // (member, when its JOIN was sent)
    let mut heard = Instant::now(); // the last datagram from the server (or the start)
                                    // A connected UDP socket reports the server's ICMP port unreachable as
                                    // ECONNREFUSED on its next send or receive: nobody is listening there.
    let refused = |e: &io::Error| {
        (e.kind() == io::ErrorKind::ConnectionRefused)
            .then(|| format!("cannot join chat server at {server}: {}", os_reason(e)))
    };
    let send = |k: usize, cookie: Option<Cookie>, wire: &mut Vec<u8>| -> Result<(), String> {
        wire.clear();
        ClientMsg::Join {
            nonce: nonces[k],
            prev_token: 0,
            cookie: cookie.unwrap_or([0; 16]),
            name: &names[k],
        }
        .encode(wire);
        match socks[k].send(wire) {
            Err(e) => refused(&e).map_or(Ok(()), Err), // anything else: sent again later
            Ok(_) => Ok(()),
        }
    };
    while next < n || !waiting.is_empty() {
        let now = Instant::now();
        if now > end {
            let left = n - tokens.iter().filter(|&&t| t != 0).count();
            return Err(format!(
                "{} did not finish in time",
                count(left, "join", "joins")
            ));
        }
        if now.duration_since(heard) > SILENCE {
            return Err(format!("no answer from chat server at {server}"));
        }
        while waiting.len() < WINDOW && next < n {
            send(next, None, &mut wire)?;
            waiting.push((next, Instant::now()));
            next += 1;
        }
        let mut progressed = false;
        let mut k = 0;
        while k < waiting.len() {
            let (m, sent) = waiting[k];
            let mut done = false;
            loop {
                let len = match socks[m].recv(&mut buf) {
                    Ok(len) => len,
                    Err(e) => match refused(&e) {
                        Some(msg) => return Err(msg),
                        None => break, // would block (or interrupted: next turn)
                    },
                };
                heard = now;
                match decode_server(&buf[..len]) {
                    Ok(ServerMsg::Challenge { nonce, cookie }) if nonce == nonces[m] => {
                        cookies[m] = Some(cookie);
                        send(m, Some(cookie), &mut wire)?;
                        waiting[k].1 = now;
                        progressed = true;
                    }
                    Ok(ServerMsg::Welcome { nonce, token, .. }) if nonce == nonces[m] => {
                        tokens[m] = token;
                        done = true;
                        break;
                    }
                    Ok(ServerMsg::Refused { nonce, reason }) if nonce == nonces[m] => {
                        return Err(format!("{} was refused: {reason}", names[m]));
                    }
                    _ => {} // announcements of the others' joins
                }
            }
            if done {
                waiting.swap_remove(k);
                progressed = true;
            } else {
                if now.duration_since(sent) > RESEND {
                    send(m, cookies[m], &mut wire)?; // lost, or rate limited: again
                    waiting[k].1 = now;
                }
                k += 1;
            }
        }
        if !progressed {
            wait_readable(socks, &waiting);
        }
    }
    Ok(tokens)
}

/// Sleeps until one of the `waiting` members' sockets has a datagram or an
/// error, or the next resend is due (at most `RESEND`).
fn wait_readable(socks: &[Arc<UdpSocket>], waiting: &[(usize, Instant)]) {
    let Some(oldest) = waiting.iter().map(|w| w.1).min() else {
        return;
    };
    let wait = (oldest + RESEND)
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(1), RESEND);
    let mut fds: Vec<PollFd> = waiting
        .iter()
        .map(|&(m, _)| PollFd::new(socks[m].as_fd(), PollFlags::POLLIN))
        .collect();
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    let _ = poll(&mut fds, timeout); // EINTR: the caller's loop looks again
}

/// CPU time of a task from /proc: user and system, in ns.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Cpu {
    pub user_ns: u64,
    pub sys_ns: u64,
    /// Time on CPU from schedstat (ns, exact), when the kernel has it.
    pub run_ns: Option<u64>,
}

impl Cpu {
    /// Total CPU time: schedstat's exact figure, else utime + stime.
    pub fn total_ns(&self) -> u64 {
        self.run_ns.unwrap_or(self.user_ns + self.sys_ns)
    }

    /// Reads `/proc/{path}/stat` and `/proc/{path}/schedstat` (`path` is `PID`
    /// or `self/task/TID`).
    pub fn read(path: &str) -> Option<Cpu> {
        let stat = std::fs::read_to_string(format!("/proc/{path}/stat")).ok()?;
        // Fields after the command (which may hold spaces) in parentheses.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split(' ').collect();
        // SAFETY: sysconf only reads a system constant.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
        let tick = 1_000_000_000 / hz;
        let user: u64 = f.get(11)?.parse().ok()?;
        let sys: u64 = f.get(12)?.parse().ok()?;
        let run_ns = std::fs::read_to_string(format!("/proc/{path}/schedstat"))
            .ok()
            .and_then(|s| s.split(' ').next()?.parse().ok());
        Some(Cpu {
            user_ns: user * tick,
            sys_ns: sys * tick,
            run_ns,
        })
    }

    /// `self - before`, saturating.
    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            user_ns: self.user_ns.saturating_sub(before.user_ns),
            sys_ns: self.sys_ns.saturating_sub(before.sys_ns),
            run_ns: match (self.run_ns, before.run_ns) {
                (Some(a), Some(b)) => Some(a.saturating_sub(b)),
                _ => None,
            },
        }
    }
}

/// The whole machine's CPU time from /proc/stat: (busy, total), in ticks.
pub fn machine_ticks() -> Option<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let v: Vec<u64> = line
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal (guest is inside user)
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4).unwrap_or(&0);
    Some((total - idle, total))
}

/// Ticks per second of /proc/stat.
pub fn clock_ticks() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64
}

/// A process's resident memory (VmRSS), KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_share_a_loopback_address_by_fives() {
        assert_eq!(member_ip(0), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(member_ip(4), Ipv4Addr::new(127, 1, 0, 1));
        assert_eq!(member_ip(5), Ipv4Addr::new(127, 1, 0, 2));
        assert_eq!(member_ip(5 * 300), Ipv4Addr::new(127, 1, 1, 45));
    }

    #[test]
    fn own_cpu_is_readable() {
        let c = Cpu::read("self").expect("/proc/self/stat");
        assert!(c.total_ns() > 0 || c.run_ns.is_some());
        assert!(machine_ticks().is_some());
        assert!(rss_kib(std::process::id()).unwrap() > 0);
    }
}
