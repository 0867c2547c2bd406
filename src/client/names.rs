//! Member names as the user sees them: the order of `/who` (by name key, then
//! code point), the names seen so far (welcome list, joins, speakers) for Tab
//! completion, and whether a line mentions a name as a whole word.

use crate::protocol::{name_key, nfkc_casefold};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use unicode_properties::{GeneralCategoryGroup, UnicodeGeneralCategory};

/// Tab refreshes the names with a `/who` fetch at most this often.
pub const REFRESH_EVERY: Duration = Duration::from_secs(10);

/// Sorts names as `/who` shows them: by NFKC_Casefold(name), then code point.
pub fn sort_names(names: &mut [String]) {
    names.sort_by_cached_key(|n| (nfkc_casefold(n), n.clone()));
}

/// The names seen in the room, by key.
#[derive(Debug, Default)]
pub struct SeenNames {
    by_key: BTreeMap<(String, String), ()>,
    refreshed: Option<Instant>,
}

impl SeenNames {
    /// Nothing seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// `name` is in the room.
    pub fn seen(&mut self, name: &str) {
        self.by_key.insert((name_key(name), name.to_string()), ());
    }

    /// `name` left.
    pub fn gone(&mut self, name: &str) {
        self.by_key.remove(&(name_key(name), name.to_string()));
    }

    /// Is a refresh due (never done, or more than [`REFRESH_EVERY`] ago)?
    /// Counts it as done now when it is.
    pub fn refresh_due(&mut self, now: Instant) -> bool {
        let due = self.refreshed.is_none_or(|t| now >= t + REFRESH_EVERY);
        if due {
            self.refreshed = Some(now);
        }
        due
    }

    /// The names starting with `prefix` (compared by key), in `/who` order.
    pub fn starting_with(&self, prefix: &str) -> Vec<&str> {
        let key = name_key(prefix);
        self.by_key
            .keys()
            .filter(|(k, _)| k.starts_with(&key))
            .map(|(_, n)| n.as_str())
            .collect()
    }
}

/// What Tab does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// Replace the word before the cursor with this.
    Insert(String),
    /// Several names fit and nothing more can be completed: list them.
    Candidates(Vec<String>),
    /// Nothing fits, or the word is not a name's place.
    Nothing,
}

impl SeenNames {
    /// Completes `word` (the word before the cursor, after `head`) to a
    /// member's name other than `me`: at the start of a line as `name: `,
    /// after `/msg ` as `name `; several fitting names complete to their
    /// common prefix, then are listed.
    pub fn complete(&self, head: &str, word: &str, me: &str) -> Completion {
        let at_start = head.is_empty() && !word.starts_with('/');
        let after_msg = head.starts_with("/msg") && head.split_whitespace().eq(["/msg"]);
        if word.is_empty() || !(at_start || after_msg) {
            return Completion::Nothing;
        }
        let fits: Vec<&str> = self
            .starting_with(word)
            .into_iter()
            .filter(|n| *n != me)
            .collect();
        match fits.as_slice() {
            [] => Completion::Nothing,
            [one] if at_start => Completion::Insert(format!("{one}: ")),
            [one] => Completion::Insert(format!("{one} ")),
            many => {
                let common = common_prefix(many);
                if common.chars().count() > word.chars().count() {
                    Completion::Insert(common.to_string())
                } else {
                    Completion::Candidates(many.iter().map(|n| n.to_string()).collect())
                }
            }
        }
    }
}

/// The longest common prefix of `names`, in characters.
pub fn common_prefix<'a>(names: &[&'a str]) -> &'a str {
    let Some(first) = names.first() else {
        return "";
    };
    let mut end = first.len();
    for n in &names[1..] {
        end = first
            .char_indices()
            .zip(n.chars())
            .find(|((_, a), b)| a != b)
            .map_or(end.min(n.len()), |((i, _), _)| i.min(end));
    }
    &first[..end]
}

/// Does `text` mention `name` as a whole word (compared by name key)? A word
/// is a run of letters, marks, digits and `_ - .` (the characters of a name).
pub fn mentions(text: &str, name: &str) -> bool {
    let want = name_key(name);
    if want.is_empty() {
        return false;
    }
    text.split(|c: char| !wordy(c)).any(|word| {
        let word = word.trim_matches('.');
        !word.is_empty() && name_key(word) == want
    })
}

/// Is `c` part of a word, as names are made of?
fn wordy(c: char) -> bool {
    c.is_alphanumeric() || matches!(c, '_' | '-' | '.') || is_mark(c)
}

/// `line` with every whole-word mention of `name` (by key) between `on` and
/// `off` (the escape sequences that highlight).
pub fn highlight(line: &str, name: &str, on: &str, off: &str) -> String {
    let want = name_key(name);
    let mut out = String::with_capacity(line.len() + 16);
    let mut rest = line;
    while !rest.is_empty() {
        let word_len = rest
            .char_indices()
            .find(|&(_, c)| !wordy(c))
            .map_or(rest.len(), |(i, _)| i);
        if word_len == 0 {
            let c = rest.chars().next().map_or(1, char::len_utf8);
            out.push_str(&rest[..c]);
            rest = &rest[c..];
            continue;
        }
        let word = &rest[..word_len];
        let core = word.trim_matches('.');
        if !core.is_empty() && name_key(core) == want {
            let lead = word.len() - word.trim_start_matches('.').len();
            out.push_str(&word[..lead]);
            out.push_str(on);
            out.push_str(core);
            out.push_str(off);
            out.push_str(&word[lead + core.len()..]);
        } else {
            out.push_str(word);
        }
        rest = &rest[word_len..];
    }
    out
}

fn is_mark(c: char) -> bool {
    c.general_category_group() == GeneralCategoryGroup::Mark
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_order_is_by_key_then_code_point() {
        let mut n: Vec<String> = ["bob", "Alice", "alice", "Émile", "carol", "ALICE"]
            .map(String::from)
            .to_vec();
        sort_names(&mut n);
        assert_eq!(n, ["ALICE", "Alice", "alice", "bob", "carol", "Émile"]);
    }

    #[test]
    fn completion_candidates() {
        let mut s = SeenNames::new();
        for n in ["alice", "Alex", "bob", "alice"] {
            s.seen(n);
        }
        assert_eq!(s.starting_with("al"), ["Alex", "alice"]);
        assert_eq!(s.starting_with("B"), ["bob"]);
        s.gone("bob");
        assert!(s.starting_with("b").is_empty());
        assert_eq!(
            s.complete("", "al", "me"),
            Completion::Candidates(vec!["Alex".into(), "alice".into()])
        );
        assert_eq!(
            s.complete("", "ali", "me"),
            Completion::Insert("alice: ".into())
        );
        assert_eq!(
            s.complete("/msg ", "ALI", "me"),
            Completion::Insert("alice ".into())
        );
        assert_eq!(s.complete("hi ", "ali", "me"), Completion::Nothing);
        assert_eq!(
            s.complete("", "ali", "alice"),
            Completion::Nothing,
            "not me"
        );
        assert_eq!(common_prefix(&["alice", "alina"]), "ali");
        assert_eq!(common_prefix(&["你好", "你们"]), "你");
        assert_eq!(common_prefix(&["bob"]), "bob");
        let t0 = Instant::now();
        assert!(s.refresh_due(t0));
        assert!(!s.refresh_due(t0 + Duration::from_secs(9)));
        assert!(s.refresh_due(t0 + REFRESH_EVERY));
    }

    #[test]
    fn mentions_are_whole_words_by_key() {
        assert!(mentions("hi alice!", "alice"));
        assert!(mentions("ALICE: look", "alice"));
        assert!(mentions("ｂｏｂ, are you there", "bob"));
        assert!(mentions("see alice.", "alice"));
        assert!(!mentions("malice aforethought", "alice"));
        assert!(!mentions("alice_2 is here", "alice"));
        assert!(mentions("你好 小明", "小明"));
    }

    #[test]
    fn highlight_wraps_each_mention() {
        assert_eq!(
            highlight("bob: hi Alice, alice. malice", "alice", "<", ">"),
            "bob: hi <Alice>, <alice>. malice"
        );
        assert_eq!(highlight("no one", "alice", "<", ">"), "no one");
    }
}
