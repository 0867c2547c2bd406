//! Big copies written around the page cache: every worker reads its share from
//! SRC into a buffer of its own and writes it to DST with `O_DIRECT`.
//!
//! A buffered copy bigger than what the kernel lets stay dirty runs at the pace of
//! writeback anyway, and on the way it fills the page cache with DST's pages, every
//! one of them new memory to fault in, by one writer at a time (a file system lets
//! one buffered writer into a file at once). Direct writes into the range
//! `fallocate` reserved skip both: since Linux 6.3 ext4 lets aligned direct writes
//! over allocated (also unwritten) blocks share the inode lock, so the workers
//! write at once, each from one buffer it reuses (on older kernels they write one
//! at a time, still without new memory). Measured here (Linux 6.18, 2 vCPUs, ext4
//! on the VM's disk, 8 GiB, 15 paired rounds): 1.34x and 1.29x cp; see
//! docs/performance.md.
//!
//! The pieces of a share that are not whole aligned pages (the cut between two
//! workers, the file's last partial page) go through the page cache as usual.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};

use nix::libc;
use nix::sys::statfs::{fstatfs, EXT4_SUPER_MAGIC};

use super::copy::{self, Files};
use super::plan::Extent;
use crate::error::Result;

/// Bytes per direct write: measured with `dd oflag=direct` here, 8 MiB kept two
/// streams at the disk's speed; checked for interruption between writes.
const CHUNK: usize = 8 << 20;

/// Test hook: the data size (bytes) from which copies are written directly,
/// instead of the kernel's dirty limit, so that small files take this path.
pub const FROM_ENV: &str = "PCOPY_TEST_DIRECT_FROM";

/// Test hook: each worker's direct writes after this many are taken as refused by
/// the file system (EINVAL), so that the fall-back to pread/pwrite is exercised.
pub const REFUSE_AFTER_ENV: &str = "PCOPY_TEST_DIRECT_REFUSE_AFTER";

/// Whether a copy of `data_bytes` into `dst` is worth writing directly: `dst` is
/// on ext4 (the file system measured) and the data is more than the kernel lets
/// stay dirty ([`threshold`]). Whether the file system does direct I/O on this
/// file is [`open`]'s to find out.
pub fn worth_it(dst: &File, data_bytes: u64) -> bool {
    fstatfs(dst).is_ok_and(|s| s.filesystem_type() == EXT4_SUPER_MAGIC)
        && threshold().is_some_and(|t| data_bytes > t)
}

/// The data size above which a copy is written directly: what the kernel lets
/// stay dirty before it makes writers wait for writeback (`nr_dirty_threshold` in
/// /proc/vmstat), or the test hook. `None`: unknown, never direct.
fn threshold() -> Option<u64> {
    if let Some(v) = std::env::var_os(FROM_ENV) {
        return v.to_str()?.parse().ok();
    }
    let vmstat = std::fs::read_to_string("/proc/vmstat").ok()?;
    dirty_threshold(&vmstat, page_size()?)
}

fn page_size() -> Option<u64> {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    u64::try_from(page).ok()
}

/// `nr_dirty_threshold` (pages) of a /proc/vmstat text, in bytes.
fn dirty_threshold(vmstat: &str, page: u64) -> Option<u64> {
    vmstat.lines().find_map(|l| {
        let pages = l
            .strip_prefix("nr_dirty_threshold ")?
            .trim()
            .parse::<u64>()
            .ok()?;
        Some(pages.saturating_mul(page))
    })
}

/// A second open of the new file for direct writes, and the alignment they need.
#[derive(Debug)]
pub struct Direct {
    file: File,
    /// Offsets, lengths and the buffer are multiples of this: the page size, the
    /// file system's block and what the file system asks of direct I/O, whichever
    /// is largest, so that no page of the page cache and no block holds both a
    /// direct range and a buffered piece.
    align: u64,
}

/// The alignment the file system asks of direct I/O on `file`, or `None` where it
/// does no direct I/O on it or cannot say (a kernel before 6.1).
fn dio_alignment(file: &File) -> Option<u64> {
    let mut stx = std::mem::MaybeUninit::<libc::statx>::zeroed();
    // SAFETY: `file` is open for the whole call and the empty path with
    // AT_EMPTY_PATH names it; `stx` points to a writable `statx` the kernel fills.
    let r = unsafe {
        libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_DIOALIGN,
            stx.as_mut_ptr(),
        )
    };
    if r != 0 {
        return None;
    }
    // SAFETY: zeroed before the call, so every field (all integers) is initialized
    // whatever the kernel filled in.
    let stx = unsafe { stx.assume_init() };
    let known = stx.stx_mask & libc::STATX_DIOALIGN != 0 && stx.stx_dio_offset_align > 0;
    known.then(|| u64::from(stx.stx_dio_offset_align.max(stx.stx_dio_mem_align)))
}

/// Opens `dst` (the new file, preallocated) a second time for direct writes;
/// `None` where that fails or the file system does no direct I/O on it (`statx`
/// `STATX_DIOALIGN`: ext4 does not with `data=journal`, fs-verity, inline data and
/// some encryption, where `O_DIRECT` silently goes through the page cache).
pub fn open(dst: &File) -> Option<Direct> {
    let dio = dio_alignment(dst)?;
    let block = dst.metadata().ok()?.blksize();
    let align = alignment(dio, page_size()?, block)?;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", dst.as_raw_fd()))
        .ok()?;
    Some(Direct { file, align })
}

/// The largest of the direct I/O, page and block alignments, if a power of two.
fn alignment(dio: u64, page: u64, block: u64) -> Option<u64> {
    let align = dio.max(page).max(block);
    align.is_power_of_two().then_some(align)
}

/// Copies `extents` with direct writes through `direct` (see [`open`]), the
/// unaligned ends of each through `f.dst`. A direct write the file system refuses
/// (EINVAL) or a short read ends the direct part: the rest goes by
/// [`copy::copy_extents`], which finishes the job or names the culprit. Any other
/// error of a direct write is reported as a write error.
pub fn copy_extents(
    f: &Files,
    direct: &Direct,
    extents: &[Extent],
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let align = direct.align;
    let chunk = (CHUNK as u64).div_ceil(align) * align;
    let mut storage = vec![0u8; (chunk + align) as usize];
    let at = storage.as_ptr().align_offset(align as usize);
    let Some(buf) = storage.get_mut(at..at + chunk as usize) else {
        return copy::copy_extents(f, extents, None, progress);
    };
    let refuse_after = std::env::var(REFUSE_AFTER_ENV)
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    let mut writes = 0u64;
    for (i, ext) in extents.iter().enumerate() {
        let start = ext.start.div_ceil(align).saturating_mul(align).min(ext.end);
        let end = (ext.end / align * align).max(start);
        copy::copy_extents(f, &[Extent::new(ext.start, start)], None, progress)?;
        let mut off = start;
        while off < end {
            let want = (end - off).min(chunk) as usize;
            let refused = refuse_after.is_some_and(|n| writes >= n);
            let written = match copy::read_full_at(f.src, &mut buf[..want], off) {
                Ok(got) if got == want && !refused => {
                    write_direct(&direct.file, &buf[..want], off).map_err(|e| f.write_err(e))?
                }
                _ => None,
            };
            writes += 1;
            let Some(n) = written else {
                copy::copy_extents(f, &[Extent::new(off, ext.end)], None, progress)?;
                return copy::copy_extents(f, &extents[i + 1..], None, progress);
            };
            off += n as u64;
            progress(n as u64)?;
        }
        copy::copy_extents(f, &[Extent::new(end, ext.end)], None, progress)?;
    }
    Ok(())
}

/// Writes `data` at `off` with one direct write (retried if interrupted): the
/// bytes written, `None` if the file system refused it (nothing written), or the
/// error.
fn write_direct(direct: &File, data: &[u8], off: u64) -> io::Result<Option<usize>> {
    loop {
        match direct.write_at(data, off) {
            Ok(0) => return Ok(None),
            // A short write leaves an aligned offset only if it is whole blocks;
            // otherwise the next one is refused and the rest goes buffered.
            Ok(n) => return Ok(Some(n)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => return Ok(None),
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dirty_threshold_is_read_in_pages() {
        let vmstat =
            "nr_dirty 99\nnr_dirty_threshold 1182776\nnr_dirty_background_threshold 590665\n";
        assert_eq!(dirty_threshold(vmstat, 4096), Some(1182776 * 4096));
        assert_eq!(dirty_threshold("nr_dirty 1\n", 4096), None);
        assert_eq!(dirty_threshold("nr_dirty_threshold x\n", 4096), None);
    }

    #[test]
    fn the_alignment_is_the_largest_of_dio_page_and_block() {
        assert_eq!(alignment(512, 4096, 4096), Some(4096));
        assert_eq!(alignment(512, 4096, 1024), Some(4096));
        assert_eq!(alignment(4096, 4096, 65536), Some(65536));
        assert_eq!(alignment(8192, 4096, 4096), Some(8192));
        assert_eq!(alignment(512, 4096, 12288), None);
    }
}
