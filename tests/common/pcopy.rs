//! Helpers shared by the pcopy test targets: run the real binary in a temporary
//! directory with bounded waits, make test files, and read its report.
//!
//! Used by test files as `#[path = "common/pcopy.rs"] mod pcopy_harness;`. The test
//! process never forks by hand: Command's own spawn is the only fork, and what the
//! child needs set before exec is done by a wrapper program (`env`, `prlimit`,
//! `sh`) or by `CommandExt::uid`/`gid`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

pub const PCOPY: &str = env!("CARGO_BIN_EXE_pcopy");
pub const MIB: usize = 1 << 20;
/// Longest any single pcopy run may take before the test gives up on it.
pub const RUN_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pcopy-test-")
        .tempdir()
        .expect("tempdir")
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
pub fn data(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A large file written quickly: one random MiB repeated with a counter in each.
pub fn big_file(path: &Path, len: usize) {
    let block = data(MIB, 99);
    let mut f = File::create(path).unwrap();
    let mut written = 0;
    let mut i = 0u64;
    while written < len {
        let n = MIB.min(len - written);
        let mut b = block[..n].to_vec();
        b[..8.min(n)].copy_from_slice(&i.to_le_bytes()[..8.min(n)]);
        f.write_all(&b).unwrap();
        written += n;
        i += 1;
    }
}

pub fn cmd(dir: &Path) -> Command {
    cmd_via::<&str>(dir, &[])
}

/// pcopy started through `wrapper` (a program and its arguments that execs the rest
/// of its command line: `env --ignore-signal=CHLD`, `prlimit --fsize=N`), so the
/// test sets up what the wrapper changes without code of its own between fork and
/// exec. The pid is pcopy's once the wrapper has exec'd.
pub fn cmd_via<S: AsRef<OsStr>>(dir: &Path, wrapper: &[S]) -> Command {
    let mut c = match wrapper.split_first() {
        Some((prog, args)) => {
            let mut c = Command::new(prog);
            c.args(args).arg(PCOPY);
            c
        }
        None => Command::new(PCOPY),
    };
    c.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` at most `limit`; kills it and panics when it takes longer.
pub fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
    let t0 = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t0.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pcopy did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Waits (bounded) and collects the output of a child spawned with piped stdout
/// and stderr. pcopy writes a line or two, far below a pipe's capacity.
pub fn finish(mut child: Child) -> Output {
    let status = wait_bounded(&mut child, RUN_LIMIT);
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_end(&mut stdout).unwrap();
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_end(&mut stderr).unwrap();
    }
    Output {
        status,
        stdout,
        stderr,
    }
}

pub fn run_in(dir: &Path, args: &[&str]) -> Output {
    finish(cmd(dir).args(args).spawn().expect("spawn pcopy"))
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
pub fn assert_ok(o: &Output) {
    assert!(
        o.status.success(),
        "pcopy failed: {:?}\nstdout: {}\nstderr: {}",
        o.status,
        stdout(o),
        stderr(o)
    );
}

/// Exit status 1 with one `pcopy: ` line on stderr that contains every one of `needles`.
#[track_caller]
pub fn assert_fails(o: &Output, needles: &[&str]) {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(1),
        "status {:?}, stderr: {err}",
        o.status
    );
    assert!(err.starts_with("pcopy: "), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line expected: {err}");
    for n in needles {
        assert!(err.contains(n), "stderr lacks {n:?}: {err}");
    }
    assert!(o.stdout.is_empty(), "stdout: {}", stdout(o));
}

/// The names in `dir`, sorted.
pub fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

pub fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(o)))
}

/// The children of `pid` (needs CONFIG_PROC_CHILDREN, which every distro kernel has).
pub fn children_of(pid: u32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The state letter of a process (R, S, T, Z…), or None when it is gone.
pub fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// The pipes process `pid` has open (`pipe:[inode]`).
fn pipes_of(pid: u32) -> Vec<String> {
    let Ok(fds) = fs::read_dir(format!("/proc/{pid}/fd")) else {
        return Vec::new();
    };
    fds.flatten()
        .filter_map(|e| fs::read_link(e.path()).ok())
        .map(|t| t.to_string_lossy().into_owned())
        .filter(|t| t.starts_with("pipe:"))
        .collect()
}

/// Whether worker `pid` of pcopy `parent` has begun its share: it has read SRC
/// (`rchar` in /proc/PID/io, as pread and copy_file_range count) or made the pipe
/// it splices through (splice counts in no /proc/PID/io field), one its parent
/// does not have.
pub fn began_copying(pid: i32, parent: u32) -> bool {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    let read = io
        .lines()
        .find_map(|l| l.strip_prefix("rchar: "))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let inherited = pipes_of(parent);
    read > 0 || pipes_of(pid as u32).iter().any(|p| !inherited.contains(p))
}

/// Starts pcopy and stops (SIGSTOP) its first worker child while it is still
/// copying, so the test can act on a copy that is surely in progress. The child is
/// stopped only once it has begun copying, i.e. after its start-up (PR_SET_PDEATHSIG).
/// Returns None when the copy finished before a child could be caught (the caller
/// retries).
pub fn start_and_stop_a_worker(mut c: Command) -> Option<(Child, i32)> {
    let mut child = c.spawn().expect("spawn pcopy");
    let t0 = Instant::now();
    loop {
        if let Some(&pid) = children_of(child.id()).first() {
            while !began_copying(pid, child.id()) && matches!(state_of(pid), Some('R' | 'S' | 'D'))
            {
                std::thread::yield_now();
            }
            let _ = kill(Pid::from_raw(pid), Signal::SIGSTOP);
            // Caught in time only if it is stopped now, not already a zombie.
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                match state_of(pid) {
                    Some('T') | Some('t') => return Some((child, pid)),
                    Some('Z') | None => break,
                    _ => std::thread::sleep(Duration::from_micros(200)),
                }
            }
            let _ = wait_bounded(&mut child, RUN_LIMIT);
            return None;
        }
        if child.try_wait().unwrap().is_some() {
            return None;
        }
        if t0.elapsed() > RUN_LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("pcopy never forked a worker");
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// Retries `start_and_stop_a_worker` a few times: a fast machine can finish a
/// 256 MiB copy before the test sees the child.
pub fn catch_a_worker(make: impl Fn() -> Command) -> (Child, i32) {
    for _ in 0..8 {
        if let Some(caught) = start_and_stop_a_worker(make()) {
            return caught;
        }
    }
    panic!("could not catch a pcopy worker mid-copy in 8 tries");
}

/// Waits (bounded) until process `pid` is gone or a zombie (dead, not yet reaped
/// by whoever adopted it).
pub fn wait_dead(pid: i32) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match state_of(pid) {
            None | Some('Z') | Some('X') => return,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    panic!("process {pid} still alive");
}

/// Catches a worker of the copy `make` starts in `dir` (made by [`big_setup`]),
/// kills it, and checks that pcopy fails naming it, with the old DST intact and no
/// temporary file left.
pub fn a_killed_worker_fails_cleanly(dir: &Path, make: impl Fn() -> Command) {
    let (child, worker) = catch_a_worker(make);
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let o = finish(child);
    assert_fails(
        &o,
        &[&format!("worker 2 (pid {worker}) was killed by SIGKILL")],
    );
    assert_old_dst_intact_and_no_temp(dir);
}

/// Catches a worker of the copy `make` starts in `dir` (made by [`big_setup`]),
/// cuts `src` to 4096 bytes while the parent and that worker are stopped, lets them
/// run on, and checks that pcopy names SRC's real end, with the old DST intact and
/// no temporary file left.
pub fn src_shrinking_mid_copy_fails_cleanly(dir: &Path, src: &Path, make: impl Fn() -> Command) {
    let (child, worker) = catch_a_worker(make);
    let parent = Pid::from_raw(child.id() as i32);
    kill(parent, Signal::SIGSTOP).unwrap();
    File::options()
        .write(true)
        .open(src)
        .unwrap()
        .set_len(4096)
        .unwrap();
    kill(parent, Signal::SIGCONT).unwrap();
    // The parent may already have hit the short SRC and killed the worker.
    let _ = kill(Pid::from_raw(worker), Signal::SIGCONT);
    let o = finish(child);
    // The real end of file, not where a worker was reading.
    assert_fails(
        &o,
        &[
            "cannot read 'src'",
            "file shrank during the copy (it now ends at byte 4096,",
        ],
    );
    assert_old_dst_intact_and_no_temp(dir);
}

pub const OLD: &[u8] = b"the old destination\n";

/// A directory with `src` (a large file) and `dst` (old content) for failure tests.
pub fn big_setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempdir();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    big_file(&src, 256 * MIB);
    fs::write(&dst, OLD).unwrap();
    (dir, src, dst)
}

#[track_caller]
pub fn assert_old_dst_intact_and_no_temp(dir: &Path) {
    assert_eq!(fs::read(dir.join("dst")).unwrap(), OLD, "old DST changed");
    assert_eq!(
        entries(dir),
        vec!["dst", "src"],
        "a temporary file was left"
    );
}

/// A command that runs pcopy without the privilege to ignore file modes: as root,
/// it runs as `nobody` (uid and gid 65534, no supplementary groups: std drops them
/// when it sets the uid), and `dir` is opened up for it.
pub fn unprivileged_cmd(dir: &Path) -> Command {
    let mut c = cmd(dir);
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        c.uid(65534).gid(65534);
    }
    c
}
