//! Repaired delivery at the receivers (issue 10), as the real client does
//! it: a member's event numbers go through the library's reorder buffer
//! ([`Reorder`]), which says which gaps to ask for again (NACK) and when,
//! and which events are lost for good. And the seeded discarding of
//! datagrams at the receivers that stands in for a lossy path.

use std::time::Instant;
use udpchat::client::reorder::{widen, Delivery, Reorder, HOLD};
use udpchat::protocol::sealed::{encode_nack, MAX_NACK_RANGES};
use udpchat::session::MAX_BODY;

/// One member's repair state.
#[derive(Debug)]
pub struct Repair {
    reorder: Reorder,
    /// NACKs sent.
    pub nacks: u64,
    /// Events that arrived into a gap (resent, or late).
    pub repaired: u64,
    /// Events given up as lost so far.
    pub lost: u64,
}

impl Repair {
    /// Expects `next` as the next event number.
    pub fn new(now: Instant, next: u32) -> Repair {
        Repair {
            reorder: Reorder::new(now, next.into()),
            nacks: 0,
            repaired: 0,
            lost: 0,
        }
    }

    /// The event numbered `low` (the wire's 32 bits) arrived: `false` when
    /// it is a duplicate (delivered, held or given up before).
    pub fn receive(&mut self, now: Instant, low: u32) -> bool {
        let number = widen(self.reorder.expected(), low);
        let into_gap = number < self.reorder.expected();
        let dups = self.reorder.duplicates();
        self.reorder.receive(now, number, Vec::new());
        let new = self.reorder.duplicates() == dups;
        self.repaired += (new && into_gap) as u64;
        new
    }

    /// The server's last event to this member is `last` (a KEEPALIVE): a
    /// lost tail becomes a gap.
    pub fn keepalive(&mut self, now: Instant, last: u32) {
        let last = widen(self.reorder.expected(), last);
        self.reorder.keepalive(now, last);
    }

    /// The server no longer keeps `count` events from `first` (LOST).
    pub fn not_kept(&mut self, first: u32, count: u32) {
        if count == 0 {
            return;
        }
        let lo = widen(self.reorder.expected(), first);
        self.reorder.not_kept(&[(lo, lo + u64::from(count) - 1)]);
    }

    /// Events given up since the last call (after `now`'s expiries).
    pub fn take_lost(&mut self, now: Instant) -> u64 {
        let mut n = 0;
        while let Some(d) = self.reorder.pop(now) {
            if let Delivery::Lost { count } = d {
                n += count;
            }
        }
        self.lost += n;
        n
    }

    /// The NACK body due at `now`, if any, written into `out`.
    pub fn nack_due(&mut self, now: Instant, out: &mut [u8; MAX_BODY]) -> Option<usize> {
        let ranges: Vec<(u32, u32)> = self
            .reorder
            .nack_due(now, MAX_NACK_RANGES)?
            .into_iter()
            .map(|(lo, hi)| (lo as u32, hi as u32))
            .collect();
        let n = encode_nack(&ranges, out).ok()?;
        self.nacks += 1;
        Some(n)
    }

    /// At the end (`now` no earlier than any time given before): every gap
    /// still open is given up; returns all the events lost for good.
    pub fn finish(&mut self, now: Instant) -> u64 {
        self.take_lost(now + HOLD);
        self.lost
    }
}

/// Discards a seeded share of a member's datagrams before they are opened.
#[derive(Debug, Clone)]
pub struct Discard {
    state: u64,
    /// Discarded when the next random number (out of 2^32) is below this.
    below: u64,
}

impl Discard {
    /// Discards `percent` of member `index`'s datagrams, the choice a
    /// function of `seed` and `index` only.
    pub fn new(seed: u64, index: usize, percent: f64) -> Discard {
        Discard {
            state: seed ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15),
            below: (percent / 100.0 * 4_294_967_296.0) as u64,
        }
    }

    /// Is the next datagram discarded?
    pub fn next(&mut self) -> bool {
        if self.below == 0 {
            return false;
        }
        // splitmix64
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        (z >> 32) < self.below
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_seeded_share_is_discarded_the_same_way_each_time() {
        let run = |seed| {
            let mut d = Discard::new(seed, 3, 5.0);
            (0..100_000).filter(|_| d.next()).count()
        };
        let n = run(7);
        assert!((4_500..5_500).contains(&n), "{n}");
        assert_eq!(run(7), n);
        assert_ne!(run(8), n);
        let mut none = Discard::new(7, 3, 0.0);
        assert!((0..1000).all(|_| !none.next()));
    }

    #[test]
    fn a_gap_is_asked_for_repaired_or_given_up() {
        let t0 = Instant::now();
        let mut r = Repair::new(t0, 1);
        assert!(r.receive(t0, 1));
        assert!(r.receive(t0, 4)); // 2 and 3 missing
        let mut body = [0u8; MAX_BODY];
        assert!(r.nack_due(t0, &mut body).is_none(), "not at once");
        assert!(r
            .nack_due(t0 + Duration::from_millis(30), &mut body)
            .is_some());
        assert_eq!(r.nacks, 1);
        assert!(r.receive(t0, 2));
        assert_eq!(r.repaired, 1);
        assert!(!r.receive(t0, 2), "a duplicate");
        r.not_kept(3, 1);
        assert_eq!(r.take_lost(t0), 1);
        let t1 = t0 + Duration::from_millis(40);
        r.keepalive(t1, 6); // 5 and 6 sent, not received
        assert_eq!(r.finish(t1), 3);
    }
}
