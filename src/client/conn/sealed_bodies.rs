//! The connection's body layer over the real codec of the sealed bodies
//! (`protocol::sealed`, PROTOCOL.md "The sealed body"): the one
//! [`BodyCodec`] that chat-client, chat-load and the tests plug in.

use super::{BodyCodec, Resume, ServerBody};
use crate::protocol::sealed::{decode_server, server_type, ClientMsg, ServerMsg, WelcomeFlags};
use crate::session::MAX_BODY;

/// The bodies of PROTOCOL.md version 2.
#[derive(Debug, Clone, Copy, Default)]
pub struct SealedBodies;

fn encode(msg: &ClientMsg<'_>) -> Vec<u8> {
    let mut out = vec![0u8; MAX_BODY];
    // Every body the connection makes is within range (a JOIN's name is cut
    // to 255 bytes by `Conn::join`'s caller; a ticket is one a WELCOME gave).
    let n = msg.encode(&mut out).unwrap_or(0);
    out.truncate(n);
    out
}

impl BodyCodec for SealedBodies {
    fn join(&self, name: &str) -> Vec<u8> {
        encode(&ClientMsg::Join { name })
    }

    fn resume(&self, r: &Resume<'_>) -> Vec<u8> {
        encode(&ClientMsg::Resume {
            ticket: r.ticket,
            epoch: r.epoch,
            last_room_seq: r.last_room_seq,
            lowest_unacked: r.lowest_unacked,
        })
    }

    fn keepalive(&self, last_event: u32) -> Vec<u8> {
        encode(&ClientMsg::Keepalive { last_event })
    }

    fn leave(&self) -> Vec<u8> {
        encode(&ClientMsg::Leave)
    }

    fn classify(&self, body: &[u8]) -> ServerBody {
        // Only these three concern the connection: any other body (EVENTS
        // above all, on every receiver's hot path) is the caller's to decode.
        let ours = [server_type::WELCOME, server_type::REFUSED, server_type::BYE];
        if !body.first().is_some_and(|t| ours.contains(t)) {
            return ServerBody::Other;
        }
        match decode_server(body) {
            Ok(ServerMsg::Welcome(w)) => ServerBody::Welcome {
                timeout_ms: w.timeout_ms,
                epoch: w.epoch,
                ticket: w.ticket.to_vec(),
                resumed: w.flags.contains(WelcomeFlags::RESUMED),
            },
            Ok(ServerMsg::Refused(_)) => ServerBody::Refused,
            Ok(ServerMsg::Bye { reason, .. }) => ServerBody::Bye {
                reason: reason.code(),
            },
            _ => ServerBody::Other,
        }
    }
}
