//! `chat-load`: load generator for `chat-server`, and the kernel ceiling it is
//! measured against. See docs/performance.md.
//!
//! Modules: [`options`] (what a run is asked), [`runs`] (the relay, ceiling,
//! idle runs and the suite), [`member`] (a member's sealed connection),
//! [`join`] (many logins at once), [`rx`] (the receiving threads),
//! [`chat_inbox`] (a chat-server member's datagrams), [`repair`] (NACKs and
//! the seeded discarding), [`tx`] (the sending threads), [`measure`] (CPU,
//! settling, merging), [`latency`] (the histogram), [`report`] (the figures,
//! as a table or JSON), [`server_proc`] (the chat-server started for a run),
//! [`net`] (member sockets and /proc counters), [`text`] (what each message
//! carries), [`irc`] and [`ngircd_proc`] (the same load against ngircd).

mod chat_inbox;
mod irc;
mod join;
mod latency;
mod measure;
mod member;
mod net;
mod ngircd_proc;
mod options;
mod repair;
mod report;
mod runs;
mod rx;
mod server_proc;
mod text;
mod tx;

use clap::builder::RangedU64ValueParser;
use clap::error::ErrorKind;
use clap::{CommandFactory, Parser, ValueEnum};
use options::{Ceiling, Options};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;
use udpchat::error::{os_reason, Error};
use udpchat::stdio;

/// Messages over all senders, at most (the per-message tables hold them all).
const MAX_MESSAGES: u64 = 10_000_000;

/// Joins N members to a chat server (started here unless --server), lets S of
/// them send SAYs, and reports delivery rates, loss, latency and the server's
/// CPU time per delivered message next to the kernel ceiling (the same sockets
/// fed by a bare sendmmsg loop). Every run is bounded in count and time.
#[derive(Parser, Debug)]
#[command(name = "chat-load", version)]
struct Args {
    /// Members, each its own UDP socket (senders included), 2 to 100000.
    #[arg(short = 'n', long, value_name = "N", default_value_t = 100,
          value_parser = RangedU64ValueParser::<usize>::new().range(2..=100_000))]
    members: usize,
    /// Members that send, 1 to 99 and fewer than the members.
    #[arg(short = 's', long, value_name = "S", default_value_t = 1,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=99))]
    senders: usize,
    /// Flood within the acknowledgement window instead of the closed loop.
    #[arg(long)]
    flood: bool,
    /// Closed loop: message k goes once the deliveries reach (k - W) * (N - 1); W at least 1.
    #[arg(short = 'w', long, value_name = "W", default_value_t = 32,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=MAX_MESSAGES))]
    window: u64,
    /// Flood: unacknowledged SAYs per sender, 1 to 1024 (the server's at-most-once window).
    #[arg(long, value_name = "A", default_value_t = 1024,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=udpchat::room::SEQ_WINDOW as u64))]
    ack_window: usize,
    /// Messages over all senders, at most; 1 to 10000000.
    #[arg(short = 'm', long, value_name = "M", default_value_t = 1_000_000,
          value_parser = RangedU64ValueParser::<u64>::new().range(1..=MAX_MESSAGES))]
    messages: u64,
    /// Seconds of sending, at most (above 0, at most 3600).
    #[arg(short = 'd', long, value_name = "SECONDS", default_value = "3",
          value_parser = seconds)]
    duration: Duration,
    /// Messages per second over all senders, at most (above 0; default: as fast as the mode allows).
    #[arg(long, value_name = "R", value_parser = positive_rate)]
    rate: Option<f64>,
    /// Bytes of text per message, 26 to 1000 (26: sender, number and send time).
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = RangedU64ValueParser::<usize>::new().range(text::MIN_LEN as u64..=1000))]
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
    /// Use a running server at HOST:PORT (on this machine) instead of starting
    /// one (start it with --rate 0); every address HOST resolves to is tried.
    #[arg(long, value_name = "HOST:PORT", value_parser = udpchat::net::parse_host_port)]
    server: Option<String>,
    /// The pid of that server, for its CPU time and memory.
    #[arg(long, value_name = "PID", requires = "server")]
    server_pid: Option<u32>,
    /// The chat-server binary to start (default: next to chat-load).
    #[arg(long, value_name = "PATH")]
    server_bin: Option<PathBuf>,
    /// Receiver threads, 1 to 64.
    #[arg(short = 't', long, value_name = "T", default_value_t = 2,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=64))]
    threads: usize,
    /// Receive buffer per member socket, bytes (capped by net.core.rmem_max), 1 to 2147483647.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 20,
          value_parser = RangedU64ValueParser::<usize>::new().range(1..=i32::MAX as u64))]
    rcvbuf: usize,
    /// Idle run: join the members, then only keepalives for SECONDS (above 0, at most 3600).
    #[arg(long, value_name = "SECONDS", value_parser = seconds)]
    idle: Option<Duration>,
    /// Seconds each run waits for the machine to be idle (other processes under
    /// 0.15 cores) before it starts, 0 to 3600; 0: do not wait. A run that
    /// started busy is marked.
    #[arg(long, value_name = "SECONDS", default_value = "30", value_parser = seconds_or_zero)]
    idle_wait: Duration,
    /// Run the whole table of docs/performance.md (N = 10, 100, 500; W=32 and flood; packing off
    /// and on; the latency run; 10,000 idle members).
    #[arg(long)]
    suite: bool,
    /// Also write the reports as JSON to FILE ('-': stdout, instead of the table);
    /// FILE is opened before the runs, so a bad path fails at once.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The servers to load, comma-separated: chat-server (with its kernel
    /// ceiling), ngircd (plain-text TCP IRC, started from
    /// tools/ngircd/ngircd.conf on 127.0.0.1 with the same N, S and texts).
    #[arg(
        long,
        value_name = "LIST",
        value_enum,
        value_delimiter = ',',
        default_value = "chat-server"
    )]
    against: Vec<Target>,
    /// The ngircd binary to start (default: ngircd on PATH, else /usr/sbin/ngircd).
    #[arg(long, value_name = "PATH")]
    ngircd_bin: Option<PathBuf>,
    /// Members discard this share of the datagrams they receive before
    /// opening them (a lossy path), 0 to 50 percent; where the server
    /// serves repair, they NACK what is missing, as chat-client does.
    #[arg(long, value_name = "PERCENT", default_value = "0", value_parser = percent)]
    discard: f64,
    /// The seed of the members' discarding (each member's choice depends on
    /// it and the member's index only).
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
}

/// A server `--against` can load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    ChatServer,
    Ngircd,
}

/// Seconds above 0, at most an hour.
fn seconds(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v <= 3600.0 => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("'{text}' is not in (0, 3600] seconds")),
    }
}

/// Seconds from 0 to an hour.
fn seconds_or_zero(text: &str) -> Result<Duration, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=3600.0).contains(&v) => Ok(Duration::from_secs_f64(v)),
        _ => Err(format!("'{text}' is not in [0, 3600] seconds")),
    }
}

/// A percentage from 0 to 50.
fn percent(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if (0.0..=50.0).contains(&v) => Ok(v),
        _ => Err(format!("'{text}' is not in [0, 50] percent")),
    }
}

/// A rate above 0.
fn positive_rate(text: &str) -> Result<f64, String> {
    match text.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
        _ => Err(format!(
            "'{text}' is not a rate above 0 messages per second"
        )),
    }
}

/// Exits with a usage error (status 2) in clap's words.
fn usage_error(kind: ErrorKind, msg: impl std::fmt::Display) -> ! {
    Args::command().error(kind, msg).exit()
}

/// The server given with --server: the address it answers on, which must be
/// on this machine (the members live on 127.1.0.0/16, or on ::1).
fn server_addr(text: &str) -> Result<SocketAddr, String> {
    let addr = udpchat::net::find_server(text).map_err(|e| e.to_string())?;
    if !addr.ip().is_loopback() {
        usage_error(
            ErrorKind::ValueValidation,
            format!(
                "--server '{text}' is {addr}, not a loopback address (the members live on 127.1.0.0/16 or ::1)"
            ),
        );
    }
    Ok(addr)
}

fn run() -> Result<(), String> {
    let a = Args::parse();
    if a.senders >= a.members {
        usage_error(
            ErrorKind::ValueValidation,
            format!(
                "--senders {} must be below --members {} (1 to 99)",
                a.senders, a.members
            ),
        );
    }
    if !a.against.contains(&Target::ChatServer) && (a.baseline || a.idle.is_some()) {
        usage_error(
            ErrorKind::ArgumentConflict,
            "--baseline and --idle measure the chat server: add chat-server to --against",
        );
    }
    let opts = Options {
        members: a.members,
        senders: a.senders,
        flood: a.flood,
        window: a.window,
        ack_window: a.ack_window,
        messages: a.messages,
        duration: a.duration,
        rate: a.rate,
        text_len: a.text_len,
        packing: !a.no_packing,
        ceiling: if a.baseline {
            Ceiling::Only
        } else if a.no_baseline || a.server.is_some() {
            Ceiling::Skip
        } else {
            Ceiling::Also
        },
        server: a.server.as_deref().map(server_addr).transpose()?,
        server_pid: a.server_pid,
        server_bin: a.server_bin.unwrap_or_else(options::default_server_bin),
        threads: a.threads,
        rcvbuf: a.rcvbuf,
        idle: a.idle,
        idle_wait: a.idle_wait,
        chat_server: a.against.contains(&Target::ChatServer),
        ngircd: a.against.contains(&Target::Ngircd),
        ngircd_bin: a.ngircd_bin.unwrap_or_else(ngircd_proc::default_bin),
        discard: options::DiscardShare {
            percent: a.discard,
            seed: a.seed,
        },
    };
    let json_only = a.json.as_deref() == Some(Path::new("-"));
    // Opened before the runs, so that a bad path fails at once, not minutes later.
    let mut json_file = match &a.json {
        Some(path) if !json_only => Some(JsonFile::open(path)?),
        _ => None,
    };
    let reports = if a.suite {
        runs::suite(&opts, |r| {
            stdio::err_line(&format!("done: {}", report::json_line(r)));
        })?
    } else {
        runs::run(&opts)?
    };
    if json_only {
        stdio::out_line(report::json(&reports).trim_end())
            .map_err(|e| format!("cannot write JSON: {}", os_reason(&e)))?;
    } else {
        stdio::out_line(report::markdown(&reports).trim_end())
            .map_err(|e| format!("cannot write the table: {}", os_reason(&e)))?;
    }
    if let Some(f) = json_file.take() {
        f.write(&report::json(&reports))?;
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
