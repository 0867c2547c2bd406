//! Why the client ends or a name is refused, in the user's language: the
//! last line of a session that the user did not end ([`Fatal`]), the server's
//! refusals, and which rule an invalid name breaks.

use crate::client::lang::{t, tr, Lang, Wording};
use crate::client::render::escape;
use crate::protocol::{ByeReason, InvalidName, RefuseReason};

/// Why the client ends, when the user did not ask (the line after `chat-client: `).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fatal<'a> {
    /// The server ended the session (BYE while not leaving).
    Bye(ByeReason),
    /// No word from the server for the session's timeout.
    LostContact { server: &'a str },
    /// No answer to the login.
    NoAnswer { server: &'a str },
    /// The login was answered with ICMP port unreachable.
    ConnectionRefused { server: &'a str },
    /// The name was refused at the login, or again at a re-join.
    CannotJoin {
        name: &'a str,
        reason: &'a str,
        again: bool,
    },
    /// The receiver process ended without being asked (`how`: killed by a signal, or lost).
    ReceiverEnded { signal: Option<&'a str> },
}

/// A [`Fatal`] as a line (without `chat-client: `).
pub fn fatal_line(lang: Lang, f: &Fatal<'_>) -> String {
    match (lang.wording(), f) {
        (Wording::En, Fatal::Bye(ByeReason::Left)) => "the server ended the session".into(),
        (Wording::En, Fatal::Bye(ByeReason::Kicked)) => "you were removed by the admin".into(),
        (Wording::En, Fatal::Bye(ByeReason::Shutdown)) => "the chat server is shutting down".into(),
        (Wording::Zh, Fatal::Bye(r)) => t(
            lang,
            match r {
                ByeReason::Left => "服务器结束了会话",
                ByeReason::Kicked => "你被管理员移出了聊天室",
                ByeReason::Shutdown => "聊天服务器正在关闭",
            },
        )
        .into_owned(),
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
            format!("the receiver process was killed by {sig}; leaving")
        }
        (Wording::En, Fatal::ReceiverEnded { signal: None }) => {
            "the receiver process was lost; leaving".into()
        }
        (Wording::Zh, Fatal::ReceiverEnded { signal: Some(sig) }) => {
            tr(lang, "接收进程被 {0} 杀死; 退出聊天室", &[sig])
        }
        (Wording::Zh, Fatal::ReceiverEnded { signal: None }) => {
            t(lang, "接收进程丢失; 退出聊天室").into_owned()
        }
    }
}

/// Why the server refused a name, in the user's language.
pub fn refusal(lang: Lang, r: RefuseReason) -> String {
    if lang == Lang::En {
        return r.to_string();
    }
    t(
        lang,
        match r {
            RefuseReason::Taken => "名字已被占用",
            RefuseReason::InvalidName => "名字不合法",
            RefuseReason::Reserved => "名字是保留的",
            RefuseReason::RoomFull => "聊天室已满",
        },
    )
    .into_owned()
}

/// Why a name is invalid, in the user's language: `invalid name: spaces are
/// not allowed`. `why` is the rule it breaks, when known.
pub fn invalid_name(lang: Lang, name: &str, why: Option<InvalidName>) -> String {
    use crate::protocol::{MAX_NAME_BYTES, MAX_NAME_CHARS, MAX_NAME_MARKS};
    let Some(why) = why else {
        return refusal(lang, RefuseReason::InvalidName);
    };
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
    format!("{}: {detail}", refusal(lang, RefuseReason::InvalidName))
}
