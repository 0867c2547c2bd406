//! Joining: the stateless cookie round-trip, the admission rules (taken,
//! reserved, full, re-join, a retransmitted JOIN), and the new session.

use super::members::Member;
use super::{Broadcast, Bucket, Peer, Room, SeqWindow, COOKIE_WINDOW_SECS};
use crate::protocol::{admit_name, Cookie, Event, RefuseReason, ServerMsg, Token};
use siphasher::sip128::SipHasher24;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

/// What a JOIN may lead to.
enum Admission {
    Refuse(RefuseReason),
    /// A retransmitted JOIN of the attempt that created member `i`: WELCOME again.
    Resend(usize),
    /// `prev_token` names member `i`, same name and address: replace the session.
    Rejoin(usize),
    New,
}

impl Room {
    /// The cookie for `addr` and `name` in cookie window `window`.
    fn cookie(&self, window: u64, addr: SocketAddr, name: &str) -> Cookie {
        let mut buf = [0u8; 8 + 1 + 16 + 2 + 96];
        let mut n = 0;
        let mut put = |b: &[u8]| {
            buf[n..n + b.len()].copy_from_slice(b);
            n += b.len();
        };
        put(&window.to_be_bytes());
        match addr.ip() {
            IpAddr::V4(ip) => {
                put(&[4]);
                put(&ip.octets());
            }
            IpAddr::V6(ip) => {
                put(&[6]);
                put(&ip.octets());
            }
        }
        put(&addr.port().to_be_bytes());
        put(&name.as_bytes()[..name.len().min(96)]);
        SipHasher24::new_with_key(&self.cookie_key)
            .hash(&buf[..n])
            .as_bytes()
    }

    fn admission(&self, key: &str, addr: &SocketAddr, prev_token: Token, nonce: u64) -> Admission {
        if let Some(j) = self.members.by_addr(addr) {
            let m = self.members.get(j);
            return if *m.key != *key {
                Admission::Refuse(RefuseReason::Taken) // one address, one member
            } else if m.join_nonce == nonce {
                Admission::Resend(j)
            } else if prev_token != 0 && prev_token == m.token {
                Admission::Rejoin(j)
            } else {
                Admission::Refuse(RefuseReason::Taken)
            };
        }
        if self.members.by_key(key).is_some() {
            Admission::Refuse(RefuseReason::Taken)
        } else if self.members.len() >= self.cfg.max_members {
            Admission::Refuse(RefuseReason::RoomFull)
        } else {
            Admission::New
        }
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn join(
        &mut self,
        now: Instant,
        unix_secs: u64,
        peer: Peer,
        nonce: u64,
        prev_token: Token,
        cookie: Cookie,
        name: &str,
    ) {
        // Every answer goes to an address that may be spoofed: one reply at
        // most, smaller than the 256-byte JOIN, and rate-limited per source.
        if !self.strangers.allow(now, peer.addr.ip()) {
            self.stats.rate_limited += 1;
            return;
        }
        let refuse = |room: &mut Room, reason| {
            room.out.reply(peer, &ServerMsg::Refused { nonce, reason });
        };
        // A name with the key of a member at another address looks like that
        // member's (a member's own re-JOIN is sorted out by `admission`).
        let taken = |key: &str| {
            let m = self.members.get(self.members.by_key(key)?);
            (m.peer.addr != peer.addr).then(|| m.name.to_string())
        };
        let key = match admit_name(name, taken) {
            Ok(key) => key,
            Err(e) => return refuse(self, e.refuse_reason()),
        };
        let admission = self.admission(&key, &peer.addr, prev_token, nonce);
        let rejoin = match admission {
            Admission::Refuse(r) => return refuse(self, r),
            Admission::Resend(j) => return self.welcome(j, nonce),
            Admission::Rejoin(j) => Some(j),
            Admission::New => None,
        };
        let window = unix_secs / COOKIE_WINDOW_SECS;
        let fresh = self.cookie(window, peer.addr, name);
        let valid = crate::session::ct_eq(&cookie, &fresh)
            || (window > 0
                && crate::session::ct_eq(&cookie, &self.cookie(window - 1, peer.addr, name)));
        if !valid {
            self.out.reply(
                peer,
                &ServerMsg::Challenge {
                    nonce,
                    cookie: fresh,
                },
            );
            return;
        }
        let token = self.fresh_token();
        let joined = (self.turn, self.out.events_len());
        let i = match rejoin {
            Some(j) => {
                self.members.set_token(j, token);
                self.members.touch(j, now);
                let m = self.members.get_mut(j);
                m.join_nonce = nonce;
                m.next_seq = 1;
                m.seen = SeqWindow::new();
                m.private.clear();
                (m.joined_turn, m.joined_at) = joined;
                self.log
                    .push(format!("{} rejoined from {}", m.name, peer.addr));
                j
            }
            None => {
                let bucket = Bucket::full(now, self.cfg.burst);
                let m = Member::new(token, name, key, peer, nonce, now, bucket, joined);
                let i = self.members.insert(m);
                self.stats.peak = self.stats.peak.max(self.members.len());
                self.log.push(format!(
                    "{name} joined from {} ({} in the room)",
                    peer.addr,
                    self.members.len()
                ));
                if self.announce() {
                    let (start, end) = self.out.event(&Event::Joined { name });
                    self.broadcasts.push(Broadcast {
                        start,
                        end,
                        except: token,
                    });
                }
                i
            }
        };
        self.welcome(i, nonce);
    }

    fn welcome(&mut self, i: usize, nonce: u64) {
        let m = self.members.get(i);
        let timeout_ms = self.cfg.member_timeout.as_millis().min(u32::MAX as u128) as u32;
        self.out.reply(
            m.peer,
            &ServerMsg::Welcome {
                nonce,
                token: m.token,
                members: self.members.len() as u32,
                timeout_ms,
                name: &m.name,
            },
        );
    }

    /// A random token that is not 0 and not in use.
    fn fresh_token(&mut self) -> Token {
        loop {
            let t = (self.tokens)();
            if t != 0 && self.members.by_token(t).is_none() {
                return t;
            }
        }
    }
}
