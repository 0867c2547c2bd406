//! The client's known-servers file: trust on first use, as ssh's known_hosts.
//!
//! One entry a line, `SERVER FINGERPRINT`: the `--server` text exactly as
//! given (no spaces), one or more spaces, and the key's fingerprint
//! (`SHA256:…`). Blank lines and lines starting with `#` are ignored. A
//! server is known when any of its lines has the key; otherwise its first
//! line is the one that does not match. A malformed line is reported with its
//! number and otherwise ignored. Records are appended in one `write(2)`
//! under an exclusive `flock`, so concurrent clients never interleave them;
//! the file is created with mode 0600 and its directory with mode 0700.

use super::{create_parent_dir, data_file, Fingerprint};
use crate::error::{Error, Result};
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// The known-servers file at one path.
#[derive(Debug, Clone)]
pub struct KnownServers {
    path: PathBuf,
}

/// What the file says about one server and key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// A line records this server with this key.
    Known,
    /// No line names this server.
    Unknown,
    /// The server's first line records another key.
    Mismatch {
        /// The key recorded there.
        recorded: Fingerprint,
        /// Its line number, from 1.
        line: usize,
    },
}

/// A line that is not an entry (it is ignored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Malformed {
    /// Its line number, from 1.
    pub line: usize,
    /// What is wrong with it.
    pub reason: String,
}

/// The result of reading the file: the verdict and the lines it ignored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lookup {
    /// What the file says about the server and key.
    pub verdict: Verdict,
    /// Malformed lines, for the caller to report.
    pub malformed: Vec<Malformed>,
}

impl KnownServers {
    /// The file at `path` (nothing is read or created yet).
    pub fn new(path: PathBuf) -> KnownServers {
        KnownServers { path }
    }

    /// The default file: `$XDG_DATA_HOME/udpchat/known_servers`, or
    /// `~/.local/share/udpchat/known_servers`.
    pub fn default_path() -> Result<PathBuf> {
        data_file("known_servers")
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What the file says about `server` with `key`. A missing file (also
    /// one that cannot exist: a path through a regular file) knows no server;
    /// one that cannot be read is an error (never taken as empty, so that a
    /// recorded key is not silently skipped).
    pub fn check(&self, server: &str, key: &Fingerprint) -> Result<Lookup> {
        let missing = |e: &std::io::Error| {
            e.kind() == ErrorKind::NotFound || e.raw_os_error() == Some(nix::libc::ENOTDIR)
        };
        match std::fs::read(&self.path) {
            Ok(text) => Ok(lookup(&text, server, key)),
            Err(e) if missing(&e) => Ok(Lookup {
                verdict: Verdict::Unknown,
                malformed: Vec::new(),
            }),
            Err(e) => Err(Error::io("read", self.path.display(), e)),
        }
    }

    /// Records `server` with `key`, creating the file (0600) and its
    /// directory (0700) if needed. Under the lock the file is read again and
    /// the verdict returned: `Unknown` means the entry was appended now;
    /// `Known` means another client had appended it (nothing written);
    /// `Mismatch` means another client recorded a different key meanwhile
    /// (nothing written: treat it as a mismatch). An error means the key was
    /// not recorded; the caller warns (see [`KnownServers::not_recorded_message`]).
    pub fn record(&self, server: &str, key: &Fingerprint) -> Result<Verdict> {
        if server.is_empty()
            || server.starts_with('#')
            || server.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(Error::msg(
                "record a key for",
                server,
                "a server text with spaces, control characters or a leading '#' cannot be recorded",
            ));
        }
        let fail = |e: std::io::Error| Error::io("write", self.path.display(), e);
        create_parent_dir(&self.path)?;
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .mode(0o600)
            .open(&self.path)
            .map_err(fail)?;
        let mut file =
            Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| fail(errno.into()))?;
        let mut text = Vec::new();
        file.read_to_end(&mut text).map_err(fail)?;
        let verdict = lookup(&text, server, key).verdict;
        if verdict != Verdict::Unknown {
            return Ok(verdict);
        }
        let mut entry = String::new();
        if text.last().is_some_and(|&b| b != b'\n') {
            entry.push('\n');
        }
        entry.push_str(&format!("{server} {key}\n"));
        append_once(&file, entry.as_bytes()).map_err(fail)?;
        Ok(Verdict::Unknown)
    }

    /// Said on stderr after [`KnownServers::record`] appended an entry.
    pub fn recorded_message(&self, server: &str, key: &Fingerprint) -> String {
        format!(
            "recorded the key of {server} ({key}) in '{}'",
            self.path.display()
        )
    }

    /// Said on stderr when [`KnownServers::record`] failed with `err`.
    pub fn not_recorded_message(&self, server: &str, key: &Fingerprint, err: &Error) -> String {
        format!("warning: the key of {server} ({key}) is not recorded: {err}")
    }

    /// Said on stderr for each malformed line of a [`Lookup`].
    pub fn malformed_message(&self, m: &Malformed) -> String {
        format!(
            "warning: ignoring line {} of '{}': {}",
            m.line,
            self.path.display(),
            m.reason
        )
    }

    /// The error that refuses a server whose key is not the one recorded at
    /// `line`: both fingerprints, and the line to remove if the change was
    /// intended.
    pub fn mismatch_error(
        &self,
        server: &str,
        key: &Fingerprint,
        recorded: &Fingerprint,
        line: usize,
    ) -> Error {
        let file = self.path.display();
        Error::msg(
            "trust",
            server,
            format!(
                "its key is {key}, but line {line} of '{file}' records {recorded}; \
                 if the server's key was changed on purpose, remove line {line} from '{file}'"
            ),
        )
    }
}

/// The error that refuses a server whose key is not the one pinned with
/// `--server-key`.
pub fn pinned_mismatch_error(server: &str, key: &Fingerprint, pinned: &Fingerprint) -> Error {
    Error::msg(
        "trust",
        server,
        format!("its key is {key}, not {pinned} as given with --server-key"),
    )
}

/// Writes `bytes` with exactly one `write(2)` (the file is in append mode);
/// a short write is an error.
fn append_once(mut file: &File, bytes: &[u8]) -> std::io::Result<()> {
    let n = file.write(bytes)?;
    if n != bytes.len() {
        return Err(std::io::Error::new(ErrorKind::WriteZero, "short write"));
    }
    file.sync_data()
}

/// Reads the file's text for `server` and `key`.
fn lookup(text: &[u8], server: &str, key: &Fingerprint) -> Lookup {
    let mut malformed = Vec::new();
    let mut first = None;
    let mut known = false;
    for (i, line) in text.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        match parse_line(line) {
            Ok(None) => {}
            Ok(Some((s, fp))) if s == server => {
                known |= fp == *key;
                first.get_or_insert((fp, number));
            }
            Ok(Some(_)) => {}
            Err(reason) => malformed.push(Malformed {
                line: number,
                reason,
            }),
        }
    }
    let verdict = match (known, first) {
        (true, _) => Verdict::Known,
        (false, None) => Verdict::Unknown,
        (false, Some((recorded, line))) => Verdict::Mismatch { recorded, line },
    };
    Lookup { verdict, malformed }
}

/// One line: `None` for a blank line or a comment, else the server text and
/// the fingerprint, or why it is malformed.
fn parse_line(line: &[u8]) -> std::result::Result<Option<(&str, Fingerprint)>, String> {
    let line = std::str::from_utf8(line).map_err(|_| "it is not UTF-8".to_string())?;
    let trimmed = line.trim();
    if trimmed.is_empty() || trimmed.starts_with('#') {
        return Ok(None);
    }
    let mut fields = trimmed.split_whitespace();
    match (fields.next(), fields.next(), fields.next()) {
        (Some(server), Some(fp), None) => Ok(Some((server, fp.parse()?))),
        _ => Err("expected 'SERVER SHA256:…'".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::file_mode;
    use std::fs;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint::of(&[n; 32])
    }

    #[test]
    fn lookup_finds_known_unknown_and_mismatch() {
        let text = format!(
            "# comment\n\n127.0.0.1:8888 {}\nchat.example:8888   {}\n  \nchat.example:8888 {}\n",
            fp(1),
            fp(2),
            fp(3)
        );
        let l = |s, k| lookup(text.as_bytes(), s, &fp(k));
        assert_eq!(l("127.0.0.1:8888", 1).verdict, Verdict::Known);
        assert_eq!(
            l("127.0.0.1:8888", 9).verdict,
            Verdict::Mismatch {
                recorded: fp(1),
                line: 3
            }
        );
        // Any of a server's lines makes its key known; the first is the one named.
        assert_eq!(l("chat.example:8888", 3).verdict, Verdict::Known);
        assert_eq!(
            l("chat.example:8888", 1).verdict,
            Verdict::Mismatch {
                recorded: fp(2),
                line: 4
            }
        );
        // Keyed by the text as given: another spelling is another server.
        assert_eq!(l("localhost:8888", 1).verdict, Verdict::Unknown);
        assert_eq!(l("127.0.0.1:888", 1).verdict, Verdict::Unknown);
        assert!(l("127.0.0.1:8888", 1).malformed.is_empty());
        assert_eq!(lookup(b"", "a:1", &fp(1)).verdict, Verdict::Unknown);
    }

    #[test]
    fn malformed_lines_are_numbered_and_ignored() {
        let mut bytes = format!("a:1\na:1 {} extra\na:1 SHA256:nope\n", fp(1)).into_bytes();
        bytes.extend_from_slice(b"\xff\n"); // line 4 is not UTF-8
        bytes.extend_from_slice(format!("b:2 {}\na:1 {}", fp(2), fp(1)).as_bytes());
        let l = lookup(&bytes, "a:1", &fp(1));
        assert_eq!(l.verdict, Verdict::Known);
        let lines: Vec<usize> = l.malformed.iter().map(|m| m.line).collect();
        assert_eq!(lines, [1, 2, 3, 4]);
        assert_eq!(l.malformed[0].reason, "expected 'SERVER SHA256:…'");
        assert!(l.malformed[2].reason.contains("is not a key fingerprint"));
        assert_eq!(l.malformed[3].reason, "it is not UTF-8");
        let ks = KnownServers::new("/k/ks".into());
        assert_eq!(
            ks.malformed_message(&l.malformed[0]),
            "warning: ignoring line 1 of '/k/ks': expected 'SERVER SHA256:…'"
        );
    }

    #[test]
    fn first_use_records_then_knows() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("new/dir/known_servers");
        let ks = KnownServers::new(path.clone());
        let unknown = ks.check("s:1", &fp(1)).unwrap();
        assert_eq!(unknown.verdict, Verdict::Unknown);
        assert!(!path.exists(), "check creates nothing");
        assert_eq!(ks.record("s:1", &fp(1)).unwrap(), Verdict::Unknown);
        assert_eq!(file_mode(&path), 0o600);
        assert_eq!(file_mode(path.parent().unwrap()), 0o700);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("s:1 {}\n", fp(1))
        );
        assert_eq!(ks.check("s:1", &fp(1)).unwrap().verdict, Verdict::Known);
        // Recording again writes nothing and says so.
        assert_eq!(ks.record("s:1", &fp(1)).unwrap(), Verdict::Known);
        assert_eq!(
            ks.record("s:1", &fp(2)).unwrap(),
            Verdict::Mismatch {
                recorded: fp(1),
                line: 1
            }
        );
        assert_eq!(ks.record("t:2", &fp(2)).unwrap(), Verdict::Unknown);
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("s:1 {}\nt:2 {}\n", fp(1), fp(2))
        );
    }

    #[test]
    fn a_record_starts_on_its_own_line() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ks");
        fs::write(&path, "# no final newline").unwrap();
        let ks = KnownServers::new(path.clone());
        ks.record("s:1", &fp(1)).unwrap();
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            format!("# no final newline\ns:1 {}\n", fp(1))
        );
        assert_eq!(ks.check("s:1", &fp(1)).unwrap().verdict, Verdict::Known);
    }

    #[test]
    fn concurrent_records_never_interleave() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("ks");
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let ks = KnownServers::new(path.clone());
                s.spawn(move || {
                    for i in 0..25u8 {
                        ks.record(&format!("s{t}:{i}"), &fp(t * 25 + i)).unwrap();
                    }
                });
            }
        });
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.lines().count(), 100);
        let ks = KnownServers::new(path);
        for t in 0..4u8 {
            for i in 0..25u8 {
                let l = ks.check(&format!("s{t}:{i}"), &fp(t * 25 + i)).unwrap();
                assert_eq!(
                    l,
                    Lookup {
                        verdict: Verdict::Known,
                        malformed: vec![]
                    }
                );
            }
        }
    }

    #[test]
    fn unwritable_or_unreadable_files_are_errors_for_the_caller() {
        let tmp = tempfile::tempdir().unwrap();
        // A directory where the file should be: cannot be read or written.
        let ks = KnownServers::new(tmp.path().to_path_buf());
        let e = ks.check("s:1", &fp(1)).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot read '{}': Is a directory", tmp.path().display())
        );
        let e = ks.record("s:1", &fp(1)).unwrap_err();
        assert!(e
            .to_string()
            .starts_with(&format!("cannot write '{}': ", tmp.path().display())));
        assert_eq!(
            ks.not_recorded_message("s:1", &fp(1), &e),
            format!("warning: the key of s:1 ({}) is not recorded: {e}", fp(1))
        );
        // A file in the way of the directory.
        let file = tmp.path().join("f");
        fs::write(&file, "").unwrap();
        let ks = KnownServers::new(file.join("ks"));
        let e = ks.record("s:1", &fp(1)).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("cannot create directory '{}': File exists", file.display())
        );
    }

    #[test]
    fn server_texts_that_would_break_the_file_are_not_recorded() {
        let tmp = tempfile::tempdir().unwrap();
        let ks = KnownServers::new(tmp.path().join("ks"));
        for bad in ["", "a b:1", "a\tb", "a\nb", "#a:1", "a\u{85}b"] {
            let e = ks.record(bad, &fp(1)).unwrap_err().to_string();
            assert!(e.contains("cannot be recorded"), "{bad:?}: {e}");
        }
        assert!(!tmp.path().join("ks").exists());
    }

    #[test]
    fn messages() {
        let ks = KnownServers::new("/h/.local/share/udpchat/known_servers".into());
        assert_eq!(
            ks.recorded_message("127.0.0.1:8888", &fp(1)),
            format!(
                "recorded the key of 127.0.0.1:8888 ({}) in '/h/.local/share/udpchat/known_servers'",
                fp(1)
            )
        );
        assert_eq!(
            ks.mismatch_error("127.0.0.1:8888", &fp(2), &fp(1), 3)
                .to_string(),
            format!(
                "cannot trust '127.0.0.1:8888': its key is {}, but line 3 of \
                 '/h/.local/share/udpchat/known_servers' records {}; if the server's key was \
                 changed on purpose, remove line 3 from '/h/.local/share/udpchat/known_servers'",
                fp(2),
                fp(1)
            )
        );
        assert_eq!(
            pinned_mismatch_error("s:1", &fp(2), &fp(1)).to_string(),
            format!(
                "cannot trust 's:1': its key is {}, not {} as given with --server-key",
                fp(2),
                fp(1)
            )
        );
    }
}
