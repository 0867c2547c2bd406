//! `pcopy SRC DST`: copy one file with forked workers, each writing its own byte
//! range of a preallocated destination with positioned I/O.
//!
//! The course's homework ("a parent and a child each copy one half") grown into a
//! tool: SRC's data map is split into about equal shares (`plan`); the new file is
//! built nameless next to DST and preallocated (`dest`); the parent forks a child
//! per share but the first and copies the first itself (`workers`, `copy`); only
//! when all succeeded (and `--verify` agreed) does the file replace DST, atomically;
//! then one line says what was done (`report`).

mod copy;
mod dest;
mod plan;
mod report;
mod workers;

use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use nix::fcntl::{fcntl, FcntlArg, OFlag};
use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::process;
use crate::stdio;
use copy::Files;
use report::{Progress, Report};
use workers::{Shared, Stop, Tick};

pub use copy::first_difference;
pub use workers::MAX_WORKERS;

/// Below this many data bytes per worker, each worker copies with `copy_file_range`
/// (in the kernel, no user-space buffer); from it on, with pread/pwrite. Measured here
/// (2 cores, page cache warm): workers calling `copy_file_range` into one file
/// serialise on its inode lock, which costs little on small shares, while pread/pwrite
/// workers run in parallel and win from about 24 MiB a share (1.2x cp from 64 MiB).
pub const KERNEL_COPY_BELOW: u64 = 24 << 20;

/// Test hook: when set in the environment, the destination is built under a hidden
/// name instead of with O_TMPFILE, to exercise the fallback path.
pub const NO_TMPFILE_ENV: &str = "PCOPY_TEST_NO_TMPFILE";

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The file to copy.
    pub src: PathBuf,
    /// Where to copy it: a file name, or an existing directory to copy into.
    pub dst: PathBuf,
    /// The most workers, parent included (1..=64).
    pub jobs: usize,
    /// Print nothing on success.
    pub quiet: bool,
    /// Print the report as one JSON object.
    pub json: bool,
    /// Compare the new file with SRC before it replaces DST.
    pub verify: bool,
    /// fsync the file before the rename and its directory after.
    pub sync: bool,
}

/// A failed run: the error line to print and how to end.
#[derive(Debug)]
pub struct Failure {
    /// What went wrong, printed as `pcopy: ERROR`.
    pub error: Error,
    /// 1 for errors; 128 + N when stopped by signal N (used only if dying by the
    /// signal itself fails, see [`exit_code`]).
    pub status: u8,
    /// The stop signal (SIGINT, SIGTERM, SIGHUP) that ended the run, if any.
    pub signal: Option<Signal>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error,
            status: 1,
            signal: None,
        }
    }
}

/// Prints a failure as `pcopy: …` on stderr and turns the result into an exit status.
///
/// Call it after everything `run` built is dropped (the temporary file removed,
/// the workers reaped). When a stop signal ended the run, this does not return: it
/// dies by that signal, so that the parent sees death by signal, as from `cp`. A
/// shell running `for f in …; do pcopy …; done` stops the loop on Ctrl-C only then;
/// an exit status of 130 would tell it pcopy handled the signal and the loop goes on.
pub fn exit_code(result: Result<(), Failure>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            stdio::err_line(&format!("pcopy: {}", f.error));
            if let Some(sig) = f.signal {
                process::die_by_signal(sig);
            }
            ExitCode::from(f.status)
        }
    }
}

/// Opens SRC without ever blocking (a FIFO would wait for a writer), refuses
/// anything but a regular file, and then puts the file back in blocking mode.
fn open_source(opts: &Options) -> Result<(File, std::fs::Metadata)> {
    let shown = opts.src.display();
    let file = File::options()
        .read(true)
        .custom_flags(nix::libc::O_NONBLOCK | nix::libc::O_CLOEXEC)
        .open(&opts.src)
        .map_err(|e| Error::io("open", &shown, e))?;
    let meta = file.metadata().map_err(|e| Error::io("stat", &shown, e))?;
    let ft = meta.file_type();
    if ft.is_dir() {
        let eisdir = io::Error::from_raw_os_error(nix::libc::EISDIR);
        return Err(Error::io("copy", &shown, eisdir));
    }
    if !ft.is_file() {
        let kind = if ft.is_fifo() {
            "a FIFO"
        } else if ft.is_socket() {
            "a socket"
        } else if ft.is_char_device() {
            "a character device"
        } else if ft.is_block_device() {
            "a block device"
        } else {
            "not a regular file"
        };
        let reason = format!("not a regular file ({kind})");
        return Err(Error::msg("copy", &shown, reason));
    }
    // A regular file: O_NONBLOCK has done its job (it only kept a FIFO from hanging
    // the open). Clear it, so nothing downstream reads with a non-blocking
    // description (on some file systems, FUSE say, it can mean EAGAIN).
    let flags = fcntl(&file, FcntlArg::F_GETFL)
        .map_err(|e| Error::io("get the flags of", &shown, e.into()))?;
    let flags = OFlag::from_bits_retain(flags) - OFlag::O_NONBLOCK;
    fcntl(&file, FcntlArg::F_SETFL(flags))
        .map_err(|e| Error::io("set the flags of", &shown, e.into()))?;
    Ok((file, meta))
}

/// Belt and braces after a run of workers that reported success: each must have
/// counted exactly its share's bytes. A worker that vanished without a word (reaped
/// behind our back, say) would otherwise leave its range as zeros in a file that
/// then replaces DST.
fn check_shares_done(shared: &Shared, shares: &[Vec<plan::Extent>], done: &str) -> Result<()> {
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
fn differs_at(src_shown: &str, dst_shown: &str, off: u64) -> Error {
    Error::msg(
        "verify copy of",
        src_shown,
        format!("the new file differs from it at byte {off} ('{dst_shown}' left unchanged)"),
    )
}

/// Whether `file` lives on a file system whose files are generated by the kernel
/// (proc, sysfs, debugfs…), where `st_size` says nothing about the content.
fn on_pseudo_fs(file: &File) -> bool {
    use nix::sys::statfs::{self, FsType};
    // Not all of these have a name in nix; values from <linux/magic.h>.
    const CONFIGFS_MAGIC: FsType = FsType(0x6265_6570);
    const EFIVARFS_MAGIC: FsType = FsType(0xde5e_81e4);
    const PSTOREFS_MAGIC: FsType = FsType(0x6165_676c);
    const BINFMTFS_MAGIC: FsType = FsType(0x4249_4e4d);
    const FUSECTL_SUPER_MAGIC: FsType = FsType(0x6573_5543);
    const PSEUDO: [FsType; 16] = [
        statfs::PROC_SUPER_MAGIC,
        statfs::SYSFS_MAGIC,
        statfs::DEBUGFS_MAGIC,
        statfs::TRACEFS_MAGIC,
        statfs::SECURITYFS_MAGIC,
        statfs::CGROUP_SUPER_MAGIC,
        statfs::CGROUP2_SUPER_MAGIC,
        statfs::DEVPTS_SUPER_MAGIC,
        statfs::BPF_FS_MAGIC,
        statfs::SELINUX_MAGIC,
        statfs::SMACK_MAGIC,
        CONFIGFS_MAGIC,
        EFIVARFS_MAGIC,
        PSTOREFS_MAGIC,
        BINFMTFS_MAGIC,
        FUSECTL_SUPER_MAGIC,
    ];
    match statfs::fstatfs(file) {
        Ok(st) => PSEUDO.contains(&st.filesystem_type()),
        // Cannot tell: trust st_size, as cp does.
        Err(_) => false,
    }
}

/// Sets the process-wide signal state pcopy needs, for a binary's `main` to call
/// before [`run`]: SIGXFSZ ignored (a file-size limit becomes EFBIG), SIGCHLD at
/// its default action and blocked (so the workers' exits can be waited for and
/// slept on), and SIGINT, SIGTERM and SIGHUP recorded in a flag that the workers
/// check between chunks, so the copy stops cleanly (see [`process`]).
pub fn set_up_signals() -> Result<()> {
    let err = |e| Error::io("set up", "signal handling", e);
    process::ignore_sigxfsz().map_err(err)?;
    process::set_sigchld_to_default().map_err(err)?;
    process::block_sigchld().map_err(err)?;
    process::set_stop_signals_to_flag().map_err(err)
}

/// Copies `opts.src` to `opts.dst`; see the module doc.
///
/// It forks and reaps its workers (only them), and changes no signal disposition
/// or mask: a program that wants a stop signal to end the copy cleanly, or the
/// other effects of [`set_up_signals`], calls that first.
pub fn run(opts: &Options) -> Result<(), Failure> {
    let start = Instant::now();
    let jobs = opts.jobs.clamp(1, MAX_WORKERS);

    let src_shown = opts.src.to_string_lossy().into_owned();
    let (src, meta) = open_source(opts)?;
    let target = dest::resolve(&opts.src, &meta, &opts.dst)?;
    let dst_shown = target.shown_str();

    // Files of pseudo file systems have whatever size they like (/proc says 0, /sys
    // says 4096) and content made up when read: read those to EOF, as does a file
    // that says 0 bytes anywhere.
    let size = meta.len();
    let to_eof = size == 0 || on_pseudo_fs(&src);
    let extents = if to_eof {
        Vec::new()
    } else {
        plan::data_extents(&src, size).map_err(|e| Error::io("map data of", &src_shown, e))?
    };
    let shares = plan::split(&extents, jobs);

    let no_tmpfile = std::env::var_os(NO_TMPFILE_ENV).is_some();
    let tmp = dest::TempFile::create(&target, meta.mode(), no_tmpfile)?;
    let check_signal = || match process::stop_signal() {
        Some(sig) => Err(Error::plain(format!("interrupted by {sig}"))),
        None => Ok(()),
    };
    // Read to EOF, the length is known only at the end: the file grows as it is written.
    tmp.preallocate(if to_eof { 0 } else { size }, &extents, &check_signal)?;

    let files = Files {
        src: &src,
        dst: tmp.file(),
        src_name: &src_shown,
        dst_name: &dst_shown,
    };
    let shared = Shared::new()?;
    let show_progress = !opts.quiet && nix::unistd::isatty(io::stderr()).unwrap_or(false);
    let mut progress = Progress::new(show_progress, start);
    let interrupted = |sig: Signal| Failure {
        error: Error::plain(format!(
            "interrupted by {sig}; '{dst_shown}' left unchanged"
        )),
        status: 128 + sig as u8,
        signal: Some(sig),
    };
    let stop = |s: Stop| match s {
        Stop::Signal(sig) => interrupted(sig),
        Stop::Failed(e) => Failure::from(e),
    };

    // Copy.
    let worker_bytes: Vec<u64>;
    let data_bytes: u64;
    if to_eof {
        progress.phase("copied", 0);
        let mut tick_progress = |_: u64| check_signal();
        let n = copy::copy_to_eof(&files, &mut tick_progress)?;
        worker_bytes = vec![n];
        data_bytes = n;
    } else {
        data_bytes = plan::total(&extents);
        progress.phase("copied", data_bytes);
        let in_kernel = shares.len() == 1 || data_bytes / (shares.len() as u64) < KERNEL_COPY_BELOW;
        let work = |i: usize, tick: &mut Tick| -> Result<()> {
            let mut advance = |n: u64| tick.advance(n);
            if in_kernel {
                copy::copy_extents_in_kernel(&files, &shares[i], &mut advance)
            } else {
                copy::copy_extents(&files, &shares[i], &mut advance)
            }
        };
        let n = shares.len();
        let mut draw = |sh: &Shared| progress.tick(|| sh.total_done(n));
        workers::run(n, &shared, &work, &mut draw).map_err(stop)?;
        check_shares_done(&shared, &shares, "copied")?;
        worker_bytes = (0..n).map(|i| shared.done_by(i)).collect();
    }
    let file_len = if to_eof { data_bytes } else { size };

    // Verify, with the same workers' split.
    if opts.verify {
        let differs = |off: u64| differs_at(&src_shown, &dst_shown, off);
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
    tmp.commit(&target, opts.sync)?;
    progress.clear();
    let report = Report {
        src: src_shown.clone(),
        dst: dst_shown.clone(),
        bytes: file_len,
        data_bytes,
        seconds: start.elapsed().as_secs_f64(),
        shares: worker_bytes,
        verified: opts.verify,
        synced: opts.sync,
    };
    if opts.quiet {
        return Ok(());
    }
    let line = if opts.json {
        report.json()
    } else {
        report.text()
    };
    stdio::out_line(&line).map_err(|e| Failure {
        error: Error::plain(format!(
            "cannot write the report to standard output: {} (the copy to '{dst_shown}' is complete)",
            crate::error::os_reason(&e)
        )),
        status: 1,
        signal: None,
    })
}
