//! What a typed or piped line makes: messages (split into parts when long,
//! echoed on a terminal, at most [`HELD_LINES`] kept while reconnecting),
//! commands for the receiver, notices, and Tab completion.

use super::SenderProcess;
use crate::client::command::{parse_line, Command};
use crate::client::lines::{split_text, Piped};
use crate::client::link::ToReceiver;
use crate::client::names::Completion;
use crate::client::outgoing::Outgoing;
use crate::client::render::{self, Notice, Undelivered};
use crate::protocol::sealed::RejectReason;
use std::time::Instant;

/// While reconnecting, at most this many lines are kept to send after; more
/// are "not sent".
const HELD_LINES: usize = 100;

impl SenderProcess {
    pub(super) fn piped(&mut self, piped: Piped) {
        match piped {
            Piped::Line(line) => self.line(&line),
            Piped::Part(msg) => self.enqueue(msg),
        }
    }

    pub(super) fn line(&mut self, line: &str) {
        match parse_line(line) {
            Command::Nothing => {}
            Command::Say(text) => {
                let parts = split_text(&text);
                self.parts_notice(parts.len());
                for part in parts {
                    if self.term.is_some() {
                        let echo = render::own_said(self.lang, &self.name, part);
                        self.tell_receiver(ToReceiver::Print(echo));
                    }
                    self.enqueue(Outgoing::Say(part.to_string()));
                }
            }
            Command::Me(text) if !self.serves_me => {
                let msg = Outgoing::Me(text);
                self.not_delivered(&msg, Undelivered::Refused(RejectReason::NotSupported));
            }
            Command::Me(text) => {
                let parts = split_text(&text);
                self.parts_notice(parts.len());
                for part in parts {
                    if self.term.is_some() {
                        let echo = render::own_action(&self.name, part);
                        self.tell_receiver(ToReceiver::Print(echo));
                    }
                    self.enqueue(Outgoing::Me(part.to_string()));
                }
            }
            Command::Private { to, text } => {
                let parts = split_text(&text);
                self.parts_notice(parts.len());
                // Echoed once the server has taken it (the member may be absent).
                for part in parts {
                    self.enqueue(Outgoing::Private {
                        to: to.clone(),
                        text: part.to_string(),
                    });
                }
            }
            Command::Who => self.tell_receiver(ToReceiver::Who),
            Command::History(n) => self.tell_receiver(ToReceiver::History(n)),
            Command::Quit => self.start_draining(),
            Command::Help => self.notice(Notice::Help),
            Command::Unknown(c) => self.notice(Notice::UnknownCommand(&c)),
            Command::Usage(u) => self.notice(Notice::Usage(u)),
        }
    }

    /// Queues a message; while reconnecting, at most [`HELD_LINES`] wait,
    /// and one more is "not sent".
    pub(super) fn enqueue(&mut self, msg: Outgoing) {
        if self.queue.is_held() && self.queue.len() >= HELD_LINES {
            self.not_delivered(&msg, Undelivered::Reconnecting);
        } else {
            self.queue.push(msg);
        }
    }

    /// A line too long for one message goes in parts: say how many.
    pub(super) fn parts_notice(&mut self, parts: usize) {
        if parts > 1 {
            self.notice(Notice::SendingParts(parts));
        }
    }

    /// Tab: completes the member name before the cursor (see
    /// [`SeenNames::complete`]); the names are refreshed now and then.
    pub(super) fn complete(&mut self) {
        if self.names.refresh_due(Instant::now()) {
            self.tell_receiver(ToReceiver::RefreshNames);
        }
        let (start, word) = self.editor.word_before_cursor();
        let head = &self.editor.text()[..start];
        match self.names.complete(head, word, &self.name) {
            Completion::Insert(with) => self.editor.replace_before_cursor(start, &with),
            Completion::Candidates(list) => self.notice(Notice::Candidates(&list)),
            Completion::Nothing => {}
        }
    }
}
