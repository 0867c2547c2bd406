//! The test relay (tests/common/relay.rs) checked against plain UDP peers:
//! each fault does what it says, in the direction it is set for, and nothing else.

#[path = "common/relay.rs"]
mod relay;

use relay::{Dir, Faults, Relay};
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

/// The bound on every wait for a datagram that should come.
const WAIT: Duration = Duration::from_secs(5);
/// How long to listen when nothing should come.
const QUIET: Duration = Duration::from_millis(200);

fn peer() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind a peer");
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    s
}

fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 2048];
    let (n, from) = s.recv_from(&mut buf).expect("a datagram within the wait");
    (buf[..n].to_vec(), from)
}

fn nothing(s: &UdpSocket) {
    s.set_read_timeout(Some(QUIET)).expect("timeout");
    let mut buf = [0u8; 2048];
    let got = s.recv_from(&mut buf);
    s.set_read_timeout(Some(WAIT)).expect("timeout");
    assert!(
        got.is_err(),
        "unexpected datagram {:?}",
        got.map(|(n, _)| buf[..n].to_vec())
    );
}

/// A relay between two fresh peers; the server peer has learnt the relay's back address.
fn setup(seed: u64) -> (Relay, UdpSocket, UdpSocket, SocketAddr) {
    let server = peer();
    let client = peer();
    let relay = Relay::start(server.local_addr().unwrap(), seed);
    client.send_to(b"hello", relay.addr).unwrap();
    let (d, back) = recv(&server);
    assert_eq!(d, b"hello");
    (relay, client, server, back)
}

/// A datagram shaped like DATA: 20-byte clear header with a counter, then a body.
fn data(id: u64, counter: u64, body: &[u8]) -> Vec<u8> {
    let mut d = vec![b'U', b'C', 2, 4];
    d.extend(id.to_be_bytes());
    d.extend(counter.to_be_bytes());
    d.extend(body);
    d
}

#[test]
fn clean_relay_passes_everything_both_ways_from_its_own_address() {
    let (relay, client, server, back) = setup(1);
    server.send_to(b"world", back).unwrap();
    let (d, from) = recv(&client);
    assert_eq!((d.as_slice(), from), (&b"world"[..], relay.addr));
    assert_eq!(relay.client(), Some(client.local_addr().unwrap()));
    assert_eq!(relay.back_addr(), back);
    let c = relay.counts(Dir::ToServer);
    assert_eq!((c.received, c.sent), (1, 1));
    let c = relay.counts(Dir::ToClient);
    assert_eq!((c.received, c.sent), (1, 1));
}

#[test]
fn drop_applies_to_its_direction_only() {
    let (relay, client, server, back) = setup(2);
    relay.set(
        Dir::ToClient,
        Faults {
            drop: 1.0,
            ..Faults::NONE
        },
    );
    server.send_to(b"lost", back).unwrap();
    nothing(&client);
    client.send_to(b"kept", relay.addr).unwrap();
    assert_eq!(recv(&server).0, b"kept");
    assert_eq!(relay.counts(Dir::ToClient).dropped, 1);
    assert_eq!(relay.counts(Dir::ToServer).dropped, 0);
}

#[test]
fn duplicate_sends_twice() {
    let (relay, client, server, _) = setup(3);
    relay.set(
        Dir::ToServer,
        Faults {
            duplicate: 1.0,
            ..Faults::NONE
        },
    );
    client.send_to(b"twice", relay.addr).unwrap();
    assert_eq!(recv(&server).0, b"twice");
    assert_eq!(recv(&server).0, b"twice");
    nothing(&server);
}

#[test]
fn reorder_sends_a_datagram_after_the_next_or_after_the_hold() {
    let (relay, client, server, _) = setup(4);
    relay.set(
        Dir::ToServer,
        Faults {
            reorder: 1.0,
            ..Faults::NONE
        },
    );
    client.send_to(b"a", relay.addr).unwrap();
    std::thread::sleep(Duration::from_millis(5));
    client.send_to(b"b", relay.addr).unwrap();
    assert_eq!(recv(&server).0, b"b");
    assert_eq!(recv(&server).0, b"a");
    // Alone, a held datagram still goes (after HOLD).
    client.send_to(b"c", relay.addr).unwrap();
    assert_eq!(recv(&server).0, b"c");
}

#[test]
fn flip_sends_a_copy_one_bit_off_then_the_datagram() {
    let (relay, client, server, back) = setup(5);
    relay.set(
        Dir::ToClient,
        Faults {
            flip: 1.0,
            ..Faults::NONE
        },
    );
    let d = data(7, 1, &[0u8; 40]);
    server.send_to(&d, back).unwrap();
    let (bad, _) = recv(&client);
    let (good, _) = recv(&client);
    assert_eq!(good, d);
    let bits: u32 = bad.iter().zip(&d).map(|(x, y)| (x ^ y).count_ones()).sum();
    assert_eq!((bad.len(), bits), (d.len(), 1));
}

#[test]
fn replay_sends_an_earlier_datagram_of_the_same_session_again() {
    let (relay, client, server, _) = setup(6);
    relay.set(
        Dir::ToServer,
        Faults {
            replay: 1.0,
            ..Faults::NONE
        },
    );
    let a = data(1, 1, b"a");
    let b = data(2, 1, b"b");
    let a2 = data(1, 2, b"a");
    for d in [&a, &b, &a2] {
        client.send_to(d, relay.addr).unwrap();
        assert_eq!(&recv(&server).0, d);
        let again = recv(&server).0;
        // Only an earlier datagram of the same session (first 12 bytes).
        assert_eq!(again[..12], d[..12]);
        assert!(again == *d || (d == &a2 && again == a), "{again:?}");
    }
    assert_eq!(relay.counts(Dir::ToServer).replayed, 3);
}

#[test]
fn forge_keeps_the_receiver_id_and_moves_the_counter_far_ahead() {
    let (relay, client, server, back) = setup(7);
    relay.set(
        Dir::ToClient,
        Faults {
            forge: 1.0,
            ..Faults::NONE
        },
    );
    let d = data(0xABCD, 41, &[0u8; 60]);
    server.send_to(&d, back).unwrap();
    assert_eq!(recv(&client).0, d);
    let fake = recv(&client).0;
    assert_eq!(fake.len(), d.len());
    assert_eq!(fake[..12], d[..12]);
    assert_eq!(fake[12..20], (41u64 + (1 << 20)).to_be_bytes());
    assert_ne!(fake[20..], d[20..]);
}

#[test]
fn the_same_seed_draws_the_same_faults() {
    let run = |seed| {
        let (relay, client, server, _) = setup(seed);
        relay.set(
            Dir::ToServer,
            Faults {
                drop: 0.5,
                ..Faults::NONE
            },
        );
        for k in 0..40u8 {
            client.send_to(&[k], relay.addr).unwrap();
        }
        let mut got = Vec::new();
        server.set_read_timeout(Some(QUIET)).unwrap();
        let mut buf = [0u8; 16];
        while let Ok((n, _)) = server.recv_from(&mut buf) {
            got.extend_from_slice(&buf[..n]);
        }
        got
    };
    let a = run(42);
    assert_eq!(a, run(42));
    assert!(!a.is_empty() && a.len() < 40, "{a:?}");
}

#[test]
fn inject_reaches_the_client_from_the_relay_address() {
    let (relay, client, _server, _) = setup(8);
    relay.inject(Dir::ToClient, b"forged");
    let (d, from) = recv(&client);
    assert_eq!((d.as_slice(), from), (&b"forged"[..], relay.addr));
    assert_eq!(relay.counts(Dir::ToClient).injected, 1);
}

#[test]
fn roam_moves_the_source_port_and_keeps_reading_the_old_one() {
    let (mut relay, client, server, old) = setup(9);
    let new = relay.roam();
    assert_ne!(new, old);
    client.send_to(b"moved", relay.addr).unwrap();
    let (d, from) = recv(&server);
    assert_eq!((d.as_slice(), from), (&b"moved"[..], new));
    server.send_to(b"to old", old).unwrap();
    assert_eq!(recv(&client).0, b"to old");
    server.send_to(b"to new", new).unwrap();
    assert_eq!(recv(&client).0, b"to new");
}

#[test]
fn race_sends_each_client_datagram_from_the_third_socket_first() {
    let (relay, client, server, back) = setup(10);
    let third = peer();
    relay.race_from(&third);
    client.send_to(b"copied", relay.addr).unwrap();
    let (d1, f1) = recv(&server);
    let (d2, f2) = recv(&server);
    assert_eq!(
        (d1.as_slice(), f1),
        (&b"copied"[..], third.local_addr().unwrap())
    );
    assert_eq!((d2.as_slice(), f2), (&b"copied"[..], back));
    assert_eq!(relay.stop_race(), 6);
    client.send_to(b"alone", relay.addr).unwrap();
    assert_eq!(recv(&server), (b"alone".to_vec(), back));
}
