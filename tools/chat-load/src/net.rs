//! The load tool's plumbing: member sockets on loopback, and CPU and memory
//! counters read from /proc.

use nix::sys::socket::{setsockopt, sockopt};
use nix::time::{clock_gettime, ClockId};
use nix::unistd::{sysconf, SysconfVar};
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};

/// Members per loopback source address: the server answers a non-member IP at
/// most 20 times a second (burst 40), and each join takes two answers.
const PER_IP: usize = 5;

/// The loopback address member `i` sends from (127.1.0.1, 127.1.0.2, … by fives).
pub fn member_ip(i: usize) -> Ipv4Addr {
    let g = (i / PER_IP + 1) as u32;
    Ipv4Addr::new(127, 1 + (g >> 16) as u8, (g >> 8) as u8, g as u8)
}

/// The loopback address member `i` of a server at `server` sends from: one
/// of 127.1.0.0/16 for an IPv4 server, ::1 (all members) for an IPv6 one.
pub fn member_addr(i: usize, server: &SocketAddr) -> IpAddr {
    match server {
        SocketAddr::V4(_) => IpAddr::V4(member_ip(i)),
        SocketAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
    }
}

/// A member's socket: bound on its own loopback address, a large receive
/// buffer (the kernel caps it at rmem_max), connected to `peer` so that it
/// receives from nothing else and sends without an address lookup.
pub fn member_socket(i: usize, rcvbuf: usize, peer: SocketAddr) -> io::Result<UdpSocket> {
    let s = UdpSocket::bind((member_addr(i, &peer), 0))?;
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
    let _ = nix::sys::prctl::set_timerslack(1000); // best effort
}

/// CPU time of the calling thread, ns.
pub fn thread_cpu_ns() -> u64 {
    clock_gettime(ClockId::CLOCK_THREAD_CPUTIME_ID).map_or(0, |ts| {
        ts.tv_sec() as u64 * 1_000_000_000 + ts.tv_nsec() as u64
    })
}

/// The calling thread's id (for its /proc/self/task entry).
pub fn gettid() -> i32 {
    nix::unistd::gettid().as_raw()
}

/// `n` and the noun, singular or plural ("1 join", "3 joins").
pub fn count(n: usize, singular: &str, plural: &str) -> String {
    format!("{n} {}", if n == 1 { singular } else { plural })
}

/// The name of member `i`.
pub fn member_name(i: usize) -> String {
    format!("m{i}")
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
        let tick = (1e9 / clock_ticks()) as u64;
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
    match sysconf(SysconfVar::CLK_TCK) {
        Ok(Some(hz)) if hz > 0 => hz as f64,
        _ => 100.0, // USER_HZ on every Linux architecture
    }
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
