//! The destination: where the copy goes, the temporary file it is built in, its
//! preallocation, and the atomic replace that publishes it.
//!
//! The new file is made with O_TMPFILE in DST's directory, so it has no name while
//! workers write it: a crash leaves nothing behind. Only when every worker (and
//! `--verify`) has succeeded is it linked to a hidden unique name and renamed over
//! DST (`linkat` cannot replace an existing name). Where O_TMPFILE is missing, the
//! file is created under the hidden name at once and removed on failure.

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{openat, renameat, AtFlags, FallocateFlags, OFlag, AT_FDCWD};
use nix::sys::stat::Mode;
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

use super::plan::{self, Extent};
use super::report::size;
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
    /// Blocks the old DST holds, when there is one: space a replace cannot use.
    pub old_blocks: Option<u64>,
}

impl Target {
    /// The shown path as text for messages.
    pub fn shown_str(&self) -> String {
        self.shown.to_string_lossy().into_owned()
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
                    src.display(),
                    "no file name to copy into a directory",
                )
            })?;
            shown = dst.join(name);
        }
        Ok(_) | Err(_) if dst.as_os_str().as_bytes().ends_with(b"/") => {
            // "x/" names a directory that is not there (or is not a directory).
            return Err(Error::io(
                "create",
                dst.display(),
                io::Error::from_raw_os_error(nix::libc::ENOTDIR),
            ));
        }
        _ => {}
    }
    let shown_text = shown.to_string_lossy().into_owned();

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
                src.display(),
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
    let old_blocks = found
        .as_ref()
        .and_then(|f| f.metadata().ok())
        .map(|m| m.blocks() * 512);
    Ok(Target {
        shown,
        dir,
        name,
        old_blocks,
    })
}

/// What [`TempFile::preallocate`] could do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Prealloc {
    /// Full length, and every data extent's blocks reserved (fallocate).
    Reserved,
    /// Full length only (no fallocate here): a full disk shows during the copy.
    Length,
    /// Not even the length (ftruncate cannot grow files here): the file must be
    /// written from its start to its end, in order.
    Nothing,
}

/// The new file, until it is renamed over DST. Dropping it uncommitted removes it.
pub struct TempFile {
    file: File,
    dir: File,
    /// Blocks the old DST holds (see [`Target::old_blocks`]).
    old_blocks: Option<u64>,
    /// The hidden name, once the file has one.
    hidden: Option<OsString>,
    committed: bool,
    shown: String,
}

/// A fresh hidden name next to DST: `.NAME.pcopy-PID-N`.
fn hidden_name(name: &OsStr) -> OsString {
    static SERIAL: AtomicU32 = AtomicU32::new(0);
    let serial = SERIAL.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    // Keep the whole name under NAME_MAX (255).
    let bytes = name.as_bytes();
    let stem = &bytes[..bytes.len().min(200)];
    let mut out = OsString::from(".");
    out.push(OsStr::from_bytes(stem));
    out.push(format!(
        ".pcopy-{}-{:x}{:x}",
        std::process::id(),
        nanos,
        serial
    ));
    out
}

impl TempFile {
    /// Creates the new, empty file in `target.dir` with SRC's permission bits (the
    /// umask applies, as for any new file). `no_tmpfile` forces the named fallback.
    pub fn create(target: &Target, mode: u32, no_tmpfile: bool) -> Result<Self> {
        let shown = target.shown_str();
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = openat(AT_FDCWD, &target.dir, dir_flags, Mode::empty())
            .map_err(|e| Error::io("create", &shown, e.into()))?;
        let dir = File::from(dir);
        let mode = Mode::from_bits_truncate(mode & 0o777);
        let rw = OFlag::O_RDWR | OFlag::O_CLOEXEC;
        if !no_tmpfile {
            match openat(&dir, ".", rw | OFlag::O_TMPFILE, mode) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        old_blocks: target.old_blocks,
                        dir,
                        hidden: None,
                        committed: false,
                        shown,
                    })
                }
                // No O_TMPFILE here (old kernel: EISDIR; file system: EOPNOTSUPP).
                Err(Errno::EOPNOTSUPP | Errno::EISDIR | Errno::EINVAL) => {}
                Err(e) => return Err(Error::io("create", &shown, e.into())),
            }
        }
        loop {
            let name = hidden_name(&target.name);
            match openat(
                &dir,
                name.as_os_str(),
                rw | OFlag::O_CREAT | OFlag::O_EXCL,
                mode,
            ) {
                Ok(fd) => {
                    return Ok(TempFile {
                        file: File::from(fd),
                        old_blocks: target.old_blocks,
                        dir,
                        hidden: Some(name),
                        committed: false,
                        shown,
                    })
                }
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(Error::io("create", &shown, e.into())),
            }
        }
    }

    /// The new file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Makes the (empty) new file share all of SRC's blocks (FICLONE: a reflink, on
    /// XFS, btrfs and the like), so nothing is copied. Errors as the kernel gives
    /// them: EOPNOTSUPP, EXDEV, EINVAL… where the file systems cannot.
    pub fn clone_from(&self, src: &File) -> nix::Result<()> {
        // SAFETY: FICLONE takes the source descriptor as its argument, by value, and
        // reads or writes no memory of this process; both descriptors are open for
        // the whole call (borrowed from live `File`s).
        let r =
            unsafe { nix::libc::ioctl(self.file.as_raw_fd(), nix::libc::FICLONE, src.as_raw_fd()) };
        Errno::result(r).map(drop)
    }

    /// Gives the file its full length and reserves the blocks of the data extents,
    /// so a full disk or a file-size limit fails here, before any byte is copied.
    /// Holes are not reserved. Says how far it got: a file system without fallocate
    /// (ext2, FAT) or one that will not even grow a file with ftruncate (fusefat:
    /// EPERM) is not an error, only a slower way ahead.
    pub fn preallocate(
        &self,
        size: u64,
        extents: &[Extent],
        interrupted: &dyn Fn() -> Result<()>,
    ) -> Result<Prealloc> {
        let err = |e: io::Error| Error::io("preallocate", &self.shown, e);
        if let Err(e) = self.file.set_len(size) {
            if e.raw_os_error() == Some(nix::libc::EPERM) && size > 0 {
                return Ok(Prealloc::Nothing);
            }
            return Err(err(e));
        }
        for ext in extents {
            loop {
                let r = nix::fcntl::fallocate(
                    &self.file,
                    FallocateFlags::empty(),
                    ext.start as i64,
                    ext.len() as i64,
                );
                match r {
                    Ok(()) => break,
                    Err(Errno::EOPNOTSUPP) => return Ok(Prealloc::Length),
                    Err(Errno::EINTR) => interrupted()?,
                    Err(Errno::ENOSPC) => return Err(self.no_space(plan::total(extents))),
                    Err(e) => return Err(err(e.into())),
                }
            }
        }
        Ok(Prealloc::Reserved)
    }

    /// Where the file system cannot reserve space (no fallocate), fails early when
    /// `needs` bytes clearly do not fit in what `statvfs` says is free; otherwise
    /// a full disk shows during the copy, with DST intact.
    pub fn check_space(&self, needs: u64) -> Result<()> {
        match self.free_space() {
            Some(free) if free < needs => Err(self.no_space(needs)),
            _ => Ok(()),
        }
    }

    /// Bytes an ordinary user may still write in the file's directory.
    fn free_space(&self) -> Option<u64> {
        let st = nix::sys::statvfs::fstatvfs(&self.dir).ok()?;
        // A file system that reports no size at all (fusefat) cannot tell.
        (st.blocks() > 0).then(|| st.blocks_available() as u64 * st.fragment_size() as u64)
    }

    /// The "not enough space" error for a copy of `needs` data bytes.
    fn no_space(&self, needs: u64) -> Error {
        let free = self.free_space().map(size).unwrap_or_else(|| "?".into());
        match self.old_blocks {
            Some(old) if old > 0 => Error::plain(format!(
                "not enough space to replace '{}' atomically: the new copy needs {} while the \
                 old one ({}) exists ({free} free)",
                self.shown,
                size(needs),
                size(old)
            )),
            _ => Error::plain(format!(
                "not enough space for '{}': the copy needs {} ({free} free)",
                self.shown,
                size(needs)
            )),
        }
    }

    /// Publishes the file under DST's name: (fsync,) link to a hidden name, rename
    /// over DST (, fsync the directory). On failure nothing new remains.
    pub fn commit(mut self, target: &Target, sync: bool) -> Result<()> {
        let shown = self.shown.clone();
        if sync {
            self.file
                .sync_all()
                .map_err(|e| Error::io("sync", &shown, e))?;
        }
        if self.hidden.is_none() {
            self.hidden = Some(self.link_hidden(target)?);
        }
        let hidden = self.hidden.clone().expect("named");
        renameat(
            &self.dir,
            hidden.as_os_str(),
            &self.dir,
            target.name.as_os_str(),
        )
        .map_err(|e| Error::io("replace", &shown, e.into()))?;
        self.committed = true;
        if sync {
            nix::unistd::fsync(self.dir.as_fd())
                .map_err(|e| Error::io("sync directory of", &shown, e.into()))?;
        }
        Ok(())
    }

    /// Gives the O_TMPFILE file a hidden name in its directory.
    fn link_hidden(&self, target: &Target) -> Result<OsString> {
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        loop {
            let name = hidden_name(&target.name);
            let mut r = linkat(
                AT_FDCWD,
                proc_path.as_str(),
                &self.dir,
                name.as_os_str(),
                AtFlags::AT_SYMLINK_FOLLOW,
            );
            if r == Err(Errno::ENOENT) {
                // No /proc: AT_EMPTY_PATH links the descriptor itself.
                r = linkat(
                    &self.file,
                    "",
                    &self.dir,
                    name.as_os_str(),
                    AtFlags::AT_EMPTY_PATH,
                );
            }
            match r {
                Ok(()) => return Ok(name),
                Err(Errno::EEXIST) => continue,
                Err(e) => return Err(Error::io("link new file for", &self.shown, e.into())),
            }
        }
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let (false, Some(name)) = (self.committed, &self.hidden) {
            let _ = unlinkat(&self.dir, name.as_os_str(), UnlinkatFlags::NoRemoveDir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hidden_names_are_hidden_unique_and_short() {
        let a = hidden_name(OsStr::new("out.iso"));
        let b = hidden_name(OsStr::new("out.iso"));
        assert_ne!(a, b);
        assert!(a.as_bytes().starts_with(b".out.iso.pcopy-"));
        let long = "x".repeat(255);
        assert!(hidden_name(OsStr::new(&long)).len() <= 255);
    }
}
