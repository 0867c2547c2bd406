//! File names as coreutils prints them in a UTF-8 locale (`shell-escape-always`):
//! `'plain'`, `'it'\''s'`, `'miss'$'\n''ing'`, `'bad'$'\377'`. Every name is one
//! shell word that means exactly that name, so a newline cannot split a line and
//! two different names never print the same.
//!
//! [`inner`] gives the text between the outer quotes, because the crate's
//! [`Error`](crate::error::Error) adds those itself; [`quoted`] gives the whole word.
//! (Where the name holds a single quote and nothing else special, cp picks double
//! quotes, `"it's"`; pcopy keeps one style.)

use std::ffi::OsStr;
use std::fmt::Write as _;
use std::os::unix::ffi::OsStrExt;

/// The name quoted, outer quotes included.
pub fn quoted(name: &OsStr) -> String {
    format!("'{}'", inner(name))
}

/// The name quoted, without the outer pair of single quotes.
pub fn inner(name: &OsStr) -> String {
    let mut out = String::new();
    let mut escaping = false;
    let mut bytes = name.as_bytes();
    while !bytes.is_empty() {
        let (valid, bad) = match std::str::from_utf8(bytes) {
            Ok(s) => (s, &[][..]),
            Err(e) => {
                let (ok, rest) = bytes.split_at(e.valid_up_to());
                let bad_len = e.error_len().unwrap_or(rest.len());
                // `ok` is the valid prefix, so this cannot fail.
                (std::str::from_utf8(ok).unwrap_or(""), &rest[..bad_len])
            }
        };
        for c in valid.chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                escape(&mut out, &mut escaping, c.encode_utf8(&mut buf).as_bytes());
            } else {
                if escaping {
                    out.push_str("''");
                    escaping = false;
                }
                if c == '\'' {
                    out.push_str("'\\''");
                } else {
                    out.push(c);
                }
            }
        }
        escape(&mut out, &mut escaping, bad);
        bytes = &bytes[valid.len() + bad.len()..];
    }
    // An open $'…' part is closed by the caller's closing quote.
    out
}

/// Appends `raw` (a control character's or invalid UTF-8's bytes) as a `$'…'`
/// escape, opening one unless already in it.
fn escape(out: &mut String, escaping: &mut bool, raw: &[u8]) {
    if raw.is_empty() {
        return;
    }
    if !*escaping {
        out.push_str("'$'");
        *escaping = true;
    }
    for &b in raw {
        match b {
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b => {
                let _ = write!(out, "\\{b:03o}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(bytes: &[u8]) -> String {
        quoted(OsStr::from_bytes(bytes))
    }

    #[test]
    fn names_are_quoted_as_cp_quotes_them() {
        assert_eq!(q(b"plain"), "'plain'");
        assert_eq!(q(b"sp ace"), "'sp ace'");
        assert_eq!(q(b""), "''");
        assert_eq!(q("é".as_bytes()), "'é'");
        assert_eq!(q(b"dollar$x\"q"), "'dollar$x\"q'");
        assert_eq!(q(b"it's"), "'it'\\''s'");
        assert_eq!(q(b"miss\ning"), "'miss'$'\\n''ing'");
        assert_eq!(q(b"tab\there"), "'tab'$'\\t''here'");
        assert_eq!(q(b"a\xffb"), "'a'$'\\377''b'");
        assert_eq!(q(b"\x7f"), "''$'\\177'");
        assert_eq!(q(b"end\n"), "'end'$'\\n'");
    }

    #[test]
    fn different_names_never_print_the_same() {
        assert_ne!(q(b"a\xff"), q(b"a\xfe"));
        assert_ne!(q(b"a\xff"), q("a\u{fffd}".as_bytes()));
    }
}
