//! The chat-server of a run: started here (and stopped again), or given.

use super::member::KeyPin;
use super::options::Options;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;
use tempfile::TempDir;
use udpchat::error::Error;
use udpchat::process;
use udpchat::trust::ServerKey;

/// A chat-server started for the run: its key in a temporary directory of
/// its own (nothing under $HOME is read or written), stdin piped (for
/// /stats), stderr drained by a thread (so its log never blocks it);
/// terminated on drop.
pub struct ServerProc {
    child: Child,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
    /// Holds the key file; removed on drop, after the server stopped.
    _dir: TempDir,
}

impl ServerProc {
    /// Starts `bin` with `args` and a new key, which is returned too; with
    /// its history in a new database there too, or with none and no repair
    /// (`bare`).
    fn start(bin: &PathBuf, args: &[String], bare: bool) -> Result<(ServerProc, [u8; 32]), String> {
        let dir = tempfile::Builder::new()
            .prefix("chat-load-")
            .tempdir()
            .map_err(|e| Error::io("create", "a temporary directory", e).to_string())?;
        let key_path = dir.path().join("server.key");
        let key = ServerKey::load_or_create(&key_path).map_err(|e| e.to_string())?;
        let mut child = Command::new(bin)
            .args(["--bind", "127.0.0.1:0"])
            .arg("--key")
            .arg(&key_path)
            .args(if bare {
                vec!["--db".into(), "none".into(), "--no-repair".into()]
            } else {
                vec![
                    "--db".into(),
                    dir.path().join("history.db").into_os_string(),
                ]
            })
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::io("start", bin.display(), e).to_string())?;
        let (etx, erx) = channel();
        let stderr = child.stderr.take().expect("piped stderr");
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = etx.send(line); // after the first line nobody listens: fine
            }
        });
        let (otx, orx) = channel();
        let stdout = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if otx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdin = child.stdin.take();
        let mut sp = ServerProc {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            stdin,
            stdout: orx,
            _dir: dir,
        };
        let first = erx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "chat-server printed nothing".to_string())?;
        sp.addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("chat-server said {first:?}"))?;
        Ok((sp, *key.public()))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's counters `names` (as `/stats` names them), in order;
    /// None when it did not answer or lacks one.
    pub fn counters<const K: usize>(&mut self, names: [&str; K]) -> Option<[u64; K]> {
        let stdin = self.stdin.as_mut()?;
        while self.stdout.try_recv().is_ok() {}
        writeln!(stdin, "/stats").ok()?;
        stdin.flush().ok()?;
        let line = self.stdout.recv_timeout(Duration::from_secs(3)).ok()?;
        let mut out = [0u64; K];
        for (v, name) in out.iter_mut().zip(names) {
            *v = line
                .split(", ")
                .find_map(|kv| kv.strip_prefix(name)?.strip_prefix(": "))?
                .parse()
                .ok()?;
        }
        Some(out)
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        stop(&mut self.child);
    }
}

/// Stops a server started for a run: SIGTERM, then SIGKILL after 3 s; reaped.
pub fn stop(child: &mut Child) {
    if let Ok(Some(_)) = child.try_wait() {
        return; // already reaped: its pid may be someone else's now
    }
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
    let _ = process::reap_within(pid, Duration::from_secs(3));
}

/// The server to talk to: started here, or given; and the key its members
/// must be shown (a given server's: the first member's).
pub fn server_for(
    opts: &Options,
    extra: &[&str],
) -> Result<(Option<ServerProc>, SocketAddr, KeyPin), String> {
    if let Some(a) = opts.server {
        return Ok((None, a, KeyPin::default()));
    }
    let mut args: Vec<String> = vec![
        "--rate".into(),
        "0".into(),
        "--max-members".into(),
        opts.members.max(10_000).to_string(),
    ];
    if !opts.packing {
        args.push("--no-packing".into());
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    let (sp, key) = ServerProc::start(&opts.server_bin, &args, opts.bare)?;
    let a = sp.addr;
    Ok((Some(sp), a, KeyPin::known(key)))
}
