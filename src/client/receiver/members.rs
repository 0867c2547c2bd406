//! What the receiver learns about the members: each event printed (a
//! mention rings the bell and is highlighted) and its names told to the
//! sender for Tab completion, and the pages of `/who`.

use super::ReceiverProcess;
use crate::client::link::ToSender;
use crate::client::names::{mentions, sort_names};
use crate::client::render::{self, Notice};
use crate::client::tally::{WhoPager, WhoStep};
use crate::protocol::sealed::{ClientMsg, Event};
use crate::session::MAX_BODY;
use std::time::Instant;

/// What a `/who` fetch is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum WhoFor {
    /// `/who`: the list is printed.
    Printing,
    /// After the welcome on a terminal: up to a screenful is printed.
    Welcome,
    /// Tab: only the names for completion.
    Completion,
}

impl ReceiverProcess {
    /// One event: printed with `stamp` (the time now, or a history line's
    /// own), and its names told to the sender for completion. A line that
    /// mentions this member, and a private message, ring the bell and show
    /// the name highlighted.
    pub(super) fn event(&mut self, stamp: &str, ev: &Event<'_>) {
        let line = render::event_line(self.lang, ev);
        let mention = match *ev {
            Event::Joined { name } => {
                self.tell_sender(ToSender::Seen(name.to_string()));
                false
            }
            Event::Left { name, .. } => {
                self.tell_sender(ToSender::Gone(name.to_string()));
                false
            }
            Event::Said(l) | Event::Me(l) => {
                self.tell_sender(ToSender::Seen(l.from.to_string()));
                mentions(l.text, &self.name)
            }
            Event::PrivateFrom { from, .. } => {
                self.tell_sender(ToSender::Seen(from.to_string()));
                true
            }
            Event::Admin { text, .. } => mentions(text, &self.name),
            Event::Gap { .. } => false,
        };
        if mention {
            self.screen.print_mention(stamp, &line, &self.name);
        } else {
            self.screen.print_at(stamp, &line);
        }
    }

    /// Starts paging the member list (the names always go to the sender,
    /// for completion).
    pub(super) fn start_who(&mut self, why: WhoFor) {
        if self.leaving.is_none() && self.conn.is_member() {
            self.who = Some(WhoPager::new(Instant::now()));
            self.who_for = why;
            self.who_step(WhoStep::Ask(0));
        }
    }

    pub(super) fn who_step(&mut self, step: WhoStep) {
        match step {
            WhoStep::Ask(start) => {
                let mut body = [0u8; MAX_BODY];
                if let Ok(n) = (ClientMsg::Who { start }).encode(&mut body) {
                    self.send_body(&body[..n]);
                }
            }
            WhoStep::Done(total, mut names) => {
                self.who = None;
                sort_names(&mut names);
                for n in &names {
                    self.tell_sender(ToSender::Seen(n.clone()));
                }
                let shown = match self.who_for {
                    WhoFor::Printing => names.len(),
                    WhoFor::Welcome => self.screen.names_in_a_screenful(&names),
                    WhoFor::Completion => return,
                };
                self.notice(Notice::Members {
                    total,
                    names: &names[..shown],
                });
            }
            WhoStep::Ignore => {}
            WhoStep::GiveUp => {
                self.who = None;
                if self.who_for == WhoFor::Printing {
                    self.notice(Notice::WhoNoAnswer);
                }
            }
        }
    }
}
