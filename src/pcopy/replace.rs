//! cp's manners on replace: what is checked before a byte is copied (permission,
//! name length, immutable files, sticky directories, `-n`), and what the new file
//! keeps before it takes DST's name (DST's mode and owner, or SRC's with `-p`).

use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::errno::Errno;
use nix::fcntl::AtFlags;
use nix::sys::stat::{fchmod, futimens, Mode};
use nix::sys::time::TimeSpec;
use nix::unistd::{faccessat, fchown, fpathconf, AccessFlags, Gid, PathconfVar, Uid, User};

use super::quote;
use super::target::Target;
use super::Options;
use crate::error::{Error, Result};

/// Which of SRC's attributes the copy takes (`-p`, `--preserve=LIST`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Preserve {
    /// Permission bits (and with them, no ACL: the new file has none).
    pub mode: bool,
    /// Owner and group (the group only, for an ordinary user in that group).
    pub ownership: bool,
    /// Access and modification times.
    pub timestamps: bool,
    /// Extended attributes (`user.*`, `trusted.*`…), never `security.*`
    /// (`security.capability` must not travel with a copy).
    pub xattr: bool,
}

/// Who this process is, as the kernel will judge it.
pub struct Creds {
    uid: Uid,
    caps: u64,
    umask: u32,
}

const CAP_CHOWN: u32 = 0;
const CAP_FOWNER: u32 = 3;
const CAP_FSETID: u32 = 4;

impl Creds {
    fn of_this_process() -> Self {
        let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or("")
                .to_string()
        };
        let uid = nix::unistd::geteuid();
        Creds {
            uid,
            // Without /proc: root has every capability, others none.
            caps: u64::from_str_radix(&field("CapEff:"), 16).unwrap_or(if uid.is_root() {
                u64::MAX
            } else {
                0
            }),
            umask: u32::from_str_radix(&field("Umask:"), 8).unwrap_or(0o022),
        }
    }

    fn has(&self, cap: u32) -> bool {
        self.caps & (1 << cap) != 0
    }
}

/// The mode, owner, times and attributes the new file gets before it takes DST's
/// name.
pub struct Finish {
    /// Extended attributes to set, read before the copy: the old DST's ACL and
    /// xattrs (as an in-place rewrite would keep them), then SRC's as `--preserve`
    /// asks. Never `security.*`.
    attrs: Vec<(OsString, Vec<u8>)>,
    mode: Option<Mode>,
    /// `-p` asked for the mode: a file system without modes (fusefat: ENOSYS) is
    /// then an error, not a shrug.
    mode_asked: bool,
    owner: Option<Uid>,
    group: Option<Gid>,
    times: Option<(TimeSpec, TimeSpec)>,
}

fn writable(path: &std::path::Path, what: AccessFlags) -> nix::Result<()> {
    faccessat(nix::fcntl::AT_FDCWD, path, what, AtFlags::AT_EACCESS)
}

/// Whether statx says the file is immutable or append-only (`chattr +i`, `+a`).
fn immutable_or_append_only(path: &std::path::Path) -> Option<&'static str> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    // SAFETY: an all-zero `statx` is a valid value of this plain C struct.
    let mut stx: nix::libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: `c_path` is a NUL-terminated path and `stx` a live, writable statx
    // that the kernel fills; neither is used by anything else during the call.
    let r = unsafe {
        nix::libc::statx(
            nix::libc::AT_FDCWD,
            c_path.as_ptr(),
            0,
            nix::libc::STATX_BASIC_STATS,
            &mut stx,
        )
    };
    if r != 0 {
        return None;
    }
    let attrs = stx.stx_attributes & stx.stx_attributes_mask;
    if attrs & nix::libc::STATX_ATTR_IMMUTABLE as u64 != 0 {
        Some("it is immutable (chattr +i)")
    } else if attrs & nix::libc::STATX_ATTR_APPEND as u64 != 0 {
        Some("it is append-only (chattr +a)")
    } else {
        None
    }
}

/// Everything that could fail at the end, checked at the start.
/// `None`: `-n` and DST exists, nothing to do.
pub fn check_before(target: &Target, opts: &Options) -> Result<Option<Creds>> {
    let shown = target.shown_str();
    if opts.no_clobber && target.old.is_some() {
        return Ok(None);
    }
    // A name the directory cannot hold.
    if let Ok(dir) = File::open(&target.dir) {
        if let Ok(Some(max)) = fpathconf(&dir, PathconfVar::NAME_MAX) {
            if target.name.len() as i64 > max {
                return Err(Error::io("create", &shown, Errno::ENAMETOOLONG.into()));
            }
        }
    }
    let creds = Creds::of_this_process();
    let Some(old) = &target.old else {
        return Ok(Some(creds));
    };
    let real = target.dir.join(&target.name);
    if let Some(why) = immutable_or_append_only(&real) {
        return Err(Error::msg("replace", &shown, why));
    }
    if !opts.force && writable(&real, AccessFlags::W_OK).is_err() {
        return Err(Error::msg(
            "replace",
            &shown,
            "Permission denied (use -f to replace it anyway)",
        ));
    }
    if !opts.in_place {
        if writable(&target.dir, AccessFlags::W_OK | AccessFlags::X_OK).is_err() {
            return Err(Error::plain(format!(
                "cannot replace '{shown}' atomically: directory '{}' is not writable (use \
                 --in-place to rewrite it in place, as cp does)",
                quote::inner(target.dir.as_os_str())
            )));
        }
        let dir_meta = fs::metadata(&target.dir)
            .map_err(|e| Error::io("stat", quote::inner(target.dir.as_os_str()), e))?;
        let sticky = dir_meta.permissions().mode() & 0o1000 != 0;
        if sticky
            && old.uid() != creds.uid.as_raw()
            && dir_meta.uid() != creds.uid.as_raw()
            && !creds.has(CAP_FOWNER)
        {
            return Err(Error::msg(
                "replace",
                &shown,
                "Operation not permitted (another user's file in a sticky directory)",
            ));
        }
    }
    Ok(Some(creds))
}

/// Decides the new file's mode, owner and times; refuses, before any byte is
/// copied, a replace that cannot keep DST's owner or group (unless `-f`).
pub fn finish_for(
    target: &Target,
    src_file: &File,
    src: &fs::Metadata,
    new: &fs::Metadata,
    opts: &Options,
    creds: &Creds,
) -> Result<Finish> {
    let p = opts.preserve;
    let suid_ok = creds.has(CAP_FSETID);
    let strip = |m: u32| if suid_ok { m & 0o7777 } else { m & 0o1777 };
    let mut f = Finish {
        attrs: Vec::new(),
        mode: None,
        mode_asked: p.mode,
        owner: None,
        group: None,
        times: p.timestamps.then(|| {
            (
                TimeSpec::new(src.atime(), src.atime_nsec()),
                TimeSpec::new(src.mtime(), src.mtime_nsec()),
            )
        }),
    };
    if opts.in_place {
        // DST's own inode keeps its owner and mode, unless -p says otherwise.
        if p.mode {
            f.mode = Some(Mode::from_bits_truncate(strip(src.mode())));
        }
        if p.ownership {
            preserve_owner(&mut f, src, new, creds);
        }
        return Ok(f);
    }
    if p.ownership {
        preserve_owner(&mut f, src, new, creds);
    }
    let mode = if p.mode {
        strip(src.mode())
    } else if let (Some(old), false) = (&target.old, opts.force) {
        strip(old.mode())
    } else {
        src.mode() & 0o777 & !creds.umask
    };
    f.mode = Some(Mode::from_bits_truncate(mode));
    if let (Some(_), false) = (&target.old, opts.force) {
        // What cp, rewriting DST in place, would keep: its ACL and its xattrs.
        let real = target.dir.join(&target.name);
        f.attrs = wanted_attrs(
            xattr::list(&real),
            |n| xattr::get(&real, n),
            |name| name == ACL || !name.starts_with("system."),
        );
    }
    {
        use xattr::FileExt;
        let from_src = wanted_attrs(
            src_file.list_xattr(),
            |n| src_file.get_xattr(n),
            |name| {
                if name == ACL {
                    p.mode
                } else {
                    p.xattr && !name.starts_with("system.")
                }
            },
        );
        for (name, value) in from_src {
            f.attrs.retain(|(n, _)| n != &name);
            f.attrs.push((name, value));
        }
    }
    if let (Some(old), false, false) = (&target.old, opts.force, p.ownership) {
        let shown = target.shown_str();
        if old.uid() != new.uid() {
            if !creds.has(CAP_CHOWN) {
                let name = User::from_uid(Uid::from_raw(old.uid()))
                    .ok()
                    .flatten()
                    .map_or_else(|| old.uid().to_string(), |u| u.name);
                return Err(Error::plain(format!(
                    "cannot keep the owner of '{shown}' ({name}): use -f to replace it as \
                     yours, or --in-place"
                )));
            }
            f.owner = Some(Uid::from_raw(old.uid()));
        }
        if old.gid() != new.gid() {
            let member = nix::unistd::getgroups()
                .map(|g| g.contains(&Gid::from_raw(old.gid())))
                .unwrap_or(false)
                || nix::unistd::getegid().as_raw() == old.gid();
            if !creds.has(CAP_CHOWN) && !member {
                return Err(Error::plain(format!(
                    "cannot keep the group of '{shown}' ({}): use -f to replace it as yours, \
                     or --in-place",
                    old.gid()
                )));
            }
            f.group = Some(Gid::from_raw(old.gid()));
        }
    }
    Ok(f)
}

/// The access ACL, which travels with the mode.
const ACL: &str = "system.posix_acl_access";

/// The extended attributes `want` picks from a listing, never `security.*`
/// (`security.capability` must not travel with a copy); none where the file
/// system has none.
fn wanted_attrs(
    names: io::Result<xattr::XAttrs>,
    get: impl Fn(&OsStr) -> io::Result<Option<Vec<u8>>>,
    want: impl Fn(&str) -> bool,
) -> Vec<(OsString, Vec<u8>)> {
    let Ok(names) = names else {
        return Vec::new();
    };
    names
        .filter(|n| {
            let text = n.to_string_lossy();
            !text.starts_with("security.") && want(&text)
        })
        .filter_map(|n| Some((n.clone(), get(&n).ok()??)))
        .collect()
}

/// `-p`'s ownership: SRC's owner where allowed, else at least its group where the
/// caller is in it (as cp does, silently).
fn preserve_owner(f: &mut Finish, src: &fs::Metadata, new: &fs::Metadata, creds: &Creds) {
    if creds.has(CAP_CHOWN) {
        f.owner = Some(Uid::from_raw(src.uid()));
        f.group = Some(Gid::from_raw(src.gid()));
    } else if src.gid() != new.gid()
        && nix::unistd::getgroups().is_ok_and(|g| g.contains(&Gid::from_raw(src.gid())))
    {
        f.group = Some(Gid::from_raw(src.gid()));
    }
}

impl Finish {
    /// Gives `file` the decided owner (first: a chown clears setuid bits), mode and
    /// times.
    pub fn apply(&self, file: &File, shown: &str) -> Result<()> {
        if self.owner.is_some() || self.group.is_some() {
            fchown(file, self.owner, self.group)
                .map_err(|e| Error::io("keep the owner of", shown, io::Error::from(e)))?;
        }
        if let Some(mode) = self.mode {
            match fchmod(file, mode) {
                Err(Errno::ENOSYS | Errno::EOPNOTSUPP) if !self.mode_asked => {}
                r => r.map_err(|e| Error::io("set the mode of", shown, e.into()))?,
            }
        }
        use xattr::FileExt;
        for (name, value) in &self.attrs {
            if let Err(e) = file.set_xattr(name, value) {
                // An ACL or xattr the destination cannot hold: the mode bits still apply.
                if e.raw_os_error() == Some(nix::libc::EOPNOTSUPP) {
                    continue;
                }
                let text = name.to_string_lossy();
                return Err(Error::io(format!("keep attribute {text} on"), shown, e));
            }
        }
        if let Some((atime, mtime)) = &self.times {
            futimens(file, atime, mtime)
                .map_err(|e| Error::io("set the times of", shown, e.into()))?;
        }
        Ok(())
    }
}
