//! The stateless cookie of PROTOCOL.md ("Cookies"): keyed BLAKE2s-128 over
//! the 30-second window and the source address, so the server keeps no state
//! and does no Diffie-Hellman before an address shows it can receive.

use super::{kind, Cookie, SessionId, COOKIE_SIZE, COOKIE_WINDOW_SECS};
use blake2::digest::consts::U16;
use std::net::{IpAddr, SocketAddr};

/// The server's cookie secret (random at start, never stored).
pub struct CookieKey([u8; 32]);

impl CookieKey {
    /// A key from 32 secret bytes (from the OS random source).
    pub fn new(secret: [u8; 32]) -> Self {
        CookieKey(secret)
    }

    /// The cookie of `addr` in cookie window `window` (`unix_seconds / 30`).
    pub fn cookie(&self, window: u64, addr: SocketAddr) -> Cookie {
        let (family, ip) = match addr.ip().to_canonical() {
            IpAddr::V4(ip) => (4, ip.to_ipv6_mapped().octets()),
            IpAddr::V6(ip) => (6, ip.octets()),
        };
        let ip = if family == 4 { &ip[12..] } else { &ip[..] };
        let parts: [&[u8]; 4] = [
            &window.to_be_bytes(),
            &[family],
            ip,
            &addr.port().to_be_bytes(),
        ];
        super::keyed_blake2s::<U16>(&self.0, &parts).into()
    }

    /// The cookie to give `addr` now.
    pub fn make(&self, unix_secs: u64, addr: SocketAddr) -> Cookie {
        self.cookie(unix_secs / COOKIE_WINDOW_SECS, addr)
    }

    /// Is `cookie` the cookie of `addr` in this window or the one before?
    pub fn check(&self, unix_secs: u64, addr: SocketAddr, cookie: &Cookie) -> bool {
        let window = unix_secs / COOKIE_WINDOW_SECS;
        let now = super::ct_eq(cookie, &self.cookie(window, addr));
        let before = window > 0 && super::ct_eq(cookie, &self.cookie(window - 1, addr));
        now | before
    }
}

/// The COOKIE datagram that answers an INIT of `id_c`.
pub fn cookie_datagram(id_c: SessionId, cookie: &Cookie) -> [u8; COOKIE_SIZE] {
    super::id_datagram(kind::COOKIE, id_c, cookie)
}

/// The `id_c` and cookie of a COOKIE datagram, or `None` when malformed.
pub fn parse_cookie(datagram: &[u8]) -> Option<(SessionId, Cookie)> {
    super::parse_id_datagram(kind::COOKIE, datagram)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_cookie_lives_its_window_and_the_next() {
        let k = CookieKey::new([7; 32]);
        let a = addr("192.0.2.1:4000");
        let c = k.make(3000, a); // window 100: 3000..=3029
        assert!(k.check(3000, a, &c));
        assert!(k.check(3029, a, &c));
        assert!(k.check(3059, a, &c), "the next window still accepts it");
        assert!(!k.check(3060, a, &c), "expired two windows later");
        assert!(!k.check(2999, a, &c), "not valid before its window");
    }

    #[test]
    fn the_cookie_binds_ip_port_and_key() {
        let k = CookieKey::new([7; 32]);
        let c = k.make(0, addr("192.0.2.1:4000"));
        assert!(k.check(0, addr("192.0.2.1:4000"), &c));
        assert!(!k.check(0, addr("192.0.2.1:4001"), &c));
        assert!(!k.check(0, addr("192.0.2.2:4000"), &c));
        assert!(!CookieKey::new([8; 32]).check(0, addr("192.0.2.1:4000"), &c));
        let mut flipped = c;
        flipped[15] ^= 1;
        assert!(!k.check(0, addr("192.0.2.1:4000"), &flipped));
        assert!(!k.check(0, addr("192.0.2.1:4000"), &[0; 16]));
    }

    #[test]
    fn an_ipv4_mapped_address_is_the_ipv4_address() {
        let k = CookieKey::new([1; 32]);
        let c = k.make(77, addr("[::ffff:192.0.2.1]:9"));
        assert_eq!(c, k.make(77, addr("192.0.2.1:9")));
        assert_ne!(c, k.make(77, addr("[2001:db8::1]:9")));
    }

    #[test]
    fn cookie_datagram_round_trip() {
        let d = cookie_datagram(0x0102030405060708, &[9; 16]);
        assert_eq!(&d[..12], b"UC\x02\x02\x01\x02\x03\x04\x05\x06\x07\x08");
        assert_eq!(parse_cookie(&d), Some((0x0102030405060708, [9; 16])));
        assert_eq!(parse_cookie(&d[..27]), None);
        let mut other = d;
        other[3] = kind::RESET;
        assert_eq!(parse_cookie(&other), None);
    }
}
