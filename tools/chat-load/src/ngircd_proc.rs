//! The ngircd of a baseline run: its configuration (tools/ngircd/ngircd.conf,
//! built into chat-load) filled in with a free port on 127.0.0.1 and a
//! temporary directory, started in the foreground, and stopped again.

use super::server_proc;
use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use udpchat::error::Error;

/// The configuration, with `@PORT@` and `@DIR@` to fill in.
const CONF: &str = include_str!("../../ngircd/ngircd.conf");

/// The operator name and password of the configuration's `[Operator]` block.
pub const OPER: &str = "chatload chatload";

/// The channel the configuration creates.
pub const CHANNEL: &str = "#room";

/// Attempts at a free port (another process may take it between the look and ngircd's bind).
const PORT_TRIES: usize = 3;

/// How long ngircd may take to say it is ready.
const READY_WAIT: Duration = Duration::from_secs(10);

/// The ngircd binary when none is given: on PATH, else Debian's.
pub fn default_bin() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|d| d.join("ngircd"))
            .find(|p| p.is_file())
    });
    on_path.unwrap_or_else(|| PathBuf::from("/usr/sbin/ngircd"))
}

/// ngircd running for a run, logging to a file in its temporary directory;
/// stopped and reaped on drop (the directory is removed after it).
pub struct Ngircd {
    child: Child,
    addr: SocketAddr,
    dir: tempfile::TempDir,
}

impl Ngircd {
    /// Starts `bin` on a free port of 127.0.0.1 and waits until it is ready.
    pub fn start(bin: &Path) -> Result<Ngircd, String> {
        let mut last = String::new();
        for _ in 0..PORT_TRIES {
            match Ngircd::try_start(bin)? {
                Ok(n) => return Ok(n),
                Err(why) => last = why,
            }
        }
        Err(format!("cannot start '{}': {last}", bin.display()))
    }

    /// Ok(Err(why)) when the port was taken meanwhile (worth another try).
    fn try_start(bin: &Path) -> Result<Result<Ngircd, String>, String> {
        let dir = tempfile::Builder::new()
            .prefix("chat-load-ngircd.")
            .tempdir()
            .map_err(|e| Error::io("create", "a temporary directory", e).to_string())?;
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .map_err(|e| Error::io("bind", "127.0.0.1:0", e).to_string())?
            .port();
        let dir_text = dir
            .path()
            .to_str()
            .ok_or("the temporary directory's name is not UTF-8")?;
        let conf = CONF
            .replace("@PORT@", &port.to_string())
            .replace("@DIR@", dir_text);
        let conf_path = dir.path().join("ngircd.conf");
        std::fs::write(&conf_path, conf)
            .map_err(|e| Error::io("write", conf_path.display(), e).to_string())?;
        let log_path = dir.path().join("ngircd.log");
        let log = File::create(&log_path)
            .map_err(|e| Error::io("create", log_path.display(), e).to_string())?;
        let log2 = log
            .try_clone()
            .map_err(|e| Error::io("open", log_path.display(), e).to_string())?;
        let child = Command::new(bin)
            .arg("--nodaemon")
            .arg("--config")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| Error::io("start", bin.display(), e).to_string())?;
        let mut n = Ngircd {
            child,
            addr: SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
            dir,
        };
        Ok(n.wait_ready(&log_path).map(|()| n))
    }

    /// Waits for ngircd's "ready" in its log; Err with its last log line
    /// when it exits or cannot bind.
    fn wait_ready(&mut self, log_path: &Path) -> Result<(), String> {
        let end = Instant::now() + READY_WAIT;
        loop {
            let log = std::fs::read_to_string(log_path).unwrap_or_default();
            let last = || log.lines().last().unwrap_or("it said nothing").to_string();
            if log.contains("Can't bind") || log.contains("Can't listen") {
                return Err(last());
            }
            if log.contains("Now listening on") && log.contains(" ready.") {
                return Ok(());
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("it exited ({status}): {}", last()));
            }
            if Instant::now() > end {
                return Err(format!("not ready after {READY_WAIT:?}: {}", last()));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The last lines of ngircd's log, on one line (for an error message).
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.path().join("ngircd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().map(str::trim).collect();
        lines[lines.len().saturating_sub(3)..].join(" / ")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for Ngircd {
    fn drop(&mut self) {
        server_proc::stop(&mut self.child);
    }
}
