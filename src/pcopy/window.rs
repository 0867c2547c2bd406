//! A worker's window onto the destination: a shared, writable mapping of one
//! page-aligned range of the new file, so a worker reads SRC straight into DST's
//! page cache with no write(2) and so without the inode lock that serialises
//! writers of one file.
//!
//! A page of a shared file mapping that the file system cannot back (no space, an
//! I/O error, a file cut short under it) is a SIGBUS when user code touches it.
//! Here only the kernel touches the mapping (`pread` into it), and there such a
//! fault ends the read with EFAULT instead: the worker reports it as a failed write
//! and DST stays as it was. Windows are made only over ranges that `fallocate`
//! reserved, so on a sane disk that does not happen at all.

use std::fs::File;
use std::num::NonZeroUsize;
use std::ptr::NonNull;

use nix::sys::mman::{mmap, munmap, MapFlags, ProtFlags};
use nix::unistd::{sysconf, SysconfVar};

/// The size of a memory page (the alignment of a mapping's file offset).
pub fn page_size() -> u64 {
    match sysconf(SysconfVar::PAGE_SIZE) {
        Ok(Some(n)) if n > 0 => n as u64,
        _ => 4096,
    }
}

/// A mapping of bytes `[start, start + len)` of a file, unmapped on drop.
pub struct Window {
    ptr: NonNull<u8>,
    /// File offset of the first mapped byte (a multiple of the page size).
    start: u64,
    len: usize,
}

impl Window {
    /// Maps `[start, start + len)` of `file` shared and writable; `start` must be a
    /// multiple of [`page_size`] and the file at least `start + len` bytes long.
    pub fn map(file: &File, start: u64, len: usize) -> nix::Result<Self> {
        let length = NonZeroUsize::new(len).ok_or(nix::errno::Errno::EINVAL)?;
        let offset = nix::libc::off_t::try_from(start).map_err(|_| nix::errno::Errno::EFBIG)?;
        // SAFETY: a new mapping at an address the kernel picks, so it replaces no
        // memory of this process. It is a view of the file, whose pages other
        // processes may write; `slice_mut` hands out only this worker's own bytes.
        let ptr = unsafe {
            mmap(
                None,
                length,
                ProtFlags::PROT_READ | ProtFlags::PROT_WRITE,
                MapFlags::MAP_SHARED,
                file,
                offset,
            )
        }?;
        Ok(Window {
            ptr: ptr.cast(),
            start,
            len,
        })
    }

    /// The mapped bytes of file offsets `[off, off + n)`, to read SRC into.
    ///
    /// Panics when the range is not inside the window (a bug of the caller).
    pub fn slice_mut(&mut self, off: u64, n: usize) -> &mut [u8] {
        let at = usize::try_from(off - self.start).expect("offset in the window");
        assert!(at + n <= self.len, "range outside the window");
        // SAFETY: `[at, at + n)` lies inside the live mapping of `len` bytes (checked
        // above); the kernel initialised every byte (file data or zeros); `&mut self`
        // makes this the only reference into the window from this process. Other
        // processes (sibling workers) write only their own byte ranges, never these
        // bytes, so nothing else writes them while the slice lives.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(at), n) }
    }
}

impl Drop for Window {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, with its length; the slices handed out
        // borrowed `self` and so are gone.
        let _ = unsafe { munmap(self.ptr.cast(), self.len) };
    }
}
