//! Batched send: up to [`BATCH`] datagrams per `sendmmsg`, each gathered from
//! several byte slices (no body is copied), each to its own address and, when
//! asked, from a chosen local address. An entry may be a segmented send
//! (UDP GSO, on a socket where [`super::enable_segments`] worked): several
//! datagrams laid end to end that the kernel cuts at the segment size.

use super::{source_kind, SourceKind, BATCH};
use crate::room::Local;
use nix::errno::Errno;
use nix::libc;
use nix::sys::socket::{
    sendmmsg, sendmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage,
};
use std::io::IoSlice;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsFd, AsRawFd};

/// What one [`BatchSender`] call did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SendCount {
    /// Datagrams the kernel took.
    pub sent: u64,
    /// Datagrams it refused (a full send buffer, an unreachable network).
    pub dropped: u64,
    /// Segmented sends the kernel took (their datagrams count in `sent`).
    pub segmented: u64,
    /// Segmented sends the kernel refused as such (EIO: the route's device
    /// cannot checksum them; EINVAL): their datagrams were sent one by one,
    /// and the caller should stop segmenting.
    pub unsegmented: u64,
}

/// One datagram to send: where to, from which local address (None: the
/// kernel chooses), and its bytes in pieces.
pub struct Outgoing<'d, P: IntoIterator<Item = &'d [u8]>> {
    /// The destination; None on a connected socket.
    pub to: Option<SocketAddr>,
    /// The local address to send from.
    pub from: Option<Local>,
    /// The bytes, in order.
    pub pieces: P,
    /// A segmented send: datagrams of this many bytes laid end to end (the
    /// last may be shorter), the socket's `UDP_SEGMENT` size. None: one datagram.
    pub segment: Option<u16>,
}

/// Reusable state for `sendmmsg`.
pub struct BatchSender {
    /// Kept empty between calls: only its allocation is reused.
    iovs: Vec<IoSlice<'static>>,
    /// Kept empty between calls: only its allocation is reused.
    datagrams: Vec<&'static [IoSlice<'static>]>,
    spans: Vec<(usize, usize)>,
    addrs: Vec<Option<SockaddrStorage>>,
    sources: Vec<Option<Local>>,
    segments: Vec<Option<u16>>,
    /// Headers without control messages, and with room for one IPv4 or IPv6 packet-info message.
    plain: MultiHeaders<SockaddrStorage>,
    v4: MultiHeaders<SockaddrStorage>,
    v6: MultiHeaders<SockaddrStorage>,
}

impl Default for BatchSender {
    fn default() -> Self {
        Self::new()
    }
}

/// An empty vector of another type with the allocation of `v` (reused in
/// place when the two have the same layout, as here).
fn recycle<T, U>(mut v: Vec<T>) -> Vec<U> {
    v.clear();
    v.into_iter()
        .map(|_| unreachable!("the vector is empty"))
        .collect()
}

impl BatchSender {
    /// Empty buffers.
    pub fn new() -> Self {
        BatchSender {
            iovs: Vec::new(),
            datagrams: Vec::new(),
            spans: Vec::with_capacity(BATCH),
            addrs: Vec::with_capacity(BATCH),
            sources: Vec::with_capacity(BATCH),
            segments: Vec::with_capacity(BATCH),
            plain: MultiHeaders::preallocate(BATCH, None),
            v4: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in_pktinfo))),
            v6: MultiHeaders::preallocate(BATCH, Some(nix::cmsg_space!(libc::in6_pktinfo))),
        }
    }

    /// Sends every datagram, in batches. A datagram the kernel refuses (a
    /// full send buffer, an unreachable network) is dropped and counted;
    /// sending goes on with the next one. Never blocks.
    pub fn send<'d, P>(
        &mut self,
        fd: impl AsFd,
        datagrams: impl IntoIterator<Item = Outgoing<'d, P>>,
    ) -> SendCount
    where
        P: IntoIterator<Item = &'d [u8]>,
    {
        let fd = fd.as_fd().as_raw_fd();
        let mut count = SendCount::default();
        let mut iovs: Vec<IoSlice<'d>> = recycle(std::mem::take(&mut self.iovs));
        let mut it = datagrams.into_iter();
        loop {
            let mut batch: Vec<&[IoSlice<'d>]> = recycle(std::mem::take(&mut self.datagrams));
            iovs.clear();
            self.spans.clear();
            self.addrs.clear();
            self.sources.clear();
            self.segments.clear();
            for d in it.by_ref().take(BATCH) {
                let first = iovs.len();
                iovs.extend(d.pieces.into_iter().map(IoSlice::new));
                self.spans.push((first, iovs.len()));
                self.addrs.push(d.to.map(SockaddrStorage::from));
                self.sources.push(d.from);
                self.segments.push(d.segment);
            }
            if self.spans.is_empty() {
                self.datagrams = recycle(batch);
                break;
            }
            batch.extend(self.spans.iter().map(|&(a, b)| &iovs[a..b]));
            // nix shares one set of control messages across a call: send
            // each run of datagrams with the same source separately.
            let mut start = 0;
            while start < batch.len() {
                let from = self.sources[start];
                let end = (start..batch.len())
                    .find(|&k| self.sources[k] != from)
                    .unwrap_or(batch.len());
                let c = self.send_run(fd, &batch[start..end], start, from);
                count.sent += c.sent;
                count.dropped += c.dropped;
                count.segmented += c.segmented;
                count.unsegmented += c.unsegmented;
                start = end;
            }
            self.datagrams = recycle(batch);
        }
        self.iovs = recycle(iovs);
        count
    }

    /// Sends `run` (datagrams `first..` of the batch, all from `from`).
    fn send_run(
        &mut self,
        fd: std::os::fd::RawFd,
        run: &[&[IoSlice<'_>]],
        first: usize,
        from: Option<Local>,
    ) -> SendCount {
        let v4;
        let v6;
        let one: [ControlMessage<'_>; 1];
        let cmsg: &[ControlMessage<'_>] = match from {
            None => &[],
            Some(Local {
                ip: IpAddr::V4(ip), ..
            }) => {
                v4 = libc::in_pktinfo {
                    ipi_ifindex: 0,
                    ipi_spec_dst: libc::in_addr {
                        s_addr: u32::from(ip).to_be(),
                    },
                    ipi_addr: libc::in_addr { s_addr: 0 },
                };
                one = [ControlMessage::Ipv4PacketInfo(&v4)];
                &one
            }
            Some(Local {
                ip: IpAddr::V6(ip),
                ifindex,
            }) => {
                v6 = libc::in6_pktinfo {
                    ipi6_addr: libc::in6_addr {
                        s6_addr: ip.octets(),
                    },
                    ipi6_ifindex: ifindex,
                };
                one = [ControlMessage::Ipv6PacketInfo(&v6)];
                &one
            }
        };
        let hdrs = match source_kind(from.as_ref()) {
            SourceKind::Kernel => &mut self.plain,
            SourceKind::V4 => &mut self.v4,
            SourceKind::V6 => &mut self.v6,
        };
        let addrs = &self.addrs[first..first + run.len()];
        let segments = &self.segments[first..first + run.len()];
        let mut count = SendCount::default();
        let mut i = 0;
        while i < run.len() {
            match sendmmsg(
                fd,
                hdrs,
                &run[i..],
                &addrs[i..],
                cmsg,
                MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(r) => {
                    let n = r.count();
                    if n == 0 {
                        count.dropped += datagrams_in(run[i], segments[i]);
                        i += 1;
                    } else {
                        for k in i..i + n {
                            count.sent += datagrams_in(run[k], segments[k]);
                            count.segmented += u64::from(segments[k].is_some());
                        }
                        i += n;
                    }
                }
                Err(Errno::EINTR) => {}
                // A segmented send the kernel cannot make: its datagrams one by one.
                Err(Errno::EIO | Errno::EINVAL) if segments[i].is_some() => {
                    let c = send_one_by_one(fd, run[i], segments[i], addrs[i].as_ref(), cmsg);
                    count.sent += c.sent;
                    count.dropped += c.dropped;
                    count.unsegmented += 1;
                    i += 1;
                }
                // Datagram i failed (EAGAIN: send buffer full; ENOBUFS,
                // EPERM, ENETUNREACH, …): drop it, go on with the next.
                Err(_) => {
                    count.dropped += datagrams_in(run[i], segments[i]);
                    i += 1;
                }
            }
        }
        count
    }
}

/// How many datagrams `pieces` make when cut at `segment` bytes.
fn datagrams_in(pieces: &[IoSlice<'_>], segment: Option<u16>) -> u64 {
    match segment {
        Some(seg) if seg > 0 => {
            let len: usize = pieces.iter().map(|p| p.len()).sum();
            len.div_ceil(seg as usize).max(1) as u64
        }
        _ => 1,
    }
}

/// Sends the datagrams of a segmented send one `sendmsg` each (a datagram
/// of at most the segment size is never segmented).
fn send_one_by_one(
    fd: std::os::fd::RawFd,
    pieces: &[IoSlice<'_>],
    segment: Option<u16>,
    to: Option<&SockaddrStorage>,
    cmsg: &[ControlMessage<'_>],
) -> SendCount {
    let bytes: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
    let seg = segment.map_or(bytes.len(), |s| s as usize).max(1);
    let mut count = SendCount::default();
    for d in bytes.chunks(seg) {
        let iov = [IoSlice::new(d)];
        match sendmsg(fd, &iov, cmsg, MsgFlags::MSG_DONTWAIT, to) {
            Ok(_) => count.sent += 1,
            Err(_) => count.dropped += 1,
        }
    }
    count
}
