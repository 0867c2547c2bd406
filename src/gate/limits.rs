//! The gate's budgets in bounded memory: token buckets in a fixed table
//! indexed by a keyed hash of the source (an IP prefix, or an address with
//! its port), and the keys that name a source.

use crate::room::Bucket;
use siphasher::sip128::SipHasher13;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// How many buckets a table keeps (a power of two).
const SLOTS: usize = 4096;

/// One source IP as the per-IP rules count it: an IPv4 address (an
/// IPv4-mapped IPv6 address counts as IPv4) or an IPv6 /64.
pub type IpKey = [u8; 16];

/// The [`IpKey`] of `ip`.
pub fn ip_key(ip: IpAddr) -> IpKey {
    match ip.to_canonical() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => {
            let mut o = a.octets();
            // Low 64 bits zero: never equal to a mapped IPv4 key (`::ffff:a.b.c.d`).
            o[8..].fill(0);
            o
        }
    }
}

/// One source address, port included (a spoofer who does not know a
/// victim's port cannot share its bucket).
fn addr_key(addr: SocketAddr) -> [u8; 18] {
    let mut k = [0u8; 18];
    let ip = match addr.ip().to_canonical() {
        IpAddr::V4(a) => a.to_ipv6_mapped().octets(),
        IpAddr::V6(a) => a.octets(),
    };
    k[..16].copy_from_slice(&ip);
    k[16..].copy_from_slice(&addr.port().to_be_bytes());
    k
}

/// Token buckets per source in a fixed table: two sources that share a slot
/// share a bucket (stricter, never looser).
pub(super) struct Buckets {
    hasher: SipHasher13,
    slots: Box<[Bucket]>,
    rate: f64,
    burst: f64,
}

impl Buckets {
    /// A table allowing `rate` a second per source, `burst` at once; `key`
    /// is random so that nobody can aim at a victim's slot.
    pub(super) fn new(key: [u8; 16], now: Instant, rate: f64, burst: f64) -> Self {
        Buckets {
            hasher: SipHasher13::new_with_key(&key),
            slots: vec![Bucket::full(now, burst); SLOTS].into_boxed_slice(),
            rate,
            burst,
        }
    }

    fn take(&mut self, now: Instant, source: &[u8]) -> bool {
        let slot = (self.hasher.hash(source).h1 as usize) & (SLOTS - 1);
        self.slots[slot].take(now, self.rate, self.burst)
    }

    /// Takes one token of the IP (prefix) `ip`.
    pub(super) fn take_ip(&mut self, now: Instant, ip: &IpKey) -> bool {
        self.take(now, ip)
    }

    /// Takes one token of the address `addr` (IP and port).
    pub(super) fn take_addr(&mut self, now: Instant, addr: SocketAddr) -> bool {
        self.take(now, &addr_key(addr))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_ipv6_64_is_one_source_and_mapped_ipv4_is_ipv4() {
        assert_eq!(ip_key(ip("2001:db8::1")), ip_key(ip("2001:db8::ffff:2")));
        assert_ne!(ip_key(ip("2001:db8::1")), ip_key(ip("2001:db8:0:1::1")));
        assert_eq!(ip_key(ip("::ffff:192.0.2.1")), ip_key(ip("192.0.2.1")));
        assert_ne!(ip_key(ip("192.0.2.1")), ip_key(ip("192.0.2.2")));
        assert_ne!(ip_key(ip("::1")), ip_key(ip("0.0.0.1")));
        assert_ne!(ip_key(ip("::ffff:0.0.0.0")), ip_key(ip("::")));
    }

    #[test]
    fn each_address_has_its_own_bucket() {
        let t0 = Instant::now();
        let mut b = Buckets::new([1; 16], t0, 1.0, 2.0);
        let (a, c) = (
            "192.0.2.1:1".parse().unwrap(),
            "192.0.2.1:2".parse().unwrap(),
        );
        assert!(b.take_addr(t0, a) && b.take_addr(t0, a));
        assert!(!b.take_addr(t0, a), "a's burst is spent");
        assert!(b.take_addr(t0, c), "another port of the same IP is not");
        let k = ip_key(ip("192.0.2.1"));
        assert!(b.take_ip(t0, &k) && b.take_ip(t0, &k) && !b.take_ip(t0, &k));
    }
}
