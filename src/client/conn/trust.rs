//! The caller's side of [`super::Event::VerifyKey`]: the server's key against
//! a `--server-key` fingerprint or the known-servers file (trust on first
//! use), with the trust module's messages in English and their Chinese
//! wording here. This part reads and writes the file, so it is outside the
//! pure machine.

use crate::client::lang::{error_text, tr, Lang, Wording};
use crate::error::{Error, Result};
use crate::trust::{pinned_mismatch_error, Fingerprint, KnownServers, Malformed, Verdict};

/// What the key is checked against.
#[derive(Debug, Clone)]
pub enum Pin {
    /// `--server-key FINGERPRINT`: that key and no other; nothing is written.
    Fingerprint(Fingerprint),
    /// The known-servers file: recorded on first use, then required.
    KnownServers(KnownServers),
}

/// The trust of one server, named by its `--server` text.
#[derive(Debug, Clone)]
pub struct ServerTrust {
    server: String,
    pin: Pin,
    lang: Lang,
}

impl ServerTrust {
    /// The trust of `server` (the `--server` text as given) under `pin`,
    /// saying things in English.
    pub fn new(server: &str, pin: Pin) -> ServerTrust {
        ServerTrust {
            server: server.to_string(),
            pin,
            lang: Lang::En,
        }
    }

    /// The same, saying things in `lang`.
    pub fn in_lang(mut self, lang: Lang) -> ServerTrust {
        self.lang = lang;
        self
    }

    /// Checks the key of a first handshake. `Ok` holds the lines to say on
    /// stderr (ignored malformed lines, "recorded …", or the warning that
    /// the key could not be recorded): the key is trusted. `Err` is the
    /// refusal to print before exiting 1 (a key other than the pinned or
    /// recorded one, or a file that cannot be read).
    pub fn check(&self, key: &[u8; 32]) -> Result<Vec<String>> {
        let fp = Fingerprint::of(key);
        let file = match &self.pin {
            Pin::Fingerprint(pinned) if *pinned == fp => return Ok(Vec::new()),
            Pin::Fingerprint(pinned) => return Err(self.pinned_mismatch(&fp, pinned)),
            Pin::KnownServers(file) => file,
        };
        let lookup = file
            .check(&self.server, &fp)
            .map_err(|e| self.translated(e))?;
        let mut say: Vec<String> = lookup
            .malformed
            .iter()
            .map(|m| self.malformed(file, m))
            .collect();
        let verdict = match lookup.verdict {
            Verdict::Unknown => match file.record(&self.server, &fp) {
                Ok(Verdict::Unknown) => {
                    say.push(self.recorded(file, &fp));
                    Verdict::Known
                }
                Ok(raced) => raced,
                Err(e) => {
                    say.push(self.not_recorded(file, &fp, &e));
                    Verdict::Known
                }
            },
            v => v,
        };
        match verdict {
            Verdict::Mismatch { recorded, line } => Err(self.mismatch(file, &fp, &recorded, line)),
            Verdict::Known | Verdict::Unknown => Ok(say),
        }
    }

    /// An error of the file's, in the client's language.
    fn translated(&self, e: Error) -> Error {
        match self.lang {
            Lang::En => e,
            lang => Error::plain(error_text(lang, &e)),
        }
    }

    fn recorded(&self, file: &KnownServers, key: &Fingerprint) -> String {
        match self.lang.wording() {
            Wording::En => file.recorded_message(&self.server, key),
            Wording::Zh => tr(
                self.lang,
                "已记录 {0} 的密钥 ({1}), 在 '{2}'",
                &[&self.server, key, &file.path().display()],
            ),
        }
    }

    fn not_recorded(&self, file: &KnownServers, key: &Fingerprint, e: &Error) -> String {
        match self.lang.wording() {
            Wording::En => file.not_recorded_message(&self.server, key, e),
            Wording::Zh => tr(
                self.lang,
                "警告: {0} 的密钥 ({1}) 没有记录: {2}",
                &[&self.server, key, &error_text(self.lang, e)],
            ),
        }
    }

    fn malformed(&self, file: &KnownServers, m: &Malformed) -> String {
        match self.lang.wording() {
            Wording::En => file.malformed_message(m),
            Wording::Zh => tr(
                self.lang,
                "警告: 忽略 '{0}' 的第 {1} 行: {2}",
                &[&file.path().display(), &m.line, &m.reason],
            ),
        }
    }

    fn mismatch(
        &self,
        file: &KnownServers,
        key: &Fingerprint,
        recorded: &Fingerprint,
        line: usize,
    ) -> Error {
        match self.lang.wording() {
            Wording::En => file.mismatch_error(&self.server, key, recorded, line),
            Wording::Zh => Error::plain(tr(
                self.lang,
                "无法信任 '{0}': 它的密钥是 {1}, 但 '{2}' 的第 {3} 行记录的是 {4}; \
                 如果服务器的密钥是有意更换的, 请从 '{2}' 删除第 {3} 行",
                &[&self.server, key, &file.path().display(), &line, recorded],
            )),
        }
    }

    fn pinned_mismatch(&self, key: &Fingerprint, pinned: &Fingerprint) -> Error {
        match self.lang.wording() {
            Wording::En => pinned_mismatch_error(&self.server, key, pinned),
            Wording::Zh => Error::plain(tr(
                self.lang,
                "无法信任 '{0}': 它的密钥是 {1}, 不是 --server-key 给出的 {2}",
                &[&self.server, key, pinned],
            )),
        }
    }

    /// The refusal of [`super::End::KeyChanged`]: the server came back with
    /// `key` instead of `pinned`, the key trusted at the first handshake.
    pub fn changed_error(&self, key: &[u8; 32], pinned: &[u8; 32]) -> Error {
        let (fp, was) = (Fingerprint::of(key), Fingerprint::of(pinned));
        match &self.pin {
            Pin::Fingerprint(given) => self.pinned_mismatch(&fp, given),
            Pin::KnownServers(file) => match file.check(&self.server, &fp).map(|l| l.verdict) {
                Ok(Verdict::Mismatch { recorded, line }) => {
                    self.mismatch(file, &fp, &recorded, line)
                }
                // Not recorded (the file could not be written) or unreadable now.
                _ => match self.lang.wording() {
                    Wording::En => Error::msg(
                        "trust",
                        &self.server,
                        format!("its key is {fp}, not {was} as when this client connected"),
                    ),
                    Wording::Zh => Error::plain(tr(
                        self.lang,
                        "无法信任 '{0}': 它的密钥是 {1}, 不是本客户端连接时的 {2}",
                        &[&self.server, &fp, &was],
                    )),
                },
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> [u8; 32] {
        [n; 32]
    }

    #[test]
    fn a_fingerprint_pin_takes_its_key_only_and_writes_nothing() {
        let t = ServerTrust::new("s:1", Pin::Fingerprint(Fingerprint::of(&key(1))));
        assert_eq!(t.check(&key(1)).unwrap(), Vec::<String>::new());
        let e = t.check(&key(2)).unwrap_err().to_string();
        assert!(e.contains("as given with --server-key"), "{e}");
        assert_eq!(t.changed_error(&key(2), &key(1)).to_string(), e);
    }

    #[test]
    fn first_use_records_then_a_changed_key_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let file = KnownServers::new(tmp.path().join("ks"));
        let t = ServerTrust::new("s:1", Pin::KnownServers(file.clone()));
        let fp = Fingerprint::of(&key(1));
        assert_eq!(
            t.check(&key(1)).unwrap(),
            [file.recorded_message("s:1", &fp)]
        );
        assert_eq!(t.check(&key(1)).unwrap(), Vec::<String>::new(), "known");
        let e = t.check(&key(2)).unwrap_err().to_string();
        assert!(e.contains("remove line 1"), "{e}");
        assert_eq!(t.changed_error(&key(2), &key(1)).to_string(), e);
    }

    #[test]
    fn a_changed_key_that_was_never_recorded_is_refused_too() {
        let tmp = tempfile::tempdir().unwrap();
        let t = ServerTrust::new(
            "s:1",
            Pin::KnownServers(KnownServers::new(tmp.path().join("ks"))),
        );
        let e = t.changed_error(&key(2), &key(1)).to_string();
        assert!(e.starts_with("cannot trust 's:1': its key is "), "{e}");
        assert!(e.contains("as when this client connected"), "{e}");
        assert!(!tmp.path().join("ks").exists(), "nothing recorded");
    }
}
