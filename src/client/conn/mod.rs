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

mod channel;
mod schedule;
#[cfg(test)]
mod test_server;
#[cfg(test)]
mod tests;
mod trust;

pub use schedule::BACKOFF_CAP;
pub use trust::{Pin, ServerTrust};

use crate::client::{LEAVE_RESEND, LEAVE_WAIT};
use crate::session::{
    body_type, clear_kind, kind, ClientHandshake, Established, HandshakeError, OpenError,
    SealError, SessionId, MAX_BODY,
};
use channel::{Channel, Which};
use schedule::{backoff, Resend};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// A first login (handshake, then JOIN until WELCOME or REFUSED) with no
/// success within this long is given up, as in version 1.
pub const LOGIN_TIMEOUT: Duration = Duration::from_millis(4500);
/// One reconnect attempt (handshake, then RESUME or JOIN) is given up after
/// this long, and the next one comes after the backoff.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(4500);
/// The member timeout assumed until a WELCOME states one.
const DEFAULT_MEMBER_TIMEOUT: Duration = Duration::from_secs(30);
/// BYE reasons the machine acts on (PROTOCOL.md, "BYE").
const BYE_LEFT: u8 = 0;
const BYE_RESTARTING: u8 = 3;

/// The bodies the connection makes and the few server bodies it reads.
pub trait BodyCodec {
    /// A JOIN body asking for `name`.
    fn join(&self, name: &str) -> Vec<u8>;
    /// A RESUME body.
    fn resume(&self, resume: &Resume<'_>) -> Vec<u8>;
    /// A KEEPALIVE body.
    fn keepalive(&self, last_event: u32) -> Vec<u8>;
    /// A LEAVE body.
    fn leave(&self) -> Vec<u8>;
    /// What a server body is, as far as the connection cares.
    fn classify(&self, body: &[u8]) -> ServerBody;
}

/// The fields of a RESUME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    /// The ticket of the last WELCOME (opaque).
    pub ticket: &'a [u8],
    /// The room sequence of the last room message shown.
    pub last_room_seq: u64,
    /// The lowest message number not yet acknowledged.
    pub lowest_unacked: u32,
}

/// A server body as the connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerBody {
    /// WELCOME.
    Welcome {
        /// The member timeout in milliseconds.
        timeout_ms: u32,
        /// The resume ticket (empty: the server does not serve RESUME).
        ticket: Vec<u8>,
        /// Flag bit 1: it answers a RESUME.
        resumed: bool,
    },
    /// REFUSED (of any reason).
    Refused,
    /// BYE with its reason.
    Bye {
        /// The reason byte.
        reason: u8,
    },
    /// Anything else (the caller's business), or malformed.
    Other,
}

/// What the caller knows of the room, for KEEPALIVE and RESUME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The highest event number received in order (0 if none).
    pub last_event: u32,
    /// The room sequence of the last room message shown (0 if none).
    pub last_room_seq: u64,
    /// The lowest message number not yet acknowledged.
    pub lowest_unacked: u32,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            last_event: 0,
            last_room_seq: 0,
            lowest_unacked: 1,
        }
    }
}

/// Why a reconnect began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing authenticated came for the member timeout.
    Silence,
    /// A RESET with the session's token: the server forgot the session.
    Reset,
    /// BYE 3: the server is restarting.
    Restarting,
    /// The session got too old to be used and no rekey succeeded.
    Expired,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// An ICMP error (connection refused) during the first login.
    Unreachable,
    /// No WELCOME or REFUSED within [`LOGIN_TIMEOUT`] at the first login.
    NoAnswer,
    /// The caller did not trust the server's key ([`Conn::key_checked`]).
    KeyRejected,
    /// The server now has another key than the one trusted at the first login.
    KeyChanged {
        /// The key it has now.
        key: [u8; 32],
        /// The key trusted before.
        pinned: [u8; 32],
    },
    /// A BYE that does not mean "come back" (removed, closing, replaced).
    Bye {
        /// Its body.
        body: Vec<u8>,
    },
    /// The LEAVE was answered by BYE or a valid RESET, or its wait is over.
    Left,
    /// No reconnect succeeded within the reconnect timeout.
    GaveUp,
}

/// What the caller learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first handshake gave this server key: check it against the pin
    /// (see [`ServerTrust`]) and answer with [`Conn::key_checked`].
    VerifyKey([u8; 32]),
    /// WELCOME (also after a reconnect).
    Welcome {
        /// Its body.
        body: Vec<u8>,
        /// It answers a RESUME.
        resumed: bool,
    },
    /// REFUSED: the session stays; [`Conn::join`] may try another name.
    Refused {
        /// Its body.
        body: Vec<u8>,
    },
    /// Any other server body while a member.
    Body(Vec<u8>),
    /// Contact is lost or an attempt failed; the next attempt starts then.
    Reconnecting {
        /// When the next attempt starts.
        next_attempt_at: Instant,
        /// Why the reconnect began.
        cause: Cause,
    },
    /// The end: nothing more is sent.
    Ended(End),
}

/// Why a body was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// Not a member now (logging in, reconnecting, leaving or ended).
    NotMember,
    /// Empty or longer than [`MAX_BODY`].
    BadLength,
}

/// Datagrams dropped, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Not a datagram of this protocol, or of a kind a client never takes.
    pub malformed: u64,
    /// Failed authentication (DATA, RESPONSE).
    pub forged: u64,
    /// Replayed or too old.
    pub replays: u64,
    /// DATA for no session of ours, COOKIE or RESPONSE not expected now.
    pub unexpected: u64,
    /// RESET without the token of a session of ours.
    pub ignored_resets: u64,
    /// ICMP errors that ended nothing.
    pub icmp_errors: u64,
}

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
    random: Box<dyn FnMut() -> u64>,
    reconnect_timeout: Option<Duration>,
    phase: Phase,
    channel: Option<Channel>,
    /// The server key trusted at the first handshake.
    pinned: Option<[u8; 32]>,
    /// Has any WELCOME come (reconnecting is only for then)?
    joined_once: bool,
    ticket: Vec<u8>,
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
        random: Box<dyn FnMut() -> u64>,
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

    fn on_cookie(&mut self, now: Instant, datagram: &[u8]) {
        let Phase::Handshake { hs, resend } = &mut self.phase else {
            self.stats.unexpected += 1;
            return;
        };
        match hs.on_cookie(datagram) {
            Ok(()) => {
                self.transmits.push_back(hs.init_datagram().to_vec());
                *resend = Resend::new(now);
            }
            Err(_) => self.stats.unexpected += 1,
        }
    }

    fn on_response(&mut self, now: Instant, datagram: &[u8]) {
        let Phase::Handshake { hs, resend } = &mut self.phase else {
            self.stats.unexpected += 1;
            return;
        };
        match hs.on_response(datagram, self.pinned.as_ref(), now) {
            Ok(est) if self.pinned.is_some() => self.sealed(now, est),
            Ok(est) => {
                self.events.push_back(Event::VerifyKey(est.server_key));
                self.phase = Phase::Verify { est: Box::new(est) };
            }
            Err(HandshakeError::Forged) => {
                // A forged RESPONSE costs a retry: a new INIT, same cookie.
                self.stats.forged += 1;
                self.transmits.push_back(hs.init_datagram().to_vec());
                *resend = Resend::new(now);
            }
            Err(HandshakeError::WrongKey(key)) => {
                let pinned = self.pinned.unwrap_or_default();
                self.end(End::KeyChanged { key, pinned });
            }
            Err(HandshakeError::Ignored | HandshakeError::Noise) => self.stats.unexpected += 1,
        }
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

    fn on_data(&mut self, now: Instant, datagram: &[u8]) {
        let Some(c) = self.channel.as_mut() else {
            self.stats.unexpected += 1;
            return;
        };
        let (body, which) = match c.open(datagram) {
            Ok(opened) => opened,
            Err(e) => {
                match e {
                    OpenError::Malformed => self.stats.malformed += 1,
                    OpenError::WrongSession => self.stats.unexpected += 1,
                    OpenError::Replay => self.stats.replays += 1,
                    OpenError::Forged => self.stats.forged += 1,
                }
                return;
            }
        };
        c.last_heard = now;
        match body.first().copied() {
            Some(body_type::PATH_CHALLENGE) if body.len() >= 9 => {
                let mut answer = [0u8; 9];
                answer[0] = body_type::PATH_RESPONSE;
                answer[1..].copy_from_slice(&body[1..9]);
                self.seal_and_send(now, which, &answer);
            }
            Some(body_type::REKEY_RESPONSE) => {
                let pin = self.pinned.unwrap_or_default();
                if let Err(HandshakeError::WrongKey(key)) =
                    c.on_rekey_response(which, &body, &pin, now)
                {
                    self.end(End::KeyChanged { key, pinned: pin });
                }
            }
            _ => self.on_body(now, body),
        }
    }

    fn on_body(&mut self, now: Instant, body: Vec<u8>) {
        let what = self.codec.classify(&body);
        match (&self.phase, what) {
            (
                Phase::Joining { .. },
                ServerBody::Welcome {
                    timeout_ms,
                    ticket,
                    resumed,
                },
            ) => {
                self.joined_once = true;
                self.lost_since = None;
                self.attempts = 0;
                self.resume_next = false;
                self.ticket = ticket;
                if timeout_ms > 0 {
                    self.timeout = Duration::from_millis(timeout_ms.into());
                }
                self.phase = Phase::Member;
                self.events.push_back(Event::Welcome { body, resumed });
            }
            (Phase::Joining { .. }, ServerBody::Refused) => {
                self.lost_since = None;
                self.phase = Phase::Refused;
                self.events.push_back(Event::Refused { body });
            }
            (Phase::Member, ServerBody::Bye { reason }) if reason == BYE_RESTARTING => {
                self.lose(now, Cause::Restarting)
            }
            (Phase::Leaving { .. }, ServerBody::Bye { reason }) if reason == BYE_LEFT => {
                self.end(End::Left)
            }
            (Phase::Member | Phase::Leaving { .. }, ServerBody::Bye { .. }) => {
                self.end(End::Bye { body })
            }
            (Phase::Member | Phase::Leaving { .. }, ServerBody::Other) => {
                self.events.push_back(Event::Body(body))
            }
            // A WELCOME again (our JOIN was resent), or nothing for this state.
            _ => self.stats.unexpected += 1,
        }
    }

    fn on_reset(&mut self, now: Instant, datagram: &[u8]) {
        if !self.channel.as_ref().is_some_and(|c| c.is_reset(datagram)) {
            self.stats.ignored_resets += 1;
            return;
        }
        match self.phase {
            Phase::Leaving { .. } => self.end(End::Left),
            Phase::Member => self.lose(now, Cause::Reset),
            // The server forgot the session before a WELCOME: the next
            // join() needs a new handshake.
            Phase::Refused => self.channel = None,
            // Before a WELCOME, within the login's or attempt's deadline.
            _ => self.start_handshake(now),
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
fn fresh_id(random: &mut Box<dyn FnMut() -> u64>) -> SessionId {
    loop {
        let id = random();
        if id != 0 {
            return id;
        }
    }
}
