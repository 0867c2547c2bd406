//! The messages between the two halves of a client, over a `SOCK_SEQPACKET`
//! socketpair (one message per packet, EOF when the other side is gone).
//!
//! Sender to receiver: the edit buffer (terminal mode), lines to print, `/who`,
//! the bodies to seal and send (the receiver is the only process that seals),
//! "quit with this exit code". Receiver to sender: ACK and REJECT of its
//! messages, "reconnecting" and "back", and "I am leaving".

use crate::protocol::sealed::RejectReason;

/// From the sender to the receiver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToReceiver {
    /// The half-typed line and its cursor (a char index), to draw under the messages.
    Edit { line: String, cursor: u32 },
    /// A finished line to print as is (already formatted and escaped, without the time).
    Print(String),
    /// Run `/who` and print the members.
    Who,
    /// Leave the room and exit with this code.
    Quit(u8),
    /// Ctrl-L: clear the screen and draw the input line again.
    Redraw,
    /// Fetch the member list quietly, for Tab completion.
    RefreshNames,
    /// A body (SAY, ME, PRIVATE) for the receiver to seal and send.
    Send(Vec<u8>),
    /// The sender's lowest unacknowledged message number (for a RESUME).
    Unacked(u32),
    /// `/history N`: show N earlier messages.
    History(u8),
    /// A new name, asked for after the old one was taken during a reconnect.
    Name(String),
}

/// From the receiver to the sender.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToSender {
    Ack(u32),
    Reject(u32, RejectReason),
    /// Contact is lost, the client is reconnecting: hold retransmissions.
    Holding,
    /// A member again after a reconnect, under this name, on a server that
    /// serves ME or not: resend what is unacknowledged.
    Back {
        name: String,
        serves_me: bool,
    },
    /// The name was taken during a reconnect: read a new one (a terminal).
    AskName,
    /// The receiver is leaving (kick, shutdown, lost contact, a signal): stop sending.
    Leaving,
    /// A member seen in the room (joined, spoke, listed), for Tab completion.
    Seen(String),
    /// A member who left.
    Gone(String),
}

impl ToReceiver {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            ToReceiver::Edit { line, cursor } => {
                v.push(1);
                v.extend_from_slice(&cursor.to_be_bytes());
                v.extend_from_slice(line.as_bytes());
            }
            ToReceiver::Print(s) => {
                v.push(2);
                v.extend_from_slice(s.as_bytes());
            }
            ToReceiver::Who => v.push(3),
            ToReceiver::Quit(code) => v.extend_from_slice(&[4, *code]),
            ToReceiver::Redraw => v.push(5),
            ToReceiver::RefreshNames => v.push(6),
            ToReceiver::Send(body) => {
                v.push(7);
                v.extend_from_slice(body);
            }
            ToReceiver::Unacked(n) => {
                v.push(8);
                v.extend_from_slice(&n.to_be_bytes());
            }
            ToReceiver::History(n) => v.extend_from_slice(&[9, *n]),
            ToReceiver::Name(name) => {
                v.push(10);
                v.extend_from_slice(name.as_bytes());
            }
        }
        v
    }

    pub fn decode(b: &[u8]) -> Option<ToReceiver> {
        let (&tag, rest) = b.split_first()?;
        Some(match tag {
            1 if rest.len() >= 4 => ToReceiver::Edit {
                cursor: u32::from_be_bytes(rest[..4].try_into().ok()?),
                line: String::from_utf8(rest[4..].to_vec()).ok()?,
            },
            2 => ToReceiver::Print(String::from_utf8(rest.to_vec()).ok()?),
            3 if rest.is_empty() => ToReceiver::Who,
            4 if rest.len() == 1 => ToReceiver::Quit(rest[0]),
            5 if rest.is_empty() => ToReceiver::Redraw,
            6 if rest.is_empty() => ToReceiver::RefreshNames,
            7 if !rest.is_empty() => ToReceiver::Send(rest.to_vec()),
            8 if rest.len() == 4 => ToReceiver::Unacked(u32::from_be_bytes(rest.try_into().ok()?)),
            9 if rest.len() == 1 => ToReceiver::History(rest[0]),
            10 => ToReceiver::Name(String::from_utf8(rest.to_vec()).ok()?),
            _ => return None,
        })
    }
}

impl ToSender {
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::new();
        match self {
            ToSender::Ack(seq) => {
                v.push(1);
                v.extend_from_slice(&seq.to_be_bytes());
            }
            ToSender::Reject(seq, r) => {
                v.push(2);
                v.extend_from_slice(&seq.to_be_bytes());
                v.push(r.code());
            }
            ToSender::Holding => v.push(3),
            ToSender::Back { name, serves_me } => {
                v.extend_from_slice(&[4, u8::from(*serves_me)]);
                v.extend_from_slice(name.as_bytes());
            }
            ToSender::AskName => v.push(8),
            ToSender::Leaving => v.push(5),
            ToSender::Seen(name) => {
                v.push(6);
                v.extend_from_slice(name.as_bytes());
            }
            ToSender::Gone(name) => {
                v.push(7);
                v.extend_from_slice(name.as_bytes());
            }
        }
        v
    }

    pub fn decode(b: &[u8]) -> Option<ToSender> {
        let (&tag, rest) = b.split_first()?;
        Some(match (tag, rest.len()) {
            (1, 4) => ToSender::Ack(u32::from_be_bytes(rest.try_into().ok()?)),
            (2, 5) => ToSender::Reject(
                u32::from_be_bytes(rest[..4].try_into().ok()?),
                RejectReason::from_code(rest[4])?,
            ),
            (3, 0) => ToSender::Holding,
            (4, n) if n >= 1 && rest[0] <= 1 => ToSender::Back {
                serves_me: rest[0] == 1,
                name: String::from_utf8(rest[1..].to_vec()).ok()?,
            },
            (8, 0) => ToSender::AskName,
            (5, 0) => ToSender::Leaving,
            (6, _) => ToSender::Seen(String::from_utf8(rest.to_vec()).ok()?),
            (7, _) => ToSender::Gone(String::from_utf8(rest.to_vec()).ok()?),
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        for m in [
            ToReceiver::Edit {
                line: "你好".into(),
                cursor: 1,
            },
            ToReceiver::Edit {
                line: String::new(),
                cursor: 0,
            },
            ToReceiver::Print("-- x".into()),
            ToReceiver::Who,
            ToReceiver::Quit(130),
            ToReceiver::Redraw,
            ToReceiver::RefreshNames,
            ToReceiver::Send(vec![3, 0, 0, 0, 1]),
            ToReceiver::Unacked(7),
            ToReceiver::History(20),
            ToReceiver::Name("小明".into()),
        ] {
            assert_eq!(ToReceiver::decode(&m.encode()), Some(m));
        }
        for m in [
            ToSender::Ack(7),
            ToSender::Reject(9, RejectReason::NoSuchMember),
            ToSender::Holding,
            ToSender::Back {
                name: "bob".into(),
                serves_me: true,
            },
            ToSender::AskName,
            ToSender::Leaving,
            ToSender::Seen("小明".into()),
            ToSender::Gone("bob".into()),
        ] {
            assert_eq!(ToSender::decode(&m.encode()), Some(m));
        }
        assert_eq!(ToSender::decode(&[]), None);
        assert_eq!(ToReceiver::decode(&[9]), None);
    }
}
