//! The name and text rules through the real chat-server: a name that looks
//! like a joined member's, or like the admin's, is refused with the right
//! reason code; the same name is welcomed in an empty room; text that could
//! break a screen is rejected, emoji sequences pass. Helpers:
//! tests/common/server.rs.

#[path = "common/server.rs"]
mod server_harness;

use server_harness::*;
use udpchat::protocol::{RefuseReason, RejectReason};

#[test]
fn lookalikes_of_a_joined_member_are_refused() {
    let s = Server::start(&[]);
    let _alice = Client::join(s.addr, "alice");
    use RefuseReason::{InvalidName, Reserved, Taken};
    let marks = format!("a{}", "\u{0301}".repeat(23));
    let answers = [
        ("alice\u{034F}", Taken),
        ("alice\u{FE0F}", Taken),
        ("alice\u{E0100}", Taken),
        ("alice\u{180B}", Taken),
        ("alice\u{3164}", Taken),
        ("alice\u{115F}", Taken),
        ("\u{0430}lice", Taken),
        ("\u{0251}lice", Taken),
        ("al\u{0131}ce", Taken),
        ("a1ice", Taken),
        ("ＡＬＩＣＥ", Taken),
        ("\u{0430}dmin", Reserved),
        ("\u{03B1}dmin", Reserved),
        ("adrnin", Reserved),
        ("管理員", Reserved),
        ("系統", Reserved),
        ("伺服器", Reserved),
        ("\u{3164}", InvalidName),
        ("ᴀᴅᴍɪɴ", InvalidName),
        (&marks, InvalidName),
    ];
    for (name, reason) in answers {
        let mut c = Client::new(s.addr, name);
        assert_eq!(c.try_join(0), Err(reason), "{name:?}");
    }
}

#[test]
fn a_lookalike_is_a_name_of_its_own_in_an_empty_room() {
    let s = Server::start(&[]);
    // Welcomed alone, so the refusal above comes from alice being there...
    let _first = Client::join(s.addr, "al\u{0131}ce");
    // ...and now alice looks like it.
    let mut alice = Client::new(s.addr, "alice");
    assert_eq!(alice.try_join(0), Err(RefuseReason::Taken));
}

#[test]
fn text_that_breaks_a_screen_is_rejected_and_emoji_pass() {
    let s = Server::start(&[]);
    let mut alice = Client::join(s.addr, "alice");
    let mut bob = Client::join(s.addr, "bob");
    assert_eq!(alice.event(), Ev::Joined("bob".into()));
    for text in [
        "a\u{2028}b",
        "\u{FEFF}hi",
        "a\u{E0061}\u{E0062}",
        "a\u{FDD0}",
        "a\u{0378}",
        &format!("a{}", "\u{0301}".repeat(9)),
    ] {
        let seq = alice.say(text);
        let answer = alice.expect(|g| matches!(g, Got::Ack(_) | Got::Reject(..)));
        assert_eq!(
            answer,
            Got::Reject(seq, RejectReason::InvalidText),
            "{text:?}"
        );
    }
    let flag = "\u{1F3F4}\u{E0067}\u{E0062}\u{E0073}\u{E0063}\u{E0074}\u{E007F}";
    let family = "\u{1F469}\u{200D}\u{1F469}\u{200D}\u{1F467}";
    for text in [flag, family, "\u{2764}\u{FE0F}", "می\u{200C}خواهم"] {
        alice.say_acked(text);
        assert_eq!(bob.event(), Ev::Said("alice".into(), text.into()));
    }
}
