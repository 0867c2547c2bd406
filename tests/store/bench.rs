//! The measurements (`-- --bench`): writing rows, reading a page.

use crate::helper::msg;
use crate::tempdir;
use libtest_mimic::{Failed, Measurement};
use nix::sys::resource::{getrusage, UsageWho};
use std::time::{Duration, Instant};
use udpchat::store::{HistoryStore, SqliteStore};

/// Opens a database in a new directory; the directory goes with the store.
fn bench_store(size: usize) -> (tempfile::TempDir, SqliteStore) {
    let dir = tempdir();
    let store = SqliteStore::open(&dir.path().join("history.db"), size).unwrap();
    (dir, store)
}

pub(crate) fn bench_write(test_mode: bool) -> Result<Option<Measurement>, Failed> {
    // A round fits in the writer's queue and in its 1 s lag limit.
    let (rounds, rows) = if test_mode { (1, 1_000) } else { (10, 10_000) };
    let (_dir, mut store) = bench_store(10_000);
    let mut per_row = Vec::new();
    let mut handing = Duration::ZERO;
    let cpu_before = cpu_time(UsageWho::RUSAGE_SELF);
    let mut next = 1;
    for _ in 0..rounds {
        let start = Instant::now();
        for _ in 0..rows / 100 {
            let batch = (next..next + 100).map(msg).collect();
            let handed = Instant::now();
            store.append(batch);
            handing += handed.elapsed();
            next += 100;
        }
        store.flush().unwrap();
        per_row.push(start.elapsed().as_nanos() as u64 / rows);
    }
    assert_eq!(store.not_stored(), 0);
    assert_eq!(store.last(1).unwrap()[0].room_seq, next - 1);
    let cpu = cpu_time(UsageWho::RUSAGE_SELF) - cpu_before;
    let m = measurement(&per_row);
    if !test_mode {
        println!(
            "  {} rows/s written (batches of 100, 10,000 kept), {:.0} rows per CPU second; \
             append costs the caller {} ns a row",
            1_000_000_000 / m.avg.max(1),
            (rounds * rows) as f64 / cpu.as_secs_f64(),
            handing.as_nanos() / u128::from(rounds * rows)
        );
    }
    Ok(Some(m))
}

pub(crate) fn bench_page(test_mode: bool) -> Result<Option<Measurement>, Failed> {
    let (_dir, mut store) = bench_store(10_000);
    for i in 0..100 {
        store.append((i * 100 + 1..=i * 100 + 100).map(msg).collect());
    }
    store.flush().unwrap();
    let reads = if test_mode { 10 } else { 2_000 };
    let mut times = Vec::new();
    for (label, seq) in [
        ("recent, from memory", u64::MAX),
        ("old, from the database", 5_000),
    ] {
        let start = Instant::now();
        let cpu_before = cpu_time(UsageWho::RUSAGE_THREAD);
        for _ in 0..reads {
            let page = store.before(seq, 20).unwrap();
            assert_eq!(page.len(), 20);
        }
        let cpu = (cpu_time(UsageWho::RUSAGE_THREAD) - cpu_before) / reads as u32;
        let each = start.elapsed().as_nanos() as u64 / reads;
        if !test_mode {
            println!(
                "  20-row page, {label}: {:.1} µs ({:.1} µs of CPU)",
                each as f64 / 1000.0,
                cpu.as_secs_f64() * 1e6
            );
        }
        times.push(each);
    }
    Ok(Some(measurement(&times[1..])))
}

/// The user and system CPU time of `who` so far.
fn cpu_time(who: UsageWho) -> Duration {
    let u = getrusage(who).unwrap();
    let d =
        |t: nix::sys::time::TimeVal| Duration::new(t.tv_sec() as u64, t.tv_usec() as u32 * 1000);
    d(u.user_time()) + d(u.system_time())
}

/// The mean of `samples` (ns) and their standard deviation (shown as +/-).
fn measurement(samples: &[u64]) -> Measurement {
    let n = samples.len() as f64;
    let avg = samples.iter().sum::<u64>() as f64 / n;
    let var = samples
        .iter()
        .map(|&s| (s as f64 - avg).powi(2))
        .sum::<f64>()
        / n;
    Measurement {
        avg: avg as u64,
        variance: var.sqrt() as u64,
    }
}
