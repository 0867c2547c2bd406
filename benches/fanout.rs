//! The server's hot paths inside the process: decoding, the room's fan-out
//! of one SAY to 100 and 10,000 members (packing on and off), a packed turn
//! of 256 SAYs, encoding a packed batch of events, and the batched socket
//! calls over loopback (`sendmmsg` of a fan-out gathered from the outbox's
//! slices, `recvmmsg` full batches and one datagram per call).
//!
//! ```sh
//! cargo bench --bench fanout
//! ```
//!
//! Each case runs in 7 rounds of about 150 ms after a warm-up; the table gives
//! the median and the best round in ns per operation (and per delivery where
//! an operation delivers to many). Plain `Instant` loops with `black_box`:
//! the effects measured are microseconds wide, far above what a statistics
//! harness would add.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use udpchat::net::{bind_server_socket, BatchReceiver, BatchSender, Outgoing, BATCH};
use udpchat::protocol::{
    decode_client, decode_server, encode_events, ClientMsg, Event, ServerMsg, Token,
};
use udpchat::room::{Config, Outbox, Room};

const ROUNDS: usize = 7;
const ROUND: Duration = Duration::from_millis(150);

/// Runs `op` (which does `per_call` operations) in timed rounds; returns
/// (median, best) ns per operation.
fn measure(per_call: u64, mut op: impl FnMut()) -> (f64, f64) {
    let warm = Instant::now();
    while warm.elapsed() < ROUND {
        op();
    }
    let mut rounds = Vec::with_capacity(ROUNDS);
    for _ in 0..ROUNDS {
        let t = Instant::now();
        let mut calls = 0u64;
        while t.elapsed() < ROUND {
            op();
            calls += 1;
        }
        rounds.push(t.elapsed().as_nanos() as f64 / (calls * per_call) as f64);
    }
    rounds.sort_by(f64::total_cmp);
    (rounds[ROUNDS / 2], rounds[0])
}

fn row(case: &str, unit: &str, (median, best): (f64, f64)) {
    println!("| {case} | {median:.1} | {best:.1} | {unit} |");
}

fn addr(i: usize) -> SocketAddr {
    SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 4000))
}

/// Sends everything the room queued into the void, as the server's sender
/// would walk it (every slice of every datagram), then ends the turn.
fn drain(room: &mut Room) -> usize {
    let out: &Outbox = room.flush();
    let mut bytes = 0;
    for t in out.transmits() {
        for s in out.slices(t) {
            bytes += black_box(s).len();
        }
    }
    room.end_turn();
    bytes
}

/// A room of `n` members joined through the cookie round-trip; their tokens.
fn room_of(n: usize, packing: bool) -> (Room, Vec<Token>, Instant) {
    let now = Instant::now();
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let tokens = Box::new(move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    });
    let cfg = Config {
        rate: 0.0,
        packing,
        max_members: n.max(10),
        ..Config::default()
    };
    let mut room = Room::new(cfg, [7; 16], tokens, now);
    let unix = 1_700_000_000;
    let mut toks = Vec::with_capacity(n);
    for i in 0..n {
        let name = format!("m{i}");
        let join = |cookie| {
            ClientMsg::Join {
                nonce: i as u64,
                prev_token: 0,
                cookie,
                name: &name,
            }
            .to_vec()
        };
        room.handle(now, unix, addr(i).into(), &join([0; 16]));
        let cookie = reply(&mut room, |m| match m {
            ServerMsg::Challenge { cookie, .. } => Some(cookie),
            _ => None,
        });
        room.handle(now, unix, addr(i).into(), &join(cookie));
        let token = reply(&mut room, |m| match m {
            ServerMsg::Welcome { token, .. } => Some(token),
            _ => None,
        });
        toks.push(token);
    }
    drain(&mut room);
    (room, toks, now)
}

/// The first queued datagram `pick` accepts; ends the turn.
fn reply<T>(room: &mut Room, pick: impl Fn(ServerMsg<'_>) -> Option<T>) -> T {
    let out = room.flush();
    let found = out
        .transmits()
        .iter()
        .find_map(|t| pick(decode_server(&out.to_vec(t)).ok()?));
    room.end_turn();
    found.expect("the room answered")
}

fn text(k: usize) -> String {
    format!("L00{k:09}00000000000000{}", ".".repeat(38))
}

fn main() {
    // `cargo bench` passes --bench; any other argument is not ours.
    println!("| case | median ns | best ns | per |");
    println!("|---|---:|---:|---|");

    let t = text(1);
    let say = ClientMsg::Say {
        token: 1,
        seq: 7,
        text: &t,
    }
    .to_vec();
    row(
        "decode a SAY (64-byte text)",
        "datagram",
        measure(1, || {
            black_box(decode_client(black_box(&say)).is_ok());
        }),
    );
    let texts: Vec<String> = (0..16).map(text).collect();
    let events: Vec<Event> = texts
        .iter()
        .map(|t| Event::Said {
            from: "m12",
            text: t,
        })
        .collect();
    let mut packed = Vec::with_capacity(1200);
    encode_events(&mut packed, 1, &events);
    row(
        "decode a packed EVENTS (16 SAIDs, 1176 bytes) and walk its events",
        "event",
        measure(16, || {
            if let Ok(ServerMsg::Events { events, .. }) = decode_server(black_box(&packed)) {
                black_box(events.iter().count());
            }
        }),
    );
    row(
        "encode a packed batch (16 SAIDs into one EVENTS)",
        "event",
        measure(16, || {
            packed.clear();
            encode_events(&mut packed, 1, black_box(&events));
            black_box(packed.len());
        }),
    );

    for n in [100usize, 10_000] {
        for packing in [true, false] {
            let (mut room, toks, now) = room_of(n, packing);
            let mut seq = 0u32;
            let from = addr(0).into();
            row(
                &format!(
                    "room: one SAY fanned out to {} members, packing {}",
                    n - 1,
                    if packing { "on" } else { "off" }
                ),
                "delivery",
                measure((n - 1) as u64, || {
                    seq += 1;
                    let say = ClientMsg::Say {
                        token: toks[0],
                        seq,
                        text: &t,
                    }
                    .to_vec();
                    room.handle(now, 0, from, &say);
                    black_box(drain(&mut room));
                }),
            );
        }
    }

    // A flood turn: 256 SAYs from 4 senders, packed for 100 members.
    let (mut room, toks, now) = room_of(100, true);
    let mut seqs = [0u32; 4];
    let says: Vec<Vec<u8>> = (0..256).map(|k| text(k).into_bytes()).collect();
    row(
        "room: a packed turn of 256 SAYs from 4 senders to 100 members",
        "delivery",
        measure(256 * 99, || {
            for (k, body) in says.iter().enumerate() {
                let s = k % 4;
                seqs[s] += 1;
                let say = ClientMsg::Say {
                    token: toks[s],
                    seq: seqs[s],
                    text: std::str::from_utf8(body).expect("ASCII"),
                }
                .to_vec();
                room.handle(now, 0, addr(s).into(), &say);
            }
            black_box(drain(&mut room));
        }),
    );

    sockets(&t);
}

/// `sendmmsg` and `recvmmsg` over loopback: a server socket sends one SAY's
/// packed fan-out (the outbox's slices as iovecs) to one member socket, which
/// receives it in batches; and one datagram per `recvmmsg` call.
fn sockets(text: &str) {
    let server = bind_server_socket("127.0.0.1:0".parse().expect("address")).expect("bind");
    let member = bind_server_socket("127.0.0.1:0".parse().expect("address")).expect("bind");
    let to = member.local_addr().expect("address");
    // The room's datagrams, readdressed to the member socket.
    let (mut room, toks, now) = room_of(BATCH + 1, true);
    let say = ClientMsg::Say {
        token: toks[0],
        seq: 1,
        text,
    }
    .to_vec();
    room.handle(now, 0, addr(0).into(), &say);
    let out = room.flush();
    // The fan-out, without the sender's ACK.
    let fan: Vec<_> = out
        .transmits()
        .iter()
        .filter(|t| t.peer.addr != addr(0))
        .collect();
    assert_eq!(fan.len(), BATCH);
    let mut tx = BatchSender::new();
    let mut rx = BatchReceiver::new();
    let mut receive = |want: usize| {
        let mut got = 0;
        while got < want {
            match rx.recv(&member) {
                Ok(n) => {
                    for k in 0..n {
                        black_box(rx.get(k));
                    }
                    got += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("recvmmsg: {e}"),
            }
        }
    };
    row(
        &format!("sockets: sendmmsg a fan-out of {BATCH} datagrams, recvmmsg them"),
        "datagram",
        measure(BATCH as u64, || {
            let n = tx.send(
                &server,
                fan.iter().map(|t| Outgoing {
                    to: Some(to),
                    from: t.peer.local,
                    pieces: out.slices(t),
                }),
            );
            assert_eq!(n.sent, BATCH as u64);
            receive(BATCH);
        }),
    );
    let one = fan[0];
    row(
        "sockets: sendmmsg one datagram, recvmmsg it",
        "datagram",
        measure(1, || {
            tx.send(
                &server,
                [Outgoing {
                    to: Some(to),
                    from: None,
                    pieces: out.slices(one),
                }],
            );
            receive(1);
        }),
    );
}
