//! The client's side of a version-2 connection as a pure state machine
//! (PROTOCOL.md, "State machines", "Rekey", "Stateless reset"; issue 10's
//! reconnect): datagrams, time and the caller's decisions in; datagrams to
//! send and events out. No sockets, no clock reads; randomness (session ids,
//! jitter) comes from the function given to [`Conn::connect`].
//!
//! * The handshake: INIT resent on a schedule, COOKIE → a new INIT, RESPONSE
//!   → the server's key goes to the caller ([`Event::VerifyKey`]) and nothing
//!   is sent until it answers ([`Conn::key_checked`]); from then on that key
//!   is pinned for every rekey and reconnect.
//! * Inside the session: JOIN (or RESUME) until WELCOME or REFUSED, then the
//!   caller's bodies ([`Conn::send`]), keepalives, the rekey, path challenges
//!   answered. Every client datagram is sealed here (`channel`).
//! * Outside the sealed channel only a COOKIE and a RESET with the token of
//!   the handshake are believed; an ICMP error ends only a first login.
//! * After a first WELCOME, silence, a valid RESET, a restart notice (BYE 3)
//!   or an expired session lead to [`Event::Reconnecting`], attempts with a
//!   jittered backoff (`schedule`), and a RESUME with the ticket.
//!
//! The bodies of JOIN, RESUME, KEEPALIVE and LEAVE and the few fields of
//! WELCOME, REFUSED and BYE the machine needs come through a [`BodyCodec`],
//! so that the codec of the sealed bodies plugs in; every other body is
//! passed through as bytes ([`Event::Body`]).

mod body;
mod channel;
mod event;
mod inbound;
#[cfg(test)]
mod reconnect_tests;
mod schedule;
mod sealed_bodies;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod trust;

pub use body::{BodyCodec, Progress, Resume, ServerBody};
pub use event::{Cause, End, Event, NotSent, Stats};
pub use schedule::BACKOFF_CAP;
pub use sealed_bodies::SealedBodies;
pub use trust::{Pin, ServerTrust};

use crate::client::{LEAVE_RESEND, LEAVE_WAIT};
use crate::session::{
    clear_kind, kind, ClientHandshake, Established, SealError, SessionId, MAX_BODY,
};
use channel::{Channel, Which};
use schedule::{backoff, Resend};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A first login (handshake, then JOIN until WELCOME or REFUSED) with no
/// success within this long is given up.
pub const LOGIN_TIMEOUT: Duration = Duration::from_millis(4500);
/// One reconnect attempt (handshake, then RESUME or JOIN) is given up after
/// this long, and the next one comes after the backoff.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(4500);
/// The member timeout assumed until a WELCOME states one.
const DEFAULT_MEMBER_TIMEOUT: Duration = Duration::from_secs(30);
/// BYE reasons the machine acts on (PROTOCOL.md, "BYE").
const BYE_LEFT: u8 = 0;
const BYE_RESTARTING: u8 = 3;

enum Phase {
    /// Handshake in progress.
    Handshake { hs: ClientHandshake, resend: Resend },
    /// Waiting for the caller's verdict on the first server key.
    Verify { est: Box<Established> },
    /// JOIN or RESUME sent; waiting for WELCOME or REFUSED.
    Joining { body: Vec<u8>, resend: Resend },
    /// REFUSED: waiting for the caller's next [`Conn::join`].
    Refused,
    /// A member.
    Member,
    /// LEAVE sent.
    Leaving { resend_at: Instant, until: Instant },
    /// Between two reconnect attempts.
    Waiting { next_attempt_at: Instant },
    /// Over.
    Ended,
}

/// One client connection to one server.
pub struct Conn<C: BodyCodec> {
    codec: C,
    random: Box<dyn FnMut() -> u64 + Send>,
    reconnect_timeout: Option<Duration>,
    phase: Phase,
    channel: Option<Channel>,
    /// The server key trusted at the first handshake.
    pinned: Option<[u8; 32]>,
    /// Has any WELCOME come (reconnecting is only for then)?
    joined_once: bool,
    ticket: Vec<u8>,
    /// The epoch of the last WELCOME (for a RESUME).
    epoch: u32,
    /// The name of the last JOIN.
    name: String,
    /// The next join is a RESUME (after lost contact with a ticket).
    resume_next: bool,
    timeout: Duration,
    progress: Progress,
    /// The current login or attempt ends unsuccessfully then.
    attempt_deadline: Instant,
    /// When contact was lost (while reconnecting).
    lost_since: Option<Instant>,
    /// Failed attempts of this reconnect.
    attempts: u32,
    /// Why the reconnect in progress began.
    cause: Cause,
    transmits: VecDeque<Vec<u8>>,
    events: VecDeque<Event>,
    stats: Stats,
}

impl<C: BodyCodec> Conn<C> {
    /// Starts the first login as `name`: an INIT is ready to send.
    /// `random` gives fresh random numbers (from the OS random source);
    /// `reconnect_timeout` is when a reconnect gives up (`None`: never).
    pub fn connect(
        codec: C,
        name: &str,
        reconnect_timeout: Option<Duration>,
        random: Box<dyn FnMut() -> u64 + Send>,
        now: Instant,
    ) -> Conn<C> {
        let mut conn = Conn {
            codec,
            random,
            reconnect_timeout,
            phase: Phase::Ended,
            channel: None,
            pinned: None,
            joined_once: false,
            ticket: Vec::new(),
            epoch: 0,
            name: name.to_string(),
            resume_next: false,
            timeout: DEFAULT_MEMBER_TIMEOUT,
            progress: Progress::default(),
            attempt_deadline: now + LOGIN_TIMEOUT,
            lost_since: None,
            attempts: 0,
            cause: Cause::Silence,
            transmits: VecDeque::new(),
            events: VecDeque::new(),
            stats: Stats::default(),
        };
        conn.start_handshake(now);
        conn
    }

    /// The next datagram to send, if any (to the server, on the one socket).
    pub fn poll_transmit(&mut self) -> Option<Vec<u8>> {
        self.transmits.pop_front()
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Conn::on_timeout`] next has something to do (`None`: ended,
    /// or waiting for the caller).
    pub fn next_timeout(&self) -> Option<Instant> {
        let give_up = self
            .lost_since
            .zip(self.reconnect_timeout)
            .map(|(since, t)| since + t);
        let channel = self.channel.as_ref();
        let t = match &self.phase {
            Phase::Handshake { resend, .. } => Some(resend.next().min(self.attempt_deadline)),
            Phase::Joining { resend, .. } => Some(resend.next().min(self.attempt_deadline)),
            Phase::Verify { .. } | Phase::Refused | Phase::Ended => None,
            Phase::Member => channel.map(|c| {
                let keepalive = c.last_sent + self.timeout / 3;
                let silence = c.last_heard + self.timeout;
                keepalive.min(silence).min(c.next_deadline())
            }),
            Phase::Leaving { resend_at, until } => Some((*resend_at).min(*until)),
            Phase::Waiting { next_attempt_at } => Some(*next_attempt_at),
        };
        match (t, give_up) {
            (Some(t), Some(g)) => Some(t.min(g)),
            (t, g) => t.or(g).filter(|_| !matches!(self.phase, Phase::Ended)),
        }
    }

    /// Is it a member now (bodies can be sent)?
    pub fn is_member(&self) -> bool {
        matches!(self.phase, Phase::Member)
    }

    /// Datagrams dropped so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// What the caller knows of the room now (for the next KEEPALIVE and RESUME).
    pub fn set_progress(&mut self, progress: Progress) {
        self.progress = progress;
    }

    /// A datagram from the server's address.
    pub fn on_datagram(&mut self, now: Instant, datagram: &[u8]) {
        if matches!(self.phase, Phase::Ended) {
            return;
        }
        match clear_kind(datagram) {
            Some(kind::COOKIE) => self.on_cookie(now, datagram),
            Some(kind::RESPONSE) => self.on_response(now, datagram),
            Some(kind::DATA) => self.on_data(now, datagram),
            Some(kind::RESET) => self.on_reset(now, datagram),
            _ => self.stats.malformed += 1,
        }
    }

    /// An ICMP error on the socket (connection refused): the end of a first
    /// login; otherwise nothing (anyone can forge one).
    pub fn on_unreachable(&mut self, _now: Instant) {
        let logging_in = matches!(
            self.phase,
            Phase::Handshake { .. } | Phase::Verify { .. } | Phase::Joining { .. }
        );
        if logging_in && !self.joined_once {
            self.end(End::Unreachable);
        } else {
            self.stats.icmp_errors += 1;
        }
    }

    /// The caller's verdict on the key of [`Event::VerifyKey`].
    pub fn key_checked(&mut self, now: Instant, trusted: bool) {
        let Phase::Verify { .. } = self.phase else {
            return;
        };
        let Phase::Verify { est } = std::mem::replace(&mut self.phase, Phase::Ended) else {
            return;
        };
        if trusted {
            self.pinned = Some(est.server_key);
            self.sealed(now, *est);
        } else {
            self.end(End::KeyRejected);
        }
    }

    /// Asks for `name` after a REFUSED (in the same session, or in a new
    /// one if the server forgot it). Returns false when not waiting for a name.
    pub fn join(&mut self, now: Instant, name: &str) -> bool {
        if !matches!(self.phase, Phase::Refused) {
            return false;
        }
        self.name = name.to_string();
        self.resume_next = false;
        self.attempt_deadline = now + self.attempt_timeout();
        if self.channel.is_some() {
            self.send_join(now);
        } else {
            self.start_handshake(now);
        }
        true
    }

    /// Seals one body (SAY, WHO, NACK …) for the server.
    pub fn send(&mut self, now: Instant, body: &[u8]) -> Result<(), NotSent> {
        if body.is_empty() || body.len() > MAX_BODY {
            return Err(NotSent::BadLength);
        }
        if !self.is_member() {
            return Err(NotSent::NotMember);
        }
        self.seal_and_send(now, Which::Current, body);
        Ok(())
    }

    /// Leaves: LEAVE until BYE, a valid RESET, or the leave's wait is over.
    /// Without a session, the end comes at once.
    pub fn leave(&mut self, now: Instant) {
        match self.phase {
            Phase::Member | Phase::Joining { .. } | Phase::Refused if self.channel.is_some() => {
                let body = self.codec.leave();
                self.seal_and_send(now, Which::Current, &body);
                self.phase = Phase::Leaving {
                    resend_at: now + LEAVE_RESEND,
                    until: now + LEAVE_WAIT,
                };
            }
            Phase::Leaving { .. } | Phase::Ended => {}
            _ => self.end(End::Left),
        }
    }

    /// Time passed: resends, keepalives, rekeys, timeouts, attempts.
    pub fn on_timeout(&mut self, now: Instant) {
        if let (Some(since), Some(t)) = (self.lost_since, self.reconnect_timeout) {
            if now >= since + t {
                return self.end(End::GaveUp);
            }
        }
        let late = now >= self.attempt_deadline;
        match &mut self.phase {
            Phase::Handshake { .. } | Phase::Joining { .. } if late => self.attempt_failed(now),
            Phase::Handshake { hs, resend } => {
                if resend.due(now) {
                    self.transmits.push_back(hs.init_datagram().to_vec());
                }
            }
            Phase::Joining { body, resend } => {
                if resend.due(now) {
                    let body = body.clone();
                    self.seal_and_send(now, Which::Current, &body);
                }
            }
            Phase::Member => self.member_timers(now),
            Phase::Leaving { until, .. } if now >= *until => self.end(End::Left),
            Phase::Leaving { resend_at, .. } => {
                if now >= *resend_at {
                    *resend_at = now + LEAVE_RESEND;
                    let body = self.codec.leave();
                    self.seal_and_send(now, Which::Current, &body);
                }
            }
            Phase::Waiting { next_attempt_at } => {
                if now >= *next_attempt_at {
                    self.attempt_deadline = now + ATTEMPT_TIMEOUT;
                    self.start_handshake(now);
                }
            }
            Phase::Verify { .. } | Phase::Refused | Phase::Ended => {}
        }
    }

    fn member_timers(&mut self, now: Instant) {
        let Some(c) = self.channel.as_mut() else {
            return;
        };
        if now >= c.last_heard + self.timeout {
            return self.lose(now, Cause::Silence);
        }
        if c.is_expired(now) {
            return self.lose(now, Cause::Expired);
        }
        let random = &mut self.random;
        if let Some(d) = c.rekey_work(now, || fresh_id(random)) {
            self.transmits.push_back(d);
        }
        if now >= c.last_sent + self.timeout / 3 {
            let body = self.codec.keepalive(self.progress.last_event);
            self.seal_and_send(now, Which::Current, &body);
        }
    }

    fn attempt_timeout(&self) -> Duration {
        if self.joined_once {
            ATTEMPT_TIMEOUT
        } else {
            LOGIN_TIMEOUT
        }
    }

    /// A new handshake with a fresh client id; the INIT is queued.
    fn start_handshake(&mut self, now: Instant) {
        self.channel = None;
        let hs = ClientHandshake::new(fresh_id(&mut self.random));
        self.transmits.push_back(hs.init_datagram().to_vec());
        self.phase = Phase::Handshake {
            hs,
            resend: Resend::new(now),
        };
    }

    /// The handshake is done and the key trusted: JOIN or RESUME.
    fn sealed(&mut self, now: Instant, est: Established) {
        self.channel = Some(Channel::new(est.session, now));
        self.send_join(now);
    }

    fn send_join(&mut self, now: Instant) {
        let body = if self.resume_next {
            self.codec.resume(&Resume {
                ticket: &self.ticket,
                epoch: self.epoch,
                last_room_seq: self.progress.last_room_seq,
                lowest_unacked: self.progress.lowest_unacked,
            })
        } else {
            self.codec.join(&self.name)
        };
        self.seal_and_send(now, Which::Current, &body);
        self.phase = Phase::Joining {
            body,
            resend: Resend::new(now),
        };
    }

    fn seal_and_send(&mut self, now: Instant, which: Which, body: &[u8]) {
        let Some(c) = self.channel.as_mut() else {
            return;
        };
        match c.seal(which, body, now) {
            Ok(d) => self.transmits.push_back(d),
            // The caller's bodies were checked; 2^60 datagrams on one key
            // cannot happen before the session expires.
            Err(SealError::BadLength | SealError::Exhausted) => {}
        }
    }

    /// Contact lost after a WELCOME: wait, then attempt again.
    fn lose(&mut self, now: Instant, cause: Cause) {
        self.channel = None;
        self.lost_since.get_or_insert(now);
        self.attempts = 0;
        self.resume_next = !self.ticket.is_empty();
        self.cause = cause;
        self.wait_for_attempt(now);
    }

    /// The login or attempt got no WELCOME or REFUSED in time.
    fn attempt_failed(&mut self, now: Instant) {
        if !self.joined_once {
            return self.end(End::NoAnswer);
        }
        self.attempts += 1;
        self.wait_for_attempt(now);
    }

    fn wait_for_attempt(&mut self, now: Instant) {
        self.channel = None;
        let next_attempt_at = now + backoff(self.attempts, (self.random)());
        self.phase = Phase::Waiting { next_attempt_at };
        self.events.push_back(Event::Reconnecting {
            next_attempt_at,
            cause: self.cause,
        });
    }

    fn end(&mut self, end: End) {
        self.phase = Phase::Ended;
        self.channel = None;
        self.lost_since = None;
        self.events.push_back(Event::Ended(end));
    }
}

/// A random session id, never 0.
fn fresh_id(random: &mut Box<dyn FnMut() -> u64 + Send>) -> SessionId {
    loop {
        let id = random();
        if id != 0 {
            return id;
        }
    }
}
