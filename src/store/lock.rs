//! The lock file beside a database (`PATH.lock`): an advisory `flock` held for
//! as long as the store is open, with the holder's pid written inside, so that
//! a second server is refused with a name and a pid while `sqlite3` can still
//! read the database. The kernel drops the lock when its process dies, so the
//! file of a dead server is simply taken over; it is never removed (removing
//! it would race with a server that is opening it).

use super::lock_path;
use crate::error::{Error, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::Path;

/// The held lock; dropping it releases the lock.
pub(super) struct DbLock {
    _lock: Flock<File>,
}

/// Takes the lock of database `db`, or says which process holds it.
pub(super) fn take(db: &Path) -> Result<DbLock> {
    let path = lock_path(db);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| Error::io("open", path.display(), e))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => {
            let pid = format!("{}\n", std::process::id());
            lock.set_len(0)
                .and_then(|()| lock.write_all_at(pid.as_bytes(), 0))
                .map_err(|e| Error::io("write", path.display(), e))?;
            Ok(DbLock { _lock: lock })
        }
        Err((file, Errno::EWOULDBLOCK)) => {
            let mut buf = [0u8; 32];
            let n = file.read_at(&mut buf, 0).unwrap_or(0);
            let holder = std::str::from_utf8(&buf[..n])
                .ok()
                .and_then(|s| s.trim().parse::<u32>().ok())
                .map_or("another process".to_string(), |pid| {
                    format!("chat-server pid {pid}")
                });
            Err(Error::msg(
                "open",
                db.display(),
                format!("in use by {holder}"),
            ))
        }
        Err((_, errno)) => Err(Error::io("lock", path.display(), errno.into())),
    }
}
