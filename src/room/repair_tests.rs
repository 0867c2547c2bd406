use super::*;
use std::time::Duration;

const PACK: Packing = Packing {
    capacity: 1100,
    overhead: 40,
};

fn ev(n: u64, len: usize) -> Rc<[u8]> {
    let mut v = vec![(n % 251) as u8; len.max(8)];
    v[..8].copy_from_slice(&n.to_be_bytes());
    v.truncate(len.max(1));
    v.into()
}

fn number_of(e: &[u8]) -> u64 {
    u64::from_be_bytes(e[..8].try_into().unwrap())
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

/// The invariants every test ends with: the charges add up and the bounds hold.
fn check(store: &RepairStore) {
    let l = store.limits;
    let mut total = 0;
    let mut live = 0;
    for ring in store.rings.iter().flatten() {
        let bytes: usize = ring
            .entries
            .iter()
            .map(|e| e.event.len() + ENTRY_OVERHEAD)
            .sum();
        assert_eq!(bytes, ring.bytes);
        assert!(ring.bytes <= l.member_bytes && ring.entries.len() <= l.keep);
        assert!(ring.entries.capacity() <= RING_MIN_CAPACITY.max(4 * ring.entries.len()));
        let fixed = std::mem::size_of::<Ring>()
            + RING_MIN_CAPACITY * std::mem::size_of::<Entry>()
            + ring.lost.capacity() * 16;
        assert!(fixed <= MEMBER_FIXED_BYTES, "{fixed}");
        assert_eq!(
            ring.pending,
            ring.entries.iter().filter(|e| e.pending).count()
        );
        assert!(ring.lost.len() <= MAX_LOST_RANGES);
        assert!(ring.lost.windows(2).all(|w| w[0].1 + 1 < w[1].0));
        total += bytes;
        live += ring.entries.len();
    }
    assert_eq!((total, live), (store.total, store.live));
    assert!(store.total <= l.total_bytes);
    assert!(store.order.len() <= 2 * store.live + 64 + 1);
}

#[test]
fn keeps_the_last_k_and_reports_the_rest_lost_exactly() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=KEEP_EVENTS as u64 + 10 {
        s.record(m, n, ev(n, 60));
    }
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
fn batches_fit_the_datagram_and_cover_runs_separately() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=100 {
        s.record(m, n, ev(n, 300));
    }
    s.nack(m, &[(10, 19), (30, 30), (25, 26)]);
    let answers = drain(&mut s, m, t);
    let runs: Vec<(u64, usize)> = answers
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
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    s.record(m, 1, ev(1, 2000));
    s.record(m, 2, ev(2, 10));
    s.nack(m, &[(1, 2)]);
    let (sent, _) = flatten(&drain(&mut s, m, t));
    assert_eq!(sent, vec![1, 2]);
}

#[test]
fn resends_wait_for_the_budget() {
    let t0 = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=20 {
        s.record(m, n, ev(n, 500));
    }
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
fn a_pending_event_evicted_before_its_resend_is_reported_lost() {
    let t = Instant::now();
    let limits = Limits {
        keep: 4,
        ..Limits::DEFAULT
    };
    let mut s = RepairStore::new(limits);
    let m = s.join();
    for n in 1..=4 {
        s.record(m, n, ev(n, 20));
    }
    s.nack(m, &[(2, 3)]);
    s.record(m, 5, ev(5, 20)); // evicts 1 (not asked for)
    s.record(m, 6, ev(6, 20)); // evicts 2 (asked for)
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![3], vec![(2, 2)]));
    check(&s);
}

#[test]
fn per_member_bytes_bound_the_ring() {
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=1000 {
        s.record(m, n, ev(n, 1000));
    }
    let (lo, hi) = s.kept(m).unwrap();
    assert_eq!(hi, 1000);
    assert_eq!(
        (hi - lo + 1) as usize,
        MEMBER_BYTES / (1000 + ENTRY_OVERHEAD)
    );
    check(&s);
}

#[test]
fn the_total_bound_drops_the_oldest_event_of_anyone() {
    let cost = 100 + ENTRY_OVERHEAD;
    let limits = Limits {
        keep: 100,
        member_bytes: 10 * cost,
        total_bytes: 6 * cost + 10,
    };
    let mut s = RepairStore::new(limits);
    let (a, b) = (s.join(), s.join());
    // Six events fit in the total.
    for n in 1..=4 {
        s.record(a, n, ev(n, 100));
    }
    for n in 1..=2 {
        s.record(b, n, ev(n, 100));
    }
    assert_eq!(s.total_bytes(), 6 * cost);
    s.record(b, 3, ev(3, 100));
    assert_eq!(s.kept(a), Some((2, 4)), "a's oldest went first");
    assert_eq!(s.kept(b), Some((1, 3)));
    check(&s);
    // The oldest is now a's 2, recorded before b's 1.
    s.record(b, 4, ev(4, 100));
    assert_eq!(s.kept(a), Some((3, 4)));
    check(&s);
}

#[test]
fn leaving_frees_everything_and_old_slots_name_nobody() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let a = s.join();
    for n in 1..=10 {
        s.record(a, n, ev(n, 50));
    }
    s.leave(a);
    assert_eq!(s.total_bytes(), 0);
    let b = s.join(); // reuses a's place
    assert_ne!(a, b);
    s.record(a, 11, ev(11, 50));
    s.nack(a, &[(1, 20)]);
    assert!(drain(&mut s, a, t).is_empty() && s.kept(b).is_none() && s.kept(a).is_none());
    s.record(b, 1, ev(1, 50));
    s.nack(b, &[(1, 1)]);
    assert_eq!(flatten(&drain(&mut s, b, t)).0, vec![1]);
    s.leave(a); // twice, and stale: harmless
    check(&s);
}

#[test]
fn numbers_never_sent_are_ignored_and_malformed_ranges_too() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    s.nack(m, &[(1, 5)]);
    assert!(drain(&mut s, m, t).is_empty(), "nothing sent yet");
    for n in 100..=110 {
        s.record(m, n, ev(n, 30));
    }
    s.nack(m, &[(0, 99), (111, 500), (105, 104)]);
    assert!(drain(&mut s, m, t).is_empty());
}

#[test]
fn a_number_that_does_not_follow_starts_again() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=5 {
        s.record(m, n, ev(n, 30));
    }
    s.nack(m, &[(4, 4)]);
    s.record(m, 9, ev(9, 30)); // 6..=8 were never given to the store
    assert_eq!(s.kept(m), Some((9, 9)));
    s.nack(m, &[(1, 9)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![9], vec![(1, 8)]));
    check(&s);
}

#[test]
fn an_event_too_large_to_keep_is_lost_if_asked_for() {
    let t = Instant::now();
    let limits = Limits {
        keep: 10,
        member_bytes: 500,
        total_bytes: 10_000,
    };
    let mut s = RepairStore::new(limits);
    let m = s.join();
    s.record(m, 1, ev(1, 30));
    s.record(m, 2, ev(2, 1000));
    s.record(m, 3, ev(3, 30));
    s.nack(m, &[(1, 3)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![3], vec![(1, 2)]));
    check(&s);
}

#[test]
fn lost_ranges_are_merged_and_capped() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=KEEP_EVENTS as u64 * 2 {
        s.record(m, n, ev(n, 10));
    }
    // 64 disjoint single numbers per NACK, three NACKs, all long gone.
    for round in 0..3u64 {
        let ranges: Vec<(u64, u64)> = (0..64)
            .map(|i| (1 + round + 4 * i, 1 + round + 4 * i))
            .collect();
        s.nack(m, &ranges);
        check(&s);
    }
    let (_, lost) = flatten(&drain(&mut s, m, t));
    assert!(lost.len() <= MAX_LOST_RANGES);
    // Adjacent numbers merged: 1,2,3 of each group of four.
    assert_eq!(lost[0], (1, 3));
}

#[test]
fn event_bodies_are_shared_not_copied() {
    let mut s = RepairStore::new(Limits::DEFAULT);
    let members: Vec<Slot> = (0..100).map(|_| s.join()).collect();
    let body = ev(1, 100);
    for &m in &members {
        s.record(m, 1, Rc::clone(&body));
    }
    assert_eq!(Rc::strong_count(&body), 101);
}

/// Whatever members do (never acknowledging, asking for everything again,
/// overlapping and huge ranges, joining and leaving), the bounds hold after
/// every step.
#[test]
fn memory_stays_bounded_whatever_members_do() {
    let limits = Limits {
        keep: 64,
        member_bytes: 8 * 1024,
        total_bytes: 64 * 1024,
    };
    let mut s = RepairStore::new(limits);
    let t0 = Instant::now();
    let mut b = Budget::with_rate(t0, 10_000, 2_000);
    let mut members: Vec<(Slot, u64)> = (0..40).map(|_| (s.join(), 1)).collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut rnd = move |n: u64| {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x % n
    };
    let mut max_order = 0;
    for step in 0..60_000u64 {
        let now = t0 + Duration::from_millis(step);
        let i = rnd(members.len() as u64) as usize;
        let (slot, next) = members[i];
        match rnd(10) {
            0..=5 => {
                let len = 1 + rnd(1100) as usize;
                s.record(slot, next, ev(next, len));
                members[i].1 += 1;
            }
            6 => s.nack(slot, &[(0, u64::MAX); 64]),
            7 => {
                let ranges: Vec<(u64, u64)> = (0..rnd(200))
                    .map(|_| {
                        let lo = rnd(next + 10);
                        (lo, lo + rnd(50))
                    })
                    .collect();
                s.nack(slot, &ranges);
            }
            8 => while s.poll_repair(slot, now, &mut b, PACK).is_some() {},
            _ => {
                if rnd(20) == 0 {
                    s.leave(slot);
                    members[i] = (s.join(), 1 + rnd(1 << 40));
                }
            }
        }
        if step % 97 == 0 {
            check(&s);
        }
        max_order = max_order.max(s.order.len());
    }
    check(&s);
    let kept: usize = s.rings.iter().flatten().map(|r| r.entries.len()).sum();
    assert!(
        kept > 0 && s.total_bytes() > limits.total_bytes / 2,
        "the test did fill it"
    );
    assert!(max_order <= 2 * (limits.total_bytes / ENTRY_OVERHEAD) + 65);
}

#[test]
fn what_the_member_has_is_forgotten_and_not_reported_lost() {
    let t = Instant::now();
    let mut s = RepairStore::new(Limits::DEFAULT);
    let m = s.join();
    for n in 1..=10 {
        s.record(m, n, ev(n, 50));
    }
    s.nack(m, &[(3, 4)]);
    s.forget_through(m, 6);
    assert_eq!(s.kept(m), Some((7, 10)));
    assert_eq!(s.total_bytes(), 4 * (50 + ENTRY_OVERHEAD));
    assert!(
        drain(&mut s, m, t).is_empty(),
        "3 and 4 are neither resent nor lost"
    );
    s.forget_through(m, u64::MAX);
    assert_eq!((s.kept(m), s.total_bytes()), (None, 0));
    // Numbering goes on after everything was forgotten.
    s.record(m, 11, ev(11, 50));
    s.nack(m, &[(10, 11)]);
    let (sent, lost) = flatten(&drain(&mut s, m, t));
    assert_eq!((sent, lost), (vec![11], vec![(10, 10)]));
    check(&s);
}
