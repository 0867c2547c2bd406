//! The sending side of a load run: the senders' SAYs to the server (closed
//! loop on deliveries, or flooding within the acknowledgement window, with
//! retransmission of what is not acknowledged), each sealed by the sender's
//! connection, and the bare `sendmmsg` loop of the kernel-ceiling runs,
//! which seals each datagram for each member as the server does (or, for
//! the unsealed ceiling, does not).

use super::member::{Member, MemberConn};
use super::net;
use super::rx::Shared;
use super::text;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering::*;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use udpchat::net::{BatchSender, Outgoing};
use udpchat::protocol::sealed::{ClientMsg, Event, EventsWriter, Line, LineFlags, MessageId};
use udpchat::session::{Session, MAX_BODY, MAX_DATAGRAM};

/// SAYs per `sendmmsg` of one sender.
const BATCH: usize = 32;
/// An unacknowledged SAY is sent again after max(this, 2 × the smoothed
/// round trip): a flood queues for hundreds of ms, at N = 500 for more than
/// a second, and a shorter time only resends what is on its way.
const RTO_NS: u64 = 1_000_000_000;
/// A closed-loop sender whose deliveries have not moved for this long goes
/// ahead anyway (deliveries lost at the end of a burst never show as gaps).
const STALL_NS: u64 = 50_000_000;
/// A paced sender sleeps at least this long and then sends what is due.
const MIN_PACED_SLEEP_NS: u64 = 200_000;
/// After the last new message, how long to wait for the acknowledgements.
const ACK_DRAIN: Duration = Duration::from_secs(5);

/// How the senders send.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Deliveries of one message (members - 1).
    pub fanout: u64,
    /// Messages, at most, over all senders.
    pub total: u64,
    /// Sending stops after this long even if `total` is not reached.
    pub duration: Duration,
    /// Closed loop: message g may go once the deliveries counted reach (g - W) * fanout.
    pub window: Option<u64>,
    /// Flood: at most this many unacknowledged SAYs per sender.
    pub ack_window: usize,
    /// Messages per second, at most (over all senders).
    pub rate: Option<f64>,
    pub text_len: usize,
}

/// What the senders did.
#[derive(Debug, Default)]
pub struct TxOut {
    /// New messages per sender.
    pub sent: Vec<usize>,
    pub retransmits: u64,
    /// Send time (ns since the origin) of each message, by cell `s * per_sender + k`.
    pub sent_at: Vec<u64>,
    pub first_ns: u64,
    pub last_ns: u64,
    pub stalls: u64,
    /// Messages never acknowledged.
    pub unacked: u64,
    /// CPU time of the sending thread, ns.
    pub cpu_ns: u64,
}

/// Decides how many new messages may go now, and how to wait when none may.
pub struct Pacer {
    window: Option<u64>,
    fanout: u64,
    rate: Option<f64>,
    start_ns: u64,
    last_acc: u64,
    last_change: u64,
    /// Times the closed loop went ahead after waiting 50 ms.
    pub stalls: u64,
    /// What held the last call back: the deliveries needed, or the time due.
    need_acc: Option<u64>,
    due_ns: Option<u64>,
}

impl Pacer {
    pub fn new(plan: &Plan, start_ns: u64) -> Pacer {
        Pacer {
            window: plan.window,
            fanout: plan.fanout.max(1),
            rate: plan.rate,
            start_ns,
            last_acc: 0,
            last_change: start_ns,
            stalls: 0,
            need_acc: None,
            due_ns: None,
        }
    }

    /// New messages allowed now, `g` having been sent.
    pub fn allowed(&mut self, shared: &Shared, g: u64, now: u64) -> u64 {
        let mut allowed = u64::MAX;
        self.need_acc = None;
        self.due_ns = None;
        if let Some(w) = self.window {
            let acc = shared.accounted.load(Acquire);
            if acc != self.last_acc {
                self.last_acc = acc;
                self.last_change = now;
            }
            allowed = (acc / self.fanout + w).saturating_sub(g);
            if allowed == 0 {
                if now.saturating_sub(self.last_change) > STALL_NS {
                    self.stalls += 1;
                    self.last_change = now;
                    allowed = 1;
                } else {
                    self.need_acc = Some((g + 1 - w) * self.fanout);
                }
            }
        }
        if let Some(r) = self.rate {
            let due = ((now - self.start_ns) as f64 * r / 1e9) as u64 + 1;
            if due <= g {
                allowed = 0;
                self.due_ns = Some(self.start_ns + (g as f64 * 1e9 / r) as u64);
            } else {
                allowed = allowed.min(due - g);
            }
        }
        allowed
    }

    /// Waits until more may go: woken by the receivers when the deliveries
    /// reach what the window needs, or until the rate's next due time; at
    /// most `max_ns`.
    pub fn wait(&self, shared: &Shared, now: u64, max_ns: u64) {
        let mut ns = max_ns;
        if let Some(due) = self.due_ns {
            ns = ns.min(due.saturating_sub(now).max(MIN_PACED_SLEEP_NS));
        }
        if let Some(need) = self.need_acc {
            shared.wake_at.store(need, SeqCst);
            if shared.accounted.load(SeqCst) >= need {
                shared.wake_at.store(u64::MAX, Relaxed);
                return;
            }
        }
        if ns > 0 {
            std::thread::park_timeout(Duration::from_nanos(ns));
        }
        shared.wake_at.store(u64::MAX, Relaxed);
    }
}

/// Sealed SAYs for one `sendmmsg`, and the buffers to make them.
struct Batch {
    wire: Vec<u8>,
    spans: Vec<(usize, usize)>,
    textbuf: Vec<u8>,
    body: Vec<u8>,
    sender: BatchSender,
}

impl Batch {
    fn new(text_len: usize) -> Batch {
        Batch {
            wire: Vec::with_capacity(BATCH * (text_len + 96)),
            spans: Vec::with_capacity(BATCH),
            textbuf: vec![0u8; text_len.max(text::MIN_LEN)],
            body: vec![0u8; MAX_BODY],
            sender: BatchSender::new(),
        }
    }

    fn clear(&mut self) {
        self.wire.clear();
        self.spans.clear();
    }

    /// Adds SAY `idx` (0-based) of sender `s`, stamped `stamp`, sealed by
    /// the sender's connection `conn` (nothing while it is not in the room).
    fn say(&mut self, conn: &mut MemberConn, now: Instant, s: usize, idx: usize, stamp: u64) {
        text::write(&mut self.textbuf, s, idx, stamp);
        let text = std::str::from_utf8(&self.textbuf).expect("ASCII");
        let say = ClientMsg::Say {
            seq: idx as u32 + 1,
            text,
        };
        let Ok(n) = say.encode(&mut self.body) else {
            return; // the text length is checked by the options
        };
        if conn.send(now, &self.body[..n]).is_err() {
            return; // reconnecting: sent again after the RTO
        }
        while let Some(d) = conn.poll_transmit() {
            let a = self.wire.len();
            self.wire.extend_from_slice(&d);
            self.spans.push((a, self.wire.len()));
        }
    }

    fn send(&mut self, sock: &UdpSocket) {
        let wire = &self.wire;
        self.sender.send(
            sock,
            self.spans.iter().map(|&(a, b)| Outgoing {
                to: None,
                from: None,
                pieces: [&wire[a..b]],
                segment: None,
            }),
        );
    }
}

/// Where each sender is: its messages sent and acknowledged, and when each
/// was sent (first, and last), by cell `s * per + idx`.
struct Flights {
    per: usize,
    /// The next new message of each sender (seq = k + 1).
    k: Vec<usize>,
    /// The lowest unacknowledged message of each sender.
    lo: Vec<usize>,
    sent_at: Vec<u64>,
    tx_at: Vec<u64>,
    /// The smoothed round trip of SAYs acknowledged at their first sending
    /// (Karn's rule), ns; 0 before the first.
    srtt_ns: u64,
}

impl Flights {
    fn new(senders: usize, per: usize) -> Flights {
        Flights {
            per,
            k: vec![0; senders],
            lo: vec![0; senders],
            sent_at: vec![0; senders * per],
            tx_at: vec![0; senders * per],
            srtt_ns: 0,
        }
    }

    /// Moves sender `s`'s lowest unacknowledged message past the acknowledged
    /// ones, and takes their round trips (seen at `now`).
    fn advance(&mut self, shared: &Shared, s: usize, now: u64) {
        while self.lo[s] < self.k[s] && shared.acked(s, self.lo[s] as u32 + 1) {
            let c = s * self.per + self.lo[s];
            if self.tx_at[c] == self.sent_at[c] {
                let rtt = now.saturating_sub(self.sent_at[c]);
                self.srtt_ns = match self.srtt_ns {
                    0 => rtt.max(1),
                    a => (7 * a + rtt) / 8,
                };
            }
            self.lo[s] += 1;
        }
    }

    /// How long an unacknowledged SAY waits before it is sent again.
    fn rto_ns(&self) -> u64 {
        RTO_NS.max(2 * self.srtt_ns)
    }

    /// Sends again the unacknowledged SAYs older than the RTO (a batch per
    /// sender); returns how many.
    fn resend_overdue(
        &mut self,
        shared: &Shared,
        members: &[Arc<Member>],
        now: u64,
        batch: &mut Batch,
    ) -> u64 {
        let per = self.per;
        let mut n = 0;
        for (s, member) in members.iter().enumerate() {
            self.advance(shared, s, now);
            batch.clear();
            let mut conn = member.conn();
            let at = Instant::now();
            for idx in self.lo[s]..self.k[s] {
                if batch.spans.len() == BATCH
                    || now.saturating_sub(self.tx_at[s * per + idx]) < self.rto_ns()
                {
                    break;
                }
                if shared.acked(s, idx as u32 + 1) {
                    continue;
                }
                batch.say(&mut conn, at, s, idx, self.sent_at[s * per + idx]);
                self.tx_at[s * per + idx] = now;
            }
            drop(conn);
            if !batch.spans.is_empty() {
                n += batch.spans.len() as u64;
                batch.send(&member.sock);
            }
        }
        n
    }
}

/// Sends SAYs from the sender members (`members[s]`) to the server.
pub fn server_senders(members: Vec<Arc<Member>>, shared: &Shared, plan: &Plan) -> TxOut {
    let socks = &members;
    net::tight_timer_slack();
    let cpu0 = net::thread_cpu_ns();
    let ns = socks.len();
    let per = shared.per_sender;
    let mut fl = Flights::new(ns, per);
    let mut out = TxOut::default();
    let mut batch = Batch::new(plan.text_len);
    let start = shared.now_ns();
    out.first_ns = start;
    let deadline = start + plan.duration.as_nanos() as u64;
    let mut pacer = Pacer::new(plan, start);
    let mut g: u64 = 0;
    let mut rr = 0;
    let mut last_rto_check = start;

    loop {
        let now = shared.now_ns();
        let all_done = (0..ns).all(|s| fl.k[s] >= per);
        if g >= plan.total || now >= deadline || all_done {
            break;
        }
        let mut allowed = pacer.allowed(shared, g, now).min(plan.total - g);
        let mut sent_now = 0;
        for step in 0..ns {
            if allowed == 0 {
                break;
            }
            let s = (rr + step) % ns;
            fl.advance(shared, s, now);
            let (k, lo) = (fl.k[s], fl.lo[s]);
            let room = (per - k)
                .min(plan.ack_window.saturating_sub(k - lo))
                .min(allowed.min(BATCH as u64) as usize);
            if room == 0 {
                continue;
            }
            batch.clear();
            let stamp = shared.now_ns();
            let mut conn = socks[s].conn();
            let at = Instant::now();
            for idx in k..k + room {
                batch.say(&mut conn, at, s, idx, stamp);
                fl.sent_at[s * per + idx] = stamp;
                fl.tx_at[s * per + idx] = stamp;
            }
            drop(conn);
            batch.send(&socks[s].sock);
            fl.k[s] += room;
            g += room as u64;
            allowed -= room as u64;
            sent_now += room;
        }
        rr = (rr + 1) % ns.max(1);
        // Resend what has waited too long for its ACK.
        if now - last_rto_check > RTO_NS / 4 {
            last_rto_check = now;
            out.retransmits += fl.resend_overdue(shared, socks, now, &mut batch);
        }
        if sent_now == 0 {
            // Held by the window, the rate, or (flooding) the ACK window.
            let max = if pacer.need_acc.is_some() || pacer.due_ns.is_some() {
                2_000_000
            } else {
                50_000
            };
            pacer.wait(shared, now, max);
        }
    }
    out.last_ns = shared.now_ns();
    // The ACKs of the last messages, resending what is lost (bounded).
    let end = shared.now_ns() + ACK_DRAIN.as_nanos() as u64;
    loop {
        let now = shared.now_ns();
        for s in 0..ns {
            fl.advance(shared, s, now);
        }
        if (0..ns).all(|s| fl.lo[s] >= fl.k[s]) || now > end {
            break;
        }
        out.retransmits += fl.resend_overdue(shared, socks, now, &mut batch);
        std::thread::sleep(Duration::from_millis(1));
    }
    out.unacked = (0..ns)
        .map(|s| {
            (fl.lo[s]..fl.k[s])
                .filter(|&i| !shared.acked(s, i as u32 + 1))
                .count() as u64
        })
        .sum();
    out.sent = fl.k;
    out.sent_at = fl.sent_at;
    out.stalls = pacer.stalls;
    out.cpu_ns = net::thread_cpu_ns() - cpu0;
    out
}

/// A member the ceiling's loop sends to: its address, and the server's
/// session to it (`None`: the unsealed ceiling).
pub struct Dest {
    pub to: SocketAddr,
    pub session: Option<Session>,
}

/// The kernel ceiling: each message is one EVENTS body (as the server would
/// send it, numbered `g + 1`), sealed for each member of `dests` with its
/// own session as the server does (or sent in the clear), and sent with
/// `sendmmsg` from one socket, paced like the server run.
pub fn baseline_sender(
    sock: &UdpSocket,
    mut dests: Vec<Dest>,
    shared: &Shared,
    plan: &Plan,
) -> TxOut {
    net::tight_timer_slack();
    let cpu0 = net::thread_cpu_ns();
    let per = shared.per_sender;
    let mut out = TxOut {
        sent_at: vec![0; per],
        ..Default::default()
    };
    let mut textbuf = vec![0u8; plan.text_len.max(text::MIN_LEN)];
    let mut body = vec![0u8; MAX_BODY];
    let mut sealed = [0u8; MAX_DATAGRAM];
    let mut wire: Vec<u8> = Vec::with_capacity(dests.len() * (plan.text_len + 128));
    let mut spans: Vec<(usize, usize)> = Vec::with_capacity(dests.len());
    let mut sender = BatchSender::new();
    let from = net::member_name(0);
    let start = shared.now_ns();
    out.first_ns = start;
    let deadline = start + plan.duration.as_nanos() as u64;
    let mut pacer = Pacer::new(plan, start);
    let total = plan.total.min(per as u64);
    let mut g = 0u64;
    while g < total {
        let now = shared.now_ns();
        if now >= deadline {
            break;
        }
        if pacer.allowed(shared, g, now) == 0 {
            pacer.wait(shared, now, 2_000_000);
            continue;
        }
        text::write(&mut textbuf, 0, g as usize, now);
        let text = std::str::from_utf8(&textbuf).expect("ASCII");
        let Some(n) = events_body(&mut body, g, &from, text) else {
            break; // the text length is checked by the options
        };
        out.sent_at[g as usize] = now;
        wire.clear();
        spans.clear();
        for d in &mut dests {
            let a = wire.len();
            match &mut d.session {
                Some(session) => match session.seal(&body[..n], &mut sealed) {
                    Ok(len) => wire.extend_from_slice(&sealed[..len]),
                    Err(_) => continue, // 2^60 datagrams: cannot happen in a run
                },
                None => wire.extend_from_slice(&body[..n]),
            }
            spans.push((a, wire.len()));
        }
        sender.send(
            sock,
            spans.iter().zip(&dests).map(|(&(a, b), d)| Outgoing {
                to: Some(d.to),
                from: None,
                pieces: [&wire[a..b]],
                segment: None,
            }),
        );
        g += 1;
    }
    out.last_ns = shared.now_ns();
    out.sent = vec![g as usize];
    out.stalls = pacer.stalls;
    out.cpu_ns = net::thread_cpu_ns() - cpu0;
    out
}

/// Writes the EVENTS body of the ceiling's message `g` (event `g + 1`, one
/// SAID from `from`) into `body`; returns its length.
fn events_body(body: &mut [u8], g: u64, from: &str, text: &str) -> Option<usize> {
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut w = EventsWriter::events(body, g as u32 + 1).ok()?;
    let said = Event::Said(Line {
        room_seq: g + 1,
        time_ms,
        flags: LineFlags::NONE,
        id: MessageId {
            client_id: 1,
            seq: g as u32 + 1,
        },
        from,
        text,
    });
    w.push(&said).ok()?.then_some(())?;
    w.finish().ok()
}
