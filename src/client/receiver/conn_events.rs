//! What the connection tells the receiver: a member's bodies, a reconnect
//! (`-- reconnecting…`, the sender holds its messages), a WELCOME after it,
//! a refusal, and the end of the session (BYE, lost contact for good, the
//! server's key changed, or the LEAVE answered).

use super::ReceiverProcess;
use crate::client::code;
use crate::client::conn::{End, Event};
use crate::client::lang::error_text;
use crate::client::link::ToSender;
use crate::client::login::Welcome;
use crate::client::reasons::{self, Fatal};
use crate::client::render::{self, Notice};
use crate::client::tally::SeqTracker;
use crate::protocol::sealed::{decode_server, ServerMsg};
use std::time::Instant;

impl ReceiverProcess {
    pub(super) fn conn_event(&mut self, ev: Event) {
        let now = Instant::now();
        match ev {
            // The key is pinned from the first login on: never asked again.
            Event::VerifyKey(_) => self.conn.key_checked(now, false),
            Event::Body(body) => self.on_body(&body),
            Event::Reconnecting {
                next_attempt_at, ..
            } => {
                self.who = None;
                if !self.reconnecting {
                    self.reconnecting = true;
                    self.tell_sender(ToSender::Holding);
                }
                let at = render::local_hhmmss_after(next_attempt_at.saturating_duration_since(now));
                self.notice(Notice::Reconnecting(&at));
            }
            Event::Welcome { body, .. } => {
                if let Some(w) = Welcome::decode(&body) {
                    self.name = w.name.clone();
                    self.welcome = w;
                }
                // A new session: its event numbers start at 1.
                self.seq = SeqTracker::new();
                self.reconnecting = false;
                self.tell_sender(ToSender::Back);
                self.notice(Notice::Rejoined);
            }
            Event::Refused { body } => {
                let reason = match decode_server(&body) {
                    Ok(ServerMsg::Refused(r)) => reasons::refusal(self.lang, &self.name, &r),
                    _ => String::new(),
                };
                let msg = reasons::fatal_line(
                    self.lang,
                    &Fatal::CannotJoin {
                        name: &self.name,
                        reason: &reason,
                        again: true,
                    },
                );
                self.tell_sender(ToSender::Leaving);
                self.end(code::FAIL, Some(msg));
            }
            Event::Ended(end) => self.ended(end),
        }
    }

    fn ended(&mut self, end: End) {
        if let Some(code) = self.leaving {
            if end == End::Left {
                self.notice(Notice::YouLeft);
            }
            return self.end(code, None);
        }
        self.tell_sender(ToSender::Leaving);
        let msg = match end {
            End::Bye { body } => match decode_server(&body) {
                Ok(ServerMsg::Bye {
                    reason,
                    missed,
                    text,
                }) => reasons::fatal_line(
                    self.lang,
                    &Fatal::Bye {
                        reason,
                        text,
                        missed,
                    },
                ),
                _ => String::new(),
            },
            End::KeyChanged { key, pinned } => {
                error_text(self.lang, &self.trust.changed_error(&key, &pinned))
            }
            _ => reasons::fatal_line(
                self.lang,
                &Fatal::LostContact {
                    server: &self.server_text,
                },
            ),
        };
        self.end(code::FAIL, Some(msg));
    }
}
