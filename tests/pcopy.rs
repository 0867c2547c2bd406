//! Integration tests for `pcopy`: they run the real binary on real files in
//! temporary directories, every wait bounded. The tests that need something of the
//! machine (root, a sysctl, /sys) are in `pcopy_host.rs`, whose harness can skip.

#[path = "common/pcopy.rs"]
mod pcopy_harness;

use std::fs::{self, File};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use pcopy_harness::*;

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
            // No share under 4 KiB: a small file gets fewer workers.
            assert_eq!(j["workers"], jobs.min(size / 4096).max(1) as u64, "{j}");
            assert_eq!(worker_bytes(&j).iter().sum::<u64>(), size as u64, "{j}");
            fs::remove_file(&dst).unwrap();
        }
    }
}

#[test]
fn default_is_the_homework_two_byte_halves() {
    let dir = tempdir();
    // Below and above the share size (24 MiB) where workers switch from
    // copy_file_range to mapped writes: the cut is at the exact byte either way.
    for len in [10 * MIB + 1, 33 * MIB + 1] {
        fs::remove_file(dir.path().join("a")).ok();
        big_file(&dir.path().join("f"), len);
        let o = run_in(dir.path(), &["-j", "2", "--json", "f", "a"]);
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
    let o = run_in(dir.path(), &["-j", "2", "a", "b"]);
    assert_ok(&o);
    let line = stdout(&o);
    assert!(
        line.starts_with("copied 10.00 MiB (10485761 bytes) 'a' -> 'b' in "),
        "{line}"
    );
    // 5 MiB and 5 MiB + 1 byte: equal at two decimals, so condensed.
    assert!(
        line.trim_end().ends_with(" (2 workers × 5.00 MiB)"),
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
    // Small and no -j: one worker.
    assert_eq!(j["worker_bytes"], serde_json::json!([5000]));
    assert_eq!(j["cloned"], false);
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
fn dst_may_be_an_existing_directory() {
    let dir = tempdir();
    fs::create_dir(dir.path().join("d")).unwrap();
    fs::write(dir.path().join("a"), b"abc").unwrap();
    let o = run_in(dir.path(), &["a", "d"]);
    assert_ok(&o);
    assert_eq!(fs::read(dir.path().join("d/a")).unwrap(), b"abc");
    assert!(stdout(&o).contains("'a' -> 'd/a' "), "{}", stdout(&o));
    // And again, replacing the file inside.
    fs::write(dir.path().join("a"), b"defg").unwrap();
    assert_ok(&run_in(dir.path(), &["a", "d/"]));
    assert_eq!(fs::read(dir.path().join("d/a")).unwrap(), b"defg");
    assert_eq!(entries(&dir.path().join("d")), vec!["a"]);
}

#[test]
fn replace_is_atomic_follows_symlinks_and_keeps_dst_mode() {
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
    // As cp: a replaced file keeps its own mode (0600), not SRC's (0640).
    assert_eq!(meta.mode() & 0o777, 0o600);
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
    // DST itself writable: only the directory stands in the way of a replace.
    fs::set_permissions(p.join("ro/b"), fs::Permissions::from_mode(0o666)).unwrap();
    fs::set_permissions(p.join("ro"), fs::Permissions::from_mode(0o555)).unwrap();
    let o = finish(unprivileged_cmd(p).args(["a", "ro/b"]).spawn().unwrap());
    assert_fails(
        &o,
        &["cannot replace 'ro/b' atomically: directory 'ro' is not writable (use --in-place"],
    );
    assert_eq!(fs::read(p.join("ro/b")).unwrap(), OLD);
    assert_eq!(entries(&p.join("ro")), vec!["b"]);
    let o = finish(unprivileged_cmd(p).args(["a", "ro/new"]).spawn().unwrap());
    assert_fails(&o, &["cannot create 'ro/new'", "Permission denied"]);
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
    assert!(stdout(&o).contains("'a' -> 'abs' "), "{}", stdout(&o));
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

/// RLIMIT_FSIZE (`ulimit -f`) of 1 MiB for pcopy, set by `prlimit` before it execs.
const FILE_SIZE_LIMIT_1MIB: [&str; 2] = ["prlimit", "--fsize=1048576"];

#[test]
fn file_size_limit_fails_at_preallocation() {
    let dir = tempdir();
    let p = dir.path();
    big_file(&p.join("src"), 8 * MIB);
    fs::write(p.join("dst"), OLD).unwrap();
    let o = finish(
        cmd_via(p, &FILE_SIZE_LIMIT_1MIB)
            .args(["src", "dst"])
            .spawn()
            .unwrap(),
    );
    assert_fails(&o, &["cannot preallocate 'dst'", "File too large"]);
    assert_old_dst_intact_and_no_temp(p);

    // With no DST at all: nothing appears, in either way of building the new file.
    fs::remove_file(p.join("dst")).unwrap();
    for no_tmpfile in [false, true] {
        let mut c = cmd_via(p, &FILE_SIZE_LIMIT_1MIB);
        c.args(["src", "dst"]);
        if no_tmpfile {
            c.env("PCOPY_TEST_NO_TMPFILE", "1");
        }
        let o = finish(c.spawn().unwrap());
        assert_fails(&o, &["cannot preallocate 'dst'", "File too large"]);
        assert_eq!(entries(p), vec!["src"], "no_tmpfile {no_tmpfile}");
    }
}

// ---------------------------------------------------------------------------
// Failures mid-copy: nothing appears under DST's name, no temp is left

/// The signals the tests send to pcopy, and SIGCHLD, at their default action
/// (`env` sets them before it execs pcopy), so a test does not depend on how the
/// test runner itself was started (`nohup`, `&`).
const DEFAULT_SIGNALS: [&str; 2] = ["env", "--default-signal=INT,TERM,HUP,CHLD"];

/// pcopy on the 256 MiB `src` of [`big_setup`], started through `wrapper`.
fn big_cmd_via(dir: &Path, wrapper: &[&str], no_tmpfile: bool) -> Command {
    let mut c = cmd_via(dir, wrapper);
    // Two workers whatever the machine's load (the default takes one when busy).
    c.args(["-j", "2", "src", "dst"]);
    if no_tmpfile {
        c.env("PCOPY_TEST_NO_TMPFILE", "1");
    }
    c
}

/// pcopy on the 256 MiB `src` of [`big_setup`]; every test that signals pcopy or its
/// workers starts it this way, with the default dispositions of [`DEFAULT_SIGNALS`].
fn big_cmd(dir: &Path, no_tmpfile: bool) -> Command {
    big_cmd_via(dir, &DEFAULT_SIGNALS, no_tmpfile)
}

fn worker_killed(no_tmpfile: bool) {
    let (dir, _, _) = big_setup();
    a_killed_worker_fails_cleanly(dir.path(), || big_cmd(dir.path(), no_tmpfile));
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
        // As a shell with `trap '' CHLD` starts it: an ignored disposition survives exec.
        const CHLD_IGNORED: [&str; 3] = [
            "env",
            "--default-signal=INT,TERM,HUP",
            "--ignore-signal=CHLD",
        ];
        big_cmd_via(dir.path(), &CHLD_IGNORED, false)
    });
    kill(Pid::from_raw(worker), Signal::SIGKILL).unwrap();
    let o = finish(child);
    assert_fails(&o, &["worker 2", &format!("{worker}")]);
    assert_old_dst_intact_and_no_temp(dir.path());
}

/// The descriptor of process `pid` open on the nameless new file in `dir` (an
/// O_TMPFILE file shows as `DIR/#INODE (deleted)`).
fn tmpfile_fd_of(pid: i32, dir: &Path) -> Option<PathBuf> {
    let dir = dir.canonicalize().ok()?;
    fs::read_dir(format!("/proc/{pid}/fd")).ok()?.find_map(|e| {
        let path = e.ok()?.path();
        let target = fs::read_link(&path).ok()?;
        let name = target
            .strip_prefix(&dir)
            .ok()?
            .to_string_lossy()
            .into_owned();
        (name.starts_with('#') && name.ends_with(" (deleted)")).then_some(path)
    })
}

#[test]
fn a_mapped_range_that_loses_its_pages_fails_in_one_line_with_dst_intact() {
    // A page of DST's mapping that the file system cannot back is a SIGBUS for user
    // code; pcopy's workers only read SRC into the mapping, where the kernel turns
    // it into EFAULT. Cutting the new file short under the workers makes every
    // later page of their windows unbackable, as a full disk or an I/O error would.
    // Workers map DST with --reflink=never (by default they copy in the kernel).
    let (dir, _, _) = big_setup();
    let (child, worker) = catch_a_worker(|| {
        let mut c = big_cmd(dir.path(), false);
        c.arg("--reflink=never");
        c
    });
    let parent = Pid::from_raw(child.id() as i32);
    kill(parent, Signal::SIGSTOP).unwrap();
    let fd = tmpfile_fd_of(worker, dir.path()).expect("the worker has the new file open");
    File::options()
        .write(true)
        .open(&fd)
        .unwrap()
        .set_len(0)
        .unwrap();
    kill(parent, Signal::SIGCONT).unwrap();
    let _ = kill(Pid::from_raw(worker), Signal::SIGCONT);
    let o = finish(child);
    assert_fails(&o, &["cannot write 'dst'", "could not store a mapped page"]);
    assert_old_dst_intact_and_no_temp(dir.path());
}

#[test]
fn zero_runs_of_a_sparse_src_become_holes() {
    // cp's --sparse=auto: SRC has a hole, so whole blocks of zeros in its data are
    // not written either, and are punched out of the preallocated copy.
    let dir = tempdir();
    let p = dir.path();
    {
        let f = File::create(p.join("sparse")).unwrap();
        f.set_len(64 * MIB as u64).unwrap();
        use std::os::unix::fs::FileExt;
        let mut piece = data(16 * MIB, 7);
        piece[4 * MIB..12 * MIB].fill(0); // 8 MiB of written zeros
        f.write_all_at(&piece, 8 * MIB as u64).unwrap();
        f.sync_all().unwrap();
    }
    let src_blocks = blocks(&p.join("sparse"));
    assert!(src_blocks >= (16 * MIB / 512) as u64, "{src_blocks}");
    for jobs in ["1", "2", "3"] {
        let o = run_in(p, &["-j", jobs, "--verify", "--json", "sparse", "copy"]);
        assert_ok(&o);
        let got = blocks(&p.join("copy"));
        let want = (8 * MIB / 512) as u64;
        assert!(
            got >= want && got <= want + 2048,
            "-j {jobs}: {got} blocks for {want} blocks of non-zero data"
        );
        assert!(fs::read(p.join("sparse")).unwrap() == fs::read(p.join("copy")).unwrap());
    }
}

#[test]
fn src_shrinking_during_the_copy_fails_cleanly() {
    let (dir, src, _) = big_setup();
    src_shrinking_mid_copy_fails_cleanly(dir.path(), &src, || big_cmd(dir.path(), true));
}

/// pcopy cleans up, then dies by the signal itself (not exit 128+N), so that a
/// shell loop around it stops on Ctrl-C as it would around cp.
fn stopped_by(sig: Signal, no_tmpfile: bool) {
    let (dir, _, _) = big_setup();
    let (child, worker) = catch_a_worker(|| big_cmd(dir.path(), no_tmpfile));
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
    let (mut child, worker) = catch_a_worker(|| big_cmd(dir.path(), false));
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
    let (mut child, worker) = catch_a_worker(|| big_cmd(dir.path(), false));
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

/// A wrapper that closes the standard fds `fds` ("0 1") and execs pcopy: `sh -c
/// 'exec "$@" 0<&- 1>&-' sh PCOPY ARGS…`.
fn closing(fds: &str) -> [String; 4] {
    let redirs: Vec<String> = fds.split(' ').map(|fd| format!("{fd}<&-")).collect();
    [
        "sh".into(),
        "-c".into(),
        format!("exec \"$@\" {}", redirs.join(" ")),
        "sh".into(),
    ]
}

#[test]
fn closed_stdout_does_not_break_the_copy() {
    let dir = tempdir();
    fs::write(dir.path().join("a"), data(100_000, 9)).unwrap();
    let mut c = cmd_via(dir.path(), &closing("1"));
    c.args(["a", "b"]);
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
    let mut c = cmd_via(dir.path(), &closing("0"));
    c.args(["a", "b"]);
    let o = finish(c.spawn().unwrap());
    assert_ok(&o);
    assert_eq!(fs::read(dir.path().join("b")).unwrap(), b"abc");
    assert!(
        stdout(&o).starts_with("copied 3 bytes 'a' -> 'b' in "),
        "{}",
        stdout(&o)
    );
}

#[test]
fn all_std_fds_closed_the_copy_gets_no_stray_text() {
    // With 0, 1 and 2 all closed, the first files pcopy opens would be 0, 1, 2: the
    // report (stdout) or an error (stderr) written there would land in SRC or the copy.
    let dir = tempdir();
    let p = dir.path();
    let content = data(300_000, 11);
    fs::write(p.join("a"), &content).unwrap();
    let mut c = cmd_via(p, &closing("0 1 2"));
    c.args(["--verify", "a", "b"]);
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
    let mut c = cmd_via(p, &closing("2"));
    c.args(["a", "b"]).stdout(Stdio::from(write_end));
    let o = finish(c.spawn().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(
        fs::read(p.join("b")).unwrap() == content,
        "the copy differs"
    );
    // And a refusal with stderr closed: exit 1, nothing created.
    let mut c = cmd_via(p, &closing("1 2"));
    c.args(["missing", "c"]);
    let o = finish(c.spawn().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert_eq!(entries(p), vec!["a", "b"]);
}

// ---------------------------------------------------------------------------
// cp's manners that need no second user (those are in pcopy_manners.rs)

#[test]
fn no_clobber_skips_an_existing_dst_silently() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"new").unwrap();
    fs::write(p.join("b"), OLD).unwrap();
    for flag in ["-n", "--no-clobber"] {
        let o = run_in(p, &[flag, "a", "b"]);
        assert_ok(&o);
        assert!(o.stdout.is_empty() && o.stderr.is_empty(), "{}", stderr(&o));
        assert_eq!(fs::read(p.join("b")).unwrap(), OLD);
    }
    // A new name is copied, in both ways of building the file.
    let o = run_in(p, &["-n", "a", "c"]);
    assert_ok(&o);
    let o = finish(
        cmd(p)
            .env("PCOPY_TEST_NO_TMPFILE", "1")
            .args(["-n", "a", "d"])
            .spawn()
            .unwrap(),
    );
    assert_ok(&o);
    assert_eq!(fs::read(p.join("c")).unwrap(), b"new");
    assert_eq!(fs::read(p.join("d")).unwrap(), b"new");
    assert_eq!(entries(p), vec!["a", "b", "c", "d"]);
}

#[test]
fn preserve_keeps_mode_and_times() {
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"data").unwrap();
    fs::set_permissions(p.join("a"), fs::Permissions::from_mode(0o751)).unwrap();
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(978_307_200);
    File::options()
        .write(true)
        .open(p.join("a"))
        .unwrap()
        .set_modified(when)
        .unwrap();
    for flag in ["-p", "--preserve=mode,timestamps", "--preserve"] {
        let o = run_in(p, &[flag, "a", "b"]);
        assert_ok(&o);
        let m = fs::metadata(p.join("b")).unwrap();
        assert_eq!(m.mode() & 0o7777, 0o751, "{flag}");
        assert_eq!(m.modified().unwrap(), when, "{flag}");
        fs::remove_file(p.join("b")).unwrap();
    }
    // Without it: SRC's mode less the umask, and a new time.
    let o = run_in(p, &["a", "b"]);
    assert_ok(&o);
    assert_ne!(fs::metadata(p.join("b")).unwrap().modified().unwrap(), when);
}

#[test]
fn a_name_too_long_fails_before_a_byte_is_copied() {
    let (dir, _, _) = big_setup();
    let long = "n".repeat(256);
    let o = run_in(dir.path(), &["src", &long]);
    assert_fails(&o, &["File name too long"]);
    assert_old_dst_intact_and_no_temp(dir.path());
}

#[test]
fn in_place_rewrites_dst_keeping_its_inode_and_links() {
    let dir = tempdir();
    let p = dir.path();
    big_file(&p.join("src"), 3 * MIB + 5);
    big_file(&p.join("dst"), 5 * MIB);
    fs::hard_link(p.join("dst"), p.join("link")).unwrap();
    fs::set_permissions(p.join("dst"), fs::Permissions::from_mode(0o604)).unwrap();
    let ino = fs::metadata(p.join("dst")).unwrap().ino();
    let o = run_in(p, &["--in-place", "-j", "3", "--verify", "src", "dst"]);
    assert_ok(&o);
    let m = fs::metadata(p.join("dst")).unwrap();
    assert_eq!((m.ino(), m.nlink(), m.mode() & 0o777), (ino, 2, 0o604));
    assert_eq!(m.len(), 3 * MIB as u64 + 5, "cut to SRC's length");
    assert!(fs::read(p.join("link")).unwrap() == fs::read(p.join("src")).unwrap());
}

#[test]
fn several_sources_go_into_a_directory_and_a_failure_does_not_stop_the_rest() {
    let dir = tempdir();
    let p = dir.path();
    fs::create_dir(p.join("d")).unwrap();
    fs::write(p.join("a"), b"aa").unwrap();
    fs::write(p.join("c"), b"cc").unwrap();
    let o = run_in(p, &["--json", "a", "missing", "c", "d/"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert!(
        stderr(&o).contains("cannot open 'missing'"),
        "{}",
        stderr(&o)
    );
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{}", stdout(&o));
    assert_eq!(
        (&lines[0]["dst"], &lines[1]["dst"]),
        (&"d/a".into(), &"d/c".into())
    );
    assert_eq!(entries(&p.join("d")), vec!["a", "c"]);
    // Several sources need a directory.
    let o = run_in(p, &["a", "c", "e"]);
    assert_fails(&o, &["'e'", "not a directory"]);
}

#[test]
fn the_new_file_is_private_until_it_replaces_dst() {
    // Built under a hidden name (no O_TMPFILE), it is 0600 while workers write it,
    // so a private file's content is never readable by others during the copy.
    let (dir, _, dst) = big_setup();
    fs::set_permissions(&dst, fs::Permissions::from_mode(0o640)).unwrap();
    let (child, worker) = catch_a_worker(|| big_cmd(dir.path(), true));
    let hidden: Vec<u32> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().starts_with(".dst.pcopy-"))
        .map(|e| e.metadata().unwrap().mode() & 0o7777)
        .collect();
    let _ = kill(Pid::from_raw(worker), Signal::SIGCONT);
    let o = finish(child);
    assert_eq!(hidden, vec![0o600]);
    assert_ok(&o);
    // Then it takes DST's mode.
    assert_eq!(fs::metadata(&dst).unwrap().mode() & 0o7777, 0o640);
}

#[test]
fn names_are_shell_quoted_in_the_report_and_errors_and_raw_in_json() {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("miss\ning"), b"x").unwrap();
    let o = run_in(p, &["miss\ning", "it's"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).lines().count(), 1, "{}", stdout(&o));
    assert!(
        stdout(&o).contains(" 'miss'$'\\n''ing' -> 'it'\\''s' in "),
        "{}",
        stdout(&o)
    );
    // Invalid UTF-8: quoted by its bytes in errors; in JSON null plus the bytes.
    let bad = OsStr::from_bytes(b"bad\xff");
    let o = finish(cmd(p).arg(bad).arg("x").spawn().unwrap());
    assert_fails(
        &o,
        &["cannot open 'bad'$'\\377': No such file or directory"],
    );
    fs::write(p.join(bad), b"y").unwrap();
    let o = finish(cmd(p).arg("--json").arg(bad).arg("x").spawn().unwrap());
    assert_ok(&o);
    let j = json(&o);
    assert_eq!(j["src"], serde_json::Value::Null, "{j}");
    assert_eq!(j["src_bytes"], serde_json::json!([98, 97, 100, 255]), "{j}");
    assert_eq!(j["dst"], "x", "{j}");
}

#[test]
fn an_interrupt_among_several_sources_names_what_is_done_and_what_is_unchanged() {
    let (dir, _, _) = big_setup();
    let p = dir.path();
    fs::create_dir(p.join("d")).unwrap();
    fs::write(p.join("a"), b"first").unwrap();
    fs::write(p.join("d/src"), OLD).unwrap();
    let (child, worker) = catch_a_worker(|| {
        let mut c = cmd_via(p, &DEFAULT_SIGNALS);
        c.args(["-j", "2", "a", "src", "d"]);
        c
    });
    kill(Pid::from_raw(child.id() as i32), Signal::SIGINT).unwrap();
    let _ = kill(Pid::from_raw(worker), Signal::SIGCONT);
    let o = finish(child);
    assert_eq!(
        o.status.signal(),
        Some(Signal::SIGINT as i32),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o)
            .contains("interrupted by SIGINT; 'd/src' left unchanged; finished before it: 'd/a'"),
        "{}",
        stderr(&o)
    );
    assert_eq!(fs::read(p.join("d/a")).unwrap(), b"first");
    assert_eq!(fs::read(p.join("d/src")).unwrap(), OLD);
    assert_eq!(entries(&p.join("d")), vec!["a", "src"]);
}

#[test]
fn preserve_xattr_copies_user_attributes_only_when_asked() {
    use xattr::FileExt;
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"data").unwrap();
    let src = File::open(p.join("a")).unwrap();
    if let Err(e) = src.set_xattr("user.pcopy", b"kept") {
        // Every file system the tests run on (ext4, XFS, btrfs, tmpfs) has user
        // xattrs; failing loudly beats passing without testing.
        panic!("cannot set a user xattr in {}: {e}", p.display());
    }
    let o = run_in(p, &["--preserve=xattr", "a", "b"]);
    assert_ok(&o);
    let got = File::open(p.join("b"))
        .unwrap()
        .get_xattr("user.pcopy")
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"kept"[..]));
    let o = run_in(p, &["a", "c"]);
    assert_ok(&o);
    let got = File::open(p.join("c"))
        .unwrap()
        .get_xattr("user.pcopy")
        .unwrap();
    assert_eq!(got, None, "copied without --preserve=xattr");
}

#[test]
fn replacing_keeps_dst_xattrs_and_acl_as_a_rewrite_in_place_would() {
    use xattr::FileExt;
    let dir = tempdir();
    let p = dir.path();
    fs::write(p.join("a"), b"new").unwrap();
    fs::write(p.join("b"), OLD).unwrap();
    let old = File::open(p.join("b")).unwrap();
    old.set_xattr("user.tag", b"dst's")
        .expect("user xattrs on the test directory's file system");
    // An access ACL (the kernel's xattr form): user 65534 may read.
    let mut acl = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in [
        (1u16, 6u16, u32::MAX),
        (2, 4, 65534),
        (4, 4, u32::MAX),
        (0x10, 4, u32::MAX),
        (0x20, 0, u32::MAX),
    ] {
        acl.extend_from_slice(&tag.to_le_bytes());
        acl.extend_from_slice(&perm.to_le_bytes());
        acl.extend_from_slice(&id.to_le_bytes());
    }
    old.set_xattr("system.posix_acl_access", &acl)
        .expect("ACLs on the test directory's file system");
    let o = run_in(p, &["a", "b"]);
    assert_ok(&o);
    let b = File::open(p.join("b")).unwrap();
    assert_eq!(fs::read(p.join("b")).unwrap(), b"new");
    assert_eq!(
        b.get_xattr("user.tag").unwrap().as_deref(),
        Some(&b"dst's"[..])
    );
    assert_eq!(b.get_xattr("system.posix_acl_access").unwrap(), Some(acl));
    // -f replaces it as a new file of the user's: nothing of the old one kept.
    let o = run_in(p, &["-f", "a", "b"]);
    assert_ok(&o);
    let b = File::open(p.join("b")).unwrap();
    assert_eq!(b.get_xattr("user.tag").unwrap(), None);
}
