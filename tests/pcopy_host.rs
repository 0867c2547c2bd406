//! pcopy tests that need something of the machine they run on (sysfs, a sysctl,
//! root): a harness that can skip at run time (`libtest-mimic`), so a test whose
//! precondition is missing reports `ignored, needs …` instead of passing. No test
//! changes a machine-wide setting to make its precondition.

#[path = "common/pcopy.rs"]
mod pcopy_harness;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pcopy_harness::*;

fn main() {
    let args = Arguments::from_args();
    let trials = vec![
        Trial::ignorable_test(
            "sysfs_files_are_copied_to_eof_whatever_their_size",
            sysfs_files_are_copied_to_eof_whatever_their_size,
        ),
        Trial::ignorable_test(
            "dst_symlink_is_followed_by_the_kernel_so_protected_symlinks_applies",
            dst_symlink_is_followed_by_the_kernel_so_protected_symlinks_applies,
        ),
    ];
    libtest_mimic::run(&args, trials).exit();
}

fn sysfs_files_are_copied_to_eof_whatever_their_size() -> Result<Completion, Failed> {
    // sysfs says 4096 bytes for every attribute; the content is a few bytes.
    let src = Path::new("/sys/class/net/lo/mtu");
    let Ok(want) = fs::read(src) else {
        return Ok(Completion::ignored_with(
            "needs a readable /sys/class/net/lo/mtu (sysfs)",
        ));
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
    Ok(Completion::Completed)
}

fn dst_symlink_is_followed_by_the_kernel_so_protected_symlinks_applies(
) -> Result<Completion, Failed> {
    // fs.protected_symlinks: in a sticky world-writable directory (/tmp), a symlink
    // owned by someone else is not followed. pcopy lets the kernel follow DST's link,
    // so the rule holds for it as for any open(). The sysctl is machine-wide (no
    // namespace has its own), so a machine without it skips this test.
    let protected = fs::read_to_string("/proc/sys/fs/protected_symlinks").unwrap_or_default();
    if protected.trim() != "1" {
        return Ok(Completion::ignored_with("needs fs.protected_symlinks = 1"));
    }
    if !nix::unistd::geteuid().is_root() {
        return Ok(Completion::ignored_with(
            "needs root (to give a symlink to another user)",
        ));
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
    Ok(Completion::Completed)
}
