//! The client's language: chosen as gettext chooses (`LANGUAGE`, a colon
//! list ignored when the locale is C or POSIX, then `LC_ALL`, `LC_MESSAGES`,
//! `LANG`), or by `--lang`. Chinese comes in Simplified characters, or in
//! Traditional ones for `zh_TW`, `zh_HK`, `zh_MO` and `zh-Hant`: the client's
//! own wording is written in Simplified and converted character by character
//! ([`t`], [`tr`]); text from other members is never converted.

use crate::error::{Error, Reason};
use std::borrow::Cow;

/// The language of the client's lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// English.
    En,
    /// Chinese in Simplified characters.
    Zh,
    /// Chinese in Traditional characters.
    ZhHant,
}

impl Lang {
    /// The language from the environment, as gettext chooses it.
    pub fn from_env() -> Lang {
        Self::from_locale_vars(|k| std::env::var(k).ok())
    }

    /// [`Lang::from_env`] over any variable lookup.
    fn from_locale_vars(get: impl Fn(&str) -> Option<String>) -> Lang {
        let set = |k: &str| get(k).filter(|v| !v.is_empty());
        let locale = set("LC_ALL")
            .or_else(|| set("LC_MESSAGES"))
            .or_else(|| set("LANG"));
        let Some(locale) = locale else {
            return Lang::En; // the C locale
        };
        let base = locale.split(['.', '@']).next().unwrap_or("");
        if base == "C" || base == "POSIX" {
            return Lang::En;
        }
        if let Some(list) = set("LANGUAGE") {
            if let Some(l) = list.split(':').find_map(Self::from_tag) {
                return l;
            }
        }
        Self::from_tag(&locale).unwrap_or(Lang::En)
    }

    /// `en…`, `zh…` (Traditional for Taiwan, Hong Kong, Macau and `Hant`);
    /// `None` for a language the client does not speak.
    fn from_tag(tag: &str) -> Option<Lang> {
        let tag = tag.split(['.', '@']).next().unwrap_or("");
        let mut parts = tag.split(['_', '-']);
        match parts.next()? {
            "en" => Some(Lang::En),
            "zh" => {
                let traditional = parts.any(|p| matches!(p, "TW" | "HK" | "MO" | "Hant" | "hant"));
                Some(if traditional { Lang::ZhHant } else { Lang::Zh })
            }
            _ => None,
        }
    }

    /// The wording to use: Traditional Chinese is worded as Simplified, then
    /// converted character by character.
    pub(crate) fn wording(self) -> Wording {
        match self {
            Lang::En => Wording::En,
            Lang::Zh | Lang::ZhHant => Wording::Zh,
        }
    }
}

/// Which words: English, or Chinese (written in Simplified, converted for Traditional).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wording {
    /// English.
    En,
    /// Chinese.
    Zh,
}

/// Simplified characters of the client's wording and their Traditional
/// (Taiwan) forms, sorted by the Simplified character. A character whose
/// Traditional form depends on the word (复 復/複, 准 準/准, 系 系/係/繫, 注
/// 注/註, …) is not here: the words with it that the client says are in
/// [`PHRASES`], and the character alone stays as it is.
const TRADITIONAL: &[(char, char)] = &[
    ('与', '與'),
    ('专', '專'),
    ('丢', '丟'),
    ('个', '個'),
    ('为', '為'),
    ('么', '麼'),
    ('从', '從'),
    ('们', '們'),
    ('会', '會'),
    ('传', '傳'),
    ('关', '關'),
    ('内', '內'),
    ('册', '冊'),
    ('写', '寫'),
    ('决', '決'),
    ('凭', '憑'),
    ('创', '創'),
    ('删', '刪'),
    ('务', '務'),
    ('动', '動'),
    ('协', '協'),
    ('占', '佔'),
    ('历', '歷'),
    ('发', '發'),
    ('号', '號'),
    ('吗', '嗎'),
    ('听', '聽'),
    ('启', '啟'),
    ('员', '員'),
    ('处', '處'),
    ('够', '夠'),
    ('头', '頭'),
    ('对', '對'),
    ('将', '將'),
    ('尝', '嘗'),
    ('帮', '幫'),
    ('应', '應'),
    ('开', '開'),
    ('录', '錄'),
    ('态', '態'),
    ('户', '戶'),
    ('护', '護'),
    ('挂', '掛'),
    ('换', '換'),
    ('据', '據'),
    ('数', '數'),
    ('断', '斷'),
    ('无', '無'),
    ('时', '時'),
    ('显', '顯'),
    ('机', '機'),
    ('杀', '殺'),
    ('权', '權'),
    ('条', '條'),
    ('来', '來'),
    ('标', '標'),
    ('样', '樣'),
    ('检', '檢'),
    ('欢', '歡'),
    ('没', '沒'),
    ('满', '滿'),
    ('画', '畫'),
    ('监', '監'),
    ('着', '著'),
    ('码', '碼'),
    ('离', '離'),
    ('种', '種'),
    ('线', '線'),
    ('组', '組'),
    ('终', '終'),
    ('结', '結'),
    ('给', '給'),
    ('络', '絡'),
    ('绝', '絕'),
    ('统', '統'),
    ('续', '續'),
    ('维', '維'),
    ('网', '網'),
    ('联', '聯'),
    ('节', '節'),
    ('补', '補'),
    ('见', '見'),
    ('认', '認'),
    ('议', '議'),
    ('记', '記'),
    ('许', '許'),
    ('设', '設'),
    ('识', '識'),
    ('试', '試'),
    ('话', '話'),
    ('语', '語'),
    ('误', '誤'),
    ('说', '說'),
    ('请', '請'),
    ('读', '讀'),
    ('调', '調'),
    ('败', '敗'),
    ('转', '轉'),
    ('输', '輸'),
    ('边', '邊'),
    ('达', '達'),
    ('过', '過'),
    ('运', '運'),
    ('还', '還'),
    ('这', '這'),
    ('进', '進'),
    ('连', '連'),
    ('选', '選'),
    ('里', '裡'),
    ('钟', '鐘'),
    ('钥', '鑰'),
    ('错', '錯'),
    ('键', '鍵'),
    ('长', '長'),
    ('门', '門'),
    ('闭', '閉'),
    ('问', '問'),
    ('间', '間'),
    ('项', '項'),
    ('须', '須'),
    ('题', '題'),
];

/// Words of the client's wording that one character at a time would convert
/// wrongly, and their Traditional forms.
const PHRASES: &[(&str, &str)] = &[("注册", "註冊"), ("联系", "聯繫")];

/// The client's own wording (written in Simplified) in `lang`'s script.
pub fn t(lang: Lang, simplified: &'static str) -> Cow<'static, str> {
    if lang != Lang::ZhHant {
        return Cow::Borrowed(simplified);
    }
    let mut out = String::with_capacity(simplified.len());
    let mut rest = simplified;
    while let Some(c) = rest.chars().next() {
        if let Some((s, t)) = PHRASES.iter().find(|(s, _)| rest.starts_with(s)) {
            out.push_str(t);
            rest = &rest[s.len()..];
        } else {
            let i = TRADITIONAL.binary_search_by_key(&c, |&(s, _)| s);
            out.push(i.map_or(c, |i| TRADITIONAL[i].1));
            rest = &rest[c.len_utf8()..];
        }
    }
    Cow::Owned(out)
}

/// A template of the client's wording with `{0}`, `{1}`, … filled in after
/// the template is converted ([`t`]), so what fills them (names, texts of
/// other members) is never converted.
pub fn tr(lang: Lang, template: &'static str, args: &[&dyn std::fmt::Display]) -> String {
    let mut out = t(lang, template).into_owned();
    for (i, a) in args.iter().enumerate() {
        out = out.replace(&format!("{{{i}}}"), &a.to_string());
    }
    out
}

/// An error as the user reads it, in `lang`: `cannot OP 'THING': reason`, or
/// `无法… 'THING': 原因`. OS errors keep the OS's own words where no
/// translation is known.
pub fn error_text(lang: Lang, e: &Error) -> String {
    if lang == Lang::En {
        return e.to_string();
    }
    let reason = match &e.reason {
        Reason::Io(io) => match io.raw_os_error().and_then(os_error_zh) {
            Some(zh) => t(lang, zh).into_owned(),
            None => crate::error::os_reason(io),
        },
        Reason::Msg(m) => msg_zh(m).map_or_else(|| m.clone(), |zh| t(lang, zh).into_owned()),
    };
    if e.op.is_empty() {
        return reason;
    }
    let op = op_zh(&e.op).map_or_else(|| e.op.clone(), |zh| t(lang, zh).into_owned());
    if e.subject.is_empty() {
        format!("{}{op}: {reason}", t(lang, "无法"))
    } else {
        format!("{}{op} '{}': {reason}", t(lang, "无法"), e.subject)
    }
}

/// The operations of the client's errors, in Chinese (read after `无法`).
fn op_zh(op: &str) -> Option<&'static str> {
    Some(match op {
        "resolve" => "解析地址",
        "create socket for" => "创建套接字, 服务器",
        "connect to" => "连接",
        "receive from" => "接收数据, 来自",
        "set up socket for" => "设置套接字, 服务器",
        "block" => "屏蔽信号",
        "read the modes of" => "读取终端模式",
        "set the modes of" => "设置终端模式",
        "create" => "创建",
        "open" => "打开",
        "fork" => "创建进程",
        "register" => "注册",
        "poll" => "等待",
        "read a name from" => "读取名字, 来自",
        "reopen" => "重新打开",
        "read" => "读取",
        "write" => "写入",
        "record a key for" => "记录密钥, 服务器",
        "trust" => "信任",
        _ => return None,
    })
}

/// Our own reasons, in Chinese.
fn msg_zh(msg: &str) -> Option<&'static str> {
    Some(match msg {
        "no address" => "没有地址",
        "end of input" => "输入已结束",
        _ => return None,
    })
}

/// The commonest OS errors, in Chinese.
fn os_error_zh(errno: i32) -> Option<&'static str> {
    use nix::libc;
    Some(match errno {
        libc::ENOENT => "没有那个文件或目录",
        libc::EMFILE => "打开的文件过多",
        libc::ENFILE => "系统中打开的文件过多",
        libc::EACCES | libc::EPERM => "权限不够",
        libc::ECONNREFUSED => "连接被拒绝",
        libc::ENETUNREACH => "网络不可达",
        libc::EHOSTUNREACH => "没有到主机的路由",
        libc::EADDRNOTAVAIL => "无法指定被请求的地址",
        libc::EIO => "输入/输出错误",
        libc::ENOMEM => "内存不足",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn chosen_as_gettext_does() {
        let l = |pairs| Lang::from_locale_vars(env(pairs));
        assert_eq!(l(&[]), Lang::En);
        assert_eq!(l(&[("LANG", "zh_CN.UTF-8")]), Lang::Zh);
        assert_eq!(l(&[("LANG", "zh_TW.UTF-8")]), Lang::ZhHant);
        assert_eq!(l(&[("LANG", "zh_HK")]), Lang::ZhHant);
        assert_eq!(l(&[("LC_ALL", "zh_MO.UTF-8")]), Lang::ZhHant);
        assert_eq!(l(&[("LANG", "zh_SG.UTF-8")]), Lang::Zh);
        assert_eq!(l(&[("LC_ALL", "C"), ("LANG", "zh_CN.UTF-8")]), Lang::En);
        assert_eq!(
            l(&[("LC_ALL", ""), ("LC_MESSAGES", "zh_TW"), ("LANG", "en_US")]),
            Lang::ZhHant
        );
        // LANGUAGE comes first, its first language the client speaks wins…
        assert_eq!(
            l(&[("LANGUAGE", "fr:zh_TW:en"), ("LANG", "en_US.UTF-8")]),
            Lang::ZhHant
        );
        assert_eq!(l(&[("LANGUAGE", "en"), ("LANG", "zh_CN.UTF-8")]), Lang::En);
        // … but not in the C or POSIX locale, or with no locale at all.
        assert_eq!(l(&[("LANGUAGE", "zh_CN"), ("LANG", "C.UTF-8")]), Lang::En);
        assert_eq!(l(&[("LANGUAGE", "zh_CN"), ("LC_ALL", "POSIX")]), Lang::En);
        assert_eq!(l(&[("LANGUAGE", "zh_CN")]), Lang::En);
        assert_eq!(l(&[("LANGUAGE", "fr:de"), ("LANG", "zh_CN")]), Lang::Zh);
        assert_eq!(Lang::from_tag("zh-Hant"), Some(Lang::ZhHant));
        assert_eq!(Lang::from_tag("zh-Hans"), Some(Lang::Zh));
        assert_eq!(Lang::from_tag("de_DE"), None);
    }

    /// Characters of the client's wording written the same in both scripts.
    const SAME: &str = "一上下不中主了人令以件任但作供你保信像允入全再出分列到加助即原去取受另只可史合名告命和器回因在地址多天太失套如姓字存它定客室容密屏已建式待必快忽息意成或打拒持指提接支收文新早是更最有服期未本束析果查格模次正死段母求法注消混理用由留略的目看知示私移程空端符第等管系置翻聊能自蔽行表被解言警超足路迎近退送那重限除";

    /// The code (not comments, tests or the two tables) of the files
    /// under src/client, a line each: all the client can print is in it.
    fn client_code() -> String {
        fn walk(dir: &std::path::Path, out: &mut String) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if path.is_dir() {
                    walk(&path, out);
                } else if name.ends_with(".rs") && !name.contains("test") {
                    let text = std::fs::read_to_string(&path).unwrap();
                    let code = text.split("\n#[cfg(test)]\nmod tests {").next().unwrap();
                    let mut in_table = false;
                    for line in code.lines().map(str::trim) {
                        in_table |= line.starts_with("const TRADITIONAL")
                            || line.starts_with("const PHRASES");
                        if !in_table && !line.starts_with("//") {
                            out.push_str(line);
                            out.push('\n');
                        }
                        in_table &= !line.ends_with("];");
                    }
                }
            }
        }
        let mut out = String::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/client"),
            &mut out,
        );
        out
    }

    fn is_cjk(c: char) -> bool {
        matches!(c, '\u{3400}'..='\u{9fff}' | '\u{f900}'..='\u{faff}' | '\u{20000}'..='\u{3ffff}')
    }

    #[test]
    fn every_character_of_the_wording_is_converted_or_the_same() {
        let chars: std::collections::BTreeSet<char> =
            client_code().chars().filter(|c| is_cjk(*c)).collect();
        assert!(chars.len() > 100, "the scan found the wording: {chars:?}");
        let unknown: String = chars
            .iter()
            .filter(|c| !SAME.contains(**c))
            .filter(|c| TRADITIONAL.binary_search_by_key(c, |(s, _)| s).is_err())
            .collect();
        assert_eq!(
            unknown, "",
            "add these to TRADITIONAL (with their Taiwan forms) or to SAME"
        );
    }

    #[test]
    fn the_tables_are_consistent() {
        assert!(
            TRADITIONAL.windows(2).all(|w| w[0].0 < w[1].0),
            "TRADITIONAL is sorted, without repeats (binary search)"
        );
        for &(s, t) in TRADITIONAL {
            assert_ne!(s, t);
            assert!(!SAME.contains(s), "{s} is in SAME and TRADITIONAL");
            assert!(is_cjk(s) && is_cjk(t));
            assert!(
                TRADITIONAL.iter().all(|&(s2, _)| s2 != t),
                "{t} would be converted again"
            );
        }
        let code = client_code();
        for &(s, t) in PHRASES {
            assert!(code.contains(s), "{s} is in the wording");
            assert_eq!(s.chars().count(), t.chars().count());
        }
    }

    #[test]
    fn words_and_characters_the_table_alone_would_get_wrong() {
        assert_eq!(
            t(Lang::ZhHant, "连接被拒绝: {0} 上运行着 chat-server 吗?"),
            "連接被拒絕: {0} 上運行著 chat-server 嗎?"
        );
        assert_eq!(t(Lang::ZhHant, "注册"), "註冊");
        assert_eq!(t(Lang::ZhHant, "与服务器失去联系"), "與服務器失去聯繫");
        assert_eq!(t(Lang::ZhHant, "系统中"), "系統中");
        assert_eq!(t(Lang::ZhHant, "名字已被占用"), "名字已被佔用");
        assert_eq!(t(Lang::Zh, "注册"), "注册");
    }

    #[test]
    fn traditional_converts_only_the_template() {
        assert_eq!(t(Lang::ZhHant, "进入了聊天室"), "進入了聊天室");
        assert_eq!(t(Lang::Zh, "进入了聊天室"), "进入了聊天室");
        assert_eq!(
            tr(Lang::ZhHant, "{0} 说: {1}", &[&"发发", &"这里"]),
            "发发 說: 这里",
            "names and texts stay as they were written"
        );
    }

    #[test]
    fn errors_in_chinese() {
        let e = Error::io(
            "open",
            "stdin",
            std::io::Error::from_raw_os_error(nix::libc::EMFILE),
        );
        assert_eq!(error_text(Lang::En, &e), e.to_string());
        assert_eq!(error_text(Lang::Zh, &e), "无法打开 'stdin': 打开的文件过多");
        assert_eq!(
            error_text(Lang::ZhHant, &e),
            "無法打開 'stdin': 打開的文件過多"
        );
        let e = Error::io(
            "frob",
            "x",
            std::io::Error::from_raw_os_error(nix::libc::EXDEV),
        );
        assert!(error_text(Lang::Zh, &e).starts_with("无法frob 'x': "));
    }
}
