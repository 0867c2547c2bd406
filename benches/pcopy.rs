//! pcopy against `cp` and `xcp` on the same files, in paired rounds.
//!
//! ```sh
//! cargo bench --bench pcopy                          # every case but 8G, 15 rounds each
//! cargo bench --bench pcopy -- --pairs 31 256M       # one case, more rounds
//! cargo bench --bench pcopy -- --pcopy-arg=-j1 1M    # pass options to pcopy
//! cargo bench --bench pcopy -- --xcp ~/.cargo/bin/xcp 2G   # where xcp is (default: PATH)
//! cargo bench --bench pcopy -- --no-xcp 8G           # cp and pcopy only
//! cargo bench --bench pcopy -- --raw 2G               # also print every round on stderr
//! ```
//!
//! For each case the source is made once (page cache warm); then each round runs
//! `cp SRC DST`, `pcopy SRC DST` (the release-built binary) and, when found,
//! `xcp SRC DST`, rotating which goes first, each on a new DST right after deleting
//! the last one and `sync` (the fresh-memory case: a user copying images). Every
//! output is checked against SRC with `cmp` (xcp's block-parallel driver once wrote
//! a wrong copy), outside the timing. Before each round the driver waits (up to 10 s)
//! for the machine to be idle, and counts the rounds that started on a busy machine.
//! A run's time is the wall time of the whole process, start-up included. The table
//! gives each tool's median and range and the medians of the paired ratios cp/pcopy
//! and xcp/pcopy (above 1: pcopy is faster), and how many rounds pcopy ran with
//! each worker count (its default depends on the size and the load). Cases are
//! bounded in time (`--budget` seconds each, default 120); the scratch directory
//! (`--dir`, default a temp dir under /work or /tmp) is removed.

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

const PCOPY: &str = env!("CARGO_BIN_EXE_pcopy");
const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The longest a single run may take before it is killed and the case abandoned.
const RUN_LIMIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy)]
enum Shape {
    Data,
    AllHole,
    /// Data and holes alternating in 64 MiB pieces, data first.
    HalfHole,
}

struct Case {
    name: &'static str,
    len: u64,
    shape: Shape,
}

const CASES: [Case; 6] = [
    Case {
        name: "1M",
        len: MIB,
        shape: Shape::Data,
    },
    Case {
        name: "256M",
        len: 256 * MIB,
        shape: Shape::Data,
    },
    Case {
        name: "2G",
        len: 2 * GIB,
        shape: Shape::Data,
    },
    Case {
        name: "8G",
        len: 8 * GIB,
        shape: Shape::Data,
    },
    Case {
        name: "2G-hole",
        len: 2 * GIB,
        shape: Shape::AllHole,
    },
    Case {
        name: "2G-half-hole",
        len: 2 * GIB,
        shape: Shape::HalfHole,
    },
];

struct Args {
    pairs: usize,
    budget: Duration,
    dir: Option<PathBuf>,
    pcopy_args: Vec<String>,
    cases: Vec<String>,
    raw: bool,
    xcp: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        pairs: 15,
        budget: Duration::from_secs(120),
        dir: None,
        pcopy_args: Vec::new(),
        cases: Vec::new(),
        raw: false,
        xcp: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--bench" => {} // added by `cargo bench`
            "--pairs" => a.pairs = it.next().and_then(|v| v.parse().ok()).expect("--pairs N"),
            "--budget" => {
                a.budget = Duration::from_secs(
                    it.next()
                        .and_then(|v| v.parse().ok())
                        .expect("--budget SECS"),
                )
            }
            "--raw" => a.raw = true,
            "--xcp" => a.xcp = Some(it.next().expect("--xcp PATH")),
            "--no-xcp" => a.xcp = Some(String::new()),
            "--dir" => a.dir = Some(it.next().expect("--dir DIR").into()),
            s if s.starts_with("--pcopy-arg=") => {
                a.pcopy_args.push(s["--pcopy-arg=".len()..].to_string())
            }
            s if s.starts_with("--") => panic!("unknown option {s}"),
            s => a.cases.push(s.to_string()),
        }
    }
    a
}

/// Writes `len` bytes of `shape` to `path`: non-repeating data, or holes.
fn make_source(path: &Path, len: u64, shape: Shape) {
    let f = File::create(path).unwrap();
    f.set_len(len).unwrap();
    let mut block = vec![0u8; MIB as usize];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    for chunk in block.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let mut off = 0u64;
    while off < len {
        let is_data = match shape {
            Shape::Data => true,
            Shape::AllHole => false,
            Shape::HalfHole => (off / (64 * MIB)) % 2 == 0,
        };
        let n = MIB.min(len - off);
        if is_data {
            block[..8].copy_from_slice(&off.to_le_bytes());
            f.write_all_at(&block[..n as usize], off).unwrap();
        }
        off += n;
    }
    f.sync_all().unwrap();
}

/// Kills a run that takes longer than RUN_LIMIT.
struct Watchdog {
    tx: mpsc::Sender<Option<u32>>,
}

impl Watchdog {
    fn new() -> Self {
        let (tx, rx) = mpsc::channel::<Option<u32>>();
        std::thread::spawn(move || {
            while let Ok(Some(pid)) = rx.recv() {
                if let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(RUN_LIMIT) {
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    let _ = rx.recv();
                }
            }
        });
        Watchdog { tx }
    }
}

/// Busy and total CPU time of the whole machine so far (from /proc/stat).
fn cpu_times() -> (u64, u64) {
    let stat = fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().sum();
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// Waits (at most 10 s) until the machine is idle: other work on these 2 cores (a
/// compiler in another terminal) makes a paired run meaningless. Returns false when
/// it never got quiet; such pairs are counted in the table.
fn wait_quiet() -> bool {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        let (b0, t0_) = cpu_times();
        std::thread::sleep(Duration::from_millis(100));
        let (b1, t1) = cpu_times();
        if t1 > t0_ && ((b1 - b0) as f64) / ((t1 - t0_) as f64) < 0.05 {
            return true;
        }
    }
    false
}

/// Deletes DST, syncs, times one run of `program args… src dst`, and checks the
/// copy with `cmp` (untimed). Returns the time and what the program printed.
fn timed_run(
    dog: &Watchdog,
    program: &str,
    args: &[String],
    src: &Path,
    dst: &Path,
) -> (Duration, String) {
    let _ = fs::remove_file(dst);
    nix::unistd::sync();
    let t0 = Instant::now();
    let child = Command::new(program)
        .args(args)
        .arg(src)
        .arg(dst)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    dog.tx.send(Some(child.id())).unwrap();
    let out = child.wait_with_output().unwrap();
    let took = t0.elapsed();
    dog.tx.send(None).unwrap();
    assert!(out.status.success(), "{program} failed: {}", out.status);
    let same = Command::new("cmp")
        .arg(src)
        .arg(dst)
        .stdout(Stdio::null())
        .status()
        .expect("cannot run cmp");
    assert!(
        same.success(),
        "{program} wrote a copy that differs from SRC"
    );
    (took, String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The worker count in a pcopy report (`… (2 workers × 128.00 MiB)`), `?` if none.
fn workers_in(report: &str) -> String {
    report
        .rsplit_once(" (")
        .and_then(|(_, tail)| tail.split_once(" worker"))
        .map_or("?".into(), |(n, _)| n.to_string())
}

/// How many rounds ran each worker count: `2×12, 1×3`.
fn worker_counts(seen: &[String]) -> String {
    let mut counts: Vec<(String, usize)> = Vec::new();
    for w in seen {
        match counts.iter_mut().find(|(k, _)| k == w) {
            Some((_, n)) => *n += 1,
            None => counts.push((w.clone(), 1)),
        }
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Median, least and greatest of `v` (not empty).
fn spread(v: &[f64]) -> (f64, f64, f64) {
    let (lo, hi) = v
        .iter()
        .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    (median(&mut v.to_vec()), lo, hi)
}

/// `median (min..max)` of times, in ms.
fn times(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let (mid, lo, hi) = spread(v);
    format!("{:.1} ({:.1}..{:.1})", mid * 1e3, lo * 1e3, hi * 1e3)
}

/// `median (min..max)` of ratios.
fn ratios(v: &[f64]) -> String {
    if v.is_empty() {
        return "-".into();
    }
    let (mid, lo, hi) = spread(v);
    format!("**{mid:.2}x** ({lo:.2}..{hi:.2})")
}

/// xcp: `--xcp PATH`, else from PATH.
fn find_xcp(args: &Args) -> Option<String> {
    if let Some(x) = &args.xcp {
        return (!x.is_empty()).then(|| x.clone());
    }
    let found = Command::new("sh")
        .args(["-c", "command -v xcp"])
        .output()
        .ok()?;
    let path = String::from_utf8_lossy(&found.stdout).trim().to_string();
    (found.status.success() && !path.is_empty()).then_some(path)
}

fn main() {
    let args = parse_args();
    let base = match &args.dir {
        Some(d) => d.clone(),
        None if Path::new("/work").is_dir() => PathBuf::from("/work"),
        None => std::env::temp_dir(),
    };
    let scratch = tempfile::Builder::new()
        .prefix("pcopy-bench-")
        .tempdir_in(&base)
        .expect("scratch dir");
    let dog = Watchdog::new();
    let xcp = find_xcp(&args);
    let mut tools: Vec<(String, Vec<String>)> = vec![
        ("cp".into(), vec![]),
        (PCOPY.into(), args.pcopy_args.clone()),
    ];
    if let Some(x) = &xcp {
        tools.push((x.clone(), vec![]));
    }
    println!(
        "pcopy {} vs cp{}, {} rounds per case (rotating order), page cache warm, new DST \
         after deleting the last and `sync`, every copy checked with cmp",
        args.pcopy_args.join(" "),
        if xcp.is_some() {
            " and xcp"
        } else {
            " (no xcp found)"
        },
        args.pairs
    );
    println!();
    println!("| case | rounds | cp ms (min..max) | pcopy ms (min..max) | xcp ms (min..max) | cp/pcopy | xcp/pcopy | busy | pcopy workers |");
    println!("|---|---|---|---|---|---|---|---|---|");
    for case in CASES.iter().filter(|c| {
        if args.cases.is_empty() {
            c.name != "8G"
        } else {
            args.cases.iter().any(|n| n == c.name)
        }
    }) {
        let src = scratch.path().join(format!("src-{}", case.name));
        let dst = scratch.path().join(format!("dst-{}", case.name));
        make_source(&src, case.len, case.shape);
        let mut t: Vec<Vec<f64>> = vec![Vec::new(); tools.len()];
        let (mut r_cp, mut r_xcp) = (Vec::new(), Vec::new());
        let mut busy = 0;
        let t0 = Instant::now();
        // One warm-up run of each (not counted): caches, binaries, allocator.
        for (prog, a) in &tools {
            timed_run(&dog, prog, a, &src, &dst);
        }
        let mut workers = Vec::new();
        for i in 0..args.pairs {
            if t0.elapsed() > args.budget {
                break;
            }
            if !wait_quiet() {
                busy += 1;
            }
            let mut round = vec![0f64; tools.len()];
            for k in 0..tools.len() {
                let j = (i + k) % tools.len();
                let (prog, a) = &tools[j];
                let (took, printed) = timed_run(&dog, prog, a, &src, &dst);
                round[j] = took.as_secs_f64();
                if j == 1 {
                    workers.push(workers_in(&printed));
                }
            }
            for (j, &x) in round.iter().enumerate() {
                t[j].push(x);
            }
            r_cp.push(round[0] / round[1]);
            if tools.len() > 2 {
                r_xcp.push(round[2] / round[1]);
            }
            if args.raw {
                eprintln!("{} round {i}: {round:?}", case.name);
            }
        }
        let _ = fs::remove_file(&dst);
        let _ = fs::remove_file(&src);
        println!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            case.name,
            r_cp.len(),
            times(&t[0]),
            times(&t[1]),
            t.get(2).map_or("-".into(), |v| times(v)),
            ratios(&r_cp),
            ratios(&r_xcp),
            busy,
            worker_counts(&workers)
        );
        let _ = std::io::stdout().flush();
    }
    drop(dog);
}
