//! What one worker does: copy (or verify) its list of extents with positioned I/O.
//!
//! No function here touches a file offset, so workers forked from one process can
//! share the descriptors. `progress` is called after every chunk with the bytes just
//! done; it returns an error to stop the worker (interrupted, or a sibling failed).

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;

use nix::errno::Errno;
use nix::fcntl::{fcntl, splice, FallocateFlags, FcntlArg, OFlag, SpliceFFlags};

use super::plan::Extent;
use super::turns::{Schedule, Turns};
use super::window::{self, Window};
use crate::error::{Error, Result};

/// Bytes per read/write: 1 MiB measured best here (4 MiB was slower).
pub const CHUNK: usize = 1 << 20;

/// Bytes per `copy_file_range` call: large enough to be cheap, small enough for
/// progress and interruption to be checked a few hundred times a second.
const CFR_CHUNK: usize = 8 << 20;

/// `splice` flags: none (SPLICE_F_MOVE is a no-op since Linux 2.6.21).
const NO_FLAGS: SpliceFFlags = SpliceFFlags::empty();

/// The two files of a copy and the names to put in error messages.
pub struct Files<'a> {
    pub src: &'a File,
    pub dst: &'a File,
    pub src_name: &'a str,
    pub dst_name: &'a str,
}

impl Files<'_> {
    fn read_err(&self, e: io::Error) -> Error {
        Error::io("read", self.src_name, e)
    }

    pub(super) fn write_err(&self, e: io::Error) -> Error {
        Error::io("write", self.dst_name, e)
    }

    /// SRC ended early: a read at `at` found its end. The message names SRC's real
    /// end (it may have shrunk far below the place this worker was reading).
    fn shrank_at(&self, at: u64, end: u64) -> Error {
        let eof = self.src.metadata().map(|m| m.len().min(at)).unwrap_or(at);
        Error::msg(
            "read",
            self.src_name,
            format!("file shrank during the copy (it now ends at byte {eof}, expected data up to byte {end})"),
        )
    }
}

/// Reads until `buf` is full or end of file; returns the bytes read.
pub(super) fn read_full_at(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Copies `extents` from `f.src` to the same offsets of `f.dst` with pread/pwrite.
///
/// With `holes`, a run of zeros covering whole aligned blocks of `holes.block` bytes
/// is not written (it stays a hole, as `cp --sparse=auto` leaves it) and, where
/// `holes.punch` says the range was preallocated, is punched out.
pub fn copy_extents(
    f: &Files,
    extents: &[Extent],
    holes: Option<Holes>,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let longest = extents.iter().map(Extent::len).max().unwrap_or(0);
    let mut buf = vec![0u8; (longest as usize).min(CHUNK)];
    for ext in extents {
        let mut off = ext.start;
        while off < ext.end {
            let want = ((ext.end - off) as usize).min(buf.len());
            let got = read_full_at(f.src, &mut buf[..want], off).map_err(|e| f.read_err(e))?;
            if got < want {
                return Err(f.shrank_at(off + got as u64, ext.end));
            }
            match holes {
                None => f
                    .dst
                    .write_all_at(&buf[..want], off)
                    .map_err(|e| f.write_err(e))?,
                Some(h) => h.write_skipping_zeros(f, &buf[..want], off)?,
            }
            off += want as u64;
            progress(want as u64)?;
        }
    }
    Ok(())
}

/// How [`copy_extents`] turns zero runs into holes.
#[derive(Clone, Copy, Debug)]
pub struct Holes {
    /// The file system's block size: only whole aligned blocks become holes.
    pub block: u64,
    /// The destination was preallocated: a skipped run must be punched out.
    pub punch: bool,
}

impl Holes {
    /// Writes `data` at `off` of DST, except for the aligned all-zero blocks in it.
    fn write_skipping_zeros(self, f: &Files, data: &[u8], off: u64) -> Result<()> {
        let end = off + data.len() as u64;
        let mut pos = off; // the first byte not yet written or skipped
        for (z_start, z_end) in zero_blocks(data, off, self.block) {
            if z_start > pos {
                let piece = &data[(pos - off) as usize..(z_start - off) as usize];
                f.dst.write_all_at(piece, pos).map_err(|e| f.write_err(e))?;
            }
            if self.punch {
                let flags =
                    FallocateFlags::FALLOC_FL_PUNCH_HOLE | FallocateFlags::FALLOC_FL_KEEP_SIZE;
                let len = (z_end - z_start) as i64;
                nix::fcntl::fallocate(f.dst, flags, z_start as i64, len)
                    .map_err(|e| Error::io("punch a hole in", f.dst_name, e.into()))?;
            }
            pos = z_end;
        }
        if pos < end {
            let piece = &data[(pos - off) as usize..];
            f.dst.write_all_at(piece, pos).map_err(|e| f.write_err(e))?;
        }
        Ok(())
    }
}

/// The runs `[start, end)` (file offsets) of whole `block`-aligned blocks of zeros
/// in `data`, which sits at file offset `off`; adjacent zero blocks form one run.
pub fn zero_blocks(data: &[u8], off: u64, block: u64) -> Vec<(u64, u64)> {
    let mut runs: Vec<(u64, u64)> = Vec::new();
    let end = off + data.len() as u64;
    let mut b = off.div_ceil(block) * block;
    while b + block <= end {
        let at = (b - off) as usize;
        if data[at..at + block as usize].iter().all(|&x| x == 0) {
            match runs.last_mut() {
                Some(last) if last.1 == b => last.1 = b + block,
                _ => runs.push((b, b + block)),
            }
        }
        b += block;
    }
    runs
}

/// Bytes of DST a worker maps at a time: large enough that mapping costs nothing,
/// small enough to keep a worker's dirty mapped pages modest.
const WINDOW: u64 = 64 << 20;

/// Copies `extents` from `f.src` into shared mappings of the same ranges of `f.dst`
/// ([`Window`]): `pread` from SRC lands in DST's page cache directly, one copy, and
/// no worker takes DST's inode lock, which `pwrite` holds for each call. Only for a
/// DST whose ranges `fallocate` reserved: a mapping cannot report a full disk.
pub fn copy_extents_mapped(
    f: &Files,
    extents: &[Extent],
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let page = window::page_size();
    for ext in extents {
        let mut off = ext.start;
        while off < ext.end {
            let map_start = off / page * page;
            let map_end = (map_start + WINDOW).min(ext.end);
            let mut win = Window::map(f.dst, map_start, (map_end - map_start) as usize)
                .map_err(|e| Error::io("map", f.dst_name, e.into()))?;
            while off < map_end {
                let want = ((map_end - off) as usize).min(CHUNK);
                let got = read_full_at(f.src, win.slice_mut(off, want), off).map_err(|e| {
                    if e.raw_os_error() == Some(nix::libc::EFAULT) {
                        Error::msg(
                            "write",
                            f.dst_name,
                            "the file system could not store a mapped page \
                             (out of space, or an I/O error)",
                        )
                    } else {
                        f.read_err(e)
                    }
                })?;
                if got < want {
                    return Err(f.shrank_at(off + got as u64, ext.end));
                }
                off += want as u64;
                progress(want as u64)?;
            }
        }
    }
    Ok(())
}

/// Copies `extents` in the kernel with `copy_file_range`. With `turns`, the
/// workers of one copy take turns at writing (see [`Turns`]).
/// Falls back to [`copy_extents`] where the kernel or file system cannot (EXDEV,
/// EINVAL, EOPNOTSUPP, ENOSYS), or where it copies 0 bytes early.
pub fn copy_extents_in_kernel(
    f: &Files,
    extents: &[Extent],
    turns: Option<&Turns>,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let mut schedule = Schedule::new(turns);
    for (i, ext) in extents.iter().enumerate() {
        let mut off = ext.start;
        while off < ext.end {
            let want = schedule.allow(((ext.end - off) as usize).min(CFR_CHUNK))?;
            let mut off_in = off as i64;
            let mut off_out = off as i64;
            match nix::fcntl::copy_file_range(
                f.src,
                Some(&mut off_in),
                f.dst,
                Some(&mut off_out),
                want,
            ) {
                Ok(n) if n > 0 => {
                    off += n as u64;
                    schedule.wrote(n as u64);
                    progress(n as u64)?;
                }
                Err(Errno::EINTR) => {}
                // 0 bytes before the end (SRC shrank, or a file system that copies
                // nothing), EXDEV/EINVAL/EOPNOTSUPP/ENOSYS (cannot), or an I/O error
                // (which side?): pread/pwrite finish the job or name the culprit.
                _ => {
                    schedule.end();
                    copy_extents(f, &[Extent::new(off, ext.end)], None, progress)?;
                    return copy_extents(f, &extents[i + 1..], None, progress);
                }
            }
        }
    }
    Ok(())
}

/// Bytes of the pipe [`copy_extents_spliced`] moves data through, so DST gets
/// writes of this size. Measured on ext4 here (10-20 paired rounds): 256 KiB
/// copied 256 MiB to 1 GiB 11-14% faster than `copy_file_range` (which splices
/// through 64 KiB), steadily; 512 KiB was a little faster at 256 MiB (20%) but
/// nearer the cliff: 1 MiB was 2-4x slower at 2 GiB (page-cache folios that
/// large come from new memory).
const SPLICE_PIPE: usize = 256 << 10;

/// The most data [`copy_extents_spliced`] is used for. At 2 GiB its 256 KiB
/// writes were bimodal here (0.43 s or 1.1-2.1 s, the slow runs spending 87% in
/// the first touch of the new page-cache memory) where 64 KiB writes
/// (`copy_file_range`, and cp) stayed at 0.5-0.65 s; at 1 GiB and below they
/// were steady.
pub const SPLICE_UP_TO: u64 = 1 << 30;

/// Copies `extents` in the kernel through a pipe of [`SPLICE_PIPE`] bytes:
/// `splice` from SRC into it, then from it into DST. With `turns`, the workers of
/// one copy take turns at writing. Where the file systems refuse to splice, the
/// rest goes by [`copy_extents_in_kernel`].
pub fn copy_extents_spliced(
    f: &Files,
    extents: &[Extent],
    turns: Option<&Turns>,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let Ok((from_pipe, into_pipe)) = nix::unistd::pipe2(OFlag::O_CLOEXEC) else {
        return copy_extents_in_kernel(f, extents, turns, progress);
    };
    // Where the size is refused (over the user's pipe quota), the default 64 KiB.
    let _ = fcntl(&into_pipe, FcntlArg::F_SETPIPE_SZ(SPLICE_PIPE as i32));
    let pipe_len = fcntl(&into_pipe, FcntlArg::F_GETPIPE_SZ).map_or(64 << 10, |n| n as usize);
    let cannot = |e: Errno| matches!(e, Errno::EINVAL | Errno::ENOSYS | Errno::EOPNOTSUPP);
    let mut schedule = Schedule::new(turns);
    for (i, ext) in extents.iter().enumerate() {
        let mut off = ext.start;
        while off < ext.end {
            let want = schedule.allow(((ext.end - off) as usize).min(pipe_len))?;
            let mut off_in = off as i64;
            let got = match splice(f.src, Some(&mut off_in), &into_pipe, None, want, NO_FLAGS) {
                Ok(0) => return Err(f.shrank_at(off, ext.end)),
                Ok(n) => n,
                Err(Errno::EINTR) => continue,
                Err(e) if cannot(e) => {
                    schedule.end();
                    return in_kernel_from(f, off, &extents[i..], turns, progress);
                }
                Err(e) => return Err(f.read_err(e.into())),
            };
            // Out of the pipe: `off` counts what reached DST.
            let end = off + got as u64;
            while off < end {
                let mut off_out = off as i64;
                let left = (end - off) as usize;
                match splice(&from_pipe, None, f.dst, Some(&mut off_out), left, NO_FLAGS) {
                    Ok(n) if n > 0 => {
                        off += n as u64;
                        schedule.wrote(n as u64);
                        progress(n as u64)?;
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) if cannot(e) => {
                        // What is left in the pipe is read again from SRC.
                        schedule.end();
                        return in_kernel_from(f, off, &extents[i..], turns, progress);
                    }
                    Ok(_) => return Err(f.write_err(io::ErrorKind::WriteZero.into())),
                    Err(e) => return Err(f.write_err(e.into())),
                }
            }
        }
    }
    Ok(())
}

/// The rest of a spliced copy by [`copy_extents_in_kernel`]: `extents` from
/// offset `off` of the first one on.
fn in_kernel_from(
    f: &Files,
    off: u64,
    extents: &[Extent],
    turns: Option<&Turns>,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<()> {
    let rest = [&[Extent::new(off, extents[0].end)], &extents[1..]].concat();
    copy_extents_in_kernel(f, &rest, turns, progress)
}

/// Copies SRC to EOF whatever its reported size (/proc and /sys files say 0).
/// One worker, no fork: this is the only place that uses the file offset of SRC.
/// Returns the bytes copied.
pub fn copy_to_eof(f: &Files, progress: &mut dyn FnMut(u64) -> Result<()>) -> Result<u64> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut src = f.src;
    let mut off = 0u64;
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => return Ok(off),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(f.read_err(e)),
        };
        f.dst
            .write_all_at(&buf[..n], off)
            .map_err(|e| f.write_err(e))?;
        off += n as u64;
        progress(n as u64)?;
    }
}

/// The index of the first byte where `a` and `b` differ; a shorter slice differs
/// from a longer one at its end. `None` when they are equal.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    const BLOCK: usize = 4096;
    let common = a.len().min(b.len());
    let mut i = 0;
    // Compare a block at a time (memcmp speed), then find the byte inside the block.
    while i < common {
        let end = (i + BLOCK).min(common);
        if a[i..end] != b[i..end] {
            return (i..end).find(|&k| a[k] != b[k]);
        }
        i = end;
    }
    (a.len() != b.len()).then_some(common)
}

/// Re-reads `extents` from both files and compares them. Returns the offset of the
/// first difference in these extents, or `None` when they match.
pub fn verify_extents(
    f: &Files,
    extents: &[Extent],
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Option<u64>> {
    let longest = extents.iter().map(Extent::len).max().unwrap_or(0);
    let size = (longest as usize).min(CHUNK);
    let (mut a, mut b) = (vec![0u8; size], vec![0u8; size]);
    for ext in extents {
        let mut off = ext.start;
        while off < ext.end {
            let want = ((ext.end - off) as usize).min(size);
            let got_a = read_full_at(f.src, &mut a[..want], off).map_err(|e| f.read_err(e))?;
            let got_b = read_full_at(f.dst, &mut b[..want], off)
                .map_err(|e| Error::io("read", f.dst_name, e))?;
            if let Some(k) = first_difference(&a[..got_a], &b[..got_b]) {
                return Ok(Some(off + k as u64));
            }
            if got_a < want {
                // Both ended early at the same place: SRC shrank after the copy.
                return Err(f.shrank_at(off + got_a as u64, ext.end));
            }
            off += want as u64;
            progress(want as u64)?;
        }
    }
    Ok(None)
}

/// Compares SRC read to EOF with the first bytes of DST (the size-0 /proc case).
pub fn verify_to_eof(
    f: &Files,
    len: u64,
    progress: &mut dyn FnMut(u64) -> Result<()>,
) -> Result<Option<u64>> {
    let mut src = f.src;
    let mut a = vec![0u8; 64 * 1024];
    let mut b = vec![0u8; 64 * 1024];
    let mut off = 0u64;
    loop {
        let n = match src.read(&mut a) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(f.read_err(e)),
        };
        if n == 0 {
            // SRC ended: DST must end here too.
            return Ok((len != off).then_some(off));
        }
        let got =
            read_full_at(f.dst, &mut b[..n], off).map_err(|e| Error::io("read", f.dst_name, e))?;
        if let Some(k) = first_difference(&a[..n], &b[..got]) {
            return Ok(Some(off + k as u64));
        }
        off += n as u64;
        progress(n as u64)?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_blocks_are_whole_aligned_blocks_merged_into_runs() {
        let mut d = vec![0u8; 10_000];
        d[5000] = 1;
        // At file offset 100: whole blocks are [1024, 2048) … [8192, 9216); the one
        // byte at file offset 5100 spoils [4096, 5120).
        assert_eq!(zero_blocks(&d, 100, 1024), vec![(1024, 4096), (5120, 9216)]);
        assert_eq!(zero_blocks(&[0u8; 1000], 0, 1024), vec![]);
        assert_eq!(zero_blocks(&[1u8; 4096], 0, 1024), vec![]);
    }

    #[test]
    fn equal_slices_have_no_difference() {
        assert_eq!(first_difference(b"", b""), None);
        let a = vec![7u8; 10_000];
        assert_eq!(first_difference(&a, &a.clone()), None);
    }

    #[test]
    fn finds_the_first_differing_byte() {
        let a = vec![1u8; 10_000];
        for at in [0, 1, 4095, 4096, 4097, 9_999] {
            let mut b = a.clone();
            b[at] = 2;
            if at + 10 < b.len() {
                b[at + 10] = 3; // a later difference must not be reported
            }
            assert_eq!(first_difference(&a, &b), Some(at), "at {at}");
        }
    }

    #[test]
    fn a_shorter_slice_differs_at_its_end() {
        assert_eq!(first_difference(b"abc", b"ab"), Some(2));
        assert_eq!(first_difference(b"", b"x"), Some(0));
        assert_eq!(first_difference(b"ab", b"abc"), Some(2));
    }
}
