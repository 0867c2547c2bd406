//! `HOST:PORT` on the command line: its syntax (a usage error when wrong),
//! the addresses a host name resolves to, and which of them a chat server
//! answers on.

use crate::client::conn::LOGIN_TIMEOUT;
use crate::error::{Error, Result};
use crate::protocol::MAX_DATAGRAM;
use crate::session::ClientHandshake;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, ToSocketAddrs, UdpSocket};
use std::os::fd::AsFd;
use std::time::{Duration, Instant};

/// Checks the syntax of `HOST:PORT` (`[v6]:PORT` for an IPv6 literal);
/// returns the host and the port. The error says what is wrong, for clap.
fn split_host_port(text: &str) -> std::result::Result<(&str, u16), String> {
    let example = "HOST:PORT, e.g. 127.0.0.1:8888, [::1]:8888 or localhost:8888";
    let (host, port) = match text.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p),
        _ => return Err(format!("expected {example}")),
    };
    let host = match host.strip_prefix('[') {
        Some(h) => h
            .strip_suffix(']')
            .ok_or_else(|| format!("expected {example}"))?,
        // An IPv6 literal without brackets ("::1:8888") is ambiguous.
        None if host.contains(':') => {
            return Err(format!("an IPv6 address needs brackets: {example}"))
        }
        None => host,
    };
    let port = port
        .parse()
        .map_err(|_| format!("'{port}' is not a port (0 to 65535): expected {example}"))?;
    Ok((host, port))
}

/// A clap value parser for `--server HOST:PORT`: the syntax only (the name
/// is resolved when it is used).
pub fn parse_host_port(text: &str) -> std::result::Result<String, String> {
    split_host_port(text).map(|_| text.to_string())
}

/// A clap value parser for an address to bind: a literal `ADDRESS:PORT`, or
/// `localhost:PORT` (the IPv4 loopback address).
pub fn parse_bind_addr(text: &str) -> std::result::Result<SocketAddr, String> {
    let (host, port) = split_host_port(text)?;
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, port)));
    }
    match host.parse::<IpAddr>() {
        Ok(ip) => Ok(SocketAddr::new(ip, port)),
        Err(_) => Err(format!(
            "'{host}' is not an IP address or localhost: expected ADDRESS:PORT, e.g. 127.0.0.1:8888 or [::]:8888"
        )),
    }
}

/// Every address `HOST:PORT` resolves to, in the resolver's order.
fn resolve_all(text: &str) -> Result<Vec<SocketAddr>> {
    let addrs: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| Error::io("resolve", text, e))?
        .collect();
    if addrs.is_empty() {
        return Err(Error::msg("resolve", text, "no address"));
    }
    Ok(addrs)
}

/// The address of `HOST:PORT` to talk to: the only one it resolves to, or
/// else the first of them on which a chat server answers an INIT (all are
/// asked at once, IPv6 and IPv4, each with the login's resends and
/// timeout). An error when none answers.
pub fn find_server(text: &str) -> Result<SocketAddr> {
    let addrs = resolve_all(text)?;
    if addrs.len() == 1 {
        return Ok(addrs[0]);
    }
    first_answering(&addrs).ok_or_else(|| {
        Error::plain(format!(
            "no answer from chat server at {text} (tried {})",
            addrs
                .iter()
                .map(SocketAddr::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))
    })
}

/// One address being asked.
struct Probe {
    addr: SocketAddr,
    sock: UdpSocket,
    hs: ClientHandshake,
    sends: u32,
    next_at: Instant,
}

/// The first resend of a probe comes this long after the first send; the
/// wait doubles up to 2 s, as the login's does.
const PROBE_RESEND: Duration = Duration::from_millis(500);

impl Probe {
    /// Sends the INIT (again); false when the socket refuses.
    fn send(&mut self, now: Instant) -> bool {
        self.next_at = now + PROBE_RESEND * (1 << self.sends.min(2));
        self.sends += 1;
        self.sock.send(&self.hs.init_datagram()).is_ok()
    }
}

/// Sends an INIT without a cookie (the server answers with a COOKIE and
/// keeps nothing) to every address from a socket connected to it; returns
/// the first address a COOKIE for it comes from. An address whose socket
/// fails or is refused (ICMP port unreachable) is given up at once.
fn first_answering(addrs: &[SocketAddr]) -> Option<SocketAddr> {
    let now = Instant::now();
    let deadline = now + LOGIN_TIMEOUT;
    let mut probes: Vec<Probe> = addrs
        .iter()
        .filter_map(|&addr| {
            let local: SocketAddr = match addr {
                SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
                SocketAddr::V6(_) => (std::net::Ipv6Addr::UNSPECIFIED, 0).into(),
            };
            let sock = UdpSocket::bind(local).ok()?;
            sock.connect(addr).ok()?;
            sock.set_nonblocking(true).ok()?;
            let id = getrandom::u64().ok()?.max(1);
            let mut p = Probe {
                addr,
                sock,
                hs: ClientHandshake::new(id),
                sends: 0,
                next_at: now,
            };
            p.send(now).then_some(p)
        })
        .collect();
    let mut buf = vec![0u8; MAX_DATAGRAM + 1];
    while !probes.is_empty() {
        let now = Instant::now();
        let mut k = 0;
        while k < probes.len() {
            let p = &mut probes[k];
            let mut keep = true;
            loop {
                match p.sock.recv(&mut buf) {
                    Ok(n) => {
                        if n <= MAX_DATAGRAM && p.hs.on_cookie(&buf[..n]).is_ok() {
                            return Some(p.addr);
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => {
                        keep = false; // refused: nobody listens there
                        break;
                    }
                }
            }
            if keep && now >= deadline {
                keep = false;
            } else if keep && now >= p.next_at {
                keep = p.send(now);
            }
            if keep {
                k += 1;
            } else {
                probes.swap_remove(k);
            }
        }
        let Some(wake) = probes.iter().map(|p| p.next_at.min(deadline)).min() else {
            break;
        };
        let wait = wake
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1));
        let mut fds: Vec<PollFd> = probes
            .iter()
            .map(|p| PollFd::new(p.sock.as_fd(), PollFlags::POLLIN))
            .collect();
        let _ = poll(
            &mut fds,
            PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX),
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::{cookie_datagram, parse_init};

    #[test]
    fn host_port_syntax() {
        assert_eq!(split_host_port("localhost:80"), Ok(("localhost", 80)));
        assert_eq!(split_host_port("[::1]:8888"), Ok(("::1", 8888)));
        assert_eq!(split_host_port("127.0.0.1:0"), Ok(("127.0.0.1", 0)));
        for bad in ["127.0.0.1", "::1:80", "[::1]", ":80", "host:99999", "host:"] {
            assert!(split_host_port(bad).is_err(), "{bad}");
        }
        assert_eq!(
            parse_bind_addr("localhost:9"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 9)))
        );
        assert_eq!(parse_bind_addr("[::]:9"), Ok("[::]:9".parse().unwrap()));
        assert!(parse_bind_addr("example.org:9").is_err());
    }

    /// A server on ::1 is found behind a closed IPv4 port and a silent one.
    #[test]
    fn every_address_is_asked_until_one_answers() {
        let Ok(server) = UdpSocket::bind("[::1]:0") else {
            panic!("this test needs IPv6 loopback (::1)");
        };
        let live = server.local_addr().unwrap();
        let answer = std::thread::spawn(move || {
            server
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap();
            let mut buf = [0u8; 2048];
            let (n, from) = server.recv_from(&mut buf).expect("an INIT");
            let init = parse_init(&buf[..n]).expect("an INIT");
            server
                .send_to(&cookie_datagram(init.id_c, &[1; 16]), from)
                .unwrap();
        });
        let silent = UdpSocket::bind("127.0.0.1:0").unwrap();
        let closed = UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let addrs = [closed, silent.local_addr().unwrap(), live];
        assert_eq!(first_answering(&addrs), Some(live));
        answer.join().unwrap();
        assert_eq!(first_answering(&[closed]), None);
    }
}
