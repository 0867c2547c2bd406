//! Names: the key under which two names are the same name (UTS #39's skeleton
//! of NFKC_Casefold), the reserved words, and the rules a name must keep.
//! PROTOCOL.md "Names and text" is the definition; this is its code.

use super::unicode::{is_default_ignorable, is_mark, marks_exceed};
use super::{MAX_NAME_BYTES, MAX_NAME_CHARS};
use caseless::Caseless;
use std::fmt;
use std::sync::OnceLock;
use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::{GeneralSecurityProfile, RestrictionLevel, RestrictionLevelDetection};

/// At most this many combining marks on one base character of a name.
pub const MAX_NAME_MARKS: usize = 2;

/// The reserved words: a name whose key, marks removed, is the key of one of
/// these is refused (the admin's name and the server's, in English and in both
/// Chinese scripts).
pub const RESERVED_NAMES: [&str; 10] = [
    "admin",
    "server",
    "system",
    "管理员",
    "管理員",
    "系统",
    "系統",
    "服务器",
    "服務器",
    "伺服器",
];

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NameError {
    /// The name breaks a rule of form.
    Invalid(InvalidName),
    /// The name looks like this reserved word (see [`RESERVED_NAMES`]).
    Reserved(&'static str),
    /// The name has the same key as this name, already in the room.
    LooksLike(String),
}

/// The rule of form that a name breaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InvalidName {
    /// Empty, or longer than 24 characters or 96 bytes.
    Length,
    /// A default-ignorable code point (invisible).
    Invisible(char),
    /// A code point that is not a letter, mark, decimal digit, `_`, `-` or `.`.
    Character(char),
    /// The name begins with a combining mark.
    MarkFirst,
    /// More than [`MAX_NAME_MARKS`] combining marks on one base.
    TooManyMarks,
    /// A code point outside UTS #39's General Security Profile for identifiers.
    NotInProfile(char),
    /// A mix of scripts below UTS #39's Moderately Restrictive level.
    MixedScripts,
}

impl fmt::Display for InvalidName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            InvalidName::Length => f.write_str("not 1-24 characters and at most 96 bytes"),
            InvalidName::Invisible(c) => write!(f, "default-ignorable U+{:04X}", c as u32),
            InvalidName::Character(c) => write!(f, "character U+{:04X} not allowed", c as u32),
            InvalidName::MarkFirst => f.write_str("begins with a combining mark"),
            InvalidName::TooManyMarks => {
                write!(f, "more than {MAX_NAME_MARKS} combining marks on one base")
            }
            InvalidName::NotInProfile(c) => {
                write!(f, "U+{:04X} not in the identifier profile", c as u32)
            }
            InvalidName::MixedScripts => f.write_str("mixed scripts"),
        }
    }
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NameError::Invalid(why) => write!(f, "invalid name: {why}"),
            NameError::Reserved(word) => write!(f, "reserved: looks like {word}"),
            NameError::LooksLike(name) => write!(f, "looks like {name}"),
        }
    }
}

/// toNFKC_Casefold (The Unicode Standard, section 3.13; the NFKC_CF property of
/// DerivedNormalizationProps.txt): default-ignorable code points removed, NFKC,
/// then full case folding, removal and NFKC again until nothing changes.
pub(crate) fn nfkc_casefold(s: &str) -> String {
    let mut cur: String = s
        .chars()
        .filter(|&c| !is_default_ignorable(c))
        .nfkc()
        .collect();
    // A fixed point comes after one or two rounds; the bound only keeps a
    // loop from being unbounded.
    for _ in 0..8 {
        let next: String = cur
            .chars()
            .default_case_fold()
            .filter(|&c| !is_default_ignorable(c))
            .nfkc()
            .collect();
        if next == cur {
            break;
        }
        cur = next;
    }
    cur
}

/// The key under which names are compared:
/// `skeleton(NFKC_Casefold(name))` (UTS #39 section 4). Two names with equal
/// keys are the same name: `Alice`, `ａｌｉｃｅ`, Cyrillic `аlice` and `alıce`
/// all have the key of `alice`.
pub fn name_key(name: &str) -> String {
    unicode_security::skeleton(&nfkc_casefold(name)).collect()
}

/// The reserved word whose key `key` is, once its marks are removed.
fn reserved_word(key: &str) -> Option<&'static str> {
    static KEYS: OnceLock<Vec<(String, &'static str)>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        RESERVED_NAMES
            .iter()
            .map(|&w| (without_marks(&name_key(w)), w))
            .collect()
    });
    let bare = without_marks(key);
    keys.iter().find(|(k, _)| *k == bare).map(|&(_, w)| w)
}

/// `s` in NFD without its combining marks.
fn without_marks(s: &str) -> String {
    s.chars().nfd().filter(|&c| !is_mark(c)).collect()
}

/// The rules of form, in the order PROTOCOL.md gives them.
fn check_form(name: &str) -> Result<(), InvalidName> {
    for (i, c) in name.chars().enumerate() {
        if is_default_ignorable(c) {
            return Err(InvalidName::Invisible(c));
        }
        use GeneralCategory::*;
        match c.general_category() {
            UppercaseLetter | LowercaseLetter | TitlecaseLetter | ModifierLetter | OtherLetter
            | DecimalNumber => {}
            NonspacingMark | SpacingMark | EnclosingMark if i == 0 => {
                return Err(InvalidName::MarkFirst)
            }
            NonspacingMark | SpacingMark | EnclosingMark => {}
            _ if matches!(c, '_' | '-' | '.') => {}
            _ => return Err(InvalidName::Character(c)),
        }
    }
    if marks_exceed(name, MAX_NAME_MARKS) {
        return Err(InvalidName::TooManyMarks);
    }
    if let Some(c) = name.chars().find(|&c| !c.identifier_allowed()) {
        return Err(InvalidName::NotInProfile(c));
    }
    if name.detect_restriction_level() > RestrictionLevel::ModeratelyRestrictive {
        return Err(InvalidName::MixedScripts);
    }
    Ok(())
}

/// Checks `name` for a room and returns its key. `taken(key)` answers with
/// the name already in the room under that key, if any. In order: the length;
/// a reserved word ([`NameError::Reserved`]); a name in the room
/// ([`NameError::LooksLike`]); then the rules of form. So a lookalike is told
/// which name it looks like even when it also breaks a rule of form.
pub fn admit_name(
    name: &str,
    taken: impl FnOnce(&str) -> Option<String>,
) -> Result<String, NameError> {
    let chars = name.chars().count();
    if chars == 0 || chars > MAX_NAME_CHARS || name.len() > MAX_NAME_BYTES {
        return Err(NameError::Invalid(InvalidName::Length));
    }
    let key = name_key(name);
    if let Some(word) = reserved_word(&key) {
        return Err(NameError::Reserved(word));
    }
    if let Some(existing) = taken(&key) {
        return Err(NameError::LooksLike(existing));
    }
    check_form(name).map_err(NameError::Invalid)?;
    Ok(key)
}

/// Checks `name` against every rule that needs no room (as a client does
/// before it asks): [`admit_name`] in an empty room.
pub fn check_name(name: &str) -> Result<(), NameError> {
    admit_name(name, |_| None).map(drop)
}

#[cfg(test)]
#[path = "names_tests.rs"]
mod tests;
