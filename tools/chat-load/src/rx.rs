//! The receiving side of a load run: threads that each own a share of the
//! members (one mio poll per thread) and drain them until they would block
//! (a chat-server member in [`super::chat_inbox`], an IRC one in
//! [`super::irc`]), counting per member: events, datagrams, gaps in the
//! event numbers, and the latency from the send time written in each
//! message's text.

use super::latency::Hist;
use super::text;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, AtomicU8, Ordering::*};
use std::sync::{Arc, OnceLock};
use std::thread::Thread;
use std::time::{Duration, Instant};

/// How often a receiver thread gives its members their timers: NACKs and
/// given-up gaps (repair), and every tenth time the connections' own
/// (keepalives, rekeys).
const TIMER_EVERY: Duration = Duration::from_millis(10);

/// Phases of a run, in order; the receivers read the current one.
pub mod phase {
    /// Members joining: events are ignored.
    pub const WARMUP: u8 = 0;
    /// KEEPALIVE: each member learns the number of the last event sent to it.
    pub const SYNC: u8 = 1;
    /// Messages flow.
    pub const RUN: u8 = 2;
    /// The last KEEPALIVE: events lost at the end of the run show up.
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
    /// Per member: the sync KEEPALIVE's answer arrived; the final one arrived.
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
    /// The receivers run the connections' timers (off in idle runs, whose
    /// keepalives the conductor spreads evenly).
    pub timers: AtomicBool,
    /// The server serves repair: members NACK their gaps (set before SYNC).
    pub repair: AtomicBool,
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
            timers: AtomicBool::new(true),
            repair: AtomicBool::new(false),
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

    pub fn ack(&self, s: usize, seq: u32) {
        let i = seq.wrapping_sub(1) as usize;
        if let Some(w) = self.acks[s].get(i / 64) {
            w.fetch_or(1 << (i % 64), Relaxed);
        }
    }
}

/// What one member received.
#[derive(Debug, Clone, Default)]
pub struct MemberStats {
    /// The event numbering is known (from the sync KEEPALIVE, or 1 for the ceiling runs).
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
    /// `last_event` of the answer to the final KEEPALIVE.
    pub final_last: Option<u32>,
    /// Times its connection lost the session (it then reconnects).
    pub sessions_lost: u64,
    /// Datagrams its connection could not open (forged, replayed,
    /// malformed, unexpected), counted at the end of the run.
    pub failed_opens: u64,
    /// Datagrams it discarded on purpose (`--discard`).
    pub discarded: u64,
    /// Repair: NACKs sent, and events that arrived into a gap.
    pub nacks: u64,
    pub repaired: u64,
}

impl MemberStats {
    /// Events missing after the last one received, as the final KEEPALIVE shows.
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
    /// Runs the member's timers (its connection's too when `conn`); returns
    /// the deliveries given up as lost.
    fn timers(&mut self, _conn: bool) -> u64 {
        0
    }
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
    let mut timers_at = Instant::now() + TIMER_EVERY;
    let mut tick = 0u32;
    loop {
        let ph = shared.phase.load(Acquire);
        if ph == phase::STOP {
            break;
        }
        if Instant::now() >= timers_at {
            timers_at = Instant::now() + TIMER_EVERY;
            tick = tick.wrapping_add(1);
            let conn = tick % 10 == 0 && shared.timers.load(Relaxed);
            let mut n = 0;
            for m in members.iter_mut() {
                n += m.timers(conn);
            }
            account(shared, n);
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
pub fn account(shared: &Shared, accounted: u64) {
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
