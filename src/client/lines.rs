//! Long lines and piped input: a text longer than the protocol's limit is
//! split into parts ([`split_text`]), and input through a pipe is cut into
//! lines as it arrives ([`PipeLines`]), a line that grows past the limit being
//! sent in parts before its end is seen. Pure: bytes in, lines and parts out.

use crate::client::outgoing::Outgoing;
use crate::protocol::{MAX_NAME_BYTES, MAX_TEXT_BYTES};
use unicode_segmentation::UnicodeSegmentation;

/// Where to cut `text` so the part before is at most `limit` bytes: returns
/// `(end of the part, start of the rest)`. At the last space within the limit
/// (the space itself dropped), else at the last grapheme cluster boundary,
/// else (one cluster longer than the limit) at the last character boundary.
fn cut(text: &str, limit: usize) -> (usize, usize) {
    if text.len() <= limit {
        return (text.len(), text.len());
    }
    let mut window_end = limit;
    while !text.is_char_boundary(window_end) {
        window_end -= 1;
    }
    let window = &text[..window_end];
    if let Some(i) = window
        .rfind(' ')
        .filter(|&i| !window[..i].trim().is_empty())
    {
        return (i, i + 1);
    }
    // The boundary at `window_end` is known: text follows it.
    let boundary = text
        .grapheme_indices(true)
        .map(|(i, _)| i)
        .take_while(|&i| i <= window_end)
        .last()
        .unwrap_or(0);
    let end = if boundary > 0 { boundary } else { window_end };
    (end, end)
}

/// `text` in parts of at most [`MAX_TEXT_BYTES`], in order (see [`cut`]).
/// Parts that would hold only spaces are left out.
pub fn split_text(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let (end, next) = cut(rest, MAX_TEXT_BYTES);
        let part = rest[..end].trim_end();
        if !part.trim().is_empty() {
            parts.push(part);
        }
        rest = &rest[next..];
    }
    parts
}

/// What piped input produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piped {
    /// A whole line (without its end), to be parsed as a command or a message.
    Line(String),
    /// A part of a line longer than the limit, to be sent as it is.
    Part(Outgoing),
}

/// What the rest of a line that grew past the limit is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Continuing {
    /// Not in a long line.
    No,
    /// More of a long message to the room.
    Say,
    /// More of a long `/msg NAME`.
    Private(String),
    /// More of a long command that is not a message: not sent.
    Skip,
}

/// Cuts piped input into lines, holding at most one message's worth of an
/// unfinished line: a line that grows past [`MAX_TEXT_BYTES`] is sent in parts
/// as it arrives. Each byte is looked at once.
#[derive(Debug)]
pub struct PipeLines {
    /// The unfinished line (after its head, once it is [`Continuing`]).
    text: String,
    /// An incomplete UTF-8 sequence at the end of the last read.
    utf8: Vec<u8>,
    continuing: Continuing,
}

impl Default for PipeLines {
    fn default() -> Self {
        Self::new()
    }
}

impl PipeLines {
    /// Nothing read yet.
    pub fn new() -> Self {
        PipeLines {
            text: String::new(),
            utf8: Vec::new(),
            continuing: Continuing::No,
        }
    }

    /// Bytes read from the pipe; returns the lines and parts they complete.
    /// Invalid UTF-8 becomes U+FFFD.
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<Piped> {
        let mut out = Vec::new();
        let mut scan_from = self.text.len();
        self.decode(bytes);
        while let Some(i) = self.text[scan_from..].find('\n') {
            let mut line: String = self.text.drain(..scan_from + i + 1).collect();
            line.pop();
            if line.ends_with('\r') {
                line.pop();
            }
            self.line_end(line, &mut out);
            scan_from = 0;
        }
        while self.text.len() > MAX_TEXT_BYTES {
            self.part(&mut out);
        }
        out
    }

    /// End of input: the unfinished line, if any.
    pub fn finish(&mut self) -> Vec<Piped> {
        let mut out = Vec::new();
        if !self.utf8.is_empty() {
            self.utf8.clear();
            self.text.push(char::REPLACEMENT_CHARACTER);
        }
        if !self.text.is_empty() || self.continuing != Continuing::No {
            let line = std::mem::take(&mut self.text);
            self.line_end(line, &mut out);
        }
        out
    }

    fn decode(&mut self, bytes: &[u8]) {
        if self.utf8.is_empty() {
            self.decode_all(bytes);
        } else {
            let mut joined = std::mem::take(&mut self.utf8);
            joined.extend_from_slice(bytes);
            self.decode_all(&joined);
        }
    }

    fn decode_all(&mut self, mut rest: &[u8]) {
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    self.text.push_str(s);
                    return;
                }
                Err(e) => {
                    let good = e.valid_up_to();
                    // The first `good` bytes were just found valid.
                    self.text
                        .push_str(std::str::from_utf8(&rest[..good]).unwrap_or_default());
                    match e.error_len() {
                        Some(n) => {
                            self.text.push(char::REPLACEMENT_CHARACTER);
                            rest = &rest[good + n..];
                        }
                        None => {
                            self.utf8 = rest[good..].to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    fn line_end(&mut self, line: String, out: &mut Vec<Piped>) {
        let text = line.trim_end();
        match std::mem::replace(&mut self.continuing, Continuing::No) {
            Continuing::No => out.push(Piped::Line(line)),
            Continuing::Skip => {}
            Continuing::Say if !text.trim().is_empty() => {
                out.push(Piped::Part(Outgoing::Say(text.to_string())))
            }
            Continuing::Private(to) if !text.trim().is_empty() => {
                out.push(Piped::Part(Outgoing::Private {
                    to,
                    text: text.to_string(),
                }))
            }
            Continuing::Say | Continuing::Private(_) => {}
        }
    }

    /// The unfinished line is longer than the limit: its head decides what it
    /// is, and one part of it is sent.
    fn part(&mut self, out: &mut Vec<Piped>) {
        if self.continuing == Continuing::No {
            let (continuing, head) = head_of(&self.text);
            if continuing == Continuing::Skip {
                let (end, _) = cut(&self.text, MAX_TEXT_BYTES);
                out.push(Piped::Line(self.text[..end].to_string()));
                self.text.clear();
                self.continuing = Continuing::Skip;
                return;
            }
            self.text.drain(..head);
            self.continuing = continuing;
            if self.text.len() <= MAX_TEXT_BYTES {
                return;
            }
        }
        let (end, next) = cut(&self.text, MAX_TEXT_BYTES);
        let part = self.text[..end].trim_end().to_string();
        self.text.drain(..next);
        if part.trim().is_empty() {
            return;
        }
        match &self.continuing {
            Continuing::Say => out.push(Piped::Part(Outgoing::Say(part))),
            Continuing::Private(to) => out.push(Piped::Part(Outgoing::Private {
                to: to.clone(),
                text: part,
            })),
            Continuing::No | Continuing::Skip => {}
        }
    }
}

/// What a long line is, from its start, and the length of its head: `//text`
/// says `/text`, `/msg NAME text` is private, another `/` command is not a
/// message, anything else is said.
fn head_of(line: &str) -> (Continuing, usize) {
    if line.starts_with("//") {
        return (Continuing::Say, 1);
    }
    if let Some(args) = line.strip_prefix("/msg ") {
        let args_at = line.len() - args.len();
        let name_at = args_at + (args.len() - args.trim_start().len());
        let rest = &line[name_at..];
        if let Some(len) = rest.find(char::is_whitespace) {
            if len <= MAX_NAME_BYTES {
                let to = rest[..len].to_string();
                let after = &rest[len..];
                let text_at = name_at + len + (after.len() - after.trim_start().len());
                return (Continuing::Private(to), text_at);
            }
        }
        return (Continuing::Skip, 0);
    }
    if line.starts_with('/') {
        return (Continuing::Skip, 0);
    }
    (Continuing::Say, 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn said(p: &Piped) -> &str {
        match p {
            Piped::Part(Outgoing::Say(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn short_text_is_one_part() {
        assert_eq!(split_text("hello"), ["hello"]);
        assert!(split_text("   ").is_empty());
        let exact = "x".repeat(MAX_TEXT_BYTES);
        assert_eq!(split_text(&exact), [exact.as_str()]);
    }

    #[test]
    fn split_at_the_last_space_before_the_limit() {
        let words: Vec<String> = (0..300).map(|i| format!("w{i:04}")).collect();
        let text = words.join(" ");
        let parts = split_text(&text);
        assert!(parts.len() > 1);
        for p in &parts {
            assert!(p.len() <= MAX_TEXT_BYTES, "{}", p.len());
            assert!(!p.starts_with(' ') && !p.ends_with(' '));
        }
        assert_eq!(parts.join(" "), text, "no word is cut or lost");
    }

    #[test]
    fn without_spaces_split_at_a_grapheme_boundary() {
        // `é` as e + U+0301 (3 bytes): never cut between the two.
        let text = "e\u{301}".repeat(700);
        let parts = split_text(&text);
        assert_eq!(parts.concat(), text);
        for p in &parts {
            assert!(p.len() <= MAX_TEXT_BYTES);
            assert!(p.starts_with('e') && p.ends_with('\u{301}'), "{p:?}");
        }
        // One cluster longer than the limit: cut at a character boundary.
        let huge = format!("a{}", "\u{301}".repeat(600));
        let parts = split_text(&huge);
        assert_eq!(parts.concat(), huge);
        assert!(parts.iter().all(|p| p.len() <= MAX_TEXT_BYTES));
    }

    #[test]
    fn pipe_lines_and_a_split_utf8_character() {
        let mut p = PipeLines::new();
        let bytes = "hi\r\n你好\nrest".as_bytes();
        let mut out = Vec::new();
        for b in bytes {
            out.extend(p.feed(&[*b]));
        }
        assert_eq!(out, [Piped::Line("hi".into()), Piped::Line("你好".into())]);
        assert_eq!(p.finish(), [Piped::Line("rest".into())]);
        assert!(p.finish().is_empty());
        let mut p = PipeLines::new();
        assert_eq!(p.feed(b"a\xffb\n"), [Piped::Line("a\u{fffd}b".into())]);
    }

    #[test]
    fn an_endless_line_is_sent_in_parts_as_it_arrives() {
        let mut p = PipeLines::new();
        let mut out = Vec::new();
        let mut fed = String::new();
        for i in 0..2000 {
            let w = format!("w{i} ");
            fed.push_str(&w);
            out.extend(p.feed(w.as_bytes()));
            assert!(p.text.len() <= MAX_TEXT_BYTES, "holds one message at most");
        }
        assert!(out.len() >= 10, "parts went out before the line ended");
        out.extend(p.feed(b"end\n"));
        fed.push_str("end");
        let parts: Vec<&str> = out.iter().map(said).collect();
        assert!(parts.iter().all(|t| t.len() <= MAX_TEXT_BYTES));
        assert_eq!(parts.join(" "), fed);
        // The next line is an ordinary one again.
        assert_eq!(p.feed(b"/who\n"), [Piped::Line("/who".into())]);
        // Zero bytes (no newline ever): bounded too.
        let mut p = PipeLines::new();
        for _ in 0..100 {
            p.feed(&[0u8; 4096]);
            assert!(p.text.len() <= MAX_TEXT_BYTES);
        }
    }

    #[test]
    fn long_commands_keep_their_meaning() {
        let long = "x".repeat(1500);
        let mut p = PipeLines::new();
        // A whole line is left to the parser (which splits it the same way);
        // here it arrives in pieces, so it is split before its end is seen.
        let long_line = |head: &str| format!("{head}{long}");
        let feed = |p: &mut PipeLines, line: String| {
            let mut out = p.feed(line.as_bytes());
            out.extend(p.feed(b"\n"));
            out
        };
        let out = feed(&mut p, long_line("/msg  bob  "));
        let texts: Vec<(String, String)> = out
            .iter()
            .map(|o| match o {
                Piped::Part(Outgoing::Private { to, text }) => (to.clone(), text.clone()),
                o => panic!("{o:?}"),
            })
            .collect();
        assert_eq!(texts.len(), 2);
        assert!(texts.iter().all(|(to, _)| to == "bob"));
        assert_eq!(format!("{}{}", texts[0].1, texts[1].1), long);
        let out = feed(&mut p, long_line("//"));
        let parts: Vec<&str> = out.iter().map(said).collect();
        assert_eq!(parts.concat(), format!("/{long}"));
        let out = feed(&mut p, long_line("/frob "));
        assert_eq!(out.len(), 1);
        assert!(matches!(&out[0], Piped::Line(l) if l.starts_with("/frob")));
    }
}
