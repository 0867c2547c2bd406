//! The sealed-body test vectors of PROTOCOL.md ("Test vectors"), read from the
//! file itself with the session's reader: each body decodes to the message
//! below, and the message encodes to the body.

use super::*;
use crate::session::vectors::{hex, to_hex, vectors};

const TIME: u64 = 1_764_547_200_000;
const TICKET: &[u8] = &[
    0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,
];

fn line<'a>(
    room_seq: u64,
    flags: LineFlags,
    id: (u64, u32),
    from: &'a str,
    text: &'a str,
) -> Line<'a> {
    Line {
        room_seq,
        time_ms: TIME,
        flags,
        id: MessageId {
            client_id: id.0,
            seq: id.1,
        },
        from,
        text,
    }
}

fn client_vectors() -> Vec<(&'static str, ClientMsg<'static>)> {
    vec![
        ("join_body", ClientMsg::Join { name: "alice" }),
        (
            "resume_body",
            ClientMsg::Resume {
                ticket: TICKET,
                epoch: 3,
                last_room_seq: 41,
                lowest_unacked: 5,
            },
        ),
        (
            "say_body",
            ClientMsg::Say {
                seq: 1,
                text: "hello",
            },
        ),
        (
            "me_body",
            ClientMsg::Me {
                seq: 2,
                text: "waves",
            },
        ),
        (
            "private_body",
            ClientMsg::Private {
                seq: 3,
                to: "bob",
                text: "psst",
            },
        ),
        ("who_body", ClientMsg::Who { start: 0 }),
        ("leave_body", ClientMsg::Leave),
        (
            "client_keepalive_body",
            ClientMsg::Keepalive { last_event: 1 },
        ),
        ("history_body", ClientMsg::History { before: 0, max: 20 }),
        (
            "path_response_body",
            ClientMsg::PathResponse {
                data: [1, 2, 3, 4, 5, 6, 7, 8],
            },
        ),
    ]
}

/// The server's bodies, each encoded by the writer or the message.
fn server_vectors() -> Vec<(&'static str, Vec<u8>)> {
    let mut out = Vec::new();
    let mut add = |name: &'static str, msg: ServerMsg<'_>| {
        let mut buf = [0u8; MAX_BODY];
        let n = msg.encode(&mut buf).expect("a valid vector");
        out.push((name, buf[..n].to_vec()));
    };
    let flags = WelcomeFlags::HISTORY
        .with(WelcomeFlags::REPAIR)
        .with(WelcomeFlags::RESUME)
        .with(WelcomeFlags::ME);
    add(
        "welcome_body",
        ServerMsg::Welcome(Welcome {
            flags,
            members: 2,
            timeout_ms: 30_000,
            epoch: 3,
            room_seq: 41,
            client_id: 7,
            name: "alice",
            ticket: TICKET,
        }),
    );
    add(
        "refused_taken_body",
        ServerMsg::Refused(Refusal::Taken { like: "alice" }),
    );
    add(
        "refused_invalid_body",
        ServerMsg::Refused(Refusal::InvalidName(NameRule::Character)),
    );
    add(
        "refused_reserved_body",
        ServerMsg::Refused(Refusal::Reserved { like: "admin" }),
    );
    add("refused_full_body", ServerMsg::Refused(Refusal::RoomFull));
    add("ack_body", ServerMsg::Ack { seq: 1 });
    add(
        "reject_body",
        ServerMsg::Reject {
            seq: 2,
            reason: RejectReason::TooOld,
        },
    );
    add(
        "bye_body",
        ServerMsg::Bye {
            reason: ByeReason::Removed,
            missed: 0,
            text: "spam",
        },
    );
    add("keepalive_body", ServerMsg::Keepalive { last_event: 0 });
    add(
        "path_challenge_body",
        ServerMsg::PathChallenge {
            data: [1, 2, 3, 4, 5, 6, 7, 8],
        },
    );
    add(
        "lost_body",
        ServerMsg::Lost {
            first_event: 5,
            count: 3,
        },
    );
    let mut buf = [0u8; MAX_BODY];
    let mut w = EventsWriter::events(&mut buf, 1).unwrap();
    let said = line(1, LineFlags::NONE, (7, 1), "alice", "hello");
    assert_eq!(w.push(&Event::Said(said)), Ok(true));
    let n = w.finish().unwrap();
    out.push(("data_body", buf[..n].to_vec()));
    let events = [
        Event::Joined { name: "bob" },
        Event::Left {
            reason: LeftReason::TimedOut,
            name: "carol",
        },
        Event::PrivateFrom {
            time_ms: TIME,
            id: MessageId {
                client_id: 9,
                seq: 4,
            },
            from: "dave",
            text: "secret",
        },
        Event::Admin {
            room_seq: 2,
            time_ms: TIME,
            flags: LineFlags::NONE,
            text: "maintenance",
        },
        Event::Me(line(3, LineFlags::NONE, (9, 5), "dave", "waves")),
        Event::Gap {
            first_room_seq: 4,
            count: 2,
        },
    ];
    let mut w = EventsWriter::events(&mut buf, 2).unwrap();
    for e in &events {
        assert_eq!(w.push(e), Ok(true));
    }
    let n = w.finish().unwrap();
    out.push(("events_body", buf[..n].to_vec()));
    let mut w = WhoPageWriter::new(&mut buf, 0, 3).unwrap();
    for name in ["alice", "bob", "carol"] {
        assert_eq!(w.push(name), Ok(true));
    }
    let n = w.finish();
    out.push(("who_page_body", buf[..n].to_vec()));
    let mut w = EventsWriter::history_page(&mut buf, 41).unwrap();
    let history = [
        Event::Said(line(39, LineFlags::HISTORY, (9, 1), "dave", "earlier")),
        Event::Admin {
            room_seq: 40,
            time_ms: TIME,
            flags: LineFlags::HISTORY,
            text: "notice",
        },
    ];
    for e in &history {
        assert_eq!(w.push(e), Ok(true));
    }
    w.set_more(true);
    let n = w.finish().unwrap();
    out.push(("history_page_body", buf[..n].to_vec()));
    out
}

#[test]
fn protocol_md_sealed_body_vectors() {
    let v = vectors();
    let mut nack = [0u8; MAX_BODY];
    let n = encode_nack(&[(2, 4), (7, 7)], &mut nack).unwrap();
    let mut computed = vec![("nack_body", nack[..n].to_vec())];
    for (name, msg) in client_vectors() {
        let mut buf = [0u8; MAX_BODY];
        let n = msg.encode(&mut buf).unwrap();
        computed.push((name, buf[..n].to_vec()));
    }
    computed.extend(server_vectors());
    let wrong: Vec<String> = computed
        .iter()
        .filter(|(name, body)| v.get(*name) != Some(&to_hex(body)))
        .map(|(name, body)| format!("{name} = {}", to_hex(body)))
        .collect();
    assert!(
        wrong.is_empty(),
        "PROTOCOL.md's sealed-body vectors differ from the code; computed:\n{}",
        wrong.join("\n")
    );
    // Each body in the file decodes to its message and encodes to itself.
    let doc = |name: &str| hex(&v[name]);
    for (name, msg) in client_vectors() {
        assert_eq!(decode_client(&doc(name)), Ok(msg), "{name}");
    }
    let nack = doc("nack_body");
    let Ok(ClientMsg::Nack { ranges }) = decode_client(&nack) else {
        panic!("nack_body is not a NACK")
    };
    assert_eq!(ranges.iter().collect::<Vec<_>>(), [(2, 4), (7, 7)]);
    for (name, _) in server_vectors() {
        let body = doc(name);
        let msg = decode_server(&body).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut buf = [0u8; MAX_BODY];
        let n = msg.encode(&mut buf).unwrap();
        assert_eq!(&buf[..n], &body[..], "{name} decodes and encodes again");
    }
    let padded = doc("padded_events_body");
    let Ok(ServerMsg::Events {
        first_event: 9,
        events,
    }) = decode_server(&padded)
    else {
        panic!("padded_events_body is not EVENTS from 9")
    };
    assert_eq!(
        events.iter().collect::<Vec<_>>(),
        [Event::Joined { name: "erin" }]
    );
    assert_eq!((padded.len(), events.as_bytes().len()), (16, 6));
}
