//! cp's manners that need two users: run as root, each test makes files owned by
//! root and by `nobody` (65534) and runs pcopy as either (`CommandExt::uid`).
//! Elsewhere each reports `ignored, needs root`.

#[path = "common/pcopy.rs"]
mod pcopy_harness;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pcopy_harness::*;

/// A test: completed, ignored with a reason, or failed.
type Test = fn(&Path) -> Result<(), Failed>;

fn main() {
    let args = Arguments::from_args();
    let tests: [(&str, Test); 6] = [
        (
            "a_dst_you_may_not_write_is_refused_unless_force",
            refused_unless_force,
        ),
        (
            "root_replacing_keeps_dst_mode_and_owner",
            root_keeps_mode_and_owner,
        ),
        (
            "a_user_cannot_keep_another_users_owner",
            user_cannot_keep_owner,
        ),
        (
            "another_users_file_in_a_sticky_directory_is_refused_at_once",
            sticky,
        ),
        ("in_place_keeps_another_users_owner", in_place_keeps_owner),
        (
            "security_capability_never_travels",
            capability_never_travels,
        ),
    ];
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::ignorable_test(name, move || {
                if !nix::unistd::geteuid().is_root() {
                    return Ok(Completion::ignored_with("needs root (to act as two users)"));
                }
                let dir = tempdir();
                fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o777)).unwrap();
                test(dir.path()).map(|()| Completion::Completed)
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

const NOBODY: u32 = 65534;

fn owned(path: &Path, content: &[u8], mode: u32, uid: u32) {
    fs::write(path, content).unwrap();
    std::os::unix::fs::chown(path, Some(uid), Some(uid)).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn refused_unless_force(p: &Path) -> Result<(), Failed> {
    owned(&p.join("a"), b"new", 0o644, NOBODY);
    owned(&p.join("b"), OLD, 0o444, 0);
    let o = finish(unprivileged_cmd(p).args(["a", "b"]).spawn().unwrap());
    assert_fails(&o, &["cannot replace 'b': Permission denied"]);
    assert_eq!(fs::read(p.join("b")).unwrap(), OLD);
    let o = finish(unprivileged_cmd(p).args(["-f", "a", "b"]).spawn().unwrap());
    assert_ok(&o);
    let m = fs::metadata(p.join("b")).unwrap();
    assert_eq!(fs::read(p.join("b")).unwrap(), b"new");
    assert_eq!(m.uid(), NOBODY, "-f replaces it as the user's own");
    Ok(())
}

fn root_keeps_mode_and_owner(p: &Path) -> Result<(), Failed> {
    owned(&p.join("a"), b"new", 0o644, 0);
    owned(&p.join("b"), OLD, 0o4750, NOBODY);
    let o = run_in(p, &["a", "b"]);
    assert_ok(&o);
    let m = fs::metadata(p.join("b")).unwrap();
    assert_eq!(fs::read(p.join("b")).unwrap(), b"new");
    assert_eq!((m.uid(), m.gid()), (NOBODY, NOBODY));
    // Root has CAP_FSETID: the setuid bit stays.
    assert_eq!(m.mode() & 0o7777, 0o4750);
    Ok(())
}

fn user_cannot_keep_owner(p: &Path) -> Result<(), Failed> {
    owned(&p.join("a"), b"new", 0o644, NOBODY);
    owned(&p.join("b"), OLD, 0o666, 0);
    let o = finish(unprivileged_cmd(p).args(["a", "b"]).spawn().unwrap());
    assert_fails(
        &o,
        &["cannot keep the owner of 'b' (root): use -f to replace it as yours, or --in-place"],
    );
    assert_eq!(fs::read(p.join("b")).unwrap(), OLD);
    assert_eq!(entries(p), vec!["a", "b"]);
    Ok(())
}

fn sticky(p: &Path) -> Result<(), Failed> {
    fs::create_dir(p.join("t")).unwrap();
    fs::set_permissions(p.join("t"), fs::Permissions::from_mode(0o1777)).unwrap();
    owned(&p.join("a"), b"new", 0o644, NOBODY);
    owned(&p.join("t/b"), OLD, 0o666, 0);
    let o = finish(
        unprivileged_cmd(p)
            .args(["-f", "a", "t/b"])
            .spawn()
            .unwrap(),
    );
    assert_fails(
        &o,
        &[
            "cannot replace 't/b'",
            "another user's file in a sticky directory",
        ],
    );
    assert_eq!(fs::read(p.join("t/b")).unwrap(), OLD);
    assert_eq!(entries(&p.join("t")), vec!["b"]);
    Ok(())
}

fn in_place_keeps_owner(p: &Path) -> Result<(), Failed> {
    owned(&p.join("a"), b"new", 0o644, NOBODY);
    owned(&p.join("b"), OLD, 0o666, 0);
    let o = finish(
        unprivileged_cmd(p)
            .args(["--in-place", "a", "b"])
            .spawn()
            .unwrap(),
    );
    assert_ok(&o);
    let m = fs::metadata(p.join("b")).unwrap();
    assert_eq!(fs::read(p.join("b")).unwrap(), b"new");
    assert_eq!((m.uid(), m.mode() & 0o7777), (0, 0o666));
    Ok(())
}

fn capability_never_travels(p: &Path) -> Result<(), Failed> {
    use xattr::FileExt;
    owned(&p.join("a"), b"#!/bin/true\n", 0o755, 0);
    // A version-2 file capability: effective, cap_net_bind_service permitted.
    let mut cap = Vec::new();
    for word in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend_from_slice(&word.to_le_bytes());
    }
    let src = fs::File::open(p.join("a")).unwrap();
    src.set_xattr("security.capability", &cap)
        .map_err(|e| format!("cannot set security.capability: {e}"))?;
    src.set_xattr("user.note", b"n").unwrap();
    let o = run_in(p, &["--preserve=all", "a", "b"]);
    assert_ok(&o);
    let b = fs::File::open(p.join("b")).unwrap();
    assert_eq!(b.get_xattr("security.capability").unwrap(), None);
    assert_eq!(
        b.get_xattr("user.note").unwrap().as_deref(),
        Some(&b"n"[..])
    );
    Ok(())
}
