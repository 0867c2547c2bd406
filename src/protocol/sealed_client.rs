//! Client → server bodies (PROTOCOL.md "Client → server"). A client pads its
//! body with zeros (the session does, when it seals); the server ignores
//! every byte after the message.

use super::{
    body_reader, client_type, serial_before, Malformed, Reader, Writer, MAX_HISTORY,
    MAX_NACK_RANGES, MAX_TICKET, PATH_DATA_LEN, REKEY_MESSAGE1_LEN,
};
use crate::session::SessionId;

/// A body from a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMsg<'a> {
    /// Asks for a name. Any length on the wire (0 to 255 bytes): the length
    /// rule is name rule 1, answered with REFUSED 2.
    Join {
        /// The name asked for.
        name: &'a str,
    },
    /// Comes back after a lost session (issue 10).
    Resume {
        /// The ticket of the last WELCOME (1 to 255 bytes, opaque).
        ticket: &'a [u8],
        /// The epoch of that WELCOME.
        epoch: u32,
        /// The last room sequence the client showed (0 if none).
        last_room_seq: u64,
        /// Its lowest unacknowledged message number (its next one if none).
        lowest_unacked: u32,
    },
    /// A line for the room.
    Say {
        /// The message number.
        seq: u32,
        /// The line.
        text: &'a str,
    },
    /// An action for the room (`/me waves`, issue 11).
    Me {
        /// The message number.
        seq: u32,
        /// The action, without `/me `.
        text: &'a str,
    },
    /// A private message.
    Private {
        /// The message number.
        seq: u32,
        /// The recipient's name.
        to: &'a str,
        /// The line.
        text: &'a str,
    },
    /// Asks for a page of the member list.
    Who {
        /// The index of its first member.
        start: u32,
    },
    /// Leaves the room.
    Leave,
    /// Nothing else to say.
    Keepalive {
        /// The highest event number received in order (0, the number before 1, if none).
        last_event: u32,
    },
    /// Asks for missing events again (issue 10).
    Nack {
        /// The ranges `first..=last` of event numbers missing.
        ranges: NackRanges<'a>,
    },
    /// Asks for older room messages (issue 10).
    History {
        /// Room messages before this room sequence (0: the newest).
        before: u64,
        /// At most this many (1 to 50).
        max: u8,
    },
    /// The echo of a PATH_CHALLENGE.
    PathResponse {
        /// The challenge's data.
        data: [u8; PATH_DATA_LEN],
    },
    /// Starts a rekey (the whole body goes to `session::ServerKey::respond_rekey`).
    RekeyInit {
        /// The client's new session id (never 0).
        new_id_c: SessionId,
        /// Noise message 1: the ephemeral key.
        message: &'a [u8],
    },
}

/// The already validated ranges of a NACK.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NackRanges<'a>(&'a [u8]);

impl<'a> NackRanges<'a> {
    /// The ranges `(first, last)`, in order.
    pub fn iter(&self) -> impl Iterator<Item = (u32, u32)> + 'a {
        self.0.chunks_exact(8).map(|c| {
            let mut r = Reader::new(c);
            (r.u32().unwrap_or(0), r.u32().unwrap_or(0))
        })
    }

    /// How many ranges.
    pub fn len(&self) -> usize {
        self.0.len() / 8
    }

    /// Never true for a decoded NACK.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Is `first..=last` a range in serial order (`last` not before `first`)?
fn valid_range(first: u32, last: u32) -> bool {
    first == last || serial_before(first, last)
}

/// Encodes a NACK of `ranges` (`(first, last)`, 1 to 32 of them, each with
/// `last` not before `first` in serial order) into `out`; returns its length.
pub fn encode_nack(ranges: &[(u32, u32)], out: &mut [u8]) -> Result<usize, Malformed> {
    if ranges.is_empty() || ranges.len() > MAX_NACK_RANGES {
        return Err(Malformed::BadLength);
    }
    let mut w = Writer::new(out);
    w.u8(client_type::NACK)?;
    w.u8(ranges.len() as u8)?;
    for &(first, last) in ranges {
        if !valid_range(first, last) {
            return Err(Malformed::BadValue);
        }
        w.u32(first)?;
        w.u32(last)?;
    }
    Ok(w.len())
}

/// Decodes a client's body. Bytes after the message (its padding) are ignored.
pub fn decode_client(body: &[u8]) -> Result<ClientMsg<'_>, Malformed> {
    let (ty, mut r) = body_reader(body)?;
    Ok(match ty {
        client_type::JOIN => ClientMsg::Join {
            name: std::str::from_utf8(r.short_bytes(0, 255)?).map_err(|_| Malformed::BadUtf8)?,
        },
        client_type::RESUME => ClientMsg::Resume {
            ticket: r.short_bytes(1, MAX_TICKET)?,
            epoch: r.u32()?,
            last_room_seq: r.u64()?,
            lowest_unacked: r.u32()?,
        },
        client_type::SAY => ClientMsg::Say {
            seq: r.u32()?,
            text: r.text()?,
        },
        client_type::ME => ClientMsg::Me {
            seq: r.u32()?,
            text: r.text()?,
        },
        client_type::PRIVATE => ClientMsg::Private {
            seq: r.u32()?,
            to: r.name()?,
            text: r.text()?,
        },
        client_type::WHO => ClientMsg::Who { start: r.u32()? },
        client_type::LEAVE => ClientMsg::Leave,
        client_type::KEEPALIVE => ClientMsg::Keepalive {
            last_event: r.u32()?,
        },
        client_type::NACK => {
            let count = r.u8()? as usize;
            if count == 0 || count > MAX_NACK_RANGES {
                return Err(Malformed::BadLength);
            }
            let bytes = r.take(count * 8)?;
            let ranges = NackRanges(bytes);
            if !ranges.iter().all(|(first, last)| valid_range(first, last)) {
                return Err(Malformed::BadValue);
            }
            ClientMsg::Nack { ranges }
        }
        client_type::HISTORY => {
            let before = r.u64()?;
            let max = r.u8()?;
            if max == 0 || max > MAX_HISTORY {
                return Err(Malformed::BadValue);
            }
            ClientMsg::History { before, max }
        }
        client_type::PATH_RESPONSE => ClientMsg::PathResponse { data: r.array()? },
        client_type::REKEY_INIT => {
            let new_id_c = r.u64()?;
            if new_id_c == 0 {
                return Err(Malformed::BadValue);
            }
            ClientMsg::RekeyInit {
                new_id_c,
                message: r.take(REKEY_MESSAGE1_LEN)?,
            }
        }
        _ => return Err(Malformed::UnknownKind),
    })
}

impl ClientMsg<'_> {
    /// Encodes this body (unpadded: the session pads it) into `out`; returns
    /// its length. Refuses a field out of range, and a body longer than `out`.
    pub fn encode(&self, out: &mut [u8]) -> Result<usize, Malformed> {
        let mut w = Writer::new(out);
        match *self {
            ClientMsg::Join { name } => {
                w.u8(client_type::JOIN)?;
                w.short(name.as_bytes(), 0, 255)?;
            }
            ClientMsg::Resume {
                ticket,
                epoch,
                last_room_seq,
                lowest_unacked,
            } => {
                w.u8(client_type::RESUME)?;
                w.short(ticket, 1, MAX_TICKET)?;
                w.u32(epoch)?;
                w.u64(last_room_seq)?;
                w.u32(lowest_unacked)?;
            }
            ClientMsg::Say { seq, text } | ClientMsg::Me { seq, text } => {
                let me = matches!(self, ClientMsg::Me { .. });
                w.u8(if me {
                    client_type::ME
                } else {
                    client_type::SAY
                })?;
                w.u32(seq)?;
                w.text(text)?;
            }
            ClientMsg::Private { seq, to, text } => {
                w.u8(client_type::PRIVATE)?;
                w.u32(seq)?;
                w.name(to)?;
                w.text(text)?;
            }
            ClientMsg::Who { start } => {
                w.u8(client_type::WHO)?;
                w.u32(start)?;
            }
            ClientMsg::Leave => w.u8(client_type::LEAVE)?,
            ClientMsg::Keepalive { last_event } => {
                w.u8(client_type::KEEPALIVE)?;
                w.u32(last_event)?;
            }
            ClientMsg::Nack { ranges } => {
                // Checked when decoded: the only way to hold NackRanges.
                w.u8(client_type::NACK)?;
                w.u8(ranges.len() as u8)?;
                w.put(ranges.0)?;
            }
            ClientMsg::History { before, max } => {
                if max == 0 || max > MAX_HISTORY {
                    return Err(Malformed::BadValue);
                }
                w.u8(client_type::HISTORY)?;
                w.u64(before)?;
                w.u8(max)?;
            }
            ClientMsg::PathResponse { data } => {
                w.u8(client_type::PATH_RESPONSE)?;
                w.put(&data)?;
            }
            ClientMsg::RekeyInit { new_id_c, message } => {
                if new_id_c == 0 {
                    return Err(Malformed::BadValue);
                }
                if message.len() != REKEY_MESSAGE1_LEN {
                    return Err(Malformed::BadLength);
                }
                w.u8(client_type::REKEY_INIT)?;
                w.u64(new_id_c)?;
                w.put(message)?;
            }
        }
        Ok(w.len())
    }
}
