//! The datagram plumbing that the server and `chat-load` share: the server's
//! socket, and batched receive and send (`recvmmsg`/`sendmmsg`) that carry
//! each datagram's local address (IP_PKTINFO / IPV6_PKTINFO), so that with a
//! wildcard bind every reply leaves from the address its request arrived on.
//!
//! Both calls are nix's safe `recvmmsg`/`sendmmsg`, and addresses are
//! converted by nix's `SockaddrStorage`: this module has no `unsafe`. The raw
//! libc calls were measured against them with `cargo bench --bench fanout`
//! (its two `sockets:` rows, over loopback) and were not faster: median ns
//! per datagram, two alternating runs each on a loaded 2-core sandbox,
//! batch of 64 safe 11626 / 10103 vs raw 11140 / 21108, one datagram per
//! call safe 22798 / 17872 vs raw 13231 / 35855. The system call dominates;
//! the wrappers' work is lost in its noise.

mod recv;
mod resolve;
mod send;

pub use recv::BatchReceiver;
pub use resolve::{find_server, parse_bind_addr, parse_host_port};
pub use send::{BatchSender, Outgoing, SendCount};

use crate::error::{Error, Result};
use crate::room::Local;
use mtu::{Ipv4MtuDiscover, Ipv6MtuDiscover};
use nix::libc;
use nix::sys::socket::{setsockopt, sockopt, SockaddrStorage};
use std::net::{SocketAddr, UdpSocket};

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Socket buffer size we ask for (the kernel may cap it at `rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;

/// The socket options nix has no type for (the macro declares public types:
/// they stay in this private module).
mod mtu {
    use nix::libc;
    // The macro calls itself and its helper unqualified: both must be in scope by name.
    use nix::{setsockopt_impl, sockopt_impl};

    sockopt_impl!(
        /// IP_MTU_DISCOVER: path MTU discovery for IPv4 datagrams.
        Ipv4MtuDiscover,
        SetOnly,
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::c_int
    );
    sockopt_impl!(
        /// IPV6_MTU_DISCOVER: path MTU discovery for IPv6 datagrams.
        Ipv6MtuDiscover,
        SetOnly,
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::c_int
    );
}

/// Binds a server socket: no SO_REUSEADDR/SO_REUSEPORT (a port in use is an
/// error, so no second server can steal it), non-blocking, big buffers, and
/// local-address reporting when bound to a wildcard address.
pub fn bind_server_socket(addr: SocketAddr) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(addr).map_err(|e| Error::io("bind", addr, e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io("configure socket", addr, e))?;
    // Best effort: an unprivileged process gets at most the system's maximum.
    let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    // Set the don't-fragment bit on every datagram, ignoring the path MTU the
    // kernel may have learnt (IP_PMTUDISC_PROBE, as QUIC stacks do).
    // Datagrams are at most 1200 bytes so that nothing is fragmented anyway;
    // with DF set the kernel also skips choosing a fresh IP ID per datagram
    // from its shared, hashed counters (`__ip_select_ident`: ~10% of the
    // server's CPU in a packed flood to 500 members). Best effort: without it
    // the kernel fragments as before. An IPv6 socket takes both: the IPv4
    // one for mapped (dual-stack) peers.
    let _ = setsockopt(&sock, Ipv4MtuDiscover, &libc::IP_PMTUDISC_PROBE);
    let _ = setsockopt(&sock, Ipv6MtuDiscover, &libc::IPV6_PMTUDISC_PROBE);
    if addr.ip().is_unspecified() {
        let r = match addr {
            SocketAddr::V4(_) => setsockopt(&sock, sockopt::Ipv4PacketInfo, &true),
            // Also reports IPv4 datagrams (as mapped addresses) on a dual-stack socket.
            SocketAddr::V6(_) => setsockopt(&sock, sockopt::Ipv6RecvPacketInfo, &true),
        };
        r.map_err(|e| Error::io("enable packet info on", addr, e.into()))?;
    }
    Ok(sock)
}

/// Lets `sock` make segmented sends (UDP GSO): an entry longer than
/// `segment` bytes is cut by the kernel into datagrams of `segment` bytes
/// (the last may be shorter); shorter ones are sent as they are. False where
/// the kernel has no `UDP_SEGMENT` (before Linux 4.18).
pub fn enable_segments(sock: &UdpSocket, segment: u16) -> bool {
    setsockopt(sock, sockopt::UdpGsoSegment, &(segment as libc::c_int)).is_ok()
}

/// The std address in nix's storage, or None for a family other than IPv4/IPv6.
fn to_socket_addr(ss: &SockaddrStorage) -> Option<SocketAddr> {
    if let Some(a) = ss.as_sockaddr_in() {
        return Some(SocketAddr::V4((*a).into()));
    }
    let a = std::net::SocketAddrV6::from(*ss.as_sockaddr_in6()?);
    // Flow labels are not part of who a peer is: leave them out.
    Some(SocketAddr::V6(std::net::SocketAddrV6::new(
        *a.ip(),
        a.port(),
        0,
        a.scope_id(),
    )))
}

/// The kind of control message that chooses a datagram's source address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SourceKind {
    /// None: the kernel chooses.
    Kernel,
    V4,
    V6,
}

fn source_kind(local: Option<&Local>) -> SourceKind {
    match local.map(|l| l.ip) {
        None => SourceKind::Kernel,
        Some(std::net::IpAddr::V4(_)) => SourceKind::V4,
        Some(std::net::IpAddr::V6(_)) => SourceKind::V6,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MAX_DATAGRAM;
    use std::io;
    use std::time::{Duration, Instant};

    /// Receives `want` datagrams (bounded by 5 s); returns (peer, bytes) of each.
    fn receive(rx: &mut BatchReceiver, sock: &UdpSocket, want: usize) -> Vec<(Peer, Vec<u8>)> {
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < want && Instant::now() < end {
            match rx.recv(sock) {
                Ok(n) => {
                    for k in 0..n {
                        let (peer, data) = rx.get(k).expect("received");
                        got.push((peer, data.to_vec()));
                    }
                    assert!(rx.get(n).is_none());
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        got
    }

    use crate::room::Peer;

    /// A segmented send arrives as its datagrams; one the kernel cannot make
    /// (more segments than it takes) goes datagram by datagram, counted.
    #[test]
    fn a_segmented_send_arrives_as_its_datagrams_or_goes_one_by_one() {
        let server = bind_server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        assert!(enable_segments(&server, 100), "UDP_SEGMENT (Linux 4.18)");
        let client = bind_server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = client.local_addr().unwrap();
        let mut rx = BatchReceiver::new();
        // 5 segments of 100 bytes, the last 50.
        let five: Vec<u8> = (0..450).map(|i| (i / 100) as u8).collect();
        // 300 segments: more than the kernel cuts one send into (64 or 128).
        let many: Vec<u8> = (0..30_000).map(|i| (i / 100) as u8).collect();
        let mut tx = BatchSender::new();
        for (bytes, want_segmented, want_unsegmented) in [(&five, 1, 0), (&many, 0, 1)] {
            let n = tx.send(
                &server,
                [Outgoing {
                    to: Some(to),
                    from: None,
                    pieces: [&bytes[..]],
                    segment: Some(100),
                }],
            );
            let count = bytes.len().div_ceil(100);
            assert_eq!(
                n,
                SendCount {
                    sent: count as u64,
                    dropped: 0,
                    segmented: want_segmented,
                    unsegmented: want_unsegmented,
                }
            );
            let got = receive(&mut rx, &client, count);
            let want: Vec<&[u8]> = bytes.chunks(100).collect();
            let got: Vec<&[u8]> = got.iter().map(|(_, d)| &d[..]).collect();
            assert_eq!(got, want);
        }
    }

    /// A refused datagram is dropped and counted; the batch goes on after it.
    #[test]
    fn a_failed_datagram_is_skipped_not_fatal() {
        let server = bind_server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        // An IPv6 destination cannot be reached from this IPv4 socket.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        let reply: &[u8] = b"reply";
        let n = BatchSender::new().send(
            &server,
            [a.local_addr().unwrap(), v6, b.local_addr().unwrap()]
                .into_iter()
                .map(|to| Outgoing {
                    to: Some(to),
                    from: None,
                    pieces: [&reply[..2], &reply[2..]],
                    segment: None,
                }),
        );
        assert_eq!(
            n,
            SendCount {
                sent: 2,
                dropped: 1,
                ..SendCount::default()
            }
        );
        let mut buf = [0u8; 64];
        for s in [&a, &b] {
            let (len, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.local_addr().unwrap());
            assert_eq!(&buf[..len], reply, "gathered from its pieces");
        }
    }

    /// recvmmsg reports each datagram with its source; an oversized one comes
    /// back one byte over the limit, so it decodes as too long.
    #[test]
    fn receive_batches_and_oversized_datagrams() {
        let server = bind_server_socket("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = server.local_addr().unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"one", to).unwrap();
        c.send_to(&[7u8; 3000], to).unwrap();
        c.send_to(b"three", to).unwrap();
        let got = receive(&mut BatchReceiver::new(), &server, 3);
        assert_eq!(got.len(), 3);
        for (peer, _) in &got {
            assert_eq!(peer.addr, c.local_addr().unwrap());
            assert_eq!(peer.local, None, "no packet info on a specific bind");
        }
        assert_eq!(got[0].1, b"one");
        assert_eq!(got[1].1.len(), MAX_DATAGRAM + 1);
        assert_eq!(got[2].1, b"three");
    }

    /// On a wildcard bind every datagram, in every batch, reports the local
    /// address it arrived on, and a reply sent from it leaves from there.
    #[test]
    fn a_wildcard_bind_answers_from_the_address_written_to() {
        let server = bind_server_socket("0.0.0.0:0".parse().unwrap()).unwrap();
        let port = server.local_addr().unwrap().port();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut rx = BatchReceiver::new();
        for (round, dst) in [[127, 0, 0, 1], [127, 0, 0, 2], [127, 0, 0, 3]]
            .into_iter()
            .enumerate()
        {
            let dst = SocketAddr::from((dst, port));
            c.send_to(&[round as u8], dst).unwrap();
            let got = receive(&mut rx, &server, 1);
            assert_eq!(got.len(), 1, "round {round}");
            let (peer, data) = &got[0];
            assert_eq!(data, &[round as u8]);
            let local = peer.local.expect("packet info in every batch");
            assert_eq!(local.ip, dst.ip());
            let n = BatchSender::new().send(
                &server,
                [Outgoing {
                    to: Some(peer.addr),
                    from: peer.local,
                    pieces: [&b"ok"[..]],
                    segment: None,
                }],
            );
            assert_eq!(n.sent, 1);
            let mut buf = [0u8; 8];
            let (len, from) = c.recv_from(&mut buf).unwrap();
            assert_eq!((&buf[..len], from), (&b"ok"[..], dst));
        }
    }
}
