//! The server's bodies as owned values ([`Got`], [`Ev`]) for the tests to
//! compare, and the encoding of a client body.

use udpchat::protocol::sealed::{
    decode_server, ByeReason, ClientMsg, Event, LeftReason, Refusal, RejectReason, ServerMsg,
};
use udpchat::session::MAX_BODY;

/// An event, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Joined(String),
    Left(LeftReason, String),
    Said(String, String),
    Me(String, String),
    Private(String, String),
    Admin(String),
    /// Room messages no longer kept: first room sequence, count.
    Gap(u64, u32),
}

/// The fields of a room message the tests look at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LineMeta {
    /// Bit 0 history, bit 1 catch-up.
    pub flags: u8,
    pub room_seq: u64,
    pub time_ms: u64,
    pub client_id: u64,
    pub seq: u32,
}

/// A body from the server, owned; EVENTS split into one `Event` each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Welcome {
        flags: u8,
        members: u32,
        timeout_ms: u32,
        epoch: u32,
        room_seq: u64,
        client_id: u64,
        name: String,
        ticket: Vec<u8>,
    },
    /// REFUSED: reason code, detail, like.
    Refused(u8, u8, String),
    Ack(u32),
    Reject(u32, RejectReason),
    Event(u32, Ev),
    Bye {
        reason: ByeReason,
        missed: u32,
        text: String,
    },
    Keepalive(u32),
    /// A HISTORY_PAGE: `before`, `more`, the lines (sender, text, room sequence).
    History(u64, bool, Vec<(String, String, u64)>),
    /// LOST: first event, count.
    Lost(u32, u32),
    Who {
        start: u32,
        total: u32,
        names: Vec<String>,
    },
    /// The connection ended otherwise (no answer, reset while leaving …).
    Ended(String),
    /// The connection lost contact and is trying again.
    Reconnecting,
}

/// The REFUSED fields: reason code, detail, like.
fn refusal(r: &Refusal<'_>) -> (u8, u8, String) {
    let (detail, like) = match *r {
        Refusal::Taken { like } | Refusal::Reserved { like } => (0, like.to_string()),
        Refusal::InvalidName(rule) => (rule.code(), String::new()),
        _ => (0, String::new()),
    };
    (r.code(), detail, like)
}

/// Decodes a server body (panics on a malformed one: the server never sends
/// those); `meta` gets the fields of each room message.
pub fn decode(body: &[u8], meta: &mut Vec<LineMeta>) -> Vec<Got> {
    let msg = decode_server(body).unwrap_or_else(|e| panic!("server sent a malformed body: {e:?}"));
    let one = match msg {
        ServerMsg::Events {
            first_event,
            events,
        } => {
            return events
                .iter()
                .enumerate()
                .map(|(k, e)| {
                    let ev = match e {
                        Event::Joined { name } => Ev::Joined(name.into()),
                        Event::Left { reason, name } => Ev::Left(reason, name.into()),
                        Event::Said(l) | Event::Me(l) => {
                            meta.push(LineMeta {
                                flags: l.flags.bits(),
                                room_seq: l.room_seq,
                                time_ms: l.time_ms,
                                client_id: l.id.client_id,
                                seq: l.id.seq,
                            });
                            if matches!(e, Event::Me(_)) {
                                Ev::Me(l.from.into(), l.text.into())
                            } else {
                                Ev::Said(l.from.into(), l.text.into())
                            }
                        }
                        Event::PrivateFrom { from, text, .. } => {
                            Ev::Private(from.into(), text.into())
                        }
                        Event::Admin {
                            text,
                            room_seq,
                            time_ms,
                            flags,
                        } => {
                            meta.push(LineMeta {
                                flags: flags.bits(),
                                room_seq,
                                time_ms,
                                client_id: 0,
                                seq: 0,
                            });
                            Ev::Admin(text.into())
                        }
                        Event::Gap {
                            first_room_seq,
                            count,
                        } => Ev::Gap(first_room_seq, count),
                    };
                    Got::Event(first_event.wrapping_add(k as u32), ev)
                })
                .collect();
        }
        ServerMsg::Welcome(w) => Got::Welcome {
            flags: w.flags.bits(),
            members: w.members,
            timeout_ms: w.timeout_ms,
            epoch: w.epoch,
            room_seq: w.room_seq,
            client_id: w.client_id,
            name: w.name.into(),
            ticket: w.ticket.to_vec(),
        },
        ServerMsg::Refused(r) => {
            let (reason, detail, like) = refusal(&r);
            Got::Refused(reason, detail, like)
        }
        ServerMsg::Ack { seq } => Got::Ack(seq),
        ServerMsg::Reject { seq, reason } => Got::Reject(seq, reason),
        ServerMsg::Bye {
            reason,
            missed,
            text,
        } => Got::Bye {
            reason,
            missed,
            text: text.into(),
        },
        ServerMsg::Keepalive { last_event } => Got::Keepalive(last_event),
        ServerMsg::WhoPage {
            start,
            total,
            names,
        } => Got::Who {
            start,
            total,
            names: names.iter().map(String::from).collect(),
        },
        ServerMsg::HistoryPage {
            before,
            more,
            events,
        } => Got::History(
            before,
            more,
            events
                .iter()
                .map(|e| match e {
                    Event::Said(l) | Event::Me(l) => {
                        assert_eq!(l.flags.bits(), 1, "history lines are flagged");
                        (l.from.to_string(), l.text.to_string(), l.room_seq)
                    }
                    Event::Admin { text, room_seq, .. } => {
                        (String::new(), text.to_string(), room_seq)
                    }
                    other => panic!("not a room message: {other:?}"),
                })
                .collect(),
        ),
        ServerMsg::Lost { first_event, count } => Got::Lost(first_event, count),
        other => panic!("unexpected body {other:?}"),
    };
    vec![one]
}

/// Encodes a client body.
pub fn body(msg: &ClientMsg<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_BODY];
    let n = msg.encode(&mut out).expect("a valid client body");
    out.truncate(n);
    out
}
