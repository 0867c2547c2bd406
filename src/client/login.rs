//! The login handshake of PROTOCOL.md as a state machine (JOIN, CHALLENGE,
//! JOIN with the cookie, WELCOME or REFUSED), used before the fork with a
//! blocking socket and by the receiver for a re-join inside its poll loop.
//!
//! Pure: time is an argument; datagrams and outcomes are return values.

use crate::protocol::{ClientMsg, Cookie, RefuseReason, ServerMsg, Token, COOKIE_LEN};
use std::time::{Duration, Instant};

/// A login attempt that has had no answer for this long is given up.
pub const LOGIN_TIMEOUT: Duration = Duration::from_millis(4500);
/// The wait before the n-th resend grows by this step, up to [`MAX_RESEND_WAIT`].
const RESEND_STEP: Duration = Duration::from_millis(500);
/// The longest wait between two sends of a JOIN.
const MAX_RESEND_WAIT: Duration = Duration::from_millis(1500);

/// What the server said when it let us in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// The session token (never 0) for every later datagram.
    pub token: Token,
    /// How many members there are, us included.
    pub members: u32,
    /// The member timeout, in milliseconds.
    pub timeout_ms: u32,
    /// The name as the server registered it.
    pub name: String,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Send this datagram.
    Send(Vec<u8>),
    /// Nothing to do (an answer for another attempt, or not yet time).
    Wait,
    /// We are in (WELCOME).
    Welcome(Welcome),
    /// The server refused the name (REFUSED).
    Refused(RefuseReason),
    /// No answer within [`LOGIN_TIMEOUT`].
    GiveUp,
}

/// One login attempt for one name.
#[derive(Debug, Clone)]
pub struct Login {
    name: String,
    nonce: u64,
    prev_token: Token,
    cookie: Cookie,
    sends: u32,
    next_at: Instant,
    deadline: Instant,
}

impl Login {
    /// Starts an attempt; returns it and the first JOIN to send.
    pub fn start(name: &str, prev_token: Token, nonce: u64, now: Instant) -> (Login, Vec<u8>) {
        let mut login = Login {
            name: name.to_string(),
            nonce,
            prev_token,
            cookie: [0; COOKIE_LEN],
            sends: 0,
            next_at: now,
            deadline: now + LOGIN_TIMEOUT,
        };
        let join = login.join(now);
        (login, join)
    }

    fn join(&mut self, now: Instant) -> Vec<u8> {
        self.sends += 1;
        self.next_at = now + (RESEND_STEP * self.sends).min(MAX_RESEND_WAIT);
        ClientMsg::Join {
            nonce: self.nonce,
            prev_token: self.prev_token,
            cookie: self.cookie,
            name: &self.name,
        }
        .to_vec()
    }

    /// A datagram from the server.
    pub fn on_message(&mut self, msg: &ServerMsg<'_>, now: Instant) -> Step {
        match *msg {
            ServerMsg::Challenge { nonce, cookie } if nonce == self.nonce => {
                self.cookie = cookie;
                Step::Send(self.join(now))
            }
            ServerMsg::Refused { nonce, reason } if nonce == self.nonce => Step::Refused(reason),
            ServerMsg::Welcome {
                nonce,
                token,
                members,
                timeout_ms,
                name,
            } if nonce == self.nonce && token != 0 => Step::Welcome(Welcome {
                token,
                members,
                timeout_ms,
                name: name.to_string(),
            }),
            _ => Step::Wait,
        }
    }

    /// Time passed: resend, give up, or wait.
    pub fn on_timer(&mut self, now: Instant) -> Step {
        if now >= self.deadline {
            Step::GiveUp
        } else if now >= self.next_at {
            Step::Send(self.join(now))
        } else {
            Step::Wait
        }
    }

    /// When [`Login::on_timer`] next has something to do.
    pub fn next_wakeup(&self) -> Instant {
        self.next_at.min(self.deadline)
    }
}

/// A fresh random nonce for a login attempt.
pub fn random_nonce() -> u64 {
    getrandom::u64().unwrap_or_else(|_| {
        // No OS random source: the nonce only tells our answers from stale
        // ones, so the clock and the pid are enough.
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        t ^ ((std::process::id() as u64) << 32)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{decode_client, JOIN_SIZE};

    fn join_fields(d: &[u8]) -> (u64, Token, Cookie, String) {
        assert_eq!(d.len(), JOIN_SIZE);
        match decode_client(d).unwrap() {
            ClientMsg::Join {
                nonce,
                prev_token,
                cookie,
                name,
            } => (nonce, prev_token, cookie, name.to_string()),
            m => panic!("{m:?}"),
        }
    }

    #[test]
    fn the_cookie_round_trip() {
        let t0 = Instant::now();
        let (mut l, j) = Login::start("alice", 5, 42, t0);
        assert_eq!(join_fields(&j), (42, 5, [0; 16], "alice".into()));
        // Answers to another attempt are ignored.
        let other = ServerMsg::Challenge {
            nonce: 41,
            cookie: [1; 16],
        };
        assert_eq!(l.on_message(&other, t0), Step::Wait);
        let ch = ServerMsg::Challenge {
            nonce: 42,
            cookie: [7; 16],
        };
        let Step::Send(j2) = l.on_message(&ch, t0) else {
            panic!()
        };
        assert_eq!(join_fields(&j2), (42, 5, [7; 16], "alice".into()));
        let refused = ServerMsg::Refused {
            nonce: 1,
            reason: RefuseReason::Taken,
        };
        assert_eq!(l.on_message(&refused, t0), Step::Wait);
        let w = ServerMsg::Welcome {
            nonce: 42,
            token: 99,
            members: 3,
            timeout_ms: 30_000,
            name: "alice",
        };
        assert_eq!(
            l.on_message(&w, t0),
            Step::Welcome(Welcome {
                token: 99,
                members: 3,
                timeout_ms: 30_000,
                name: "alice".into()
            })
        );
        let refused = ServerMsg::Refused {
            nonce: 42,
            reason: RefuseReason::Taken,
        };
        assert_eq!(
            l.on_message(&refused, t0),
            Step::Refused(RefuseReason::Taken)
        );
    }

    #[test]
    fn resends_then_gives_up_within_the_timeout() {
        let t0 = Instant::now();
        let (mut l, _) = Login::start("bob", 0, 1, t0);
        let mut sends = 1;
        let now = loop {
            let now = l.next_wakeup();
            match l.on_timer(now) {
                Step::Send(_) => sends += 1,
                Step::GiveUp => break now,
                s => panic!("{s:?}"),
            }
        };
        assert_eq!(now - t0, LOGIN_TIMEOUT);
        assert!((3..=6).contains(&sends), "{sends} sends");
        assert_eq!(l.on_timer(t0), Step::Wait);
    }
}
