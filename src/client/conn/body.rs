//! The body layer the connection plugs in: the client bodies it makes
//! (JOIN, RESUME, KEEPALIVE, LEAVE), the few server bodies it reads
//! (WELCOME, REFUSED, BYE), and what the caller tells it for them.

/// The bodies the connection makes and the few server bodies it reads.
pub trait BodyCodec {
    /// A JOIN body asking for `name`.
    fn join(&self, name: &str) -> Vec<u8>;
    /// A RESUME body.
    fn resume(&self, resume: &Resume<'_>) -> Vec<u8>;
    /// A KEEPALIVE body.
    fn keepalive(&self, last_event: u32) -> Vec<u8>;
    /// A LEAVE body.
    fn leave(&self) -> Vec<u8>;
    /// What a server body is, as far as the connection cares.
    fn classify(&self, body: &[u8]) -> ServerBody;
}

/// The fields of a RESUME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume<'a> {
    /// The ticket of the last WELCOME (opaque).
    pub ticket: &'a [u8],
    /// The epoch of the last WELCOME.
    pub epoch: u32,
    /// The room sequence of the last room message shown.
    pub last_room_seq: u64,
    /// The lowest message number not yet acknowledged.
    pub lowest_unacked: u32,
}

/// A server body as the connection sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerBody {
    /// WELCOME.
    Welcome {
        /// The member timeout in milliseconds.
        timeout_ms: u32,
        /// The run of the room's sequence (echoed in a RESUME).
        epoch: u32,
        /// The resume ticket (empty: the server does not serve RESUME).
        ticket: Vec<u8>,
        /// Flag bit 1: it answers a RESUME.
        resumed: bool,
    },
    /// REFUSED (of any reason).
    Refused,
    /// BYE with its reason.
    Bye {
        /// The reason byte.
        reason: u8,
    },
    /// Anything else (the caller's business), or malformed.
    Other,
}

/// What the caller knows of the room, for KEEPALIVE and RESUME.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The highest event number received in order (0 if none).
    pub last_event: u32,
    /// The room sequence of the last room message shown (0 if none).
    pub last_room_seq: u64,
    /// The lowest message number not yet acknowledged.
    pub lowest_unacked: u32,
}

impl Default for Progress {
    fn default() -> Self {
        Progress {
            last_event: 0,
            last_room_seq: 0,
            lowest_unacked: 1,
        }
    }
}
