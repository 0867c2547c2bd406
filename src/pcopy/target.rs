//! Where the copy goes: DST, or DST/name-of-SRC, with DST's symlinks followed by
//! the kernel, and the file it names now (if any), which the copy will replace.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;

use super::quote;
use crate::error::{Error, Result};

/// Where the copy goes.
#[derive(Debug)]
pub struct Target {
    /// DST as the user typed it, with SRC's file name added when DST is a directory.
    pub shown: PathBuf,
    /// The directory that receives the file (symlinks in DST's last part resolved).
    pub dir: PathBuf,
    /// The file name inside `dir`.
    pub name: OsString,
    /// The file DST names now (after symlinks), when there is one.
    pub old: Option<fs::Metadata>,
}

impl Target {
    /// The shown path quoted for messages, less the outer quotes ([`quote::inner`]).
    pub fn shown_str(&self) -> String {
        quote::inner(self.shown.as_os_str())
    }
}

/// Decides where SRC goes: into DST, or into DST/name-of-SRC when DST is a directory;
/// follows a DST symlink to the file it names; refuses SRC and DST being one file.
pub fn resolve(src: &Path, src_meta: &fs::Metadata, dst: &Path) -> Result<Target> {
    let mut shown = dst.to_path_buf();
    match fs::metadata(dst) {
        Ok(m) if m.is_dir() => {
            let name = src.file_name().ok_or_else(|| {
                Error::msg(
                    "copy",
                    quote::inner(src.as_os_str()),
                    "no file name to copy into a directory",
                )
            })?;
            shown = dst.join(name);
        }
        Ok(_) | Err(_) if dst.as_os_str().as_bytes().ends_with(b"/") => {
            // "x/" names a directory that is not there (or is not a directory).
            return Err(Error::io(
                "create",
                quote::inner(dst.as_os_str()),
                io::Error::from_raw_os_error(nix::libc::ENOTDIR),
            ));
        }
        _ => {}
    }
    let shown_text = quote::inner(shown.as_os_str());

    // What DST names, followed through any symlinks by the kernel itself: open it
    // with O_PATH (no read, no side effect even on a FIFO or device), then ask
    // /proc/self/fd where that landed. The kernel applies its own rules on the way
    // (`fs.protected_symlinks`, ELOOP). The copy then replaces the file the link
    // points to, and the link stays a link (renaming over the link itself would turn
    // it into a regular file).
    let mut real = shown.clone();
    let found = match openat(
        AT_FDCWD,
        &shown,
        OFlag::O_PATH | OFlag::O_CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Some(File::from(fd)),
        Err(Errno::ENOENT) => {
            // Nothing there, or a symlink to nothing: cp refuses to write through
            // one, and so does pcopy (the file would appear wherever it points).
            if fs::symlink_metadata(&shown).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::plain(format!(
                    "not writing through dangling symlink '{shown_text}'"
                )));
            }
            None
        }
        Err(e @ (Errno::ELOOP | Errno::EACCES)) => {
            return Err(Error::io("resolve", &shown_text, e.into()))
        }
        // ENOTDIR and the like on the way: the create below reports it with its path.
        Err(_) => None,
    };
    if let Some(file) = &found {
        let is_link = fs::symlink_metadata(&shown).is_ok_and(|m| m.file_type().is_symlink());
        if is_link {
            real = fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd()))
                // No /proc: the kernel has already checked the way; let the C
                // library retrace it.
                .or_else(|_| fs::canonicalize(&shown))
                .map_err(|e| Error::io("resolve", &shown_text, e))?;
        }
    }

    if let Some(m) = found.as_ref().and_then(|f| f.metadata().ok()) {
        if m.dev() == src_meta.dev() && m.ino() == src_meta.ino() {
            return Err(Error::plain(format!(
                "'{}' and '{}' are the same file",
                quote::inner(src.as_os_str()),
                shown_text
            )));
        }
        if m.is_dir() {
            return Err(Error::msg(
                "overwrite",
                &shown_text,
                "is a directory (cannot replace it with a file)",
            ));
        }
        if !m.is_file() {
            return Err(Error::msg(
                "overwrite",
                &shown_text,
                "not a regular file (pcopy only replaces regular files)",
            ));
        }
    }

    let name = real
        .file_name()
        .ok_or_else(|| {
            Error::io(
                "create",
                &shown_text,
                io::Error::from_raw_os_error(nix::libc::EISDIR),
            )
        })?
        .to_os_string();
    let dir = match real.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let old = found.as_ref().and_then(|f| f.metadata().ok());
    Ok(Target {
        shown,
        dir,
        name,
        old,
    })
}
