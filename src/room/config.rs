//! The room's limits and switches ([`Config`]), its counters for `/stats`
//! ([`Stats`]), and the two ends of a datagram ([`Peer`], [`Local`]).

use crate::gate;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The local end a datagram arrived on (from IP_PKTINFO / IPV6_PKTINFO), so
/// replies leave from the same address on a host with several.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Local {
    /// The local address to reply from (for a unicast datagram, the one it
    /// was sent to).
    pub ip: IpAddr,
    /// The index of the interface it arrived on, for IPv6 (0 for IPv4, where
    /// it is not used).
    pub ifindex: u32,
}

/// The two ends of a datagram: the remote address and the local address it
/// arrived on, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    /// The remote address.
    pub addr: SocketAddr,
    /// The local end the datagram arrived on, to reply from; `None` when not known.
    pub local: Option<Local>,
}

impl From<SocketAddr> for Peer {
    fn from(addr: SocketAddr) -> Self {
        Peer { addr, local: None }
    }
}

/// The room's limits and switches.
#[derive(Debug, Clone)]
pub struct Config {
    /// Joins beyond this many members are refused as "room full".
    pub max_members: usize,
    /// In a room with more members than this, JOINED and LEFT are not sent.
    pub announce_limit: usize,
    /// A member silent this long is removed.
    pub member_timeout: Duration,
    /// SAY/ME/PRIVATE per second per member; 0 turns flood control off.
    pub rate: f64,
    /// How many SAY/ME/PRIVATE a member may send at once.
    pub burst: f64,
    /// Pack a turn's events for a member into as few datagrams as fit.
    pub packing: bool,
    /// Send a member's EVENTS datagrams of one turn as one segmented send
    /// (UDP GSO): all but the last padded to the full datagram size. Only
    /// where the socket has `UDP_SEGMENT` set to `MAX_DATAGRAM`, and only
    /// with `packing`.
    pub segments: bool,
    /// Keep events for NACK repair, and serve NACK and HISTORY (with history).
    pub repair: bool,
    /// Members per IP (an IPv4 address or an IPv6 /64).
    pub max_per_ip: usize,
    /// Joins per IP in a minute.
    pub joins_per_minute: u32,
    /// The gate's limits (and the rekey period).
    pub gate: gate::Config,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_members: 10_000,
            announce_limit: 500,
            member_timeout: Duration::from_secs(30),
            rate: 5.0,
            burst: 10.0,
            packing: true,
            segments: false,
            repair: true,
            max_per_ip: 64,
            joins_per_minute: 64,
            gate: gate::Config::default(),
        }
    }
}

/// The room's counters for the console's `/stats` (the gate keeps its own).
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Datagrams sent (counted by the server).
    pub datagrams_out: u64,
    /// Datagrams the kernel refused to send (counted by the server).
    pub dropped_sends: u64,
    /// Segmented sends (UDP GSO: several datagrams to one member in one
    /// send) the kernel took (counted by the server).
    pub segmented_sends: u64,
    /// Authenticated bodies that could not be decoded.
    pub bad_bodies: u64,
    /// Authenticated bodies not allowed in their session's state (SAY
    /// before JOIN), or for a reserved part this server does not serve.
    pub not_allowed: u64,
    /// Messages refused by flood control.
    pub rate_limited: u64,
    /// Message numbers below the window (REJECT 4).
    pub too_old: u64,
    /// Answers not queued because the member's answer queue was full.
    pub answers_refused: u64,
    /// Bodies that could not be sealed (their session was gone).
    pub unsealed: u64,
    /// Messages that arrived ahead of a gap and waited for it.
    pub held: u64,
    /// NACKs received.
    pub nacks: u64,
    /// Events sent again for a NACK.
    pub resent: u64,
    /// Events reported lost (LOST) for a NACK.
    pub lost: u64,
    /// The most members the room has had at once.
    pub peak: usize,
}
