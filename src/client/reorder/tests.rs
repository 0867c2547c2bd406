use super::*;

const MS: Duration = Duration::from_millis(1);

fn body(n: u64) -> Vec<u8> {
    n.to_be_bytes().to_vec()
}

/// Everything deliverable at `now`, as numbers, with a loss as `-count`.
fn take(r: &mut Reorder, now: Instant) -> Vec<i64> {
    std::iter::from_fn(|| r.pop(now))
        .map(|d| match d {
            Delivery::Event { number, event } => {
                assert_eq!(event, body(number), "the event's own bytes");
                number as i64
            }
            Delivery::Lost { count } => -(count as i64),
        })
        .collect()
}

fn got(r: &mut Reorder, now: Instant, numbers: &[u64]) {
    for &n in numbers {
        r.receive(now, n, body(n));
    }
}

#[test]
fn in_order_events_go_straight_through() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    assert_eq!(r.last_in_order(), 0);
    got(&mut r, t, &[1, 2, 3, 5]);
    assert_eq!(take(&mut r, t), vec![1, 2, 3]);
    assert_eq!(r.last_in_order(), 3);
    got(&mut r, t, &[4]);
    assert_eq!(take(&mut r, t), vec![4, 5]);
    assert_eq!(r.next_deadline(), None);
    assert_eq!(r.nack_due(t + 10_000 * MS, 64), None);
}

#[test]
fn reordered_events_are_held_then_shown_in_order_once() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1, 3, 5, 3, 4]);
    assert_eq!(take(&mut r, t), vec![1]);
    got(&mut r, t + 5 * MS, &[2, 2, 1, 5]);
    assert_eq!(take(&mut r, t + 5 * MS), vec![2, 3, 4, 5]);
    assert_eq!(r.duplicates(), 4);
    assert_eq!(r.nack_due(t + 5000 * MS, 64), None, "nothing missing");
}

#[test]
fn a_gap_is_asked_for_within_the_interval_then_with_backoff_then_lost() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1, 2, 6, 7]);
    assert_eq!(take(&mut r, t), vec![1, 2]);
    // Interval 50 ms (no RTT yet): first NACK at 25 ms, within it.
    assert_eq!(r.next_deadline(), Some(t + 25 * MS));
    assert_eq!(r.nack_due(t + 24 * MS, 64), None);
    assert_eq!(r.nack_due(t + 25 * MS, 64), Some(vec![(3, 5)]));
    // Then after 50, 100, 100… ms more, while the gap is held.
    let mut asked = vec![25];
    for ms in 26..1000 {
        if r.nack_due(t + ms * MS, 64).is_some() {
            asked.push(ms);
        }
    }
    assert_eq!(
        asked,
        vec![25, 75, 175, 275, 375, 475, 575, 675, 775, 875, 975]
    );
    assert_eq!(
        take(&mut r, t + 999 * MS),
        Vec::<i64>::new(),
        "held below 1 s"
    );
    assert_eq!(r.next_deadline(), Some(t + 1000 * MS));
    assert_eq!(take(&mut r, t + 1000 * MS), vec![-3, 6, 7]);
    // What comes after being given up is too late.
    got(&mut r, t + 1001 * MS, &[3, 4, 5]);
    assert_eq!(take(&mut r, t + 1001 * MS), Vec::<i64>::new());
    assert_eq!(r.duplicates(), 3);
}

#[test]
fn a_long_rtt_stretches_the_interval() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    r.set_rtt(100 * MS);
    assert_eq!(r.nack_interval(), 200 * MS);
    got(&mut r, t, &[2]);
    assert_eq!(r.nack_due(t + 99 * MS, 64), None);
    assert_eq!(r.nack_due(t + 100 * MS, 64), Some(vec![(1, 1)]));
    assert_eq!(r.nack_due(t + 299 * MS, 64), None);
    assert_eq!(r.nack_due(t + 300 * MS, 64), Some(vec![(1, 1)]));
}

#[test]
fn a_repair_fills_the_gap_and_nothing_is_lost() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1, 4]);
    assert_eq!(r.nack_due(t + 25 * MS, 64), Some(vec![(2, 3)]));
    got(&mut r, t + 30 * MS, &[3]);
    assert_eq!(take(&mut r, t + 30 * MS), vec![1]);
    // The part still missing keeps its place in the schedule.
    assert_eq!(r.nack_due(t + 75 * MS, 64), Some(vec![(2, 2)]));
    got(&mut r, t + 80 * MS, &[2]);
    assert_eq!(take(&mut r, t + 80 * MS), vec![2, 3, 4]);
    assert_eq!(r.next_deadline(), None);
}

#[test]
fn a_split_gap_is_asked_for_as_two_ranges_lowest_first_and_capped() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[10, 5, 20]);
    assert_eq!(r.nack_due(t + 25 * MS, 2), Some(vec![(1, 4), (6, 9)]));
    assert_eq!(r.nack_due(t + 25 * MS, 2), Some(vec![(11, 19)]));
}

#[test]
fn a_keepalive_reveals_a_lost_tail() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1, 2]);
    assert_eq!(r.next_deadline(), Some(t), "something to show now");
    assert_eq!(take(&mut r, t), vec![1, 2]);
    r.keepalive(t + 500 * MS, 2);
    assert_eq!(r.next_deadline(), None, "nothing missing");
    r.keepalive(t + 500 * MS, 5);
    assert_eq!(r.nack_due(t + 525 * MS, 64), Some(vec![(3, 5)]));
    // An older keepalive changes nothing.
    r.keepalive(t + 530 * MS, 4);
    got(&mut r, t + 540 * MS, &[3, 4, 5]);
    assert_eq!(take(&mut r, t + 540 * MS), vec![3, 4, 5]);
    // Unanswered, the tail is reported lost 1 s after the keepalive.
    r.keepalive(t + 600 * MS, 7);
    assert_eq!(take(&mut r, t + 1599 * MS), Vec::<i64>::new());
    assert_eq!(take(&mut r, t + 1600 * MS), vec![-2]);
}

#[test]
fn ranges_no_longer_kept_are_lost_in_their_place() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1, 5, 9]);
    r.not_kept(&[(6, 8), (100, 200)]);
    assert_eq!(take(&mut r, t), vec![1], "2..=4 still awaited");
    assert_eq!(r.nack_due(t + 25 * MS, 64), Some(vec![(2, 4)]));
    got(&mut r, t + 30 * MS, &[3, 2, 4]);
    assert_eq!(take(&mut r, t + 30 * MS), vec![2, 3, 4, 5, -3, 9]);
    // Partly kept: only the gap's numbers count, adjacent losses add up.
    got(&mut r, t + 40 * MS, &[12]);
    r.not_kept(&[(5, 10)]);
    r.not_kept(&[(11, 11)]);
    assert_eq!(take(&mut r, t + 40 * MS), vec![-2, 12]);
}

#[test]
fn held_events_are_bounded_in_number_and_bytes() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    // Number 1 never comes; 2..=last do, more than HELD_MAX of them.
    let last = HELD_MAX as u64 + 2000;
    for n in 2..=last {
        r.receive(t, n, body(n));
        assert!(r.held.len() <= HELD_MAX && r.gaps.len() <= r.held.len() + 1);
    }
    let out = take(&mut r, t);
    assert_eq!(out[0], -1);
    assert_eq!(
        &out[1..],
        &(2..=last).map(|n| n as i64).collect::<Vec<_>>()[..]
    );
    // Bytes: 2 of every 3 numbers, 2000-byte events.
    let mut r = Reorder::new(t, 1);
    let mut lost = 0;
    let mut shown = 0;
    for n in 1..=3000u64 {
        if n % 3 != 1 {
            r.receive(t, n, vec![0; 2000]);
        }
        assert!(r.held_bytes <= HELD_MAX_BYTES);
        let now = if n == 3000 { t + HOLD } else { t };
        while let Some(d) = r.pop(now) {
            match d {
                Delivery::Event { .. } => shown += 1,
                Delivery::Lost { count } => lost += count,
            }
        }
    }
    assert_eq!((shown, lost), (2000, 1000));
}

#[test]
fn a_wild_jump_is_one_gap_and_its_exact_count() {
    let t = Instant::now();
    let mut r = Reorder::new(t, 1);
    got(&mut r, t, &[1_000_000_000_000, u64::MAX]);
    assert_eq!(r.duplicates(), 1, "u64::MAX is not a number");
    assert_eq!(
        r.nack_due(t + 25 * MS, 64),
        Some(vec![(1, 999_999_999_999)])
    );
    assert_eq!(
        take(&mut r, t + HOLD),
        vec![-999_999_999_999, 1_000_000_000_000]
    );
}

#[test]
fn widen_recovers_numbers_across_the_32_bit_wrap() {
    let w = 1u64 << 32;
    assert_eq!(widen(1, 1), 1);
    assert_eq!(widen(0, 5), 5);
    assert_eq!(widen(w - 2, 3), w + 3, "forward over the wrap");
    assert_eq!(widen(w + 2, u32::MAX), w - 1, "a late one from before it");
    assert_eq!(widen(5 * w + 7, 6), 5 * w + 6);
    assert_eq!(widen(5 * w + 7, 1 << 31), 5 * w + (1 << 31));
    assert_eq!(
        widen(u64::MAX - 1, 0),
        u64::MAX - (w - 1),
        "no overflow at the top"
    );
}

/// A channel that drops, duplicates and reorders, a server that answers
/// NACKs from the last `keep` events: every number is shown once or counted
/// lost, in order; with everything kept, nothing is lost.
#[test]
fn lossy_channel_with_repair_delivers_everything_in_order() {
    for (keep, seed) in [
        (usize::MAX, 1u64),
        (usize::MAX, 2),
        (usize::MAX, 3),
        (40, 4),
        (5, 5),
    ] {
        let t0 = Instant::now();
        let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut rnd = move |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        let mut r = Reorder::new(t0, 1);
        let mut in_flight: Vec<(Instant, u64)> = Vec::new();
        let total = 2000u64;
        let mut sent = 0u64;
        let mut seen: Vec<i64> = Vec::new();
        for ms in 0..4000u64 {
            let now = t0 + Duration::from_millis(ms);
            // NACKs are lost like anything else.
            let nack_arrives = rnd(10) != 0;
            // The server sends one event a millisecond, and a keepalive every 500 ms.
            let mut send = |n: u64, in_flight: &mut Vec<(Instant, u64)>| {
                if rnd(10) != 0 {
                    let delay = if rnd(20) == 0 { 5 + rnd(30) } else { 1 };
                    in_flight.push((now + Duration::from_millis(delay), n));
                    if rnd(50) == 0 {
                        in_flight.push((now + 2 * MS, n));
                    }
                }
            };
            if sent < total {
                sent += 1;
                send(sent, &mut in_flight);
            }
            if ms % 500 == 0 && sent > 0 {
                r.keepalive(now, sent);
            }
            if let Some(ranges) = r.nack_due(now, 64).filter(|_| nack_arrives) {
                let oldest_kept = sent.saturating_sub(keep as u64 - 1).max(1);
                for (lo, hi) in ranges {
                    if lo < oldest_kept {
                        r.not_kept(&[(lo, hi.min(oldest_kept - 1))]);
                    }
                    for n in lo.max(oldest_kept)..=hi.min(sent) {
                        send(n, &mut in_flight);
                    }
                }
            }
            in_flight.sort_by_key(|&(at, _)| at);
            while in_flight.first().is_some_and(|&(at, _)| at <= now) {
                let (_, n) = in_flight.remove(0);
                r.receive(now, n, body(n));
            }
            seen.extend(take(&mut r, now));
            assert!(r.held.len() <= HELD_MAX);
        }
        let mut next = 1i64;
        for &v in &seen {
            if v > 0 {
                assert_eq!(v, next, "in order, once (keep {keep})");
                next += 1;
            } else {
                next += -v;
            }
        }
        assert_eq!(next as u64, total + 1, "every number shown or counted lost");
        if keep == usize::MAX {
            let lost: Vec<(usize, i64)> = seen
                .iter()
                .copied()
                .enumerate()
                .filter(|&(_, v)| v < 0)
                .collect();
            assert!(
                lost.is_empty(),
                "nothing lost when all is kept (seed {seed}): {lost:?}"
            );
        } else {
            assert!(seen.iter().any(|&v| v < 0), "the small keep does lose some");
        }
    }
}

#[test]
fn shown_ids_drop_repeats_for_their_time() {
    let t = Instant::now();
    let mut s = ShownIds::new();
    let a = MessageId { client: 7, seq: 1 };
    let b = MessageId { client: 8, seq: 1 };
    assert!(s.first_time(t, a) && s.first_time(t, b));
    assert!(!s.first_time(t + SHOWN_TTL - MS, a));
    // Remembered from when it was first shown, not refreshed by a repeat.
    assert!(s.first_time(t + SHOWN_TTL, a));
    assert_eq!(s.len(), 1, "b expired too");
}

#[test]
fn shown_ids_are_bounded_oldest_first() {
    let t = Instant::now();
    let mut s = ShownIds::new();
    for seq in 0..(SHOWN_MAX as u64 + 100) {
        assert!(s.first_time(t, MessageId { client: 1, seq }));
        assert!(s.len() <= SHOWN_MAX);
    }
    assert!(
        s.first_time(t, MessageId { client: 1, seq: 0 }),
        "the oldest went"
    );
    let last = MessageId {
        client: 1,
        seq: SHOWN_MAX as u64 + 99,
    };
    assert!(!s.first_time(t, last), "the newest stays");
}
