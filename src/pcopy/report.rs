//! What pcopy tells the user: the one-line report (text or JSON) and the progress
//! line on a terminal.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use humansize::{format_size, FormatSizeOptions, BINARY};
use serde::Serialize;

use super::quote;

/// Why the data went to as many workers as it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    /// As `-j` asked, or the default for a large file.
    AsAsked,
    /// One worker: the file was small and `-j` not given.
    Small,
    /// One worker: no core was free for a second (load average, CPU affinity)
    /// and `-j` not given.
    Busy,
}

/// The facts of a finished copy.
#[derive(Debug, Clone)]
pub struct Report {
    /// SRC as the user named it.
    pub src: OsString,
    /// DST as the user named it (with SRC's name added for a directory).
    pub dst: OsString,
    /// The length of the new file.
    pub bytes: u64,
    /// Bytes of data actually copied (less than `bytes` for a sparse file).
    pub data_bytes: u64,
    /// Wall time of the whole copy.
    pub seconds: f64,
    /// Data bytes per worker, in worker order (worker 1 is the parent); empty for
    /// a clone.
    pub shares: Vec<u64>,
    /// Why that many workers.
    pub split: Split,
    /// The new file shares SRC's blocks (a reflink): nothing was copied.
    pub cloned: bool,
    /// The workers wrote with `O_DIRECT`, around the page cache.
    pub direct: bool,
    /// `--verify` compared the new file with SRC.
    pub verified: bool,
    /// `--sync` flushed it to the device.
    pub synced: bool,
}

/// `n` in binary units with two decimals, as in `2.00 GiB`; under 1 KiB in bytes,
/// `1 byte`, `17 bytes`.
pub fn size(n: u64) -> String {
    match n {
        1 => "1 byte".into(),
        n if n < 1024 => format!("{n} bytes"),
        n => format_size(n, FormatSizeOptions::from(BINARY).decimal_zeroes(2)),
    }
}

fn duration(seconds: f64) -> String {
    if seconds >= 0.1 {
        format!("{seconds:.2} s")
    } else {
        format!("{:.2} ms", seconds * 1000.0)
    }
}

/// The workers and their shares: `2 workers: 5.00 MiB + 3.00 MiB`, equal ones
/// condensed as `64 workers × 4.69 MiB`.
fn shares_text(shares: &[u64]) -> String {
    let sizes: Vec<String> = shares.iter().map(|&b| size(b)).collect();
    match sizes.as_slice() {
        [one] => format!("1 worker: {one}"),
        [first, rest @ ..] if rest.iter().all(|s| s == first) => {
            format!("{} workers × {first}", sizes.len())
        }
        _ => format!("{} workers: {}", sizes.len(), sizes.join(" + ")),
    }
}

impl Report {
    /// Data bytes per second (0 when the time is too short to measure).
    pub fn rate(&self) -> f64 {
        if self.seconds > 0.0 {
            self.data_bytes as f64 / self.seconds
        } else {
            0.0
        }
    }

    /// `copied 2.00 GiB (2147483648 bytes) 'a' -> 'b' in 0.61 s, 3.28 GiB/s (2
    /// workers × 1.00 GiB)`; a clone has no rate and no workers.
    pub fn text(&self) -> String {
        let verb = if self.cloned { "cloned" } else { "copied" };
        let mut s = format!("{verb} {}", size(self.bytes));
        let mut notes = Vec::new();
        if self.bytes >= 1024 {
            notes.push(format!("{} bytes", self.bytes));
        }
        if self.data_bytes != self.bytes {
            notes.push(format!("{} of data", size(self.data_bytes)));
        }
        if !notes.is_empty() {
            let _ = write!(s, " ({})", notes.join(", "));
        }
        let _ = write!(
            s,
            " {} -> {} in {}",
            quote::quoted(&self.src),
            quote::quoted(&self.dst),
            duration(self.seconds)
        );
        if !self.cloned {
            let _ = write!(
                s,
                ", {}/s ({}",
                size(self.rate() as u64),
                shares_text(&self.shares)
            );
            match self.split {
                Split::Small => {
                    let limit = size(super::AUTO_SPLIT_FROM);
                    let _ = write!(s, "; under {limit} one worker unless -j");
                }
                Split::Busy => s.push_str("; no core free for a second one, see -j"),
                Split::AsAsked => {}
            }
            if self.direct {
                s.push_str("; direct I/O");
            }
            s.push(')');
        }
        if self.verified {
            s.push_str(", verified");
        }
        if self.synced {
            s.push_str(", synced");
        }
        s
    }

    /// The same facts as one JSON object, on one line.
    pub fn json(&self) -> String {
        let line = JsonReport {
            src: self.src.to_str(),
            src_bytes: self.src.to_str().is_none().then(|| self.src.as_bytes()),
            dst: self.dst.to_str(),
            dst_bytes: self.dst.to_str().is_none().then(|| self.dst.as_bytes()),
            bytes: self.bytes,
            data_bytes: self.data_bytes,
            seconds: self.seconds,
            bytes_per_second: (!self.cloned).then(|| self.rate().round()),
            workers: self.shares.len(),
            worker_bytes: &self.shares,
            cloned: self.cloned,
            direct: self.direct,
            verified: self.verified,
            synced: self.synced,
        };
        serde_json::to_string(&line).expect("a report of strings and numbers serializes")
    }
}

/// The `--json` report's fields, in their order.
#[derive(Serialize)]
struct JsonReport<'a> {
    /// `null` when the name is not UTF-8; `src_bytes` then has its bytes.
    src: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    src_bytes: Option<&'a [u8]>,
    dst: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    dst_bytes: Option<&'a [u8]>,
    bytes: u64,
    data_bytes: u64,
    seconds: f64,
    /// `null` for a clone, which copies nothing.
    bytes_per_second: Option<f64>,
    workers: usize,
    worker_bytes: &'a [u64],
    cloned: bool,
    direct: bool,
    verified: bool,
    synced: bool,
}

/// The progress line on stderr: shown only on a terminal, only after the copy has
/// run for half a second, redrawn a few times a second, cleared before the report.
pub struct Progress {
    enabled: bool,
    start: Instant,
    /// When the current phase began: rate and ETA are over the phase.
    phase_start: Instant,
    last: Option<Instant>,
    total: u64,
    label: &'static str,
    drawn: bool,
}

const SHOW_AFTER: Duration = Duration::from_millis(500);
const REDRAW_EVERY: Duration = Duration::from_millis(200);

impl Progress {
    pub fn new(enabled: bool, start: Instant) -> Self {
        Progress {
            enabled,
            start,
            phase_start: start,
            last: None,
            total: 0,
            label: "copied",
            drawn: false,
        }
    }

    /// Starts a phase (copying, verifying) of `total` bytes.
    pub fn phase(&mut self, label: &'static str, total: u64) {
        self.phase_at(label, total, Instant::now());
    }

    fn phase_at(&mut self, label: &'static str, total: u64, now: Instant) {
        self.label = label;
        self.total = total;
        self.phase_start = now;
    }

    /// The line at `now` with `done` bytes of the phase done: its rate and ETA are
    /// over the phase, not the whole run (a verify after a long copy would
    /// otherwise show the copy's time in its rate).
    fn line_at(&self, now: Instant, done: u64) -> String {
        progress_line(
            self.label,
            done,
            self.total,
            now.duration_since(self.phase_start),
        )
    }

    /// Redraws the line if it is time; `done` is asked only then.
    pub fn tick(&mut self, done: impl FnOnce() -> u64) {
        if !self.enabled {
            return;
        }
        let now = Instant::now();
        if now.duration_since(self.start) < SHOW_AFTER {
            return;
        }
        if let Some(last) = self.last {
            if now.duration_since(last) < REDRAW_EVERY {
                return;
            }
        }
        self.last = Some(now);
        let line = self.line_at(now, done());
        let mut err = io::stderr().lock();
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
        self.drawn = true;
    }

    /// Erases the line, if one was drawn.
    pub fn clear(&mut self) {
        if self.drawn {
            let mut err = io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// `copied 1.20 GiB of 2.00 GiB (60%), 2.40 GiB/s, ETA 0.3 s`
pub fn progress_line(label: &str, done: u64, total: u64, elapsed: Duration) -> String {
    let secs = elapsed.as_secs_f64().max(1e-9);
    let rate = done as f64 / secs;
    let pct = if total > 0 {
        (done as f64 * 100.0 / total as f64).min(100.0)
    } else {
        100.0
    };
    let eta = if rate > 0.0 && total > done {
        format!("{:.1} s", (total - done) as f64 / rate)
    } else {
        "-".to_string()
    };
    format!(
        "{label} {} of {} ({pct:.0}%), {}/s, ETA {eta}",
        size(done),
        size(total),
        size(rate as u64)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        Report {
            src: "big.iso".into(),
            dst: "out.iso".into(),
            bytes: 2 << 30,
            data_bytes: 2 << 30,
            seconds: 0.61,
            shares: vec![1 << 30, 1 << 30],
            split: Split::AsAsked,
            cloned: false,
            direct: false,
            verified: false,
            synced: false,
        }
    }

    #[test]
    fn text_matches_the_spec_example() {
        assert_eq!(
            sample().text(),
            "copied 2.00 GiB (2147483648 bytes) 'big.iso' -> 'out.iso' in 0.61 s, 3.28 GiB/s \
             (2 workers × 1.00 GiB)"
        );
    }

    #[test]
    fn sparse_copies_say_how_much_was_data() {
        let mut r = sample();
        r.data_bytes = 1 << 30;
        r.shares = vec![1 << 30];
        assert!(r
            .text()
            .starts_with("copied 2.00 GiB (2147483648 bytes, 1.00 GiB of data) 'big.iso'"));
        assert!(r.text().contains("(1 worker: 1.00 GiB)"));
    }

    #[test]
    fn one_worker_by_default_says_why() {
        let mut r = sample();
        r.shares = vec![1 << 20];
        r.split = Split::Small;
        assert!(r
            .text()
            .ends_with("; under 64.00 MiB one worker unless -j)"));
    }

    #[test]
    fn json_has_the_facts_in_order_and_escapes_names() {
        let mut r = sample();
        r.src = "a\"b\\c\nd\u{1}".into();
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["src"], "a\"b\\c\nd\u{1}");
        assert!(j.get("src_bytes").is_none());
        r.dst = OsString::from(std::ffi::OsStr::from_bytes(b"x\xff"));
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["dst"], serde_json::Value::Null);
        assert_eq!(j["dst_bytes"], serde_json::json!([120, 255]));
        assert!(r.text().contains(" -> 'x'$'\\377' in "), "{}", r.text());
        let j = sample().json();
        assert!(j.starts_with("{\"src\":\"big.iso\",\"dst\":\"out.iso\",\"bytes\":2147483648,"));
        assert!(j.contains("\"worker_bytes\":[1073741824,1073741824]"));
    }

    #[test]
    fn shares_are_condensed_when_equal() {
        assert_eq!(
            shares_text(&[5 << 20, 3 << 20]),
            "2 workers: 5.00 MiB + 3.00 MiB"
        );
        assert_eq!(shares_text(&[4_919_000; 64]), "64 workers × 4.69 MiB");
        assert_eq!(shares_text(&[3]), "1 worker: 3 bytes");
    }

    #[test]
    fn a_clone_has_no_rate_and_no_workers() {
        let mut r = sample();
        r.cloned = true;
        r.shares.clear();
        assert_eq!(
            r.text(),
            "cloned 2.00 GiB (2147483648 bytes) 'big.iso' -> 'out.iso' in 0.61 s"
        );
        let j: serde_json::Value = serde_json::from_str(&r.json()).unwrap();
        assert_eq!(j["cloned"], true);
        assert_eq!(j["bytes_per_second"], serde_json::Value::Null);
    }

    #[test]
    fn progress_rate_is_over_the_phase_not_the_run() {
        let t0 = Instant::now();
        let mut p = Progress::new(true, t0);
        p.phase_at("copied", 8 << 30, t0);
        // A verify that starts after a 10 s copy and does 1 GiB in its first second.
        p.phase_at("verified", 2 << 30, t0 + Duration::from_secs(10));
        let line = p.line_at(t0 + Duration::from_secs(11), 1 << 30);
        assert_eq!(
            line,
            "verified 1.00 GiB of 2.00 GiB (50%), 1.00 GiB/s, ETA 1.0 s"
        );
    }

    #[test]
    fn progress_line_has_done_total_rate_and_eta() {
        let line = progress_line("copied", 1 << 30, 2 << 30, Duration::from_secs(1));
        assert_eq!(
            line,
            "copied 1.00 GiB of 2.00 GiB (50%), 1.00 GiB/s, ETA 1.0 s"
        );
        assert_eq!(size(17), "17 bytes");
        assert_eq!(size(1), "1 byte");
        assert_eq!(size(1536), "1.50 KiB");
    }
}
