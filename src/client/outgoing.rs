//! The sender's messages until the server acknowledges them: sequence numbers,
//! retransmission, back-off on "rate limited", new numbers after a re-join.
//!
//! Pure: time is an argument, datagrams and failures are return values.

use crate::client::render::Undelivered;
use crate::protocol::{ClientMsg, RejectReason, Token};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// Waits after the 1st, 2nd, … transmission of a message; after the last one
/// the message is given up ("not delivered"). Sends at 0, 0.3, 0.9 and 2.1 s;
/// given up at 4.5 s.
pub const RETRY_DELAYS_MS: [u64; 4] = [300, 600, 1200, 2400];
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
    Private { to: String, text: String },
}

impl Outgoing {
    /// The text, for a "not delivered" notice.
    pub fn describe(&self) -> String {
        match self {
            Outgoing::Say(t) => t.clone(),
            Outgoing::Private { to, text } => format!("/msg {to} {text}"),
        }
    }

    fn datagram(&self, token: Token, seq: u32) -> Vec<u8> {
        match self {
            Outgoing::Say(text) => ClientMsg::Say { token, seq, text }.to_vec(),
            Outgoing::Private { to, text } => ClientMsg::Private {
                token,
                seq,
                to,
                text,
            }
            .to_vec(),
        }
    }
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
    token: Token,
    next_seq: u32,
    queue: VecDeque<(Outgoing, u32)>,
    flight: Vec<InFlight>,
    held: bool,
}

/// A message given up, and why.
pub type Failure = (Outgoing, Undelivered);

impl OutgoingQueue {
    pub fn new(token: Token) -> Self {
        OutgoingQueue {
            token,
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

    /// How many messages wait behind the window (not yet sent).
    pub fn backlog(&self) -> usize {
        self.queue.len()
    }

    /// Nothing queued and nothing unacknowledged.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty() && self.flight.is_empty()
    }

    /// Datagrams due now (first sends and retransmissions) and messages given up.
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
        let token = self.token;
        self.flight.retain_mut(|f| {
            if f.next_at > now {
                return true;
            }
            if f.sends == RETRY_DELAYS_MS.len() {
                failed.push((f.msg.clone(), Undelivered::NoAnswer));
                return false;
            }
            out.push(f.msg.datagram(token, f.seq));
            f.next_at = now + Duration::from_millis(RETRY_DELAYS_MS[f.sends]);
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

    /// The session is being replaced: send nothing until [`OutgoingQueue::new_token`].
    pub fn hold(&mut self) {
        self.held = true;
    }

    /// A new session: what is unacknowledged is sent again under new numbers.
    ///
    /// Numbering goes on from the old session instead of restarting at 1, so a
    /// late ACK or REJECT of the old session can never match a message of the
    /// new one (ACK and REJECT carry no token).
    pub fn new_token(&mut self, token: Token) {
        self.token = token;
        self.held = false;
        for f in self.flight.drain(..).rev() {
            self.queue.push_front((f.msg, 0));
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
    use crate::protocol::{decode_client, ClientMsg};

    fn seq_of(d: &[u8]) -> (Token, u32) {
        match decode_client(d).unwrap() {
            ClientMsg::Say { token, seq, .. } | ClientMsg::Private { token, seq, .. } => {
                (token, seq)
            }
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn retransmits_on_schedule_then_gives_up() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new(9);
        o.push(Outgoing::Say("hi".into()));
        let (d, f) = o.poll(t0);
        assert_eq!(d.len(), 1);
        assert!(f.is_empty());
        assert_eq!(seq_of(&d[0]), (9, 1));
        let mut at = t0;
        let mut sends = 1;
        for ms in RETRY_DELAYS_MS {
            assert!(o.poll(at + Duration::from_millis(ms - 1)).0.is_empty());
            at += Duration::from_millis(ms);
            assert_eq!(o.next_deadline(), Some(at));
            let (d, f) = o.poll(at);
            if sends < RETRY_DELAYS_MS.len() {
                assert_eq!(d.len(), 1, "retransmission {sends}");
                assert_eq!(seq_of(&d[0]), (9, 1), "same number");
                sends += 1;
            } else {
                assert!(d.is_empty());
                assert_eq!(f, [(Outgoing::Say("hi".into()), Undelivered::NoAnswer)]);
            }
        }
        assert_eq!(at - t0, Duration::from_millis(4500));
        assert!(o.is_empty());
    }

    #[test]
    fn ack_stops_it_and_numbers_go_up() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new(1);
        o.push(Outgoing::Say("a".into()));
        o.push(Outgoing::Private {
            to: "bob".into(),
            text: "b".into(),
        });
        let (d, _) = o.poll(t0);
        assert_eq!(d.iter().map(|d| seq_of(d).1).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(o.ack(1), Some(Outgoing::Say("a".into())));
        assert!(o.ack(2).is_some());
        assert_eq!(o.ack(2), None, "once");
        assert!(o.is_empty());
        assert_eq!(o.next_deadline(), None);
        o.push(Outgoing::Say("c".into()));
        assert_eq!(seq_of(&o.poll(t0).0[0]).1, 3);
    }

    #[test]
    fn window_limits_what_is_in_flight() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new(1);
        for i in 0..WINDOW + 3 {
            o.push(Outgoing::Say(format!("m{i}")));
        }
        assert_eq!(o.poll(t0).0.len(), WINDOW);
        o.ack(1);
        o.ack(2);
        let (d, _) = o.poll(t0);
        assert_eq!(d.iter().map(|d| seq_of(d).1).collect::<Vec<_>>(), [9, 10]);
    }

    #[test]
    fn refusals_and_rate_limit_back_off() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new(1);
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
        assert_eq!(d.iter().map(|d| seq_of(d).1).collect::<Vec<_>>(), [2]);
        let (d, _) = o.poll(t0 + RATE_BACKOFF);
        assert_eq!(d.iter().map(|d| seq_of(d).1).collect::<Vec<_>>(), [3]);
        for _ in 1..MAX_RATE_RETRIES {
            assert_eq!(o.reject(2, RejectReason::RateLimited, t0), None);
        }
        assert!(o.reject(2, RejectReason::RateLimited, t0).is_some());
    }

    #[test]
    fn rejoin_renumbers_in_order() {
        let t0 = Instant::now();
        let mut o = OutgoingQueue::new(1);
        for t in ["a", "b", "c"] {
            o.push(Outgoing::Say(t.into()));
        }
        o.poll(t0);
        o.ack(1);
        o.hold();
        assert_eq!(o.next_deadline(), None);
        assert!(
            o.poll(t0 + Duration::from_secs(60)).0.is_empty(),
            "held: no give-up"
        );
        o.new_token(2);
        let (d, f) = o.poll(t0 + Duration::from_secs(60));
        assert!(f.is_empty());
        assert_eq!(
            d.iter().map(|d| seq_of(d)).collect::<Vec<_>>(),
            [(2, 4), (2, 5)],
            "numbers go on from the old session"
        );
        let ClientMsg::Say { text, .. } = decode_client(&d[0]).unwrap() else {
            panic!()
        };
        assert_eq!(text, "b");
        assert_eq!(o.cancel_all().len(), 2);
    }
}
