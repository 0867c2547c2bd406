//! Asking for a name before the login. On a terminal the name is typed with
//! the line editor (arrows, Backspace, Home/End work; Ctrl-D ends quietly on a
//! new line, Ctrl-C with 130); through a pipe it is the first line, read byte
//! by byte so that no later input is taken from stdin.

use crate::client::editor::{Action, Editor};
use crate::client::render::{self, Lang};
use crate::client::{code, term};
use crate::error::{Error, Result};
use nix::sys::termios::LocalFlags;
use std::io::{self, Write};

/// What the user answered.
pub enum NameInput {
    /// A name (trimmed).
    Name(String),
    /// No name: end quietly with this exit code.
    Quit(u8),
}

/// Reads a name from stdin: with the prompt and the line editor on a
/// terminal, without either otherwise. An empty name is asked again on a
/// terminal.
pub fn read_name(lang: Lang, interactive: bool) -> Result<NameInput> {
    if !interactive {
        return read_line().map(NameInput::Name);
    }
    loop {
        match edit_name(lang)? {
            NameInput::Name(n) if n.is_empty() => {}
            other => return Ok(other),
        }
    }
}

/// The first line of stdin, byte by byte.
fn read_line() -> Result<String> {
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(term::stdin_fd(), &mut b) {
            Ok(0) if bytes.is_empty() => {
                return Err(Error::msg("read a name from", "stdin", "end of input"))
            }
            Ok(0) => break,
            Ok(_) if b[0] == b'\n' => break,
            Ok(_) => bytes.push(b[0]),
            Err(nix::errno::Errno::EINTR) => {}
            Err(e) => return Err(Error::io("read a name from", "stdin", e.into())),
        }
    }
    Ok(String::from_utf8_lossy(&bytes).trim().to_string())
}

/// One name typed at the prompt with the line editor. The terminal is in the
/// chat mode without signals meanwhile (Ctrl-C arrives as a key, so the modes
/// are always given back), and restored before returning.
fn edit_name(lang: Lang) -> Result<NameInput> {
    let stdin = term::stdin_fd();
    let modes =
        term::TermModes::read(stdin).map_err(|e| Error::io("read the modes of", "stdin", e))?;
    let mut keys = modes.chat.clone();
    keys.local_flags.remove(LocalFlags::ISIG);
    nix::sys::termios::tcsetattr(stdin, nix::sys::termios::SetArg::TCSADRAIN, &keys)
        .map_err(|e| Error::io("set the modes of", "stdin", e.into()))?;
    let answer = edit_loop(lang);
    let _ = modes.restore(stdin);
    answer
}

fn edit_loop(lang: Lang) -> Result<NameInput> {
    let prompt = render::name_prompt(lang);
    let mut editor = Editor::new();
    draw(&prompt, &editor);
    let mut buf = [0u8; 256];
    loop {
        let n = match nix::unistd::read(term::stdin_fd(), &mut buf) {
            Ok(0) => return Ok(end_line(NameInput::Quit(code::OK))),
            Ok(n) => n,
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(Error::io("read a name from", "stdin", e.into())),
        };
        for action in editor.feed(&buf[..n]) {
            match action {
                Action::Submit(name) => {
                    return Ok(end_line(NameInput::Name(name.trim().to_string())))
                }
                Action::Eof => return Ok(end_line(NameInput::Quit(code::OK))),
                Action::Interrupt => return Ok(end_line(NameInput::Quit(code::SIGINT))),
                Action::Redraw | Action::Complete => {}
            }
        }
        draw(&prompt, &editor);
    }
}

/// Draws the prompt and the name being typed on stderr, the cursor in place.
fn draw(prompt: &str, editor: &Editor) {
    let line: Vec<char> = editor.text().chars().collect();
    let pw = render::str_width(prompt);
    let cols = term::columns(term::stdout_fd());
    let (text, col) = render::input_view(&line, editor.cursor(), pw, cols);
    let mut s = format!("\r\x1b[K{prompt}{text}\r");
    if pw + col > 0 {
        s.push_str(&format!("\x1b[{}C", pw + col));
    }
    let mut err = io::stderr().lock();
    let _ = err.write_all(s.as_bytes()).and_then(|_| err.flush());
}

/// Ends the prompt's line (the answer stays on the screen) and returns `answer`.
fn end_line(answer: NameInput) -> NameInput {
    let mut err = io::stderr().lock();
    let _ = err.write_all(b"\r\n").and_then(|_| err.flush());
    answer
}
