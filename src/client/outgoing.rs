//! The sender's messages until the server acknowledges them: message numbers,
//! retransmission (until the server answers, as long as the session lives),
//! back-off on "rate limited", held while reconnecting.
//!
//! Pure: time is an argument; the bodies to seal (the receiver seals them)
//! and failures are return values.

use crate::client::render::Undelivered;
use crate::protocol::sealed::{ClientMsg, RejectReason};
use crate::session::MAX_BODY;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Waits after the 1st, 2nd, … transmission of a message; after the last,
/// [`MAX_RETRY_DELAY`] between sends. Sends at 0, 0.25, 0.5, 1, 1.5, 2.5, 4.5,
/// 6.5 s…: five within the 2 s that the server holds the messages after a gap
/// (so that a lost line still goes out in its order: at 10% loss a gap stays
/// open 1 time in 10,000), seven within 5 s.
const RETRY_DELAYS: [Duration; 5] = [
    Duration::from_millis(250),
    Duration::from_millis(250),
    Duration::from_millis(500),
    Duration::from_millis(500),
    Duration::from_millis(1000),
];
/// The longest wait between two sends of a message. A message is resent until
/// the server answers (ACK or REJECT), never given up while the session lives:
/// losing contact is the connection's business (the member timeout, then a
/// reconnect, while which messages are held), and end of input has its own
/// limit (the sender's drain limit).
const MAX_RETRY_DELAY: Duration = Duration::from_millis(2000);
/// At most this many messages are unacknowledged at once; the rest wait in order.
pub const WINDOW: usize = 8;
/// A message refused as "rate limited" is tried again after this, up to
/// [`MAX_RATE_RETRIES`] times.
pub const RATE_BACKOFF: Duration = Duration::from_millis(1000);
pub const MAX_RATE_RETRIES: u32 = 5;

/// A message the user asked to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outgoing {
    Say(String),
    /// `/me waves`: an action (the text without `/me `).
    Me(String),
    Private {
        to: String,
        text: String,
    },
}

impl Outgoing {
    /// The text, for a "not delivered" notice.
    pub fn describe(&self) -> String {
        match self {
            Outgoing::Say(t) => t.clone(),
            Outgoing::Me(t) => format!("/me {t}"),
            Outgoing::Private { to, text } => format!("/msg {to} {text}"),
        }
    }

    /// Its body with number `seq`, or `None` when a field is out of range
    /// (the input is split and checked before, so only a name too long for
    /// the wire gets here).
    fn body(&self, seq: u32) -> Option<Vec<u8>> {
        let msg = match self {
            Outgoing::Say(text) => ClientMsg::Say { seq, text },
            Outgoing::Me(text) => ClientMsg::Me { seq, text },
            Outgoing::Private { to, text } => ClientMsg::Private { seq, to, text },
        };
        let mut out = vec![0u8; MAX_BODY];
        let n = msg.encode(&mut out).ok()?;
        out.truncate(n);
        Some(out)
    }
}

/// The wait after transmission number `sends` (0: the first) of a message.
fn retry_delay(sends: usize) -> Duration {
    RETRY_DELAYS
        .get(sends)
        .copied()
        .unwrap_or(MAX_RETRY_DELAY)
        .min(MAX_RETRY_DELAY)
}

#[derive(Debug)]
struct InFlight {
    seq: u32,
    msg: Outgoing,
    /// Transmissions so far (0: waiting to be sent at `next_at`).
    sends: usize,
    next_at: Instant,
    rate_retries: u32,
}

/// Messages queued and in flight.
#[derive(Debug)]
pub struct OutgoingQueue {
    next_seq: u32,
    queue: VecDeque<(Outgoing, u32)>,
    flight: Vec<InFlight>,
    held: bool,
}

/// A message given up, and why.
pub type Failure = (Outgoing, Undelivered);

impl OutgoingQueue {
    pub fn new() -> Self {
        OutgoingQueue {
            next_seq: 1,
            queue: VecDeque::new(),
            flight: Vec::new(),
            held: false,
        }
    }

    /// Queues a message; it goes out at the next [`OutgoingQueue::poll`].
    pub fn push(&mut self, msg: Outgoing) {
        self.queue.push_back((msg, 0));
    }

    /// Is it holding its messages (contact lost)?
    pub fn is_held(&self) -> bool {
        self.held
    }

    /// How many messages are queued or in flight.
    pub fn len(&self) -> usize {
        self.queue.len() + self.flight.len()
    }

    /// How many messages wait behind the window (not yet sent).
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued and nothing unacknowledged.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.flight.is_empty()
    }

    /// The lowest number not yet acknowledged (the next new one when none is
    /// outstanding), for a RESUME.
    pub fn lowest_unacked(&self) -> u32 {
        let next = self.next_seq;
        self.flight
            .iter()
            .map(|f| f.seq)
            .max_by_key(|s| next.wrapping_sub(*s))
            .unwrap_or(next)
    }

    /// Bodies due now (first sends and retransmissions) and messages given up.
    pub fn poll(&mut self, now: Instant) -> (Vec<Vec<u8>>, Vec<Failure>) {
        let mut out = Vec::new();
        let mut failed = Vec::new();
        if self.held {
            return (out, failed);
        }
        let backing_off = self
            .flight
            .iter()
            .any(|f| f.rate_retries > 0 && f.sends == 0);
        while !backing_off && self.flight.len() < WINDOW {
            let Some((msg, rate_retries)) = self.queue.pop_front() else {
                break;
            };
            let seq = self.next_seq;
            self.next_seq = self.next_seq.wrapping_add(1);
            self.flight.push(InFlight {
                seq,
                msg,
                sends: 0,
                next_at: now,
                rate_retries,
            });
        }
        self.flight.retain_mut(|f| {
            if f.next_at > now {
                return true;
            }
            let Some(body) = f.msg.body(f.seq) else {
                failed.push((
                    f.msg.clone(),
                    Undelivered::Refused(RejectReason::InvalidText),
                ));
                return false;
            };
            out.push(body);
            f.next_at = now + retry_delay(f.sends);
            f.sends += 1;
            true
        });
        (out, failed)
    }

    /// The server accepted message `seq`: returns it (once).
    pub fn ack(&mut self, seq: u32) -> Option<Outgoing> {
        let i = self.flight.iter().position(|f| f.seq == seq)?;
        Some(self.flight.remove(i).msg)
    }

    /// The server refused message `seq`: given up, or (rate limited) held back
    /// and tried again later.
    pub fn reject(&mut self, seq: u32, reason: RejectReason, now: Instant) -> Option<Failure> {
        let i = self.flight.iter().position(|f| f.seq == seq)?;
        let f = &mut self.flight[i];
        if reason == RejectReason::RateLimited && f.rate_retries < MAX_RATE_RETRIES {
            f.rate_retries += 1;
            f.sends = 0;
            f.next_at = now + RATE_BACKOFF;
            return None;
        }
        let f = self.flight.remove(i);
        Some((f.msg, Undelivered::Refused(reason)))
    }

    /// Contact is lost: send nothing (and give nothing up) until
    /// [`OutgoingQueue::back`].
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// A member again: what is unacknowledged is sent again at once, under
    /// the same numbers (the server's at-most-once state goes on across a
    /// resume, so a message it forwarded before is acknowledged, not repeated).
    pub fn back(&mut self, now: Instant) {
        self.held = false;
        for f in &mut self.flight {
            f.sends = 0;
            f.next_at = now;
        }
    }

    /// Gives up everything (the session is over).
    pub fn cancel_all(&mut self) -> Vec<Outgoing> {
        let mut all: Vec<Outgoing> = self.flight.drain(..).map(|f| f.msg).collect();
        all.extend(self.queue.drain(..).map(|(m, _)| m));
        all
    }

    /// When [`OutgoingQueue::poll`] next has something to do.
    pub fn next_deadline(&self) -> Option<Instant> {
        if self.held {
            return None;
        }
        self.flight.iter().map(|f| f.next_at).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sealed::decode_client;

    fn seq_of(d: &[u8]) -> u32 {
        match decode_client(d).unwrap() {
            ClientMsg::Say { seq, .. }
            | ClientMsg::Me { seq, .. }
            | ClientMsg::Private { seq, .. } => seq,
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn retransmits_with_a_capped_back_off_until_answered() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        o.push(Outgoing::Say("hi".into()));
        let (d, f) = o.poll(t0);
        assert_eq!(d.len(), 1);
        assert!(f.is_empty());
        assert_eq!(seq_of(&d[0]), 1);
        // Sends at 0.25, 0.5, 1, 1.5, 2.5 s, then every 2 s: never given up.
        let waits = [250, 250, 500, 500, 1000, 2000, 2000, 2000, 2000, 2000];
        let mut at = t0;
        for (k, ms) in waits.into_iter().enumerate() {
            assert!(o.poll(at + Duration::from_millis(ms - 1)).0.is_empty());
            at += Duration::from_millis(ms);
            assert_eq!(o.next_deadline(), Some(at), "wait {k}");
            let (d, f) = o.poll(at);
            assert!(f.is_empty(), "given up at {:?}", at - t0);
            assert_eq!(d.len(), 1, "retransmission {}", k + 1);
            assert_eq!(seq_of(&d[0]), 1, "same number");
        }
        assert_eq!(at - t0, Duration::from_millis(12_500));
        assert_eq!(o.ack(1), Some(Outgoing::Say("hi".into())));
        assert!(o.is_empty());
        assert_eq!(o.next_deadline(), None);
    }

    #[test]
    fn a_late_poll_waits_the_full_delay_from_the_send() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        o.push(Outgoing::Say("hi".into()));
        o.poll(t0);
        let late = t0 + Duration::from_secs(30);
        assert_eq!(o.poll(late).0.len(), 1);
        assert_eq!(o.next_deadline(), Some(late + Duration::from_millis(250)));
        assert_eq!(retry_delay(usize::MAX), MAX_RETRY_DELAY);
    }

    #[test]
    fn ack_stops_it_and_numbers_go_up() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        o.push(Outgoing::Say("a".into()));
        o.push(Outgoing::Private {
            to: "bob".into(),
            text: "b".into(),
        });
        let (d, _) = o.poll(t0);
        assert_eq!(d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(o.ack(1), Some(Outgoing::Say("a".into())));
        assert!(o.ack(2).is_some());
        assert_eq!(o.ack(2), None, "once");
        assert!(o.is_empty());
        assert_eq!(o.next_deadline(), None);
        o.push(Outgoing::Say("c".into()));
        assert_eq!(seq_of(&o.poll(t0).0[0]), 3);
    }

    #[test]
    fn window_limits_what_is_in_flight() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        for i in 0..WINDOW + 3 {
            o.push(Outgoing::Say(format!("m{i}")));
        }
        assert_eq!(o.poll(t0).0.len(), WINDOW);
        o.ack(1);
        o.ack(2);
        let (d, _) = o.poll(t0);
        assert_eq!(d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(), [9, 10]);
    }

    #[test]
    fn refusals_and_rate_limit_back_off() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        o.push(Outgoing::Say("x".into()));
        o.push(Outgoing::Say("y".into()));
        o.poll(t0);
        let f = o.reject(1, RejectReason::InvalidText, t0);
        assert_eq!(
            f,
            Some((
                Outgoing::Say("x".into()),
                Undelivered::Refused(RejectReason::InvalidText)
            ))
        );
        assert_eq!(
            o.reject(1, RejectReason::InvalidText, t0),
            None,
            "unknown seq"
        );
        // Rate limited: held back, then sent again with the same number.
        assert_eq!(o.reject(2, RejectReason::RateLimited, t0), None);
        o.push(Outgoing::Say("z".into()));
        assert!(
            o.poll(t0).0.is_empty(),
            "nothing new overtakes a backed-off message"
        );
        let (d, _) = o.poll(t0 + RATE_BACKOFF);
        assert_eq!(d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(), [2]);
        let (d, _) = o.poll(t0 + RATE_BACKOFF);
        assert_eq!(d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(), [3]);
        for _ in 1..MAX_RATE_RETRIES {
            assert_eq!(o.reject(2, RejectReason::RateLimited, t0), None);
        }
        assert!(o.reject(2, RejectReason::RateLimited, t0).is_some());
    }

    #[test]
    fn held_while_reconnecting_then_resent_under_the_same_numbers() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new();
        o.push(Outgoing::Say("a".into()));
        o.push(Outgoing::Me("waves".into()));
        o.push(Outgoing::Say("c".into()));
        o.poll(t0);
        o.ack(1);
        assert_eq!(o.lowest_unacked(), 2);
        o.hold();
        assert_eq!(o.next_deadline(), None);
        assert!(
            o.poll(t0 + Duration::from_secs(60)).0.is_empty(),
            "held: no give-up"
        );
        o.back(t0 + Duration::from_secs(60));
        let (d, f) = o.poll(t0 + Duration::from_secs(60));
        assert!(f.is_empty());
        assert_eq!(d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(), [2, 3]);
        assert_eq!(
            decode_client(&d[0]).unwrap(),
            ClientMsg::Me {
                seq: 2,
                text: "waves"
            }
        );
        o.ack(2);
        o.ack(3);
        assert_eq!(o.lowest_unacked(), 4, "the next new number");
        assert!(o.is_empty());
    }
}
