//! The admin console: a line is an admin message to everyone; `/who`,
//! `/kick NAME`, `/stats` and `/help` are commands (`/shutdown` is the
//! server's own). Replies are text for the operator.

use super::{Broadcast, Room};
use crate::protocol::{
    check_text, name_key, ByeReason, Event, LeftReason, ServerMsg, MAX_TEXT_BYTES,
};
use std::fmt::Write as _;
use std::time::Instant;

/// What `/help` shows on the admin console.
const CONSOLE_HELP: &str = "\
a line not starting with / is sent to every member as an admin message
/who          the members, their addresses and how long each has been silent
/kick NAME    removes NAME from the room
/stats        the server's counters
/shutdown     tells every member the server is closing, then exits
/help         this list
//text        sends a message that begins with /
Ctrl-D on a terminal leaves the server running; Ctrl-C or /shutdown ends it";

impl Room {
    /// Handles one line typed on the admin console; returns what to show the
    /// operator (possibly several lines, without a final newline).
    pub fn console(&mut self, now: Instant, line: &str) -> String {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            return String::new();
        }
        let Some(cmd) = line.strip_prefix('/') else {
            return self.admin_says(line);
        };
        if cmd.starts_with('/') {
            return self.admin_says(cmd); // "//text" sends "/text"
        }
        let mut words = cmd.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("who"), None, _) => self.console_who(now),
            (Some("stats"), None, _) => self.console_stats(),
            (Some("help" | "?"), _, _) => CONSOLE_HELP.to_string(),
            (Some("kick"), Some(name), None) => self.kick(name),
            (Some("kick"), _, _) => "usage: /kick NAME".to_string(),
            _ => format!(
                "unknown command '/{}': try /help",
                cmd.split_whitespace().next().unwrap_or("")
            ),
        }
    }

    fn admin_says(&mut self, text: &str) -> String {
        if text.len() > MAX_TEXT_BYTES {
            return format!(
                "not sent: {} bytes, the limit is {MAX_TEXT_BYTES}",
                text.len()
            );
        }
        if !check_text(text) {
            return "not sent: the text holds control or bidi characters".to_string();
        }
        let (start, end) = self.out.event(&Event::Admin { text });
        self.broadcasts.push(Broadcast {
            start,
            end,
            except: 0,
        });
        let n = self.members.len();
        format!("sent to {n} member{}", if n == 1 { "" } else { "s" })
    }

    fn console_who(&self, now: Instant) -> String {
        let n = self.members.len();
        let mut s = format!("{n} member{}", if n == 1 { "" } else { "s" });
        for m in self.members.from(0) {
            let idle = now.saturating_duration_since(m.last_heard).as_secs_f64();
            let _ = write!(s, "\n{}\t{}\tidle {idle:.1} s", m.name, m.peer.addr);
        }
        s
    }

    /// The `/stats` line.
    pub fn console_stats(&self) -> String {
        let s = &self.stats;
        format!(
            "datagrams in: {}, datagrams out: {}, malformed: {}, dropped sends: {}, rate limited: {}, \
             forged: {}, unknown sessions: {}, members: {}, peak: {}",
            s.datagrams_in,
            s.datagrams_out,
            s.malformed,
            s.dropped_sends,
            s.rate_limited,
            s.forged,
            s.unknown_sessions,
            self.members.len(),
            s.peak
        )
    }

    fn kick(&mut self, name: &str) -> String {
        let Some(i) = self.members.by_key(&name_key(name)) else {
            return format!("no member named '{name}'");
        };
        let m = self.members.get(i);
        let done = format!("kicked {} ({})", m.name, m.peer.addr);
        self.out.reply(
            m.peer,
            &ServerMsg::Bye {
                reason: ByeReason::Kicked,
            },
        );
        self.remove(i, LeftReason::Removed);
        done
    }
}
