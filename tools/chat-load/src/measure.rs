//! What a run measures besides the deliveries: CPU snapshots, settling,
//! merging the receivers' counts into a report, and waiting for an idle machine.

use super::latency::{Hist, Latency};
use super::net::{self, Cpu};
use super::options::Options;
use super::report::Report;
use super::rx::{RxOut, Shared};
use super::tx::TxOut;
use std::sync::atomic::Ordering::*;
use std::time::{Duration, Instant};
use udpchat::error::os_reason;

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
pub struct Snap {
    at_ns: u64,
    server: Option<Cpu>,
    rx_ns: u64,
    machine: Option<(u64, u64)>,
}

pub fn snap(shared: &Shared, server_pid: Option<u32>) -> Snap {
    let task = |tid: i32| {
        (tid > 0)
            .then(|| Cpu::read(&format!("self/task/{tid}")))
            .flatten()
            .map_or(0, |c| c.total_ns())
    };
    Snap {
        at_ns: shared.now_ns(),
        server: server_pid.and_then(|p| Cpu::read(&p.to_string())),
        rx_ns: shared.rx_tids.iter().map(|t| task(t.load(Relaxed))).sum(),
        machine: net::machine_ticks(),
    }
}

/// Waits for the deliveries to settle: all `expected` accounted for, or no
/// change for 500 ms (bounded). Returns the last snapshot that saw progress.
pub fn settle(
    shared: &Shared,
    expected: impl Fn() -> Option<u64>,
    server_pid: Option<u32>,
    first: Snap,
    limit: Duration,
) -> Snap {
    let end = Instant::now() + limit;
    let mut last = first;
    let mut last_acc = u64::MAX;
    let mut last_change = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        let acc = shared.accounted.load(Acquire);
        if acc != last_acc {
            last_acc = acc;
            last_change = Instant::now();
            last = snap(shared, server_pid);
        }
        match expected() {
            Some(e) if acc >= e => return snap(shared, server_pid),
            Some(_) if last_change.elapsed() > Duration::from_millis(500) => return last,
            _ => {}
        }
        if Instant::now() > end {
            return last;
        }
    }
}

/// What member `i` expects in a run where every sender's lines reach every
/// other member: all the messages sent but its own (members past the senders
/// sent none).
pub fn all_but_own(tx: &TxOut) -> impl Fn(usize) -> u64 + '_ {
    let total: u64 = tx.sent.iter().map(|&n| n as u64).sum();
    move |i| total - tx.sent.get(i).copied().unwrap_or(0) as u64
}

/// Joins the threads and adds up what they received into `r`.
pub fn merge(
    r: &mut Report,
    handles: Vec<std::thread::JoinHandle<std::io::Result<RxOut>>>,
    tx: &TxOut,
    per: usize,
    fanout: u64,
    expected_of: impl Fn(usize) -> u64,
    final_last: Option<u32>,
) -> Result<(), String> {
    let mut outs = Vec::new();
    for h in handles {
        outs.push(
            h.join()
                .map_err(|_| "a receiver thread panicked".to_string())?
                .map_err(|e| format!("cannot receive: {}", os_reason(&e)))?,
        );
    }
    let cells = outs.first().map_or(0, |o| o.counts.len());
    let mut hist = Hist::new();
    let mut counts = vec![0u32; cells];
    let mut last = vec![0u64; cells];
    for o in &outs {
        hist.merge(&o.hist);
        for c in 0..cells {
            counts[c] += o.counts[c];
            last[c] = last[c].max(o.last_rx[c]);
        }
        for (i, st) in &o.members {
            let mut st = st.clone();
            if final_last.is_some() && *i != 0 {
                st.final_last = final_last;
            }
            let expected = expected_of(*i);
            r.expected += expected;
            r.delivered += st.received;
            r.datagrams += st.datagrams;
            let lost = expected.saturating_sub(st.received);
            let seen = st.gap_missed + st.tail_missed();
            r.lost += lost;
            r.lost_seen += seen.min(lost);
            r.members_miscounted += (seen != lost) as usize;
            r.members_with_loss += (lost > 0) as usize;
            r.out_of_order += st.out_of_order + st.received.saturating_sub(expected);
            r.foreign += st.foreign;
            r.failed_opens += st.failed_opens;
            r.sessions_lost += st.sessions_lost;
            r.discarded += st.discarded;
            r.nacks += st.nacks;
            r.repaired += st.repaired;
        }
    }
    r.latency = Latency::of(&hist);
    let mut last_hist = Hist::new();
    for (s, &n) in tx.sent.iter().enumerate() {
        for k in 0..n.min(per) {
            let c = s * per + k;
            if (counts[c] as u64) < fanout {
                r.incomplete_messages += 1;
            } else {
                last_hist.add(last[c].saturating_sub(tx.sent_at[c]));
            }
        }
    }
    r.latency_last = Latency::of(&last_hist);
    Ok(())
}

/// Fills the CPU figures of `r` from two snapshots.
fn cpu_figures(r: &mut Report, a: &Snap, b: &Snap) {
    if let (Some(x), Some(y)) = (a.server, b.server) {
        let d = y.since(&x);
        r.server_cpu_ns = Some(d.total_ns());
        r.server_user_ns = Some(d.user_ns);
    }
    r.rx_cpu_ns = b.rx_ns.saturating_sub(a.rx_ns);
    if let (Some(x), Some(y)) = (a.machine, b.machine) {
        let secs = (b.at_ns.saturating_sub(a.at_ns)) as f64 / 1e9;
        if secs > 0.0 {
            r.machine_busy_cores = Some((y.0 - x.0) as f64 / net::clock_ticks() / secs);
        }
    }
}

/// Fills in the CPU the rest of the machine used (after `tx_cpu_ns` is known).
fn others(r: &mut Report, a: &Snap, b: &Snap) {
    let secs = (b.at_ns.saturating_sub(a.at_ns)) as f64 / 1e9;
    if let (Some(m), true) = (r.machine_busy_cores, secs > 0.0) {
        let ours = (r.server_cpu_ns.unwrap_or(0) + r.rx_cpu_ns + r.tx_cpu_ns) as f64 / 1e9 / secs;
        r.others_cores = Some((m - ours).max(0.0));
    }
}

/// Waits (up to `limit`) for the machine to be idle: under 0.15 cores busy
/// over 300 ms. Returns false if it never was.
pub fn wait_idle(limit: Duration) -> bool {
    let end = Instant::now() + limit;
    loop {
        let a = net::machine_ticks();
        std::thread::sleep(Duration::from_millis(300));
        if let (Some(x), Some(y)) = (a, net::machine_ticks()) {
            if ((y.0 - x.0) as f64 / net::clock_ticks() / 0.3) < 0.15 {
                return true;
            }
        } else {
            return true;
        }
        if Instant::now() > end {
            return false;
        }
    }
}

/// Fills in the run's span (first send to last receipt) and its CPU figures.
pub fn timing(r: &mut Report, shared: &Shared, txo: &TxOut, before: &Snap, after: &Snap) {
    let last_rx = shared.last_rx_ns.load(Acquire);
    r.seconds = last_rx.saturating_sub(txo.first_ns) as f64 / 1e9;
    cpu_figures(r, before, after);
    r.tx_cpu_ns = txo.cpu_ns;
    others(r, before, after);
}

/// Runs `run` once the machine is idle (waiting up to `idle_wait`); the
/// report says whether it was still busy at the start.
pub fn when_idle(
    opts: &Options,
    run: fn(&Options) -> Result<Report, String>,
) -> Result<Report, String> {
    let idle = opts.idle_wait.is_zero() || wait_idle(opts.idle_wait);
    let mut r = run(opts)?;
    r.started_busy = !idle;
    Ok(r)
}

/// Runs `f` again (twice at most) while its run was disturbed: other
/// processes used more than 0.15 cores, or the machine was busy at the start.
/// Keeps the least disturbed run.
pub fn steady(f: impl Fn() -> Result<Report, String>) -> Result<Report, String> {
    let disturbed = |r: &Report| r.started_busy || r.others_cores.unwrap_or(0.0) > 0.15;
    let mut best = f()?;
    for _ in 0..2 {
        if !disturbed(&best) {
            break;
        }
        let r = f()?;
        if r.others_cores.unwrap_or(0.0) < best.others_cores.unwrap_or(0.0) {
            best = r;
        }
    }
    Ok(best)
}
