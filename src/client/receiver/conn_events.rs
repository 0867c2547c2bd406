//! What the connection tells the receiver: a member's bodies, a reconnect
//! (`-- reconnecting…`, the sender holds its messages), a WELCOME after it,
//! a refusal (on a terminal a new name is asked for), and the end of the
//! session (BYE, lost contact for good, the server's key changed, or the
//! LEAVE answered).

use super::ReceiverProcess;
use crate::client::code;
use crate::client::conn::{End, Event};
use crate::client::lang::error_text;
use crate::client::link::ToSender;
use crate::client::login::Welcome;
use crate::client::reasons::{self, Fatal};
use crate::client::render::{self, Notice};
use crate::protocol::sealed::{decode_server, Refusal, ServerMsg, WelcomeFlags};
use crate::protocol::{check_name, NameError};
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
                let line = render::notice_line(self.lang, &Notice::Reconnecting(&at));
                self.screen.print_status(&line);
            }
            Event::Welcome { body, resumed } => {
                let (epoch_kept, room_seq) = match Welcome::decode(&body) {
                    Some(w) => {
                        let kept = w.epoch == self.welcome.epoch;
                        let room_seq = w.room_seq;
                        self.name = w.name.clone();
                        self.welcome = w;
                        (kept, room_seq)
                    }
                    None => (false, 0),
                };
                self.new_session(resumed, epoch_kept, room_seq);
                self.reconnecting = false;
                if self.asking_name {
                    self.asking_name = false;
                    self.screen.prompt = render::input_prompt(self.lang).into_owned();
                }
                let name = self.name.clone();
                let serves_me = self.welcome.flags.contains(WelcomeFlags::ME);
                self.tell_sender(ToSender::Back { name, serves_me });
                self.notice(Notice::Rejoined);
            }
            Event::Refused { body } => {
                let (reason, again) = match decode_server(&body) {
                    Ok(ServerMsg::Refused(r)) => (
                        reasons::refusal(self.lang, &self.name, &r),
                        matches!(
                            r,
                            Refusal::Taken { .. }
                                | Refusal::Reserved { .. }
                                | Refusal::InvalidName(_)
                        ),
                    ),
                    _ => (String::new(), false),
                };
                if again && self.screen.tty && self.parent_alive {
                    // The name was taken while we were away: ask for another.
                    let line = format!("{}: {reason}", render::escape(&self.name));
                    self.print(&line);
                    self.ask_name();
                    return;
                }
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

    /// Asks the sender for a new name; the input line shows the name prompt.
    fn ask_name(&mut self) {
        self.asking_name = true;
        self.screen.prompt = render::name_prompt(self.lang).into_owned();
        self.screen.redraw();
        self.tell_sender(ToSender::AskName);
    }

    /// A new name typed after a refusal during a reconnect: checked here
    /// first, then asked for in the same session (or a new one).
    pub(super) fn name_given(&mut self, name: &str) {
        if !self.asking_name {
            return;
        }
        let name = name.trim();
        let why = match check_name(name) {
            Ok(()) | Err(NameError::LooksLike(_)) => None,
            Err(NameError::Invalid(why)) => Some(reasons::invalid_name(self.lang, name, why)),
            Err(NameError::Reserved(word)) => Some(reasons::refusal(
                self.lang,
                name,
                &Refusal::Reserved { like: word },
            )),
        };
        if let Some(why) = why {
            self.print(&format!("{}: {why}", render::escape(name)));
            return self.ask_name();
        }
        if self.conn.join(Instant::now(), name) {
            self.name = name.to_string();
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
