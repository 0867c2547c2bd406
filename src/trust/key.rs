//! The server's long-term X25519 key and its key file.
//!
//! The file is two lines: [`KEY_FILE_HEADER`], then the standard base64 (with
//! padding) of the 32 secret bytes. It is created once, with mode 0600, by
//! writing and syncing a temporary file in the same directory and hard-linking
//! it to the key's name, which fails if that name exists: of two servers
//! starting at once, one links its key and the other loads that one; a crash
//! leaves at most a stray temporary file, never an empty or partial key. A key
//! file is never overwritten, and one that cannot be read, is malformed, or
//! lets group or others in is an error, never replaced.

use super::{create_parent_dir, data_file, Fingerprint};
use crate::error::{Error, Result};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::fmt;
use std::fs::{File, OpenOptions, Permissions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use x25519_dalek::{PublicKey, StaticSecret};

/// The first line of a key file, naming what the file is and its version.
pub const KEY_FILE_HEADER: &str = "udpchat-server-key-v1";

/// What `cannot OP 'FILE'` says when a key file is refused.
const LOAD: &str = "load key";
/// Larger than any well-formed key file.
const MAX_FILE_LEN: u64 = 256;

/// The server's long-term X25519 key pair. Its secret is wiped from memory
/// when the value is dropped, and `Debug` shows only the fingerprint.
pub struct ServerKey {
    secret: StaticSecret,
    public: PublicKey,
}

impl ServerKey {
    /// The default key file: `$XDG_DATA_HOME/udpchat/server.key`, or
    /// `~/.local/share/udpchat/server.key`.
    pub fn default_path() -> Result<PathBuf> {
        data_file("server.key")
    }

    /// The key pair of a given secret (for test vectors).
    pub fn from_secret(secret: [u8; 32]) -> ServerKey {
        let secret = StaticSecret::from(secret);
        let public = PublicKey::from(&secret);
        ServerKey { secret, public }
    }

    /// A new key from the OS random source.
    fn generate() -> Result<ServerKey> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::msg("generate", "a server key", e.to_string()))?;
        let key = ServerKey::from_secret(bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// The 32-byte public key.
    pub fn public(&self) -> &[u8; 32] {
        self.public.as_bytes()
    }

    /// The 32-byte secret, for the handshake and for keys derived from it.
    pub fn secret(&self) -> &[u8; 32] {
        self.secret.as_bytes()
    }

    /// The fingerprint of the public key, as `--fingerprint` prints it.
    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint::of(self.public())
    }

    /// Loads the key file at `path`; a missing file is an error too (its
    /// errno is ENOENT). The error names the file: `cannot load key 'FILE': …`.
    pub fn load(path: &Path) -> Result<ServerKey> {
        let fail = |e| Error::io(LOAD, path.display(), e);
        let mut file = File::open(path).map_err(fail)?;
        let meta = file.metadata().map_err(fail)?;
        let euid = nix::unistd::geteuid().as_raw();
        if let Some(why) = unsafe_file(meta.is_file(), meta.mode(), meta.uid(), euid) {
            return Err(Error::msg(LOAD, path.display(), why));
        }
        let mut text = Vec::new();
        Read::by_ref(&mut file)
            .take(MAX_FILE_LEN + 1)
            .read_to_end(&mut text)
            .map_err(fail)?;
        let parsed = parse(&text);
        text.fill(0);
        let secret = parsed.map_err(|why| {
            Error::msg(LOAD, path.display(), format!("malformed key file: {why}"))
        })?;
        Ok(ServerKey::from_secret(secret))
    }

    /// Loads the key file at `path`, or creates it with a new key if there
    /// is none (with its directory, mode 0700). Never overwrites a file.
    pub fn load_or_create(path: &Path) -> Result<ServerKey> {
        match ServerKey::load(path) {
            Err(e) if e.errno() == Some(nix::libc::ENOENT) => {}
            loaded => return loaded,
        }
        create_parent_dir(path)?;
        let key = ServerKey::generate()?;
        let fail = |e| Error::io("create key", path.display(), e);
        let tmp = TempFile::create(path).map_err(fail)?;
        let mut text = key_file_text(&key);
        let written = write_synced(&tmp.file, &text);
        text.fill(0);
        written.map_err(fail)?;
        match std::fs::hard_link(&tmp.path, path) {
            Ok(()) => {
                drop(tmp);
                sync_parent_dir(path).map_err(fail)?;
                Ok(key)
            }
            // Another server linked its key first: use that one.
            Err(e) if e.kind() == ErrorKind::AlreadyExists => ServerKey::load(path),
            Err(e) => Err(fail(e)),
        }
    }
}

impl fmt::Debug for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ServerKey({})", self.fingerprint())
    }
}

/// Why a key file with this type, mode and owner must not be used, if it
/// must not: anyone but its owner could read or change it, or its owner is
/// not the user running the server (a file placed in a shared directory by
/// someone else would hand them the server's identity).
fn unsafe_file(is_file: bool, mode: u32, owner: u32, euid: u32) -> Option<String> {
    let mode = mode & 0o7777;
    if !is_file {
        Some("not a regular file".to_string())
    } else if mode & 0o077 != 0 {
        Some(format!(
            "mode {mode:04o} lets group or others in (chmod 600 it)"
        ))
    } else if owner != euid {
        Some(format!(
            "owned by uid {owner}, not by the server's user (uid {euid})"
        ))
    } else {
        None
    }
}

/// The key file's contents.
fn key_file_text(key: &ServerKey) -> Vec<u8> {
    format!("{KEY_FILE_HEADER}\n{}\n", STANDARD.encode(key.secret())).into_bytes()
}

/// The secret in a key file's contents, or why there is none.
fn parse(text: &[u8]) -> std::result::Result<[u8; 32], &'static str> {
    if text.is_empty() {
        return Err("the file is empty");
    }
    if text.len() as u64 > MAX_FILE_LEN {
        return Err("the file is too long");
    }
    let text = std::str::from_utf8(text).map_err(|_| "the file is not text")?;
    let mut lines = text.strip_suffix('\n').unwrap_or(text).split('\n');
    if lines.next() != Some(KEY_FILE_HEADER) {
        return Err("the first line is not 'udpchat-server-key-v1'");
    }
    let secret = lines
        .next()
        .and_then(|b64| STANDARD.decode(b64).ok())
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or("the second line is not the base64 of 32 bytes")?;
    if lines.next().is_some() {
        return Err("there are more than two lines");
    }
    Ok(secret)
}

/// Writes all of `bytes` to `file` and syncs it to the disk.
fn write_synced(mut file: &File, bytes: &[u8]) -> std::io::Result<()> {
    file.write_all(bytes)?;
    file.sync_all()
}

/// Syncs the directory holding `path`, so that a new name in it survives a crash.
fn sync_parent_dir(path: &Path) -> std::io::Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// A new file with mode 0600 beside `target`, named `.NAME.PID.RANDOM.tmp`;
/// removed on drop (once hard-linked, the key lives on under its own name).
struct TempFile {
    path: PathBuf,
    file: File,
}

impl TempFile {
    fn create(target: &Path) -> std::io::Result<TempFile> {
        let name = target.file_name().unwrap_or_default().to_string_lossy();
        let nonce = getrandom::u64().map_err(|e| std::io::Error::other(e.to_string()))?;
        let path =
            target.with_file_name(format!(".{name}.{}.{:016x}.tmp", std::process::id(), nonce));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)?;
        let tmp = TempFile { path, file };
        // The umask can only take bits away; make it exactly 0600.
        tmp.file.set_permissions(Permissions::from_mode(0o600))?;
        Ok(tmp)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::file_mode;
    use std::fs;

    /// RFC 7748 §6.1: Alice's secret and public keys, and the public key's
    /// fingerprint (`sha256sum | base64`, padding removed).
    const ALICE_SECRET: &str = "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a";
    const ALICE_PUBLIC: &str = "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a";
    const ALICE_FINGERPRINT: &str = "SHA256:MAyclgO5Kks57TlYv5JAEUgE20/TcwEsDKR0MtY0Ja4";
    const ALICE_FILE: &str =
        "udpchat-server-key-v1\ndwdtCnMYpX08FsFyUbJmRd9ML4frwJkqsXf7pR25LCo=\n";

    fn hex32(s: &str) -> [u8; 32] {
        let v: Vec<u8> = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect();
        v.try_into().unwrap()
    }

    fn write_mode(p: &Path, text: &str, mode: u32) {
        fs::write(p, text).unwrap();
        fs::set_permissions(p, Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn test_vector() {
        let key = ServerKey::from_secret(hex32(ALICE_SECRET));
        assert_eq!(key.public(), &hex32(ALICE_PUBLIC));
        assert_eq!(key.secret(), &hex32(ALICE_SECRET));
        assert_eq!(key.fingerprint().to_string(), ALICE_FINGERPRINT);
        assert_eq!(Fingerprint::of(&hex32(ALICE_PUBLIC)), key.fingerprint());
        assert_eq!(key_file_text(&key), ALICE_FILE.as_bytes());
        assert_eq!(
            format!("{key:?}"),
            format!("ServerKey({ALICE_FINGERPRINT})")
        );
    }

    #[test]
    fn loads_a_well_formed_file() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        write_mode(&p, ALICE_FILE, 0o600);
        assert_eq!(ServerKey::load(&p).unwrap().public(), &hex32(ALICE_PUBLIC));
        // The final newline may be missing (an editor's choice); 0400 is fine.
        write_mode(&p, ALICE_FILE.trim_end(), 0o400);
        assert_eq!(ServerKey::load(&p).unwrap().public(), &hex32(ALICE_PUBLIC));
        assert_eq!(
            ServerKey::load_or_create(&p).unwrap().public(),
            &hex32(ALICE_PUBLIC)
        );
    }

    #[test]
    fn creates_once_and_then_loads_the_same_key() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("new/dir/server.key");
        let a = ServerKey::load_or_create(&p).unwrap();
        assert_eq!(file_mode(&p), 0o600);
        assert_eq!(file_mode(p.parent().unwrap()), 0o700);
        let b = ServerKey::load_or_create(&p).unwrap();
        assert_eq!(a.public(), b.public());
        assert_eq!(ServerKey::load(&p).unwrap().secret(), a.secret());
        assert_eq!(fs::read(&p).unwrap(), key_file_text(&a));
        // Nothing else is left in the directory.
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
        let other = ServerKey::load_or_create(&tmp.path().join("other.key")).unwrap();
        assert_ne!(other.public(), a.public());
    }

    #[test]
    fn racing_creators_end_with_one_key() {
        for _ in 0..20 {
            let tmp = tempfile::tempdir().unwrap();
            let p = tmp.path().join("server.key");
            let keys: Vec<[u8; 32]> = std::thread::scope(|s| {
                let handles: Vec<_> = (0..4)
                    .map(|_| s.spawn(|| *ServerKey::load_or_create(&p).unwrap().public()))
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            });
            assert!(
                keys.iter().all(|k| k == &keys[0]),
                "different keys: {keys:?}"
            );
            assert_eq!(ServerKey::load(&p).unwrap().public(), &keys[0]);
            assert_eq!(fs::read_dir(tmp.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn load_of_a_missing_file_creates_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("d/server.key");
        let e = ServerKey::load(&p).unwrap_err();
        assert_eq!(e.errno(), Some(nix::libc::ENOENT));
        assert_eq!(
            e.to_string(),
            format!(
                "cannot load key '{}': No such file or directory",
                p.display()
            )
        );
        assert!(!tmp.path().join("d").exists());
    }

    #[test]
    fn refuses_and_keeps_bad_files() {
        let tmp = tempfile::tempdir().unwrap();
        let p = tmp.path().join("k");
        let b64_31 = STANDARD.encode([1u8; 31]);
        let cases: [(&str, u32, &str); 10] = [
            ("", 0o600, "malformed key file: the file is empty"),
            (
                "udpchat-server-key-v2\nAAAA\n",
                0o600,
                "the first line is not",
            ),
            (&ALICE_FILE[22..], 0o600, "the first line is not"),
            ("udpchat-server-key-v1\n", 0o600, "the second line is not"),
            (
                "udpchat-server-key-v1\nnot base64!\n",
                0o600,
                "the second line is not",
            ),
            (
                &format!("udpchat-server-key-v1\n{b64_31}\n"),
                0o600,
                "the second line is not",
            ),
            (&format!("{ALICE_FILE}\n"), 0o600, "more than two lines"),
            (&"x".repeat(300), 0o600, "too long"),
            (
                ALICE_FILE,
                0o640,
                "mode 0640 lets group or others in (chmod 600 it)",
            ),
            (ALICE_FILE, 0o602, "mode 0602 lets group or others in"),
        ];
        for (text, m, why) in cases {
            write_mode(&p, text, m);
            for e in [
                ServerKey::load(&p).unwrap_err(),
                ServerKey::load_or_create(&p).unwrap_err(),
            ] {
                let e = e.to_string();
                let prefix = format!("cannot load key '{}': ", p.display());
                assert!(
                    e.starts_with(&prefix) && e.contains(why),
                    "{text:?} {m:o}: {e}"
                );
            }
            // Never replaced.
            assert_eq!(fs::read_to_string(&p).unwrap(), text);
            assert_eq!(file_mode(&p), m);
        }
        let e = ServerKey::load_or_create(tmp.path())
            .unwrap_err()
            .to_string();
        assert!(e.ends_with("': not a regular file"), "{e}");
    }

    #[test]
    fn only_the_owners_private_regular_file_is_used() {
        assert_eq!(unsafe_file(true, 0o100600, 1000, 1000), None);
        assert_eq!(unsafe_file(true, 0o100400, 0, 0), None);
        let refused = |is_file, mode, owner| unsafe_file(is_file, mode, owner, 1000).unwrap();
        assert_eq!(refused(false, 0o40700, 1000), "not a regular file");
        assert_eq!(
            refused(true, 0o100640, 1000),
            "mode 0640 lets group or others in (chmod 600 it)"
        );
        assert_eq!(
            refused(true, 0o100601, 1000),
            "mode 0601 lets group or others in (chmod 600 it)"
        );
        assert_eq!(
            refused(true, 0o104620, 1000),
            "mode 4620 lets group or others in (chmod 600 it)"
        );
        assert_eq!(
            refused(true, 0o100600, 0),
            "owned by uid 0, not by the server's user (uid 1000)"
        );
    }

    #[test]
    fn a_file_in_the_way_of_the_directory_is_an_error_naming_the_key() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("f");
        fs::write(&file, "a file, not a directory").unwrap();
        let p = file.join("server.key");
        let e = ServerKey::load_or_create(&p).unwrap_err().to_string();
        assert_eq!(
            e,
            format!("cannot load key '{}': Not a directory", p.display())
        );
    }
}
