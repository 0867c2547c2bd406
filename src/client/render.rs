//! What the user sees: escaping of remote text, the wording of every line in
//! English and Chinese, the local `HH:MM` time, and the visible window of the
//! input line. Pure functions, except [`local_hhmm`] which reads the clock.

pub use crate::client::lang::Lang;
use crate::client::lang::{t, tr, Wording};
pub use crate::client::notice::{notice_line, Notice, Undelivered, WHO_SHOWN};
use crate::protocol::sealed::{Event, LeftReason};
use std::borrow::Cow;
use std::fmt::Write as _;
use unicode_width::UnicodeWidthChar;

/// Must `c` be shown as an escape rather than sent to the terminal? The
/// protocol's rule: exactly the code points a text may never hold.
pub use crate::protocol::must_escape;

/// Remote text made harmless: every character of [`must_escape`] becomes a
/// visible escape (`\x1b`, `\x7f`, `\u0085`, `\u202e`), so no message can move
/// the cursor, clear the screen, set the title or the clipboard, or overwrite
/// a line with `\r`.
pub fn escape(s: &str) -> Cow<'_, str> {
    if !s.chars().any(must_escape) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !must_escape(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            let _ = write!(out, "\\x{:02x}", c as u32);
        } else {
            let _ = write!(out, "\\u{:04x}", c as u32);
        }
    }
    Cow::Owned(out)
}

/// One event as a line (without the time), every remote string escaped.
pub fn event_line(lang: Lang, event: &Event<'_>) -> String {
    match (lang.wording(), *event) {
        (Wording::En, Event::Joined { name }) => format!("* {} joined", escape(name)),
        (Wording::Zh, Event::Joined { name }) => tr(lang, "{0} 进入了聊天室", &[&escape(name)]),
        (Wording::En, Event::Left { reason, name }) => {
            let name = escape(name);
            match reason {
                LeftReason::Left => format!("* {name} left"),
                LeftReason::TimedOut => format!("* {name} left (timed out)"),
                LeftReason::Removed => format!("* {name} was removed"),
            }
        }
        (Wording::Zh, Event::Left { reason, name }) => {
            let name = escape(name);
            match reason {
                LeftReason::Left => tr(lang, "{0} 退出了聊天室", &[&name]),
                LeftReason::TimedOut => tr(lang, "{0} 退出了聊天室 (超时)", &[&name]),
                LeftReason::Removed => tr(lang, "{0} 被管理员移出了聊天室", &[&name]),
            }
        }
        (_, Event::Said(l)) => said(lang, l.from, l.text),
        (_, Event::Me(l)) => action(l.from, l.text),
        (Wording::En, Event::PrivateFrom { from, text, .. }) => {
            format!("[{} -> you] {}", escape(from), escape(text))
        }
        (Wording::Zh, Event::PrivateFrom { from, text, .. }) => {
            tr(lang, "[{0} -> 你] {1}", &[&escape(from), &escape(text)])
        }
        (Wording::En, Event::Admin { text, .. }) => format!("[admin] {}", escape(text)),
        (Wording::Zh, Event::Admin { text, .. }) => tr(lang, "[管理员] 说: {0}", &[&escape(text)]),
        (_, Event::Gap { count, .. }) => notice_line(lang, &Notice::Lost(count.into())),
    }
}

/// A member's line: `alice: hi`.
fn said(lang: Lang, from: &str, text: &str) -> String {
    match lang.wording() {
        Wording::En => format!("{}: {}", escape(from), escape(text)),
        Wording::Zh => tr(lang, "{0} 说: {1}", &[&escape(from), &escape(text)]),
    }
}

/// A member's action (`/me waves`): `* alice waves`.
fn action(from: &str, text: &str) -> String {
    format!("* {} {}", escape(from), escape(text))
}

/// The user's own message, echoed on a terminal (where typing is not echoed).
pub fn own_said(lang: Lang, me: &str, text: &str) -> String {
    said(lang, me, text)
}

/// The user's own action, echoed on a terminal.
pub fn own_action(me: &str, text: &str) -> String {
    action(me, text)
}

/// The user's own private message, echoed on a terminal.
pub fn own_private(lang: Lang, to: &str, text: &str) -> String {
    match lang.wording() {
        Wording::En => format!("[you -> {}] {}", escape(to), escape(text)),
        Wording::Zh => tr(lang, "[你 -> {0}] {1}", &[&escape(to), &escape(text)]),
    }
}

/// The prompt asking for a name (only on a terminal).
pub fn name_prompt(lang: Lang) -> Cow<'static, str> {
    match lang {
        Lang::En => Cow::Borrowed("name: "),
        _ => t(lang, "请输入姓名: "),
    }
}

/// The prompt in front of the input line on a terminal.
pub fn input_prompt(lang: Lang) -> Cow<'static, str> {
    match lang {
        Lang::En => Cow::Borrowed("> "),
        _ => t(lang, "发言: "),
    }
}

/// `HH:MM ` prefixed to `line`.
pub fn stamped(hhmm: &str, line: &str) -> String {
    format!("{hhmm} {line}")
}

/// The local time as `HH:MM`.
pub fn local_hhmm() -> String {
    let now = std::time::SystemTime::now();
    local_tm(now).map_or_else(
        || "--:--".to_string(),
        |tm| format!("{:02}:{:02}", tm.tm_hour, tm.tm_min),
    )
}

/// The stamp of a line said earlier (history, catch-up): its own local time
/// in brackets, `[HH:MM]`, with the date when it was another day than today,
/// `[2026-11-30 14:03]`.
pub fn earlier_stamp(time_ms: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_millis(time_ms);
    let (Some(then), Some(today)) = (local_tm(at), local_tm(std::time::SystemTime::now())) else {
        return "[--:--]".to_string();
    };
    if (then.tm_year, then.tm_yday) == (today.tm_year, today.tm_yday) {
        format!("[{:02}:{:02}]", then.tm_hour, then.tm_min)
    } else {
        format!(
            "[{}-{:02}-{:02} {:02}:{:02}]",
            then.tm_year + 1900,
            then.tm_mon + 1,
            then.tm_mday,
            then.tm_hour,
            then.tm_min
        )
    }
}

/// The local time `after` from now, as `HH:MM:SS`.
pub fn local_hhmmss_after(after: std::time::Duration) -> String {
    let at = std::time::SystemTime::now() + after;
    local_tm(at).map_or_else(
        || "--:--:--".to_string(),
        |tm| format!("{:02}:{:02}:{:02}", tm.tm_hour, tm.tm_min, tm.tm_sec),
    )
}

/// The broken-down local time of `at`.
fn local_tm(at: std::time::SystemTime) -> Option<nix::libc::tm> {
    let secs = at
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as nix::libc::time_t;
    // SAFETY: `tm` is plain data (integers and a pointer that may be null),
    // for which all zero bytes are a valid value.
    let mut tm: nix::libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: localtime_r reads one time_t and writes one tm through pointers
    // to locals that live for the call; it is the thread-safe variant.
    if unsafe { nix::libc::localtime_r(&secs, &mut tm) }.is_null() {
        return None;
    }
    Some(tm)
}

/// Display width of a character on a terminal (controls never reach it: 0).
pub fn char_width(c: char) -> usize {
    c.width().unwrap_or(0)
}

/// Display width of a string.
pub fn str_width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// The part of an input line shown in `cols` columns after a prompt of width
/// `prompt_width`, scrolled horizontally so the cursor (a char index) stays
/// visible. Returns the visible text and the cursor's column within it.
///
/// The line always fits one row (one column is kept free for the cursor), so
/// redrawing it never touches the rows above.
pub fn input_view(
    line: &[char],
    cursor: usize,
    prompt_width: usize,
    cols: usize,
) -> (String, usize) {
    let avail = cols.saturating_sub(prompt_width + 1).max(1);
    let cursor = cursor.min(line.len());
    // Start as far left as possible while the cursor stays visible: walk
    // left from the cursor (each character once, so a pasted paragraph of
    // thousands of characters is drawn as fast as a word).
    let mut start = cursor;
    let mut col = 0;
    while start > 0 && col + char_width(line[start - 1]) < avail {
        start -= 1;
        col += char_width(line[start]);
    }
    let mut text = String::new();
    let mut used = 0;
    for &c in &line[start..] {
        let w = char_width(c);
        if used + w > avail {
            break;
        }
        text.push(c);
        used += w;
    }
    (text, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::sealed::{Line, LineFlags, MessageId};

    fn line<'a>(from: &'a str, text: &'a str) -> Line<'a> {
        Line {
            room_seq: 1,
            time_ms: 0,
            flags: LineFlags::NONE,
            id: MessageId {
                client_id: 1,
                seq: 1,
            },
            from,
            text,
        }
    }

    #[test]
    fn escapes_every_terminal_control() {
        assert_eq!(escape("hello 世界"), "hello 世界");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("a\x1b[2Jb"), "a\\x1b[2Jb");
        assert_eq!(escape("\x1b]52;c;aGk=\x07"), "\\x1b]52;c;aGk=\\x07");
        assert_eq!(escape("x\ry"), "x\\x0dy");
        assert_eq!(escape("x\ny\t"), "x\\x0ay\\x09");
        assert_eq!(escape("del\x7f"), "del\\x7f");
        assert_eq!(escape("c1\u{9b}31m"), "c1\\u009b31m");
        assert_eq!(escape("abc\u{202e}def"), "abc\\u202edef");
        assert_eq!(escape("\u{2066}\u{061c}\u{200f}"), "\\u2066\\u061c\\u200f");
        assert_eq!(escape("a\u{2028}b"), "a\\u2028b");
        for c in (0u32..0x20).chain(0x7f..0xa0) {
            let s = char::from_u32(c).unwrap().to_string();
            assert!(!escape(&s).chars().any(|c| c.is_control()), "{c:#x}");
        }
    }

    #[test]
    fn events_in_english() {
        let l = Lang::En;
        assert_eq!(
            event_line(l, &Event::Joined { name: "bob" }),
            "* bob joined"
        );
        let left = |reason| Event::Left {
            reason,
            name: "bob",
        };
        assert_eq!(event_line(l, &left(LeftReason::Left)), "* bob left");
        assert_eq!(
            event_line(l, &left(LeftReason::TimedOut)),
            "* bob left (timed out)"
        );
        assert_eq!(
            event_line(l, &left(LeftReason::Removed)),
            "* bob was removed"
        );
        assert_eq!(
            event_line(l, &Event::Said(line("alice", "hi"))),
            "alice: hi"
        );
        assert_eq!(
            event_line(
                l,
                &Event::PrivateFrom {
                    time_ms: 0,
                    id: MessageId {
                        client_id: 2,
                        seq: 1
                    },
                    from: "alice",
                    text: "psst"
                }
            ),
            "[alice -> you] psst"
        );
        assert_eq!(
            event_line(
                l,
                &Event::Admin {
                    room_seq: 1,
                    time_ms: 0,
                    flags: LineFlags::NONE,
                    text: "hello"
                }
            ),
            "[admin] hello"
        );
        assert_eq!(
            event_line(l, &Event::Said(line("e\x1bvil", "\x1b[2J"))),
            "e\\x1bvil: \\x1b[2J"
        );
        assert_eq!(
            event_line(l, &Event::Me(line("alice", "waves"))),
            "* alice waves"
        );
    }

    #[test]
    fn events_in_chinese_use_the_seed_wording() {
        let l = Lang::Zh;
        assert_eq!(
            event_line(l, &Event::Joined { name: "alice" }),
            "alice 进入了聊天室"
        );
        assert_eq!(
            event_line(l, &Event::Said(line("alice", "hi"))),
            "alice 说: hi"
        );
        assert_eq!(
            event_line(
                l,
                &Event::Admin {
                    room_seq: 1,
                    time_ms: 0,
                    flags: LineFlags::NONE,
                    text: "维护"
                }
            ),
            "[管理员] 说: 维护"
        );
        assert_eq!(
            event_line(
                l,
                &Event::Left {
                    reason: LeftReason::Left,
                    name: "alice"
                }
            ),
            "alice 退出了聊天室"
        );
    }

    #[test]
    fn hhmm_shape() {
        let t = local_hhmm();
        assert_eq!(t.len(), 5);
        assert_eq!(&t[2..3], ":");
    }

    #[test]
    fn earlier_lines_have_their_time_and_another_day_its_date() {
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as u64;
        let today = earlier_stamp(now_ms);
        assert!(
            today.len() == 7 && today.starts_with('[') && today.ends_with(']'),
            "{today}"
        );
        let long_ago = earlier_stamp(1_764_547_200_000); // 2025-12-01 00:00 UTC
        assert_eq!(long_ago.len(), "[2025-12-01 00:00]".len(), "{long_ago}");
        assert!(long_ago.starts_with("[2025-1"), "{long_ago}");
    }

    #[test]
    fn input_view_scrolls_with_wide_characters() {
        let line: Vec<char> = "hello".chars().collect();
        assert_eq!(input_view(&line, 5, 2, 80), ("hello".to_string(), 5));
        assert_eq!(input_view(&line, 2, 2, 80), ("hello".to_string(), 2));
        // 2-column characters: cursor column counts widths.
        let wide: Vec<char> = "你好世界".chars().collect();
        assert_eq!(input_view(&wide, 2, 2, 80), ("你好世界".to_string(), 4));
        // Narrow terminal: prompt 2 + 1 free column leaves 7 columns.
        let long: Vec<char> = "abcdefghijkl".chars().collect();
        let (text, col) = input_view(&long, 12, 2, 10);
        assert_eq!((text.as_str(), col), ("ghijkl", 6));
        let (text, col) = input_view(&long, 0, 2, 10);
        assert_eq!((text.as_str(), col), ("abcdefg", 0));
        // A long line (a pasted paragraph) is drawn in linear time.
        let long: Vec<char> = "x".repeat(200_000).chars().collect();
        let (text, col) = input_view(&long, 200_000, 2, 80);
        assert_eq!((text.len(), col), (76, 76));
        // Wide characters never split at the right edge.
        let (text, _) = input_view(&wide, 0, 2, 8); // 5 columns available
        assert_eq!(text, "你好");
        let (text, col) = input_view(&wide, 4, 2, 8);
        assert!(str_width(&text) <= 5 && col <= 4, "{text} {col}");
        assert!(text.ends_with('界'));
    }
}
