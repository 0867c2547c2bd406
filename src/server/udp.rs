//! The socket side of the server: binding, and batched receive and send
//! (`recvmmsg`/`sendmmsg`) with the local address of each datagram
//! (IP_PKTINFO / IPV6_PKTINFO), so that with a wildcard bind every reply
//! leaves from the address its request arrived on.
//!
//! nix's `sendmmsg` shares one set of control messages across a batch, and we
//! need one per datagram, so this module calls libc directly; all the `unsafe`
//! of the server is here.

use crate::error::{Error, Result};
use crate::protocol::MAX_DATAGRAM;
use crate::room::{Local, Outbox, Peer};
use nix::libc;
use nix::sys::socket::{setsockopt, sockopt};
use std::io;
use std::mem::{size_of, zeroed};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::RawFd;

/// Datagrams per `recvmmsg`/`sendmmsg` call.
pub const BATCH: usize = 64;
/// Socket buffer size we ask for (the kernel may cap it at `rmem_max`/`wmem_max`).
const SOCKET_BUFFER: usize = 4 << 20;
/// Receive buffer: one byte more than the protocol allows, so an oversized
/// datagram shows as longer than the limit instead of being cut silently.
const RECV_BUF: usize = MAX_DATAGRAM + 1;
/// Room for control messages of one datagram, in u64s (aligned for cmsghdr).
const CMSG_WORDS: usize = 16;

/// Binds the server's socket: no SO_REUSEADDR/SO_REUSEPORT (a port in use is
/// an error, so no second server can steal it), non-blocking, big buffers, and
/// local-address reporting when bound to a wildcard address.
pub fn bind(addr: SocketAddr) -> Result<UdpSocket> {
    let sock = UdpSocket::bind(addr).map_err(|e| Error::io("bind", addr, e))?;
    sock.set_nonblocking(true)
        .map_err(|e| Error::io("configure socket", addr, e))?;
    // Best effort: an unprivileged process gets at most the system's maximum.
    let _ = setsockopt(&sock, sockopt::RcvBuf, &SOCKET_BUFFER);
    let _ = setsockopt(&sock, sockopt::SndBuf, &SOCKET_BUFFER);
    dont_fragment(&sock);
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

/// Sets the don't-fragment bit on every datagram, ignoring the path MTU the
/// kernel may have learnt (IP_PMTUDISC_PROBE, as QUIC stacks do). Datagrams
/// are at most 1200 bytes so that nothing is fragmented anyway; with DF set
/// the kernel also skips choosing a fresh IP ID per datagram from its shared,
/// hashed counters (`__ip_select_ident`: ~10% of the server's CPU in a packed
/// flood to 500 members). Best effort: without it the kernel fragments as before.
fn dont_fragment(sock: &UdpSocket) {
    use std::os::fd::AsRawFd;
    let set = |level, name, value: libc::c_int| {
        // SAFETY: a valid socket and a pointer to a live c_int of the size given.
        unsafe {
            libc::setsockopt(
                sock.as_raw_fd(),
                level,
                name,
                (&value as *const libc::c_int).cast(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        }
    };
    // An IPv6 socket takes both: the IPv4 one for mapped (dual-stack) peers.
    set(
        libc::IPPROTO_IP,
        libc::IP_MTU_DISCOVER,
        libc::IP_PMTUDISC_PROBE,
    );
    set(
        libc::IPPROTO_IPV6,
        libc::IPV6_MTU_DISCOVER,
        libc::IPV6_PMTUDISC_PROBE,
    );
}

fn to_socket_addr(ss: &libc::sockaddr_storage) -> Option<SocketAddr> {
    match ss.ss_family as i32 {
        libc::AF_INET => {
            // SAFETY: the family says this storage holds a sockaddr_in.
            let a: libc::sockaddr_in = unsafe { std::ptr::read(ss as *const _ as *const _) };
            let ip = Ipv4Addr::from(u32::from_be(a.sin_addr.s_addr));
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip,
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 => {
            // SAFETY: the family says this storage holds a sockaddr_in6.
            let a: libc::sockaddr_in6 = unsafe { std::ptr::read(ss as *const _ as *const _) };
            let ip = Ipv6Addr::from(a.sin6_addr.s6_addr);
            // Flow labels are not part of who a peer is: leave them out.
            Some(SocketAddr::V6(SocketAddrV6::new(
                ip,
                u16::from_be(a.sin6_port),
                0,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

fn from_socket_addr(addr: &SocketAddr, ss: &mut libc::sockaddr_storage) -> libc::socklen_t {
    match addr {
        SocketAddr::V4(a) => {
            // SAFETY: all-zero is a valid sockaddr_in.
            let mut s: libc::sockaddr_in = unsafe { zeroed() };
            s.sin_family = libc::AF_INET as libc::sa_family_t;
            s.sin_port = a.port().to_be();
            s.sin_addr.s_addr = u32::from(*a.ip()).to_be();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in.
            unsafe { std::ptr::write(ss as *mut _ as *mut libc::sockaddr_in, s) };
            size_of::<libc::sockaddr_in>() as libc::socklen_t
        }
        SocketAddr::V6(a) => {
            // SAFETY: all-zero is a valid sockaddr_in6.
            let mut s: libc::sockaddr_in6 = unsafe { zeroed() };
            s.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            s.sin6_port = a.port().to_be();
            s.sin6_addr.s6_addr = a.ip().octets();
            s.sin6_flowinfo = a.flowinfo();
            s.sin6_scope_id = a.scope_id();
            // SAFETY: sockaddr_storage is larger than and aligned for sockaddr_in6.
            unsafe { std::ptr::write(ss as *mut _ as *mut libc::sockaddr_in6, s) };
            size_of::<libc::sockaddr_in6>() as libc::socklen_t
        }
    }
}

/// The local address reported in the control messages of a received datagram.
///
/// # Safety
/// `hdr` must be a msghdr filled by the kernel, its control buffer still alive.
unsafe fn local_of(hdr: &libc::msghdr) -> Option<Local> {
    let mut c = libc::CMSG_FIRSTHDR(hdr);
    while !c.is_null() {
        let data = libc::CMSG_DATA(c);
        match ((*c).cmsg_level, (*c).cmsg_type) {
            (libc::IPPROTO_IP, libc::IP_PKTINFO) => {
                let p: libc::in_pktinfo = std::ptr::read_unaligned(data as *const _);
                // The local address to answer from: for a unicast datagram the
                // address the client wrote to; for a broadcast, the interface's.
                let ip = Ipv4Addr::from(u32::from_be(p.ipi_spec_dst.s_addr));
                return Some(Local {
                    ip: IpAddr::V4(ip),
                    ifindex: 0,
                });
            }
            (libc::IPPROTO_IPV6, libc::IPV6_PKTINFO) => {
                let p: libc::in6_pktinfo = std::ptr::read_unaligned(data as *const _);
                if p.ipi6_addr.s6_addr[0] == 0xff {
                    return None; // sent to a multicast group: let the kernel pick a source
                }
                return Some(Local {
                    ip: IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)),
                    ifindex: p.ipi6_ifindex,
                });
            }
            _ => {}
        }
        c = libc::CMSG_NXTHDR(hdr, c);
    }
    None
}

/// Writes a control message choosing the source address `local` into `hdr`'s
/// control buffer (which must hold `CMSG_WORDS` u64s) and sets its length.
///
/// # Safety
/// `hdr.msg_control` must point to a buffer of `CMSG_WORDS` u64s.
unsafe fn put_local(hdr: &mut libc::msghdr, local: &Local) {
    let (level, kind, len) = match local.ip {
        IpAddr::V4(_) => (
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            size_of::<libc::in_pktinfo>(),
        ),
        IpAddr::V6(_) => (
            libc::IPPROTO_IPV6,
            libc::IPV6_PKTINFO,
            size_of::<libc::in6_pktinfo>(),
        ),
    };
    hdr.msg_controllen = libc::CMSG_SPACE(len as u32) as _;
    debug_assert!(hdr.msg_controllen <= CMSG_WORDS * 8);
    let c = libc::CMSG_FIRSTHDR(hdr);
    (*c).cmsg_level = level;
    (*c).cmsg_type = kind;
    (*c).cmsg_len = libc::CMSG_LEN(len as u32) as _;
    let data = libc::CMSG_DATA(c);
    match local.ip {
        IpAddr::V4(ip) => {
            let mut p: libc::in_pktinfo = zeroed();
            p.ipi_spec_dst.s_addr = u32::from(ip).to_be();
            std::ptr::write_unaligned(data as *mut libc::in_pktinfo, p);
        }
        IpAddr::V6(ip) => {
            let mut p: libc::in6_pktinfo = zeroed();
            p.ipi6_addr.s6_addr = ip.octets();
            p.ipi6_ifindex = local.ifindex;
            std::ptr::write_unaligned(data as *mut libc::in6_pktinfo, p);
        }
    }
}

/// Preallocated state for `recvmmsg`: no allocation per datagram.
pub struct Receiver {
    bufs: Box<[[u8; RECV_BUF]]>,
    addrs: Box<[libc::sockaddr_storage]>,
    cmsgs: Box<[[u64; CMSG_WORDS]]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    count: usize,
}

impl Default for Receiver {
    fn default() -> Self {
        Self::new()
    }
}

impl Receiver {
    pub fn new() -> Self {
        // SAFETY: these C structs are valid when zeroed (null pointers, zero lengths).
        let (addr, iov, hdr) = unsafe { (zeroed(), zeroed(), zeroed()) };
        Receiver {
            bufs: vec![[0; RECV_BUF]; BATCH].into_boxed_slice(),
            addrs: vec![addr; BATCH].into_boxed_slice(),
            cmsgs: vec![[0; CMSG_WORDS]; BATCH].into_boxed_slice(),
            iovs: vec![iov; BATCH].into_boxed_slice(),
            hdrs: vec![hdr; BATCH].into_boxed_slice(),
            count: 0,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many.
    /// `WouldBlock` when there is none.
    pub fn recv(&mut self, fd: RawFd) -> io::Result<usize> {
        self.count = 0;
        for k in 0..BATCH {
            self.iovs[k] = libc::iovec {
                iov_base: self.bufs[k].as_mut_ptr().cast(),
                iov_len: RECV_BUF,
            };
            let h = &mut self.hdrs[k].msg_hdr;
            h.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[k];
            h.msg_iovlen = 1;
            h.msg_control = self.cmsgs[k].as_mut_ptr().cast();
            h.msg_controllen = CMSG_WORDS * 8;
            h.msg_flags = 0;
            self.hdrs[k].msg_len = 0;
        }
        // SAFETY: every header points into buffers owned by `self`, alive and
        // not moved during the call; lengths are those of the buffers.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.count = n as usize;
        Ok(self.count)
    }

    /// Datagram `k` of the last batch: who sent it and its bytes (an oversized
    /// datagram has `MAX_DATAGRAM + 1` bytes, so it decodes as too long).
    pub fn get(&self, k: usize) -> Option<(Peer, &[u8])> {
        if k >= self.count {
            return None;
        }
        let m = &self.hdrs[k];
        let addr = to_socket_addr(&self.addrs[k])?;
        // SAFETY: the kernel filled this header in the last recvmmsg; its
        // control buffer belongs to `self`.
        let local = unsafe { local_of(&m.msg_hdr) };
        let mut len = (m.msg_len as usize).min(RECV_BUF);
        if m.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
            len = RECV_BUF;
        }
        Some((Peer { addr, local }, &self.bufs[k][..len]))
    }
}

/// Preallocated state for `sendmmsg`: datagrams are gathered from the
/// outbox's slices (iovecs), no body is copied.
#[derive(Default)]
pub struct Sender {
    hdrs: Vec<libc::mmsghdr>,
    addrs: Vec<libc::sockaddr_storage>,
    cmsgs: Vec<[u64; CMSG_WORDS]>,
    iovs: Vec<libc::iovec>,
    /// (first iovec, count) of each datagram in the batch.
    spans: Vec<(usize, usize)>,
}

/// What one [`Sender::send`] did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendCount {
    pub sent: u64,
    pub dropped: u64,
}

impl Sender {
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends every datagram of `out`, in batches. A datagram the kernel
    /// refuses (a full send buffer, an unreachable network) is dropped and
    /// counted; sending goes on with the next one. Never blocks.
    pub fn send(&mut self, fd: RawFd, out: &Outbox) -> SendCount {
        let mut count = SendCount::default();
        for chunk in out.transmits().chunks(BATCH) {
            self.hdrs.clear();
            self.iovs.clear();
            self.spans.clear();
            // SAFETY: these C structs are valid when zeroed.
            let (addr, hdr) = unsafe { (zeroed(), zeroed()) };
            self.addrs.resize(chunk.len(), addr);
            self.cmsgs.resize(chunk.len(), [0; CMSG_WORDS]);
            for (k, t) in chunk.iter().enumerate() {
                let first = self.iovs.len();
                self.iovs.extend(out.slices(t).map(|s| libc::iovec {
                    iov_base: s.as_ptr() as *mut libc::c_void,
                    iov_len: s.len(),
                }));
                self.spans.push((first, self.iovs.len() - first));
                let mut h: libc::mmsghdr = hdr;
                h.msg_hdr.msg_namelen = from_socket_addr(&t.peer.addr, &mut self.addrs[k]);
                self.hdrs.push(h);
            }
            // The vectors no longer grow: pointers into them stay valid.
            for (k, t) in chunk.iter().enumerate() {
                let (first, n) = self.spans[k];
                let h = &mut self.hdrs[k].msg_hdr;
                h.msg_name = (&mut self.addrs[k] as *mut libc::sockaddr_storage).cast();
                h.msg_iov = self.iovs[first..].as_mut_ptr();
                h.msg_iovlen = n;
                if let Some(local) = &t.peer.local {
                    h.msg_control = self.cmsgs[k].as_mut_ptr().cast();
                    // SAFETY: msg_control points to CMSG_WORDS u64s owned by self.
                    unsafe { put_local(h, local) };
                }
            }
            let mut i = 0;
            while i < self.hdrs.len() {
                // SAFETY: headers i.. point into self's vectors and `out`'s
                // arenas, all alive and unmoved for the call.
                let n = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.hdrs[i..].as_mut_ptr(),
                        (self.hdrs.len() - i) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n > 0 {
                    count.sent += n as u64;
                    i += n as usize;
                } else if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted
                {
                    // Datagram i failed (EAGAIN: send buffer full; ENOBUFS,
                    // EPERM, ENETUNREACH, …): drop it, go on with the next.
                    count.dropped += 1;
                    i += 1;
                }
            }
        }
        count
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_server, ClientMsg, ServerMsg};
    use crate::room::{Config, Room};
    use std::os::fd::AsRawFd;
    use std::time::{Duration, Instant};

    /// A refused datagram is dropped and counted; the batch goes on after it.
    #[test]
    fn a_failed_datagram_is_skipped_not_fatal() {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        for s in [&a, &b] {
            s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        }
        let mut room = Room::new(Config::default(), [1; 16], Box::new(|| 7), Instant::now());
        let join = ClientMsg::Join {
            nonce: 3,
            prev_token: 0,
            cookie: [0; 16],
            name: "bad name",
        }
        .to_vec();
        // An IPv6 destination cannot be reached from this IPv4 socket.
        let v6: SocketAddr = "[::1]:9".parse().unwrap();
        for to in [a.local_addr().unwrap(), v6, b.local_addr().unwrap()] {
            room.handle(Instant::now(), 0, to.into(), &join);
        }
        let out = room.flush();
        assert_eq!(out.transmits().len(), 3);
        let n = Sender::new().send(server.as_raw_fd(), out);
        assert_eq!(
            n,
            SendCount {
                sent: 2,
                dropped: 1
            }
        );
        let mut buf = [0u8; 64];
        for s in [&a, &b] {
            let (len, from) = s.recv_from(&mut buf).unwrap();
            assert_eq!(from, server.local_addr().unwrap());
            assert!(matches!(
                decode_server(&buf[..len]),
                Ok(ServerMsg::Refused { nonce: 3, .. })
            ));
        }
    }

    /// recvmmsg reports each datagram with its source; an oversized one comes
    /// back one byte over the limit, so it decodes as too long.
    #[test]
    fn receive_batches_and_oversized_datagrams() {
        let server = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let to = server.local_addr().unwrap();
        let c = UdpSocket::bind("127.0.0.1:0").unwrap();
        c.send_to(b"one", to).unwrap();
        c.send_to(&[7u8; 3000], to).unwrap();
        c.send_to(b"three", to).unwrap();
        let mut rx = Receiver::new();
        let mut got = Vec::new();
        let end = Instant::now() + Duration::from_secs(5);
        while got.len() < 3 && Instant::now() < end {
            match rx.recv(server.as_raw_fd()) {
                Ok(n) => {
                    for k in 0..n {
                        let (peer, data) = rx.get(k).unwrap();
                        assert_eq!(peer.addr, c.local_addr().unwrap());
                        assert_eq!(peer.local, None, "no packet info on a specific bind");
                        got.push(data.to_vec());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(got[0], b"one");
        assert_eq!(got[1].len(), MAX_DATAGRAM + 1);
        assert_eq!(got[2], b"three");
        assert!(rx.get(3).is_none());
    }
}
