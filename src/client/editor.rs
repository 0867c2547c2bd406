//! The line editor of the terminal mode: keys in, an edit buffer out.
//!
//! Pure: bytes from the terminal go in (in any chunks, UTF-8 split anywhere),
//! and it answers with what happened. Editing works on extended grapheme
//! clusters (UAX #29): `e` + U+0301 is one character for Left, Right,
//! Backspace and Delete.
//!
//! Keys: Backspace, Delete (also Ctrl-D on a non-empty line), Left/Right
//! (Ctrl-B/Ctrl-F), Home/End (Ctrl-A/Ctrl-E), Alt-b/Alt-f and
//! Ctrl-Left/Ctrl-Right by word, Ctrl-W deletes the word before the cursor,
//! Ctrl-U the line before it, Ctrl-K the line after it, Up/Down (Ctrl-P/Ctrl-N)
//! walk the lines submitted before, Ctrl-L redraws, Tab completes a name,
//! Enter submits, Ctrl-D on an empty line is end of input. Other escape
//! sequences and control characters are swallowed.

use crate::protocol::MAX_TEXT_BYTES;
use unicode_segmentation::UnicodeSegmentation;

/// The longest line the editor holds, in bytes: a pasted paragraph of many
/// messages (a longer line is sent in parts).
pub const MAX_LINE_BYTES: usize = 32 * MAX_TEXT_BYTES;
/// How many submitted lines Up can bring back.
pub const HISTORY_LINES: usize = 500;

/// What a chunk of input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A line was submitted with Enter (the buffer is now empty).
    Submit(String),
    /// Ctrl-D on an empty line.
    Eof,
    /// Ctrl-L: draw the screen anew.
    Redraw,
    /// Tab: complete the word before the cursor.
    Complete,
    /// Ctrl-C as a key (only where signals are off: the name prompt).
    Interrupt,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum Esc {
    /// Not in an escape sequence.
    #[default]
    None,
    /// After ESC.
    Start,
    /// After `ESC [`: parameters until a final byte.
    Csi,
    /// After `ESC O`: one more byte.
    Ss3,
    /// After `ESC ]` (or P, X, ^, _): a string until BEL or ST.
    String,
    /// ESC inside a string: maybe the start of ST (the string terminator).
    StringEnd,
}

/// The edit buffer, the cursor (a byte offset at a cluster boundary) and the
/// lines submitted before.
#[derive(Debug, Clone, Default)]
pub struct Editor {
    line: String,
    cursor: usize,
    esc: Esc,
    params: Vec<u8>,
    utf8: Vec<u8>,
    history: Vec<String>,
    /// While walking the history: the entry shown, and the line that was
    /// being typed before Up was pressed.
    browsing: Option<(usize, String)>,
}

impl Editor {
    /// An empty line and no history.
    pub fn new() -> Self {
        Self::default()
    }

    /// The line.
    pub fn text(&self) -> &str {
        &self.line
    }

    /// The cursor, as a char index into [`Editor::text`].
    pub fn cursor(&self) -> usize {
        self.line[..self.cursor].chars().count()
    }

    /// Feeds bytes read from the terminal; returns what they did, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        bytes.iter().filter_map(|&b| self.byte(b)).collect()
    }

    fn byte(&mut self, b: u8) -> Option<Action> {
        match self.esc {
            Esc::None => {}
            Esc::Start => {
                self.esc = match b {
                    b'[' => {
                        self.params.clear();
                        Esc::Csi
                    }
                    b'O' => {
                        self.params.clear();
                        Esc::Ss3
                    }
                    b']' | b'P' | b'X' | b'^' | b'_' => Esc::String,
                    0x1b => Esc::Start,
                    _ => {
                        self.alt(b);
                        Esc::None
                    }
                };
                return None;
            }
            Esc::Csi | Esc::Ss3 => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    let params = std::mem::take(&mut self.params);
                    self.csi(&params, b);
                } else if self.params.len() < 32 {
                    self.params.push(b);
                }
                return None;
            }
            Esc::String => {
                self.esc = match b {
                    0x07 => Esc::None,
                    0x1b => Esc::StringEnd,
                    _ => Esc::String,
                };
                return None;
            }
            Esc::StringEnd => {
                self.esc = if b == b'\\' { Esc::None } else { Esc::String };
                return None;
            }
        }
        if b >= 0x80 || !self.utf8.is_empty() {
            return self.utf8_byte(b);
        }
        match b {
            b'\r' | b'\n' => return Some(self.submit()),
            0x04 if self.line.is_empty() => return Some(Action::Eof),
            0x04 => self.delete(),
            0x7f | 0x08 => self.backspace(),
            0x15 => {
                self.line.drain(..self.cursor);
                self.cursor = 0;
            }
            0x17 => self.delete_word(),
            0x01 => self.cursor = 0,
            0x05 => self.cursor = self.line.len(),
            0x02 => self.left(),
            0x06 => self.right(),
            0x0b => self.line.truncate(self.cursor),
            0x10 => self.older(),
            0x0e => self.newer(),
            0x0c => return Some(Action::Redraw),
            0x03 => return Some(Action::Interrupt),
            b'\t' => return Some(Action::Complete),
            0x1b => self.esc = Esc::Start,
            0x20..=0x7e => self.insert(&(b as char).to_string()),
            _ => {} // other controls are swallowed
        }
        None
    }

    /// Alt+key (ESC then the key): word motion; the rest is swallowed.
    fn alt(&mut self, b: u8) {
        match b {
            b'b' => self.cursor = self.word_start(),
            b'f' => self.cursor = self.word_end(),
            _ => {}
        }
    }

    fn utf8_byte(&mut self, b: u8) -> Option<Action> {
        // A byte that cannot continue the pending sequence restarts it.
        if !self.utf8.is_empty() && (b & 0xc0) != 0x80 {
            self.utf8.clear();
            if b < 0x80 {
                return self.byte(b);
            }
        }
        if self.utf8.is_empty() && (b & 0xc0) == 0x80 {
            return None; // a stray continuation byte
        }
        self.utf8.push(b);
        match std::str::from_utf8(&self.utf8) {
            Ok(s) => {
                let c = s.chars().next();
                self.utf8.clear();
                if let Some(c) = c.filter(|&c| !crate::client::render::must_escape(c)) {
                    self.insert(&c.to_string());
                }
            }
            Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => self.utf8.clear(),
            Err(_) => {} // incomplete: wait for more
        }
        None
    }

    fn csi(&mut self, params: &[u8], fin: u8) {
        // Ctrl (5) or Alt (3) with an arrow: by word (`ESC [1;5D`, `ESC [5D`).
        let modified = params.ends_with(b";5")
            || params.ends_with(b";3")
            || params == b"5"
            || params == b"3" && fin != b'~';
        match (params, fin) {
            (_, b'D') if modified => self.cursor = self.word_start(),
            (_, b'C') if modified => self.cursor = self.word_end(),
            (_, b'D') => self.left(),
            (_, b'C') => self.right(),
            (_, b'A') => self.older(),
            (_, b'B') => self.newer(),
            (_, b'H') | (b"1" | b"7", b'~') => self.cursor = 0,
            (_, b'F') | (b"4" | b"8", b'~') => self.cursor = self.line.len(),
            (b"3", b'~') => self.delete(),
            _ => {} // function keys, mouse, reports: swallowed
        }
    }

    fn submit(&mut self) -> Action {
        let text = std::mem::take(&mut self.line);
        self.cursor = 0;
        self.browsing = None;
        if !text.trim().is_empty() && self.history.last() != Some(&text) {
            if self.history.len() == HISTORY_LINES {
                self.history.remove(0);
            }
            self.history.push(text.clone());
        }
        Action::Submit(text)
    }

    /// Inserts text at the cursor (as much of it as fits).
    pub fn insert(&mut self, s: &str) {
        let mut s = s;
        let room = MAX_LINE_BYTES.saturating_sub(self.line.len());
        if s.len() > room {
            let mut end = room;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            s = &s[..end];
        }
        self.line.insert_str(self.cursor, s);
        self.cursor += s.len();
    }

    /// The cluster boundary before the cursor (0 at the start).
    fn prev_boundary(&self) -> usize {
        self.line[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    /// The cluster boundary after the cursor (the end at the end).
    fn next_boundary(&self) -> usize {
        let rest = &self.line[self.cursor..];
        self.cursor + rest.graphemes(true).next().map_or(0, str::len)
    }

    fn left(&mut self) {
        self.cursor = self.prev_boundary();
    }

    fn right(&mut self) {
        self.cursor = self.next_boundary();
    }

    fn backspace(&mut self) {
        let start = self.prev_boundary();
        self.line.drain(start..self.cursor);
        self.cursor = start;
    }

    fn delete(&mut self) {
        let end = self.next_boundary();
        self.line.drain(self.cursor..end);
    }

    /// Is this cluster part of a word (a letter or digit)?
    fn wordy(g: &str) -> bool {
        g.chars().next().is_some_and(char::is_alphanumeric)
    }

    /// The start of the word before the cursor (Alt-b, Ctrl-Left).
    fn word_start(&self) -> usize {
        let before: Vec<(usize, &str)> = self.line[..self.cursor].grapheme_indices(true).collect();
        let mut i = before.len();
        while i > 0 && !Self::wordy(before[i - 1].1) {
            i -= 1;
        }
        while i > 0 && Self::wordy(before[i - 1].1) {
            i -= 1;
        }
        before.get(i).map_or(self.cursor, |&(at, _)| at)
    }

    /// The end of the word after the cursor (Alt-f, Ctrl-Right).
    fn word_end(&self) -> usize {
        let mut at = self.cursor;
        let mut clusters = self.line[self.cursor..].graphemes(true).peekable();
        while let Some(g) = clusters.next_if(|g| !Self::wordy(g)) {
            at += g.len();
        }
        while let Some(g) = clusters.next_if(|g| Self::wordy(g)) {
            at += g.len();
        }
        at
    }

    /// Ctrl-W: the word before the cursor and the spaces after it.
    fn delete_word(&mut self) {
        let before = &self.line[..self.cursor];
        let trimmed = before.trim_end();
        let start = trimmed
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        self.line.drain(start..self.cursor);
        self.cursor = start;
    }

    /// Up: the line submitted before the one shown.
    fn older(&mut self) {
        let at = match &self.browsing {
            Some((i, _)) => *i,
            None => self.history.len(),
        };
        if at == 0 {
            return;
        }
        if self.browsing.is_none() {
            self.browsing = Some((at, self.line.clone()));
        }
        self.show(at - 1);
    }

    /// Down: the line submitted after the one shown, then the line that was
    /// being typed.
    fn newer(&mut self) {
        let Some((at, draft)) = self.browsing.clone() else {
            return;
        };
        if at + 1 < self.history.len() {
            self.show(at + 1);
        } else {
            self.browsing = None;
            self.line = draft;
            self.cursor = self.line.len();
        }
    }

    fn show(&mut self, i: usize) {
        if let Some((at, _)) = &mut self.browsing {
            *at = i;
        }
        self.line = self.history[i].clone();
        self.cursor = self.line.len();
    }

    /// The word before the cursor and where it starts, for completion.
    pub fn word_before_cursor(&self) -> (usize, &str) {
        let before = &self.line[..self.cursor];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        (start, &before[start..])
    }

    /// Replaces the text from `start` to the cursor with `with`.
    pub fn replace_before_cursor(&mut self, start: usize, with: &str) {
        self.line.drain(start..self.cursor);
        self.cursor = start;
        self.insert(with);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(e: &mut Editor, s: &str) -> Vec<Action> {
        e.feed(s.as_bytes())
    }

    #[test]
    fn typing_and_submitting() {
        let mut e = Editor::new();
        assert!(typed(&mut e, "hello").is_empty());
        assert_eq!(e.text(), "hello");
        assert_eq!(e.cursor(), 5);
        assert_eq!(typed(&mut e, "\r"), [Action::Submit("hello".into())]);
        assert_eq!(e.text(), "");
        assert_eq!(
            typed(&mut e, "a\nb\n"),
            [Action::Submit("a".into()), Action::Submit("b".into())]
        );
        assert_eq!(typed(&mut e, "\x04"), [Action::Eof]);
        assert_eq!(typed(&mut e, "\x0c\t"), [Action::Redraw, Action::Complete]);
    }

    #[test]
    fn backspace_ctrl_u_ctrl_w_and_arrows() {
        let mut e = Editor::new();
        typed(&mut e, "hello world\x7f");
        assert_eq!(e.text(), "hello worl");
        typed(&mut e, "\x17");
        assert_eq!(e.text(), "hello ");
        typed(&mut e, "there  \x17");
        assert_eq!(e.text(), "hello ");
        typed(&mut e, "abc\x1b[D\x1b[DX");
        assert_eq!(e.text(), "hello aXbc");
        assert_eq!(e.cursor(), 8);
        typed(&mut e, "\x1b[C\x1b[C\x1b[C\x1b[CY");
        assert_eq!(e.text(), "hello aXbcY");
        typed(&mut e, "\x1b[D\x1b[D\x15");
        assert_eq!(e.text(), "cY");
        assert_eq!(e.cursor(), 0);
        typed(&mut e, "\x1b[3~");
        assert_eq!(e.text(), "Y");
        typed(&mut e, "\x1bOF!\x1b[H>");
        assert_eq!(e.text(), ">Y!");
        typed(&mut e, "\x04");
        assert_eq!(e.text(), ">!");
    }

    #[test]
    fn a_combining_accent_is_one_character() {
        let mut e = Editor::new();
        typed(&mut e, "cafe\u{301}");
        assert_eq!(e.cursor(), 5, "a char index for the screen");
        typed(&mut e, "\x7f");
        assert_eq!(e.text(), "caf", "Backspace takes the whole é");
        typed(&mut e, "e\u{301}!\x1b[D\x1b[D");
        assert_eq!(e.cursor(), 3, "Left steps over é at once");
        typed(&mut e, "\x1b[3~");
        assert_eq!(e.text(), "caf!", "Delete takes the whole é");
        typed(&mut e, "\x1b[C\x1b[D\x1b[D👍🏽\x1b[D");
        assert_eq!((e.text(), e.cursor()), ("ca👍🏽f!", 2));
        typed(&mut e, "\x1b[3~");
        assert_eq!(e.text(), "caf!", "an emoji with its skin tone is one too");
    }

    #[test]
    fn word_motion() {
        let mut e = Editor::new();
        typed(&mut e, "one two, three");
        typed(&mut e, "\x1bb");
        assert_eq!(e.cursor(), 9);
        typed(&mut e, "\x1b[1;5D");
        assert_eq!(e.cursor(), 4);
        typed(&mut e, "\x1bb\x1bb");
        assert_eq!(e.cursor(), 0);
        typed(&mut e, "\x1bf");
        assert_eq!(e.cursor(), 3);
        typed(&mut e, "\x1b[1;5C");
        assert_eq!(e.cursor(), 7);
        typed(&mut e, "\x1b[5C\x1bf");
        assert_eq!(e.cursor(), 14);
    }

    #[test]
    fn history_up_and_down_keep_the_draft() {
        let mut e = Editor::new();
        typed(&mut e, "first\rsecond\rsecond\r  \r");
        typed(&mut e, "draft");
        typed(&mut e, "\x1b[A");
        assert_eq!(e.text(), "second", "a repeated line is kept once");
        typed(&mut e, "\x1b[A\x1b[A");
        assert_eq!(e.text(), "first");
        typed(&mut e, "\x1b[B");
        assert_eq!(e.text(), "second");
        typed(&mut e, "\x1b[B");
        assert_eq!((e.text(), e.cursor()), ("draft", 5));
        typed(&mut e, "\x1b[B");
        assert_eq!(e.text(), "draft");
        typed(&mut e, "\x10!\r");
        typed(&mut e, "\x10");
        assert_eq!(e.text(), "second!", "an edited old line is a new entry");
    }

    #[test]
    fn utf8_split_anywhere_and_wide_characters() {
        let mut e = Editor::new();
        for b in "你好 wörld".as_bytes() {
            e.feed(&[*b]);
        }
        assert_eq!(e.text(), "你好 wörld");
        assert_eq!(e.cursor(), 8);
        typed(&mut e, "\x17\x7f\x7f");
        assert_eq!(e.text(), "你");
        // Invalid bytes are dropped, not inserted.
        e.feed(&[0xff, 0xe4, b'x']);
        assert_eq!(e.text(), "你x");
    }

    #[test]
    fn other_escape_sequences_and_controls_are_swallowed() {
        let mut e = Editor::new();
        typed(&mut e, "a\x1b[15~\x1bOPb");
        assert_eq!(e.text(), "ab");
        typed(&mut e, "\x1b]0;title\x07c\x1b]52;c;x\x1b\\d");
        assert_eq!(e.text(), "abcd");
        typed(&mut e, "\x1bxe\x00\x07\x1cf\u{85}\u{202e}g");
        assert_eq!(typed(&mut e, "\x03"), [Action::Interrupt]);
        assert_eq!(e.text(), "abcdefg");
    }

    #[test]
    fn the_line_has_a_limit() {
        let mut e = Editor::new();
        typed(&mut e, &"x".repeat(MAX_LINE_BYTES + 10));
        assert_eq!(e.text().len(), MAX_LINE_BYTES);
    }

    #[test]
    fn completion_helpers() {
        let mut e = Editor::new();
        typed(&mut e, "/msg al");
        assert_eq!(e.word_before_cursor(), (5, "al"));
        e.replace_before_cursor(5, "alice ");
        assert_eq!((e.text(), e.cursor()), ("/msg alice ", 11));
    }
}
