//! pcopy on real file systems: ext2 (no fallocate), tmpfs, XFS and btrfs (clones),
//! FAT through fusefat and exFAT through exfat-fuse, each made in an image file.
//!
//! Each test mounts its file system in a private mount namespace (`unshare --mount
//! --propagation private` holding it, `nsenter` running commands in it), so a killed
//! test leaves no mount behind; the image takes a loop device from `losetup --find
//! --show`, detached on every way out (drop, panic). The test reads the mounted files
//! through `/proc/PID/root`. A machine without root, loop devices or the mkfs tools
//! reports the test `ignored, needs …`; with `CI=true` such a skip fails the run.

#[path = "common/pcopy.rs"]
mod pcopy_harness;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

use libtest_mimic::{Arguments, Completion, Failed, Trial};
use pcopy_harness::*;

/// One loop device at a time: tests take them in turn.
static LOOP_DEVICES: Mutex<()> = Mutex::new(());

/// A test: completed, ignored with a reason, or failed.
type Test = fn() -> Result<Completion, Failed>;

fn main() {
    let args = Arguments::from_args();
    let tests: [(&str, Test); 10] = [
        (
            "ext2_full_disk_fails_early_or_midway_with_dst_intact",
            ext2_full_disk,
        ),
        ("tmpfs_64mib_says_why_there_is_no_space", tmpfs_no_space),
        ("xfs_clones_by_default_and_copies_with_never", xfs_clones),
        (
            "btrfs_clones_by_default_and_copies_with_never",
            btrfs_clones,
        ),
        ("ext2_refuses_reflink_always", ext2_reflink_always),
        (
            "ext2_immutable_and_append_only_dst_are_refused_at_once",
            ext2_immutable_and_append_only,
        ),
        (
            "copies_are_identical_on_every_file_system",
            identical_everywhere,
        ),
        ("fat_through_fusefat_copies", fat_copies),
        (
            "ext4_copies_past_the_dirty_limit_are_written_directly",
            ext4_direct,
        ),
        ("exfat_through_exfat_fuse_copies", exfat_copies),
    ];
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let trials = tests
        .into_iter()
        .map(|(name, test)| {
            Trial::ignorable_test(name, move || {
                let _one_at_a_time = LOOP_DEVICES.lock().unwrap_or_else(|e| e.into_inner());
                match test()? {
                    Completion::Ignored { reason: Some(why) } if ci => {
                        Err(format!("skipped on CI (CI=true): {why}").into())
                    }
                    other => Ok(other),
                }
            })
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

// ---------------------------------------------------------------------------
// Mounting

/// A file system type and how to make and mount it.
#[derive(Clone, Copy)]
enum Kind {
    Ext2,
    Ext4,
    Xfs,
    Btrfs,
    Fat,
    Exfat,
}

impl Kind {
    fn mkfs(self) -> &'static [&'static str] {
        match self {
            Kind::Ext2 => &["mkfs.ext2", "-q", "-F"],
            Kind::Ext4 => &["mkfs.ext4", "-q", "-F"],
            Kind::Xfs => &["mkfs.xfs", "-q", "-f"],
            Kind::Btrfs => &["mkfs.btrfs", "-q", "-f"],
            Kind::Fat => &["mkfs.vfat", "-F", "32"],
            Kind::Exfat => &["mkfs.exfat"],
        }
    }

    /// The mount command, to which the device and the directory are added.
    fn mount(self) -> &'static [&'static str] {
        match self {
            Kind::Ext2 | Kind::Ext4 | Kind::Xfs | Kind::Btrfs => &["mount"],
            Kind::Fat => &["fusefat", "-o", "rw+"],
            Kind::Exfat => &["mount.exfat-fuse"],
        }
    }
}

/// The programs every mounted test needs, and those of `kind`.
fn missing_tools(kind: Option<Kind>) -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("needs root and loop devices".into());
    }
    let mut tools = vec!["unshare", "nsenter", "losetup", "mount", "umount"];
    if let Some(k) = kind {
        tools.push(k.mkfs()[0]);
        tools.push(k.mount()[0]);
    }
    let missing: Vec<&str> = tools.into_iter().filter(|t| !has_program(t)).collect();
    (!missing.is_empty()).then(|| format!("needs {}", missing.join(", ")))
}

/// Runs `args`, returning its output, or a failure naming it.
fn sh(args: &[&str]) -> Result<Output, String> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", args[0]))?;
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out)
}

/// A file system mounted in a private mount namespace; unmounted, its namespace
/// ended and its loop device detached on drop.
struct Mounted {
    /// Holds the namespace: `unshare … sleep`.
    holder: std::process::Child,
    /// The loop device, when one was taken.
    device: Option<String>,
    /// The mount point, as a path inside the namespace.
    mnt: PathBuf,
    /// The scratch directory on the host (image, mount point, sources).
    scratch: tempfile::TempDir,
}

impl Mounted {
    /// Makes a `mib` MiB image of `kind` and mounts it, or says why it cannot.
    fn new(kind: Kind, mib: u64) -> Result<Result<Self, String>, String> {
        if let Some(why) = missing_tools(Some(kind)) {
            return Ok(Err(why));
        }
        let scratch = tempdir();
        let img = scratch.path().join("fs.img");
        fs::File::create(&img)
            .and_then(|f| f.set_len(mib << 20))
            .map_err(|e| format!("cannot make the image: {e}"))?;
        let mut mkfs: Vec<&str> = kind.mkfs().to_vec();
        let img_s = img.to_str().unwrap().to_string();
        mkfs.push(&img_s);
        sh(&mkfs)?;
        let device = match sh(&["losetup", "--find", "--show", &img_s]) {
            Ok(out) => String::from_utf8_lossy(&out.stdout).trim().to_string(),
            Err(e) => return Ok(Err(format!("needs a free loop device ({e})"))),
        };
        let mnt = scratch.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn();
        let holder = match holder {
            Ok(h) => h,
            Err(e) => {
                let _ = sh(&["losetup", "-d", &device]);
                return Err(format!("cannot run unshare: {e}"));
            }
        };
        let m = Mounted {
            holder,
            device: Some(device.clone()),
            mnt: mnt.clone(),
            scratch,
        };
        m.wait_for_namespace()?;
        let mut mount: Vec<&str> = kind.mount().to_vec();
        let mnt_s = mnt.to_str().unwrap().to_string();
        mount.extend([device.as_str(), mnt_s.as_str()]);
        m.run_in(&mount)?;
        Ok(Ok(m))
    }

    /// A tmpfs of `mib` MiB (no loop device).
    fn tmpfs(mib: u64) -> Result<Result<Self, String>, String> {
        if let Some(why) = missing_tools(None) {
            return Ok(Err(why));
        }
        let scratch = tempdir();
        let mnt = scratch.path().join("mnt");
        fs::create_dir(&mnt).unwrap();
        let holder = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sleep", "600"])
            .stdin(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run unshare: {e}"))?;
        let m = Mounted {
            holder,
            device: None,
            mnt: mnt.clone(),
            scratch,
        };
        m.wait_for_namespace()?;
        let size = format!("size={mib}m");
        m.run_in(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &size,
            "tmpfs",
            mnt.to_str().unwrap(),
        ])?;
        Ok(Ok(m))
    }

    /// Waits (bounded) until `unshare` has exec'd `sleep` in its new namespace.
    fn wait_for_namespace(&self) -> Result<(), String> {
        let pid = self.holder.id();
        let mine = fs::read_link("/proc/self/ns/mnt").map_err(|e| e.to_string())?;
        for _ in 0..500 {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            let ns = fs::read_link(format!("/proc/{pid}/ns/mnt")).ok();
            if comm.trim() == "sleep" && ns.is_some_and(|n| n != mine) {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        Err("unshare did not start its namespace within 5 s".into())
    }

    /// A command run inside the namespace, in the mount point.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("nsenter");
        c.arg("-t")
            .arg(self.holder.id().to_string())
            .arg("-m")
            .arg(format!("--wdns={}", self.mnt.display()))
            .arg("--")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    fn run_in(&self, args: &[&str]) -> Result<Output, String> {
        let out = finish(self.cmd(args).spawn().map_err(|e| e.to_string())?);
        if !out.status.success() {
            return Err(format!(
                "{} failed: {}",
                args.join(" "),
                stderr(&out).trim()
            ));
        }
        Ok(out)
    }

    /// pcopy run inside the namespace, in the mount point.
    fn pcopy(&self, args: &[&str]) -> Output {
        let mut all = vec![PCOPY];
        all.extend(args);
        finish(self.cmd(&all).spawn().expect("spawn nsenter"))
    }

    /// `name` in the mounted file system, as the test process sees it.
    fn path(&self, name: &str) -> PathBuf {
        let inside = self.mnt.join(name);
        PathBuf::from(format!("/proc/{}/root", self.holder.id()))
            .join(inside.strip_prefix("/").unwrap())
    }

    /// A file on the host, outside the mounted file system.
    fn host(&self, name: &str) -> PathBuf {
        self.scratch.path().join(name)
    }

    /// Bytes free in the mounted file system.
    fn free(&self) -> u64 {
        let st = nix::sys::statvfs::statvfs(&self.path("")).unwrap();
        st.blocks_available() as u64 * st.fragment_size() as u64
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        // A FUSE daemon lives in the namespace until its file system is unmounted.
        let _ = self.cmd(&["umount", self.mnt.to_str().unwrap()]).output();
        let _ = self.holder.kill();
        let _ = self.holder.wait();
        if let Some(dev) = &self.device {
            let _ = sh(&["losetup", "-d", dev]);
        }
    }
}

/// Mounts or returns the test's "ignored" completion.
macro_rules! mount_or_skip {
    ($m:expr) => {
        match $m? {
            Ok(m) => m,
            Err(why) => return Ok(Completion::ignored_with(why)),
        }
    };
}

fn entries_of(m: &Mounted) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(m.path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "lost+found")
        .collect();
    v.sort();
    v
}

// ---------------------------------------------------------------------------
// Tests

fn ext2_full_disk() -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::new(Kind::Ext2, 32));
    fs::write(m.path("dst"), OLD).unwrap();
    // Clearly too big: refused before a byte is copied (statvfs; ext2 has no fallocate).
    big_file(&m.host("huge"), 40 * MIB);
    let o = m.pcopy(&[m.host("huge").to_str().unwrap(), "dst"]);
    assert_fails(
        &o,
        &["not enough space to replace 'dst' atomically", "free)"],
    );
    assert_eq!(fs::read(m.path("dst")).unwrap(), OLD);
    assert_eq!(entries_of(&m), vec!["dst"]);
    // Fills the disk on the way (fits statvfs, not the blocks ext2 then needs for
    // its indirect blocks and the copy's pages): found mid-copy, DST intact.
    let free = m.free();
    fs::write(
        m.path("filler"),
        vec![1u8; (free - 3 * MIB as u64) as usize],
    )
    .unwrap();
    big_file(&m.host("big"), 3 * MIB);
    let o = m.pcopy(&["-j", "2", m.host("big").to_str().unwrap(), "dst"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("space"), "{}", stderr(&o));
    assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    assert_eq!(fs::read(m.path("dst")).unwrap(), OLD);
    assert_eq!(entries_of(&m), vec!["dst", "filler"]);
    Ok(Completion::Completed)
}

fn tmpfs_no_space() -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::tmpfs(64));
    // An old DST of 40 MiB leaves 24 MiB: a new 40 MiB copy does not fit beside it.
    big_file(&m.path("dst"), 40 * MIB);
    let old = fs::read(m.path("dst")).unwrap();
    big_file(&m.host("src"), 40 * MIB);
    for jobs in ["1", "2"] {
        let o = m.pcopy(&["-j", jobs, m.host("src").to_str().unwrap(), "dst"]);
        assert_fails(
            &o,
            &[
                "not enough space to replace 'dst' atomically: the new copy needs 40.00 MiB \
                 while the old one (40.00 MiB) exists",
            ],
        );
        assert!(fs::read(m.path("dst")).unwrap() == old, "DST changed");
        assert_eq!(entries_of(&m), vec!["dst"]);
    }
    // Without the old one it fits, by the mapped workers.
    fs::remove_file(m.path("dst")).unwrap();
    let o = m.pcopy(&[
        "-j",
        "2",
        "--verify",
        m.host("src").to_str().unwrap(),
        "dst",
    ]);
    assert_ok(&o);
    assert!(fs::read(m.path("dst")).unwrap() == fs::read(m.host("src")).unwrap());
    Ok(Completion::Completed)
}

/// Clones by default on a file system with reflinks; `--reflink=never` copies.
fn clones_on(kind: Kind, mib: u64) -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::new(kind, mib));
    big_file(&m.path("src"), 64 * MIB);
    let free_before = m.free();
    let o = m.pcopy(&["--json", "--verify", "-j", "4", "src", "dst"]);
    assert_ok(&o);
    let j = json(&o);
    assert_eq!(j["cloned"], true, "{j}");
    assert_eq!(j["verified"], true, "{j}");
    assert_eq!(j["bytes_per_second"], serde_json::Value::Null, "{j}");
    assert!(fs::read(m.path("src")).unwrap() == fs::read(m.path("dst")).unwrap());
    // Shared extents: far less than 64 MiB more used.
    let used = free_before.saturating_sub(m.free());
    assert!(used < 8 * MIB as u64, "a clone used {used} bytes");
    let o = m.pcopy(&["src", "text"]);
    assert_ok(&o);
    assert!(
        stdout(&o).starts_with("cloned 64.00 MiB (67108864 bytes) 'src' -> 'text' in "),
        "{}",
        stdout(&o)
    );
    // Never: the workers copy every byte.
    let o = m.pcopy(&["--json", "--reflink=never", "-j", "2", "src", "copy"]);
    assert_ok(&o);
    let j = json(&o);
    assert_eq!(j["cloned"], false, "{j}");
    assert_eq!(j["workers"], 2, "{j}");
    assert!(fs::read(m.path("src")).unwrap() == fs::read(m.path("copy")).unwrap());
    Ok(Completion::Completed)
}

fn xfs_clones() -> Result<Completion, Failed> {
    clones_on(Kind::Xfs, 400)
}

fn btrfs_clones() -> Result<Completion, Failed> {
    clones_on(Kind::Btrfs, 256)
}

fn ext2_reflink_always() -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::new(Kind::Ext2, 16));
    fs::write(m.path("src"), b"data").unwrap();
    fs::write(m.path("dst"), OLD).unwrap();
    let o = m.pcopy(&["--reflink=always", "src", "dst"]);
    assert_fails(&o, &["cannot clone 'src' to 'dst': "]);
    assert_eq!(fs::read(m.path("dst")).unwrap(), OLD);
    assert_eq!(entries_of(&m), vec!["dst", "src"]);
    Ok(Completion::Completed)
}

fn ext2_immutable_and_append_only() -> Result<Completion, Failed> {
    // chattr works on ext2 (tmpfs and FUSE have no such flags): refused at once.
    let m = mount_or_skip!(Mounted::new(Kind::Ext2, 16));
    fs::write(m.path("src"), b"data").unwrap();
    for (flag, why) in [("+i", "it is immutable"), ("+a", "it is append-only")] {
        fs::write(m.path("dst"), OLD).unwrap();
        m.run_in(&["chattr", flag, "dst"])?;
        let o = m.pcopy(&["src", "dst"]);
        let undo = flag.replace('+', "-");
        m.run_in(&["chattr", &undo, "dst"])?;
        assert_fails(&o, &["cannot replace 'dst': ", why]);
        assert_eq!(fs::read(m.path("dst")).unwrap(), OLD);
        assert_eq!(entries_of(&m), vec!["dst", "src"]);
    }
    Ok(Completion::Completed)
}

/// Copies of several sizes with 1, 2 and 3 workers are byte-identical on `m`.
fn check_identical(m: &Mounted) {
    for (k, len) in [0usize, 5000, 3 * MIB + 7].into_iter().enumerate() {
        let src = m.host(&format!("src{k}"));
        fs::write(&src, data(len, k as u64 + 1)).unwrap();
        for jobs in ["1", "2", "3"] {
            let o = m.pcopy(&["-j", jobs, "--verify", src.to_str().unwrap(), "out"]);
            assert_ok(&o);
            assert!(
                fs::read(m.path("out")).unwrap() == fs::read(&src).unwrap(),
                "{len} bytes, -j {jobs}"
            );
        }
    }
    // Replacing an existing file keeps working.
    assert_eq!(
        fs::metadata(m.path("out")).unwrap().len(),
        3 * MIB as u64 + 7
    );
}

fn identical_everywhere() -> Result<Completion, Failed> {
    for kind in [Kind::Ext2, Kind::Xfs, Kind::Btrfs] {
        let mib = match kind {
            Kind::Xfs => 400,
            Kind::Btrfs => 256,
            _ => 32,
        };
        let m = mount_or_skip!(Mounted::new(kind, mib));
        check_identical(&m);
    }
    let m = mount_or_skip!(Mounted::tmpfs(32));
    check_identical(&m);
    Ok(Completion::Completed)
}

fn fat_copies() -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::new(Kind::Fat, 64));
    check_identical(&m);
    // -n needs a link or a rename that cannot replace: fusefat has neither, and
    // pcopy says so rather than risk replacing a file that appeared meanwhile.
    let src = m.host("small");
    fs::write(&src, b"abc").unwrap();
    let o = m.pcopy(&["-n", src.to_str().unwrap(), "fresh"]);
    assert_fails(
        &o,
        &["cannot copy to 'fresh' with -n: the file system can neither link a file nor rename"],
    );
    assert!(!m.path("fresh").exists());
    Ok(Completion::Completed)
}

fn exfat_copies() -> Result<Completion, Failed> {
    let m = mount_or_skip!(Mounted::new(Kind::Exfat, 64));
    check_identical(&m);
    Ok(Completion::Completed)
}

fn ext4_direct() -> Result<Completion, Failed> {
    if missing_tools(None).is_none() && !has_program("fincore") {
        return Ok(Completion::ignored_with("needs fincore (util-linux)"));
    }
    let m = mount_or_skip!(Mounted::new(Kind::Ext4, 128));
    // The test hook lowers the dirty limit to 0: every copy takes the direct path.
    for (k, len) in [5000usize, 3 * MIB + 4097, 17 * MIB + 3]
        .into_iter()
        .enumerate()
    {
        let src = m.host(&format!("src{k}"));
        fs::write(&src, data(len, k as u64 + 5)).unwrap();
        for jobs in ["1", "2", "3"] {
            let args = [
                "env",
                "PCOPY_TEST_DIRECT_FROM=0",
                PCOPY,
                "--json",
                "-j",
                jobs,
            ];
            let mut all = args.to_vec();
            all.extend([src.to_str().unwrap(), "out"]);
            let o = finish(m.cmd(&all).spawn().expect("spawn nsenter"));
            assert_ok(&o);
            assert_eq!(json(&o)["direct"], true, "{len} bytes, -j {jobs}");
            // Written around the page cache: only the pieces that are not whole
            // pages (a few per worker) went through it.
            let cached = cached_bytes(&m.path("out"));
            if len > MIB {
                assert!(
                    cached <= 64 << 10,
                    "{len} bytes, -j {jobs}: {cached} cached"
                );
            }
            assert!(
                fs::read(m.path("out")).unwrap() == fs::read(&src).unwrap(),
                "{len} bytes, -j {jobs}"
            );
            fs::remove_file(m.path("out")).unwrap();
        }
    }
    Ok(Completion::Completed)
}

fn has_program(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Bytes of `path` in the page cache, as `fincore` counts them.
fn cached_bytes(path: &Path) -> u64 {
    let o = Command::new("fincore")
        .args(["--bytes", "--noheadings", "--output", "RES"])
        .arg(path)
        .output()
        .expect("run fincore");
    assert!(
        o.status.success(),
        "fincore: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout)
        .trim()
        .parse()
        .expect("fincore prints a number")
}
