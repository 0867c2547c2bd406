//! One error type for the whole crate: the operation that failed, the path or
//! address it concerns, and the reason (usually the OS error).
//!
//! Its `Display` is the one line a user sees on stderr, in the style of
//! coreutils: `cannot open 'a.bin': No such file or directory`.

use std::fmt;
use std::io;

/// What went wrong, in words a user can act on.
#[derive(Debug)]
pub enum Reason {
    /// An OS error (errno), shown with the OS's own wording.
    Io(io::Error),
    /// A reason of our own ("is a directory", "no answer from chat server").
    Msg(String),
}

/// An error that names the operation and the thing it was done to.
#[derive(Debug)]
pub struct Error {
    /// The operation, as a verb phrase: "open", "create temporary file in".
    pub op: String,
    /// The path or address concerned, printed quoted; empty when there is none.
    pub subject: String,
    /// Why it failed.
    pub reason: Reason,
}

impl Error {
    /// An OS error during `op` on `subject`.
    pub fn io(op: impl Into<String>, subject: impl fmt::Display, err: io::Error) -> Self {
        Error {
            op: op.into(),
            subject: subject.to_string(),
            reason: Reason::Io(err),
        }
    }

    /// An error of our own during `op` on `subject`.
    pub fn msg(op: impl Into<String>, subject: impl fmt::Display, msg: impl Into<String>) -> Self {
        Error {
            op: op.into(),
            subject: subject.to_string(),
            reason: Reason::Msg(msg.into()),
        }
    }

    /// A whole message with no operation or subject ("'a' and 'b' are the same file").
    pub fn plain(msg: impl Into<String>) -> Self {
        Error {
            op: String::new(),
            subject: String::new(),
            reason: Reason::Msg(msg.into()),
        }
    }

    /// The OS error number, when the reason is an OS error.
    pub fn errno(&self) -> Option<i32> {
        match &self.reason {
            Reason::Io(e) => e.raw_os_error(),
            Reason::Msg(_) => None,
        }
    }
}

/// The OS's text for an error, without Rust's " (os error N)" suffix.
pub fn os_reason(err: &io::Error) -> String {
    let text = err.to_string();
    match text.find(" (os error ") {
        Some(i) => text[..i].to_string(),
        None => text,
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.op.is_empty() {
            write!(f, "cannot {}", self.op)?;
            if !self.subject.is_empty() {
                write!(f, " '{}'", self.subject)?;
            }
            f.write_str(": ")?;
        }
        match &self.reason {
            Reason::Io(e) => f.write_str(&os_reason(e)),
            Reason::Msg(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for Error {}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_operation_subject_and_reason() {
        let e = Error::io(
            "open",
            "a.bin",
            io::Error::from_raw_os_error(nix::libc::ENOENT),
        );
        assert_eq!(
            e.to_string(),
            "cannot open 'a.bin': No such file or directory"
        );
        assert_eq!(e.errno(), Some(nix::libc::ENOENT));
        let e = Error::msg("copy", "d", "is a directory");
        assert_eq!(e.to_string(), "cannot copy 'd': is a directory");
        assert_eq!(Error::plain("x").to_string(), "x");
    }
}
