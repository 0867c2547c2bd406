use super::ring::RING_MIN_CAPACITY;
use super::*;
use std::time::Duration;

const PACK: Packing = Packing {
    capacity: 1100,
    overhead: 40,
};

fn ev(n: u64, len: usize) -> EventBody {
    let mut v = vec![(n % 251) as u8; len.max(8)];
    v[..8].copy_from_slice(&n.to_be_bytes());
    v.truncate(len.max(1));
    v.into()
}

fn number_of(e: &[u8]) -> u64 {
    u64::from_be_bytes(e[..8].try_into().unwrap())
}

/// Sends member `m` its event number `n` (a body of `len` bytes naming `n`).
fn send(s: &mut RepairStore, m: Slot, n: u64, len: usize) {
    let id = s.add(ev(n, len));
    s.record(m, n, id);
}

/// A store with one member that was sent `numbers`, bodies of `len` bytes.
fn one_member(
    limits: Limits,
    numbers: std::ops::RangeInclusive<u64>,
    len: usize,
) -> (RepairStore, Slot) {
    let mut s = RepairStore::new(limits);
    let m = s.join();
    for n in numbers {
        send(&mut s, m, n, len);
    }
    (s, m)
}

/// A budget that never runs out (for tests of what is answered, not when).
fn plenty(now: Instant) -> Budget {
    Budget::with_rate(now, u64::MAX / 4, u64::MAX / 4)
}

/// Everything the store answers now, in order.
fn drain(store: &mut RepairStore, slot: Slot, now: Instant) -> Vec<Repair> {
    let mut b = plenty(now);
    std::iter::from_fn(|| store.poll_repair(slot, now, &mut b, PACK)).collect()
}

/// The numbers resent and the ranges reported lost.
fn flatten(answers: &[Repair]) -> (Vec<u64>, Vec<(u64, u64)>) {
    let (mut sent, mut lost) = (Vec::new(), Vec::new());
    for a in answers {
        match a {
            Repair::Events { first, events } => {
                for (i, e) in events.iter().enumerate() {
                    assert_eq!(number_of(e), first + i as u64, "consecutive, right body");
                    sent.push(first + i as u64);
                }
            }
            Repair::Lost(r) => lost.extend_from_slice(r),
        }
    }
    (sent, lost)
}

fn sorted_disjoint(r: &[(u64, u64)]) -> bool {
    r.iter().all(|&(lo, hi)| lo <= hi) && r.windows(2).all(|w| w[0].1 + 1 < w[1].0)
}

/// The invariants every test ends with: the charges add up and the bounds hold.
fn check(store: &RepairStore) {
    let l = store.limits;
    let mut runs = 0;
    for ring in store.rings.iter().flatten() {
        assert!(ring.runs.len() <= l.member_runs);
        assert!(ring.runs.capacity() <= RING_MIN_CAPACITY.max(4 * ring.runs.len()));
        // Runs cover first..next without holes.
        if let (Some(f), Some(b)) = (ring.runs.front(), ring.runs.back()) {
            assert!(f.first <= ring.first && ring.first < f.end() && b.end() == ring.next);
            assert!(ring
                .runs
                .iter()
                .zip(ring.runs.iter().skip(1))
                .all(|(a, b)| a.end() == b.first));
        }
        assert!(sorted_disjoint(&ring.pending) && sorted_disjoint(&ring.lost));
        assert!(ring.pending.len() <= MAX_WAITING_RANGES && ring.lost.len() <= MAX_WAITING_RANGES);
        assert!(ring
            .pending
            .iter()
            .all(|&(lo, hi)| lo >= ring.first && hi < ring.next));
        let fixed = std::mem::size_of::<Ring>()
            + RING_MIN_CAPACITY * std::mem::size_of::<Run>()
            + (ring.pending.capacity() + ring.lost.capacity()) * 16;
        assert!(fixed <= MEMBER_FIXED_BYTES, "{fixed}");
        runs += ring.runs.len();
    }
    assert_eq!(runs, store.runs);
    assert!(store.runs * RUN_COST <= l.runs_bytes);
    let log: usize = store.log.iter().map(|b| b.len() + LOG_ENTRY_OVERHEAD).sum();
    assert_eq!(log, store.log_bytes);
    assert!(store.log_bytes <= l.log_bytes);
    assert!(store.order.len() <= 2 * store.runs + 65);
}

#[test]
fn keeps_the_last_k_and_reports_the_rest_lost_exactly() {
    let t = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=KEEP_EVENTS as u64 + 10, 60);
    assert_eq!(s.kept(m), Some((11, KEEP_EVENTS as u64 + 10)));
    // Asking for everything, twice over and beyond what was sent.
    s.nack(m, &[(0, u64::MAX), (5, 20), (1, 1)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!(lost, vec![(1, 10)]);
    assert_eq!(sent, (11..=KEEP_EVENTS as u64 + 10).collect::<Vec<_>>());
    // Answered once: nothing more until asked again.
    assert!(drain(&mut s, m, t).is_empty());
    check(&s);
}

#[test]
fn batches_fit_the_datagram_and_cover_ranges_separately() {
    let t = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=100, 300);
    s.nack(m, &[(10, 19), (30, 30), (25, 26)]);
    let runs: Vec<(u64, usize)> = drain(&mut s, m, t)
        .iter()
        .map(|a| match a {
            Repair::Events { first, events } => (*first, events.len()),
            Repair::Lost(_) => panic!("nothing lost"),
        })
        .collect();
    // 1100 bytes hold three 300-byte events.
    assert_eq!(
        runs,
        vec![(10, 3), (13, 3), (16, 3), (19, 1), (25, 2), (30, 1)]
    );
}

#[test]
fn an_event_larger_than_the_capacity_still_goes_alone() {
    let t = Instant::now();
    let mut s = RepairStore::default();
    let m = s.join();
    send(&mut s, m, 1, 2000);
    send(&mut s, m, 2, 10);
    s.nack(m, &[(1, 2)]);
    assert_eq!(flatten(&drain(&mut s, m, t)).0, vec![1, 2]);
}

#[test]
fn resends_wait_for_the_budget() {
    let t0 = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=20, 500);
    // 1000 bytes a second, a burst of one datagram.
    let mut b = Budget::with_rate(t0, 1000, 1040);
    s.nack(m, &[(1, 20)]);
    let first = s.poll_repair(m, t0, &mut b, PACK).unwrap();
    assert!(matches!(first, Repair::Events { first: 1, ref events } if events.len() == 2));
    assert_eq!(s.poll_repair(m, t0, &mut b, PACK), None);
    let at = s.repair_ready_at(m, &b, PACK).unwrap();
    assert_eq!(at, t0 + Duration::from_millis(1040));
    assert_eq!(
        s.poll_repair(m, at - Duration::from_millis(1), &mut b, PACK),
        None
    );
    assert!(matches!(
        s.poll_repair(m, at, &mut b, PACK),
        Some(Repair::Events { first: 3, .. })
    ));
}

#[test]
fn what_waits_for_its_resend_and_goes_meanwhile_is_reported_lost() {
    let t = Instant::now();
    let limits = Limits {
        keep: 4,
        ..Limits::DEFAULT
    };
    let (mut s, m) = one_member(limits, 1..=4, 20);
    s.nack(m, &[(2, 3)]);
    send(&mut s, m, 5, 20); // 1 goes (not asked for)
    send(&mut s, m, 6, 20); // 2 goes (asked for)
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![3], vec![(2, 2)]));
    check(&s);
}

#[test]
fn one_body_serves_every_member_and_one_run_a_whole_stream() {
    let mut s = RepairStore::default();
    let members: Vec<Slot> = (0..2000).map(|_| s.join()).collect();
    let last = KEEP_EVENTS as u64 + 100;
    for n in 1..=last {
        let body = ev(n, 100);
        let id = s.add(Rc::clone(&body));
        for &m in &members {
            s.record(m, n, id);
        }
        if n == last {
            assert_eq!(
                Rc::strong_count(&body),
                2,
                "the log's and ours: not one per member"
            );
        }
    }
    assert_eq!(s.runs, members.len(), "one run each");
    assert!(members.iter().all(|&m| s.kept(m) == Some((101, last))));
    assert_eq!(
        s.total_bytes(),
        (last as usize) * (100 + LOG_ENTRY_OVERHEAD) + 2000 * RUN_COST
    );
    check(&s);
}

#[test]
fn a_stream_with_holes_is_bounded_by_its_runs() {
    let t = Instant::now();
    let mut s = RepairStore::default();
    let (a, b) = (s.join(), s.join());
    // a gets every event; b misses every other one (its own lines, say).
    for n in 1..=400u64 {
        let id = s.add(ev(n, 50));
        s.record(a, n, id);
        if n % 2 == 0 {
            s.record(b, n / 2, id);
        }
    }
    assert_eq!(s.kept(a), Some((1, 400)));
    assert_eq!(s.kept(b), Some((200 - MEMBER_RUNS as u64 + 1, 200)));
    s.nack(b, &[(1, 200)]);
    let mut sent = Vec::new();
    for answer in drain(&mut s, b, t) {
        match answer {
            Repair::Lost(r) => assert_eq!(r, vec![(1, 200 - MEMBER_RUNS as u64)]),
            Repair::Events { first, events } => {
                for (k, e) in (first..).zip(&events) {
                    assert_eq!(number_of(e), 2 * k, "b's number k is event 2k");
                    sent.push(k);
                }
            }
        }
    }
    assert_eq!(
        sent,
        (200 - MEMBER_RUNS as u64 + 1..=200).collect::<Vec<_>>()
    );
    check(&s);
}

#[test]
fn a_full_log_drops_the_oldest_body_and_its_numbers_are_lost() {
    let t = Instant::now();
    let cost = 100 + LOG_ENTRY_OVERHEAD;
    let mut s = RepairStore::new(Limits {
        log_bytes: 10 * cost,
        ..Limits::DEFAULT
    });
    let (a, b) = (s.join(), s.join());
    for n in 1..=8 {
        send(&mut s, a, n, 100);
    }
    for n in 1..=5 {
        send(&mut s, b, n, 100);
    }
    assert_eq!(s.kept(a), Some((4, 8)), "a's 1..=3 were the oldest");
    assert_eq!(s.kept(b), Some((1, 5)));
    s.nack(a, &[(1, 8)]);
    let (sent, lost) = flatten(&drain(&mut s, a, t));
    assert_eq!((sent, lost), ((4..=8).collect(), vec![(1, 3)]));
    // Asked for while kept, gone before the resend (a's 4..=8 go first): lost.
    s.nack(b, &[(1, 2)]);
    for n in 9..=14 {
        send(&mut s, a, n, 100);
    }
    let (sent, lost) = flatten(&drain(&mut s, b, t));
    assert_eq!((sent, lost), (vec![2], vec![(1, 1)]));
    check(&s);
}

#[test]
fn too_many_runs_drop_the_oldest_run_of_anyone() {
    let mut s = RepairStore::new(Limits {
        runs_bytes: 5 * RUN_COST,
        ..Limits::DEFAULT
    });
    let (a, b) = (s.join(), s.join());
    // Events alternate between the two: every record is a new run.
    for n in 1..=2 {
        send(&mut s, a, n, 10);
        send(&mut s, b, n, 10);
    }
    send(&mut s, a, 3, 10);
    assert_eq!(
        (s.kept(a), s.kept(b), s.runs),
        (Some((1, 3)), Some((1, 2)), 5)
    );
    send(&mut s, b, 3, 10);
    assert_eq!((s.kept(a), s.kept(b)), (Some((2, 3)), Some((1, 3))));
    send(&mut s, a, 4, 10);
    assert_eq!((s.kept(a), s.kept(b)), (Some((2, 4)), Some((2, 3))));
    check(&s);
}

#[test]
fn leaving_frees_everything_and_old_slots_name_nobody() {
    let t = Instant::now();
    let mut s = RepairStore::default();
    let a = s.join();
    for n in 1..=10 {
        send(&mut s, a, n, 50);
    }
    s.leave(a);
    assert_eq!(s.runs, 0);
    let b = s.join(); // reuses a's place
    assert_ne!(a, b);
    send(&mut s, a, 11, 50);
    s.nack(a, &[(1, 20)]);
    assert!(drain(&mut s, a, t).is_empty() && s.kept(b).is_none() && s.kept(a).is_none());
    send(&mut s, b, 1, 50);
    s.nack(b, &[(1, 1)]);
    assert_eq!(flatten(&drain(&mut s, b, t)).0, vec![1]);
    s.leave(a); // twice, and stale: harmless
    check(&s);
}

#[test]
fn numbers_never_sent_are_ignored_and_malformed_ranges_too() {
    let t = Instant::now();
    let mut s = RepairStore::default();
    let m = s.join();
    s.nack(m, &[(1, 5)]);
    assert!(drain(&mut s, m, t).is_empty(), "nothing sent yet");
    for n in 100..=110 {
        send(&mut s, m, n, 30);
    }
    s.nack(m, &[(0, 99), (111, 500), (105, 104)]);
    assert!(drain(&mut s, m, t).is_empty());
}

#[test]
fn a_number_that_does_not_follow_starts_again() {
    let t = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=5, 30);
    s.nack(m, &[(4, 4)]);
    send(&mut s, m, 9, 30); // 6..=8 were never given to the store
    assert_eq!(s.kept(m), Some((9, 9)));
    s.nack(m, &[(1, 9)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![9], vec![(1, 8)]));
    check(&s);
}

#[test]
fn a_body_too_large_for_the_log_is_lost_if_asked_for() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits {
        log_bytes: 500,
        ..Limits::DEFAULT
    });
    let m = s.join();
    send(&mut s, m, 1, 30);
    send(&mut s, m, 2, 1000);
    send(&mut s, m, 3, 30);
    s.nack(m, &[(1, 3)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![3], vec![(1, 2)]));
    check(&s);
}

#[test]
fn waiting_ranges_are_merged_and_capped() {
    let t = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=KEEP_EVENTS as u64 * 2, 10);
    // 32 disjoint single numbers per NACK, three NACKs, long gone and kept.
    let first = KEEP_EVENTS as u64 + 1;
    for round in 0..3u64 {
        let gone: Vec<(u64, u64)> = (0..32)
            .map(|i| (1 + round + 4 * i, 1 + round + 4 * i))
            .collect();
        let kept: Vec<(u64, u64)> = gone.iter().map(|&(a, b)| (a + first, b + first)).collect();
        s.nack(m, &gone);
        s.nack(m, &kept);
        check(&s);
    }
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert!(lost.len() <= MAX_WAITING_RANGES);
    // Adjacent numbers merged: 1, 2, 3 of each group of four.
    assert_eq!(lost[0], (1, 3));
    assert_eq!(&sent[..3], &[first + 1, first + 2, first + 3]);
}

#[test]
fn what_the_member_has_is_forgotten_and_not_reported_lost() {
    let t = Instant::now();
    let (mut s, m) = one_member(Limits::DEFAULT, 1..=10, 50);
    s.nack(m, &[(3, 4)]);
    s.forget_through(m, 6);
    assert_eq!(s.kept(m), Some((7, 10)));
    assert!(
        drain(&mut s, m, t).is_empty(),
        "3 and 4 are neither resent nor lost"
    );
    s.forget_through(m, u64::MAX);
    assert_eq!((s.kept(m), s.runs), (None, 0));
    // Numbering goes on after everything was forgotten.
    send(&mut s, m, 11, 50);
    s.nack(m, &[(10, 11)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![11], vec![(10, 10)]));
    check(&s);
}

/// Whatever members do (never acknowledging, asking for everything again,
/// overlapping and huge ranges, joining and leaving), the bounds hold after
/// every step.
#[test]
fn memory_stays_bounded_whatever_members_do() {
    let limits = Limits {
        keep: 64,
        member_runs: 8,
        log_bytes: 64 * 1024,
        runs_bytes: 100 * RUN_COST,
    };
    let mut s = RepairStore::new(limits);
    let t0 = Instant::now();
    let mut b = Budget::with_rate(t0, 10_000, 2_000);
    let mut members: Vec<(Slot, u64)> = (0..40).map(|_| (s.join(), 1)).collect();
    // What each member was sent lately: number -> the step that made the body.
    let mut sent: Vec<std::collections::HashMap<u64, u64>> = vec![Default::default(); 40];
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let (mut max_order, mut max_runs, mut max_log) = (0, 0, 0);
    for step in 0..30_000u64 {
        let now = t0 + Duration::from_millis(step);
        let i = rnd(members.len() as u64) as usize;
        let (slot, _) = members[i];
        match rnd(10) {
            0..=5 => {
                // An event for everyone but a few.
                let id = s.add(ev(step, 8 + rnd(1100) as usize));
                for (j, (m, next)) in members.iter_mut().enumerate() {
                    if rnd(8) != 0 {
                        s.record(*m, *next, id);
                        sent[j].insert(*next, step);
                        *next += 1;
                        if sent[j].len() > 2 * limits.keep {
                            sent[j].retain(|&n, _| n + limits.keep as u64 >= *next);
                        }
                    }
                }
            }
            6 => s.nack(slot, &[(0, u64::MAX); 64]),
            7 => {
                let next = members[i].1;
                let ranges: Vec<(u64, u64)> = (0..rnd(200))
                    .map(|_| {
                        let lo = rnd(next + 10);
                        (lo, lo + rnd(50))
                    })
                    .collect();
                s.nack(slot, &ranges);
            }
            8 => {
                let next = members[i].1;
                while let Some(r) = s.poll_repair(slot, now, &mut b, PACK) {
                    match r {
                        Repair::Events { first, events } => {
                            assert!(!events.is_empty());
                            for (n, e) in (first..).zip(&events) {
                                assert_eq!(
                                    sent[i].get(&n),
                                    Some(&number_of(e)),
                                    "the body sent as {n}"
                                );
                            }
                        }
                        Repair::Lost(r) => assert!(r.iter().all(|&(lo, hi)| lo <= hi && hi < next)),
                    }
                }
            }
            _ => match rnd(20) {
                0 => {
                    s.leave(slot);
                    members[i] = (s.join(), 1 + rnd(1 << 40));
                    sent[i].clear();
                }
                1 => s.forget_through(slot, rnd(members[i].1 + 5)),
                _ => {}
            },
        }
        if step % 97 == 0 {
            check(&s);
        }
        max_order = max_order.max(s.order.len());
        max_runs = max_runs.max(s.runs);
        max_log = max_log.max(s.log_bytes);
    }
    check(&s);
    assert!(
        max_runs * RUN_COST > limits.runs_bytes / 2,
        "the test did fill the runs"
    );
    assert!(max_log > limits.log_bytes / 2, "and the log");
    assert!(max_order <= 2 * (limits.runs_bytes / RUN_COST) + 65);
}
