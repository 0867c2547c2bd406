//! Integration tests for `pcopy`: they run the real binary on real files in
//! temporary directories. The test process never forks by hand (Command's own
//! spawn, with `pre_exec` for rlimits and closed fds, is the only fork), and every
//! wait is bounded.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{kill, sigaction, SaFlags, SigAction, SigHandler, SigSet, Signal};
use nix::unistd::Pid;

const PCOPY: &str = env!("CARGO_BIN_EXE_pcopy");
const MIB: usize = 1 << 20;
/// Longest any single pcopy run may take before the test gives up on it.
const RUN_LIMIT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------
// Helpers

fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("pcopy-test-")
        .tempdir()
        .expect("tempdir")
}

/// Deterministic pseudo-random bytes (xorshift), different for each `seed`.
fn data(len: usize, seed: u64) -> Vec<u8> {
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
fn big_file(path: &Path, len: usize) {
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

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(PCOPY);
    c.current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    c
}

/// Waits for `child` at most `limit`; kills it and panics when it takes longer.
fn wait_bounded(child: &mut Child, limit: Duration) -> ExitStatus {
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
fn finish(mut child: Child) -> Output {
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

fn run_in(dir: &Path, args: &[&str]) -> Output {
    finish(cmd(dir).args(args).spawn().expect("spawn pcopy"))
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[track_caller]
fn assert_ok(o: &Output) {
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
fn assert_fails(o: &Output, needles: &[&str]) {
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
fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

fn json(o: &Output) -> serde_json::Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("bad JSON ({e}): {}", stdout(o)))
}

/// The children of `pid` (needs CONFIG_PROC_CHILDREN, which every distro kernel has).
fn children_of(pid: u32) -> Vec<i32> {
    fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|s| s.parse().ok())
        .collect()
}

/// The state letter of a process (R, S, T, Z…), or None when it is gone.
fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    after.chars().next()
}

/// Bytes process `pid` has written so far (`wchar` in /proc/PID/io).
fn written_by(pid: i32) -> u64 {
    let io = fs::read_to_string(format!("/proc/{pid}/io")).unwrap_or_default();
    io.lines()
        .find_map(|l| l.strip_prefix("wchar: "))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0)
}

/// Starts pcopy and stops (SIGSTOP) its first worker child while it is still
/// copying, so the test can act on a copy that is surely in progress. The child is
/// stopped only once it has written data, i.e. after its start-up (PR_SET_PDEATHSIG).
/// Returns None when the copy finished before a child could be caught (the caller
/// retries).
fn start_and_stop_a_worker(mut c: Command) -> Option<(Child, i32)> {
    let mut child = c.spawn().expect("spawn pcopy");
    let t0 = Instant::now();
    loop {
        if let Some(&pid) = children_of(child.id()).first() {
            while written_by(pid) == 0 && matches!(state_of(pid), Some('R' | 'S' | 'D')) {
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
fn catch_a_worker(make: impl Fn() -> Command) -> (Child, i32) {
    for _ in 0..8 {
        if let Some(caught) = start_and_stop_a_worker(make()) {
            return caught;
        }
    }
    panic!("could not catch a pcopy worker mid-copy in 8 tries");
}

/// Waits (bounded) until process `pid` is gone or a zombie (dead, not yet reaped
/// by whoever adopted it).
fn wait_dead(pid: i32) {
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        match state_of(pid) {
            None | Some('Z') | Some('X') => return,
            _ => std::thread::sleep(Duration::from_millis(2)),
        }
    }
    panic!("process {pid} still alive");
}

const OLD: &[u8] = b"the old destination\n";

/// A directory with `src` (a large file) and `dst` (old content) for failure tests.
fn big_setup() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempdir();
    let src = dir.path().join("src");
    let dst = dir.path().join("dst");
    big_file(&src, 256 * MIB);
    fs::write(&dst, OLD).unwrap();
    (dir, src, dst)
}

#[track_caller]
fn assert_old_dst_intact_and_no_temp(dir: &Path) {
    assert_eq!(fs::read(dir.join("dst")).unwrap(), OLD, "old DST changed");
    assert_eq!(
        entries(dir),
        vec!["dst", "src"],
        "a temporary file was left"
    );
}

// ---------------------------------------------------------------------------
// Copies

/// Sums the `worker_bytes` of a JSON report.
fn worker_bytes(j: &serde_json::Value) -> Vec<u64> {
    j["worker_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn copies_are_byte_identical_for_every_size_and_job_count() {
    let dir = tempdir();
    let sizes = [0usize, 1, 2, 3, 4095, 4097, 3 * MIB + 4321];
    for (k, &size) in sizes.iter().enumerate() {
        let src = dir.path().join(format!("src{size}"));
        let content = data(size, k as u64 + 1);
        fs::write(&src, &content).unwrap();
        for jobs in 1..=8usize {
            let dst = dir.path().join(format!("dst{size}-{jobs}"));
            let o = finish(
                cmd(dir.path())
                    .args(["-j", &jobs.to_string(), "--json"])
                    .args([&src, &dst])
                    .spawn()
                    .unwrap(),
            );
            assert_ok(&o);
            assert!(
                fs::read(&dst).unwrap() == content,
                "size {size} -j {jobs} differs"
            );
            let j = json(&o);
            assert_eq!(j["bytes"], size as u64);
            assert_eq!(j["workers"], jobs.min(size.max(1)) as u64, "{j}");
            assert_eq!(worker_bytes(&j).iter().sum::<u64>(), size as u64, "{j}");
            fs::remove_file(&dst).unwrap();
        }
    }
}

#[test]
fn default_is_the_homework_two_byte_halves() {
    let dir = tempdir();
    // Below and above the share size (24 MiB) where workers switch from
    // copy_file_range to pread/pwrite: the cut is at the exact byte either way.
    for len in [10 * MIB + 1, 33 * MIB + 1] {
        fs::remove_file(dir.path().join("a")).ok();
        big_file(&dir.path().join("f"), len);
        let o = run_in(dir.path(), &["--json", "f", "a"]);
        assert_ok(&o);
        let j = json(&o);
        assert_eq!(j["workers"], 2, "{j}");
        // [0, len/2) and [len/2, len).
        let len = len as u64;
        let half = len / 2;
        assert_eq!(worker_bytes(&j), [half, len - half], "{j}");
        assert!(fs::read(dir.path().join("f")).unwrap() == fs::read(dir.path().join("a")).unwrap());
    }
    let o = run_in(dir.path(), &["-j", "8", "--json", "f", "b"]);
    assert_ok(&o);
    assert_eq!(json(&o)["workers"], 8);
}

#[test]
fn default_report_names_files_bytes_and_workers() {
    let dir = tempdir();
    big_file(&dir.path().join("a"), 10 * MIB + 1);
    let o = run_in(dir.path(), &["a", "b"]);
    assert_ok(&o);
    let line = stdout(&o);
    assert!(
        line.starts_with("copied 10.00 MiB (10485761 bytes) a -> b in "),
        "{line}"
    );
    assert!(
        line.trim_end()
            .ends_with(" (2 workers: 5.00 MiB + 5.00 MiB)"),
        "{line}"
    );
    assert_eq!(line.lines().count(), 1);
    // Progress never appears when stderr is not a terminal.
    assert!(o.stderr.is_empty(), "stderr: {}", stderr(&o));
}

#[test]
fn json_report_parses_and_has_the_facts() {
    let dir = tempdir();
    fs::write(dir.path().join("a \"quoted\"\\name"), data(5000, 3)).unwrap();
    let o = run_in(
        dir.path(),
        &["--json", "--verify", "a \"quoted\"\\name", "b"],
    );
    assert_ok(&o);
    let j = json(&o);
    assert_eq!(j["src"], "a \"quoted\"\\name");
    assert_eq!(j["dst"], "b");
    assert_eq!(j["bytes"], 5000);
    assert_eq!(j["data_bytes"], 5000);
    assert_eq!(j["verified"], true);
    assert!(j["seconds"].as_f64().unwrap() >= 0.0);
    assert_eq!(j["worker_bytes"], serde_json::json!([2500, 2500]));
}

#[test]
fn quiet_prints_nothing() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), b"x").unwrap();
    let o = run_in(dir.path(), &["-q", "a", "b"]);
    assert_ok(&o);
    assert!(o.stdout.is_empty() && o.stderr.is_empty());
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"x");
}

#[test]
fn verify_passes_on_good_copies_with_many_workers() {
    let (dir, src, _) = big_setup();
    let o = run_in(
        dir.path(),
        &["--verify", "--sync", "-j", "4", "--json", "src", "dst"],
    );
    assert_ok(&o);
    let j = json(&o);
    assert_eq!(j["verified"], true);
    assert_eq!(j["workers"], 4);
    assert!(fs::read(&src).unwrap() == fs::read(dir.path().join("dst")).unwrap());
    assert!(
        o.stderr.is_empty(),
        "no progress on a non-terminal: {}",
        stderr(&o)
    );
}

fn blocks(p: &Path) -> u64 {
    fs::metadata(p).unwrap().blocks()
}

#[test]
fn an_all_hole_file_stays_all_hole() {
    let dir = tempdir();
    let src = dir.path().join("holes");
    File::create(&src).unwrap().set_len(1 << 30).unwrap();
    for jobs in ["1", "2", "5"] {
        let o = finish(
            cmd(dir.path())
                .args(["-j", jobs, "--json", "holes", "copy"])
                .spawn()
                .unwrap(),
        );
        assert_ok(&o);
        let dst = dir.path().join("copy");
        assert_eq!(fs::metadata(&dst).unwrap().len(), 1 << 30);
        assert_eq!(blocks(&dst), 0, "the copy of an all-hole file has blocks");
        assert_eq!(json(&o)["data_bytes"], 0);
    }
    // The content is all zeros: check the allocated map instead of reading 1 GiB.
    let mut f = File::open(dir.path().join("copy")).unwrap();
    let mut head = vec![1u8; 4096];
    f.read_exact(&mut head).unwrap();
    assert!(head.iter().all(|&b| b == 0));
}

#[test]
fn a_half_hole_file_stays_sparse_and_identical() {
    let dir = tempdir();
    let src = dir.path().join("half");
    // hole, data, hole, data, hole: 8 MiB pieces; half the 40 MiB is data... less the ends.
    {
        let f = File::create(&src).unwrap();
        f.set_len(40 * MIB as u64).unwrap();
        use std::os::unix::fs::FileExt;
        f.write_all_at(&data(8 * MIB, 5), 8 * MIB as u64).unwrap();
        f.write_all_at(&data(8 * MIB + 4096, 6), 24 * MIB as u64)
            .unwrap();
        f.sync_all().unwrap(); // so the data map is on disk, not only in the page cache
    }
    let content = fs::read(&src).unwrap();
    for jobs in ["1", "2", "3", "8"] {
        let o = run_in(
            dir.path(),
            &["-j", jobs, "--verify", "--json", "half", "copy"],
        );
        assert_ok(&o);
        let dst = dir.path().join("copy");
        assert!(
            fs::read(&dst).unwrap() == content,
            "-j {jobs}: content differs"
        );
        let data_blocks = (16 * MIB as u64 + 4096) / 512;
        let got = blocks(&dst);
        assert!(
            got >= data_blocks && got <= data_blocks + 2048,
            "-j {jobs}: {got} blocks for {data_blocks} blocks of data"
        );
        assert_eq!(json(&o)["data_bytes"], 16 * MIB as u64 + 4096);
    }
}

#[test]
fn size_zero_proc_files_are_copied_to_eof() {
    let dir = tempdir();
    assert_eq!(fs::metadata("/proc/version").unwrap().len(), 0);
    let o = run_in(dir.path(), &["--verify", "/proc/version", "v"]);
    assert_ok(&o);
    let want = fs::read("/proc/version").unwrap();
    assert!(!want.is_empty());
    assert_eq!(fs::read(dir.path().join("v")).unwrap(), want);

    let o = run_in(dir.path(), &["/proc/self/status", "status"]);
    assert_ok(&o);
    let got = fs::read_to_string(dir.path().join("status")).unwrap();
    assert!(got.starts_with("Name:\tpcopy\n"), "{got}");
}

#[test]
fn sysfs_files_are_copied_to_eof_whatever_their_size() {
    // sysfs says 4096 bytes for every attribute; the content is a few bytes.
    let src = Path::new("/sys/class/net/lo/mtu");
    let Ok(want) = fs::read(src) else {
        eprintln!("skipped: {} is not readable (no /sys here)", src.display());
        return;
    };
    let dir = tempdir();
    for jobs in ["1", "2"] {
        let o = run_in(
            dir.path(),
            &[
                "-j",
                jobs,
                "--verify",
                "--json",
                "/sys/class/net/lo/mtu",
                "mtu",
            ],
        );
        assert_ok(&o);
        let got = fs::read(dir.path().join("mtu")).unwrap();
        assert!(
            got == want,
            "-j {jobs}: got {} bytes {:?}, want {:?}",
            got.len(),
            String::from_utf8_lossy(&got[..got.len().min(64)]),
            String::from_utf8_lossy(&want)
        );
        let j = json(&o);
        assert_eq!(j["bytes"], want.len() as u64, "{j}");
        assert_eq!(j["workers"], 1, "{j}");
    }
}

#[test]
fn dst_may_be_an_existing_directory() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("d")).unwrap();
    fs::write(dir.path().join("a"), b"abc").unwrap();
    let o = run_in(dir.path(), &["a", "d"]);
    assert_ok(&o);
    assert_eq!(fs::read(dir.path().join("d/a")).unwrap(), b"abc");
    assert!(stdout(&o).contains("a -> d/a "), "{}", stdout(&o));
    // And again, replacing the file inside.
    fs::write(dir.path().join("a"), b"defg").unwrap();
    assert_ok(&run_in(dir.path(), &["a", "d/"]));
    assert_eq!(fs::read(dir.path().join("d/a")).unwrap(), b"defg");
    assert_eq!(entries(&dir.path().join("d")), vec!["a"]);
}

#[test]
fn replace_is_atomic_follows_symlinks_and_takes_src_mode() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"new").unwrap();
    fs::set_permissions(p.join("a"), fs::Permissions::from_mode(0o640)).unwrap();
    fs::write(p.join("target"), b"old content").unwrap();
    fs::set_permissions(p.join("target"), fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::symlink("target", p.join("link")).unwrap();
    let before = fs::metadata(p.join("target")).unwrap().ino();
    let o = run_in(p, &["a", "link"]);
    assert_ok(&o);
    assert!(fs::symlink_metadata(p.join("link"))
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(fs::read(p.join("target")).unwrap(), b"new");
    let meta = fs::metadata(p.join("target")).unwrap();
    assert_ne!(meta.ino(), before, "a new file replaces the old one");
    // SRC's bits, less the umask (022 or 002 in test environments keep 0640).
    assert_eq!(meta.mode() & 0o777, 0o640);
    assert_eq!(entries(p), vec!["a", "link", "target"]);
}

// ---------------------------------------------------------------------------
// Refusals and errors: exit 1, one line naming the path, nothing touched

#[test]
fn missing_src_is_refused() {
    let dir = tempdir();
    let o = run_in(dir.path(), &["missing", "b"]);
    assert_fails(&o, &["cannot open 'missing'", "No such file or directory"]);
    assert!(entries(dir.path()).is_empty());
}

#[test]
fn directory_src_is_refused() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("d")).unwrap();
    let o = run_in(dir.path(), &["d", "b"]);
    assert_fails(&o, &["'d'", "Is a directory"]);
    assert_eq!(entries(dir.path()), vec!["d"]);
}

#[test]
fn fifo_src_is_refused_without_hanging() {
    let dir = tempdir();
    nix::unistd::mkfifo(
        &dir.path().join("f"),
        nix::sys::stat::Mode::from_bits_truncate(0o600),
    )
    .unwrap();
    let o = run_in(dir.path(), &["f", "b"]);
    assert_fails(&o, &["'f'", "FIFO"]);
    assert_eq!(entries(dir.path()), vec!["f"]);
}

#[test]
fn socket_src_is_refused() {
    let dir = tempdir();
    let _listener = std::os::unix::net::UnixListener::bind(dir.path().join("s")).unwrap();
    let o = run_in(dir.path(), &["s", "b"]);
    assert_fails(&o, &["'s'"]);
    assert_eq!(entries(dir.path()), vec!["s"]);
}

/// A command that runs pcopy without the privilege to ignore file modes: as root,
/// it becomes `nobody` (65534) before exec, and `dir` is opened up for it.
fn unprivileged_cmd(dir: &Path) -> Command {
    let mut c = cmd(dir);
    if nix::unistd::geteuid().is_root() {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o777)).unwrap();
        // SAFETY: setgroups/setgid/setuid are async-signal-safe; this runs in
        // Command's child before exec.
        unsafe {
            c.pre_exec(|| {
                let nobody_g = nix::unistd::Gid::from_raw(65534);
                nix::unistd::setgroups(&[nobody_g])?;
                nix::unistd::setgid(nobody_g)?;
                nix::unistd::setuid(nix::unistd::Uid::from_raw(65534))?;
                Ok(())
            });
        }
    }
    c
}

#[test]
fn unreadable_src_is_refused() {
    let dir = tempdir();
    fs::write(dir.path().join("secret"), b"x").unwrap();
    fs::set_permissions(dir.path().join("secret"), fs::Permissions::from_mode(0o000)).unwrap();
    let o = finish(
        unprivileged_cmd(dir.path())
            .args(["secret", "b"])
            .spawn()
            .unwrap(),
    );
    assert_fails(&o, &["cannot open 'secret'", "Permission denied"]);
    assert_eq!(entries(dir.path()), vec!["secret"]);
}

#[test]
fn unwritable_dst_directory_is_refused() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"x").unwrap();
    fs::create_dir(p.join("ro")).unwrap();
    fs::write(p.join("ro/b"), OLD).unwrap();
    fs::set_permissions(p.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let o = finish(unprivileged_cmd(p).args(["a", "ro/b"]).spawn().unwrap());
    assert_fails(&o, &["cannot create 'ro/b'", "Permission denied"]);
    assert_eq!(fs::read(p.join("ro/b")).unwrap(), OLD);
    assert_eq!(entries(&p.join("ro")), vec!["b"]);
    // /proc refuses new files even to root.
    let o = run_in(p, &["a", "/proc/pcopy-test"]);
    assert_fails(&o, &["'/proc/pcopy-test'"]);
}

#[test]
fn same_file_is_refused_in_all_its_forms() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"precious").unwrap();
    fs::hard_link(p.join("a"), p.join("hard")).unwrap();
    std::os::unix::fs::symlink("a", p.join("sym")).unwrap();
    fs::create_dir(p.join("d")).unwrap();
    for (src, dst, shown) in [
        ("a", "a", "a"),
        ("./a", "a", "a"),
        ("a", "./a", "./a"),
        ("a", "hard", "hard"),
        ("a", "sym", "sym"),
        ("sym", "a", "a"),
        ("a", ".", "./a"),
    ] {
        let o = run_in(p, &[src, dst]);
        assert_fails(&o, &[&format!("'{src}' and '{shown}' are the same file")]);
        assert_eq!(fs::read(p.join("a")).unwrap(), b"precious");
        assert_eq!(entries(p), vec!["a", "d", "hard", "sym"]);
    }
}

#[test]
fn dst_directory_holding_a_same_named_directory_is_refused() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"x").unwrap();
    fs::create_dir_all(p.join("d/a")).unwrap();
    fs::write(p.join("d/a/keep"), b"k").unwrap();
    let o = run_in(p, &["a", "d"]);
    assert_fails(&o, &["'d/a'", "is a directory"]);
    assert!(fs::metadata(p.join("d/a")).unwrap().is_dir());
    assert_eq!(entries(&p.join("d")), vec!["a"]);
    assert_eq!(entries(&p.join("d/a")), vec!["keep"]);
}

#[test]
fn dst_that_is_not_a_regular_file_is_refused() {
    // A symlink to /dev/null: renaming over it would replace /dev/null itself.
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"x").unwrap();
    std::os::unix::fs::symlink("/dev/null", p.join("null")).unwrap();
    let before = fs::metadata("/dev/null").unwrap();
    let o = run_in(p, &["a", "null"]);
    assert_fails(&o, &["'null'", "not a regular file"]);
    let after = fs::metadata("/dev/null").unwrap();
    assert!(after.file_type().is_char_device(), "/dev/null replaced");
    assert_eq!((after.ino(), after.rdev()), (before.ino(), before.rdev()));
    assert_eq!(entries(p), vec!["a", "null"]);
    assert_eq!(
        entries(Path::new("/dev"))
            .iter()
            .filter(|n| n.contains("pcopy"))
            .count(),
        0
    );
}

#[test]
fn dangling_dst_symlink_is_refused_like_cp() {
    // cp: "not writing through dangling symlink 'X'"; creating the link's target
    // would write wherever the link points (another user's directory, say).
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"x").unwrap();
    std::os::unix::fs::symlink("nowhere", p.join("dangling")).unwrap();
    std::os::unix::fs::symlink("link2", p.join("link1")).unwrap();
    std::os::unix::fs::symlink("nowhere2", p.join("link2")).unwrap();
    for name in ["dangling", "link1"] {
        let o = run_in(p, &["a", name]);
        assert_fails(
            &o,
            &[&format!("not writing through dangling symlink '{name}'")],
        );
    }
    assert_eq!(entries(p), vec!["a", "dangling", "link1", "link2"]);
}

#[test]
fn dst_symlink_into_another_directory_replaces_its_target() {
    let dir = tempdir();
    let p = dir.path();
    fs::create_dir(p.join("sub")).unwrap();
    fs::write(p.join("a"), b"new").unwrap();
    fs::write(p.join("sub/t"), b"old").unwrap();
    std::os::unix::fs::symlink("sub/t", p.join("rel")).unwrap();
    std::os::unix::fs::symlink(p.join("rel"), p.join("abs")).unwrap();
    let o = run_in(p, &["a", "abs"]);
    assert_ok(&o);
    assert_eq!(fs::read(p.join("sub/t")).unwrap(), b"new");
    assert_eq!(entries(&p.join("sub")), vec!["t"]);
    assert_eq!(entries(p), vec!["a", "abs", "rel", "sub"]);
    assert!(stdout(&o).contains("a -> abs "), "{}", stdout(&o));
}

#[test]
fn dst_symlink_is_followed_by_the_kernel_so_protected_symlinks_applies() {
    // fs.protected_symlinks: in a sticky world-writable directory (/tmp), a symlink
    // owned by someone else is not followed. pcopy lets the kernel follow DST's link,
    // so the rule holds for it as for any open().
    let protected = fs::read_to_string("/proc/sys/fs/protected_symlinks").unwrap_or_default();
    if protected.trim() != "1" || !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: needs root and fs.protected_symlinks = 1");
        return;
    }
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"new").unwrap();
    fs::write(p.join("victim"), OLD).unwrap();
    fs::create_dir(p.join("tmp")).unwrap();
    fs::set_permissions(p.join("tmp"), fs::Permissions::from_mode(0o1777)).unwrap();
    let link = p.join("tmp/planted");
    std::os::unix::fs::symlink(p.join("victim"), &link).unwrap();
    std::os::unix::fs::lchown(&link, Some(65534), Some(65534)).unwrap();
    let o = run_in(p, &["a", "tmp/planted"]);
    assert_fails(&o, &["'tmp/planted'", "Permission denied"]);
    assert_eq!(fs::read(p.join("victim")).unwrap(), OLD);
    assert_eq!(entries(&p.join("tmp")), vec!["planted"]);
}

#[test]
fn symlink_loop_as_dst_is_refused() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"x").unwrap();
    std::os::unix::fs::symlink("loop", p.join("loop")).unwrap();
    std::os::unix::fs::symlink("pong", p.join("ping")).unwrap();
    std::os::unix::fs::symlink("ping", p.join("pong")).unwrap();
    for name in ["loop", "ping"] {
        let o = run_in(p, &["a", name]);
        assert_fails(
            &o,
            &[&format!("'{name}'"), "Too many levels of symbolic links"],
        );
    }
    assert_eq!(entries(p), vec!["a", "loop", "ping", "pong"]);
}

#[test]
fn missing_dst_directory_is_refused() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), b"x").unwrap();
    let o = run_in(dir.path(), &["a", "nodir/b"]);
    assert_fails(&o, &["'nodir/b'", "No such file or directory"]);
    assert_eq!(entries(dir.path()), vec!["a"]);
}

#[test]
fn usage_errors_exit_2() {
    let dir = tempdir();
    for args in [
        &["a"][..],
        &["-j", "0", "a", "b"],
        &["-j", "65", "a", "b"],
        &["--bogus", "a", "b"],
    ] {
        let o = run_in(dir.path(), args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stderr(&o));
    }
}

#[test]
fn file_size_limit_fails_at_preallocation() {
    let dir = tempdir();
    let p = dir.path();
    big_file(&p.join("src"), 8 * MIB);
    fs::write(p.join("dst"), OLD).unwrap();
    let mut c = cmd(p);
    c.args(["src", "dst"]);
    limit_file_size(&mut c, MIB as u64);
    let o = finish(c.spawn().unwrap());
    assert_fails(&o, &["cannot preallocate 'dst'", "File too large"]);
    assert_old_dst_intact_and_no_temp(p);

    // With no DST at all: nothing appears, in either way of building the new file.
    fs::remove_file(p.join("dst")).unwrap();
    for no_tmpfile in [false, true] {
        let mut c = cmd(p);
        c.args(["src", "dst"]);
        if no_tmpfile {
            c.env("PCOPY_TEST_NO_TMPFILE", "1");
        }
        limit_file_size(&mut c, MIB as u64);
        let o = finish(c.spawn().unwrap());
        assert_fails(&o, &["cannot preallocate 'dst'", "File too large"]);
        assert_eq!(entries(p), vec!["src"], "no_tmpfile {no_tmpfile}");
    }
}

/// Sets RLIMIT_FSIZE (`ulimit -f`) to `bytes` in Command's child before exec.
fn limit_file_size(c: &mut Command, bytes: u64) {
    // SAFETY: setrlimit is async-signal-safe; this runs in Command's child before exec.
    unsafe {
        c.pre_exec(move || {
            let (_, hard) =
                nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE)?;
            nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_FSIZE, bytes, hard)?;
            Ok(())
        });
    }
}

// ---------------------------------------------------------------------------
// Failures mid-copy: nothing appears under DST's name, no temp is left

/// pcopy on the 256 MiB `src` of [`big_setup`]; every test that signals pcopy or its
/// workers starts it this way, with the default dispositions of [`default_signals`].
fn big_cmd(dir: &Path, extra: &[&str], no_tmpfile: bool) -> Command {
    let mut c = cmd(dir);
    c.args(extra).args(["src", "dst"]);
    default_signals(&mut c);
    if no_tmpfile {
        c.env("PCOPY_TEST_NO_TMPFILE", "1");
    }
    c
}

/// Sets each of `signals` to `handler` in Command's child, before exec: an ignored
/// disposition survives exec, so this is how a shell with `trap '' SIG` (or `nohup`,
/// or `&` in a script) starts pcopy.
fn set_dispositions(c: &mut Command, signals: &'static [Signal], handler: SigHandler) {
    // SAFETY: sigaction is async-signal-safe; this runs in Command's child before exec.
    unsafe {
        c.pre_exec(move || {
            let act = SigAction::new(handler, SaFlags::empty(), SigSet::empty());
            for &sig in signals {
                sigaction(sig, &act)?;
            }
            Ok(())
        });
    }
}

/// The signals the tests send to pcopy, and SIGCHLD, at their default action, so a
/// test does not depend on how the test runner itself was started (`nohup`, `&`).
fn default_signals(c: &mut Command) {
    const SIGNALS: &[Signal] = &[
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGCHLD,
    ];
    set_dispositions(c, SIGNALS, SigHandler::SigDfl);
}

fn worker_killed(no_tmpfile: bool) {
    let (dir, _, _) = big_setup();
    let (child, worker) = catch_a_worker(|| big_cmd(dir.path(), &[], no_tmpfile));
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let o = finish(child);
    assert_fails(
        &o,
        &[&format!("worker 2 (pid {worker}) was killed by SIGKILL")],
    );
    assert_old_dst_intact_and_no_temp(dir.path());
}

#[test]
fn a_killed_worker_fails_the_copy_cleanly() {
    worker_killed(false);
}

#[test]
fn a_killed_worker_fails_the_copy_cleanly_without_o_tmpfile() {
    worker_killed(true);
}

#[test]
fn a_killed_worker_fails_the_copy_even_with_sigchld_ignored() {
    // Started with SIGCHLD ignored, a process's children are reaped by the kernel
    // and waitpid says ECHILD: pcopy must not take that for "all done".
    let (dir, _, _) = big_setup();
    let (child, worker) = catch_a_worker(|| {
        let mut c = big_cmd(dir.path(), &[], false);
        set_dispositions(&mut c, &[Signal::SIGCHLD], SigHandler::SigIgn);
        c
    });
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let o = finish(child);
    assert_fails(&o, &["worker 2", &format!("{worker}")]);
    assert_old_dst_intact_and_no_temp(dir.path());
}

#[test]
fn src_shrinking_during_the_copy_fails_cleanly() {
    let (dir, src, _) = big_setup();
    let (child, worker) = catch_a_worker(|| big_cmd(dir.path(), &[], true));
    // Freeze the parent too, cut SRC short, and let both run on.
    let parent = Pid::from_raw(child.id() as i32);
    kill(parent, Signal::SIGSTOP).unwrap();
    File::options()
        .write(true)
        .open(&src)
        .unwrap()
        .set_len(4096)
        .unwrap();
    kill(parent, Signal::SIGCONT).unwrap();
    // The parent may already have hit the short SRC and killed the worker.
    let _ = kill(Pid::from_raw(worker), Signal::SIGCONT);
    let o = finish(child);
    assert_fails(&o, &["cannot read 'src'", "file shrank during the copy"]);
    assert_old_dst_intact_and_no_temp(dir.path());
}

/// pcopy cleans up, then dies by the signal itself (not exit 128+N), so that a
/// shell loop around it stops on Ctrl-C as it would around cp.
fn stopped_by(sig: Signal, no_tmpfile: bool) {
    let (dir, _, _) = big_setup();
    let (child, worker) = catch_a_worker(|| big_cmd(dir.path(), &[], no_tmpfile));
    kill(Pid::from_raw(child.id() as i32), sig).unwrap();
    let o = finish(child);
    assert_eq!(
        o.status.signal(),
        Some(sig as i32),
        "{:?}, stderr: {}",
        o.status,
        stderr(&o)
    );
    let err = stderr(&o);
    assert!(err.contains(&format!("interrupted by {sig}")), "{err}");
    assert!(err.contains("'dst' left unchanged"), "{err}");
    assert_old_dst_intact_and_no_temp(dir.path());
    // The parent reaped its worker before exiting: it is gone, not a zombie.
    assert_eq!(state_of(worker), None, "worker {worker} left behind");
}

#[test]
fn sigint_stops_the_copy_cleanly() {
    stopped_by(Signal::SIGINT, false);
}

#[test]
fn sigterm_stops_the_copy_cleanly_without_o_tmpfile() {
    stopped_by(Signal::SIGTERM, true);
}

/// The `flags:` (octal) of the descriptor of process `pid` that is open on `path`.
fn open_flags_of(pid: i32, path: &Path) -> Option<u32> {
    for entry in fs::read_dir(format!("/proc/{pid}/fd")).ok()? {
        let entry = entry.ok()?;
        if fs::read_link(entry.path()).ok().as_deref() != Some(path) {
            continue;
        }
        let fd = entry.file_name();
        let info =
            fs::read_to_string(format!("/proc/{pid}/fdinfo/{}", fd.to_string_lossy())).ok()?;
        let flags = info.lines().find_map(|l| l.strip_prefix("flags:"))?;
        return u32::from_str_radix(flags.trim(), 8).ok();
    }
    None
}

#[test]
fn src_is_read_in_blocking_mode_once_known_to_be_a_regular_file() {
    // O_NONBLOCK only guards the open against a FIFO; it must not stay on the
    // open file description the workers read.
    let (dir, src, _) = big_setup();
    let (mut child, worker) = catch_a_worker(|| big_cmd(dir.path(), &[], false));
    let src = src.canonicalize().unwrap();
    let flags = open_flags_of(worker, &src);
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    wait_bounded(&mut child, RUN_LIMIT);
    wait_dead(worker);
    let flags = flags.expect("the worker has SRC open");
    assert_eq!(
        flags & nix::libc::O_NONBLOCK as u32,
        0,
        "SRC open with flags {flags:o}"
    );
}

#[test]
fn sigkill_of_pcopy_leaves_dst_intact_and_kills_workers() {
    let (dir, _, _) = big_setup();
    let (mut child, worker) = catch_a_worker(|| big_cmd(dir.path(), &[], false));
    kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL).unwrap();
    let status = wait_bounded(&mut child, RUN_LIMIT);
    assert_eq!(status.signal(), Some(nix::libc::SIGKILL));
    // PR_SET_PDEATHSIG: the stopped worker dies with its parent.
    wait_dead(worker);
    // The O_TMPFILE copy never had a name.
    assert_old_dst_intact_and_no_temp(dir.path());
}

// ---------------------------------------------------------------------------
// Standard output trouble never undoes the copy

#[test]
fn closed_stdout_does_not_break_the_copy() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), data(100_000, 9)).unwrap();
    let mut c = cmd(dir.path());
    c.args(["a", "b"]);
    close_fds(&mut c, &[1]);
    let o = finish(c.spawn().unwrap());
    assert_ok(&o);
    assert!(o.stderr.is_empty(), "{}", stderr(&o));
    // The report went to /dev/null, not into the copy (which would have taken fd 1).
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), data(100_000, 9));
}

#[test]
fn closed_pipe_on_stdout_exits_1_and_keeps_the_copy() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), data(100_000, 10)).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end); // like `pcopy a b | head -0` once head has gone
    let mut c = cmd(dir.path());
    c.args(["a", "b"]).stdout(Stdio::from(write_end));
    let o = finish(c.spawn().unwrap());
    assert_fails(
        &o,
        &[
            "standard output",
            "Broken pipe",
            "the copy to 'b' is complete",
        ],
    );
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), data(100_000, 10));
}

#[test]
fn stdin_closed_is_harmless() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), b"abc").unwrap();
    let mut c = cmd(dir.path());
    c.args(["a", "b"]);
    close_fds(&mut c, &[0]);
    let o = finish(c.spawn().unwrap());
    assert_ok(&o);
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"abc");
    assert!(
        stdout(&o).starts_with("copied 3 B (3 bytes) a -> b in "),
        "{}",
        stdout(&o)
    );
}

/// Closes each of `fds` in Command's child before exec.
fn close_fds(c: &mut Command, fds: &'static [i32]) {
    // SAFETY: close is async-signal-safe; runs in Command's child before exec.
    unsafe {
        c.pre_exec(move || {
            for &fd in fds {
                nix::libc::close(fd);
            }
            Ok(())
        });
    }
}

#[test]
fn all_std_fds_closed_the_copy_gets_no_stray_text() {
    // With 0, 1 and 2 all closed, the first files pcopy opens would be 0, 1, 2: the
    // report (stdout) or an error (stderr) written there would land in SRC or the copy.
    let dir = tempdir();
    let p = dir.path();
    let content = data(300_000, 11);
    fs::write(p.join("a"), &content).unwrap();
    let mut c = cmd(p);
    c.args(["--verify", "a", "b"]);
    close_fds(&mut c, &[0, 1, 2]);
    let o = finish(c.spawn().unwrap());
    assert_eq!(o.status.code(), Some(0));
    assert!(
        fs::read(p.join("b")).unwrap() == content,
        "the copy differs"
    );
    assert!(fs::read(p.join("a")).unwrap() == content, "SRC changed");
    assert_eq!(entries(p), vec!["a", "b"]);
}

#[test]
fn closed_stderr_and_a_failure_exit_1_and_write_nothing_into_files() {
    // The error line (stdout broken, stderr closed) must go nowhere, not into DST.
    let dir = tempdir();
    let p = dir.path();
    let content = data(100_000, 12);
    fs::write(p.join("a"), &content).unwrap();
    let (read_end, write_end) = nix::unistd::pipe().unwrap();
    drop(read_end);
    let mut c = cmd(p);
    c.args(["a", "b"]).stdout(Stdio::from(write_end));
    close_fds(&mut c, &[2]);
    let o = finish(c.spawn().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        fs::read(p.join("b")).unwrap() == content,
        "the copy differs"
    );
    // And a refusal with stderr closed: exit 1, nothing created.
    let mut c = cmd(p);
    c.args(["missing", "c"]);
    close_fds(&mut c, &[1, 2]);
    let o = finish(c.spawn().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(entries(p), vec!["a", "b"]);
}
