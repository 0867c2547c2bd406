//! Why the client ends or a name is refused, in the user's language: the
//! last line of a session that the user did not end ([`Fatal`]), the server's
//! refusals, and which rule an invalid name breaks.

use crate::client::lang::{t, tr, Lang, Wording};
use crate::client::render::escape;
use crate::protocol::sealed::{ByeReason, NameRule, Refusal};
use crate::protocol::InvalidName;

/// Why the client ends, when the user did not ask (the line after `chat-client: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal<'a> {
    /// The server ended the session (BYE while not leaving), with its text
    /// (may be empty) and how many events it could not send first.
    Bye {
        reason: ByeReason,
        text: &'a str,
        missed: u32,
    },
    /// No reconnect succeeded within `--reconnect-timeout`.
    LostContact { server: &'a str },
    /// No answer to the login.
    NoAnswer { server: &'a str },
    /// The login was answered with ICMP port unreachable.
    ConnectionRefused { server: &'a str },
    /// The name was refused at the login, or again at a reconnect.
    CannotJoin {
        name: &'a str,
        reason: &'a str,
        again: bool,
    },
    /// The receiver process ended without being asked (`how`: killed by a signal, or lost).
    ReceiverEnded { signal: Option<&'a str> },
    /// At the end, this many typed lines had not been delivered.
    NotDelivered { lines: usize },
}

/// A [`Fatal`] as a line (without `chat-client: `).
pub fn fatal_line(lang: Lang, f: &Fatal<'_>) -> String {
    match (lang.wording(), f) {
        (
            _,
            Fatal::Bye {
                reason,
                text,
                missed,
            },
        ) => {
            let mut line = bye_line(lang, *reason);
            if !text.is_empty() {
                line.push_str(": ");
                line.push_str(&escape(text));
            }
            if *missed > 0 {
                line.push_str(&match lang.wording() {
                    Wording::En => format!(" ({missed} messages not received)"),
                    Wording::Zh => tr(lang, " (有 {0} 条消息没有收到)", &[missed]),
                });
            }
            line
        }
        (Wording::En, Fatal::LostContact { server }) => {
            format!("lost contact with the server at {server}")
        }
        (Wording::Zh, Fatal::LostContact { server }) => {
            tr(lang, "与服务器 {0} 失去联系", &[server])
        }
        (Wording::En, Fatal::NoAnswer { server }) => {
            format!("no answer from chat server at {server}")
        }
        (Wording::Zh, Fatal::NoAnswer { server }) => tr(lang, "聊天服务器 {0} 没有回应", &[server]),
        (Wording::En, Fatal::ConnectionRefused { server }) => {
            format!("connection refused: is chat-server running on {server}?")
        }
        (Wording::Zh, Fatal::ConnectionRefused { server }) => {
            tr(lang, "连接被拒绝: {0} 上运行着 chat-server 吗?", &[server])
        }
        (
            Wording::En,
            Fatal::CannotJoin {
                name,
                reason,
                again,
            },
        ) => format!(
            "cannot join as '{}'{}: {reason}",
            escape(name),
            if *again { " again" } else { "" }
        ),
        (
            Wording::Zh,
            Fatal::CannotJoin {
                name,
                reason,
                again,
            },
        ) => tr(
            lang,
            if *again {
                "无法再次以 '{0}' 加入: {1}"
            } else {
                "无法以 '{0}' 加入: {1}"
            },
            &[&escape(name), reason],
        ),
        (Wording::En, Fatal::ReceiverEnded { signal: Some(sig) }) => {
            format!("the receiver process was killed by {sig}")
        }
        (Wording::En, Fatal::ReceiverEnded { signal: None }) => {
            "the receiver process was lost".into()
        }
        (Wording::Zh, Fatal::ReceiverEnded { signal: Some(sig) }) => {
            tr(lang, "接收进程被 {0} 杀死", &[sig])
        }
        (Wording::Zh, Fatal::ReceiverEnded { signal: None }) => {
            t(lang, "接收进程丢失").into_owned()
        }
        (Wording::En, Fatal::NotDelivered { lines: 1 }) => "1 line was not delivered".into(),
        (Wording::En, Fatal::NotDelivered { lines }) => {
            format!("{lines} lines were not delivered")
        }
        (Wording::Zh, Fatal::NotDelivered { lines }) => tr(lang, "有 {0} 行没有送达", &[lines]),
    }
}

/// Why the server ended the session (BYE), without its text.
fn bye_line(lang: Lang, reason: ByeReason) -> String {
    if lang == Lang::En {
        return match reason {
            ByeReason::Left => "the server ended the session",
            ByeReason::Removed => "you were removed by the admin",
            ByeReason::Closing => "the chat room is closing",
            ByeReason::Restarting => "the chat server is restarting",
            ByeReason::Replaced => "this session was resumed by another client",
        }
        .into();
    }
    t(
        lang,
        match reason {
            ByeReason::Left => "服务器结束了会话",
            ByeReason::Removed => "你被管理员移出了聊天室",
            ByeReason::Closing => "聊天室正在关闭",
            ByeReason::Restarting => "聊天服务器正在重启",
            ByeReason::Replaced => "这个会话已被另一个客户端接管",
        },
    )
    .into_owned()
}

/// Why the server refused a name (or a resume), in the user's language:
/// with the name it looks like, the rule it breaks, or the address limit.
pub fn refusal(lang: Lang, name: &str, r: &Refusal<'_>) -> String {
    let en = lang == Lang::En;
    match *r {
        Refusal::Taken { like } if like == name => taken(lang),
        Refusal::Taken { like } if en => format!("{}: looks like '{}'", taken(lang), escape(like)),
        Refusal::Taken { like } => tr(lang, "{0}: 与 '{1}' 太像", &[&taken(lang), &escape(like)]),
        Refusal::Reserved { like } if en => format!("name reserved: looks like '{}'", escape(like)),
        Refusal::Reserved { like } => tr(lang, "名字是保留的: 与 '{0}' 太像", &[&escape(like)]),
        Refusal::InvalidName(rule) => invalid_rule(lang, rule),
        Refusal::RoomFull if en => "room full".into(),
        Refusal::TooManyFromAddress if en => "too many members from your address".into(),
        Refusal::TooManyJoins if en => "too many joins from your address in the last minute".into(),
        Refusal::BadTicket if en => "the server did not accept the resume ticket".into(),
        Refusal::RoomFull => t(lang, "聊天室已满").into_owned(),
        Refusal::TooManyFromAddress => t(lang, "来自你的地址的成员太多").into_owned(),
        Refusal::TooManyJoins => t(lang, "最近一分钟内来自你的地址的加入太多").into_owned(),
        Refusal::BadTicket => t(lang, "服务器不接受重连凭据").into_owned(),
    }
}

fn taken(lang: Lang) -> String {
    match lang {
        Lang::En => "name taken".into(),
        _ => t(lang, "名字已被占用").into_owned(),
    }
}

fn invalid(lang: Lang) -> String {
    match lang {
        Lang::En => "invalid name".into(),
        _ => t(lang, "名字不合法").into_owned(),
    }
}

/// REFUSED 2: the rule of PROTOCOL.md "Name rules" the name breaks.
fn invalid_rule(lang: Lang, rule: NameRule) -> String {
    use crate::protocol::{MAX_NAME_BYTES, MAX_NAME_CHARS, MAX_NAME_MARKS};
    let detail = match (lang.wording(), rule) {
        (Wording::En, NameRule::Length) => {
            format!("not 1 to {MAX_NAME_CHARS} characters and at most {MAX_NAME_BYTES} bytes")
        }
        (Wording::Zh, NameRule::Length) => tr(
            lang,
            "必须是 1 到 {0} 个字符, 最多 {1} 字节",
            &[&MAX_NAME_CHARS, &MAX_NAME_BYTES],
        ),
        (Wording::En, NameRule::Invisible) => "an invisible character".into(),
        (Wording::Zh, NameRule::Invisible) => t(lang, "不能有看不见的字符").into_owned(),
        (Wording::En, NameRule::Character) => {
            "a character that is not allowed (letters, digits, _ - . only)".into()
        }
        (Wording::Zh, NameRule::Character) => {
            t(lang, "有不允许的字符 (只能用字母、数字和 _ - .)").into_owned()
        }
        (Wording::En, NameRule::TooManyMarks) => {
            format!("more than {MAX_NAME_MARKS} combining marks on one letter")
        }
        (Wording::Zh, NameRule::TooManyMarks) => {
            tr(lang, "一个字母上超过 {0} 个组合符号", &[&MAX_NAME_MARKS])
        }
        (Wording::En, NameRule::NotInProfile) => "a character that is not allowed in names".into(),
        (Wording::Zh, NameRule::NotInProfile) => t(lang, "有名字里不允许的字符").into_owned(),
        (Wording::En, NameRule::MixedScripts) => {
            "it mixes scripts (letters of several alphabets)".into()
        }
        (Wording::Zh, NameRule::MixedScripts) => t(lang, "不能混用多种文字").into_owned(),
    };
    format!("{}: {detail}", invalid(lang))
}

/// Why a name is invalid, in the user's language: `invalid name: spaces are
/// not allowed`, with the exact character (checked before sending).
pub fn invalid_name(lang: Lang, name: &str, why: InvalidName) -> String {
    use crate::protocol::{MAX_NAME_BYTES, MAX_NAME_CHARS, MAX_NAME_MARKS};
    let chars = name.chars().count();
    let shown = |c: char| escape(&c.to_string()).into_owned();
    let detail = match (lang.wording(), why) {
        (_, InvalidName::Length) if chars == 0 => t(lang, "名字是空的").into_owned(),
        (Wording::En, InvalidName::Length) if chars > MAX_NAME_CHARS => {
            format!("more than {MAX_NAME_CHARS} characters")
        }
        (Wording::En, InvalidName::Length) => format!("more than {MAX_NAME_BYTES} bytes"),
        (Wording::Zh, InvalidName::Length) if chars > MAX_NAME_CHARS => {
            tr(lang, "超过 {0} 个字符", &[&MAX_NAME_CHARS])
        }
        (Wording::Zh, InvalidName::Length) => tr(lang, "超过 {0} 字节", &[&MAX_NAME_BYTES]),
        (Wording::En, InvalidName::Character(c)) if c.is_whitespace() => {
            "spaces are not allowed".into()
        }
        (Wording::Zh, InvalidName::Character(c)) if c.is_whitespace() => {
            t(lang, "不能有空格").into_owned()
        }
        (Wording::En, InvalidName::Character(c)) => format!(
            "'{}' is not allowed (letters, digits, _ - . only)",
            shown(c)
        ),
        (Wording::Zh, InvalidName::Character(c)) => tr(
            lang,
            "不能有 '{0}' (只能用字母、数字和 _ - .)",
            &[&shown(c)],
        ),
        (Wording::En, InvalidName::Invisible(c)) => {
            format!("an invisible character (U+{:04X})", c as u32)
        }
        (Wording::Zh, InvalidName::Invisible(c)) => tr(
            lang,
            "不能有看不见的字符 (U+{0})",
            &[&format!("{:04X}", c as u32)],
        ),
        (Wording::En, InvalidName::MarkFirst) => "it starts with a combining mark".into(),
        (Wording::Zh, InvalidName::MarkFirst) => t(lang, "不能以组合符号开头").into_owned(),
        (Wording::En, InvalidName::TooManyMarks) => {
            format!("more than {MAX_NAME_MARKS} combining marks on one letter")
        }
        (Wording::Zh, InvalidName::TooManyMarks) => {
            tr(lang, "一个字母上超过 {0} 个组合符号", &[&MAX_NAME_MARKS])
        }
        (Wording::En, InvalidName::NotInProfile(c)) => {
            format!("'{}' is not allowed in names", shown(c))
        }
        (Wording::Zh, InvalidName::NotInProfile(c)) => tr(lang, "名字里不能有 '{0}'", &[&shown(c)]),
        (Wording::En, InvalidName::MixedScripts) => {
            "it mixes scripts (letters of several alphabets)".into()
        }
        (Wording::Zh, InvalidName::MixedScripts) => t(lang, "不能混用多种文字").into_owned(),
    };
    format!("{}: {detail}", invalid(lang))
}
