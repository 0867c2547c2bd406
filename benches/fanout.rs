//! The server's hot paths inside the process, version 2: decoding a body,
//! the room's fan-out of one SAY to 100 and 10,000 members (packing on and
//! off; every datagram sealed for its member: one AEAD each), a packed turn
//! of 256 SAYs, and the batched socket calls over loopback (`sendmmsg` of a
//! sealed fan-out, `recvmmsg` full batches and one datagram per call).
//! Members are real connections (`client::conn`) joined in memory.
//!
//! ```sh
//! cargo bench --bench fanout
//! ```
//!
//! Each case runs in 7 rounds of about 150 ms after a warm-up; the table gives
//! the median and the best round in ns per operation (and per delivery or
//! per sealed datagram where an operation makes many). Plain `Instant` loops
//! with `black_box`: the effects measured are microseconds wide, far above
//! what a statistics harness would add.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use udpchat::client::conn::{Conn, Event as ConnEvent, SealedBodies};
use udpchat::net::{bind_server_socket, BatchReceiver, BatchSender, Outgoing, BATCH};
use udpchat::protocol::sealed::{decode_client, ClientMsg};
use udpchat::room::{Config, Room};
use udpchat::session::{ServerKey, MAX_BODY};

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

fn xorshift(mut x: u64) -> impl FnMut() -> u64 + Send {
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// Sends everything the room queued into the void, as the server's sender
/// would walk it, then ends the turn; returns how many datagrams.
fn drain(room: &mut Room, now: Instant) -> usize {
    let out = room.flush(now);
    for d in out.datagrams() {
        black_box(out.bytes(d));
    }
    let n = out.datagrams().len();
    room.end_turn();
    n
}

/// A room of `n` members, each a connection joined through the handshake
/// (a thousand a simulated second, within the gate's handshake budget).
struct Bench {
    room: Room,
    members: Vec<Conn<SealedBodies>>,
    now: Instant,
}

impl Bench {
    fn new(n: usize, packing: bool, repair: bool) -> Bench {
        let mut now = Instant::now();
        let cfg = Config {
            rate: 0.0,
            packing,
            repair,
            max_members: n.max(10),
            member_timeout: Duration::from_secs(3600),
            ..Config::default()
        };
        let mut room = Room::new(
            cfg,
            ServerKey::new([7; 32]),
            [5; 32],
            Box::new(xorshift(0x9E37_79B9_7F4A_7C15)),
            now,
        );
        let mut members = Vec::with_capacity(n);
        for chunk in (0..n).collect::<Vec<_>>().chunks(1000) {
            let mut joining: Vec<Conn<SealedBodies>> = chunk
                .iter()
                .map(|&i| {
                    Conn::connect(
                        SealedBodies,
                        &format!("m{i}"),
                        None,
                        Box::new(xorshift(i as u64 + 1)),
                        now,
                    )
                })
                .collect();
            let base = chunk[0];
            let by_addr: HashMap<SocketAddr, usize> =
                (0..joining.len()).map(|k| (addr(base + k), k)).collect();
            loop {
                for (k, c) in joining.iter_mut().enumerate() {
                    while let Some(d) = c.poll_transmit() {
                        room.handle(now, 1_700_000_000_000, addr(base + k).into(), &d);
                    }
                }
                let out = room.flush(now);
                let sent: Vec<(SocketAddr, Vec<u8>)> = out
                    .datagrams()
                    .iter()
                    .map(|d| (d.to, out.bytes(d).to_vec()))
                    .collect();
                room.end_turn();
                if sent.is_empty() {
                    break;
                }
                for (to, bytes) in sent {
                    if let Some(&k) = by_addr.get(&to) {
                        joining[k].on_datagram(now, &bytes);
                    }
                }
                for c in &mut joining {
                    while let Some(e) = c.poll_event() {
                        if let ConnEvent::VerifyKey(_) = e {
                            c.key_checked(now, true);
                        }
                    }
                }
            }
            assert!(joining.iter().all(Conn::is_member), "every member joined");
            members.extend(joining);
            now += Duration::from_secs(1);
        }
        assert_eq!(room.member_count(), n);
        // The KEEPALIVEs owed after the joins' events go now.
        now += Duration::from_secs(1);
        drain(&mut room, now);
        Bench { room, members, now }
    }

    /// Member `k` says `text` as message `seq` (sealed by its connection).
    fn say(&mut self, k: usize, seq: u32, text: &str) {
        let mut body = [0u8; MAX_BODY];
        let len = ClientMsg::Say { seq, text }
            .encode(&mut body)
            .expect("a SAY");
        let c = &mut self.members[k];
        c.send(self.now, &body[..len]).expect("a member");
        while let Some(d) = c.poll_transmit() {
            self.room
                .handle(self.now, 1_700_000_000_000, addr(k).into(), &d);
        }
    }
}

fn text(k: usize) -> String {
    format!("L00{k:09}00000000000000{}", ".".repeat(38))
}

fn main() {
    // `cargo bench` passes --bench; any other argument is not ours.
    println!("| case | median ns | best ns | per |");
    println!("|---|---:|---:|---|");

    let t = text(1);
    let mut say = [0u8; MAX_BODY];
    let len = ClientMsg::Say { seq: 7, text: &t }
        .encode(&mut say)
        .expect("a SAY");
    row(
        "decode a SAY body (64-byte text)",
        "body",
        measure(1, || {
            black_box(decode_client(black_box(&say[..len])).is_ok());
        }),
    );

    let long = "y".repeat(1000);
    for n in [100usize, 10_000] {
        for packing in [true, false] {
            let mut b = Bench::new(n, packing, true);
            let mut seq = 0u32;
            row(
                &format!(
                    "room: one SAY (64 bytes) fanned out to {} members and sealed, packing {}",
                    n - 1,
                    if packing { "on" } else { "off" }
                ),
                "delivery",
                measure((n - 1) as u64, || {
                    seq += 1;
                    b.say(0, seq, &t);
                    black_box(drain(&mut b.room, b.now));
                }),
            );
            if n == 100 && !packing {
                row(
                    "room: one SAY (1000 bytes: 1,176-byte datagrams) fanned out to 99 members",
                    "sealed datagram",
                    measure(99, || {
                        seq += 1;
                        b.say(0, seq, &long);
                        black_box(drain(&mut b.room, b.now));
                    }),
                );
            }
        }
    }

    // A flood turn: 256 SAYs from 4 senders, packed for 100 members; with
    // and without the events kept for repair.
    let says: Vec<String> = (0..256).map(text).collect();
    let mut per_turn = 0.0;
    for repair in [true, false] {
        let mut b = Bench::new(100, true, repair);
        let mut seqs = [0u32; 4];
        let mut datagrams = 0usize;
        let mut turns = 0usize;
        row(
            &format!(
                "room: a packed turn of 256 SAYs from 4 senders to 100 members, repair {}",
                if repair { "on" } else { "off" }
            ),
            "delivery",
            measure(256 * 99, || {
                for (k, body) in says.iter().enumerate() {
                    let s = k % 4;
                    seqs[s] += 1;
                    b.say(s, seqs[s], body);
                }
                datagrams += drain(&mut b.room, b.now);
                turns += 1;
            }),
        );
        per_turn = datagrams as f64 / turns as f64;
    }
    println!("\n(the packed turn: {per_turn:.0} sealed datagrams a turn for 25,344 deliveries)");

    sockets(&t);
}

/// `sendmmsg` and `recvmmsg` over loopback: a server socket sends one SAY's
/// sealed fan-out to one member socket, which receives it in batches; and
/// one datagram per `recvmmsg` call.
fn sockets(text: &str) {
    let server = bind_server_socket("127.0.0.1:0".parse().expect("address")).expect("bind");
    let member = bind_server_socket("127.0.0.1:0".parse().expect("address")).expect("bind");
    let to = member.local_addr().expect("address");
    // The room's datagrams, readdressed to the member socket.
    let mut b = Bench::new(BATCH + 1, true, true);
    b.say(0, 1, text);
    let out = b.room.flush(b.now);
    // The fan-out, without the sender's ACK.
    let fan: Vec<&[u8]> = out
        .datagrams()
        .iter()
        .filter(|d| d.to != addr(0))
        .map(|d| out.bytes(d))
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
        &format!("sockets: sendmmsg a sealed fan-out of {BATCH} datagrams, recvmmsg them"),
        "datagram",
        measure(BATCH as u64, || {
            let n = tx.send(
                &server,
                fan.iter().map(|d| Outgoing {
                    to: Some(to),
                    from: None,
                    pieces: std::iter::once(*d),
                    segment: None,
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
                    pieces: std::iter::once(one),
                    segment: None,
                }],
            );
            receive(1);
        }),
    );
}
