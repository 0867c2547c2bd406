//! `chat-server`: one UDP chat room, with an admin console on stdin.

use clap::Parser;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use udpchat::error::{Error, Result};
use udpchat::gate::Config as GateConfig;
use udpchat::room::Config;
use udpchat::server::{self, Options};
use udpchat::stdio;
use udpchat::store::DbChoice;
use udpchat::trust::ServerKey;

/// One UDP chat room (protocol version 2: sealed sessions). Lines typed on
/// stdin go to every member as admin messages; /who, /kick NAME [REASON],
/// /stats, /shutdown and /help are console commands.
#[derive(Parser, Debug)]
#[command(name = "chat-server", version)]
struct Args {
    /// Address to listen on: ADDRESS:PORT or localhost:PORT (`0.0.0.0:PORT` or
    /// `[::]:PORT` opens it to the network).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8888",
          value_parser = udpchat::net::parse_bind_addr)]
    bind: SocketAddr,
    /// Refuse joins beyond this many members (at least 1).
    #[arg(long, value_name = "N", default_value_t = 10_000,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_members: u32,
    /// In rooms larger than this, joins and leaves are not announced.
    #[arg(long, value_name = "N", default_value_t = 500)]
    announce_limit: usize,
    /// Remove members silent this long: seconds ("30", "0.5") or with a unit ("500ms", "2m").
    #[arg(long, value_name = "DURATION", default_value = "30", value_parser = parse_duration)]
    member_timeout: Duration,
    /// Messages per second per member (burst 10); 0 turns flood control off.
    #[arg(long, value_name = "PER_SECOND", default_value_t = 5.0, value_parser = parse_rate,
          allow_negative_numbers = true)]
    rate: f64,
    /// Refuse joins beyond this many members from one IPv4 address or IPv6 /64 (at least 1).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_per_ip: u32,
    /// Refuse joins beyond this many a minute from one IPv4 address or IPv6 /64 (at least 1).
    #[arg(long, value_name = "N", default_value_t = 64,
          value_parser = clap::value_parser!(u32).range(1..))]
    joins_per_minute: u32,
    /// Send one event per datagram instead of packing a turn's events together (for measurement).
    #[arg(long)]
    no_packing: bool,
    /// Send each datagram on its own way through the kernel, never a member's datagrams of one
    /// turn as one segmented send (UDP GSO) (for measurement).
    #[arg(long)]
    no_gso: bool,
    /// Don't keep events for NACK repair, nor serve NACK and HISTORY (for measurement).
    #[arg(long)]
    no_repair: bool,
    /// The room's history: an SQLite database, created (0600) if missing, or `none` to keep it
    /// in memory only [default: $XDG_STATE_HOME/udpchat/history.db, or ~/.local/state/udpchat/history.db].
    #[arg(long, value_name = "PATH|none")]
    db: Option<String>,
    /// Room messages the history keeps (the oldest go first).
    #[arg(long, value_name = "N", default_value_t = udpchat::store::DEFAULT_HISTORY_SIZE,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=100_000_000))]
    history_size: usize,
    /// Room messages a newcomer is shown.
    #[arg(long, value_name = "N", default_value_t = 20,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(0..=1000))]
    history_on_join: usize,
    /// On SIGINT and SIGTERM tell the members the room is closing (as /shutdown does)
    /// instead of that the server is restarting.
    #[arg(long)]
    close_on_signal: bool,
    /// Sessions are re-keyed after this many seconds (for tests: the default is 120).
    #[arg(long, value_name = "SECONDS", hide = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    rekey_after: Option<u32>,
    /// The server's long-term key, created (mode 0600) if missing, never replaced
    /// [default: $XDG_DATA_HOME/udpchat/server.key, or ~/.local/share/udpchat/server.key].
    #[arg(long, value_name = "FILE")]
    key: Option<PathBuf>,
    /// Print the key's fingerprint (SHA256:…) and exit; never creates a key.
    #[arg(long)]
    fingerprint: bool,
}

/// `--fingerprint`: prints the fingerprint of the key file (`--key` or the
/// default); a missing file is an error and nothing is created.
fn print_fingerprint(key: Option<PathBuf>) -> Result<()> {
    let path = key.map_or_else(ServerKey::default_path, Ok)?;
    let fingerprint = ServerKey::load(&path)?.fingerprint();
    stdio::out_line(&fingerprint.to_string()).map_err(|e| Error::io("write", "stdout", e))
}

/// Seconds, fractional or not, or a number with `ms`, `s`, `m` or `h`.
fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let t = s.trim();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix('m') {
        (n, 60.0)
    } else if let Some(n) = t.strip_suffix('h') {
        (n, 3600.0)
    } else {
        (t, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (try 30, 0.5, 500ms, 2m)"))?;
    let secs = v * scale;
    // WELCOME carries the timeout in milliseconds as a u32.
    if !(0.001..=4_000_000.0).contains(&secs) {
        return Err(format!("'{s}' is out of range (1ms to about 46 days)"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn parse_rate(s: &str) -> std::result::Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!(
            "'{s}' is not a rate (a number of messages per second, 0 for none)"
        )),
    }
}

fn run() -> Result<()> {
    let args = Args::parse();
    if args.fingerprint {
        return print_fingerprint(args.key);
    }
    // Loaded (or created) before the socket opens, so a bad key file stops
    // the server at once.
    let path = args.key.map_or_else(ServerKey::default_path, Ok)?;
    let key = ServerKey::load_or_create(&path)?;
    let db = match args.db.as_deref() {
        Some(arg) => DbChoice::from_arg(arg),
        None => DbChoice::File(udpchat::store::default_db_path()?),
    };
    // Before the store starts its writer thread: the thread inherits the
    // mask, so SIGINT and SIGTERM wait for the loop's signalfd there too.
    server::set_up_signals()?;
    let store = db.open(args.history_size)?;
    let mut gate = GateConfig::default();
    if let Some(s) = args.rekey_after {
        gate.rekey_after_s = s;
    }
    let opts = Options {
        bind: args.bind,
        room: Config {
            max_members: args.max_members as usize,
            announce_limit: args.announce_limit,
            member_timeout: args.member_timeout,
            rate: args.rate,
            packing: !args.no_packing,
            segments: !args.no_gso,
            repair: !args.no_repair,
            max_per_ip: args.max_per_ip as usize,
            joins_per_minute: args.joins_per_minute,
            gate,
            ..Config::default()
        },
        key,
        store,
        history_on_join: args.history_on_join,
        close_on_signal: args.close_on_signal,
    };
    server::run(opts)
}

fn main() -> ExitCode {
    // Before anything opens a descriptor: a closed stdin must not become the socket.
    let reopened = stdio::reopen_closed_std_fds().map_err(|e| Error::io("reopen", "/dev/null", e));
    match reopened.and_then(|()| run()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            stdio::err_line(&format!("chat-server: {e}"));
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("0").is_err());
        assert!(parse_duration("-1").is_err());
        assert!(parse_duration("soon").is_err());
        assert!(parse_rate("-1").is_err());
        assert_eq!(parse_rate("0"), Ok(0.0));
    }
}
