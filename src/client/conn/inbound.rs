//! The connection's receive path: COOKIE and RESPONSE during a handshake,
//! sealed DATA (path challenges, rekey answers, and the bodies the codec
//! classifies), and RESET.

use super::channel::Which;
use super::schedule::Resend;
use super::{BodyCodec, Cause, Conn, End, Event, Phase, ServerBody, BYE_LEFT, BYE_RESTARTING};
use crate::session::{body_type, HandshakeError, OpenError};
use std::time::{Duration, Instant};

impl<C: BodyCodec> Conn<C> {
    pub(super) fn on_cookie(&mut self, now: Instant, datagram: &[u8]) {
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

    pub(super) fn on_response(&mut self, now: Instant, datagram: &[u8]) {
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

    pub(super) fn on_data(&mut self, now: Instant, datagram: &[u8]) {
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
                match c.on_rekey_response(which, &body, &pin, now) {
                    // A KEEPALIVE on the new session at once, so that the
                    // server moves to it now and not at the next one (which
                    // could come after the old session's grace period).
                    Ok(()) => {
                        let body = self.codec.keepalive(self.progress.last_event);
                        self.seal_and_send(now, Which::Current, &body);
                    }
                    Err(HandshakeError::WrongKey(key)) => {
                        self.end(End::KeyChanged { key, pinned: pin })
                    }
                    Err(_) => {}
                }
            }
            _ => self.on_body(now, body),
        }
    }

    pub(super) fn on_body(&mut self, now: Instant, body: Vec<u8>) {
        let what = self.codec.classify(&body);
        match (&self.phase, what) {
            (
                Phase::Joining { .. },
                ServerBody::Welcome {
                    timeout_ms,
                    epoch,
                    ticket,
                    resumed,
                },
            ) => {
                self.joined_once = true;
                self.lost_since = None;
                self.attempts = 0;
                self.resume_next = false;
                self.ticket = ticket;
                self.epoch = epoch;
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

    pub(super) fn on_reset(&mut self, now: Instant, datagram: &[u8]) {
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
}
