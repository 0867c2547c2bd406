//! The server's path check of a roaming member (PROTOCOL.md, "Roaming"; RFC
//! 9000 §8.2, §9): a session moves to a new address only after a sealed
//! challenge sent there comes back from there, and until then that address
//! is sent at most as many bytes as came from it.

use super::PATH_CHALLENGE_SIZE;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A challenge is repeated at most this often (and only within the budget).
pub const PATH_RETRY: Duration = Duration::from_millis(200);
/// A check with no answer for this long is given up.
pub const PATH_TIMEOUT: Duration = Duration::from_secs(10);

/// An address being checked.
#[derive(Debug, Clone)]
struct Probe {
    addr: SocketAddr,
    data: [u8; 8],
    received: usize,
    sent: usize,
    last_sent: Option<Instant>,
    started: Instant,
}

/// A member's validated address and the one being checked, if any.
#[derive(Debug, Clone)]
pub struct Path {
    addr: SocketAddr,
    /// Boxed: a member that does not roam keeps a null pointer, not 88 bytes.
    probe: Option<Box<Probe>>,
}

impl Path {
    /// A path validated at `addr` (where the handshake came from).
    pub fn new(addr: SocketAddr) -> Self {
        Path { addr, probe: None }
    }

    /// The validated address: everything but challenges goes there.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The address being checked, if any.
    pub fn probing(&self) -> Option<SocketAddr> {
        self.probe.as_ref().map(|p| p.addr)
    }

    /// After an authenticated datagram of `len` bytes from `from` (`newest`
    /// as [`super::Opened`] says). `data` is fresh random bytes, used when a
    /// new check starts. Returns where to send a PATH_CHALLENGE and its data.
    pub fn on_datagram(
        &mut self,
        now: Instant,
        from: SocketAddr,
        len: usize,
        newest: bool,
        data: [u8; 8],
    ) -> Option<(SocketAddr, [u8; 8])> {
        if from == self.addr {
            return None;
        }
        if let Some(p) = &self.probe {
            if now.saturating_duration_since(p.started) >= PATH_TIMEOUT {
                self.probe = None;
            }
        }
        match &mut self.probe {
            Some(p) if p.addr == from => p.received += len,
            _ if !newest => return None, // a reordered or copied datagram
            _ => {
                self.probe = Some(Box::new(Probe {
                    addr: from,
                    data,
                    received: len,
                    sent: 0,
                    last_sent: None,
                    started: now,
                }))
            }
        }
        let p = self.probe.as_mut()?;
        let due = p
            .last_sent
            .is_none_or(|t| now.saturating_duration_since(t) >= PATH_RETRY);
        if due && p.sent + PATH_CHALLENGE_SIZE <= p.received {
            p.sent += PATH_CHALLENGE_SIZE;
            p.last_sent = Some(now);
            return Some((p.addr, p.data));
        }
        None
    }

    /// A PATH_RESPONSE with `data` from `from`: true when the session moved there.
    pub fn on_response(&mut self, from: SocketAddr, data: &[u8; 8]) -> bool {
        match &self.probe {
            Some(p) if p.addr == from && super::ct_eq(&p.data, data) => {
                self.addr = from;
                self.probe = None;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_old_address_needs_no_check() {
        let now = Instant::now();
        let mut p = Path::new(a("192.0.2.1:1"));
        assert_eq!(p.on_datagram(now, a("192.0.2.1:1"), 80, true, [1; 8]), None);
        assert_eq!(p.probing(), None);
    }

    #[test]
    fn a_new_address_is_challenged_and_moved_to_on_the_echo() {
        let now = Instant::now();
        let (old, new) = (a("192.0.2.1:1"), a("192.0.2.1:2"));
        let mut p = Path::new(old);
        assert_eq!(
            p.on_datagram(now, new, 80, true, [5; 8]),
            Some((new, [5; 8]))
        );
        assert_eq!(p.addr(), old, "still sending to the old address");
        assert!(!p.on_response(new, &[6; 8]), "wrong data");
        assert!(
            !p.on_response(a("192.0.2.9:2"), &[5; 8]),
            "from a third address"
        );
        assert!(!p.on_response(old, &[5; 8]), "from the old address");
        assert!(p.on_response(new, &[5; 8]));
        assert_eq!(p.addr(), new);
        assert_eq!(p.probing(), None);
    }

    #[test]
    fn an_older_counter_never_starts_a_check() {
        let now = Instant::now();
        let mut p = Path::new(a("192.0.2.1:1"));
        assert_eq!(
            p.on_datagram(now, a("198.51.100.7:9"), 1200, false, [1; 8]),
            None
        );
        assert_eq!(p.probing(), None);
    }

    #[test]
    fn the_new_address_gets_no_more_bytes_than_it_sent() {
        let t0 = Instant::now();
        let new = a("198.51.100.7:9");
        let mut p = Path::new(a("192.0.2.1:1"));
        // 60 bytes buy no 65-byte challenge; 60 more buy one.
        assert_eq!(p.on_datagram(t0, new, 60, true, [1; 8]), None);
        assert_eq!(
            p.on_datagram(t0, new, 60, false, [2; 8]),
            Some((new, [1; 8]))
        );
        // Time allows a repeat, the budget (120 - 65 = 55) does not.
        let t1 = t0 + PATH_RETRY;
        assert_eq!(p.on_datagram(t1, new, 5, false, [3; 8]), None);
        // 60 more: 125 - 65 = 60 < 65 ... 10 more makes it 70.
        assert_eq!(
            p.on_datagram(t1, new, 10, false, [3; 8]),
            Some((new, [1; 8])),
            "the same data again"
        );
        // Within PATH_RETRY no repeat, whatever the budget.
        assert_eq!(p.on_datagram(t1, new, 1200, false, [3; 8]), None);
    }

    #[test]
    fn a_newer_address_replaces_the_check_and_old_ones_expire() {
        let t0 = Instant::now();
        let (b, c) = (a("198.51.100.7:9"), a("198.51.100.8:9"));
        let mut p = Path::new(a("192.0.2.1:1"));
        assert!(p.on_datagram(t0, b, 80, true, [1; 8]).is_some());
        assert_eq!(p.on_datagram(t0, c, 80, true, [2; 8]), Some((c, [2; 8])));
        assert!(!p.on_response(b, &[1; 8]), "only the latest check counts");
        // An unanswered check expires; an old datagram cannot restart one.
        let late = t0 + PATH_TIMEOUT;
        assert_eq!(p.on_datagram(late, b, 80, false, [3; 8]), None);
        assert_eq!(p.probing(), None);
    }
}
