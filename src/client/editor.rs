//! The line editor of the terminal mode: keys in, an edit buffer out.
//!
//! Pure: bytes from the terminal go in (in any chunks, UTF-8 split anywhere),
//! and it answers with what happened. Backspace, Ctrl-U, Ctrl-W, left/right,
//! Home/End (also Ctrl-A/Ctrl-E), Delete; Enter submits; Ctrl-D on an empty line
//! is end of input. Other escape sequences and control characters are swallowed.

use crate::protocol::MAX_TEXT_BYTES;

/// The longest line the editor holds, in bytes (a `/msg NAME` prefix and a full text).
pub const MAX_LINE_BYTES: usize = MAX_TEXT_BYTES + 128;

/// What a chunk of input did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// A line was submitted with Enter (the buffer is now empty).
    Submit(String),
    /// Ctrl-D on an empty line.
    Eof,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Esc {
    /// Not in an escape sequence.
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

/// The edit buffer and the cursor (a char index).
#[derive(Debug, Clone)]
pub struct Editor {
    line: Vec<char>,
    cursor: usize,
    esc: Esc,
    params: Vec<u8>,
    utf8: Vec<u8>,
}

impl Default for Editor {
    fn default() -> Self {
        Self::new()
    }
}

impl Editor {
    pub fn new() -> Self {
        Editor {
            line: Vec::new(),
            cursor: 0,
            esc: Esc::None,
            params: Vec::new(),
            utf8: Vec::new(),
        }
    }

    /// The line as a string.
    pub fn text(&self) -> String {
        self.line.iter().collect()
    }

    /// The cursor, as an index into [`Editor::line`].
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    fn byte_len(&self) -> usize {
        self.line.iter().map(|c| c.len_utf8()).sum()
    }

    /// Feeds bytes read from the terminal; returns the submitted lines and EOF, in order.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Action> {
        let mut out = Vec::new();
        for &b in bytes {
            if let Some(a) = self.byte(b) {
                out.push(a);
            }
        }
        out
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
                    b'O' => Esc::Ss3,
                    b']' | b'P' | b'X' | b'^' | b'_' => Esc::String,
                    0x1b => Esc::Start,
                    _ => Esc::None, // Alt+key and the like: swallowed
                };
                return None;
            }
            Esc::Csi => {
                if (0x40..=0x7e).contains(&b) {
                    self.esc = Esc::None;
                    let params = std::mem::take(&mut self.params);
                    self.csi(&params, b);
                } else if self.params.len() < 32 {
                    self.params.push(b);
                }
                return None;
            }
            Esc::Ss3 => {
                self.esc = Esc::None;
                self.csi(&[], b);
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
            b'\r' | b'\n' => {
                let text = self.text();
                self.line.clear();
                self.cursor = 0;
                return Some(Action::Submit(text));
            }
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
            0x1b => self.esc = Esc::Start,
            b'\t' => self.insert(' '),
            0x20..=0x7e => self.insert(b as char),
            _ => {} // other controls are swallowed
        }
        None
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
                if let Some(c) = c {
                    if !crate::client::render::must_escape(c) {
                        self.insert(c);
                    }
                }
            }
            Err(e) if e.error_len().is_some() || self.utf8.len() >= 4 => self.utf8.clear(),
            Err(_) => {} // incomplete: wait for more
        }
        None
    }

    fn csi(&mut self, params: &[u8], fin: u8) {
        match (params, fin) {
            (_, b'D') => self.left(),
            (_, b'C') => self.right(),
            (_, b'H') | (b"1" | b"7", b'~') => self.cursor = 0,
            (_, b'F') | (b"4" | b"8", b'~') => self.cursor = self.line.len(),
            (b"3", b'~') => self.delete(),
            _ => {} // up, down, function keys, mouse, reports: swallowed
        }
    }

    fn insert(&mut self, c: char) {
        if self.byte_len() + c.len_utf8() > MAX_LINE_BYTES {
            return;
        }
        self.line.insert(self.cursor, c);
        self.cursor += 1;
    }

    fn backspace(&mut self) {
        if self.cursor > 0 {
            self.cursor -= 1;
            self.line.remove(self.cursor);
        }
    }

    fn delete(&mut self) {
        if self.cursor < self.line.len() {
            self.line.remove(self.cursor);
        }
    }

    fn delete_word(&mut self) {
        let mut start = self.cursor;
        while start > 0 && self.line[start - 1].is_whitespace() {
            start -= 1;
        }
        while start > 0 && !self.line[start - 1].is_whitespace() {
            start -= 1;
        }
        self.line.drain(start..self.cursor);
        self.cursor = start;
    }

    fn left(&mut self) {
        self.cursor = self.cursor.saturating_sub(1);
    }

    fn right(&mut self) {
        self.cursor = (self.cursor + 1).min(self.line.len());
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
    fn utf8_split_anywhere_and_wide_characters() {
        let mut e = Editor::new();
        let bytes = "你好 wörld".as_bytes();
        for b in bytes {
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
        typed(&mut e, "a\x1b[A\x1b[1;5B\x1b[15~\x1bOPb");
        assert_eq!(e.text(), "ab");
        typed(&mut e, "\x1b]0;title\x07c\x1b]52;c;x\x1b\\d");
        assert_eq!(e.text(), "abcd");
        typed(&mut e, "\x1bxe\x00\x07\x0c\x1cf\u{85}\u{202e}g");
        assert_eq!(e.text(), "abcdefg");
        typed(&mut e, "\th");
        assert_eq!(e.text(), "abcdefg h");
    }

    #[test]
    fn the_line_has_a_limit() {
        let mut e = Editor::new();
        typed(&mut e, &"x".repeat(MAX_LINE_BYTES + 10));
        assert_eq!(e.text().len(), MAX_LINE_BYTES);
    }
}
