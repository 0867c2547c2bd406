use super::*;
use crate::protocol::sealed::Refusal;
use crate::protocol::vectors::{parse, NAME_VECTORS};
use crate::protocol::TestRng;

/// The answer for `name` in a room that holds `room` (`""`: nobody), as the vectors write it.
fn answer(name: &str, room: &str) -> String {
    let taken = |key: &str| (!room.is_empty() && key == name_key(room)).then(|| room.to_string());
    match admit_name(name, taken) {
        Ok(key) => {
            assert_eq!(key, name_key(name));
            "accepted".into()
        }
        Err(e) => e.to_string(),
    }
}

#[test]
fn name_vectors() {
    for &(input, room, what, expected) in NAME_VECTORS {
        let name = parse(input);
        assert_eq!(
            answer(&name, room),
            expected,
            "{input} ({what}) next to {room:?}"
        );
    }
}

#[test]
fn every_example_of_the_issue_is_refused_next_to_alice() {
    let lookalikes = [
        "alice\u{034F}",
        "alice\u{FE0F}",
        "alice\u{E0100}",
        "alice\u{180B}",
        "alice\u{3164}",
        "alice\u{115F}",
        "\u{0430}lice",
        "\u{0251}lice",
        "al\u{0131}ce",
    ];
    for name in lookalikes {
        assert_eq!(answer(name, "alice"), "looks like alice", "{name:?}");
        assert_eq!(
            Refusal::from(&admit_name(name, |_| Some("alice".into())).unwrap_err()),
            Refusal::Taken { like: "alice" }
        );
    }
    for name in ["\u{0430}dmin", "\u{03B1}dmin"] {
        assert_eq!(
            check_name(name),
            Err(NameError::Reserved("admin")),
            "{name}"
        );
    }
    assert_eq!(check_name("管理員"), Err(NameError::Reserved("管理員")));
    let invalid = [
        ("\u{3164}", InvalidName::Invisible('\u{3164}')),
        ("ᴀᴅᴍɪɴ", InvalidName::NotInProfile('ᴀ')),
        (
            &*format!("a{}", "\u{0301}".repeat(23)),
            InvalidName::TooManyMarks,
        ),
    ];
    for (name, why) in invalid {
        assert_eq!(answer(name, "alice"), NameError::Invalid(why).to_string());
        assert_eq!(
            Refusal::from(&check_name(name).unwrap_err()),
            Refusal::InvalidName(why.into())
        );
    }
}

#[test]
fn keys_fold_case_width_and_confusables() {
    assert_eq!(name_key("ALICE"), name_key("ａｌｉｃｅ"));
    assert_eq!(name_key("STRASSE"), name_key("straße"));
    assert_eq!(name_key("ΟΔΟΣ"), name_key("οδος"));
    assert_eq!(name_key("mary"), name_key("rnary"));
    assert_eq!(name_key("bob1"), name_key("bobl"));
    assert_ne!(name_key("alice"), name_key("alice2"));
    assert_ne!(name_key("管理员"), name_key("管理員"));
    // NFKC_Casefold reaches its fixed point: U+FFA0 becomes U+3164, which is then removed.
    assert_eq!(nfkc_casefold("a\u{FFA0}b"), "ab");
    assert_eq!(nfkc_casefold("\u{1E9E}"), "ss");
    // Every reserved word is reserved, in any case.
    for w in RESERVED_NAMES {
        assert_eq!(check_name(w), Err(NameError::Reserved(w)));
        assert_eq!(check_name(&w.to_uppercase()), Err(NameError::Reserved(w)));
    }
}

#[test]
fn rules_that_need_no_room() {
    for ok in [
        "alice",
        "Bob_2",
        "张伟",
        "김민준",
        "Ελένη",
        "Иван",
        &"x".repeat(24),
    ] {
        assert_eq!(check_name(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        check_name("Ivanов"),
        Err(NameError::Invalid(InvalidName::MixedScripts))
    );
    assert_eq!(
        check_name(&"x".repeat(25)),
        Err(NameError::Invalid(InvalidName::Length))
    );
}

#[test]
fn random_names_never_panic_and_keys_are_stable() {
    // Code points from ranges full of edge cases: ASCII, Latin, combining
    // marks, Greek and Cyrillic, Hangul jamo, ignorables, CJK, tags, the end.
    const RANGES: [(u32, u32); 9] = [
        (0x20, 0x7F),
        (0xA0, 0x24F),
        (0x300, 0x36F),
        (0x370, 0x4FF),
        (0x1100, 0x11FF),
        (0x2000, 0x206F),
        (0x3000, 0x33FF),
        (0xE0000, 0xE01EF),
        (0x10FFF0, 0x10FFFF),
    ];
    let mut rng = TestRng(0x5EED_0F4A_3E00);
    for _ in 0..20_000 {
        let len = rng.below(30);
        let name: String = (0..len)
            .filter_map(|_| {
                let (lo, hi) = RANGES[rng.below(RANGES.len())];
                char::from_u32(lo + rng.below((hi - lo + 1) as usize) as u32)
            })
            .collect();
        if let Ok(key) = admit_name(&name, |_| None) {
            assert_eq!(key, name_key(&name));
            assert!(!key.is_empty(), "{name:?}");
        }
    }
}

#[test]
fn reserved_keys_are_as_documented() {
    let hex = |s: &str| -> Vec<String> { s.chars().map(|c| format!("{:04X}", c as u32)).collect() };
    let documented = [
        ("admin", "0061 0064 0072 006E 0069 006E"),
        ("server", "0073 0065 0072 0076 0065 0072"),
        ("system", "0073 0079 0073 0074 0065 0072 006E"),
        ("管理员", "7BA1 7406 5458"),
        ("管理員", "7BA1 7406 54E1"),
        ("系统", "7CFB 7EDF"),
        ("系統", "7CFB 7D71"),
        ("服务器", "670D 52A1 5668"),
        ("服務器", "670D 52D9 5668"),
        ("伺服器", "4F3A 670D 5668"),
    ];
    assert_eq!(documented.map(|(w, _)| w), RESERVED_NAMES);
    for (word, key) in documented {
        assert_eq!(hex(&name_key(word)).join(" "), key, "{word}");
    }
}
