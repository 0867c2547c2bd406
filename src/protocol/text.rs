//! Text: which code points a text may hold, and which ones a receiver must
//! show as escapes. PROTOCOL.md "Names and text" is the definition.
//!
//! Zero-width characters are accepted in text: ZWNJ (U+200C) and ZWJ
//! (U+200D), which Persian, Indic scripts and emoji sequences need; ZWSP
//! (U+200B), which Thai, Khmer and Lao use to mark word breaks; and WORD
//! JOINER (U+2060). None of them moves the cursor or hides another
//! character. The BOM (U+FEFF) is refused: it is a file signature, not
//! content, and U+2060 replaces its joining use.

use super::unicode::{is_noncharacter, is_unassigned, marks_exceed};
use super::MAX_TEXT_BYTES;
use std::fmt;
use unicode_properties::UnicodeEmoji;

/// At most this many combining marks on one base character of a text.
pub const MAX_TEXT_MARKS: usize = 8;

/// A kind of code point that a text never holds and a receiver always escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// General_Category Cc: C0 controls, DEL, C1 controls.
    Control,
    /// Bidi_Control: U+061C, U+200E, U+200F, U+202A..U+202E, U+2066..U+2069.
    BidiControl,
    /// U+2028 LINE SEPARATOR or U+2029 PARAGRAPH SEPARATOR.
    Separator,
    /// U+FFF9..U+FFFB, the interlinear annotation characters.
    Annotation,
    /// U+FEFF, the byte order mark.
    ByteOrderMark,
    /// One of the 66 noncharacters.
    Noncharacter,
    /// Unassigned in [`super::UNICODE_VERSION`].
    Unassigned,
}

/// Why a text is refused (REJECT reason 2, invalid text).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextError {
    /// Empty, or longer than 1000 bytes.
    Length,
    /// A code point of a [`Forbidden`] kind.
    Forbidden(char, Forbidden),
    /// A tag character (U+E0001, U+E0020..U+E007F) outside an emoji tag sequence.
    StrayTag(char),
    /// More than [`MAX_TEXT_MARKS`] combining marks on one base.
    TooManyMarks,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Forbidden::Control => "control",
            Forbidden::BidiControl => "bidi control",
            Forbidden::Separator => "line or paragraph separator",
            Forbidden::Annotation => "interlinear annotation",
            Forbidden::ByteOrderMark => "byte order mark",
            Forbidden::Noncharacter => "noncharacter",
            Forbidden::Unassigned => "unassigned",
        })
    }
}

impl fmt::Display for TextError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            TextError::Length => f.write_str("not 1-1000 bytes"),
            TextError::Forbidden(c, kind) => write!(f, "{kind} U+{:04X}", c as u32),
            TextError::StrayTag(c) => {
                write!(f, "tag U+{:04X} outside an emoji tag sequence", c as u32)
            }
            TextError::TooManyMarks => {
                write!(f, "more than {MAX_TEXT_MARKS} combining marks on one base")
            }
        }
    }
}

/// Is `c` a bidi control (formatting that can reorder what a terminal shows)?
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// The kind of `c` if a text may never hold it, wherever it stands.
pub(crate) fn forbidden(c: char) -> Option<Forbidden> {
    if c.is_ascii() {
        return c.is_ascii_control().then_some(Forbidden::Control);
    }
    Some(match c {
        _ if c.is_control() => Forbidden::Control,
        _ if is_bidi_control(c) => Forbidden::BidiControl,
        '\u{2028}' | '\u{2029}' => Forbidden::Separator,
        '\u{FFF9}'..='\u{FFFB}' => Forbidden::Annotation,
        '\u{FEFF}' => Forbidden::ByteOrderMark,
        _ if is_noncharacter(c) => Forbidden::Noncharacter,
        _ if is_unassigned(c) => Forbidden::Unassigned,
        _ => return None,
    })
}

/// Must a receiver show `c` as an escape rather than send it to the terminal?
/// Exactly the code points a text may never hold (the kinds of [`Forbidden`]); every
/// escaped code point is written `\xHH` below U+0080, else `\uHHHH` (at least
/// four lower-case hex digits).
pub fn must_escape(c: char) -> bool {
    forbidden(c).is_some()
}

/// Is `c` a tag character (U+E0001 LANGUAGE TAG or U+E0020..U+E007F)?
fn is_tag(c: char) -> bool {
    matches!(c, '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// The first tag character of `text` that is not inside an emoji tag
/// sequence (UTS #51 ED-14a): an emoji character (optionally followed by
/// U+FE0F), then one or more of U+E0020..U+E007E, then U+E007F CANCEL TAG.
fn stray_tag(text: &str) -> Option<char> {
    let (mut prev, mut prev2) = ('\0', '\0');
    // Inside a tag run: false before any, or after its CANCEL TAG.
    let mut in_run = false;
    for c in text.chars() {
        match c {
            '\u{E0020}'..='\u{E007E}' if in_run => {}
            '\u{E0020}'..='\u{E007E}' => {
                let base = prev.is_emoji_char() || (prev == '\u{FE0F}' && prev2.is_emoji_char());
                if !base {
                    return Some(c);
                }
                in_run = true;
            }
            '\u{E007F}' if in_run => in_run = false,
            _ if is_tag(c) => return Some(c),
            _ if in_run => return Some(prev),
            _ => {}
        }
        (prev2, prev) = (prev, c);
    }
    in_run.then_some(prev)
}

/// Checks the text rules of PROTOCOL.md, saying which one `text` breaks.
pub fn validate_text(text: &str) -> Result<(), TextError> {
    if text.is_empty() || text.len() > MAX_TEXT_BYTES {
        return Err(TextError::Length);
    }
    if let Some((c, kind)) = text.chars().find_map(|c| forbidden(c).map(|k| (c, k))) {
        return Err(TextError::Forbidden(c, kind));
    }
    if text.is_ascii() {
        return Ok(());
    }
    if let Some(c) = stray_tag(text) {
        return Err(TextError::StrayTag(c));
    }
    if marks_exceed(text, MAX_TEXT_MARKS) {
        return Err(TextError::TooManyMarks);
    }
    Ok(())
}

/// Does `text` keep the text rules (see [`validate_text`])?
pub fn check_text(text: &str) -> bool {
    validate_text(text).is_ok()
}

#[cfg(test)]
#[path = "text_tests.rs"]
mod tests;
