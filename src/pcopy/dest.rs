//! The new file: the temporary file the copy is built in (or, with `--in-place`,
//! DST itself), its clone or preallocation and space checks, and the atomic
//! replace (or `-n`'s link) that publishes it.
//!
//! The new file is made with O_TMPFILE in DST's directory, so it has no name while
//! workers write it: a crash leaves nothing behind. Only when every worker (and
//! `--verify`) has succeeded is it linked to a hidden unique name and renamed over
//! DST (`linkat` cannot replace an existing name). Where O_TMPFILE is missing, the
//! file is created under the hidden name at once and removed on failure.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicU32, Ordering};

use nix::errno::Errno;
use nix::fcntl::{
    openat, renameat, renameat2, AtFlags, FallocateFlags, OFlag, RenameFlags, AT_FDCWD,
};
use nix::sys::stat::Mode;
use nix::unistd::{linkat, unlinkat, UnlinkatFlags};

use super::plan::{self, Extent};
use super::report::size;
use super::target::Target;
use crate::error::{Error, Result};

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
    /// Bytes of blocks the old DST holds: space a replace cannot use.
    old_blocks: Option<u64>,
    /// `--in-place`: `file` is DST itself.
    in_place: bool,
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
    fn open_dir(target: &Target) -> Result<File> {
        let dir_flags = OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC;
        let dir = openat(AT_FDCWD, &target.dir, dir_flags, Mode::empty())
            .map_err(|e| Error::io("create", target.shown_str(), e.into()))?;
        Ok(File::from(dir))
    }

    fn new(file: File, dir: File, target: &Target, hidden: Option<OsString>) -> Self {
        TempFile {
            file,
            dir,
            old_blocks: target.old.as_ref().map(|m| m.blocks() * 512),
            hidden,
            in_place: false,
            committed: false,
            shown: target.shown_str(),
        }
    }

    /// `--in-place`: DST's own inode, opened for writing (not truncated: the copy
    /// ends by cutting it to SRC's length). Nothing is renamed, and a failure
    /// leaves it partly written.
    pub fn in_place(target: &Target) -> Result<Self> {
        let dir = Self::open_dir(target)?;
        let file = openat(
            &dir,
            target.name.as_os_str(),
            OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_CLOEXEC,
            Mode::from_bits_truncate(0o600),
        )
        .map_err(|e| Error::io("open", target.shown_str(), e.into()))?;
        let mut tmp = Self::new(File::from(file), dir, target, None);
        tmp.in_place = true;
        Ok(tmp)
    }

    /// Creates the new, empty file in `target.dir`, readable and writable by its
    /// owner only (0600) until [`TempFile::commit`]'s caller gives it its final mode:
    /// so a private file's content is never readable by others during the copy.
    /// `no_tmpfile` forces the named fallback.
    pub fn create(target: &Target, no_tmpfile: bool) -> Result<Self> {
        let shown = target.shown_str();
        let dir = Self::open_dir(target)?;
        let mode = Mode::from_bits_truncate(0o600);
        let rw = OFlag::O_RDWR | OFlag::O_CLOEXEC;
        if !no_tmpfile {
            match openat(&dir, ".", rw | OFlag::O_TMPFILE, mode) {
                Ok(fd) => return Ok(Self::new(File::from(fd), dir, target, None)),
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
                Ok(fd) => return Ok(Self::new(File::from(fd), dir, target, Some(name))),
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
    ///
    /// With `no_clobber`, an existing DST is never replaced, race-free: the file is
    /// linked to DST's name (`linkat`, or `renameat2(RENAME_NOREPLACE)` for the
    /// hidden name), which fails on an existing name. Returns false when DST
    /// existed, and the new file is dropped.
    pub fn commit(mut self, target: &Target, sync: bool, no_clobber: bool) -> Result<bool> {
        let shown = self.shown.clone();
        if sync {
            self.file
                .sync_all()
                .map_err(|e| Error::io("sync", &shown, e))?;
        }
        if self.in_place {
            self.committed = true;
            return Ok(true);
        }
        if no_clobber {
            match self.publish_without_replacing(target)? {
                true => self.committed = true,
                false => return Ok(false),
            }
        } else {
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
        }
        if sync {
            nix::unistd::fsync(self.dir.as_fd())
                .map_err(|e| Error::io("sync directory of", &shown, e.into()))?;
        }
        Ok(true)
    }

    /// Gives the file DST's name only if that name is free; false when taken.
    fn publish_without_replacing(&mut self, target: &Target) -> Result<bool> {
        let refused = |e: Errno| {
            Error::plain(format!(
                "cannot copy to '{}' with -n: the file system can neither link a file nor \
                 rename without replacing ({})",
                self.shown,
                crate::error::os_reason(&e.into())
            ))
        };
        match &self.hidden {
            None => match self.link_as(target.name.as_os_str()) {
                Ok(()) => Ok(true),
                Err(Errno::EEXIST) => Ok(false),
                Err(e) => Err(Error::io("create", &self.shown, e.into())),
            },
            Some(hidden) => {
                let r = renameat2(
                    &self.dir,
                    hidden.as_os_str(),
                    &self.dir,
                    target.name.as_os_str(),
                    RenameFlags::RENAME_NOREPLACE,
                );
                match r {
                    Ok(()) => Ok(true),
                    Err(Errno::EEXIST) => Ok(false),
                    Err(Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP) => {
                        // No RENAME_NOREPLACE here: a hard link does the same.
                        match linkat(
                            &self.dir,
                            hidden.as_os_str(),
                            &self.dir,
                            target.name.as_os_str(),
                            AtFlags::empty(),
                        ) {
                            Ok(()) => {
                                let _ = unlinkat(
                                    &self.dir,
                                    hidden.as_os_str(),
                                    UnlinkatFlags::NoRemoveDir,
                                );
                                self.hidden = None;
                                Ok(true)
                            }
                            Err(Errno::EEXIST) => Ok(false),
                            Err(e) => Err(refused(e)),
                        }
                    }
                    Err(e) => Err(Error::io("create", &self.shown, e.into())),
                }
            }
        }
    }

    /// Links the nameless (O_TMPFILE) file as `name` in its directory.
    fn link_as(&self, name: &OsStr) -> nix::Result<()> {
        let proc_path = format!("/proc/self/fd/{}", self.file.as_raw_fd());
        let r = linkat(
            AT_FDCWD,
            proc_path.as_str(),
            &self.dir,
            name,
            AtFlags::AT_SYMLINK_FOLLOW,
        );
        if r == Err(Errno::ENOENT) {
            // No /proc: AT_EMPTY_PATH links the descriptor itself.
            return linkat(&self.file, "", &self.dir, name, AtFlags::AT_EMPTY_PATH);
        }
        r
    }

    /// Gives the O_TMPFILE file a hidden name in its directory.
    fn link_hidden(&self, target: &Target) -> Result<OsString> {
        loop {
            let name = hidden_name(&target.name);
            match self.link_as(name.as_os_str()) {
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
