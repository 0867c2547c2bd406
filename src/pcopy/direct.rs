//! Big copies written around the page cache: every worker reads its share from
//! SRC into a buffer of its own and writes it to DST with `O_DIRECT`.
//!
//! A buffered copy bigger than what the kernel lets stay dirty runs at the pace of
//! writeback anyway, and on the way it fills the page cache with DST's pages, every
//! one of them new memory to fault in, by one writer at a time (a file system lets
//! one buffered writer into a file at once). Direct writes into the range
//! `fallocate` reserved skip both: ext4 lets aligned direct writes that overwrite
//! allocated blocks share the inode lock, so the workers write at once, each from
//! one buffer it reuses. Measured here (2 vCPUs, ext4 on the VM's disk, 8 GiB): two
//! direct streams 4.3-5.2 s against cp's 5.4-7.4 s in the same rounds, one stream
//! as fast as cp; see docs/performance.md.
//!
//! The pieces of a share that are not whole aligned blocks (the cut between two
//! workers, the file's last partial block) go through the page cache as usual.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, OpenOptionsExt};

use nix::libc;
use nix::sys::statfs::{fstatfs, EXT4_SUPER_MAGIC};

use super::copy::{self, Files};
use super::plan::Extent;
use crate::error::Result;

/// Alignment of direct writes (offset, length and buffer): a page, at least 4 KiB
/// (a multiple of every block size a disk reports), so that no page of the page
/// cache holds both a direct range and a buffered piece.
fn alignment() -> u64 {
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE);
    page.ok().flatten().map_or(4096, |p| (p as u64).max(4096))
}

/// Bytes per direct write: measured with `dd oflag=direct` here, 8 MiB kept two
/// streams at the disk's speed; checked for interruption between writes.
const CHUNK: usize = 8 << 20;

/// Test hook: the data size (bytes) from which copies are written directly,
/// instead of the kernel's dirty limit, so that small files take this path.
pub const FROM_ENV: &str = "PCOPY_TEST_DIRECT_FROM";

/// The data size above which a copy is written directly: what the kernel lets
/// stay dirty before it makes writers wait for writeback (`nr_dirty_threshold` in
/// /proc/vmstat), or the test hook. `None`: unknown, never direct.
pub fn threshold() -> Option<u64> {
    if let Some(v) = std::env::var_os(FROM_ENV) {
        return v.to_str()?.parse().ok();
    }
    let vmstat = std::fs::read_to_string("/proc/vmstat").ok()?;
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE).ok()??;
    dirty_threshold(&vmstat, page as u64)
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

/// Whether `dst` is on a file system where direct writes were measured to pay:
/// ext4 (other file systems were not measured).
pub fn suits(dst: &File) -> bool {
    fstatfs(dst).is_ok_and(|s| s.filesystem_type() == EXT4_SUPER_MAGIC)
}

/// A second open of `dst` (the new file, preallocated) for direct writes; `None`
/// where the open fails.
pub fn open(dst: &File) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(format!("/proc/self/fd/{}", dst.as_raw_fd()))
        .ok()
}

/// Copies `extents` with direct writes through `direct` (see [`open`]), the
/// unaligned ends of each through `f.dst`. A direct write the file system refuses,
/// a short read or an error ends the direct part: the rest goes by
/// [`copy::copy_extents`], which finishes the job or names the culprit.
pub fn copy_extents(
    f: &Files,
    direct: &File,
    extents: &[Extent],
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let align = alignment();
    let mut storage = vec![0u8; CHUNK + align as usize];
    let at = storage.as_ptr().align_offset(align as usize);
    let Some(buf) = storage.get_mut(at..at + CHUNK) else {
        return copy::copy_extents(f, extents, None, progress);
    };
    for (i, ext) in extents.iter().enumerate() {
        let start = ext.start.div_ceil(align).saturating_mul(align).min(ext.end);
        let end = (ext.end / align * align).max(start);
        copy::copy_extents(f, &[Extent::new(ext.start, start)], None, progress)?;
        let mut off = start;
        while off < end {
            let want = ((end - off) as usize).min(CHUNK);
            let written = match copy::read_full_at(f.src, &mut buf[..want], off) {
                Ok(got) if got == want => write_direct(direct, &buf[..want], off),
                _ => None,
            };
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

/// Writes `data` at `off` with one direct write (retried if interrupted); the
/// bytes written, or `None` if nothing was (refused, an error).
fn write_direct(direct: &File, data: &[u8], off: u64) -> Option<usize> {
    loop {
        match direct.write_at(data, off) {
            Ok(0) => return None,
            // A short write leaves an aligned offset only if it is whole blocks;
            // otherwise the next one is refused and the rest goes buffered.
            Ok(n) => return Some(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return None,
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
    fn the_alignment_is_a_page_of_at_least_4_kib() {
        let a = alignment();
        assert!(a >= 4096 && a.is_power_of_two(), "{a}");
    }
}
