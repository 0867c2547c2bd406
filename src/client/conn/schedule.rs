//! When the connection sends again: the resend schedule of a handshake or a
//! JOIN, and the jittered backoff between reconnect attempts.

use std::time::{Duration, Instant};

/// The first resend comes this long after the first send (PROTOCOL.md,
/// "State machines": 0.5 s, doubling up to 2 s).
const FIRST_RESEND: Duration = Duration::from_millis(500);
/// The longest wait between two sends of the same INIT or JOIN.
const MAX_RESEND: Duration = Duration::from_secs(2);
/// The wait before the first reconnect attempt, at most (jitter makes it
/// between half of it and all of it).
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
/// The longest wait between two reconnect attempts (before jitter).
pub const BACKOFF_CAP: Duration = Duration::from_secs(4);

/// When to send an unanswered INIT or JOIN again.
#[derive(Debug, Clone, Copy)]
pub(super) struct Resend {
    next: Instant,
    wait: Duration,
}

impl Resend {
    /// The schedule of a message sent at `now`.
    pub(super) fn new(now: Instant) -> Resend {
        Resend {
            next: now + FIRST_RESEND,
            wait: FIRST_RESEND,
        }
    }

    /// Is a resend due at `now`? If so, the next one is scheduled.
    pub(super) fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.wait = (self.wait * 2).min(MAX_RESEND);
        self.next = now + self.wait;
        true
    }

    /// When the next resend is due.
    pub(super) fn next(&self) -> Instant {
        self.next
    }
}

/// The wait before reconnect attempt `attempt` (0 for the first): doubling
/// from [`FIRST_BACKOFF`] up to [`BACKOFF_CAP`], then a random part of its
/// second half cut off, so that the clients of a restarted server do not all
/// come back at once.
pub(super) fn backoff(attempt: u32, random: u64) -> Duration {
    let base = FIRST_BACKOFF
        .saturating_mul(1 << attempt.min(16))
        .min(BACKOFF_CAP);
    let half = base / 2;
    let nanos = half.as_nanos() as u64;
    half + Duration::from_nanos(random % (nanos + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resends_double_up_to_two_seconds() {
        let t0 = Instant::now();
        let mut r = Resend::new(t0);
        assert!(!r.due(t0));
        let mut now = t0;
        let mut waits = Vec::new();
        for _ in 0..5 {
            let next = r.next();
            waits.push(next - now);
            now = next;
            assert!(r.due(now));
        }
        let ms: Vec<u128> = waits.iter().map(|w| w.as_millis()).collect();
        assert_eq!(ms, [500, 1000, 2000, 2000, 2000]);
    }

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        for attempt in 0..40 {
            let base = FIRST_BACKOFF
                .saturating_mul(1 << attempt.min(16))
                .min(BACKOFF_CAP);
            for random in [0, 1, 12345, u64::MAX / 3, u64::MAX] {
                let b = backoff(attempt, random);
                assert!(b >= base / 2 && b <= base, "{attempt} {random}: {b:?}");
            }
        }
        assert_eq!(backoff(0, 0), FIRST_BACKOFF / 2);
        assert_eq!(backoff(30, 0), BACKOFF_CAP / 2);
        assert_ne!(backoff(3, 1), backoff(3, 999_999_999), "jitter");
    }
}
