//! Batched receive: up to [`BATCH`] datagrams per `recvmmsg`, each with its
//! source and, on a wildcard bind, the local address it arrived on.

use super::{to_socket_addr, BATCH};
use crate::protocol::MAX_DATAGRAM;
use crate::room::{Local, Peer};
use nix::sys::socket::{recvmmsg, ControlMessageOwned, MsgFlags, MultiHeaders, SockaddrStorage};
use std::io::{self, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};

/// Receive buffer: one byte more than the protocol allows, so an oversized
/// datagram shows as longer than the limit instead of being cut silently.
const RECV_BUF: usize = MAX_DATAGRAM + 1;

/// What is kept of one received datagram besides its bytes.
#[derive(Debug, Clone, Copy)]
struct Received {
    peer: Option<Peer>,
    len: usize,
}

/// Preallocated buffers for `recvmmsg`: no allocation per datagram.
pub struct BatchReceiver {
    bufs: Box<[[u8; RECV_BUF]]>,
    got: Vec<Received>,
    /// The headers of the next call. nix keeps the lengths the kernel wrote
    /// back (name and control) in them, so headers that received are
    /// replaced before the next call (nix issue #2506, PR #2813).
    hdrs: Option<MultiHeaders<SockaddrStorage>>,
}

impl Default for BatchReceiver {
    fn default() -> Self {
        Self::new()
    }
}

/// Headers for a batch, with room for one packet-info control message each.
fn headers() -> MultiHeaders<SockaddrStorage> {
    MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(nix::libc::in6_pktinfo)))
}

impl BatchReceiver {
    /// Buffers for one batch.
    pub fn new() -> Self {
        BatchReceiver {
            bufs: vec![[0; RECV_BUF]; BATCH].into_boxed_slice(),
            got: Vec::with_capacity(BATCH),
            hdrs: None,
        }
    }

    /// Receives up to [`BATCH`] datagrams without blocking; returns how many.
    /// `WouldBlock` when there is none.
    pub fn recv(&mut self, fd: impl AsFd) -> io::Result<usize> {
        self.got.clear();
        let hdrs = self.hdrs.get_or_insert_with(headers);
        let mut iovs: Vec<[IoSliceMut<'_>; 1]> = self
            .bufs
            .iter_mut()
            .map(|b| [IoSliceMut::new(&mut b[..])])
            .collect();
        let results = recvmmsg(
            fd.as_fd().as_raw_fd(),
            hdrs,
            iovs.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        )?;
        for m in results {
            let local = m.cmsgs().ok().and_then(|mut c| c.find_map(local_of));
            let len = if m.flags.contains(MsgFlags::MSG_TRUNC) {
                RECV_BUF
            } else {
                m.bytes.min(RECV_BUF)
            };
            let peer = m
                .address
                .as_ref()
                .and_then(to_socket_addr)
                .map(|addr| Peer { addr, local });
            self.got.push(Received { peer, len });
        }
        if !self.got.is_empty() {
            self.hdrs = None; // see the field's doc
        }
        Ok(self.got.len())
    }

    /// Datagram `k` of the last batch: who sent it and its bytes (an oversized
    /// datagram has `MAX_DATAGRAM + 1` bytes, so it decodes as too long).
    pub fn get(&self, k: usize) -> Option<(Peer, &[u8])> {
        let r = self.got.get(k)?;
        Some((r.peer?, &self.bufs[k][..r.len]))
    }
}

/// The local address a packet-info control message reports.
fn local_of(c: ControlMessageOwned) -> Option<Local> {
    match c {
        // The local address to answer from: for a unicast datagram the
        // address the client wrote to; for a broadcast, the interface's.
        ControlMessageOwned::Ipv4PacketInfo(p) => Some(Local {
            ip: IpAddr::V4(Ipv4Addr::from(u32::from_be(p.ipi_spec_dst.s_addr))),
            ifindex: 0,
        }),
        // Sent to a multicast group: let the kernel pick a source.
        ControlMessageOwned::Ipv6PacketInfo(p) if p.ipi6_addr.s6_addr[0] == 0xff => None,
        ControlMessageOwned::Ipv6PacketInfo(p) => Some(Local {
            ip: IpAddr::V6(Ipv6Addr::from(p.ipi6_addr.s6_addr)),
            ifindex: p.ipi6_ifindex,
        }),
        _ => None,
    }
}
