//! pcopy's direct path: data bigger than the kernel's dirty limit is written with
//! `O_DIRECT` on ext4 (a test hook lowers the limit so small files take the path).
//! Elsewhere the same copies go through the page cache and say so.

#[path = "common/pcopy.rs"]
mod pcopy_harness;

use std::fs;
use std::path::Path;
use std::process::Command;

use nix::sys::statfs::{statfs, EXT4_SUPER_MAGIC};
use pcopy_harness::*;

/// The test hook: the data size from which copies are written directly.
const DIRECT_FROM: &str = "PCOPY_TEST_DIRECT_FROM";

fn on_ext4(dir: &Path) -> bool {
    statfs(dir).unwrap().filesystem_type() == EXT4_SUPER_MAGIC
}

/// pcopy with the direct path forced for any size.
fn run_direct(dir: &Path, args: &[&str]) -> std::process::Output {
    finish(
        cmd(dir)
            .env(DIRECT_FROM, "0")
            .args(args)
            .spawn()
            .expect("spawn pcopy"),
    )
}

/// Two workers writing the 256 MiB `src` of [`big_setup`] directly, with the default
/// dispositions of the signals a test sends.
fn big_direct_cmd(dir: &Path) -> Command {
    let mut c = cmd_via(dir, &["env", "--default-signal=INT,TERM,HUP,CHLD"]);
    c.env(DIRECT_FROM, "0").args(["-j", "2", "src", "dst"]);
    c
}

#[test]
fn direct_copies_are_identical_at_any_cut_and_say_so() {
    let dir = tempdir();
    let ext4 = on_ext4(dir.path());
    // Sizes that cut shares inside blocks, a share without a whole block, and
    // shares of several 8 MiB direct writes; the last block partial.
    for (k, len) in [5000, 3 * MIB + 4097, 17 * MIB + 3].into_iter().enumerate() {
        let src = dir.path().join(format!("src{k}"));
        fs::write(&src, data(len, k as u64 + 7)).unwrap();
        for jobs in ["1", "2", "3"] {
            let o = run_direct(
                dir.path(),
                &[
                    "--json",
                    "--verify",
                    "-j",
                    jobs,
                    src.to_str().unwrap(),
                    "out",
                ],
            );
            assert_ok(&o);
            assert!(
                fs::read(dir.path().join("out")).unwrap() == fs::read(&src).unwrap(),
                "{len} bytes, -j {jobs}"
            );
            let j = json(&o);
            assert_eq!(j["direct"], ext4, "{len} bytes, -j {jobs}: {j}");
            if len > MIB {
                assert_eq!(j["workers"], jobs.parse::<u64>().unwrap());
            }
        }
    }
    let o = run_direct(dir.path(), &["-j", "2", "src1", "text"]);
    assert_ok(&o);
    assert_eq!(stdout(&o).contains("; direct I/O)"), ext4, "{}", stdout(&o));
}

#[test]
fn a_file_under_the_dirty_limit_goes_through_the_page_cache() {
    let dir = tempdir();
    fs::write(dir.path().join("src"), data(3 * MIB, 1)).unwrap();
    let o = run_in(dir.path(), &["--json", "-j", "2", "src", "dst"]);
    assert_ok(&o);
    assert_eq!(json(&o)["direct"], false);
    assert!(!stdout(&run_in(dir.path(), &["src", "dst2"])).contains("direct"));
}

#[test]
fn files_with_holes_in_place_and_reflink_never_are_not_written_directly() {
    let dir = tempdir();
    let sparse = dir.path().join("sparse");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(8 * MIB as u64).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, &data(MIB, 2), 4 * MIB as u64).unwrap();
    fs::write(dir.path().join("full"), data(2 * MIB, 3)).unwrap();
    fs::write(dir.path().join("old"), b"old").unwrap();
    for args in [
        &["--json", "-j", "2", "sparse", "a"][..],
        &["--json", "-j", "2", "--reflink=never", "full", "b"],
        &["--json", "-j", "2", "--in-place", "full", "old"],
    ] {
        let o = run_direct(dir.path(), args);
        assert_ok(&o);
        assert_eq!(json(&o)["direct"], false, "{args:?}");
    }
    assert!(fs::read(dir.path().join("a")).unwrap() == fs::read(&sparse).unwrap());
    assert!(
        fs::read(dir.path().join("old")).unwrap() == fs::read(dir.path().join("full")).unwrap()
    );
}

#[test]
fn a_killed_direct_worker_fails_the_copy_cleanly() {
    let (dir, _, _) = big_setup();
    a_killed_worker_fails_cleanly(dir.path(), || big_direct_cmd(dir.path()));
}

#[test]
fn src_shrinking_during_a_direct_copy_fails_cleanly() {
    let (dir, src, _) = big_setup();
    src_shrinking_mid_copy_fails_cleanly(dir.path(), &src, || big_direct_cmd(dir.path()));
}

#[test]
fn a_refused_direct_write_sends_the_rest_through_the_page_cache() {
    let dir = tempdir();
    let len = 40 * MIB + 4097;
    fs::write(dir.path().join("src"), data(len, 9)).unwrap();
    // Each worker's first 8 MiB direct write goes through; the next is refused.
    let o = finish(
        cmd(dir.path())
            .env(DIRECT_FROM, "0")
            .env("PCOPY_TEST_DIRECT_REFUSE_AFTER", "1")
            .args(["--json", "--verify", "-j", "2", "src", "dst"])
            .spawn()
            .expect("spawn pcopy"),
    );
    assert_ok(&o);
    assert!(fs::read(dir.path().join("dst")).unwrap() == fs::read(dir.path().join("src")).unwrap());
    // Every byte counted once: the shares add up to the file.
    let j = json(&o);
    let counted: u64 = j["worker_bytes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b.as_u64().unwrap())
        .sum();
    assert_eq!(counted, len as u64, "{j}");
}
