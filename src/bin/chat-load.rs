//! `chat-load`: load generator for `chat-server`, and the kernel ceiling it is
//! measured against. See README.md, "Performance".

use clap::builder::RangedU64ValueParser;
use clap::Parser;
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use udpchat::error::{os_reason, Error};
use udpchat::load::{self, Ceiling, Options};
use udpchat::stdio;

/// Joins N members to a chat server (started here unless --server), lets S of
/// them send SAYs, and reports delivery rates, loss, latency and the server's
/// CPU time per delivered message next to the kernel ceiling (the same sockets
/// fed by a bare sendmmsg loop). Every run is bounded in count and time.
#[derive(Parser, Debug)]
#[command(name = "chat-load", version)]
struct Args {
    /// Members, each its own UDP socket (senders included).
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100)]
    members: usize,
    /// Members that send.
    #[arg(short = 's', long, value_name = "S", default_value_t = 1)]
    senders: usize,
    /// Flood within the acknowledgement window instead of the closed loop.
    #[arg(long)]
    flood: bool,
    /// Closed loop: message k goes once the deliveries reach (k - W) * (N - 1).
    #[arg(short = 'w', long, value_name = "W", default_value_t = 32)]
    window: u64,
    /// Flood: unacknowledged SAYs per sender, at most (the server's at-most-once window).
    #[arg(long, value_name = "A", default_value_t = 1024)]
    ack_window: usize,
    /// Messages over all senders, at most.
    #[arg(short = 'm', long, value_name = "M", default_value_t = 1_000_000)]
    messages: u64,
    /// Seconds of sending, at most.
    #[arg(short = 'd', long, value_name = "SECONDS", default_value_t = 3.0)]
    duration: f64,
    /// Messages per second over all senders, at most (default: as fast as the mode allows).
    #[arg(long, value_name = "R")]
    rate: Option<f64>,
    /// Bytes of text per message, 26 to 1000 (26: sender, number and send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(26..=1000))]
    text_len: usize,
    /// Start the server with --no-packing (one event per datagram).
    #[arg(long)]
    no_packing: bool,
    /// Measure only the kernel ceiling (no server).
    #[arg(long, conflicts_with = "no_baseline")]
    baseline: bool,
    /// Skip the kernel-ceiling run that precedes a server run.
    #[arg(long)]
    no_baseline: bool,
    /// Use a running server at ADDR instead of starting one (start it with --rate 0).
    #[arg(long, value_name = "ADDR")]
    server: Option<SocketAddr>,
    /// The pid of that server, for its CPU time and memory.
    #[arg(long, value_name = "PID", requires = "server")]
    server_pid: Option<u32>,
    /// The chat-server binary to start (default: next to chat-load).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Receiver threads.
    #[arg(short = 't', long, value_name = "T", default_value_t = 2)]
    threads: usize,
    /// Receive buffer per member socket, bytes (capped by net.core.rmem_max).
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20)]
    rcvbuf: usize,
    /// Idle run: join the members, then only keepalives for SECONDS.
    #[arg(long, value_name = "SECONDS")]
    idle: Option<f64>,
    /// Seconds each run waits for the machine to be idle (other processes under
    /// 0.15 cores) before it starts; 0: do not wait. A run that started busy is marked.
    #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
    idle_wait: f64,
    /// Run the README's whole table (N = 10, 100, 500; W=32 and flood; packing off
    /// and on; the latency run; 10,000 idle members).
    #[arg(long)]
    suite: bool,
    /// Also write the reports as JSON to FILE ('-': stdout, instead of the table);
    /// FILE is opened before the runs, so a bad path fails at once.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

fn secs(v: f64, what: &str) -> Result<Duration, String> {
    if v.is_finite() && v > 0.0 && v <= 3600.0 {
        Ok(Duration::from_secs_f64(v))
    } else {
        Err(format!("{what} must be between 0 and 3600 seconds"))
    }
}

fn run() -> Result<(), String> {
    let a = Args::parse();
    if let Some(addr) = a.server {
        if !load::reachable(&addr) {
            return Err(format!(
                "the members live on 127.1.0.0/16: '{addr}' must be an IPv4 loopback address"
            ));
        }
    }
    let opts = Options {
        members: a.members,
        senders: a.senders,
        flood: a.flood,
        window: a.window.max(1),
        ack_window: a.ack_window.clamp(1, 1024),
        messages: a.messages.max(1),
        duration: secs(a.duration, "--duration")?,
        rate: a.rate.filter(|r| *r > 0.0),
        text_len: a.text_len,
        packing: !a.no_packing,
        ceiling: if a.baseline {
            Ceiling::Only
        } else if a.no_baseline || a.server.is_some() {
            Ceiling::Skip
        } else {
            Ceiling::Also
        },
        server: a.server,
        server_pid: a.server_pid,
        server_bin: a.server_bin.unwrap_or_else(load::default_server_bin),
        threads: a.threads.clamp(1, 64),
        rcvbuf: a.rcvbuf,
        idle: a.idle.map(|v| secs(v, "--idle")).transpose()?,
        idle_wait: if a.idle_wait == 0.0 {
            Duration::ZERO
        } else {
            secs(a.idle_wait, "--idle-wait")?
        },
    };
    let json_only = a.json.as_deref() == Some(Path::new("-"));
    // Opened before the runs, so that a bad path fails at once, not minutes later.
    let mut json_file = match &a.json {
        Some(path) if !json_only => Some(JsonFile::open(path)?),
        _ => None,
    };
    let reports = if a.suite {
        load::suite(&opts, |r| {
            stdio::err_line(&format!("done: {}", r.json()));
        })?
    } else {
        load::run(&opts)?
    };
    if !json_only {
        stdio::out_line(load::markdown(&reports).trim_end())
            .map_err(|e| format!("cannot write the table: {}", os_reason(&e)))?;
    }
    if json_only {
        stdio::out_line(load::json(&reports).trim_end())
            .map_err(|e| format!("cannot write JSON: {}", os_reason(&e)))?;
    }
    if let Some(f) = json_file.take() {
        f.write(&load::json(&reports))?;
    }
    Ok(())
}

/// The `--json` file, opened before the runs. Its old contents stay until
/// the reports replace them; a file created here is removed again if the
/// reports never come.
struct JsonFile {
    file: File,
    path: PathBuf,
    created: bool,
}

impl JsonFile {
    fn open(path: &Path) -> Result<JsonFile, String> {
        let existed = path.symlink_metadata().is_ok();
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false) // the old reports stay until the new ones come
            .open(path)
            .map_err(|e| Error::io("open", path.display(), e).to_string())?;
        Ok(JsonFile {
            file,
            path: path.to_path_buf(),
            created: !existed,
        })
    }

    fn write(mut self, json: &str) -> Result<(), String> {
        self.created = false; // from here on the file is the reports' own
                              // A regular file is emptied first; a pipe or a device is written as is.
        let regular = self.file.metadata().is_ok_and(|m| m.is_file());
        let r = (|| {
            if regular {
                self.file.set_len(0)?;
                self.file.seek(SeekFrom::Start(0))?;
            }
            self.file.write_all(json.as_bytes())
        })();
        r.map_err(|e| Error::io("write", self.path.display(), e).to_string())
    }
}

impl Drop for JsonFile {
    fn drop(&mut self) {
        if self.created {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn main() -> ExitCode {
    if let Err(e) = stdio::reopen_closed_std_fds() {
        stdio::err_line(&format!(
            "chat-load: {}",
            Error::io("reopen", "/dev/null", e)
        ));
        return ExitCode::FAILURE;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            stdio::err_line(&format!("chat-load: {e}"));
            ExitCode::FAILURE
        }
    }
}
