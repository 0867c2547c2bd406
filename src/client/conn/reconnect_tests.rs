//! The connection's reconnect against a server in memory: after a reset,
//! a restart notice or silence, with a RESUME or a JOIN; a server with
//! another key; a refused RESUME; giving up through pipes.

use super::test_server::*;
use super::*;
use std::collections::HashSet;

#[test]
fn a_valid_reset_reconnects_and_resumes_with_the_ticket() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    c.set_progress(Progress {
        last_event: 4,
        last_room_seq: 77,
        lowest_unacked: 12,
    });
    s.restart();
    c.send(t0, &[SAY, 0, 0, 0, 12]).unwrap();
    let ev = pump(&mut c, &mut s, t0, true);
    let [Event::Reconnecting {
        next_attempt_at,
        cause: Cause::Reset,
    }] = ev[..]
    else {
        panic!("{ev:?}")
    };
    assert!(next_attempt_at > t0 && next_attempt_at <= t0 + Duration::from_millis(250));
    assert!(c.send(t0, &[SAY, 0, 0, 0, 13]) == Err(NotSent::NotMember));
    let (_, ev) = run_until(&mut c, &mut s, t0, next_attempt_at);
    assert!(
        matches!(ev[..], [Event::Welcome { resumed: true, .. }]),
        "{ev:?}"
    );
    let resume = s.bodies.last().unwrap();
    let mut want = vec![RESUME, TICKET.len() as u8];
    want.extend_from_slice(TICKET);
    want.extend_from_slice(&1u32.to_be_bytes()); // the WELCOME's epoch
    want.extend_from_slice(&77u64.to_be_bytes());
    want.extend_from_slice(&12u32.to_be_bytes());
    assert_eq!(resume[..want.len()], want[..]);
}

#[test]
fn a_restart_notice_reconnects_and_other_byes_end() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    let id = s.session_ids()[0];
    c.on_datagram(t0, &s.seal(id, &[BYE, 3, 0, 0, 0, 0, 0, 0]));
    let ev = events(&mut c);
    assert!(matches!(
        ev[..],
        [Event::Reconnecting {
            cause: Cause::Restarting,
            ..
        }]
    ));
    let (mut c, mut s) = member(t0);
    let id = s.session_ids()[0];
    let kicked = vec![BYE, 1, 0, 0, 0, 0, 0, 0];
    c.on_datagram(t0, &s.seal(id, &kicked));
    assert_eq!(events(&mut c), [Event::Ended(End::Bye { body: kicked })]);
}

#[test]
fn silence_reconnects_and_a_new_server_key_ends_it() {
    let t0 = Instant::now();
    let (mut c, _) = member(t0);
    let mut other = TestServer::new(2);
    // Nothing comes back for the member timeout: the keepalives go unanswered.
    let mut now;
    let ev = loop {
        now = c.next_timeout().unwrap();
        c.on_timeout(now);
        transmits(&mut c);
        let ev = events(&mut c);
        if !ev.is_empty() {
            break ev;
        }
    };
    assert!(
        matches!(
            ev[..],
            [Event::Reconnecting {
                cause: Cause::Silence,
                ..
            }]
        ),
        "{ev:?}"
    );
    assert_eq!(now, t0 + Duration::from_secs(30));
    let (_, ev) = run_until(&mut c, &mut other, now, now + Duration::from_secs(1));
    let Some(Event::Ended(End::KeyChanged { key, pinned })) = ev.last() else {
        panic!("{ev:?}")
    };
    assert_eq!(*key, public(2));
    assert_eq!(*pinned, public(1));
    assert!(other.data_seen.is_empty(), "nothing sent in that session");
}

#[test]
fn through_pipes_the_reconnect_gives_up_after_its_timeout() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    s.restart();
    c.send(t0, &[SAY, 0, 0, 0, 1]).unwrap();
    pump(&mut c, &mut s, t0, true);
    let mut now = t0;
    let mut attempts = Vec::new();
    let mut ended = None;
    while let Some(t) = c.next_timeout() {
        assert!(t >= now);
        now = t;
        c.on_timeout(now);
        for d in transmits(&mut c) {
            let id = id_c_of(&d);
            if d.len() == 256 && d[12..28] == [0; 16] && attempts.last() != Some(&id) {
                attempts.push(id);
            }
        }
        for e in events(&mut c) {
            match e {
                Event::Reconnecting {
                    next_attempt_at, ..
                } => assert!(next_attempt_at - now <= BACKOFF_CAP),
                Event::Ended(end) => ended = Some(end),
                e => panic!("{e:?}"),
            }
        }
    }
    assert_eq!(now, t0 + Duration::from_secs(60), "gave up then");
    assert!(attempts.len() >= 6, "{} attempts", attempts.len());
    let ids: HashSet<u64> = attempts.iter().copied().collect();
    assert_eq!(
        ids.len(),
        attempts.len(),
        "a new client id for each attempt"
    );
    assert_eq!(ended, Some(End::GaveUp));
}

/// Member of `s`, then `s` restarts and the next SAY draws its RESET.
fn reset_by_restart(c: &mut Conn<TestCodec>, s: &mut TestServer, now: Instant) -> Instant {
    s.restart();
    c.send(now, &[SAY, 0, 0, 0, 1]).unwrap();
    let ev = pump(c, s, now, true);
    match ev[..] {
        [Event::Reconnecting {
            next_attempt_at, ..
        }] => next_attempt_at,
        _ => panic!("{ev:?}"),
    }
}

#[test]
fn without_a_ticket_the_reconnect_joins_with_the_same_name() {
    let t0 = Instant::now();
    let mut c = connect(t0, None);
    let mut s = TestServer::new(1);
    s.ticket.clear();
    pump(&mut c, &mut s, t0, true);
    let at = reset_by_restart(&mut c, &mut s, t0);
    let (_, ev) = run_until(&mut c, &mut s, t0, at);
    assert!(
        matches!(ev[..], [Event::Welcome { resumed: false, .. }]),
        "{ev:?}"
    );
    assert_eq!(s.bodies.last().unwrap()[..7], *b"\x01\x05alice");
}

#[test]
fn a_refused_resume_waits_for_a_name_and_never_gives_up_meanwhile() {
    let t0 = Instant::now();
    let (mut c, mut s) = member(t0);
    s.on_resume = OnJoin::Refuse;
    let at = reset_by_restart(&mut c, &mut s, t0);
    let (_, ev) = run_until(&mut c, &mut s, t0, at);
    assert!(matches!(ev[..], [Event::Refused { .. }]), "{ev:?}");
    assert_eq!(c.next_timeout(), None, "waiting for the caller");
    let later = t0 + Duration::from_secs(3600);
    c.on_timeout(later);
    assert_eq!(events(&mut c), []);
    assert!(c.join(later, "alice2"));
    let ev = pump(&mut c, &mut s, later, true);
    assert!(matches!(ev[..], [Event::Welcome { .. }]), "{ev:?}");
    assert_eq!(s.bodies.last().unwrap()[..8], *b"\x01\x06alice2");
}
