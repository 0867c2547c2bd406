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
    pub(super) fn join(
        &mut self,
        now: std::time::Instant,
        unix_ms: u64,
        conn: ConnId,
        peer: Peer,
        name: &str,
    ) {
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
        // A member's name, or one held for its holder after a restart.
        let held = |key: &str| self.held_name(key);
        let taken = |key: &str| {
            members
                .by_key(key)
                .map(|j| members.get(j).name.to_string())
                .or_else(|| held(key))
        };
        let key = match admit_name(name, taken) {
            Ok(key) => key,
            Err(e) => return refuse(self, Refusal::from(&e)),
        };
        // Accepted: only now does the join count.
        self.joins.insert(ip, joins);
        let client_id = loop {
            let id = (self.rng)();
            if id != 0 {
                break id;
            }
        };
        let i = self.admit(now, conn, peer, (name, key), client_id, "joined", true);
        self.welcome(i, unix_ms, false);
        self.history_on_join(i);
        self.name_present(i);
    }

    /// Makes `conn` the member `name` (with its `key`): counted, its events
    /// kept for repair, logged (`how`: "joined", "resumed"), and announced
    /// when `announce` and the room is within the announce limit. Returns
    /// its index.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit(
        &mut self,
        now: std::time::Instant,
        conn: ConnId,
        peer: Peer,
        (name, key): (&str, String),
        client_id: u64,
        how: &str,
        announce: bool,
    ) -> usize {
        self.gate.admit(conn);
        self.count_ip(peer.addr, true);
        let mut member = Member::new(NewMember {
            conn,
            name,
            key,
            addr: peer.addr,
            local: peer.local,
            client_id,
            now,
            burst: self.cfg.burst,
            joined: (self.turn, self.out.events_len()),
        });
        member.slot = self.repairs.as_mut().map(|r| r.store.join());
        let i = self.members.insert(member);
        self.stats.peak = self.stats.peak.max(self.members.len());
        self.log.push(format!(
            "{name} {how} from {} ({} in the room)",
            peer.addr,
            self.members.len()
        ));
        if announce && self.announce() {
            let (start, end) = self.out.event(&Event::Joined { name });
            self.broadcasts.push(Broadcast {
                start,
                end,
                except: Some(conn),
                room_seq: 0,
            });
        }
        i
    }

    /// Sends member `i` its WELCOME (`resumed`: answering a RESUME).
    pub(super) fn welcome(&mut self, i: usize, unix_ms: u64, resumed: bool) {
        let ticket = self.ticket_for(i, unix_ms);
        let m = self.members.get(i);
        let timeout_ms = self.cfg.member_timeout.as_millis().min(u32::MAX as u128) as u32;
        let mut flags = WelcomeFlags::ME;
        if self.keeps_history() {
            flags = flags.with(WelcomeFlags::HISTORY);
            if self.serves_repair() {
                flags = flags.with(WelcomeFlags::REPAIR);
            }
        }
        if !ticket.is_empty() {
            flags = flags.with(WelcomeFlags::RESUME);
        }
        if resumed {
            flags = flags.with(WelcomeFlags::RESUMED);
        }
        let welcome = Welcome {
            flags,
            members: self.members.len() as u32,
            timeout_ms,
            epoch: self.epoch,
            room_seq: self.room_seq,
            client_id: m.client_id,
            name: &m.name,
            ticket: &ticket,
        };
        self.out
            .reply(m.conn, m.local, &ServerMsg::Welcome(welcome));
    }
}
