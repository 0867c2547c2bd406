//! The name and text test vectors of PROTOCOL.md "Names and text". Inputs are
//! code points in hex, separated by spaces; `X*N` stands for N copies of X.
//! The expected answer is `accepted` or the refusal as the library shows it.

/// One name vector: input, the name already in the room (`""`: none), what
/// the input is, the answer.
pub(crate) type NameVector = (&'static str, &'static str, &'static str, &'static str);

/// One text vector: input, what the input is, the answer.
pub(crate) type TextVector = (&'static str, &'static str, &'static str);

#[rustfmt::skip]
pub(crate) const NAME_VECTORS: &[NameVector] = &[
    ("0061 006C 0069 0063 0065", "", "alice", "accepted"),
    ("0042 006F 0062 005F 0032", "", "Bob_2", "accepted"),
    ("0061 002E 0062 002D 0063", "", "a.b-c", "accepted"),
    ("5F20 4F1F", "", "Han", "accepted"),
    ("0932 0915 094D 0937 094D 092E 0940", "", "Devanagari", "accepted"),
    ("0E2A 0E21 0E0A 0E32 0E22", "", "Thai", "accepted"),
    ("0663 0664", "", "Arabic-Indic digits", "accepted"),
    ("004E 0067 0075 0079 1EC5 006E", "", "Nguyễn, 2 marks on e in NFD", "accepted"),
    ("5C71 7530 305F 308D 3046", "", "Han + Hiragana (Highly Restrictive)", "accepted"),
    ("0061 006C 0069 0063 0065 5F20", "", "Latin + Han (Highly Restrictive)", "accepted"),
    ("0061 0062 0915", "", "Latin + Devanagari (Moderately Restrictive)", "accepted"),
    ("0061 006C 0131 0063 0065", "", "alıce (dotless i) alone", "accepted"),
    ("0078*24", "", "24 characters", "accepted"),
    ("20000*24", "", "24 four-byte characters, 96 bytes", "accepted"),
    ("0061 006C 0069 0063 0065", "alice", "the same name", "looks like alice"),
    ("0041 004C 0049 0043 0045", "alice", "ALICE", "looks like alice"),
    ("FF41 FF4C FF49 FF43 FF45", "alice", "full-width", "looks like alice"),
    ("0061 006C 0069 0063 0065 034F", "alice", "+ COMBINING GRAPHEME JOINER", "looks like alice"),
    ("0061 006C 0069 0063 0065 FE0F", "alice", "+ VARIATION SELECTOR-16", "looks like alice"),
    ("0061 006C 0069 0063 0065 E0100", "alice", "+ VARIATION SELECTOR-17", "looks like alice"),
    ("0061 006C 0069 0063 0065 180B", "alice", "+ MONGOLIAN FVS1", "looks like alice"),
    ("0061 006C 0069 0063 0065 3164", "alice", "+ HANGUL FILLER", "looks like alice"),
    ("0061 006C 0069 0063 0065 115F", "alice", "+ HANGUL CHOSEONG FILLER", "looks like alice"),
    ("0061 006C 0069 0063 0065 200B", "alice", "+ ZERO WIDTH SPACE", "looks like alice"),
    ("0430 006C 0069 0063 0065", "alice", "Cyrillic а", "looks like alice"),
    ("0251 006C 0069 0063 0065", "alice", "ɑ (Latin alpha)", "looks like alice"),
    ("0061 006C 0131 0063 0065", "alice", "ı (dotless i)", "looks like alice"),
    ("0061 0031 0069 0063 0065", "alice", "digit 1 for l", "looks like alice"),
    ("3164", "alice", "only HANGUL FILLER (prints blank)", "invalid name: default-ignorable U+3164"),
    ("0061 0301*23", "alice", "a + 23 stacked marks", "invalid name: more than 2 combining marks on one base"),
    ("0061 0064 006D 0069 006E", "", "admin", "reserved: looks like admin"),
    ("0041 0044 004D 0049 004E", "", "ADMIN", "reserved: looks like admin"),
    ("FF41 FF44 FF4D FF49 FF4E", "", "full-width admin", "reserved: looks like admin"),
    ("0430 0064 006D 0069 006E", "", "Cyrillic а", "reserved: looks like admin"),
    ("03B1 0064 006D 0069 006E", "", "Greek α", "reserved: looks like admin"),
    ("0061 0064 0072 006E 0069 006E", "", "adrnin (rn for m)", "reserved: looks like admin"),
    ("0061 0301 0064 006D 0069 006E", "", "a + acute: marks are removed", "reserved: looks like admin"),
    ("1D00 1D05 1D0D 026A 0274", "", "small capitals (no confusable of admin)", "invalid name: U+1D00 not in the identifier profile"),
    ("0053 0079 0073 0074 0065 006D", "", "System", "reserved: looks like system"),
    ("0073 0065 0072 03BD 0065 0072", "", "Greek ν", "reserved: looks like server"),
    ("7BA1 7406 5458", "", "管理员", "reserved: looks like 管理员"),
    ("7BA1 7406 54E1", "", "管理員", "reserved: looks like 管理員"),
    ("7CFB 7EDF", "", "系统", "reserved: looks like 系统"),
    ("7CFB 7D71", "", "系統", "reserved: looks like 系統"),
    ("670D 52A1 5668", "", "服务器", "reserved: looks like 服务器"),
    ("670D 52D9 5668", "", "服務器", "reserved: looks like 服務器"),
    ("4F3A 670D 5668", "", "伺服器", "reserved: looks like 伺服器"),
    ("", "", "empty", "invalid name: not 1-24 characters and at most 96 bytes"),
    ("0078*25", "", "25 characters", "invalid name: not 1-24 characters and at most 96 bytes"),
    ("0061 0020 0062", "", "a space", "invalid name: character U+0020 not allowed"),
    ("0061 0009 0062", "", "a tab", "invalid name: character U+0009 not allowed"),
    ("0061 0021", "", "punctuation", "invalid name: character U+0021 not allowed"),
    ("0061 202E 0062", "", "a bidi control", "invalid name: default-ignorable U+202E"),
    ("0061 200D 0062", "", "ZERO WIDTH JOINER", "invalid name: default-ignorable U+200D"),
    ("0301 0061", "", "a mark first", "invalid name: begins with a combining mark"),
    ("0065 0302 0303 0301", "", "3 marks on one base", "invalid name: more than 2 combining marks on one base"),
    ("0430 006C 0069 0063 0065", "", "Cyrillic а + Latin, alone", "invalid name: mixed scripts"),
    ("0251 006C 0069 0063 0065", "", "ɑlice alone", "invalid name: U+0251 not in the identifier profile"),
    ("FB01", "", "ﬁ ligature (not NFKC)", "invalid name: U+FB01 not in the identifier profile"),
];

#[rustfmt::skip]
pub(crate) const TEXT_VECTORS: &[TextVector] = &[
    ("0068 0065 006C 006C 006F 0020 4E16 754C", "hello 世界", "accepted"),
    ("0078*1000", "1000 bytes", "accepted"),
    ("1F469 200D 1F469 200D 1F467", "ZWJ sequence (family)", "accepted"),
    ("2764 FE0F", "emoji presentation selector", "accepted"),
    ("0031 FE0F 20E3", "keycap", "accepted"),
    ("1F44B 1F3FD", "skin-tone modifier", "accepted"),
    ("1F1FA 1F1F3", "regional-indicator flag", "accepted"),
    ("1F3F4 E0067 E0062 E0073 E0063 E0074 E007F", "flag tag sequence (Scotland)", "accepted"),
    ("845B E0100", "ideographic variation sequence", "accepted"),
    ("0645 06CC 200C 062E 0648 0627 0647 0645", "Persian with ZWNJ", "accepted"),
    ("0915 094D 200D 0937", "Devanagari with ZWJ", "accepted"),
    ("0E2A 0E27 0E31 0E2A 200B 0E14 0E35", "Thai with ZWSP", "accepted"),
    ("0061 2060 0062", "WORD JOINER", "accepted"),
    ("0061 0301*8", "8 marks on one base", "accepted"),
    ("E000", "private use", "accepted"),
    ("", "empty", "not 1-1000 bytes"),
    ("0078*1001", "1001 bytes", "not 1-1000 bytes"),
    ("0063 001B 005B 0032 004A", "ESC [2J", "control U+001B"),
    ("0061 000D 0062", "carriage return", "control U+000D"),
    ("0061 007F", "DEL", "control U+007F"),
    ("0061 0085", "C1 NEXT LINE", "control U+0085"),
    ("0061 202E 0062", "RIGHT-TO-LEFT OVERRIDE", "bidi control U+202E"),
    ("2066 0061", "LEFT-TO-RIGHT ISOLATE", "bidi control U+2066"),
    ("0061 061C", "ARABIC LETTER MARK", "bidi control U+061C"),
    ("0061 2028 0062", "LINE SEPARATOR", "line or paragraph separator U+2028"),
    ("0061 2029", "PARAGRAPH SEPARATOR", "line or paragraph separator U+2029"),
    ("FFF9 0061 FFFA 0062 FFFB", "interlinear annotation", "interlinear annotation U+FFF9"),
    ("FEFF 0061", "BOM", "byte order mark U+FEFF"),
    ("0061 FDD0", "noncharacter", "noncharacter U+FDD0"),
    ("0061 FFFE", "noncharacter", "noncharacter U+FFFE"),
    ("10FFFF", "noncharacter", "noncharacter U+10FFFF"),
    ("0061 0378", "unassigned", "unassigned U+0378"),
    ("0061 E0061 E0062 E0063", "tags smuggling ASCII", "tag U+E0061 outside an emoji tag sequence"),
    ("E0067 E0062 E007F", "tags without a base", "tag U+E0067 outside an emoji tag sequence"),
    ("1F3F4 E0067 E0062", "no CANCEL TAG", "tag U+E0062 outside an emoji tag sequence"),
    ("1F3F4 E007F", "CANCEL TAG alone", "tag U+E007F outside an emoji tag sequence"),
    ("1F3F4 E0067 E007F E0062", "a tag after the sequence", "tag U+E0062 outside an emoji tag sequence"),
    ("0061 E0001", "LANGUAGE TAG", "tag U+E0001 outside an emoji tag sequence"),
    ("0061 0301*9", "9 marks on one base", "more than 8 combining marks on one base"),
    ("0061 0301*5 200D 0301*4", "ZWJ does not start a base", "more than 8 combining marks on one base"),
];

/// The string whose code points `spec` lists (`X*N`: N copies of X).
pub(crate) fn parse(spec: &str) -> String {
    let mut s = String::new();
    for item in spec.split_whitespace() {
        let (hex, n) = match item.split_once('*') {
            Some((hex, n)) => (hex, n.parse().expect("repeat count")),
            None => (item, 1),
        };
        let u = u32::from_str_radix(hex, 16).expect("hex code point");
        let c = char::from_u32(u).expect("a scalar value");
        s.extend(std::iter::repeat_n(c, n));
    }
    s
}
