//! What a run is asked to do: the options, after the command line.

use super::report;
use super::tx::Plan;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Whether a relay run also measures the kernel ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// Only the ceiling, no server.
    Only,
    /// The ceiling first, then the server (the default).
    Also,
    /// Only the server.
    Skip,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub members: usize,
    pub senders: usize,
    /// Flood within the acknowledgement window instead of the closed loop.
    pub flood: bool,
    /// The closed loop's window W (messages).
    pub window: u64,
    /// Unacknowledged SAYs per sender, at most, when flooding.
    pub ack_window: usize,
    /// Messages over all senders, at most.
    pub messages: u64,
    /// Sending stops after this long.
    pub duration: Duration,
    /// Messages per second over all senders, at most.
    pub rate: Option<f64>,
    /// Bytes of each message's text.
    pub text_len: usize,
    /// Run the server with packing (else `--no-packing`).
    pub packing: bool,
    pub ceiling: Ceiling,
    /// A server already running (else one is started).
    pub server: Option<SocketAddr>,
    /// Its pid, for its CPU time and memory.
    pub server_pid: Option<u32>,
    /// The chat-server binary to start.
    pub server_bin: PathBuf,
    /// Receiver threads.
    pub threads: usize,
    /// Receive buffer of each member socket, bytes.
    pub rcvbuf: usize,
    /// Idle run: join, then only keepalives for this long.
    pub idle: Option<Duration>,
    /// How long each run waits for the machine to be idle first (zero: not at all).
    pub idle_wait: Duration,
    /// Run the load against the chat server, and against ngircd.
    pub chat_server: bool,
    pub ngircd: bool,
    /// The ngircd binary to start.
    pub ngircd_bin: PathBuf,
    /// The share of datagrams the members discard before opening them.
    pub discard: DiscardShare,
}

/// A seeded share of datagrams the members discard (a lossy path).
#[derive(Debug, Clone, Copy, Default)]
pub struct DiscardShare {
    /// Percent, 0 to 50.
    pub percent: f64,
    /// The seed of each member's choice (with its index).
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 100,
            senders: 1,
            flood: false,
            window: 32,
            ack_window: udpchat::room::SEQ_WINDOW as usize,
            messages: 1_000_000,
            duration: Duration::from_secs(3),
            rate: None,
            text_len: 64,
            packing: true,
            ceiling: Ceiling::Also,
            server: None,
            server_pid: None,
            server_bin: default_server_bin(),
            threads: 2,
            rcvbuf: 1 << 20,
            idle: None,
            idle_wait: Duration::from_secs(30),
            chat_server: true,
            ngircd: false,
            ngircd_bin: super::ngircd_proc::default_bin(),
            discard: DiscardShare::default(),
        }
    }
}

/// `chat-server` next to the running executable.
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("chat-server")))
        .unwrap_or_else(|| PathBuf::from("chat-server"))
}

impl Options {
    pub fn mode(&self) -> String {
        let m = if self.flood {
            "flood".to_string()
        } else {
            format!("W={}", self.window)
        };
        let m = match self.rate {
            Some(r) => format!("{m} at {} msg/s", report::si(r)),
            None => m,
        };
        if self.threads == 2 {
            m
        } else {
            format!(
                "{m}, {} rx thread{}",
                self.threads,
                if self.threads == 1 { "" } else { "s" }
            )
        }
    }

    pub fn plan(&self) -> Plan {
        Plan {
            fanout: self.members.saturating_sub(1) as u64,
            total: self.messages,
            duration: self.duration,
            window: (!self.flood).then_some(self.window),
            ack_window: self.ack_window,
            rate: self.rate,
            text_len: self.text_len,
        }
    }
}
