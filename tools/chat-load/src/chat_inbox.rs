//! A chat-server member as its receiver thread sees it: its datagrams
//! (opened by its connection, or in the clear for the unsealed ceiling),
//! the bodies in them counted (events and gaps, ACKs, KEEPALIVE answers,
//! LOST), its timers (NACKs, the connection's keepalives and rekeys), and
//! the datagrams it discards on purpose.

use super::member::Member;
use super::repair::{Discard, Repair};
use super::rx::{phase, Inbox, MemberStats, RxOut, Shared};
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::Instant;
use udpchat::client::conn::Event as ConnEvent;
use udpchat::net::{BatchReceiver, BATCH};
use udpchat::protocol::sealed::{decode_server, Event, ServerMsg};
use udpchat::session::MAX_BODY;

/// How a member's datagrams come.
pub enum Link {
    /// Sealed (protocol version 2): its connection opens every datagram.
    Sealed(Arc<Member>),
    /// The unsealed ceiling: each datagram is a body in the clear.
    Plain(UdpSocket),
}

/// One member as its receiver thread sees it.
pub struct RxMember {
    pub index: usize,
    pub link: Link,
    /// The sender index when this member also sends.
    pub sender: Option<usize>,
    pub st: MemberStats,
    /// Repair, from the sync on (when the server serves it).
    pub repair: Option<Repair>,
    /// The datagrams it discards before opening them.
    pub discard: Discard,
}

impl Inbox for RxMember {
    type Scratch = BatchReceiver;
    fn scratch() -> BatchReceiver {
        BatchReceiver::new()
    }
    fn fd(&self) -> RawFd {
        match &self.link {
            Link::Sealed(m) => m.sock.as_raw_fd(),
            Link::Plain(s) => s.as_raw_fd(),
        }
    }
    fn drain(
        &mut self,
        rx: &mut BatchReceiver,
        shared: &Shared,
        ph: u8,
        out: &mut RxOut,
    ) -> io::Result<u64> {
        drain(self, rx, shared, ph, out)
    }
    fn timers(&mut self, conn_timers: bool) -> u64 {
        let Link::Sealed(m) = &self.link else {
            return 0;
        };
        let now = Instant::now();
        let mut lost = 0;
        if let Some(rp) = &mut self.repair {
            let mut body = [0u8; MAX_BODY];
            if let Some(n) = rp.nack_due(now, &mut body) {
                m.send_body(now, &body[..n]);
            }
            lost = rp.take_lost(now);
            self.st.gap_missed += lost;
        }
        if conn_timers {
            let mut conn = m.conn();
            if conn.next_timeout().is_some_and(|t| t <= now) {
                conn.on_timeout(now);
                while let Some(ev) = conn.poll_event() {
                    self.st.sessions_lost += lost_session(&ev);
                }
                m.flush(&mut conn);
            }
        }
        lost
    }
    fn into_stats(mut self) -> (usize, MemberStats) {
        if let Link::Sealed(m) = &self.link {
            self.st.failed_opens = m.failed_opens();
        }
        if let Some(rp) = &mut self.repair {
            let before = rp.lost;
            self.st.gap_missed += rp.finish(Instant::now()) - before;
            self.st.nacks = rp.nacks;
            self.st.repaired = rp.repaired;
        }
        (self.index, self.st)
    }
}

/// 1 for an event that says the session was lost, else 0.
fn lost_session(ev: &ConnEvent) -> u64 {
    matches!(ev, ConnEvent::Reconnecting { .. } | ConnEvent::Ended(_)) as u64
}

/// Reads member `m`'s socket until it would block.
fn drain(
    m: &mut RxMember,
    rx: &mut BatchReceiver,
    shared: &Shared,
    ph: u8,
    out: &mut RxOut,
) -> io::Result<u64> {
    let mut accounted = 0u64;
    loop {
        let got = match &m.link {
            Link::Sealed(member) => rx.recv(&member.sock),
            Link::Plain(sock) => rx.recv(sock),
        };
        let n = match got {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pending ICMP error (the peer went away): nothing to read.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let mut cx = Cx {
            shared,
            ph,
            now: shared.now_ns(),
            at: Instant::now(),
            out,
        };
        let RxMember {
            index,
            link,
            sender,
            st,
            repair,
            discard,
        } = m;
        let mut to = To {
            st,
            repair,
            index: *index,
            sender: *sender,
        };
        match link {
            Link::Sealed(member) => {
                let mut conn = member.conn();
                for k in 0..n {
                    let Some((_, data)) = rx.get(k) else { continue };
                    if discard.next() {
                        to.st.discarded += 1;
                        continue;
                    }
                    conn.on_datagram(cx.at, data);
                    while let Some(ev) = conn.poll_event() {
                        match ev {
                            ConnEvent::Body(b) => accounted += body(&mut to, &b, &mut cx),
                            ev => to.st.sessions_lost += lost_session(&ev),
                        }
                    }
                }
                member.flush(&mut conn);
            }
            Link::Plain(_) => {
                for k in 0..n {
                    let Some((_, data)) = rx.get(k) else { continue };
                    accounted += body(&mut to, data, &mut cx);
                }
            }
        }
        // A short batch emptied the queue: every datagram queued after it
        // raises a new edge (the kernel reports each arrival), so the
        // recvmmsg that would only say "would block" is saved.
        if n < BATCH {
            break;
        }
    }
    Ok(accounted)
}

/// What the bodies of one received batch are counted with.
struct Cx<'a> {
    shared: &'a Shared,
    ph: u8,
    /// When the batch came, ns since the origin, and as an instant.
    now: u64,
    at: Instant,
    out: &'a mut RxOut,
}

/// The member a body is for.
struct To<'a> {
    st: &'a mut MemberStats,
    repair: &'a mut Option<Repair>,
    index: usize,
    /// Its sender index when it sends.
    sender: Option<usize>,
}

/// Handles one opened body for the member `to`; returns the deliveries it
/// accounts for (received, or seen missing).
fn body(to: &mut To, data: &[u8], cx: &mut Cx) -> u64 {
    let (index, sender) = (to.index, to.sender);
    let st = &mut *to.st;
    let (shared, ph) = (cx.shared, cx.ph);
    match decode_server(data) {
        Ok(ServerMsg::Events {
            first_event,
            events,
        }) => {
            if !st.synced {
                return 0; // before the run: announcements of joins
            }
            let mut accounted = 0;
            let mut mine = false;
            for (i, ev) in events.iter().enumerate() {
                let seq = first_event.wrapping_add(i as u32);
                let d = seq.wrapping_sub(st.next_seq);
                if let Some(rp) = to.repair.as_mut() {
                    // Gaps are asked for, and counted once given up.
                    if !rp.receive(cx.at, seq) {
                        st.out_of_order += 1;
                        continue;
                    }
                } else if d == 0 {
                    st.next_seq = seq.wrapping_add(1);
                } else if d < 1 << 31 {
                    st.gap_missed += d as u64;
                    accounted += d as u64;
                    st.next_seq = seq.wrapping_add(1);
                } else {
                    st.out_of_order += 1;
                    continue;
                }
                let text: &[u8] = match ev {
                    Event::Said(line) => line.text.as_bytes(),
                    _ => b"",
                };
                if cx.out.count_text(st, shared.per_sender, text, cx.now) {
                    accounted += 1;
                    mine = true;
                }
            }
            if mine {
                st.datagrams += 1;
            }
            accounted + take_lost(st, to.repair, cx.at)
        }
        Ok(ServerMsg::Lost { first_event, count }) => {
            match to.repair.as_mut() {
                Some(rp) => rp.not_kept(first_event, count),
                None => return 0,
            }
            take_lost(st, to.repair, cx.at)
        }
        Ok(ServerMsg::Ack { seq }) => {
            if let Some(s) = sender {
                shared.ack(s, seq);
            }
            0
        }
        Ok(ServerMsg::Keepalive { last_event }) => {
            shared.pongs.fetch_add(1, Relaxed);
            if let Some(rp) = to.repair.as_mut() {
                rp.keepalive(cx.at, last_event);
            }
            match ph {
                phase::SYNC if !st.synced => {
                    st.synced = true;
                    st.next_seq = last_event.wrapping_add(1);
                    if shared.repair.load(Relaxed) {
                        *to.repair = Some(Repair::new(cx.at, st.next_seq));
                    }
                    shared.synced[index].store(true, Release);
                }
                phase::FINAL => {
                    // With repair the tail is a gap like any other.
                    if to.repair.is_none() {
                        st.final_last = Some(last_event);
                    }
                    shared.finals[index].store(true, Release);
                }
                _ => {}
            }
            0
        }
        Ok(_) => 0,
        Err(_) => {
            cx.out.malformed += 1;
            0
        }
    }
}

/// Counts the events `repair` has given up since the last call.
fn take_lost(st: &mut MemberStats, repair: &mut Option<Repair>, at: Instant) -> u64 {
    let lost = repair.as_mut().map_or(0, |rp| rp.take_lost(at));
    st.gap_missed += lost;
    lost
}
