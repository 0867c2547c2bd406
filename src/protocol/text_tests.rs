use super::*;
use crate::protocol::vectors::{parse, TEXT_VECTORS};
use crate::protocol::TestRng;

#[test]
fn text_vectors() {
    for &(input, what, expected) in TEXT_VECTORS {
        let text = parse(input);
        let got = match validate_text(&text) {
            Ok(()) => "accepted".to_string(),
            Err(e) => e.to_string(),
        };
        assert_eq!(got, expected, "{input} ({what})");
        assert_eq!(check_text(&text), expected == "accepted");
    }
}

#[test]
fn receivers_escape_exactly_what_text_never_holds() {
    let escaped = "\0\x1b\r\x7f\u{85}\u{9f}\u{202e}\u{2028}\u{2029}\u{FFF9}\u{FEFF}\u{FDD0}\u{10FFFF}\u{0378}\u{E0000}";
    for c in escaped.chars() {
        assert!(must_escape(c), "U+{:04X}", c as u32);
    }
    // Zero-width characters, emoji parts and tags are shown as they are.
    for c in [
        'a',
        ' ',
        '界',
        '\u{200B}',
        '\u{200C}',
        '\u{200D}',
        '\u{2060}',
        '\u{FE0F}',
        '\u{E0067}',
    ] {
        assert!(!must_escape(c), "U+{:04X}", c as u32);
    }
    // Every code point a receiver escapes is refused in a text of its own, and
    // every other code point is refused only for a reason that depends on its
    // neighbours (a tag) or is accepted.
    for c in (0..=0x10FFFF).filter_map(char::from_u32) {
        let alone = validate_text(c.encode_utf8(&mut [0; 4]));
        match alone {
            Err(TextError::Forbidden(d, _)) => assert!(must_escape(c) && d == c),
            Err(TextError::StrayTag(_)) => assert!(!must_escape(c) && is_tag(c)),
            Ok(()) => assert!(!must_escape(c)),
            Err(e) => panic!("U+{:04X}: {e}", c as u32),
        }
    }
}

#[test]
fn random_texts_never_panic() {
    const PARTS: [&str; 8] = [
        "a",
        "\u{301}",
        "\u{200D}",
        "\u{1F3F4}",
        "\u{E0067}",
        "\u{E007F}",
        "\u{FE0F}",
        "界",
    ];
    let mut rng = TestRng(0xC0FF_EE00);
    for _ in 0..50_000 {
        let text: String = (0..rng.below(24))
            .map(|_| PARTS[rng.below(PARTS.len())])
            .collect();
        let _ = validate_text(&text);
    }
}
