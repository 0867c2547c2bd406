//! The codes and flags of the sealed bodies: REFUSED's reason, detail and
//! name, REJECT's, BYE's and LEFT's reasons, WELCOME's and a room message's
//! flags. An unknown code makes its body malformed; unknown flag bits are
//! ignored (and sent as 0).

use super::{Malformed, Reader, Writer};
use crate::protocol::{InvalidName, NameError};

macro_rules! code_enum {
    ($(#[$doc:meta])* $t:ident { $($(#[$vdoc:meta])* $v:ident = $n:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $t {
            $($(#[$vdoc])* $v = $n,)*
        }
        impl $t {
            /// The code of this value on the wire.
            pub fn code(self) -> u8 {
                self as u8
            }
            /// The value of a code, or `None` for a code this version does not define.
            pub fn from_code(code: u8) -> Option<Self> {
                match code {
                    $($n => Some($t::$v),)*
                    _ => None,
                }
            }
            #[allow(dead_code)] // NameRule is read with its reason, not alone
            pub(super) fn read(r: &mut Reader<'_>) -> Result<Self, Malformed> {
                Self::from_code(r.u8()?).ok_or(Malformed::BadValue)
            }
        }
    };
}

code_enum!(
    /// Why a SAY, ME or PRIVATE was not forwarded (REJECT).
    RejectReason {
        /// Beyond the member's flood budget.
        RateLimited = 1,
        /// The text breaks a text rule.
        InvalidText = 2,
        /// No member of that name (PRIVATE).
        NoSuchMember = 3,
        /// Below the window: the server no longer knows whether it forwarded it.
        TooOld = 4,
        /// ME to a server that does not serve it.
        NotSupported = 5,
    }
);

code_enum!(
    /// Why a session ends (BYE).
    ByeReason {
        /// The answer to LEAVE.
        Left = 0,
        /// Removed by the admin.
        Removed = 1,
        /// The room is closing: do not come back.
        Closing = 2,
        /// The server is restarting: come back and resume.
        Restarting = 3,
        /// The ticket was resumed by another session.
        Replaced = 4,
    }
);

code_enum!(
    /// Why a member left the room (LEFT event).
    LeftReason {
        /// It left (LEAVE).
        Left = 0,
        /// Nothing came from it for the member timeout.
        TimedOut = 1,
        /// The admin removed it.
        Removed = 2,
    }
);

code_enum!(
    /// The name rule an invalid name breaks: REFUSED 2's `detail`, the
    /// number of the rule in PROTOCOL.md "Name rules" (rule 4.n is `40 + n`).
    NameRule {
        /// Rule 1: not 1 to 24 code points and at most 96 bytes.
        Length = 1,
        /// Rule 4.1: a default-ignorable code point.
        Invisible = 41,
        /// Rule 4.2: a code point that is not allowed, or a mark first.
        Character = 42,
        /// Rule 4.3: more than 2 marks on one base.
        TooManyMarks = 43,
        /// Rule 4.4: a code point outside the identifier profile.
        NotInProfile = 44,
        /// Rule 4.5: below the Moderately Restrictive level.
        MixedScripts = 45,
    }
);

impl From<InvalidName> for NameRule {
    fn from(why: InvalidName) -> Self {
        match why {
            InvalidName::Length => NameRule::Length,
            InvalidName::Invisible(_) => NameRule::Invisible,
            InvalidName::Character(_) | InvalidName::MarkFirst => NameRule::Character,
            InvalidName::TooManyMarks => NameRule::TooManyMarks,
            InvalidName::NotInProfile(_) => NameRule::NotInProfile,
            InvalidName::MixedScripts => NameRule::MixedScripts,
        }
    }
}

/// A REFUSED body: the reason, with its detail and name where it has them
/// (every other combination is malformed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal<'a> {
    /// 1: the name is taken; `like` is the member's name as registered.
    Taken {
        /// The name in the room that it equals.
        like: &'a str,
    },
    /// 2: the name breaks this rule.
    InvalidName(NameRule),
    /// 3: the name is reserved; `like` is the reserved word.
    Reserved {
        /// The reserved word it looks like.
        like: &'a str,
    },
    /// 4: the room is full.
    RoomFull,
    /// 5: too many members from this address (`--max-per-ip`).
    TooManyFromAddress,
    /// 6: too many joins from this address in the last minute.
    TooManyJoins,
    /// 7: the resume ticket is not valid.
    BadTicket,
}

impl<'a> From<&'a NameError> for Refusal<'a> {
    /// The REFUSED that answers a name refused by [`crate::protocol::admit_name`].
    fn from(e: &'a NameError) -> Self {
        match e {
            NameError::Invalid(why) => Refusal::InvalidName((*why).into()),
            NameError::Reserved(word) => Refusal::Reserved { like: word },
            NameError::LooksLike(name) => Refusal::Taken { like: name },
        }
    }
}

impl<'a> Refusal<'a> {
    /// REFUSED's `reason` code.
    pub fn code(&self) -> u8 {
        match self {
            Refusal::Taken { .. } => 1,
            Refusal::InvalidName(_) => 2,
            Refusal::Reserved { .. } => 3,
            Refusal::RoomFull => 4,
            Refusal::TooManyFromAddress => 5,
            Refusal::TooManyJoins => 6,
            Refusal::BadTicket => 7,
        }
    }

    pub(super) fn write(&self, w: &mut Writer<'_>) -> Result<(), Malformed> {
        let (detail, like) = match *self {
            Refusal::Taken { like } | Refusal::Reserved { like } => (0, like),
            Refusal::InvalidName(rule) => (rule.code(), ""),
            _ => (0, ""),
        };
        if matches!(self, Refusal::Taken { .. } | Refusal::Reserved { .. }) && like.is_empty() {
            return Err(Malformed::BadLength);
        }
        w.u8(self.code())?;
        w.u8(detail)?;
        w.name0(like)
    }

    pub(super) fn read(r: &mut Reader<'a>) -> Result<Self, Malformed> {
        let reason = r.u8()?;
        let detail = r.u8()?;
        let like = r.name0()?;
        let refusal = match reason {
            1 => Refusal::Taken { like },
            2 => Refusal::InvalidName(NameRule::from_code(detail).ok_or(Malformed::BadValue)?),
            3 => Refusal::Reserved { like },
            4 => Refusal::RoomFull,
            5 => Refusal::TooManyFromAddress,
            6 => Refusal::TooManyJoins,
            7 => Refusal::BadTicket,
            _ => return Err(Malformed::BadValue),
        };
        let named = matches!(refusal, Refusal::Taken { .. } | Refusal::Reserved { .. });
        if named == like.is_empty() || (reason != 2 && detail != 0) {
            return Err(Malformed::BadValue);
        }
        Ok(refusal)
    }
}

macro_rules! flags {
    ($(#[$doc:meta])* $t:ident { $($(#[$cdoc:meta])* $c:ident = $bit:literal,)* }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
        pub struct $t(u8);
        impl $t {
            $($(#[$cdoc])* pub const $c: $t = $t(1 << $bit);)*
            /// No flag set.
            pub const NONE: $t = $t(0);
            const KNOWN: u8 = 0 $(| 1 << $bit)*;
            /// The flags of a wire byte; bits this version does not define are dropped.
            pub fn from_bits(bits: u8) -> Self {
                $t(bits & Self::KNOWN)
            }
            /// The wire byte.
            pub fn bits(self) -> u8 {
                self.0
            }
            /// Are all the flags of `other` set?
            pub fn contains(self, other: $t) -> bool {
                self.0 & other.0 == other.0
            }
            /// These flags and those of `other`.
            pub fn with(self, other: $t) -> Self {
                $t(self.0 | other.0)
            }
        }
    };
}

flags!(
    /// WELCOME's `flags`: what the room keeps and which reserved parts the
    /// server serves.
    WelcomeFlags {
        /// Bit 0: the room keeps history.
        HISTORY = 0,
        /// Bit 1: this WELCOME answers a RESUME.
        RESUMED = 1,
        /// Bit 2: the server serves NACK and HISTORY.
        REPAIR = 2,
        /// Bit 3: the server serves RESUME (the ticket is not empty).
        RESUME = 3,
        /// Bit 4: the server serves ME.
        ME = 4,
    }
);

flags!(
    /// A room message's `flags`.
    LineFlags {
        /// Bit 0: said before this member joined (history).
        HISTORY = 0,
        /// Bit 1: said while this member was away (catch-up after RESUME).
        CATCH_UP = 1,
    }
);
