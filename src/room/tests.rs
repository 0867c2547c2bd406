use super::*;
use crate::protocol::{decode_server, Cookie, ServerMsg, TestRng, JOIN_SIZE, MAX_DATAGRAM};
use std::collections::{HashMap, HashSet};

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([10, 0, (n >> 8) as u8, n as u8], 4000 + n))
}

/// What one datagram says, in words, one line per event: easy to assert.
fn render(bytes: &[u8]) -> Vec<String> {
    match decode_server(bytes).expect("the room sends only valid datagrams") {
        ServerMsg::Events { first_seq, events } => events
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let n = first_seq.wrapping_add(k as u32);
                match e {
                    Event::Joined { name } => format!("#{n} joined {name}"),
                    Event::Left { reason, name } => format!("#{n} left{} {name}", reason as u8),
                    Event::Said { from, text } => format!("#{n} {from}: {text}"),
                    Event::PrivateFrom { from, text } => format!("#{n} private {from}: {text}"),
                    Event::Admin { text } => format!("#{n} admin: {text}"),
                }
            })
            .collect(),
        ServerMsg::Challenge { .. } => vec!["challenge".into()],
        ServerMsg::Refused { reason, .. } => vec![format!("refused {reason}")],
        ServerMsg::Welcome { members, name, .. } => vec![format!("welcome {name} {members}")],
        ServerMsg::Ack { seq } => vec![format!("ack {seq}")],
        ServerMsg::Reject { seq, reason } => vec![format!("reject {seq} {reason}")],
        ServerMsg::Bye { reason } => vec![format!("bye {}", reason as u8)],
        ServerMsg::Pong { last_seq } => vec![format!("pong {last_seq}")],
        ServerMsg::WhoPage {
            start,
            total,
            names,
        } => vec![format!(
            "who {start}/{total}: {}",
            names.iter().collect::<Vec<_>>().join(" ")
        )],
        ServerMsg::UnknownSession { token } => vec![format!("unknown {token}")],
    }
}

struct T {
    room: Room,
    now: Instant,
    unix: u64,
}

type Sent = Vec<(SocketAddr, Vec<u8>)>;

impl T {
    fn new(cfg: Config) -> T {
        let now = Instant::now();
        let mut rng = TestRng(0x1234_5678_9abc_def1);
        T {
            room: Room::new(cfg, [42; 16], Box::new(move || rng.next()), now),
            now,
            unix: 1_700_000_000,
        }
    }

    fn turn(&mut self, f: impl FnOnce(&mut Room, Instant, u64)) -> Sent {
        f(&mut self.room, self.now, self.unix);
        let out = self.room.flush();
        let sent = out
            .transmits()
            .iter()
            .map(|t| {
                let b = out.to_vec(t);
                assert!(b.len() <= MAX_DATAGRAM);
                assert_eq!(b.len(), out.len_of(t));
                (t.peer.addr, b)
            })
            .collect();
        self.room.end_turn();
        sent
    }

    fn send(&mut self, from: SocketAddr, msg: &ClientMsg<'_>) -> Sent {
        let bytes = msg.to_vec();
        self.turn(|r, now, unix| r.handle(now, unix, from.into(), &bytes))
    }

    fn raw(&mut self, from: SocketAddr, bytes: &[u8]) -> Sent {
        self.turn(|r, now, unix| r.handle(now, unix, from.into(), bytes))
    }

    fn join_msg(name: &str, cookie: Cookie, prev: Token) -> ClientMsg<'_> {
        ClientMsg::Join {
            nonce: 99,
            prev_token: prev,
            cookie,
            name,
        }
    }

    /// The cookie round-trip; returns the replies to the second JOIN (or the refusal).
    fn try_join(&mut self, from: SocketAddr, name: &str, prev: Token) -> (Option<Token>, Sent) {
        let sent = self.send(from, &T::join_msg(name, [0; 16], prev));
        let cookie = match decode_server(&sent[0].1).unwrap() {
            ServerMsg::Challenge { cookie, nonce } => {
                assert_eq!(nonce, 99);
                cookie
            }
            _ => return (None, sent),
        };
        assert_eq!(sent.len(), 1);
        let sent = self.send(from, &T::join_msg(name, cookie, prev));
        let token = match decode_server(&sent[0].1).unwrap() {
            ServerMsg::Welcome { token, nonce, .. } => {
                assert_eq!(nonce, 99);
                Some(token)
            }
            _ => None,
        };
        (token, sent)
    }

    fn join(&mut self, from: SocketAddr, name: &str) -> Token {
        self.try_join(from, name, 0).0.expect("joined")
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
        self.unix += d.as_secs();
    }
}

/// The lines each address received, in order.
fn lines(sent: &Sent, to: SocketAddr) -> Vec<String> {
    sent.iter()
        .filter(|(a, _)| *a == to)
        .flat_map(|(_, b)| render(b))
        .collect()
}

fn say(token: Token, seq: u32, text: &str) -> ClientMsg<'_> {
    ClientMsg::Say { token, seq, text }
}

#[test]
fn join_needs_the_cookie_round_trip_and_announces() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    let (b, sent) = t.try_join(addr(2), "bob", 0);
    assert!(b.is_some() && b != Some(a));
    assert_eq!(lines(&sent, addr(2)), ["welcome bob 2"]);
    assert_eq!(lines(&sent, addr(1)), ["#1 joined bob"]);
    // A cookie made up, or made for another name or address, is not accepted.
    let sent = t.send(addr(3), &T::join_msg("carol", [7; 16], 0));
    assert_eq!(lines(&sent, addr(3)), ["challenge"]);
    let ServerMsg::Challenge { cookie, .. } = decode_server(&sent[0].1).unwrap() else {
        panic!()
    };
    let sent = t.send(addr(4), &T::join_msg("carol", cookie, 0));
    assert_eq!(lines(&sent, addr(4)), ["challenge"]);
    let sent = t.send(addr(3), &T::join_msg("carol2", cookie, 0));
    assert_eq!(lines(&sent, addr(3)), ["challenge"]);
    // Within the next window it is still good; two windows later it is stale.
    t.advance(Duration::from_secs(30));
    let mut t2_cookie_ok = t.send(addr(3), &T::join_msg("carol", cookie, 0));
    assert_eq!(lines(&t2_cookie_ok, addr(3)), ["welcome carol 3"]);
    t2_cookie_ok.clear();
    let sent = t.send(addr(5), &T::join_msg("dave", [0; 16], 0));
    let ServerMsg::Challenge { cookie, .. } = decode_server(&sent[0].1).unwrap() else {
        panic!()
    };
    t.advance(Duration::from_secs(61));
    let sent = t.send(addr(5), &T::join_msg("dave", cookie, 0));
    assert_eq!(lines(&sent, addr(5)), ["challenge"]);
    assert_eq!(t.room.member_count(), 3);
}

#[test]
fn refusals_say_why() {
    let mut t = T::new(Config {
        max_members: 2,
        ..Config::default()
    });
    t.join(addr(1), "alice");
    for (name, why) in [
        ("ALICE", "refused name taken"),
        ("ａｌｉｃｅ", "refused name taken"),
        ("ａｄｍｉｎ", "refused name reserved"),
        ("管理员", "refused name reserved"),
        ("a b", "refused invalid name"),
        ("a\u{202e}", "refused invalid name"),
    ] {
        let sent = t.send(addr(2), &T::join_msg(name, [0; 16], 0));
        assert_eq!(lines(&sent, addr(2)), [why], "{name}");
    }
    // One address, one member.
    let sent = t.send(addr(1), &T::join_msg("other", [0; 16], 0));
    assert_eq!(lines(&sent, addr(1)), ["refused name taken"]);
    t.join(addr(2), "bob");
    let (tok, sent) = t.try_join(addr(3), "carol", 0);
    assert!(tok.is_none());
    assert_eq!(lines(&sent, addr(3)), ["refused room full"]);
}

#[test]
fn say_goes_to_everyone_but_the_sender_once() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    t.join(addr(2), "bob");
    t.join(addr(3), "carol");
    let sent = t.send(addr(1), &say(a, 1, "hi"));
    assert_eq!(lines(&sent, addr(1)), ["ack 1"]);
    assert_eq!(lines(&sent, addr(2)), ["#2 alice: hi"]);
    assert_eq!(lines(&sent, addr(3)), ["#1 alice: hi"]);
    // Duplicates and late retransmissions are acknowledged, never forwarded twice.
    let sent = t.send(addr(1), &say(a, 3, "three"));
    assert_eq!(sent.len(), 3);
    for seq in [1, 3, 1] {
        let sent = t.send(addr(1), &say(a, seq, "again"));
        assert_eq!(lines(&sent, addr(1)), [format!("ack {seq}")]);
        assert_eq!(sent.len(), 1);
    }
    let sent = t.send(addr(1), &say(a, 2, "two"));
    assert_eq!(lines(&sent, addr(3)), ["#3 alice: two"]);
    // Invalid text is refused to the sender only, and not remembered.
    let sent = t.send(addr(1), &say(a, 4, "\x1b[2J"));
    assert_eq!(lines(&sent, addr(1)), ["reject 4 invalid text"]);
    assert_eq!(sent.len(), 1);
    let sent = t.send(addr(1), &say(a, 4, "ok"));
    assert_eq!(lines(&sent, addr(2)), ["#5 alice: ok"]);
}

#[test]
fn identity_comes_from_token_and_address() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    t.join(addr(2), "bob");
    // Alice's token from Bob's address (or a stranger's): dropped, no answer.
    assert!(t.send(addr(2), &say(a, 1, "I am alice")).is_empty());
    assert!(t.send(addr(9), &say(a, 1, "I am alice")).is_empty());
    assert_eq!(t.room.stats.forged, 2);
    // An unknown token gets UNKNOWN_SESSION with the token echoed, nothing else.
    let sent = t.send(addr(9), &say(12345, 1, "hi"));
    assert_eq!(lines(&sent, addr(9)), ["unknown 12345"]);
    assert_eq!(sent.len(), 1);
}

#[test]
fn private_who_ping_leave() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    let b = t.join(addr(2), "bob");
    t.join(addr(3), "carol");
    let sent = t.send(
        addr(1),
        &ClientMsg::Private {
            token: a,
            seq: 1,
            to: "BOB",
            text: "psst",
        },
    );
    assert_eq!(lines(&sent, addr(1)), ["ack 1"]);
    assert_eq!(lines(&sent, addr(2)), ["#2 private alice: psst"]);
    assert!(lines(&sent, addr(3)).is_empty());
    let sent = t.send(
        addr(1),
        &ClientMsg::Private {
            token: a,
            seq: 2,
            to: "nobody",
            text: "psst",
        },
    );
    assert_eq!(lines(&sent, addr(1)), ["reject 2 no such member"]);
    let sent = t.send(addr(2), &ClientMsg::Who { token: b, start: 1 });
    assert_eq!(lines(&sent, addr(2)), ["who 1/3: bob carol"]);
    let sent = t.send(addr(2), &ClientMsg::Ping { token: b });
    assert_eq!(lines(&sent, addr(2)), ["pong 2"]);
    let sent = t.send(addr(2), &ClientMsg::Leave { token: b });
    assert_eq!(lines(&sent, addr(2)), ["bye 0"]);
    assert_eq!(lines(&sent, addr(1)), ["#3 left0 bob"]);
    assert_eq!(lines(&sent, addr(3)), ["#1 left0 bob"]);
    let sent = t.send(addr(2), &ClientMsg::Leave { token: b });
    assert_eq!(lines(&sent, addr(2)), [format!("unknown {b}")]);
}

#[test]
fn who_pages_cover_a_big_room() {
    let mut t = T::new(Config::default());
    let mut names = Vec::new();
    let mut tok = 0;
    for n in 0..150u16 {
        let name = format!("member_{n:0>17}");
        tok = t.join(addr(n), &name);
        names.push(name);
    }
    let me = addr(149);
    let mut got = Vec::new();
    loop {
        let sent = t.send(
            me,
            &ClientMsg::Who {
                token: tok,
                start: got.len() as u32,
            },
        );
        assert!(sent[0].1.len() <= MAX_DATAGRAM);
        let ServerMsg::WhoPage { total, names, .. } = decode_server(&sent[0].1).unwrap() else {
            panic!()
        };
        assert_eq!(total, 150);
        let page: Vec<String> = names.iter().map(String::from).collect();
        if page.is_empty() {
            break;
        }
        got.extend(page);
    }
    assert_eq!(got, names);
}

#[test]
fn timeout_kick_and_shutdown() {
    let mut t = T::new(Config {
        member_timeout: Duration::from_secs(10),
        ..Config::default()
    });
    let a = t.join(addr(1), "alice");
    t.advance(Duration::from_secs(4));
    t.join(addr(2), "bob");
    t.join(addr(3), "carol");
    assert_eq!(
        t.room.next_deadline(),
        Some(t.now - Duration::from_secs(4) + Duration::from_secs(10))
    );
    t.advance(Duration::from_secs(5));
    t.send(addr(1), &ClientMsg::Ping { token: a });
    t.advance(Duration::from_secs(6));
    let sent = t.turn(|r, now, _| r.expire(now));
    assert_eq!(lines(&sent, addr(1)), ["#3 left1 bob", "#4 left1 carol"]);
    assert_eq!(t.room.member_count(), 1);
    t.join(addr(2), "bob");
    let mut reply = String::new();
    let sent = t.turn(|r, now, _| reply = r.console(now, "/kick Bob"));
    assert_eq!(reply, format!("kicked bob ({})", addr(2)));
    assert_eq!(lines(&sent, addr(2)), ["bye 1"]);
    assert_eq!(lines(&sent, addr(1)), ["#6 left2 bob"]);
    let sent = t.turn(|r, now, _| reply = r.console(now, "hello all"));
    assert_eq!(reply, "sent to 1 member");
    assert_eq!(lines(&sent, addr(1)), ["#7 admin: hello all"]);
    let sent = t.turn(|r, _, _| r.shutdown());
    assert_eq!(lines(&sent, addr(1)), ["bye 2"]);
    assert_eq!(t.room.member_count(), 0);
    assert!(t
        .room
        .take_log()
        .iter()
        .any(|l| l == "shutting down: told 1 members"));
}

#[test]
fn console_refuses_bad_lines_and_unknown_commands() {
    let mut t = T::new(Config::default());
    t.join(addr(1), "alice");
    let now = t.now;
    let r = &mut t.room;
    assert!(r
        .console(now, &"x".repeat(1001))
        .starts_with("not sent: 1001 bytes"));
    assert!(r.console(now, "bell\x07").starts_with("not sent"));
    assert!(r
        .console(now, "/frob")
        .starts_with("unknown command '/frob'"));
    assert_eq!(r.console(now, "/kick"), "usage: /kick NAME");
    assert_eq!(r.console(now, "/kick nobody"), "no member named 'nobody'");
    assert!(r
        .console(now, "/who")
        .starts_with("1 member\nalice\t10.0.0.1:4001\tidle 0.0 s"));
    assert!(r.console(now, "/stats").contains("members: 1, peak: 1"));
    assert_eq!(r.console(now, "//slash"), "sent to 1 member");
    let sent = t.turn(|_, _, _| {});
    assert_eq!(lines(&sent, addr(1)), ["#1 admin: /slash"]);
}

#[test]
fn rejoin_with_previous_token_replaces_the_session() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    t.join(addr(2), "bob");
    t.send(addr(1), &say(a, 1, "one"));
    // Without the token, or from another address, the name is taken.
    let (none, _) = t.try_join(addr(1), "alice", 0);
    assert!(none.is_none());
    let (none, _) = t.try_join(addr(3), "alice", a);
    assert!(none.is_none());
    let sent = t.send(
        addr(1),
        &ClientMsg::Join {
            nonce: 5,
            prev_token: a,
            cookie: [0; 16],
            name: "alice",
        },
    );
    let ServerMsg::Challenge { cookie, .. } = decode_server(&sent[0].1).unwrap() else {
        panic!()
    };
    let sent = t.send(
        addr(1),
        &ClientMsg::Join {
            nonce: 5,
            prev_token: a,
            cookie,
            name: "alice",
        },
    );
    let ServerMsg::Welcome { token: a2, .. } = decode_server(&sent[0].1).unwrap() else {
        panic!()
    };
    assert_ne!(a2, a);
    assert_eq!(sent.len(), 1, "the others see no leave and no join");
    assert_eq!(
        lines(&t.send(addr(1), &say(a, 2, "x")), addr(1)),
        [format!("unknown {a}")]
    );
    // A new session: the numbers of SAY start again, events from 1.
    let sent = t.send(addr(1), &say(a2, 1, "again"));
    assert_eq!(lines(&sent, addr(2)), ["#2 alice: again"]);
    let b = t.room.members.by_key("bob").unwrap();
    let bob = t.room.members.get(b).token;
    let sent = t.send(addr(2), &say(bob, 1, "hi"));
    assert_eq!(lines(&sent, addr(1)), ["#1 bob: hi"]);
    // The JOIN that created this session, retransmitted (WELCOME lost): WELCOME again.
    let sent = t.send(
        addr(1),
        &ClientMsg::Join {
            nonce: 5,
            prev_token: a,
            cookie,
            name: "alice",
        },
    );
    let ServerMsg::Welcome { token, .. } = decode_server(&sent[0].1).unwrap() else {
        panic!()
    };
    assert_eq!(token, a2);
}

#[test]
fn flood_control_and_its_off_switch() {
    let mut t = T::new(Config::default());
    let a = t.join(addr(1), "alice");
    t.join(addr(2), "bob");
    let mut acks = 0;
    for seq in 1..=30 {
        let sent = t.send(addr(1), &say(a, seq, "spam"));
        match lines(&sent, addr(1))[0].as_str() {
            l if l.starts_with("ack") => acks += 1,
            l => assert_eq!(l, format!("reject {seq} rate limited")),
        }
    }
    assert_eq!(acks, 10);
    assert_eq!(t.room.stats.rate_limited, 20);
    t.advance(Duration::from_secs(1));
    let sent = t.send(addr(1), &say(a, 11, "later"));
    assert_eq!(lines(&sent, addr(1)), ["ack 11"]);

    let mut t = T::new(Config {
        rate: 0.0,
        ..Config::default()
    });
    let a = t.join(addr(1), "alice");
    for seq in 1..=100 {
        assert_eq!(
            lines(&t.send(addr(1), &say(a, seq, "x")), addr(1)),
            [format!("ack {seq}")]
        );
    }
}

#[test]
fn a_turn_is_packed_unless_packing_is_off() {
    for packing in [true, false] {
        let mut t = T::new(Config {
            rate: 0.0,
            packing,
            ..Config::default()
        });
        let a = t.join(addr(1), "alice");
        t.join(addr(2), "bob");
        let texts: Vec<String> = (0..40).map(|k| format!("{k}:{}", "y".repeat(90))).collect();
        let msgs: Vec<Vec<u8>> = (0..40)
            .map(|k| say(a, k as u32 + 1, &texts[k]).to_vec())
            .collect();
        let sent = t.turn(|r, now, unix| {
            for m in &msgs {
                r.handle(now, unix, addr(1).into(), m);
            }
        });
        let to_bob: Vec<_> = sent.iter().filter(|(d, _)| *d == addr(2)).collect();
        let expect: Vec<String> = (0..40)
            .map(|k| format!("#{} alice: {}", k + 1, texts[k]))
            .collect();
        assert_eq!(lines(&sent, addr(2)), expect);
        if packing {
            // 40 events of 100 bytes: 11 fit in 1192 bytes.
            assert_eq!(to_bob.len(), 4);
        } else {
            assert_eq!(to_bob.len(), 40);
        }
        assert_eq!(lines(&sent, addr(1)).len(), 40, "one ACK each");
    }
}

#[test]
fn joins_and_leaves_are_quiet_above_the_announce_limit() {
    let mut t = T::new(Config {
        announce_limit: 2,
        ..Config::default()
    });
    t.join(addr(1), "a");
    let (_, sent) = t.try_join(addr(2), "b", 0);
    assert_eq!(lines(&sent, addr(1)), ["#1 joined b"]);
    let (_, sent) = t.try_join(addr(3), "c", 0);
    assert_eq!(sent.len(), 1, "only the WELCOME");
    let c = t.room.members.get(2).token;
    let sent = t.send(addr(3), &ClientMsg::Leave { token: c });
    assert_eq!(sent.len(), 1, "only the BYE");
    let b = t.room.members.get(1).token;
    let sent = t.send(addr(2), &ClientMsg::Leave { token: b });
    assert_eq!(lines(&sent, addr(1)), ["#2 left0 b"]);
}

#[test]
fn strangers_get_small_rate_limited_answers_and_malformed_none() {
    let mut t = T::new(Config::default());
    let join = T::join_msg("eve", [0; 16], 0).to_vec();
    assert_eq!(join.len(), JOIN_SIZE);
    let mut answered = 0;
    for _ in 0..100 {
        let sent = t.raw(addr(7), &join);
        assert!(sent.len() <= 1 && sent.iter().all(|(_, b)| b.len() <= join.len()));
        answered += sent.len();
    }
    assert_eq!(answered, 40, "burst of 40 per source IP");
    // Another address on the same IP shares the limit.
    let same_ip = SocketAddr::new(addr(7).ip(), 9);
    assert!(t.raw(same_ip, &join).is_empty());
    for bad in [
        &b""[..],
        b"UC",
        b"XX\x01\x02",
        b"UC\x02\x02",
        b"UC\x01\x7f",
        b"UC\x01\x05\x00",
        &[0u8; 1201][..],
    ] {
        assert!(t.raw(addr(8), bad).is_empty());
    }
    assert_eq!(t.room.stats.malformed, 7);
    let summary = t.room.malformed_summary().unwrap();
    assert!(
        summary.starts_with("dropped 7 malformed datagrams ("),
        "{summary}"
    );
    assert!(t.room.malformed_summary().is_none());
}

/// Random sequences of joins, says, privates, leaves, timeouts, kicks and
/// garbage: the room's invariants hold after every step.
#[test]
fn invariants_hold_under_random_events() {
    for seed in 1..=6u64 {
        random_run(seed, 1500);
    }
}

struct Client {
    addr: SocketAddr,
    name: String,
    token: Token,
    seq: u32,
    /// The number of the next event this session expects (events are never lost in memory).
    next_event: u32,
}

fn random_run(seed: u64, steps: usize) {
    let mut rng = TestRng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut t = T::new(Config {
        max_members: 12,
        announce_limit: 8,
        member_timeout: Duration::from_secs(20),
        rate: if seed % 2 == 0 { 0.0 } else { 5.0 },
        packing: seed % 3 != 0,
        ..Config::default()
    });
    let names = [
        "ann", "Ann", "bo", "cy", "dee", "ed", "fay", "gus", "hal", "ivy", "jo", "ka", "lu", "mo",
    ];
    let mut clients: HashMap<SocketAddr, Client> = HashMap::new();
    let mut cookies: HashMap<(SocketAddr, String), Cookie> = HashMap::new();
    let (mut welcomes, mut saids) = (0, 0);
    for _ in 0..steps {
        let who = rng.below(16);
        let from = addr(who as u16);
        let member_before = t.room.members.by_addr(&from).is_some();
        let mut len_in = 0;
        let sent = match rng.below(20) {
            0..=2 => {
                // Mostly each address's own name (so cookies come back), sometimes another.
                let name = match rng.below(4) {
                    0 => names[rng.below(names.len())],
                    _ => names[who % names.len()],
                }
                .to_string();
                let cookie = match rng.below(6) {
                    0 => [0; 16],
                    1 => [rng.next() as u8; 16],
                    _ => *cookies.get(&(from, name.clone())).unwrap_or(&[0; 16]),
                };
                let prev = clients.get(&from).map_or(0, |c| c.token);
                let prev = if rng.below(2) == 0 { prev } else { 0 };
                let msg = ClientMsg::Join {
                    nonce: rng.next(),
                    prev_token: prev,
                    cookie,
                    name: &name,
                };
                let bytes = msg.to_vec();
                len_in = bytes.len();
                let sent = t.raw(from, &bytes);
                for (_, b) in &sent {
                    match decode_server(b).unwrap() {
                        ServerMsg::Challenge { cookie, .. } => {
                            cookies.insert((from, name.clone()), cookie);
                        }
                        ServerMsg::Welcome { token, name, .. } => {
                            welcomes += 1;
                            clients.insert(
                                from,
                                Client {
                                    addr: from,
                                    name: name.to_string(),
                                    token,
                                    seq: 0,
                                    next_event: 1,
                                },
                            );
                        }
                        _ => {}
                    }
                }
                sent
            }
            3..=10 => {
                let (token, seq) = match clients.get_mut(&from) {
                    Some(c) if rng.below(10) > 0 => {
                        c.seq += 1;
                        (c.token, c.seq.saturating_sub(rng.below(3) as u32))
                    }
                    _ => (rng.next(), 1),
                };
                let text = format!("m{}", rng.below(1000));
                let msg = if rng.below(4) == 0 {
                    let to = names[rng.below(names.len())];
                    ClientMsg::Private {
                        token,
                        seq,
                        to,
                        text: &text,
                    }
                } else {
                    say(token, seq, &text)
                };
                let bytes = msg.to_vec();
                len_in = bytes.len();
                t.raw(from, &bytes)
            }
            11 | 12 => {
                let token = clients.get(&from).map_or(rng.next(), |c| c.token);
                let msg = match rng.below(3) {
                    0 => ClientMsg::Leave { token },
                    1 => ClientMsg::Ping { token },
                    _ => ClientMsg::Who {
                        token,
                        start: rng.below(14) as u32,
                    },
                };
                let bytes = msg.to_vec();
                len_in = bytes.len();
                t.raw(from, &bytes)
            }
            13 => {
                t.advance(Duration::from_millis(rng.below(3000) as u64));
                t.turn(|r, now, _| r.expire(now))
            }
            14 => {
                let name = names[rng.below(names.len())];
                t.turn(|r, now, _| {
                    r.console(now, &format!("/kick {name}"));
                })
            }
            15 => t.turn(|r, now, _| {
                r.console(now, "admin notice");
            }),
            _ => {
                let len = rng.below(300);
                let mut bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
                if len >= 4 && rng.below(2) == 0 {
                    bytes[..4].copy_from_slice(b"UC\x01\x02");
                }
                len_in = bytes.len();
                t.raw(from, &bytes)
            }
        };
        t.room.members.check();
        // Forget clients whose session is gone.
        clients.retain(|a, c| {
            t.room
                .members
                .by_addr(a)
                .is_some_and(|i| t.room.members.get(i).token == c.token)
        });
        // No more than one reply to a non-member, never larger than what it sent.
        if !member_before && len_in > 0 {
            let to_it: Vec<_> = sent.iter().filter(|(a, _)| *a == from).collect();
            assert!(to_it.len() <= 1, "{} replies to a stranger", to_it.len());
            assert!(to_it.iter().all(|(_, b)| b.len() <= len_in));
            assert!(
                sent.iter().all(|(a, _)| *a == from) || t.room.members.by_addr(&from).is_some(),
                "a stranger's datagram made the room send to others"
            );
        }
        for (to, bytes) in &sent {
            assert!(bytes.len() <= MAX_DATAGRAM);
            let Some(c) = clients.get_mut(to) else {
                continue;
            };
            if let ServerMsg::Events { first_seq, events } = decode_server(bytes).unwrap() {
                assert_eq!(
                    first_seq, c.next_event,
                    "event numbers contiguous for {}",
                    c.name
                );
                for e in events.iter() {
                    c.next_event += 1;
                    if let Event::Said { from, .. } = e {
                        saids += 1;
                        assert_ne!(from, c.name, "{} got its own SAID", c.name);
                    }
                }
            }
        }
        let names_now: HashSet<String> = (0..t.room.member_count())
            .map(|i| t.room.members.get(i).key.to_string())
            .collect();
        assert_eq!(names_now.len(), t.room.member_count());
        assert!(clients
            .values()
            .all(|c| t.room.members.by_addr(&c.addr).is_some()));
    }
    // The run did exercise the room.
    assert!(
        welcomes > 30 && saids > 100,
        "welcomes {welcomes}, saids {saids}"
    );
}
