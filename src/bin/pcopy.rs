//! `pcopy SRC DST`: copy a file with forked workers. See `udpchat::pcopy`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use udpchat::error::Error;
use udpchat::pcopy::{self, Failure, Options};
use udpchat::stdio;

/// Copy a file with forked workers, each writing its own byte range of a
/// preallocated destination; DST is replaced atomically when all succeeded.
#[derive(Parser, Debug)]
#[command(name = "pcopy", version)]
struct Cli {
    /// The file to copy (a regular file)
    src: PathBuf,
    /// The new file, or an existing directory to copy into
    dst: PathBuf,
    /// Workers, the parent included: each copies about 1/N of SRC's data bytes
    /// (fewer only when SRC has fewer data bytes than N)
    #[arg(short = 'j', long = "jobs", default_value_t = 2,
          value_parser = clap::value_parser!(u8).range(1..=pcopy::MAX_WORKERS as i64))]
    jobs: u8,
    /// Print nothing on success
    #[arg(short, long)]
    quiet: bool,
    /// Print the report as one JSON object
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Re-read SRC and the copy and compare them before replacing DST
    #[arg(long)]
    verify: bool,
    /// fsync the copy before the rename and its directory after
    #[arg(long)]
    sync: bool,
}

fn main() -> ExitCode {
    pcopy::exit_code(run())
}

fn run() -> Result<(), Failure> {
    stdio::reopen_closed_std_fds().map_err(|e| Error::io("open", "/dev/null", e))?;
    let cli = Cli::parse();
    pcopy::set_up_signals()?;
    pcopy::run(&Options {
        src: cli.src,
        dst: cli.dst,
        jobs: usize::from(cli.jobs),
        quiet: cli.quiet,
        json: cli.json,
        verify: cli.verify,
        sync: cli.sync,
    })
}
