//! Joining: the admission rules (room full, members and joins per IP, the
//! name rules) and the new member. The cookie round-trip and the handshake
//! are the gate's; a JOIN reaches the room only on an authenticated session.

use super::members::{Member, NewMember};
use super::{Broadcast, Bucket, Peer, Room};
use crate::gate::{self, ConnId};
use crate::protocol::admit_name;
use crate::protocol::sealed::{Event, Refusal, ServerMsg, Welcome, WelcomeFlags};

impl Room {
    /// A JOIN for `name` on `conn`, which is not a member.
    pub(super) fn join(&mut self, now: std::time::Instant, conn: ConnId, peer: Peer, name: &str) {
        let refuse = |room: &mut Room, refusal: Refusal<'_>| {
            room.out
                .reply(conn, peer.local, &ServerMsg::Refused(refusal));
        };
        if self.members.len() >= self.cfg.max_members {
            return refuse(self, Refusal::RoomFull);
        }
        let ip = gate::ip_key(peer.addr.ip());
        if self.per_ip.get(&ip).copied().unwrap_or(0) >= self.cfg.max_per_ip {
            return refuse(self, Refusal::TooManyFromAddress);
        }
        let (rate, burst) = self.join_rate();
        let mut joins = self
            .joins
            .get(&ip)
            .copied()
            .unwrap_or_else(|| Bucket::full(now, burst));
        if !joins.take(now, rate, burst) {
            return refuse(self, Refusal::TooManyJoins);
        }
        let members = &self.members;
        let taken = |key: &str| members.by_key(key).map(|j| members.get(j).name.to_string());
        let key = match admit_name(name, taken) {
            Ok(key) => key,
            Err(e) => return refuse(self, Refusal::from(&e)),
        };
        // Accepted: only now does the join count.
        self.gate.admit(conn);
        self.joins.insert(ip, joins);
        self.count_ip(peer.addr, true);
        let client_id = loop {
            let id = (self.rng)();
            if id != 0 {
                break id;
            }
        };
        let joined = (self.turn, self.out.events_len());
        let i = self.members.insert(Member::new(NewMember {
            conn,
            name,
            key,
            addr: peer.addr,
            local: peer.local,
            client_id,
            now,
            burst: self.cfg.burst,
            joined,
        }));
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
                except: Some(conn),
            });
        }
        self.welcome(i);
    }

    /// Sends member `i` its WELCOME.
    pub(super) fn welcome(&mut self, i: usize) {
        let m = self.members.get(i);
        let timeout_ms = self.cfg.member_timeout.as_millis().min(u32::MAX as u128) as u32;
        let welcome = Welcome {
            flags: WelcomeFlags::ME,
            members: self.members.len() as u32,
            timeout_ms,
            epoch: self.epoch,
            room_seq: self.room_seq,
            client_id: m.client_id,
            name: &m.name,
            ticket: &[],
        };
        self.out
            .reply(m.conn, m.local, &ServerMsg::Welcome(welcome));
    }
}
