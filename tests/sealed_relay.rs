//! Protocol version 2 under attack, through the real binaries: a relay in the
//! test (tests/common/relay.rs) between a chat-client and chat-server flips
//! bits, replays, reorders and forges datagrams both ways, forges the server's
//! BYE, changes its source port (roaming), races the client's datagrams from
//! a third address; a server restarted with another key; spoofed INITs
//! carrying the victim's IP while it joins. Every key, known-servers file and
//! database lives in a temporary directory.

#[path = "common/client.rs"]
mod client_harness;
#[path = "common/relay.rs"]
mod relay;
#[path = "common/room.rs"]
mod room;
#[path = "common/server.rs"]
mod server_harness;

use client_harness::Client;
use relay::{Dir, Faults, Relay, Rng};
use room::{
    fingerprint, lines, member_line, only_genuine_once, pairs, spawn_client, start_server, talk,
    Room, WAIT,
};
use server_harness::Server;
use std::collections::HashMap;
use std::net::UdpSocket;
use std::time::{Duration, Instant};
use udpchat::session::kind;

/// The counters of `/stats` whose names say a datagram was dropped as bad.
fn rejected(stats: &HashMap<String, u64>) -> u64 {
    stats
        .iter()
        .filter(|(k, _)| {
            [
                "malformed",
                "forged",
                "replayed",
                "over budget",
                "wrong state",
                "resets",
            ]
            .iter()
            .any(|w| k == w)
        })
        .map(|(_, v)| v)
        .sum()
}

/// The address `/who` lists for `name`.
fn member_addr(server: &mut Server, name: &str) -> String {
    server.console("/who");
    let first = server.reply();
    let n: usize = first
        .split(' ')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("/who said {first:?}"));
    let mut found = None;
    for _ in 0..n {
        let line = server.reply();
        let mut f = line.split('\t');
        if f.next() == Some(name) {
            found = f.next().map(str::to_string);
        }
    }
    found.unwrap_or_else(|| panic!("{name} is not in /who"))
}

/// Alice joined through `relay`, then carol directly; alice has seen carol join.
fn alice_behind_relay_and_carol(room: &Room, relay: &Relay) -> (Client, Client) {
    let mut alice = room.join(&relay.addr_text(), "alice");
    let carol = room.join(&room.addr(), "carol");
    alice
        .out
        .wait_for("carol joined", WAIT)
        .expect("carol's join");
    (alice, carol)
}

/// Waits (bounded) until `/who` lists `name` at `to`.
fn wait_moved(server: &mut Server, name: &str, to: std::net::SocketAddr) {
    let end = Instant::now() + WAIT;
    while member_addr(server, name) != to.to_string() {
        assert!(Instant::now() < end, "{name}'s session never moved to {to}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Asserts that since line `from`, `c` printed only member lines (no join,
/// leave or loss notice).
#[track_caller]
fn only_member_lines_since(c: &Client, from: usize) {
    let since = &c.out.seen[from..];
    assert!(
        since.iter().all(|l| member_line(l).is_some()),
        "only member lines after the move: {since:#?}"
    );
}

/// Asserts that the server moved one session and still has both members.
#[track_caller]
fn moved_once_both_stayed(server: &mut Server) {
    let st = server.stats();
    assert_eq!((st["moves"], st["members"]), (1, 2), "{st:?}");
}

#[test]
fn flips_replays_reordering_and_forgeries_both_ways_are_dropped_and_the_talk_goes_on() {
    let mut room = Room::open(&[]);
    let relay = Relay::start(room.server.addr, 0xF11F);
    let mut alice = room.join(&relay.addr_text(), "alice");
    let mut bob = room.join(&room.addr(), "bob");
    alice.out.wait_for("bob joined", WAIT).expect("bob's join");
    let before = rejected(&room.server.stats());
    let attacks = Faults {
        flip: 0.3,
        replay: 0.3,
        reorder: 0.2,
        forge: 0.3,
        ..Faults::NONE
    };
    relay.set_both(attacks);
    let from_alice = lines("from alice", 60);
    let from_bob = lines("from bob", 60);
    // Reordered either way, every line is shown in its sender's order.
    talk(&mut alice, "alice", &mut bob, &from_alice);
    talk(&mut bob, "bob", &mut alice, &from_bob);
    relay.set_both(Faults::NONE);
    let last = vec!["the last word".to_string()];
    talk(&mut alice, "alice", &mut bob, &last);
    talk(&mut bob, "bob", &mut alice, &last);

    let up = relay.counts(Dir::ToServer);
    let down = relay.counts(Dir::ToClient);
    assert!(up.flipped + up.replayed + up.forged > 10, "{up:?}");
    assert!(down.flipped + down.replayed + down.forged > 10, "{down:?}");
    // Every bad datagram toward the server was dropped and counted as such.
    let counted = rejected(&room.server.stats()) - before;
    let bad = up.flipped + up.replayed + up.forged + up.duplicated;
    assert_eq!(counted, bad, "server counted {counted} of {bad}: {up:?}");
    // Nothing forged or replayed was shown, nothing twice, nothing lost.
    only_genuine_once(
        &alice,
        &[pairs("bob", &from_bob), pairs("bob", &last)].concat(),
    );
    only_genuine_once(
        &bob,
        &[pairs("alice", &from_alice), pairs("alice", &last)].concat(),
    );
    for c in [&alice, &bob] {
        assert!(
            !c.out.seen.iter().any(|l| l.contains("lost")),
            "{:?}",
            c.out.seen
        );
    }
}

/// A datagram shaped like a server's BYE to session `id` (20-byte clear
/// header, a sealed body the size of BYE's), with random bytes where the
/// ciphertext and tag belong.
fn forged_data(id: &[u8], counter: u64, body_len: usize, rng: &mut Rng) -> Vec<u8> {
    let mut d = vec![b'U', b'C', 2, kind::DATA];
    d.extend_from_slice(id);
    d.extend(counter.to_be_bytes());
    let mut sealed = vec![0u8; 20 + body_len + 16];
    rng.fill(&mut sealed);
    d.extend(sealed);
    d
}

fn counter_of(d: &[u8]) -> u64 {
    u64::from_be_bytes(d[12..20].try_into().expect("a DATA header"))
}

#[test]
fn a_forged_or_replayed_bye_does_not_end_a_client() {
    let room = Room::open(&[]);
    let relay = Relay::start(room.server.addr, 0xB7E);
    let (mut alice, mut carol) = alice_behind_relay_and_carol(&room, &relay);
    let bob_relay = Relay::start(room.server.addr, 0xB0B);
    let mut bob = room.join(&bob_relay.addr_text(), "bob");
    talk(&mut carol, "carol", &mut alice, &lines("before", 3));

    // A genuine BYE: bob leaves, and the last datagram the server sent him is it.
    bob.close_stdin();
    assert_eq!(bob.wait_clean(WAIT).code(), Some(0));
    let bobs_bye = bob_relay
        .last_of_kind(Dir::ToClient, kind::DATA)
        .expect("bob's BYE");

    let last = relay
        .last_of_kind(Dir::ToClient, kind::DATA)
        .expect("a sealed datagram to alice");
    let id = last[4..12].to_vec();
    let mut rng = Rng::new(7);
    // BYE's body: type, reason, missed u32, text0 (u16 0).
    for ahead in [1, 2, 1000, 1 << 40] {
        relay.inject(
            Dir::ToClient,
            &forged_data(&id, counter_of(&last) + ahead, 8, &mut rng),
        );
    }
    // Bob's genuine BYE, as it was and re-addressed to alice's session.
    relay.inject(Dir::ToClient, &bobs_bye);
    let mut readdressed = bobs_bye.clone();
    readdressed[4..12].copy_from_slice(&id);
    relay.inject(Dir::ToClient, &readdressed);
    // Alice's own genuine datagrams again.
    for d in relay.log(Dir::ToClient).iter().rev().take(20) {
        relay.inject(Dir::ToClient, d);
    }
    // RESETs and a COOKIE outside the sealed channel, without the token: for
    // the server's session id (the one a genuine RESET names) and alice's.
    let id_s = relay
        .last_of_kind(Dir::ToServer, kind::DATA)
        .expect("a sealed datagram from alice")[4..12]
        .to_vec();
    for (k, which) in [
        (kind::RESET, &id_s),
        (kind::RESET, &id),
        (kind::COOKIE, &id),
    ] {
        let mut d = vec![b'U', b'C', 2, k];
        d.extend_from_slice(which);
        let mut token = [0u8; 16];
        rng.fill(&mut token);
        d.extend(token);
        relay.inject(Dir::ToClient, &d);
    }

    let after = lines("after", 3);
    talk(&mut carol, "carol", &mut alice, &after);
    talk(&mut alice, "alice", &mut carol, &lines("still here", 2));
    assert!(
        alice.child.try_wait().expect("wait").is_none(),
        "alice ended"
    );
    only_genuine_once(
        &alice,
        &[pairs("carol", &lines("before", 3)), pairs("carol", &after)].concat(),
    );
    assert!(
        !alice
            .out
            .seen
            .iter()
            .chain(&alice.err.seen)
            .any(|l| l.contains("bye") || l.contains("removed") || l.contains("closing")),
        "{:?}",
        alice.out.seen
    );
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
}

#[test]
fn a_server_restarted_with_another_key_is_refused_by_a_client_that_pinned_the_first() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let known = dir.path().join("known_servers");
    let first = start_server(dir.path(), "127.0.0.1:0", "first.key", &[]);
    let addr = first.addr.to_string();
    let mut alice = spawn_client(&known, &addr, "alice");
    alice.out.wait_for("welcome, alice", WAIT).expect("welcome");
    alice.close_stdin();
    assert_eq!(alice.wait_clean(WAIT).code(), Some(0));
    drop(first);

    let _second = start_server(dir.path(), &addr, "second.key", &[]);
    let mut again = spawn_client(&known, &addr, "alice");
    assert_eq!(
        again.wait_clean(WAIT).code(),
        Some(1),
        "{:?}",
        again.out.seen
    );
    let err = again.err.rest(WAIT).join("\n");
    let pinned = fingerprint(&dir.path().join("first.key"));
    let offered = fingerprint(&dir.path().join("second.key"));
    assert!(err.contains(&pinned), "the pinned fingerprint: {err}");
    assert!(err.contains(&offered), "the server's fingerprint: {err}");
    assert!(
        err.contains(known.to_str().expect("UTF-8")),
        "the file: {err}"
    );
    let line = std::fs::read_to_string(&known)
        .expect("the known-servers file")
        .lines()
        .position(|l| l.contains(&addr))
        .expect("the server's line")
        + 1;
    assert!(err.contains(&format!("line {line}")), "the line: {err}");
    assert!(!again.out.seen.iter().any(|l| l.contains("welcome")));
}

#[test]
fn a_new_source_port_keeps_the_session_and_nobody_sees_a_leave_or_join() {
    let mut room = Room::open(&[]);
    let mut relay = Relay::start(room.server.addr, 0x4A4);
    let (mut alice, mut carol) = alice_behind_relay_and_carol(&room, &relay);
    talk(&mut alice, "alice", &mut carol, &lines("before", 3));
    let old = relay.back_addr();
    assert_eq!(member_addr(&mut room.server, "alice"), old.to_string());

    let seen_before = [alice.out.seen.len(), carol.out.seen.len()];
    let new = relay.roam();
    talk(&mut alice, "alice", &mut carol, &lines("moved", 3));
    talk(&mut carol, "carol", &mut alice, &lines("to alice", 3));
    // The session moves once the path check comes back from the new port.
    wait_moved(&mut room.server, "alice", new);
    talk(&mut carol, "carol", &mut alice, &lines("after the move", 3));
    let last = lines("from the new port", 3);
    talk(&mut alice, "alice", &mut carol, &last);
    only_member_lines_since(&alice, seen_before[0]);
    only_member_lines_since(&carol, seen_before[1]);
    moved_once_both_stayed(&mut room.server);
}

#[test]
fn an_idle_member_whose_port_changes_moves_at_its_next_keepalive() {
    // A 3 s member timeout: the client sends a keepalive after 1 s of quiet.
    let mut room = Room::open(&["--member-timeout", "3"]);
    let mut relay = Relay::start(room.server.addr, 0x1D1E);
    let (mut alice, mut carol) = alice_behind_relay_and_carol(&room, &relay);
    let seen_before = [alice.out.seen.len(), carol.out.seen.len()];
    let new = relay.roam();
    wait_moved(&mut room.server, "alice", new);
    talk(&mut carol, "carol", &mut alice, &lines("found you", 2));
    only_member_lines_since(&alice, seen_before[0]);
    only_member_lines_since(&carol, seen_before[1]);
    moved_once_both_stayed(&mut room.server);
}

#[test]
fn a_copy_from_a_third_address_gets_no_more_than_it_sent_and_the_member_stays() {
    let mut room = Room::open(&[]);
    let relay = Relay::start(room.server.addr, 0x3D);
    let (mut alice, mut carol) = alice_behind_relay_and_carol(&room, &relay);
    let real = relay.back_addr().to_string();

    let third = UdpSocket::bind("127.0.0.1:0").expect("the third socket");
    third
        .set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    relay.race_from(&third);
    let from_alice = lines("raced", 20);
    let to_alice = lines("to the real alice", 40);
    talk(&mut alice, "alice", &mut carol, &from_alice);
    talk(&mut carol, "carol", &mut alice, &to_alice);
    let sent = relay.stop_race();
    let mut got = 0u64;
    let mut buf = [0u8; 2048];
    let end = Instant::now() + Duration::from_millis(500);
    while Instant::now() < end {
        if let Ok((n, _)) = third.recv_from(&mut buf) {
            got += n as u64;
        }
    }
    let st = room.server.stats();
    // The copies came first, with new counters: each drew a path check to
    // the third address, which never answered.
    assert!(st["path challenges"] >= 1 && got > 0, "{st:?}");
    assert!(got <= sent, "the third address got {got} bytes for {sent}");
    assert_eq!(st["moves"], 0, "{st:?}");
    assert_eq!(member_addr(&mut room.server, "alice"), real);
    talk(
        &mut carol,
        "carol",
        &mut alice,
        &lines("still reaching alice", 3),
    );
    only_genuine_once(
        &alice,
        &[
            pairs("carol", &to_alice),
            pairs("carol", &lines("still reaching alice", 3)),
        ]
        .concat(),
    );
    only_genuine_once(&carol, &pairs("alice", &from_alice));
}

/// A first-contact INIT (cookie 0, the rest zero) with a random session id.
fn first_init(rng: &mut Rng) -> Vec<u8> {
    let mut d = vec![0u8; udpchat::session::INIT_SIZE];
    d[..4].copy_from_slice(&[b'U', b'C', 2, kind::INIT]);
    d[4..12].copy_from_slice(&(rng.next_u64() | 1).to_be_bytes());
    d
}

#[test]
fn spoofed_inits_with_the_victims_ip_do_not_lock_it_out() {
    // Loopback: the spoofer sends from the victim's IP (127.0.0.1) on other ports.
    let mut room = Room::open(&[]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let spoofed = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let server = room.server.addr;
    let (flag, count) = (stop.clone(), spoofed.clone());
    let spoofer = std::thread::spawn(move || {
        let socks: Vec<UdpSocket> = (0..32)
            .map(|_| UdpSocket::bind("127.0.0.1:0").expect("a spoofer socket"))
            .collect();
        let mut rng = Rng::new(0x5900F);
        let start = Instant::now();
        let mut sent = 0u64;
        // 1,000 a second, for at most 8 s and 8,000 datagrams.
        while !flag.load(std::sync::atomic::Ordering::Relaxed)
            && sent < 8_000
            && start.elapsed() < Duration::from_secs(8)
        {
            let due = start + Duration::from_millis(sent);
            if let Some(wait) = due.checked_duration_since(Instant::now()) {
                std::thread::sleep(wait);
            }
            let s = &socks[rng.below(socks.len())];
            if s.send_to(&first_init(&mut rng), server).is_ok() {
                sent += 1;
                count.store(sent, std::sync::atomic::Ordering::Relaxed);
            }
        }
        sent
    });
    // The victim starts once the flood is under way: a second of it (bounded).
    let under_way = Instant::now() + Duration::from_secs(10);
    while spoofed.load(std::sync::atomic::Ordering::Relaxed) < 1_000 && Instant::now() < under_way {
        std::thread::sleep(Duration::from_millis(10));
    }
    let relay = Relay::start(server, 0x71C);
    let mut victim = spawn_client(&room.known_servers(), &relay.addr_text(), "victim");
    // The client gives up a first login after 4.5 s (LOGIN_TIMEOUT): a
    // welcome means it joined within that. The bound here is 5x.
    let welcome = victim
        .out
        .wait_for("welcome, victim", 5 * Duration::from_millis(4500));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let sent = spoofer.join().expect("the spoofer");
    assert!(welcome.is_some(), "locked out: {:?}", victim.err.rest(WAIT));
    assert!(sent >= 1_000, "only {sent} spoofed INITs");
    // The protocol's answers came in time, counted in resends: the cookie
    // round-trip and the handshake took at most two resends of INIT (sent
    // 0.5 s and 1.5 s after the first; a spoofer that got the victim's
    // COOKIEs or handshakes refused would cost it more, up to giving up).
    let inits = relay.count_kind(Dir::ToServer, kind::INIT);
    assert!((2..=4).contains(&inits), "{inits} INITs");
    let st = room.server.stats();
    assert!(
        st.values().any(|&v| v >= 1_000),
        "the load reached the server: {st:?}"
    );
}
