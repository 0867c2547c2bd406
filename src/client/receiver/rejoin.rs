//! The session's end and renewal as the receiver sees them: a re-join after
//! the server forgot the session, and contact lost.

use super::ReceiverProcess;
use crate::client::code;
use crate::client::link::ToSender;
use crate::client::login::Step;
use crate::client::reasons::{self, Fatal};
use crate::client::render::Notice;
use crate::client::tally::SeqTracker;
use crate::protocol::ClientMsg;
use std::time::{Duration, Instant};

impl ReceiverProcess {
    pub(super) fn rejoin_step(&mut self, step: Step) {
        match step {
            Step::Send(d) => self.send(&d),
            Step::Wait => {}
            Step::Welcome(w) => {
                let now = Instant::now();
                self.rejoin = None;
                self.token = w.token;
                self.name = w.name;
                self.seq = SeqTracker::new();
                if w.timeout_ms > 0 {
                    self.timeout = Duration::from_millis(w.timeout_ms as u64);
                }
                self.last_heard = now;
                self.next_ping = now + self.timeout / 3;
                self.tell_sender(ToSender::Token(w.token));
                self.notice(Notice::Rejoined);
            }
            Step::Refused(r) => {
                let reason = reasons::refusal(self.lang, r);
                let msg = reasons::fatal_line(
                    self.lang,
                    &Fatal::CannotJoin {
                        name: &self.name,
                        reason: &reason,
                        again: true,
                    },
                );
                self.rejoin = None;
                self.tell_sender(ToSender::Leaving);
                self.end(code::FAIL, Some(msg));
            }
            Step::GiveUp => self.lost_contact(),
        }
    }

    pub(super) fn lost_contact(&mut self) {
        // The server may still hear us: one LEAVE, no waiting.
        self.send(&ClientMsg::Leave { token: self.token }.to_vec());
        self.tell_sender(ToSender::Leaving);
        let msg = reasons::fatal_line(
            self.lang,
            &Fatal::LostContact {
                server: &self.server_text,
            },
        );
        self.end(code::FAIL, Some(msg));
    }
}
