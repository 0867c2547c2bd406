use super::*;
use crate::protocol::vectors::{parse, NAME_VECTORS};
use crate::protocol::{check_name, NameError, TestRng};

const LONG_NAME: &str = "𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀𠀀";

fn long_text() -> String {
    "x".repeat(MAX_TEXT_BYTES)
}

fn enc_client(m: &ClientMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_BODY];
    let n = m.encode(&mut buf).expect("a valid message");
    buf[..n].to_vec()
}

fn enc_server(m: &ServerMsg<'_>) -> Vec<u8> {
    let mut buf = [0u8; MAX_BODY];
    let n = m.encode(&mut buf).expect("a valid message");
    buf[..n].to_vec()
}

fn said<'a>(from: &'a str, text: &'a str) -> Event<'a> {
    Event::Said(Line {
        room_seq: 1,
        time_ms: 2,
        flags: LineFlags::NONE,
        id: MessageId {
            client_id: 3,
            seq: 4,
        },
        from,
        text,
    })
}

/// Bodies of every type, both ways, to start the mutations from.
fn seeds() -> Vec<Vec<u8>> {
    let text = long_text();
    let mut out: Vec<Vec<u8>> = [
        ClientMsg::Join { name: "alice" },
        ClientMsg::Join { name: "" },
        ClientMsg::Resume {
            ticket: &[7; MAX_TICKET],
            epoch: 1,
            last_room_seq: 2,
            lowest_unacked: 3,
        },
        ClientMsg::Say {
            seq: 1,
            text: &text,
        },
        ClientMsg::Me {
            seq: 2,
            text: "waves",
        },
        ClientMsg::Private {
            seq: 3,
            to: LONG_NAME,
            text: &text,
        },
        ClientMsg::Who { start: 9 },
        ClientMsg::Leave,
        ClientMsg::Keepalive { last_event: 5 },
        ClientMsg::History { before: 0, max: 50 },
        ClientMsg::PathResponse { data: [9; 8] },
        ClientMsg::RekeyInit {
            new_id_c: 5,
            message: &[1; REKEY_MESSAGE1_LEN],
        },
    ]
    .iter()
    .map(enc_client)
    .collect();
    let mut buf = [0u8; MAX_BODY];
    let n = encode_nack(&[(1, 2), (u32::MAX, 3)], &mut buf).unwrap();
    out.push(buf[..n].to_vec());
    out.extend(
        [
            ServerMsg::Welcome(Welcome {
                flags: WelcomeFlags::RESUME,
                members: 1,
                timeout_ms: 30_000,
                epoch: 1,
                room_seq: 0,
                client_id: 1,
                name: LONG_NAME,
                ticket: &[1; MAX_TICKET],
            }),
            ServerMsg::Refused(Refusal::Taken { like: "alice" }),
            ServerMsg::Refused(Refusal::InvalidName(NameRule::MixedScripts)),
            ServerMsg::Refused(Refusal::BadTicket),
            ServerMsg::Ack { seq: 1 },
            ServerMsg::Reject {
                seq: 1,
                reason: RejectReason::NotSupported,
            },
            ServerMsg::Bye {
                reason: ByeReason::Restarting,
                missed: 2,
                text: "",
            },
            ServerMsg::Keepalive { last_event: 1 },
            ServerMsg::PathChallenge { data: [3; 8] },
            ServerMsg::RekeyResponse {
                message: &[2; crate::session::NOISE_MSG2_LEN],
            },
            ServerMsg::Lost {
                first_event: 1,
                count: 1,
            },
        ]
        .iter()
        .map(enc_server),
    );
    let mut w = EventsWriter::events(&mut buf, 1).unwrap();
    w.push(&Event::Joined { name: "bob" }).unwrap();
    w.push(&said("bob", "hi")).unwrap();
    w.push(&Event::Gap {
        first_room_seq: 1,
        count: 1,
    })
    .unwrap();
    let n = w.finish().unwrap();
    out.push(buf[..n].to_vec());
    let mut w = EventsWriter::history_page(&mut buf, 9).unwrap();
    w.push(&said("bob", "old")).unwrap();
    let n = w.finish().unwrap();
    out.push(buf[..n].to_vec());
    let mut w = WhoPageWriter::new(&mut buf, 0, 2).unwrap();
    w.push("a").unwrap();
    w.push("b").unwrap();
    let n = w.finish();
    out.push(buf[..n].to_vec());
    out
}

#[test]
fn every_seed_round_trips() {
    for body in seeds() {
        match (decode_client(&body), decode_server(&body)) {
            (Ok(m), Err(_)) => assert_eq!(enc_client(&m), body),
            (Err(_), Ok(m)) => assert_eq!(enc_server(&m), body),
            other => panic!("{body:02x?} decodes as {other:?}"),
        }
    }
}

#[test]
fn documented_sizes() {
    let text = long_text();
    let longest = said(LONG_NAME, &text);
    let mut buf = [0u8; MAX_BODY];
    assert_eq!(longest.encode(&mut buf), Ok(1129));
    let mut w = EventsWriter::events(&mut buf, 1).unwrap();
    assert_eq!(w.push(&longest), Ok(true));
    assert_eq!(w.finish(), Ok(1134));
    let private = ClientMsg::Private {
        seq: 1,
        to: LONG_NAME,
        text: &text,
    };
    assert_eq!(enc_client(&private).len(), 1104);
    let seeds = seeds();
    let welcome = seeds.iter().find(|b| b[0] == server_type::WELCOME).unwrap();
    assert_eq!(welcome.len(), 383);
    // 11 names of 96 bytes a page: 10,000 of them take 910 pages.
    let mut w = WhoPageWriter::new(&mut buf, 0, 10_000).unwrap();
    while w.push(LONG_NAME).unwrap() {}
    assert_eq!(w.count(), 11);
    assert_eq!(10_000usize.div_ceil(w.count()), 910);
}

#[test]
fn writers_stop_when_full_and_write_nothing_more() {
    let mut buf = [0u8; MAX_BODY];
    let mut w = EventsWriter::events(&mut buf, 7).unwrap();
    let text = long_text();
    assert_eq!(w.push(&said("a", &text)), Ok(true));
    let room = w.room();
    assert_eq!(w.push(&said("b", &text)), Ok(false));
    assert_eq!(w.room(), room);
    let small = Event::Joined { name: "c" }.to_encoded().unwrap();
    assert!(w.push_encoded(&small));
    assert_eq!(w.count(), 2);
    let mut joined = [0u8; 8];
    let n = Event::Joined { name: "d" }.encode(&mut joined).unwrap();
    assert!(w.push_bytes(&joined[..n]));
    assert_eq!(w.count(), 3);
    let n = w.finish().unwrap();
    let Ok(ServerMsg::Events {
        first_event,
        events,
    }) = decode_server(&buf[..n])
    else {
        panic!("not EVENTS")
    };
    assert_eq!(first_event, 7);
    assert_eq!(events.iter().count(), 3);
    // Padding: a zero type byte and zeros to the end; the same events.
    let mut padded = buf[..n].to_vec();
    padded.resize(MAX_BODY, 0);
    let Ok(ServerMsg::Events { events: same, .. }) = decode_server(&padded) else {
        panic!("padded EVENTS")
    };
    assert_eq!(same, events);
    // A non-zero byte after the padding byte is malformed.
    *padded.last_mut().unwrap() = 1;
    assert_eq!(decode_server(&padded), Err(Malformed::BadValue));
    // So is padding with no event before it.
    assert_eq!(
        decode_server(&[server_type::EVENTS, 0, 0, 0, 1, 0, 0]),
        Err(Malformed::Truncated)
    );
    // A caller's buffer smaller than MAX_BODY bounds the body.
    let mut small_buf = [0u8; 8];
    let mut w = EventsWriter::events(&mut small_buf, 1).unwrap();
    assert_eq!(w.push(&Event::Joined { name: "abcd" }), Ok(false));
    assert_eq!(w.push(&Event::Joined { name: "a" }), Ok(true));
    // An empty EVENTS is refused; an empty HISTORY_PAGE is not.
    assert_eq!(
        EventsWriter::events(&mut buf, 1).unwrap().finish(),
        Err(Malformed::Truncated)
    );
    let mut w = EventsWriter::history_page(&mut buf, 0).unwrap();
    assert_eq!(
        w.push(&Event::Joined { name: "a" }),
        Err(Malformed::UnknownKind)
    );
    assert!(!w.push_encoded(&small));
    assert_eq!(w.finish(), Ok(10));
}

#[test]
fn encoding_refuses_what_would_be_malformed() {
    let mut buf = [0u8; MAX_BODY];
    let text = "x".repeat(MAX_TEXT_BYTES + 1);
    let bad: [(ClientMsg<'_>, Malformed); 7] = [
        (ClientMsg::Say { seq: 1, text: "" }, Malformed::BadLength),
        (
            ClientMsg::Say {
                seq: 1,
                text: &text,
            },
            Malformed::BadLength,
        ),
        (
            ClientMsg::Private {
                seq: 1,
                to: "",
                text: "x",
            },
            Malformed::BadLength,
        ),
        (
            ClientMsg::Resume {
                ticket: &[],
                epoch: 0,
                last_room_seq: 0,
                lowest_unacked: 0,
            },
            Malformed::BadLength,
        ),
        (
            ClientMsg::History { before: 0, max: 51 },
            Malformed::BadValue,
        ),
        (
            ClientMsg::RekeyInit {
                new_id_c: 0,
                message: &[0; 32],
            },
            Malformed::BadValue,
        ),
        (
            ClientMsg::Join {
                name: &"x".repeat(256),
            },
            Malformed::BadLength,
        ),
    ];
    for (m, e) in bad {
        assert_eq!(m.encode(&mut buf), Err(e), "{m:?}");
    }
    let welcome = |flags, ticket| {
        ServerMsg::Welcome(Welcome {
            flags,
            members: 1,
            timeout_ms: 1,
            epoch: 1,
            room_seq: 0,
            client_id: 1,
            name: "a",
            ticket,
        })
    };
    assert!(welcome(WelcomeFlags::NONE, &[][..])
        .encode(&mut buf)
        .is_ok());
    assert_eq!(
        welcome(WelcomeFlags::RESUME, &[][..]).encode(&mut buf),
        Err(Malformed::BadValue)
    );
    assert_eq!(
        welcome(WelcomeFlags::NONE, &[1][..]).encode(&mut buf),
        Err(Malformed::BadValue)
    );
    let taken = ServerMsg::Refused(Refusal::Taken { like: "" });
    assert_eq!(taken.encode(&mut buf), Err(Malformed::BadLength));
    assert_eq!(encode_nack(&[(5, 4)], &mut buf), Err(Malformed::BadValue));
    assert_eq!(encode_nack(&[], &mut buf), Err(Malformed::BadLength));
    assert_eq!(
        encode_nack(&[(1, 1); MAX_NACK_RANGES + 1], &mut buf),
        Err(Malformed::BadLength)
    );
    let mut tiny = [0u8; 4];
    assert_eq!(
        ClientMsg::Say { seq: 1, text: "x" }.encode(&mut tiny),
        Err(Malformed::TooLong)
    );
}

#[test]
fn each_malformed_body_is_named() {
    use Malformed::*;
    let client: &[(&[u8], Malformed)] = &[
        (b"", Truncated),
        (b"\x00", UnknownKind),
        (b"\x40", UnknownKind),
        (b"\x81", UnknownKind),
        (b"\x03\x00\x00\x00\x01\x00\x00", BadLength),
        (b"\x03\x00\x00\x00\x01\x03\xe9", BadLength),
        (b"\x03\x00\x00\x00\x01\x00\x02\xc3", Truncated),
        (b"\x03\x00\x00\x00\x01\x00\x01\xff", BadUtf8),
        (b"\x01\x02\xc3\x28", BadUtf8),
        (b"\x02\x00", BadLength),
        (b"\x05\x00\x00\x00\x01\x00", BadLength),
        (b"\x09\x00", BadLength),
        (b"\x09\x21", BadLength),
        (b"\x09\x01\x00\x00\x00\x05\x00\x00\x00\x04", BadValue),
        (b"\x09\x01\x00\x00\x00\x00\x80\x00\x00\x00", BadValue),
        (b"\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x00", BadValue),
        (b"\x0a\x00\x00\x00\x00\x00\x00\x00\x00\x33", BadValue),
        (b"\x0c\x00\x00\x00\x00\x00\x00\x00\x00", BadValue),
        (b"\x0b\x01\x02", Truncated),
    ];
    for &(body, e) in client {
        assert_eq!(decode_client(body), Err(e), "{body:02x?}");
    }
    let server: &[(&[u8], Malformed)] = &[
        (b"\x01", UnknownKind),
        (b"\x8d", UnknownKind),
        (b"\x83\x00\x00\x00\x01\x00", Trailing),
        (b"\x84\x00\x00\x00\x01\x06", BadValue),
        (b"\x86\x05\x00\x00\x00\x00\x00\x00", BadValue),
        (b"\x86\x00\x00\x00\x00\x00\x03\xe9", BadLength),
        (b"\x82\x08\x00\x00", BadValue),
        (b"\x82\x02\x00\x00", BadValue),
        (b"\x82\x02\x2e\x00", BadValue),
        (b"\x82\x01\x00\x00", BadValue),
        (b"\x82\x04\x00\x01a", BadValue),
        (b"\x82\x04\x01\x00", BadValue),
        (b"\x85\x00\x00\x00\x01", Truncated),
        (b"\x85\x00\x00\x00\x01\x08", UnknownKind),
        (b"\x85\x00\x00\x00\x01\x02\x03\x01a", BadValue),
        (
            b"\x85\x00\x00\x00\x01\x07\0\0\0\0\0\0\0\x01\0\0\0\0",
            BadValue,
        ),
        (b"\x85\x00\x00\x00\x01\x01\x00", BadLength),
        (b"\x88\0\0\0\0\0\0\0\x01\x00", BadLength),
        (b"\x8b\0\0\0\0\0\0\0\0\x02", BadValue),
        (b"\x8b\0\0\0\0\0\0\0\0\x00\x01\x01a", UnknownKind),
        (b"\x8c\0\0\0\x01\0\0\0\0", BadValue),
        (b"\x8a\0\0", Truncated),
    ];
    for &(body, e) in server {
        assert_eq!(decode_server(body), Err(e), "{body:02x?}");
    }
    assert_eq!(decode_server(&[0x83; MAX_BODY + 1]), Err(TooLong));
    // A WELCOME's ticket is there exactly when bit 3 says so.
    let mut welcome = seeds()
        .into_iter()
        .find(|b| b[0] == server_type::WELCOME)
        .unwrap();
    welcome[1] = 0;
    assert_eq!(decode_server(&welcome), Err(BadValue));
    welcome[1] = 0xe0 | WelcomeFlags::RESUME.bits();
    let Ok(ServerMsg::Welcome(w)) = decode_server(&welcome) else {
        panic!("unknown flag bits are ignored")
    };
    assert_eq!(w.flags, WelcomeFlags::RESUME);
}

#[test]
fn client_padding_is_ignored() {
    let mut body = enc_client(&ClientMsg::Keepalive { last_event: 3 });
    body.resize(
        crate::session::MIN_CLIENT_DATAGRAM - crate::session::DATA_OVERHEAD,
        0,
    );
    assert_eq!(
        decode_client(&body),
        Ok(ClientMsg::Keepalive { last_event: 3 })
    );
    body.resize(MAX_BODY, 0xff);
    assert!(decode_client(&body).is_ok());
}

#[test]
fn name_rules_number_the_refusal_detail() {
    let mut seen = std::collections::BTreeSet::new();
    for &(input, room, _, expected) in NAME_VECTORS {
        if room.is_empty() && expected.starts_with("invalid name") {
            let Err(NameError::Invalid(why)) = check_name(&parse(input)) else {
                panic!("{input} is not invalid")
            };
            let rule = NameRule::from(why);
            seen.insert(rule.code());
            let body = enc_server(&ServerMsg::Refused(Refusal::InvalidName(rule)));
            assert_eq!(body, [0x82, 2, rule.code(), 0]);
        }
    }
    assert_eq!(
        seen.into_iter().collect::<Vec<_>>(),
        [1, 41, 42, 43, 44, 45]
    );
    let taken = NameError::LooksLike("alice".into());
    assert_eq!(Refusal::from(&taken), Refusal::Taken { like: "alice" });
    let reserved = check_name("ADMIN").unwrap_err();
    assert_eq!(
        Refusal::from(&reserved),
        Refusal::Reserved { like: "admin" }
    );
    let invalid = check_name("a b").unwrap_err();
    assert_eq!(
        Refusal::from(&invalid),
        Refusal::InvalidName(NameRule::Character)
    );
}

#[test]
fn serial_order() {
    assert!(serial_before(1, 2));
    assert!(serial_before(u32::MAX, 0));
    assert!(!serial_before(2, 2));
    assert!(!serial_before(0, 1 << 31));
    assert!(serial_before(0, (1 << 31) - 1));
}

#[test]
fn decoding_random_and_mutated_bodies_never_panics() {
    let mut rng = TestRng(0x2545_F491_4F6C_DD1D);
    let seeds = seeds();
    let mut decoded = 0;
    for _ in 0..100_000 {
        let mut body = if rng.below(4) == 0 {
            let len = rng.below(MAX_BODY + 40);
            (0..len).map(|_| rng.next() as u8).collect()
        } else {
            seeds[rng.below(seeds.len())].clone()
        };
        for _ in 0..rng.below(4) {
            match rng.below(3) {
                0 if !body.is_empty() => {
                    let i = rng.below(body.len());
                    body[i] = rng.next() as u8;
                }
                1 => body.truncate(rng.below(body.len() + 1)),
                _ => body.push(rng.next() as u8),
            }
        }
        if let Ok(m) = decode_client(&body) {
            decoded += 1;
            // What decodes encodes to the bytes it was read from (its prefix).
            let again = enc_client(&m);
            assert_eq!(&body[..again.len()], &again[..]);
        }
        if let Ok(m) = decode_server(&body) {
            decoded += 1;
            let again = enc_server(&m);
            assert_eq!(decode_server(&again), Ok(m));
            // The bytes it was read from, but for an EVENTS body's padding.
            assert_eq!(&body[..again.len()], &again[..]);
            assert!(body[again.len()..].iter().all(|&b| b == 0));
            if let ServerMsg::Events { events, .. } = m {
                assert!(events.iter().count() >= 1);
                let lens: usize = events.iter().map(|e| e.encoded_len()).sum();
                assert_eq!(lens, events.as_bytes().len());
            }
        }
    }
    assert!(decoded > 10_000, "only {decoded} bodies decoded");
}
