//! The receiving side of a load run: threads that each own a share of the
//! member sockets (one mio poll per thread), drain them with `recvmmsg`, and
//! count per member: events, datagrams, gaps in the event numbers, and the
//! latency from the send time written in each message's text.

use super::latency::Hist;
use super::text;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::net::UdpSocket;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};
use udpchat::net::{BatchReceiver, BATCH};
use udpchat::protocol::{decode_server, Event, ServerMsg};

/// Phases of a run, in order; the receivers read the current one.
pub mod phase {
    /// Members joining: events are ignored.
    pub const WARMUP: u8 = 0;
    /// PING/PONG: each member learns the number of the last event sent to it.
    pub const SYNC: u8 = 1;
    /// Messages flow.
    pub const RUN: u8 = 2;
    /// The last PING/PONG: events lost at the end of the run show up.
    pub const FINAL: u8 = 3;
    pub const STOP: u8 = 4;
}

/// State shared by the receivers, the senders and the conductor.
pub struct Shared {
    /// The time origin of the timestamps in the texts.
    pub base: Instant,
    pub phase: AtomicU8,
    /// Deliveries received, plus those seen missing (gaps): what a
    /// closed-loop sender waits for.
    pub accounted: AtomicU64,
    /// The latest receipt of a delivery, ns since `base`.
    pub last_rx_ns: AtomicU64,
    /// Per member: the sync PONG arrived; the final PONG arrived.
    pub synced: Vec<AtomicBool>,
    pub finals: Vec<AtomicBool>,
    /// Per sender: the ACKed sequence numbers (bit `seq - 1`).
    pub acks: Vec<Vec<AtomicU64>>,
    /// Thread ids of the receivers (for their CPU time).
    pub rx_tids: Vec<AtomicI32>,
    /// Messages per sender that the per-message tables hold.
    pub per_sender: usize,
    /// Keepalive answers received (idle runs).
    pub pongs: AtomicU64,
    /// A waiting closed-loop sender wants a wake-up once `accounted` reaches this.
    pub wake_at: AtomicU64,
    pub sender: OnceLock<Thread>,
}

impl Shared {
    pub fn new(members: usize, senders: usize, per_sender: usize, threads: usize) -> Shared {
        let words = per_sender.div_ceil(64) + 1;
        Shared {
            base: Instant::now(),
            phase: AtomicU8::new(phase::WARMUP),
            accounted: AtomicU64::new(0),
            last_rx_ns: AtomicU64::new(0),
            synced: (0..members).map(|_| AtomicBool::new(false)).collect(),
            finals: (0..members).map(|_| AtomicBool::new(false)).collect(),
            acks: (0..senders)
                .map(|_| (0..words).map(|_| AtomicU64::new(0)).collect())
                .collect(),
            rx_tids: (0..threads).map(|_| AtomicI32::new(0)).collect(),
            per_sender,
            pongs: AtomicU64::new(0),
            wake_at: AtomicU64::new(u64::MAX),
            sender: OnceLock::new(),
        }
    }

    /// ns since `base`.
    pub fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Has sender `s` had SAY number `seq` (1-based) acknowledged?
    pub fn acked(&self, s: usize, seq: u32) -> bool {
        let i = seq.wrapping_sub(1) as usize;
        self.acks[s]
            .get(i / 64)
            .is_some_and(|w| w.load(Relaxed) & (1 << (i % 64)) != 0)
    }

    fn ack(&self, s: usize, seq: u32) {
        let i = seq.wrapping_sub(1) as usize;
        if let Some(w) = self.acks[s].get(i / 64) {
            w.fetch_or(1 << (i % 64), Relaxed);
        }
    }
}

/// One member as its receiver thread sees it.
pub struct RxMember {
    pub index: usize,
    pub sock: Arc<UdpSocket>,
    /// The sender index when this member also sends.
    pub sender: Option<usize>,
    pub st: MemberStats,
}

/// What one member received.
#[derive(Debug, Clone, Default)]
pub struct MemberStats {
    /// The event numbering is known (from the sync PONG, or 1 for the ceiling run).
    pub synced: bool,
    /// The number the next event should carry.
    pub next_seq: u32,
    /// This run's messages received, and the datagrams that carried them.
    pub received: u64,
    pub datagrams: u64,
    /// Events missing as gaps in the numbering.
    pub gap_missed: u64,
    /// Events numbered below the next expected one (repeated or reordered).
    pub out_of_order: u64,
    /// Events that were not this run's messages.
    pub foreign: u64,
    /// `last_seq` of the final PONG.
    pub final_last: Option<u32>,
}

impl MemberStats {
    /// Events missing after the last one received, as the final PONG shows.
    pub fn tail_missed(&self) -> u64 {
        match self.final_last {
            Some(last) if self.synced => {
                let d = last.wrapping_sub(self.next_seq.wrapping_sub(1));
                if d < 1 << 31 {
                    d as u64
                } else {
                    0
                }
            }
            _ => 0,
        }
    }
}

/// What a receiver thread hands back.
pub struct RxOut {
    pub members: Vec<(usize, MemberStats)>,
    /// Latency of each delivery.
    pub hist: Hist,
    /// Per message (`sender * per_sender + k`): deliveries, and the latest receipt (ns).
    pub counts: Vec<u32>,
    pub last_rx: Vec<u64>,
    pub malformed: u64,
}

/// A member connection a receiver thread reads: a UDP member of the chat
/// server here, a TCP member of ngircd in [`super::irc`].
pub trait Inbox: Send + 'static {
    /// Buffers one receiver thread shares among its members.
    type Scratch;
    fn scratch() -> Self::Scratch;
    fn fd(&self) -> RawFd;
    /// Reads until the connection would block; returns the deliveries it
    /// accounts for (received, or seen missing).
    fn drain(
        &mut self,
        scratch: &mut Self::Scratch,
        shared: &Shared,
        ph: u8,
        out: &mut RxOut,
    ) -> io::Result<u64>;
    /// The member's index and what it received.
    fn into_stats(self) -> (usize, MemberStats);
}

impl RxOut {
    /// Nothing received yet, with room for `cells` messages.
    fn new(cells: usize) -> RxOut {
        RxOut {
            members: Vec::new(),
            hist: Hist::new(),
            counts: vec![0; cells],
            last_rx: vec![0; cells],
            malformed: 0,
        }
    }

    /// Counts `text`, received at `now` by the member `st`, if it is one of
    /// this run's messages (else it is foreign); returns whether it was.
    pub fn count_text(
        &mut self,
        st: &mut MemberStats,
        per_sender: usize,
        text: &[u8],
        now: u64,
    ) -> bool {
        let Some((s, k, sent)) = text::parse(text) else {
            st.foreign += 1;
            return false;
        };
        st.received += 1;
        self.hist.add(now.saturating_sub(sent));
        let cell = s * per_sender + k;
        if let (Some(c), Some(l)) = (self.counts.get_mut(cell), self.last_rx.get_mut(cell)) {
            *c += 1;
            *l = (*l).max(now);
        }
        true
    }
}

/// Runs a receiver thread over `members` until the phase is STOP.
pub fn spawn<M: Inbox>(
    id: usize,
    members: Vec<M>,
    shared: Arc<Shared>,
    senders: usize,
) -> std::thread::JoinHandle<io::Result<RxOut>> {
    std::thread::Builder::new()
        .name(format!("rx{id}"))
        .spawn(move || receive(id, members, &shared, senders))
        .expect("spawn a receiver thread")
}

fn receive<M: Inbox>(
    id: usize,
    mut members: Vec<M>,
    shared: &Shared,
    senders: usize,
) -> io::Result<RxOut> {
    shared.rx_tids[id].store(super::net::gettid(), Relaxed);
    let mut poll = Poll::new()?;
    for (k, m) in members.iter().enumerate() {
        poll.registry()
            .register(&mut SourceFd(&m.fd()), Token(k), Interest::READABLE)?;
    }
    let mut out = RxOut::new(senders * shared.per_sender);
    let mut events = Events::with_capacity(1024);
    let mut scratch = M::scratch();
    // Sockets may hold data from before the registration.
    let mut ready: Vec<usize> = (0..members.len()).collect();
    loop {
        let ph = shared.phase.load(Acquire);
        if ph == phase::STOP {
            break;
        }
        for k in ready.drain(..) {
            let n = members[k].drain(&mut scratch, shared, ph, &mut out)?;
            account(shared, n);
        }
        match poll.poll(&mut events, Some(Duration::from_millis(5))) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        ready.extend(events.iter().map(|e| e.token().0));
    }
    out.members = members.into_iter().map(M::into_stats).collect();
    Ok(out)
}

/// Adds `accounted` deliveries to the shared count, and wakes a closed-loop
/// sender that waits for it.
fn account(shared: &Shared, accounted: u64) {
    if accounted == 0 {
        return;
    }
    let now = shared.accounted.fetch_add(accounted, SeqCst) + accounted;
    shared.last_rx_ns.fetch_max(shared.now_ns(), Relaxed);
    if now >= shared.wake_at.load(SeqCst) && shared.wake_at.swap(u64::MAX, SeqCst) != u64::MAX {
        if let Some(t) = shared.sender.get() {
            t.unpark();
        }
    }
}

impl Inbox for RxMember {
    type Scratch = BatchReceiver;
    fn scratch() -> BatchReceiver {
        BatchReceiver::new()
    }
    fn fd(&self) -> RawFd {
        self.sock.as_raw_fd()
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
    fn into_stats(self) -> (usize, MemberStats) {
        (self.index, self.st)
    }
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
        let n = match rx.recv(&*m.sock) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // A pending ICMP error (the peer went away): nothing to read.
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
            Err(e) => return Err(e),
        };
        let now = shared.now_ns();
        for k in 0..n {
            let Some((_, data)) = rx.get(k) else { continue };
            accounted += datagram(m, data, now, shared, ph, out);
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

/// Handles one datagram for member `m`; returns the deliveries it accounts
/// for (received, or seen missing).
fn datagram(
    m: &mut RxMember,
    data: &[u8],
    now: u64,
    shared: &Shared,
    ph: u8,
    out: &mut RxOut,
) -> u64 {
    let st = &mut m.st;
    match decode_server(data) {
        Ok(ServerMsg::Events { first_seq, events }) => {
            if !st.synced {
                return 0; // before the run: announcements of joins
            }
            let mut accounted = 0;
            let mut mine = false;
            for (i, ev) in events.iter().enumerate() {
                let seq = first_seq.wrapping_add(i as u32);
                let d = seq.wrapping_sub(st.next_seq);
                if d == 0 {
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
                    Event::Said { text, .. } => text.as_bytes(),
                    _ => b"",
                };
                if out.count_text(st, shared.per_sender, text, now) {
                    accounted += 1;
                    mine = true;
                }
            }
            if mine {
                st.datagrams += 1;
            }
            accounted
        }
        Ok(ServerMsg::Ack { seq }) => {
            if let Some(s) = m.sender {
                shared.ack(s, seq);
            }
            0
        }
        Ok(ServerMsg::Pong { last_seq }) => {
            shared.pongs.fetch_add(1, Relaxed);
            match ph {
                phase::SYNC if !st.synced => {
                    st.synced = true;
                    st.next_seq = last_seq.wrapping_add(1);
                    shared.synced[m.index].store(true, Release);
                }
                phase::FINAL => {
                    st.final_last = Some(last_seq);
                    shared.finals[m.index].store(true, Release);
                }
                _ => {}
            }
            0
        }
        Ok(_) => 0,
        Err(_) => {
            out.malformed += 1;
            0
        }
    }
}
