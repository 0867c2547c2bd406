//! The Unicode character properties under the name and text rules, all of one
//! Unicode version, [`UNICODE_VERSION`]: general category, default-ignorable
//! code points, noncharacters, and counting combining marks on one base.

use unicode_normalization::UnicodeNormalization;
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};

/// The one Unicode version of every table used for names and text (general
/// category, normalization, case folding, confusables, scripts, identifier
/// status, emoji, grapheme segmentation and width). The crates that carry
/// these tables are pinned to their releases of this version (Cargo.toml).
pub const UNICODE_VERSION: (u8, u8, u8) = (16, 0, 0);

/// Default_Ignorable_Code_Point, from DerivedCoreProperties.txt of
/// [`UNICODE_VERSION`] (checked against its derivation by a test).
const DEFAULT_IGNORABLE: [(char, char); 17] = [
    ('\u{00AD}', '\u{00AD}'),
    ('\u{034F}', '\u{034F}'),
    ('\u{061C}', '\u{061C}'),
    ('\u{115F}', '\u{1160}'),
    ('\u{17B4}', '\u{17B5}'),
    ('\u{180B}', '\u{180F}'),
    ('\u{200B}', '\u{200F}'),
    ('\u{202A}', '\u{202E}'),
    ('\u{2060}', '\u{206F}'),
    ('\u{3164}', '\u{3164}'),
    ('\u{FE00}', '\u{FE0F}'),
    ('\u{FEFF}', '\u{FEFF}'),
    ('\u{FFA0}', '\u{FFA0}'),
    ('\u{FFF0}', '\u{FFF8}'),
    ('\u{1BCA0}', '\u{1BCA3}'),
    ('\u{1D173}', '\u{1D17A}'),
    ('\u{E0000}', '\u{E0FFF}'),
];

/// Is `c` a Default_Ignorable_Code_Point (shown as nothing when unsupported)?
pub(crate) fn is_default_ignorable(c: char) -> bool {
    DEFAULT_IGNORABLE
        .iter()
        .take_while(|&&(lo, _)| lo <= c)
        .any(|&(lo, hi)| (lo..=hi).contains(&c))
}

/// Is `c` a combining mark (General_Category Mn, Mc or Me)?
pub(crate) fn is_mark(c: char) -> bool {
    matches!(
        c.general_category(),
        GeneralCategory::NonspacingMark
            | GeneralCategory::SpacingMark
            | GeneralCategory::EnclosingMark
    )
}

/// Is `c` one of the 66 noncharacters (U+FDD0..U+FDEF, and U+xFFFE, U+xFFFF in every plane)?
pub(crate) fn is_noncharacter(c: char) -> bool {
    let u = c as u32;
    (0xFDD0..=0xFDEF).contains(&u) || u & 0xFFFE == 0xFFFE
}

/// Is `c` unassigned (General_Category Cn) and not a noncharacter?
pub(crate) fn is_unassigned(c: char) -> bool {
    c.general_category() == GeneralCategory::Unassigned && !is_noncharacter(c)
}

/// Does some base in `s` carry more than `limit` combining marks? Counted in
/// the canonical decomposition (NFD), so precomposed and decomposed spellings
/// count alike; a default-ignorable code point that is not a mark (ZWJ, ZWNJ…)
/// neither counts nor starts a new base.
pub(crate) fn marks_exceed(s: &str, limit: usize) -> bool {
    if s.is_ascii() {
        return false;
    }
    let mut run = 0;
    for c in s.chars().nfd() {
        if is_mark(c) {
            run += 1;
            if run > limit {
                return true;
            }
        } else if !is_default_ignorable(c) {
            run = 0;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use unicode_properties::UnicodeEmoji;

    #[test]
    fn every_table_is_of_one_unicode_version() {
        let v = UNICODE_VERSION;
        let wide = (v.0 as u64, v.1 as u64, v.2 as u64);
        assert_eq!(unicode_normalization::UNICODE_VERSION, v, "normalization");
        assert_eq!(unicode_width::UNICODE_VERSION, v, "width");
        assert_eq!(caseless::UNICODE_VERSION, wide, "case folding");
        assert_eq!(unicode_properties::UNICODE_VERSION, wide, "category, emoji");
        assert_eq!(unicode_security::UNICODE_VERSION, wide, "confusables");
        assert_eq!(unicode_script::UNICODE_VERSION, wide, "scripts");
        assert_eq!(unicode_segmentation::UNICODE_VERSION, wide, "segmentation");
    }

    /// Default_Ignorable_Code_Point as UAX #44 derives it from PropList.txt:
    /// Other_Default_Ignorable_Code_Point + Cf + Variation_Selector,
    /// minus White_Space, U+FFF9..U+FFFB, U+13430..U+1343F and
    /// Prepended_Concatenation_Mark (no Cf is White_Space in 16.0).
    fn derived_default_ignorable(c: char) -> bool {
        let u = c as u32;
        let other = matches!(u, 0x034F | 0x115F..=0x1160 | 0x17B4..=0x17B5 | 0x2065 | 0x3164
            | 0xFFA0 | 0xFFF0..=0xFFF8 | 0xE0000 | 0xE0002..=0xE001F | 0xE0080..=0xE00FF
            | 0xE01F0..=0xE0FFF);
        let selector = matches!(u, 0x180B..=0x180D | 0x180F | 0xFE00..=0xFE0F | 0xE0100..=0xE01EF);
        let prepended = matches!(u, 0x0600..=0x0605 | 0x06DD | 0x070F | 0x0890..=0x0891 | 0x08E2
            | 0x110BD | 0x110CD);
        let excluded = matches!(u, 0xFFF9..=0xFFFB | 0x13430..=0x1343F) || prepended;
        other || selector || (c.general_category() == GeneralCategory::Format && !excluded)
    }

    #[test]
    fn default_ignorable_table_matches_its_derivation() {
        for c in (0..=0x10FFFF).filter_map(char::from_u32) {
            assert_eq!(
                is_default_ignorable(c),
                derived_default_ignorable(c),
                "U+{:04X}",
                c as u32
            );
            // The emoji table covers every code point (its lookup unwraps).
            let _ = c.is_emoji_char();
        }
    }

    #[test]
    fn noncharacters_are_66() {
        let n = (0..=0x10FFFF)
            .filter_map(char::from_u32)
            .filter(|&c| is_noncharacter(c))
            .count();
        assert_eq!(n, 66);
        assert!(is_noncharacter('\u{FFFF}') && is_noncharacter('\u{10FFFE}'));
        assert!(!is_noncharacter('\u{FFFD}') && !is_unassigned('\u{FDD0}'));
        assert!(is_unassigned('\u{0378}') && !is_unassigned('a'));
    }

    #[test]
    fn marks_are_counted_per_base_in_nfd() {
        assert!(!marks_exceed("Nguyễn", 2)); // e + U+0302 + U+0303 after NFD
        assert!(marks_exceed("e\u{0302}\u{0303}\u{0301}", 2));
        assert!(marks_exceed("ễ\u{0301}", 2)); // precomposed counts as decomposed
        assert!(!marks_exceed("a\u{0301}\u{0301}b\u{0301}\u{0301}", 2));
        // A zero-width joiner does not start a new base.
        assert!(marks_exceed("a\u{0301}\u{0301}\u{200D}\u{0301}", 2));
        assert!(!marks_exceed("plain ascii", 0));
    }
}
