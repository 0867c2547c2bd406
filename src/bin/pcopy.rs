//! `pcopy SRC DST`: copy a file with forked workers. See `udpchat::pcopy`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use udpchat::error::Error;
use udpchat::pcopy::{self, Failure, Options, Preserve, Reflink};
use udpchat::stdio;

/// Copy files with forked workers, each writing its own byte range of a
/// preallocated destination; DST is replaced atomically when all succeeded.
#[derive(Parser, Debug)]
#[command(
    name = "pcopy",
    version,
    override_usage = "pcopy [OPTIONS] SRC DST\n       pcopy [OPTIONS] SRC... DIR"
)]
struct Cli {
    /// The file(s) to copy (regular files), then DST: the new file, or an existing
    /// directory to copy into (required with several sources)
    #[arg(required = true, num_args = 2.., value_name = "PATH")]
    paths: Vec<PathBuf>,
    /// Workers, the parent included: each copies about 1/N of SRC's data bytes
    /// (fewer when a share would be under 4 KiB). Default: 1 under 64 MiB of data
    /// or when no core is free for a second worker, else 2
    #[arg(short = 'j', long = "jobs",
          value_parser = clap::value_parser!(u8).range(1..=pcopy::MAX_WORKERS as i64))]
    jobs: Option<u8>,
    /// Clone (share SRC's blocks: XFS, btrfs) instead of copying: auto clones where
    /// it can, always fails where it cannot, never copies every byte
    #[arg(long, value_enum, default_value_t = ReflinkArg::Auto, value_name = "WHEN")]
    reflink: ReflinkArg,
    /// Replace a DST you may not write, or whose owner cannot be kept, as your
    /// own file
    #[arg(short, long, overrides_with = "no_clobber")]
    force: bool,
    /// Never replace an existing DST: skip it silently (exit 0)
    #[arg(short, long, overrides_with = "force")]
    no_clobber: bool,
    /// Rewrite an existing DST's own inode (keeps its owner, mode and links):
    /// readers may see a mix of old and new, and a failure leaves it partly written
    #[arg(long)]
    in_place: bool,
    /// Same as --preserve=mode,ownership,timestamps
    #[arg(short = 'p')]
    preserve_all: bool,
    /// Keep these attributes of SRC: mode (with the ACL), ownership, timestamps,
    /// xattr (never security.*), all
    #[arg(long, value_name = "LIST", value_delimiter = ',', num_args = 0..,
          default_missing_value = "mode,ownership,timestamps", require_equals = true)]
    preserve: Vec<PreserveArg>,
    /// Print nothing on success
    #[arg(short, long)]
    quiet: bool,
    /// Print each report as one JSON object per line
    #[arg(long, conflicts_with = "quiet")]
    json: bool,
    /// Re-read SRC and the copy and compare them before replacing DST
    #[arg(long)]
    verify: bool,
    /// fsync the copy before the rename and its directory after
    #[arg(long)]
    sync: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PreserveArg {
    Mode,
    Ownership,
    Timestamps,
    Xattr,
    All,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum ReflinkArg {
    Auto,
    Always,
    Never,
}

fn main() -> ExitCode {
    pcopy::exit_code(run())
}

fn run() -> Result<(), Failure> {
    stdio::reopen_closed_std_fds().map_err(|e| Error::io("open", "/dev/null", e))?;
    let mut cli = Cli::parse();
    pcopy::set_up_signals()?;
    let dst = cli.paths.pop().expect("clap requires two paths");
    let wants = |a: PreserveArg| {
        cli.preserve_all || cli.preserve.contains(&a) || cli.preserve.contains(&PreserveArg::All)
    };
    let preserve = Preserve {
        mode: wants(PreserveArg::Mode),
        ownership: wants(PreserveArg::Ownership),
        timestamps: wants(PreserveArg::Timestamps),
        xattr: cli.preserve.contains(&PreserveArg::Xattr)
            || cli.preserve.contains(&PreserveArg::All),
    };
    pcopy::run(&Options {
        sources: cli.paths,
        dst,
        jobs: cli.jobs.map(usize::from),
        reflink: match cli.reflink {
            ReflinkArg::Auto => Reflink::Auto,
            ReflinkArg::Always => Reflink::Always,
            ReflinkArg::Never => Reflink::Never,
        },
        force: cli.force,
        no_clobber: cli.no_clobber,
        in_place: cli.in_place,
        preserve,
        quiet: cli.quiet,
        json: cli.json,
        verify: cli.verify,
        sync: cli.sync,
    })
}
