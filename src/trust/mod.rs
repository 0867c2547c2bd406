//! Who the server is: its long-term key and how a client comes to trust it.
//!
//! * [`ServerKey`]: the server's long-term X25519 key pair and its key file
//!   (created once with mode 0600, never overwritten).
//! * [`Fingerprint`]: `SHA256:` and the unpadded base64 of the SHA-256 of the
//!   32-byte public key, as ssh prints one.
//! * [`KnownServers`]: the client's record of the keys it has seen, keyed by
//!   the `--server` text as given (trust on first use, as ssh does).
//!
//! Both files live by default in the user's data directory,
//! `$XDG_DATA_HOME/udpchat/` (or `~/.local/share/udpchat/`): a key that
//! clients have pinned, and the keys a client has pinned, cannot be rebuilt
//! if lost, so they are data to back up, not state (`$XDG_STATE_HOME` is for
//! what may be lost without harm, such as logs and history).

mod fingerprint;
mod key;
mod known_servers;
pub mod ticket;

pub use fingerprint::Fingerprint;
pub use key::{ServerKey, KEY_FILE_HEADER};
pub use known_servers::{pinned_mismatch_error, KnownServers, Lookup, Malformed, Verdict};

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::fs::DirBuilder;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// `$XDG_DATA_HOME/udpchat/NAME`, or `$HOME/.local/share/udpchat/NAME`.
fn data_file(name: &str) -> Result<PathBuf> {
    data_dir_from(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
        .map(|dir| dir.join(name))
        .ok_or_else(|| {
            Error::msg(
                "find the data directory for",
                name,
                "neither XDG_DATA_HOME nor HOME is an absolute path",
            )
        })
}

/// The XDG base directory rule: `XDG_DATA_HOME` when it is an absolute path,
/// else `HOME/.local/share` when `HOME` is; `udpchat` inside it.
fn data_dir_from(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    let absolute = |v: Option<OsString>| v.map(PathBuf::from).filter(|p| p.is_absolute());
    let base =
        absolute(xdg_data_home).or_else(|| absolute(home).map(|h| h.join(".local/share")))?;
    Some(base.join("udpchat"))
}

/// Creates the directory that will hold `file`, and its missing parents, with
/// mode 0700; an existing directory is left as it is.
fn create_parent_dir(file: &Path) -> Result<()> {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| Error::io("create directory", dir.display(), e)),
        _ => Ok(()),
    }
}

/// A file's permission bits (for the tests of this module's files).
#[cfg(test)]
fn file_mode(p: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_dir_follows_xdg() {
        let some = |s: &str| Some(OsString::from(s));
        assert_eq!(
            data_dir_from(some("/x/data"), some("/home/a")),
            Some(PathBuf::from("/x/data/udpchat"))
        );
        // A relative XDG_DATA_HOME is ignored, as the specification says.
        assert_eq!(
            data_dir_from(some("rel"), some("/home/a")),
            Some(PathBuf::from("/home/a/.local/share/udpchat"))
        );
        assert_eq!(
            data_dir_from(None, some("/home/a")),
            Some(PathBuf::from("/home/a/.local/share/udpchat"))
        );
        assert_eq!(data_dir_from(some(""), some("")), None);
        assert_eq!(data_dir_from(None, None), None);
    }

    #[test]
    fn parent_dir_is_created_private() {
        let tmp = tempfile::tempdir().unwrap();
        let file = tmp.path().join("a/b/f");
        create_parent_dir(&file).unwrap();
        assert_eq!(file_mode(&tmp.path().join("a/b")), 0o700);
        // Existing: fine.
        create_parent_dir(&file).unwrap();
        create_parent_dir(Path::new("bare-name")).unwrap();
    }
}
