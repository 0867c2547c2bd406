//! What the connection tells its caller: events, how it ended, why a body
//! was not sent, and what it dropped.

use std::time::Instant;

/// Why a reconnect began.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing authenticated came for the member timeout.
    Silence,
    /// A RESET with the session's token: the server forgot the session.
    Reset,
    /// BYE 3: the server is restarting.
    Restarting,
    /// The session got too old to be used and no rekey succeeded.
    Expired,
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// An ICMP error (connection refused) during the first login.
    Unreachable,
    /// No WELCOME or REFUSED within [`LOGIN_TIMEOUT`](super::LOGIN_TIMEOUT) at the first login.
    NoAnswer,
    /// The caller did not trust the server's key ([`Conn::key_checked`](super::Conn::key_checked)).
    KeyRejected,
    /// The server now has another key than the one trusted at the first login.
    KeyChanged {
        /// The key it has now.
        key: [u8; 32],
        /// The key trusted before.
        pinned: [u8; 32],
    },
    /// A BYE that does not mean "come back" (removed, closing, replaced).
    Bye {
        /// Its body.
        body: Vec<u8>,
    },
    /// The LEAVE was answered by BYE or a valid RESET, or its wait is over.
    Left,
    /// No reconnect succeeded within the reconnect timeout.
    GaveUp,
}

/// What the caller learns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The first handshake gave this server key: check it against the pin
    /// (see [`ServerTrust`](super::ServerTrust)) and answer with [`Conn::key_checked`](super::Conn::key_checked).
    VerifyKey([u8; 32]),
    /// WELCOME (also after a reconnect).
    Welcome {
        /// Its body.
        body: Vec<u8>,
        /// It answers a RESUME.
        resumed: bool,
    },
    /// REFUSED: the session stays; [`Conn::join`](super::Conn::join) may try another name.
    Refused {
        /// Its body.
        body: Vec<u8>,
    },
    /// Any other server body while a member.
    Body(Vec<u8>),
    /// Contact is lost or an attempt failed; the next attempt starts then.
    Reconnecting {
        /// When the next attempt starts.
        next_attempt_at: Instant,
        /// Why the reconnect began.
        cause: Cause,
    },
    /// The end: nothing more is sent.
    Ended(End),
}

/// Why a body was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NotSent {
    /// Not a member now (logging in, reconnecting, leaving or ended).
    NotMember,
    /// Empty or longer than [`MAX_BODY`](crate::session::MAX_BODY).
    BadLength,
}

/// Datagrams dropped, by why.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Not a datagram of this protocol, or of a kind a client never takes.
    pub malformed: u64,
    /// Failed authentication (DATA, RESPONSE).
    pub forged: u64,
    /// Replayed or too old.
    pub replays: u64,
    /// DATA for no session of ours, COOKIE or RESPONSE not expected now.
    pub unexpected: u64,
    /// RESET without the token of a session of ours.
    pub ignored_resets: u64,
    /// ICMP errors that ended nothing.
    pub icmp_errors: u64,
}
