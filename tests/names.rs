//! The name and text rules through the real chat-server: a name that looks
//! like a joined member's, or like the admin's, is refused with the right
//! reason code and the name it looks like (REFUSED's `like`); the same name is welcomed in an empty room; text that could
//! break a screen is rejected, emoji sequences pass. Helpers:
//! tests/common/server.rs.

#[path = "common/server.rs"]
mod server_harness;

use server_harness::*;
use udpchat::protocol::sealed::RejectReason;

#[test]
fn lookalikes_of_a_joined_member_are_refused() {
    let s = Server::start(&[]);
    let _alice = Client::join(s.addr, "alice");
    // (reason, like): 1 taken, 3 reserved, 2 invalid (no `like`).
    let taken = |like: &str| (1, like.to_string());
    let reserved = |like: &str| (3, like.to_string());
    let invalid = (2, String::new());
    let marks = format!("a{}", "\u{0301}".repeat(23));
    let answers = [
        ("alice\u{034F}", taken("alice")),
        ("alice\u{FE0F}", taken("alice")),
        ("alice\u{E0100}", taken("alice")),
        ("alice\u{180B}", taken("alice")),
        ("alice\u{3164}", taken("alice")),
        ("alice\u{115F}", taken("alice")),
        ("\u{0430}lice", taken("alice")),
        ("\u{0251}lice", taken("alice")),
        ("al\u{0131}ce", taken("alice")),
        ("a1ice", taken("alice")),
        ("ＡＬＩＣＥ", taken("alice")),
        ("\u{0430}dmin", reserved("admin")),
        ("\u{03B1}dmin", reserved("admin")),
        ("adrnin", reserved("admin")),
        ("管理員", reserved("管理員")),
        ("系統", reserved("系統")),
        ("伺服器", reserved("伺服器")),
        ("\u{3164}", invalid.clone()),
        ("ᴀᴅᴍɪɴ", invalid.clone()),
        (&marks, invalid.clone()),
    ];
    // One session asks for every name in turn (a refused session may ask
    // again; a half-open session per name would reach the per-IP cap).
    let mut c = Client::new(s.addr, answers[0].0);
    for (k, (name, (reason, like))) in answers.iter().enumerate() {
        let answer = if k == 0 {
            c.try_join()
        } else {
            c.try_join_as(name)
        };
        match answer {
            Err(Got::Refused(r, detail, l)) => {
                assert_eq!((r, l.as_str()), (*reason, like.as_str()), "{name:?}");
                assert_eq!(detail != 0, *reason == 2, "{name:?}: detail {detail}");
            }
            other => panic!("{name:?}: {other:?}"),
        }
    }
}

#[test]
fn a_lookalike_is_a_name_of_its_own_in_an_empty_room() {
    let s = Server::start(&[]);
    // Welcomed alone, so the refusal above comes from alice being there...
    let _first = Client::join(s.addr, "al\u{0131}ce");
    // ...and now alice looks like it.
    let mut alice = Client::new(s.addr, "alice");
    assert_eq!(
        alice.try_join(),
        Err(Got::Refused(1, 0, "al\u{0131}ce".into()))
    );
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
