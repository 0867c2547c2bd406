//! The plan: where SRC holds data, and which worker copies which part of it.
//!
//! [`data_extents`] asks the file system (SEEK_DATA/SEEK_HOLE) for SRC's data map;
//! [`split`] is pure and cuts that map into shares of about equal data bytes.

use std::io;
use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::unistd::{lseek, Whence};

/// A byte range `[start, end)` of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Extent {
    pub start: u64,
    pub end: u64,
}

impl Extent {
    pub fn new(start: u64, end: u64) -> Self {
        debug_assert!(start <= end);
        Extent { start, end }
    }

    pub fn len(&self) -> u64 {
        self.end - self.start
    }
}

/// Total bytes in `extents`.
pub fn total(extents: &[Extent]) -> u64 {
    extents.iter().map(Extent::len).sum()
}

/// The data extents of the first `size` bytes of `fd`, in order; holes are left out.
///
/// Where the file system cannot tell (EINVAL, EOPNOTSUPP), the whole file is data.
/// Moves the file offset of `fd`: call it before any fork, and use positioned I/O after.
pub fn data_extents(fd: impl AsFd, size: u64) -> io::Result<Vec<Extent>> {
    let fd = fd.as_fd();
    let mut out = Vec::new();
    let mut pos = 0u64;
    while pos < size {
        let data = match lseek(fd, pos as i64, Whence::SeekData) {
            Ok(d) => d as u64,
            // No data at or after `pos`: the rest is a hole.
            Err(Errno::ENXIO) => break,
            Err(Errno::EINVAL | Errno::EOPNOTSUPP) if pos == 0 => {
                return Ok(vec![Extent::new(0, size)]);
            }
            Err(e) => return Err(e.into()),
        };
        if data >= size {
            break;
        }
        let hole = match lseek(fd, data as i64, Whence::SeekHole) {
            Ok(h) => (h as u64).min(size),
            // The file shrank under us: whatever is left up to `size` counts as data,
            // and the copy itself will report the short read.
            Err(Errno::ENXIO) => size,
            Err(e) => return Err(e.into()),
        };
        out.push(Extent::new(data, hole));
        pos = hole;
    }
    Ok(out)
}

/// The least data a worker is given: a file of fewer data bytes than `jobs` times
/// this gets fewer workers (a 3-byte file is not cut into 1-byte workers).
pub const MIN_SHARE: u64 = 4096;

/// Cuts `extents` into `jobs` shares of about equal data bytes, in file order: share
/// `k` holds data bytes `[k * total / jobs, (k + 1) * total / jobs)`, cut at the exact
/// byte, so two jobs copy exactly the byte halves `[0, len/2)` and `[len/2, len)` of a
/// file without holes (the homework), whatever its size. Shares differ by at most one
/// byte. There are fewer shares than `jobs` only when a share would hold less than
/// [`MIN_SHARE`] bytes (never a tiny worker), and one empty share for a file with no
/// data.
pub fn split(extents: &[Extent], jobs: usize) -> Vec<Vec<Extent>> {
    let total = total(extents);
    let n = (jobs.max(1) as u64).min(total / MIN_SHARE).max(1);
    let mut cuts: Vec<u64> = (0..=n)
        .map(|k| (k as u128 * total as u128 / n as u128) as u64)
        .collect();
    cuts.dedup();
    if cuts.len() < 2 {
        return vec![Vec::new()];
    }
    cuts.windows(2)
        .map(|w| {
            let (lo, hi) = (w[0], w[1]);
            let mut share = Vec::new();
            let mut base = 0u64; // data bytes before `ext`
            for ext in extents {
                let (from, to) = (lo.max(base), hi.min(base + ext.len()));
                if from < to {
                    share.push(Extent::new(ext.start + from - base, ext.start + to - base));
                }
                base += ext.len();
            }
            share
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(start: u64, end: u64) -> Extent {
        Extent::new(start, end)
    }

    /// The shares, concatenated, are exactly the extents (merging adjacent pieces).
    fn assert_covers(extents: &[Extent], shares: &[Vec<Extent>]) {
        let mut merged: Vec<Extent> = Vec::new();
        for piece in shares.iter().flatten() {
            assert!(piece.start < piece.end, "empty piece {piece:?}");
            match merged.last_mut() {
                Some(last) if last.end == piece.start => last.end = piece.end,
                Some(last) => {
                    assert!(last.end < piece.start, "overlap or disorder at {piece:?}");
                    merged.push(*piece);
                }
                None => merged.push(*piece),
            }
        }
        let mut want: Vec<Extent> = Vec::new();
        for &x in extents.iter().filter(|x| x.len() > 0) {
            match want.last_mut() {
                Some(last) if last.end == x.start => last.end = x.end,
                _ => want.push(x),
            }
        }
        assert_eq!(merged, want);
    }

    #[test]
    fn one_extent_splits_into_equal_halves() {
        let ext = [e(0, 1 << 20)];
        let shares = split(&ext, 2);
        assert_eq!(shares, vec![vec![e(0, 1 << 19)], vec![e(1 << 19, 1 << 20)]]);
    }

    #[test]
    fn two_jobs_cut_at_the_exact_half_byte_at_any_size() {
        // Large shares too: no rounding of the cut to whole chunks.
        for len in [
            (1u64 << 13) + 1,
            (33 << 20) + 1,
            (256 << 20) + 3,
            (2 << 30) + 1,
        ] {
            let shares = split(&[e(0, len)], 2);
            assert_eq!(
                shares,
                vec![vec![e(0, len / 2)], vec![e(len / 2, len)]],
                "len {len}"
            );
        }
    }

    #[test]
    fn odd_length_covers_every_byte() {
        for len in [1u64, 2, 3, 4095, 4097, 3 * 1024 * 1024 + 7] {
            for jobs in 1..=8 {
                let ext = [e(0, len)];
                let shares = split(&ext, jobs);
                let want = (jobs as u64).min(len / MIN_SHARE).max(1);
                assert_eq!(shares.len() as u64, want);
                assert_covers(&ext, &shares);
            }
        }
    }

    #[test]
    fn shares_are_balanced_to_the_byte() {
        for len in [10_000_000u64, (100 << 20) + 1] {
            for jobs in 1..=8 {
                let shares = split(&[e(0, len)], jobs);
                assert_eq!(shares.len(), jobs);
                let sizes: Vec<u64> = shares.iter().map(|s| total(s)).collect();
                let max = *sizes.iter().max().unwrap();
                let min = *sizes.iter().min().unwrap();
                assert!(max - min <= 1, "{len} -j {jobs}: {sizes:?}");
            }
        }
    }

    #[test]
    fn splits_by_data_bytes_not_by_offsets() {
        // 1 MiB of data, 100 MiB of hole, 1 MiB of data: each worker gets one data extent.
        let mib = 1 << 20;
        let ext = [e(0, mib), e(101 * mib, 102 * mib)];
        let shares = split(&ext, 2);
        assert_eq!(shares, vec![vec![e(0, mib)], vec![e(101 * mib, 102 * mib)]]);
    }

    #[test]
    fn many_small_extents_are_spread_over_workers() {
        let ext: Vec<Extent> = (0..100).map(|i| e(i * 8192, i * 8192 + 4096)).collect();
        let shares = split(&ext, 4);
        assert_eq!(shares.len(), 4);
        assert_covers(&ext, &shares);
        for s in &shares {
            assert_eq!(total(s), 25 * 4096);
        }
    }

    #[test]
    fn every_job_gets_a_share_of_at_least_min_share_bytes() {
        let mib = 1 << 20;
        assert_eq!(split(&[e(0, mib)], 8).len(), 8);
        assert_eq!(split(&[e(0, 3)], 8), vec![vec![e(0, 3)]]);
        assert_eq!(split(&[e(0, 3 * MIN_SHARE - 1)], 8).len(), 2);
        assert_eq!(split(&[e(0, 2 * MIN_SHARE)], 2).len(), 2);
    }

    #[test]
    fn no_data_gives_one_empty_share() {
        assert_eq!(split(&[], 4), vec![Vec::<Extent>::new()]);
    }

    #[test]
    fn unaligned_extents_still_cover_exactly() {
        let ext = [e(5, 40_000), e(40_001, 90_000), e(123_456, 700_001)];
        for jobs in 1..=8 {
            let shares = split(&ext, jobs);
            assert_covers(&ext, &shares);
        }
    }
}
