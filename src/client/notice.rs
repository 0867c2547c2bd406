//! The client's own lines (notices) in the user's language: the welcome,
//! losses, what was not delivered, the member list, reconnects, history,
//! help and usage.

use crate::client::lang::{t, tr, Lang, Wording};
use crate::client::render::escape;
use crate::protocol::sealed::RejectReason;
use std::fmt::Write as _;

/// The client's own notices. Every one is a line that no member can produce:
/// it starts with `-- ` or `(`, and names hold neither spaces nor brackets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice<'a> {
    Welcome {
        name: &'a str,
        members: u32,
    },
    Lost(u64),
    NotDelivered {
        text: &'a str,
        why: Undelivered,
    },
    Members {
        total: u32,
        names: &'a [String],
    },
    WhoNoAnswer,
    /// Contact is lost; the next attempt to come back starts at this local
    /// time (`HH:MM:SS`).
    Reconnecting(&'a str),
    /// A member again after a reconnect.
    Rejoined,
    /// The catch-up after a reconnect begins: this many messages (when known).
    WhileAway(Option<u64>),
    /// `/history` on a server that keeps none.
    NoHistory,
    /// `/history` found nothing earlier.
    NoEarlier,
    /// After the welcome: the room keeps its history (WELCOME's bit 0).
    KeepsHistory,
    /// `/history` had no answer.
    HistoryNoAnswer,
    YouLeft,
    Help,
    UnknownCommand(&'a str),
    Usage(&'a str),
    /// The first login is waiting for the server at this address.
    Connecting(&'a str),
    /// Tab: the names that fit.
    Candidates(&'a [String]),
    /// A long line goes out in this many parts.
    SendingParts(usize),
}

/// Why a message was not delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Undelivered {
    Refused(RejectReason),
    NoAnswer,
    /// Not sent: more lines were typed while reconnecting than are kept.
    Reconnecting,
}

/// How many member names `/who` shows before "… and N more".
pub const WHO_SHOWN: usize = 200;

/// A notice as a line (without the time).
pub fn notice_line(lang: Lang, n: &Notice<'_>) -> String {
    use Wording::*;
    match (lang.wording(), n) {
        (En, Notice::Welcome { name, members }) => format!(
            "-- welcome, {}: {members} in the room (type /help for commands)",
            escape(name)
        ),
        (Zh, Notice::Welcome { name, members }) => tr(
            lang,
            "-- 欢迎 {0}, 聊天室里有 {1} 人 (输入 /help 查看命令)",
            &[&escape(name), members],
        ),
        (En, Notice::Lost(1)) => "(1 message lost)".to_string(),
        (En, Notice::Lost(k)) => format!("({k} messages lost)"),
        (Zh, Notice::Lost(k)) => tr(lang, "(丢失了 {0} 条消息)", &[k]),
        (_, Notice::NotDelivered { text, why }) => {
            let why = match (lang.wording(), why) {
                (_, Undelivered::Refused(RejectReason::TooOld)) => {
                    return match lang.wording() {
                        En => format!("-- may not have been delivered: {}", escape(text)),
                        Zh => tr(lang, "-- 可能没有送达: {0}", &[&escape(text)]),
                    }
                }
                (En, Undelivered::Refused(RejectReason::RateLimited)) => "rate limited".into(),
                (En, Undelivered::Refused(RejectReason::InvalidText)) => "invalid text".into(),
                (En, Undelivered::Refused(RejectReason::NoSuchMember)) => "no such member".into(),
                (En, Undelivered::Refused(RejectReason::NotSupported)) => {
                    "the server does not support /me".into()
                }
                (En, Undelivered::NoAnswer) => "no answer from the server".to_string(),
                (_, Undelivered::Reconnecting) => {
                    return match lang.wording() {
                        En => format!("-- not sent (reconnecting): {}", escape(text)),
                        Zh => tr(lang, "-- 未发送 (正在重新连接): {0}", &[&escape(text)]),
                    }
                }
                (Zh, Undelivered::Refused(RejectReason::RateLimited)) => t(lang, "发送太快").into(),
                (Zh, Undelivered::Refused(RejectReason::InvalidText)) => {
                    t(lang, "内容不合法").into()
                }
                (Zh, Undelivered::Refused(RejectReason::NoSuchMember)) => {
                    t(lang, "没有这个成员").into()
                }
                (Zh, Undelivered::Refused(RejectReason::NotSupported)) => {
                    t(lang, "服务器不支持 /me").into()
                }
                (Zh, Undelivered::NoAnswer) => t(lang, "服务器没有回应").into(),
            };
            match lang.wording() {
                En => format!("-- not delivered ({why}): {}", escape(text)),
                Zh => tr(lang, "-- 未送达 ({0}): {1}", &[&why, &escape(text)]),
            }
        }
        (_, Notice::Members { total, names }) => {
            let shown = names.len().min(WHO_SHOWN);
            let mut list = names[..shown]
                .iter()
                .map(|n| escape(n).into_owned())
                .collect::<Vec<_>>()
                .join(", ");
            let more = (*total as usize).saturating_sub(shown);
            match lang.wording() {
                En => {
                    if more > 0 {
                        let _ = write!(list, " … and {more} more");
                    }
                    format!("-- {total} in the room: {list}")
                }
                Zh => {
                    if more > 0 {
                        list.push_str(&tr(lang, " … 还有 {0} 人", &[&more]));
                    }
                    tr(lang, "-- 聊天室里有 {0} 人: {1}", &[total, &list])
                }
            }
        }
        (En, Notice::WhoNoAnswer) => "-- no answer to /who".to_string(),
        (Zh, Notice::WhoNoAnswer) => t(lang, "-- /who 没有回应").into(),
        (En, Notice::Reconnecting(at)) => format!("-- reconnecting… (next attempt at {at})"),
        (Zh, Notice::Reconnecting(at)) => tr(lang, "-- 正在重新连接… (下次尝试: {0})", &[at]),
        (En, Notice::Rejoined) => "-- back in the room".to_string(),
        (Zh, Notice::Rejoined) => t(lang, "-- 已回到聊天室").into(),
        (En, Notice::WhileAway(Some(1))) => "-- 1 message while you were away".to_string(),
        (En, Notice::WhileAway(Some(n))) => format!("-- {n} messages while you were away"),
        (En, Notice::WhileAway(None)) => "-- while you were away:".to_string(),
        (Zh, Notice::WhileAway(Some(n))) => tr(lang, "-- 你离开期间有 {0} 条消息", &[n]),
        (Zh, Notice::WhileAway(None)) => t(lang, "-- 你离开期间:").into(),
        (En, Notice::NoHistory) => "-- this server does not serve earlier messages".to_string(),
        (Zh, Notice::NoHistory) => t(lang, "-- 这个服务器不提供更早的消息").into(),
        (En, Notice::KeepsHistory) => {
            "-- this room keeps its history: /history shows earlier messages".to_string()
        }
        (Zh, Notice::KeepsHistory) => t(lang, "-- 这个聊天室保存历史: /history 显示更早的消息").into(),
        (En, Notice::NoEarlier) => "-- no earlier messages".to_string(),
        (Zh, Notice::NoEarlier) => t(lang, "-- 没有更早的消息").into(),
        (En, Notice::HistoryNoAnswer) => "-- no answer to /history".to_string(),
        (Zh, Notice::HistoryNoAnswer) => t(lang, "-- /history 没有回应").into(),
        (En, Notice::YouLeft) => "-- you left the room".to_string(),
        (Zh, Notice::YouLeft) => t(lang, "-- 你退出了聊天室").into(),
        (En, Notice::Help) => "-- type a line to say it; /me ACTION acts (* you ACTION); \
             /who lists the members; /msg NAME TEXT says TEXT to NAME only; \
             /history [N] shows N earlier messages (20); /quit (or Ctrl-D) leaves; /help shows this; \
             Up/Down recall lines, Tab completes a name, Alt-b/Alt-f move by word, Ctrl-L redraws"
            .to_string(),
        (Zh, Notice::Help) => t(
            lang,
            "-- 输入一行即发言; /me 动作 表示动作; /who 列出成员; /history [N] 显示更早的消息; /msg 姓名 内容 私聊; \
             /quit (或 Ctrl-D) 退出; /help 显示本帮助; \
             上下键翻历史, Tab 补全名字, Ctrl-L 重画",
        )
        .into(),
        (En, Notice::UnknownCommand(c)) => {
            format!("-- unknown command {}: type /help", escape(c))
        }
        (Zh, Notice::UnknownCommand(c)) => tr(lang, "-- 未知命令 {0}: 输入 /help", &[&escape(c)]),
        (En, Notice::Usage(u)) => format!("-- usage: {u}"),
        (Zh, Notice::Usage(u)) => tr(lang, "-- 用法: {0}", &[u]),
        (En, Notice::Connecting(server)) => format!("-- connecting to {server}…"),
        (Zh, Notice::Connecting(server)) => tr(lang, "-- 正在连接 {0}…", &[server]),
        (_, Notice::Candidates(names)) => {
            let list: Vec<String> = names.iter().map(|n| escape(n).into_owned()).collect();
            format!("-- {}", list.join(", "))
        }
        (En, Notice::SendingParts(n)) => format!("-- sending {n} parts…"),
        (Zh, Notice::SendingParts(n)) => tr(lang, "-- 分 {0} 段发送…", &[n]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notices() {
        assert_eq!(notice_line(Lang::En, &Notice::Lost(1)), "(1 message lost)");
        assert_eq!(notice_line(Lang::En, &Notice::Lost(3)), "(3 messages lost)");
        assert_eq!(notice_line(Lang::Zh, &Notice::Lost(3)), "(丢失了 3 条消息)");
        let n = Notice::NotDelivered {
            text: "hi",
            why: Undelivered::Refused(RejectReason::RateLimited),
        };
        assert_eq!(
            notice_line(Lang::En, &n),
            "-- not delivered (rate limited): hi"
        );
        let names = vec!["a".to_string(), "b\x1b".to_string()];
        assert_eq!(
            notice_line(
                Lang::En,
                &Notice::Members {
                    total: 2,
                    names: &names
                }
            ),
            "-- 2 in the room: a, b\\x1b"
        );
        assert_eq!(
            notice_line(
                Lang::En,
                &Notice::Members {
                    total: 5,
                    names: &names
                }
            ),
            "-- 5 in the room: a, b\\x1b … and 3 more"
        );
    }
}
