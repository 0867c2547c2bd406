//! What members say and ask: SAY, ME and PRIVATE (at most once, flood
//! control), and the answers paced by each member's answer budget (WHO and
//! HISTORY pages).

use super::budget::{Budget, Offer};
use super::{Broadcast, Room, Seen};
use crate::protocol::sealed::{
    ClientMsg, Event, Line, LineFlags, MessageId, RejectReason, ServerMsg, WhoPageWriter,
};
use crate::protocol::{name_key, validate_text};
use crate::session::{DATA_OVERHEAD, MAX_BODY};
use std::time::Instant;

/// An answer a member asked for, waiting for its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// The WHO_PAGE from this index.
    Who(u32),
    /// A HISTORY_PAGE.
    History {
        /// Room messages before this room sequence (0: the newest).
        before: u64,
        /// At most this many.
        max: u8,
    },
}

/// What a member said: a line for the room (`true`: an action, ME) or a
/// private message to a name.
#[derive(Debug, Clone, Copy)]
pub(super) enum Said<'a> {
    Room(bool),
    Private(&'a str),
}

/// A member's message: its number, what it is, its text, and when it came
/// (Unix milliseconds: the events' time).
#[derive(Debug, Clone, Copy)]
pub(super) struct Msg<'a> {
    pub(super) seq: u32,
    pub(super) what: Said<'a>,
    pub(super) text: &'a str,
    pub(super) unix_ms: u64,
}

impl<'a> Msg<'a> {
    /// The message of a SAY, ME or PRIVATE body.
    pub(super) fn of(body: &ClientMsg<'a>, unix_ms: u64) -> Option<Self> {
        let (seq, what, text) = match *body {
            ClientMsg::Say { seq, text } => (seq, Said::Room(false), text),
            ClientMsg::Me { seq, text } => (seq, Said::Room(true), text),
            ClientMsg::Private { seq, to, text } => (seq, Said::Private(to), text),
            _ => return None,
        };
        Some(Msg {
            seq,
            what,
            text,
            unix_ms,
        })
    }
}

impl Room {
    /// A SAY, ME or PRIVATE from member `i` (PROTOCOL.md "At most once").
    pub(super) fn say(&mut self, now: Instant, i: usize, msg: Msg<'_>) {
        let seq = msg.seq;
        let m = self.members.get(i);
        let (conn, local) = (m.conn, m.local);
        let seen_before = self
            .history
            .as_ref()
            .is_some_and(|h| h.seen(m.client_id, seq));
        match m.window.check(seq) {
            // Forwarded in an earlier session (a resume, a restart).
            Seen::New if seen_before => {
                self.members.get_mut(i).window.accept(seq);
                self.out.reply(conn, local, &ServerMsg::Ack { seq });
                return self.passed(now, i, seq);
            }
            Seen::New => {}
            Seen::Again => return self.out.reply(conn, local, &ServerMsg::Ack { seq }),
            Seen::TooOld => {
                self.stats.too_old += 1;
                let reason = RejectReason::TooOld;
                return self
                    .out
                    .reply(conn, local, &ServerMsg::Reject { seq, reason });
            }
        }
        if self.ahead_of_gap(i, seq) {
            return self.hold(now, i, msg);
        }
        self.forward(now, i, msg);
        self.passed(now, i, seq);
    }

    /// Forwards message `seq` of member `i` (or refuses it: REJECT), in its
    /// order.
    pub(super) fn forward(&mut self, now: Instant, i: usize, msg: Msg<'_>) {
        let Msg {
            seq,
            what,
            text,
            unix_ms,
        } = msg;
        let m = self.members.get(i);
        let (conn, local) = (m.conn, m.local);
        let reject = |room: &mut Room, reason| {
            room.out
                .reply(conn, local, &ServerMsg::Reject { seq, reason });
        };
        if validate_text(text).is_err() {
            return reject(self, RejectReason::InvalidText);
        }
        let to = match what {
            Said::Room(_) => None,
            Said::Private(name) => match self.members.by_key(&name_key(name)) {
                Some(j) => Some(j),
                None => return reject(self, RejectReason::NoSuchMember),
            },
        };
        let (rate, burst) = (self.cfg.rate, self.cfg.burst);
        let m = self.members.get_mut(i);
        if rate > 0.0 && !m.bucket.take(now, rate, burst) {
            self.stats.rate_limited += 1;
            return reject(self, RejectReason::RateLimited);
        }
        m.window.accept(seq);
        let m = self.members.get(i);
        let id = MessageId {
            client_id: m.client_id,
            seq,
        };
        match (what, to) {
            (Said::Room(me), _) => {
                self.room_seq += 1;
                if let Some(h) = &mut self.history {
                    h.record(crate::store::Message {
                        room_seq: self.room_seq,
                        time_ms: unix_ms as i64,
                        sender: m.name.to_string(),
                        kind: if me {
                            crate::store::Kind::Action
                        } else {
                            crate::store::Kind::Member
                        },
                        id: crate::store::MessageId {
                            client: m.client_id,
                            seq: seq as u64,
                        },
                        text: text.to_string(),
                    });
                }
                let line = Line {
                    room_seq: self.room_seq,
                    time_ms: unix_ms,
                    flags: LineFlags::NONE,
                    id,
                    from: &m.name,
                    text,
                };
                let ev = if me {
                    Event::Me(line)
                } else {
                    Event::Said(line)
                };
                let (start, end) = self.out.event(&ev);
                self.broadcasts.push(Broadcast {
                    start,
                    end,
                    except: Some(conn),
                    room_seq: self.room_seq,
                });
            }
            (Said::Private(_), Some(j)) => {
                let ev = self.out.event(&Event::PrivateFrom {
                    time_ms: unix_ms,
                    id,
                    from: &m.name,
                    text,
                });
                let r = self.members.get_mut(j);
                if r.private.is_empty() {
                    self.dirty.push(r.conn);
                }
                r.private.push(ev);
            }
            (Said::Private(_), None) => {}
        }
        self.out.reply(conn, local, &ServerMsg::Ack { seq });
    }

    /// A WHO or HISTORY from member `i`: the page now, or when its answer
    /// budget allows.
    pub(super) fn ask(&mut self, now: Instant, i: usize, answer: Answer) {
        let cost = match answer {
            Answer::Who(start) => self.who_page_len(start) + DATA_OVERHEAD,
            Answer::History { .. } => MAX_BODY + DATA_OVERHEAD,
        };
        let m = self.members.get_mut(i);
        match m.answers.offer(
            Budget::get_or_new(&mut m.budget, now),
            now,
            cost as u64,
            answer,
        ) {
            Offer::Now(answer) => self.answer(i, answer),
            Offer::Queued => {
                let conn = m.conn;
                if !self.answering.contains(&conn) {
                    self.answering.push(conn);
                }
            }
            Offer::Busy(_) => self.stats.answers_refused += 1,
        }
    }

    /// The length of the WHO_PAGE body from `start` (as it would be now).
    fn who_page_len(&self, start: u32) -> usize {
        const HEAD: usize = 1 + 4 + 4;
        let mut len = HEAD;
        for m in self.members.from(start as usize) {
            if len + 1 + m.name.len() > MAX_BODY {
                break;
            }
            len += 1 + m.name.len();
        }
        len
    }

    /// Sends member `i` the WHO_PAGE from `start`.
    fn who_page(&mut self, i: usize, start: u32) {
        let m = self.members.get(i);
        let total = self.members.len() as u32;
        let names = self.members.from(start as usize).iter().map(|m| &*m.name);
        self.out.reply_with(m.conn, m.local, |buf| {
            let mut page = WhoPageWriter::new(buf, start, total)?;
            for name in names {
                if !page.push(name)? {
                    break;
                }
            }
            Ok(page.finish())
        });
    }

    /// Sends member `i` an answer.
    fn answer(&mut self, i: usize, answer: Answer) {
        match answer {
            Answer::Who(start) => self.who_page(i, start),
            Answer::History { before, max } => self.history_page(i, before, max),
        }
    }

    /// Sends the answers whose budget allows them now.
    pub(super) fn send_answers(&mut self, now: Instant) {
        let mut k = 0;
        while k < self.answering.len() {
            let Some(i) = self.members.by_conn(self.answering[k]) else {
                self.answering.swap_remove(k);
                continue;
            };
            loop {
                let m = self.members.get_mut(i);
                let Some(answer) = m
                    .answers
                    .pop_ready(Budget::get_or_new(&mut m.budget, now), now)
                else {
                    break;
                };
                self.answer(i, answer);
            }
            let more_repairs = self.send_repairs(now, i);
            let more_catch_up = self.send_catch_up(now, i);
            if self.members.get(i).answers.is_empty() && !more_repairs && !more_catch_up {
                self.answering.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }
}
