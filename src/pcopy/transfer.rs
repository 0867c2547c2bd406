//! One SRC to one DST, from the plan to the report: clone where the file system
//! can, else preallocate and copy with workers (each by the fastest way its share
//! allows), verify if asked, replace DST atomically, and say what was done.

use std::fs::File;
use std::io::{Seek, SeekFrom};
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::time::Instant;

use nix::errno::Errno;
use nix::sys::signal::Signal;

use super::copy::{self, Files, Holes};
use super::dest::{Prealloc, TempFile};
use super::direct;
use super::plan::{self, Extent};
use super::quote;
use super::replace;
use super::report::{Progress, Report, Split};
use super::target;
use super::turns::Turns;
use super::workers::{self, Shared, Stop, Tick};
use super::{source, Failure, Options, Reflink, AUTO_SPLIT_FROM, NO_TMPFILE_ENV};
use crate::error::{Error, Result};
use crate::process;

/// How the data gets into the new file.
#[derive(Debug)]
enum Method {
    /// `copy_file_range`: in the kernel, one copy of each byte. With more than one
    /// worker, they take turns at writing DST ([`Turns`]).
    InKernel,
    /// `splice` through a pipe: as `InKernel`, in larger writes, where the file
    /// system's `copy_file_range` is itself only a splice, up to
    /// [`copy::SPLICE_UP_TO`] bytes.
    Spliced,
    /// Every worker `pread`s into a shared mapping of its DST range (reserved by
    /// fallocate): `--reflink=never`, where `copy_file_range` might clone.
    Mapped,
    /// pread/pwrite, zero runs left as holes when `Some`.
    ReadWrite(Option<Holes>),
    /// Every worker writes its share with `O_DIRECT` through this second open of
    /// the new file, from a buffer of its own, all at once: data bigger than the
    /// kernel's dirty limit, into a range `fallocate` reserved on ext4 ([`direct`]).
    Direct(direct::Direct),
}

/// Copies `src` to `dst` (a file, or a directory to copy into) and returns the
/// report, not yet printed.
/// `Ok(None)`: skipped (`-n` and DST exists).
pub fn one(opts: &Options, src_path: &Path, dst: &Path) -> Result<Option<Report>, Failure> {
    let start = Instant::now();
    let src_shown = quote::inner(src_path.as_os_str());
    let (src, meta) = source::open(src_path)?;
    let target = target::resolve(src_path, &meta, dst)?;
    let dst_shown = target.shown_str();
    let Some(creds) = replace::check_before(&target, opts)? else {
        return Ok(None);
    };

    // Files of pseudo file systems have whatever size they like (/proc says 0, /sys
    // says 4096) and content made up when read: read those to EOF, as does a file
    // that says 0 bytes anywhere.
    let size = meta.len();
    let to_eof = size == 0 || source::on_pseudo_fs(&src);
    let extents = if to_eof {
        Vec::new()
    } else {
        plan::data_extents(&src, size).map_err(|e| Error::io("map data of", &src_shown, e))?
    };
    let data_bytes = plan::total(&extents);

    let no_tmpfile = std::env::var_os(NO_TMPFILE_ENV).is_some();
    let in_place = opts.in_place && target.old.is_some();
    // What a failure leaves of DST.
    let dst_state = if in_place {
        "partly rewritten (--in-place)"
    } else {
        "left unchanged"
    };
    let tmp = if in_place {
        TempFile::in_place(&target)?
    } else {
        TempFile::create(&target, no_tmpfile)?
    };
    // Too big for the page cache to absorb: written directly (if the space can be
    // reserved), by workers that mostly wait for the disk and need no core of their own.
    let big = !to_eof
        && data_bytes == size
        && opts.reflink != Reflink::Never
        && !in_place
        && direct::worth_it(tmp.file(), data_bytes);
    let busy = opts.jobs.is_none() && data_bytes >= AUTO_SPLIT_FROM && !a_core_is_free();
    let (jobs, mut split) = match opts.jobs {
        Some(j) => (j.clamp(1, workers::MAX_WORKERS), Split::AsAsked),
        None if data_bytes < AUTO_SPLIT_FROM => (1, Split::Small),
        None if busy && !big => (1, Split::Busy),
        None => (2, Split::AsAsked),
    };
    let mut shares = plan::split(&extents, jobs);

    let new_meta = tmp
        .file()
        .metadata()
        .map_err(|e| Error::io("stat", &dst_shown, e))?;
    let finish = replace::finish_for(&target, &src, &meta, &new_meta, opts, &creds)?;
    let check_signal = || match process::stop_signal() {
        Some(sig) => Err(Error::plain(format!("interrupted by {sig}"))),
        None => Ok(()),
    };
    let interrupted = |sig: Signal| Failure {
        error: Some(Error::plain(format!(
            "interrupted by {sig}; '{dst_shown}' {dst_state}"
        ))),
        status: 128 + sig as u8,
        signal: Some(sig),
    };
    let stop = |s: Stop| match s {
        Stop::Signal(sig) => interrupted(sig),
        Stop::Failed(e) => Failure::from(e),
    };
    let files = Files {
        src: &src,
        dst: tmp.file(),
        src_name: &src_shown,
        dst_name: &dst_shown,
    };

    // A clone shares SRC's blocks: nothing to preallocate or copy.
    let cloned = !to_eof && opts.reflink != Reflink::Never && {
        match tmp.clone_from(&src) {
            Ok(()) => true,
            Err(e) if opts.reflink == Reflink::Always => {
                return Err(Error::plain(format!(
                    "cannot clone '{src_shown}' to '{dst_shown}': {}",
                    clone_reason(e)
                ))
                .into())
            }
            Err(_) => false,
        }
    };

    let shared = Shared::new()?;
    let show_progress = !opts.quiet && nix::unistd::isatty(std::io::stderr()).unwrap_or(false);
    let mut progress = Progress::new(show_progress, start);
    let mut worker_bytes = vec![data_bytes];
    let mut written_directly = false;
    let file_len;
    if cloned {
        shares = vec![extents.clone()];
        file_len = size;
    } else if to_eof {
        progress.phase("copied", 0);
        let mut tick_progress = |_: u64| check_signal();
        let n = copy::copy_to_eof(&files, &mut tick_progress)?;
        worker_bytes = vec![n];
        file_len = n;
    } else {
        // Read to EOF, the length is known only at the end.
        let prealloc = tmp.preallocate(size, &extents, &check_signal)?;
        if prealloc != Prealloc::Reserved {
            tmp.check_space(data_bytes)?;
        }
        if prealloc == Prealloc::Nothing {
            // Written in order from the start: one worker.
            shares = plan::split(&extents, 1);
        }
        // The direct descriptor is opened before the fork, shared by the workers.
        let direct_dst = (big && prealloc == Prealloc::Reserved)
            .then(|| direct::open(tmp.file()))
            .flatten();
        let method = match direct_dst {
            Some(d) => Method::Direct(d),
            None => {
                if busy && big {
                    // Two workers only because they would have written directly.
                    shares = plan::split(&extents, 1);
                    split = Split::Busy;
                }
                choose_method(opts, data_bytes, size, prealloc, tmp.file())
            }
        };
        written_directly = matches!(method, Method::Direct(_));
        // Made before the fork, shared by the workers.
        let turns = match method {
            Method::InKernel | Method::Spliced if shares.len() > 1 => Some(Turns::new()?),
            _ => None,
        };
        progress.phase("copied", data_bytes);
        let work = |i: usize, tick: &mut Tick| -> Result<()> {
            let mut advance = |n: u64| tick.advance(n);
            match &method {
                Method::InKernel => {
                    copy::copy_extents_in_kernel(&files, &shares[i], turns.as_ref(), &mut advance)
                }
                Method::Spliced => {
                    copy::copy_extents_spliced(&files, &shares[i], turns.as_ref(), &mut advance)
                }
                Method::Mapped => copy::copy_extents_mapped(&files, &shares[i], &mut advance),
                Method::ReadWrite(holes) => {
                    copy::copy_extents(&files, &shares[i], *holes, &mut advance)
                }
                Method::Direct(d) => direct::copy_extents(&files, d, &shares[i], &mut advance),
            }
        };
        let n = shares.len();
        let mut draw = |sh: &Shared| progress.tick(|| sh.total_done(n));
        workers::run(n, &shared, &work, &mut draw).map_err(stop)?;
        check_shares_done(&shared, &shares, "copied")?;
        worker_bytes = (0..n).map(|i| shared.done_by(i)).collect();
        file_len = size;
    }

    // Verify, with the same workers' split, through a new open of the copy: a file
    // system may show a new description what the writer's own still buffers (fusefat
    // reads zeros for the last partial cluster through the writer's).
    let reopened = opts
        .verify
        .then(|| File::open(format!("/proc/self/fd/{}", tmp.file().as_raw_fd())).ok())
        .flatten();
    let files = Files {
        dst: reopened.as_ref().unwrap_or(tmp.file()),
        ..files
    };
    if opts.verify {
        let differs = |off: u64| differs_at(&src_shown, &dst_shown, dst_state, off);
        if to_eof {
            (&src)
                .seek(SeekFrom::Start(0))
                .map_err(|e| Error::io("seek", &src_shown, e))?;
            let mut tick_progress = |_: u64| check_signal();
            if let Some(off) = copy::verify_to_eof(&files, file_len, &mut tick_progress)? {
                return Err(differs(off).into());
            }
        } else {
            progress.phase("verified", data_bytes);
            let work = |i: usize, tick: &mut Tick| -> Result<()> {
                let mut advance = |n: u64| tick.advance(n);
                match copy::verify_extents(&files, &shares[i], &mut advance)? {
                    None => Ok(()),
                    Some(off) => Err(differs(off)),
                }
            };
            let n = shares.len();
            let mut draw = |sh: &Shared| progress.tick(|| sh.total_done(n));
            workers::run(n, &shared, &work, &mut draw).map_err(stop)?;
            check_shares_done(&shared, &shares, "verified")?;
            // A file that grew holes' worth of length would not show in the extents.
            let len = files
                .dst
                .metadata()
                .map_err(|e| Error::io("stat", &dst_shown, e))?
                .len();
            if len != file_len {
                return Err(differs(len.min(file_len)).into());
            }
        }
    }

    // The last look at the stop flag. A signal landing after it (during the link
    // and rename below, or later) is not acted on: pcopy goes on and exits 0. That
    // is acceptable: the copy is complete (and verified if asked), so DST ends up
    // either old or new, consistent either way, and nothing is left to clean up.
    if let Some(sig) = process::stop_signal() {
        return Err(interrupted(sig));
    }
    if opts.in_place {
        tmp.file()
            .set_len(file_len)
            .map_err(|e| Error::io("truncate", &dst_shown, e))?;
    }
    finish.apply(tmp.file(), &dst_shown)?;
    if !tmp.commit(&target, opts.sync, opts.no_clobber)? {
        return Ok(None);
    }
    progress.clear();
    Ok(Some(Report {
        src: src_path.as_os_str().to_os_string(),
        dst: target.shown.as_os_str().to_os_string(),
        bytes: file_len,
        data_bytes: if to_eof { file_len } else { data_bytes },
        seconds: start.elapsed().as_secs_f64(),
        shares: if cloned { Vec::new() } else { worker_bytes },
        split,
        cloned,
        direct: written_directly,
        verified: opts.verify,
        synced: opts.sync,
    }))
}

/// Whether a second worker would get a core of its own: the process may run on two
/// CPUs or more, and the load average leaves one free. Measured here: on 2 cores
/// with the load at 6 to 10, two workers took 3x as long as one (`copy_file_range`,
/// a single in-kernel copy) for 256 MiB, whatever way they wrote.
fn a_core_is_free() -> bool {
    // CPUs this process may use (affinity, cgroup quota); starts no thread.
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let loadavg = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    core_free(cpus, &loadavg)
}

/// [`a_core_is_free`] for `cpus` usable CPUs and a `/proc/loadavg` line (an
/// unreadable one counts as idle).
fn core_free(cpus: usize, loadavg: &str) -> bool {
    let load = loadavg
        .split_whitespace()
        .next()
        .and_then(|l| l.parse::<f64>().ok())
        .unwrap_or(0.0);
    cpus >= 2 && load <= cpus as f64 - 1.0
}

/// The fastest way into this destination.
///
/// Measured on ext4 here (2 vCPUs): workers writing DST through shared mappings
/// (no inode lock) were often 2-10x slower than one `copy_file_range` stream, and
/// never steady, because every page they fault in is new memory; workers taking
/// turns in the kernel copy as fast as one stream, whatever the split.
fn choose_method(
    opts: &Options,
    data_bytes: u64,
    size: u64,
    prealloc: Prealloc,
    dst: &File,
) -> Method {
    if data_bytes < size {
        // SRC has holes: zero runs in its data become holes too (cp's
        // --sparse=auto), which needs the bytes in hand.
        let block = dst.metadata().map(|m| m.blksize()).unwrap_or(4096).max(512);
        return Method::ReadWrite(Some(Holes {
            block,
            punch: prealloc == Prealloc::Reserved,
        }));
    }
    if opts.reflink != Reflink::Never && data_bytes <= copy::SPLICE_UP_TO && splices_only(dst) {
        Method::Spliced
    } else if opts.reflink != Reflink::Never {
        Method::InKernel
    } else if prealloc == Prealloc::Reserved {
        // copy_file_range could clone on XFS and btrfs: the homework's way.
        Method::Mapped
    } else {
        Method::ReadWrite(None)
    }
}

/// Whether `copy_file_range` into `dst` is only a splice: on ext2/3/4 and tmpfs
/// (no clone, no copy offloaded to a server), where splicing through a larger pipe
/// of our own is faster.
fn splices_only(dst: &File) -> bool {
    use nix::sys::statfs::{fstatfs, EXT4_SUPER_MAGIC, TMPFS_MAGIC};
    fstatfs(dst).is_ok_and(|s| [EXT4_SUPER_MAGIC, TMPFS_MAGIC].contains(&s.filesystem_type()))
}

/// Why FICLONE failed, in a user's words where the kernel's are cryptic.
fn clone_reason(e: Errno) -> String {
    match e {
        Errno::EXDEV => "they are on different file systems".into(),
        Errno::EOPNOTSUPP | Errno::ENOTTY | Errno::ENOSYS => {
            "the file system cannot share blocks between files (reflink)".into()
        }
        Errno::EINVAL => "the file system cannot clone these files".into(),
        e => crate::error::os_reason(&e.into()),
    }
}

/// Belt and braces after a run of workers that reported success: each must have
/// counted exactly its share's bytes. A worker that vanished without a word (reaped
/// behind our back, say) would otherwise leave its range as zeros in a file that
/// then replaces DST.
fn check_shares_done(shared: &Shared, shares: &[Vec<Extent>], done: &str) -> Result<()> {
    for (i, share) in shares.iter().enumerate() {
        let (got, want) = (shared.done_by(i), plan::total(share));
        if got != want {
            return Err(Error::plain(format!(
                "worker {} {done} {got} of its {want} bytes",
                i + 1
            )));
        }
    }
    Ok(())
}

/// The `--verify` failure: the new file differs from SRC at byte `off`.
fn differs_at(src_shown: &str, dst_shown: &str, dst_state: &str, off: u64) -> Error {
    Error::msg(
        "verify copy of",
        src_shown,
        format!("the new file differs from it at byte {off} ('{dst_shown}' {dst_state})"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_worker_needs_a_free_core() {
        assert!(core_free(2, "0.35 0.40 0.50 1/180 123"));
        assert!(core_free(2, "1.00 0.40 0.50 1/180 123"));
        assert!(!core_free(2, "6.97 6.27 6.88 10/183 28696"));
        assert!(!core_free(1, "0.00 0.00 0.00 1/1 1"));
        assert!(core_free(8, "6.50 1 1 1/1 1"));
        assert!(core_free(2, ""));
    }
}
