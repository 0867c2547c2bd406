//! `pcopy SRC DST` (or `pcopy SRC... DIR`): copy files with forked workers, each
//! writing its own byte range of a preallocated destination.
//!
//! The course's homework ("a parent and a child each copy one half") grown into a
//! tool, one file at a time (`transfer`): SRC is opened and checked (`source`);
//! DST resolved (`target`) and everything that could fail at the end checked first
//! (`replace`); the new file is built nameless next to DST (`dest`) and cloned from
//! SRC where the file system can (FICLONE), else preallocated and filled by workers:
//! SRC's data map is split into about equal shares (`plan`), the parent forks a
//! child per share but the first and copies the first itself (`workers`), each by
//! the fastest way the destination allows (`copy`: `splice` or `copy_file_range`
//! in the kernel, the workers taking turns at writing (`turns`); reading into a
//! mapping of its DST range (`window`); or pread/pwrite leaving zero runs as
//! holes). Only when all succeeded (and `--verify` agreed) does the file get DST's
//! mode, owner and attributes and replace DST, atomically; then one line says what
//! was done, with names quoted as coreutils quotes them (`report`, `quote`).

mod copy;
mod dest;
mod direct;
mod plan;
mod quote;
mod replace;
mod report;
mod source;
mod target;
mod transfer;
mod turns;
mod window;
mod workers;

use std::path::PathBuf;
use std::process::ExitCode;

use nix::sys::signal::Signal;

use crate::error::{Error, Result};
use crate::process;
use crate::stdio;
use report::Report;

pub use replace::Preserve;
pub use workers::MAX_WORKERS;

/// Without `-j`, a file with less data than this is copied by one worker, in the
/// kernel as cp does (the report says so): below it a second worker's fork and
/// page faults cost more than it gains.
pub const AUTO_SPLIT_FROM: u64 = 64 << 20;

/// Test hook: when set in the environment, the destination is built under a hidden
/// name instead of with O_TMPFILE, to exercise the fallback path.
pub const NO_TMPFILE_ENV: &str = "PCOPY_TEST_NO_TMPFILE";

/// Whether to clone (share SRC's blocks) instead of copying, as cp's `--reflink`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reflink {
    /// Clone where the file system can, copy elsewhere (the default).
    Auto,
    /// Clone or fail.
    Always,
    /// Always copy the bytes, with the workers.
    Never,
}

/// What the user asked for.
#[derive(Debug, Clone)]
pub struct Options {
    /// The files to copy (one, or several into a directory).
    pub sources: Vec<PathBuf>,
    /// Where to copy: a file name, or an existing directory to copy into.
    pub dst: PathBuf,
    /// The most workers, parent included (1..=64); `None` chooses by size.
    pub jobs: Option<usize>,
    /// Clone or copy.
    pub reflink: Reflink,
    /// Replace a DST the user may not write, or whose owner cannot be kept, as
    /// the user's own file.
    pub force: bool,
    /// Never replace an existing DST (skip it silently).
    pub no_clobber: bool,
    /// Rewrite DST's own inode instead of replacing it atomically.
    pub in_place: bool,
    /// SRC's attributes the copy takes.
    pub preserve: Preserve,
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
    /// What went wrong, printed as `pcopy: ERROR`; `None` when already printed.
    pub error: Option<Error>,
    /// 1 for errors; 128 + N when stopped by signal N (used only if dying by the
    /// signal itself fails, see [`exit_code`]).
    pub status: u8,
    /// The stop signal (SIGINT, SIGTERM, SIGHUP) that ended the run, if any.
    pub signal: Option<Signal>,
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Failure {
            error: Some(error),
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
            if let Some(e) = &f.error {
                stdio::err_line(&format!("pcopy: {e}"));
            }
            if let Some(sig) = f.signal {
                process::die_by_signal(sig);
            }
            ExitCode::from(f.status)
        }
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

/// Copies each of `opts.sources` to `opts.dst`; see the module doc.
///
/// With several sources DST must be a directory; they are copied in order, and a
/// failure is printed and the next one copied (the result then says exit 1). A stop
/// signal ends the whole run: the files done stay, the current DST is unchanged.
///
/// It forks and reaps its workers (only them), and changes no signal disposition
/// or mask: a program that wants a stop signal to end the copy cleanly, or the
/// other effects of [`set_up_signals`], calls that first.
pub fn run(opts: &Options) -> Result<(), Failure> {
    if opts.sources.len() > 1 && !opts.dst.is_dir() {
        return Err(Error::msg(
            "copy several files to",
            quote::inner(opts.dst.as_os_str()),
            "not a directory",
        )
        .into());
    }
    let mut failed = false;
    let mut finished = Vec::new();
    for src in &opts.sources {
        match transfer::one(opts, src, &opts.dst) {
            Ok(Some(report)) => {
                print_report(opts, &report)?;
                finished.push(quote::quoted(&report.dst));
            }
            Ok(None) => {}
            Err(mut f) if f.signal.is_some() && !finished.is_empty() => {
                // Name what stays done, beside the file left unchanged.
                if let Some(e) = f.error.take() {
                    f.error = Some(Error::plain(format!(
                        "{e}; finished before it: {}",
                        finished.join(", ")
                    )));
                }
                return Err(f);
            }
            Err(f) if f.signal.is_some() || opts.sources.len() == 1 => return Err(f),
            Err(f) => {
                if let Some(e) = &f.error {
                    stdio::err_line(&format!("pcopy: {e}"));
                }
                failed = true;
            }
        }
    }
    if failed {
        return Err(Failure {
            error: None,
            status: 1,
            signal: None,
        });
    }
    Ok(())
}

/// Prints one file's report line (text or JSON) unless `--quiet`.
fn print_report(opts: &Options, report: &Report) -> Result<(), Failure> {
    if opts.quiet {
        return Ok(());
    }
    let line = if opts.json {
        report.json()
    } else {
        report.text()
    };
    stdio::out_line(&line).map_err(|e| {
        Failure::from(Error::plain(format!(
            "cannot write the report to standard output: {} (the copy to {} is complete)",
            crate::error::os_reason(&e),
            quote::quoted(&report.dst)
        )))
    })
}
