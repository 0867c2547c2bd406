//! Repaired delivery as the receiver shows it (issue 10): numbered events
//! go through the reorder buffer (`client::reorder`: held at most 1 s, shown
//! in order, each once; gaps asked for again with a NACK; what the server no
//! longer keeps shown as `(N messages lost)`), room messages are shown once
//! by their id (`ShownIds`), lines said earlier (history on join, catch-up
//! after a reconnect, `/history`) carry their own time, and the round-trip
//! time that paces the NACKs is measured from the receiver's own SAYs and
//! their ACKs.

use super::ReceiverProcess;
use crate::client::render::{self, Notice};
use crate::client::reorder::{widen, Delivery, MessageId, Reorder, ShownIds};
use crate::protocol::sealed::{
    client_type, decode_server, encode_nack, server_type, ClientMsg, Event, Events, LineFlags,
    ServerMsg, WelcomeFlags, MAX_NACK_RANGES,
};
use crate::session::MAX_BODY;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A `/history` with no page back after this long is given up.
const HISTORY_WAIT: Duration = Duration::from_secs(3);
/// How many sends are remembered for round-trip samples.
const RTT_SAMPLES: usize = 64;

/// How many recent samples the round-trip time is the least of.
const RTT_RECENT: usize = 16;

/// The round-trip time, from the receiver's SAY/ME/PRIVATE and their ACKs
/// (Karn's rule: a message sent twice gives no sample): the least of the
/// last [`RTT_RECENT`] samples. Not an average: the server acknowledges a
/// message that arrived ahead of a gap in the sender's order only once the
/// gap is filled, so some samples hold a resend's wait, not the path's.
#[derive(Debug, Default)]
pub(super) struct Rtt {
    sent: VecDeque<(u32, Instant)>,
    recent: VecDeque<Duration>,
}

impl Rtt {
    /// Message `seq` was sealed at `now`.
    fn sent(&mut self, seq: u32, now: Instant) {
        if let Some(i) = self.sent.iter().position(|&(s, _)| s == seq) {
            self.sent.remove(i); // sent again: its ACK says nothing of the path
            return;
        }
        if self.sent.len() == RTT_SAMPLES {
            self.sent.pop_front();
        }
        self.sent.push_back((seq, now));
    }

    /// Message `seq` was acknowledged at `now`: the new estimate.
    fn acked(&mut self, seq: u32, now: Instant) -> Option<Duration> {
        let i = self.sent.iter().position(|&(s, _)| s == seq)?;
        let (_, at) = self.sent.remove(i)?;
        if self.recent.len() == RTT_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(now.saturating_duration_since(at));
        self.recent.iter().min().copied()
    }
}

/// What the receiver keeps for repaired delivery.
pub(super) struct Repair {
    pub(super) reorder: Reorder,
    shown: ShownIds,
    /// ADMIN lines shown, by (epoch, room sequence).
    shown_admin: ShownIds,
    /// The room sequence of the last room message shown in this epoch.
    pub(super) last_room_seq: u64,
    /// The oldest room sequence shown (0: none), where `/history` pages on.
    oldest_room_seq: u64,
    /// After a resume: the catch-up's header is still to be said, with the
    /// number of messages when known.
    catch_up: Option<Option<u64>>,
    /// The `before` of the `/history` waiting for its page, and when it is
    /// given up.
    history: Option<(u64, Instant)>,
    pub(super) rtt: Rtt,
}

impl Repair {
    pub(super) fn new(now: Instant) -> Repair {
        Repair {
            reorder: Reorder::new(now, 1),
            shown: ShownIds::new(),
            shown_admin: ShownIds::new(),
            last_room_seq: 0,
            oldest_room_seq: 0,
            catch_up: None,
            history: None,
            rtt: Rtt::default(),
        }
    }

    /// When something is due without a datagram.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let history = self.history.map(|(_, until)| until);
        match (self.reorder.next_deadline(), history) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

/// One event as a one-event EVENTS body, as the reorder buffer holds it.
fn one_event_body(event: &[u8]) -> Vec<u8> {
    let mut body = Vec::with_capacity(5 + event.len());
    body.push(server_type::EVENTS);
    body.extend_from_slice(&1u32.to_be_bytes());
    body.extend_from_slice(event);
    body
}

/// The message id of a line, for [`ShownIds`].
fn id(client_id: u64, seq: u32) -> MessageId {
    MessageId {
        client: client_id,
        seq: seq.into(),
    }
}

impl ReceiverProcess {
    /// A new member session (the first WELCOME, or one after a reconnect):
    /// its event numbers start at 1. After a resume in the same epoch the
    /// catch-up has `room_seq - last shown` messages.
    pub(super) fn new_session(&mut self, resumed: bool, epoch_kept: bool, room_seq: u64) {
        let now = Instant::now();
        self.repair.reorder = Reorder::new(now, 1);
        if !epoch_kept {
            self.repair.last_room_seq = 0;
            self.repair.oldest_room_seq = 0;
        }
        self.repair.catch_up = resumed.then(|| {
            (epoch_kept && self.repair.last_room_seq > 0)
                .then(|| room_seq.saturating_sub(self.repair.last_room_seq))
        });
    }

    /// EVENTS: each event into the reorder buffer under its number.
    pub(super) fn on_events(&mut self, first_event: u32, events: Events<'_>) {
        let now = Instant::now();
        let bytes = events.as_bytes();
        let mut at = 0;
        for (i, ev) in events.iter().enumerate() {
            let len = ev.encoded_len();
            let Some(raw) = bytes.get(at..at + len) else {
                break;
            };
            at += len;
            let n = first_event.wrapping_add(i as u32);
            let number = widen(self.repair.reorder.expected(), n);
            self.repair
                .reorder
                .receive(now, number, one_event_body(raw));
        }
    }

    /// The server's KEEPALIVE: the last event it sent (a lost tail is a gap).
    pub(super) fn on_server_keepalive(&mut self, last_event: u32) {
        let last = widen(self.repair.reorder.expected(), last_event);
        self.repair.reorder.keepalive(Instant::now(), last);
    }

    /// LOST: events the server no longer keeps.
    pub(super) fn on_lost(&mut self, first_event: u32, count: u32) {
        let lo = widen(self.repair.reorder.expected(), first_event);
        let hi = lo + u64::from(count) - 1;
        self.repair.reorder.not_kept(&[(lo, hi)]);
    }

    /// Shows what the reorder buffer hands on, and asks for gaps (when the
    /// server serves NACK).
    pub(super) fn deliver(&mut self) {
        let now = Instant::now();
        while let Some(d) = self.repair.reorder.pop(now) {
            match d {
                Delivery::Lost { count } => self.notice(Notice::Lost(count)),
                Delivery::Event { event, .. } => {
                    if let Ok(ServerMsg::Events { events, .. }) = decode_server(&event) {
                        if let Some(ev) = events.iter().next() {
                            self.room_event(&ev);
                        }
                    }
                }
            }
        }
        if !self.welcome.flags.contains(WelcomeFlags::REPAIR) || !self.conn.is_member() {
            return;
        }
        if let Some(ranges) = self.repair.reorder.nack_due(now, MAX_NACK_RANGES) {
            let ranges: Vec<(u32, u32)> = ranges
                .iter()
                .map(|&(lo, hi)| (lo as u32, hi as u32))
                .collect();
            let mut body = [0u8; MAX_BODY];
            if let Ok(n) = encode_nack(&ranges, &mut body) {
                self.send_body(&body[..n]);
            }
        }
        if self.repair.history.is_some_and(|(_, until)| now >= until) {
            self.repair.history = None;
            self.notice(Notice::HistoryNoAnswer);
        }
    }

    /// One event in order: shown once (a line by its id, an admin line by its
    /// room sequence), a line said earlier with its own time.
    fn room_event(&mut self, ev: &Event<'_>) {
        let now = Instant::now();
        let epoch = u64::from(self.welcome.epoch);
        let (fresh, room_seq, flags, time_ms) = match *ev {
            Event::Said(l) | Event::Me(l) => (
                self.repair
                    .shown
                    .first_time(now, id(l.id.client_id, l.id.seq)),
                l.room_seq,
                l.flags,
                l.time_ms,
            ),
            Event::Admin {
                room_seq,
                time_ms,
                flags,
                ..
            } => (
                self.repair.shown_admin.first_time(
                    now,
                    MessageId {
                        client: epoch,
                        seq: room_seq,
                    },
                ),
                room_seq,
                flags,
                time_ms,
            ),
            Event::PrivateFrom { id: i, .. } => {
                if self.repair.shown.first_time(now, id(i.client_id, i.seq)) {
                    let stamp = render::local_hhmm();
                    self.event(&stamp, ev);
                }
                return;
            }
            _ => {
                let stamp = render::local_hhmm();
                self.event(&stamp, ev);
                return;
            }
        };
        if room_seq > 0 {
            self.repair.last_room_seq = self.repair.last_room_seq.max(room_seq);
            if self.repair.oldest_room_seq == 0 || room_seq < self.repair.oldest_room_seq {
                self.repair.oldest_room_seq = room_seq;
            }
        }
        if !fresh {
            return;
        }
        if flags.contains(LineFlags::CATCH_UP) {
            if let Some(count) = self.repair.catch_up.take() {
                self.notice(Notice::WhileAway(count));
            }
        }
        let earlier = flags.contains(LineFlags::HISTORY) || flags.contains(LineFlags::CATCH_UP);
        let stamp = if earlier {
            render::earlier_stamp(time_ms)
        } else {
            render::local_hhmm()
        };
        self.event(&stamp, ev);
    }

    /// A body the receiver sealed for the sender: its own SAY or ME is shown
    /// already (echoed, or not shown through a pipe), so a copy coming back
    /// (catch-up, history) is not shown again; its time starts a round-trip
    /// sample.
    pub(super) fn sealed_own(&mut self, body: &[u8]) {
        let (Some(&ty), Some(seq)) = (body.first(), body.get(1..5)) else {
            return;
        };
        let seq = u32::from_be_bytes([seq[0], seq[1], seq[2], seq[3]]);
        let now = Instant::now();
        if matches!(
            ty,
            client_type::SAY | client_type::ME | client_type::PRIVATE
        ) {
            self.repair.rtt.sent(seq, now);
        }
        if matches!(ty, client_type::SAY | client_type::ME) {
            self.repair
                .shown
                .first_time(now, id(self.welcome.client_id, seq));
        }
    }

    /// An ACK: a round-trip sample.
    pub(super) fn acked(&mut self, seq: u32) {
        if let Some(rtt) = self.repair.rtt.acked(seq, Instant::now()) {
            self.repair.reorder.set_rtt(rtt);
        }
    }

    /// `/history N`: the N room messages before the oldest one shown.
    pub(super) fn ask_history(&mut self, max: u8) {
        if !self.welcome.flags.contains(WelcomeFlags::REPAIR) {
            return self.notice(Notice::NoHistory);
        }
        let before = self.repair.oldest_room_seq;
        let mut body = [0u8; 16];
        if let Ok(n) = (ClientMsg::History { before, max }).encode(&mut body) {
            self.repair.history = Some((before, Instant::now() + HISTORY_WAIT));
            self.send_body(&body[..n]);
        }
    }

    /// HISTORY_PAGE: its messages, oldest first, with their own time.
    pub(super) fn on_history_page(&mut self, before: u64, events: Events<'_>) {
        if self.repair.history.map(|(b, _)| b) != Some(before) {
            return;
        }
        self.repair.history = None;
        let mut any = false;
        for ev in events.iter() {
            let (room_seq, time_ms) = match ev {
                Event::Said(l) | Event::Me(l) => (l.room_seq, l.time_ms),
                Event::Admin {
                    room_seq, time_ms, ..
                } => (room_seq, time_ms),
                _ => continue,
            };
            if !any || room_seq < self.repair.oldest_room_seq {
                self.repair.oldest_room_seq = room_seq;
            }
            any = true;
            let stamp = render::earlier_stamp(time_ms);
            self.event(&stamp, &ev);
        }
        if !any {
            self.notice(Notice::NoEarlier);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sealed::event_type;

    #[test]
    fn rtt_samples_follow_karn() {
        let t0 = Instant::now();
        let mut r = Rtt::default();
        r.sent(1, t0);
        r.sent(2, t0);
        r.sent(2, t0 + Duration::from_millis(300)); // resent: no sample
        assert_eq!(r.acked(2, t0 + Duration::from_millis(400)), None);
        assert_eq!(
            r.acked(1, t0 + Duration::from_millis(80)),
            Some(Duration::from_millis(80))
        );
        assert_eq!(r.acked(1, t0 + Duration::from_millis(90)), None, "once");
        r.sent(3, t0);
        assert_eq!(
            r.acked(3, t0 + Duration::from_millis(900)),
            Some(Duration::from_millis(80)),
            "an ACK held behind a gap does not raise it"
        );
        for seq in 4..4 + RTT_RECENT as u32 {
            r.sent(seq, t0);
            let rtt = r.acked(seq, t0 + Duration::from_millis(120));
            let want = if seq < 2 + RTT_RECENT as u32 { 80 } else { 120 };
            assert_eq!(rtt, Some(Duration::from_millis(want)), "seq {seq}");
        }
    }

    #[test]
    fn one_event_bodies_decode_to_their_event() {
        let body = one_event_body(&[event_type::JOINED, 3, b'b', b'o', b'b']);
        let Ok(ServerMsg::Events { events, .. }) = decode_server(&body) else {
            panic!("not an EVENTS body");
        };
        assert_eq!(
            events.iter().collect::<Vec<_>>(),
            [Event::Joined { name: "bob" }]
        );
    }
}
