//! The repair building blocks together, in simulated time and memory: the
//! server's [`RepairStore`] and answer [`Budget`], the client's [`Reorder`],
//! over a channel that drops 10%, duplicates 2% and reorders 5% of datagrams
//! in both directions (the chaos test's figures). Five members each say 200
//! lines; every member must show every other member's lines exactly once, in
//! order, within 5 s, and never "messages lost".

use super::{Limits, Packing, Repair, RepairStore, Slot};
use crate::client::reorder::{Delivery, Reorder};
use crate::room::budget::Budget;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const MEMBERS: usize = 5;
const LINES: u64 = 200;
const PACK: Packing = Packing {
    capacity: 1144 - 5,
    overhead: 56 + 5,
};

/// What travels, and to whom.
#[derive(Debug, Clone)]
enum Datagram {
    /// Server -> member: event number and body.
    Event(u64, Vec<u8>),
    /// Server -> member: the last number sent.
    Keepalive(u64),
    /// Server -> member: ranges no longer kept.
    Gone(Vec<(u64, u64)>),
    /// Member -> server: ranges missing.
    Nack(Vec<(u64, u64)>),
    /// Member -> server: everything up to this number arrived.
    Have(u64),
}

struct Channel {
    x: u64,
    /// Arrival time (ms), sequence (to keep ties stable) -> (to member, from server?, datagram).
    flight: BTreeMap<(u64, u64), (usize, bool, Datagram)>,
    seq: u64,
}

impl Channel {
    fn rnd(&mut self, n: u64) -> u64 {
        self.x ^= self.x << 13;
        self.x ^= self.x >> 7;
        self.x ^= self.x << 17;
        self.x % n
    }

    /// Sends `d` at `now_ms` between the server and `member`.
    fn send(&mut self, now_ms: u64, member: usize, to_member: bool, d: Datagram) {
        if self.rnd(100) < 10 {
            return; // dropped
        }
        let copies = if self.rnd(100) < 2 { 2 } else { 1 };
        for _ in 0..copies {
            let delay = if self.rnd(100) < 5 {
                5 + self.rnd(30)
            } else {
                1
            };
            self.seq += 1;
            self.flight
                .insert((now_ms + delay, self.seq), (member, to_member, d.clone()));
        }
    }

    fn arrivals(&mut self, now_ms: u64) -> Vec<(usize, bool, Datagram)> {
        let later = self.flight.split_off(&(now_ms + 1, 0));
        std::mem::replace(&mut self.flight, later)
            .into_values()
            .collect()
    }
}

fn line(sender: usize, k: u64) -> Vec<u8> {
    format!("{sender}:{k}").into_bytes()
}

fn run(seed: u64) {
    let t0 = Instant::now();
    let at = |ms: u64| t0 + Duration::from_millis(ms);
    let mut net = Channel {
        x: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
        flight: BTreeMap::new(),
        seq: 0,
    };
    let mut store = RepairStore::new(Limits::DEFAULT);
    let slots: Vec<Slot> = (0..MEMBERS).map(|_| store.join()).collect();
    let mut budgets: Vec<Budget> = (0..MEMBERS).map(|_| Budget::new(at(0))).collect();
    let mut next_number = [1u64; MEMBERS];
    let mut last_event_ms = [None::<u64>; MEMBERS];
    let mut clients: Vec<Reorder> = (0..MEMBERS).map(|_| Reorder::new(at(0), 1)).collect();
    // When each line was said, and what each member showed (sender, k, ms).
    let mut said_ms = vec![vec![0u64; LINES as usize + 1]; MEMBERS];
    let mut shown: Vec<Vec<(usize, u64, u64)>> = vec![Vec::new(); MEMBERS];
    // Each member says its lines at random moments over 10 s.
    let mut plan: Vec<(u64, usize)> = Vec::new();
    for m in 0..MEMBERS {
        for _ in 0..LINES {
            plan.push((net.rnd(10_000), m));
        }
    }
    plan.sort();
    let mut said = [0u64; MEMBERS];
    let mut plan = plan.into_iter().peekable();
    for ms in 0..20_000u64 {
        let now = at(ms);
        // Members speak: the server fans each line out to the others.
        while plan.peek().is_some_and(|&(t, _)| t <= ms) {
            let (_, sender) = plan.next().unwrap_or_default();
            said[sender] += 1;
            said_ms[sender][said[sender] as usize] = ms;
            let body = line(sender, said[sender]);
            let id = store.add(body.clone().into());
            for m in (0..MEMBERS).filter(|&m| m != sender) {
                let n = next_number[m];
                next_number[m] += 1;
                store.record(slots[m], n, id);
                net.send(ms, m, true, Datagram::Event(n, body.clone()));
                last_event_ms[m] = Some(ms);
            }
        }
        // The server's keepalive 0.5 s and 1.5 s after the last events, and
        // every 10 s.
        for m in 0..MEMBERS {
            let since = last_event_ms[m].map_or(ms, |t| ms - t);
            if since == 500 || since == 1500 || (ms > 0 && ms % 10_000 == 0) {
                net.send(ms, m, true, Datagram::Keepalive(next_number[m] - 1));
            }
        }
        // Datagrams arrive.
        for (m, to_member, d) in net.arrivals(ms) {
            match (to_member, d) {
                (true, Datagram::Event(n, body)) => clients[m].receive(now, n, body),
                (true, Datagram::Keepalive(last)) => clients[m].keepalive(now, last),
                (true, Datagram::Gone(ranges)) => clients[m].not_kept(&ranges),
                (false, Datagram::Nack(ranges)) => store.nack(slots[m], &ranges),
                (false, Datagram::Have(n)) => store.forget_through(slots[m], n),
                (to, d) => panic!("{d:?} the wrong way ({to})"),
            }
        }
        // The server answers NACKs as its budgets allow.
        for m in 0..MEMBERS {
            while let Some(r) = store.poll_repair(slots[m], now, &mut budgets[m], PACK) {
                match r {
                    Repair::Events { first, events } => {
                        for (n, e) in (first..).zip(events) {
                            net.send(ms, m, true, Datagram::Event(n, e.to_vec()));
                        }
                    }
                    Repair::Lost(ranges) => net.send(ms, m, true, Datagram::Gone(ranges)),
                }
            }
        }
        // Clients show what is in order, ask for what is missing, and say
        // what they have every 10 s.
        for (m, c) in clients.iter_mut().enumerate() {
            while let Some(d) = c.pop(now) {
                match d {
                    Delivery::Event { event, .. } => {
                        let text = String::from_utf8(event).unwrap_or_default();
                        let (s, k) = text.split_once(':').unwrap_or_default();
                        shown[m].push((s.parse().unwrap_or(99), k.parse().unwrap_or(0), ms));
                    }
                    Delivery::Lost { count } => {
                        panic!("seed {seed}: member {m} lost {count} at {ms} ms")
                    }
                }
            }
            if let Some(ranges) = c.nack_due(now, 32) {
                net.send(ms, m, false, Datagram::Nack(ranges));
            }
            if ms % 10_000 == 5_000 {
                net.send(ms, m, false, Datagram::Have(c.last_in_order()));
            }
        }
    }
    for (m, shown) in shown.iter().enumerate() {
        let mut next = [1u64; MEMBERS];
        for &(s, k, ms) in shown {
            assert_eq!(
                k, next[s],
                "seed {seed}: member {m} shows {s}'s lines once, in order"
            );
            next[s] += 1;
            let late = ms - said_ms[s][k as usize];
            assert!(
                late <= 5_000,
                "seed {seed}: {s}:{k} shown to {m} {late} ms after"
            );
        }
        for (s, &n) in next.iter().enumerate() {
            let expect = if s == m { 1 } else { LINES + 1 };
            assert_eq!(
                n, expect,
                "seed {seed}: member {m} showed all of {s}'s lines"
            );
        }
    }
}

#[test]
fn lossy_duplicating_reordering_path_shows_every_line_once_in_order() {
    for seed in 1..=10 {
        run(seed);
    }
}
