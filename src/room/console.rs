//! The admin console: a line is an admin message to everyone; `/who`,
//! `/kick NAME [REASON]`, `/stats` and `/help` are commands (`/shutdown` is
//! the server's own). Replies are text for the operator.

use super::{Broadcast, Room};
use crate::protocol::sealed::{ByeReason, Event, LeftReason, LineFlags};
use crate::protocol::{name_key, validate_text, MAX_TEXT_BYTES};
use std::fmt::Write as _;
use std::time::Instant;

/// What `/help` shows on the admin console.
const CONSOLE_HELP: &str = "\
a line not starting with / is sent to every member as an admin message
/who                the members, their addresses and how long each has been silent
/kick NAME [REASON] removes NAME from the room, telling it REASON
/stats              the server's counters
/shutdown           tells every member the room is closing, then exits
/help               this list
//text              sends a message that begins with /
Ctrl-D on a terminal leaves the server running; Ctrl-C or /shutdown ends it";

/// Why a text cannot be sent, or None.
fn unsendable(text: &str) -> Option<String> {
    if text.len() > MAX_TEXT_BYTES {
        return Some(format!(
            "{} bytes, the limit is {MAX_TEXT_BYTES}",
            text.len()
        ));
    }
    validate_text(text).err().map(|e| e.to_string())
}

impl Room {
    /// Handles one line typed on the admin console at `now` (`unix_ms`: the
    /// Unix time in milliseconds); returns what to show the operator
    /// (possibly several lines, without a final newline).
    pub fn console(&mut self, now: Instant, unix_ms: u64, line: &str) -> String {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return String::new();
        }
        let Some(cmd) = line.strip_prefix('/') else {
            return self.admin_says(unix_ms, line);
        };
        if cmd.starts_with('/') {
            return self.admin_says(unix_ms, cmd); // "//text" sends "/text"
        }
        let mut words = cmd.split_whitespace();
        match (words.next(), words.next()) {
            (Some("who"), None) => self.console_who(now),
            (Some("stats"), None) => self.console_stats(),
            (Some("help" | "?"), _) => CONSOLE_HELP.to_string(),
            (Some("kick"), Some(name)) => {
                // The reason is the rest of the line after the name.
                let after = cmd.trim_start()["kick".len()..].trim_start();
                let reason = after[name.len()..].trim();
                self.kick(name, reason)
            }
            (Some("kick"), None) => "usage: /kick NAME [REASON]".to_string(),
            _ => format!(
                "unknown command '/{}': try /help",
                cmd.split_whitespace().next().unwrap_or("")
            ),
        }
    }

    fn admin_says(&mut self, unix_ms: u64, text: &str) -> String {
        if let Some(why) = unsendable(text) {
            return format!("not sent: {why}");
        }
        self.room_seq += 1;
        if let Some(h) = &mut self.history {
            h.record(crate::store::Message {
                room_seq: self.room_seq,
                time_ms: unix_ms as i64,
                sender: String::new(),
                kind: crate::store::Kind::Admin,
                id: crate::store::MessageId {
                    client: 0,
                    seq: self.room_seq,
                },
                text: text.to_string(),
            });
        }
        let (start, end) = self.out.event(&Event::Admin {
            room_seq: self.room_seq,
            time_ms: unix_ms,
            flags: LineFlags::NONE,
            text,
        });
        self.broadcasts.push(Broadcast {
            start,
            end,
            except: None,
            room_seq: self.room_seq,
        });
        let n = self.members.len();
        format!("sent to {n} member{}", if n == 1 { "" } else { "s" })
    }

    fn console_who(&self, now: Instant) -> String {
        let n = self.members.len();
        let mut s = format!("{n} member{}", if n == 1 { "" } else { "s" });
        for m in self.members.from(0) {
            let idle = now.saturating_duration_since(m.last_heard).as_secs_f64();
            let _ = write!(s, "\n{}\t{}\tidle {idle:.1} s", m.name, m.addr);
        }
        s
    }

    /// The `/stats` line: `name: value` pairs, the room's and the gate's.
    pub fn console_stats(&self) -> String {
        let s = &self.stats;
        let g = &self.gate.stats;
        let pairs: [(&str, u64); 30] = [
            ("datagrams in", g.datagrams_in),
            ("datagrams out", s.datagrams_out),
            ("dropped sends", s.dropped_sends),
            ("segmented sends", s.segmented_sends),
            ("malformed", g.malformed),
            ("forged", g.forged),
            ("replayed", g.replayed),
            ("over budget", g.over_budget),
            ("wrong state", g.wrong_state),
            ("bad bodies", s.bad_bodies),
            ("not allowed", s.not_allowed),
            ("cookies", g.cookies),
            ("handshakes", g.handshakes),
            ("responses resent", g.responses_resent),
            ("rekeys", g.rekeys),
            ("resets", g.resets),
            ("path challenges", g.challenges),
            ("moves", g.moves),
            ("half-open dropped", g.half_open_dropped),
            ("rate limited", s.rate_limited),
            ("too old", s.too_old),
            ("answers refused", s.answers_refused),
            ("held", s.held),
            ("nacks", s.nacks),
            ("resent", s.resent),
            ("lost", s.lost),
            ("unsealed", s.unsealed),
            (
                "history not stored",
                self.history.as_ref().map_or(0, |h| h.store.not_stored()),
            ),
            ("members", self.members.len() as u64),
            ("peak", s.peak as u64),
        ];
        pairs
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn kick(&mut self, name: &str, reason: &str) -> String {
        if let Some(why) = unsendable(reason).filter(|_| !reason.is_empty()) {
            return format!("not kicked: the reason: {why}");
        }
        let Some(i) = self.members.by_key(&name_key(name)) else {
            return format!("no member named '{name}'");
        };
        let m = self.members.get(i);
        let done = format!("kicked {} ({})", m.name, m.addr);
        self.remove(
            i,
            Some(LeftReason::Removed),
            Some((ByeReason::Removed, reason)),
        );
        done
    }
}

/// The names of the drop counters in the log's summary.
const DROP_NAMES: [&str; 7] = [
    "malformed",
    "forged",
    "replayed",
    "over budget",
    "wrong state",
    "bad body",
    "not allowed",
];

impl Room {
    /// The drop counters, in the order of [`DROP_NAMES`].
    fn drops(&self) -> [u64; 7] {
        let g = &self.gate.stats;
        [
            g.malformed,
            g.forged,
            g.replayed,
            g.over_budget,
            g.wrong_state,
            self.stats.bad_bodies,
            self.stats.not_allowed,
        ]
    }

    /// Were datagrams dropped since the last summary?
    pub fn drops_pending(&self) -> bool {
        self.drops() != self.drops_said
    }

    /// One line summing up the datagrams dropped since the last call.
    pub fn drops_summary(&mut self) -> Option<String> {
        let now = self.drops();
        let parts: Vec<String> = DROP_NAMES
            .iter()
            .zip(now.iter().zip(self.drops_said))
            .filter(|(_, (&n, was))| n > *was)
            .map(|(name, (&n, was))| format!("{name} {}", n - was))
            .collect();
        let total: u64 = now.iter().sum::<u64>() - self.drops_said.iter().sum::<u64>();
        self.drops_said = now;
        (total > 0).then(|| {
            format!(
                "dropped {total} datagram{} ({})",
                if total == 1 { "" } else { "s" },
                parts.join(", ")
            )
        })
    }
}
