//! `chat-load`: a load generator for the chat server, and the kernel ceiling
//! it is measured against.
//!
//! A run joins N members (each its own UDP socket on its own loopback
//! address, five to an address), learns each member's event number with a
//! PING, lets S of them send SAYs — closed loop on deliveries ("W=32") or
//! flooding within the acknowledgement window — for a bounded count and time,
//! then PINGs every member again so that events lost at the end show up too.
//! Receiver threads (each with its own share of the sockets and one mio poll)
//! count events, datagrams and gaps, and the latency from the send time
//! written in each text. The server's CPU time comes from /proc before and
//! after. The ceiling run feeds the same N sockets from a bare `sendmmsg`
//! loop with no server.
//!
//! Threads are fine here: this tool never forks.

mod net;
pub mod report;
mod rx;
mod text;
mod tx;

use crate::error::{os_reason, Error};
use net::Cpu;
pub use report::{Kind, Latency, Report};
use rx::{phase, RxMember, RxOut, Shared};
use std::io::{BufRead, BufReader, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::mpsc::{channel, Receiver};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tx::{Plan, TxOut};

/// Whether a relay run also measures the kernel ceiling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ceiling {
    /// Only the ceiling, no server.
    Only,
    /// The ceiling first, then the server (the default).
    Also,
    /// Only the server.
    Skip,
}

/// Everything a run needs to know.
#[derive(Debug, Clone)]
pub struct Options {
    pub members: usize,
    pub senders: usize,
    /// Flood within the acknowledgement window instead of the closed loop.
    pub flood: bool,
    /// The closed loop's window W (messages).
    pub window: u64,
    /// Unacknowledged SAYs per sender, at most, when flooding.
    pub ack_window: usize,
    /// Messages over all senders, at most.
    pub messages: u64,
    /// Sending stops after this long.
    pub duration: Duration,
    /// Messages per second over all senders, at most.
    pub rate: Option<f64>,
    /// Bytes of each message's text.
    pub text_len: usize,
    /// Run the server with packing (else `--no-packing`).
    pub packing: bool,
    pub ceiling: Ceiling,
    /// A server already running (else one is started).
    pub server: Option<SocketAddr>,
    /// Its pid, for its CPU time and memory.
    pub server_pid: Option<u32>,
    /// The chat-server binary to start.
    pub server_bin: PathBuf,
    /// Receiver threads.
    pub threads: usize,
    /// Receive buffer of each member socket, bytes.
    pub rcvbuf: usize,
    /// Idle run: join, then only keepalives for this long.
    pub idle: Option<Duration>,
    /// How long each run waits for the machine to be idle first (zero: not at all).
    pub idle_wait: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            members: 100,
            senders: 1,
            flood: false,
            window: 32,
            ack_window: crate::room::SEQ_WINDOW as usize,
            messages: 1_000_000,
            duration: Duration::from_secs(3),
            rate: None,
            text_len: 64,
            packing: true,
            ceiling: Ceiling::Also,
            server: None,
            server_pid: None,
            server_bin: default_server_bin(),
            threads: 2,
            rcvbuf: 1 << 20,
            idle: None,
            idle_wait: Duration::from_secs(30),
        }
    }
}

/// `chat-server` next to the running executable.
pub fn default_server_bin() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|p| Some(p.parent()?.join("chat-server")))
        .unwrap_or_else(|| PathBuf::from("chat-server"))
}

impl Options {
    fn mode(&self) -> String {
        let m = if self.flood {
            "flood".to_string()
        } else {
            format!("W={}", self.window)
        };
        let m = match self.rate {
            Some(r) => format!("{m} at {} msg/s", report::si(r)),
            None => m,
        };
        if self.threads == 2 {
            m
        } else {
            format!(
                "{m}, {} rx thread{}",
                self.threads,
                if self.threads == 1 { "" } else { "s" }
            )
        }
    }

    fn plan(&self) -> Plan {
        Plan {
            fanout: self.members.saturating_sub(1) as u64,
            total: self.messages,
            duration: self.duration,
            window: (!self.flood).then_some(self.window),
            ack_window: self.ack_window,
            rate: self.rate,
            text_len: self.text_len.max(text::MIN_LEN),
        }
    }
}

/// Runs what the options say; returns the reports (the ceiling first).
pub fn run(opts: &Options) -> Result<Vec<Report>, String> {
    net::raise_fd_limit();
    if opts.members < 2 {
        return Err("at least 2 members are needed".into());
    }
    if let Some(d) = opts.idle {
        return Ok(vec![idle_run(opts, d)?]);
    }
    if opts.senders == 0 || opts.senders >= opts.members || opts.senders > 99 {
        return Err("senders must be at least 1, below the member count and at most 99".into());
    }
    let mut out = Vec::new();
    let mut ceiling = None;
    if opts.ceiling != Ceiling::Skip {
        let b = baseline_run(opts)?;
        ceiling = Some(b.dgrams_per_s());
        out.push(b);
    }
    if opts.ceiling != Ceiling::Only {
        let mut r = relay_run(opts)?;
        r.ceiling_dgrams_per_s = ceiling;
        out.push(r);
    }
    Ok(out)
}

/// A chat-server started for the run: stdin piped (for /stats), stderr
/// drained by a thread (so its log never blocks it); terminated on drop.
struct ServerProc {
    child: Child,
    addr: SocketAddr,
    stdin: Option<ChildStdin>,
    stdout: Receiver<String>,
}

impl ServerProc {
    fn start(bin: &PathBuf, args: &[String]) -> Result<ServerProc, String> {
        let mut child = Command::new(bin)
            .args(["--bind", "127.0.0.1:0"])
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
        };
        let first = erx
            .recv_timeout(Duration::from_secs(10))
            .map_err(|_| "chat-server printed nothing".to_string())?;
        sp.addr = first
            .strip_prefix("listening on ")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| format!("chat-server said {first:?}"))?;
        Ok(sp)
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's count of datagrams it could not send, from `/stats`.
    fn dropped_sends(&mut self) -> Option<u64> {
        let stdin = self.stdin.as_mut()?;
        while self.stdout.try_recv().is_ok() {}
        writeln!(stdin, "/stats").ok()?;
        stdin.flush().ok()?;
        let line = self.stdout.recv_timeout(Duration::from_secs(3)).ok()?;
        line.split(", ")
            .find_map(|kv| kv.strip_prefix("dropped sends: "))?
            .parse()
            .ok()
    }
}

impl Drop for ServerProc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
        let end = Instant::now() + Duration::from_secs(3);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The server to talk to: started here, or given.
fn server_for(opts: &Options, extra: &[&str]) -> Result<(Option<ServerProc>, SocketAddr), String> {
    if let Some(a) = opts.server {
        return Ok((None, a));
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
    let sp = ServerProc::start(&opts.server_bin, &args)?;
    let a = sp.addr;
    Ok((Some(sp), a))
}

/// CPU counters at one moment.
#[derive(Debug, Clone, Copy, Default)]
struct Snap {
    at_ns: u64,
    server: Option<Cpu>,
    rx_ns: u64,
    machine: Option<(u64, u64)>,
}

fn snap(shared: &Shared, server_pid: Option<u32>) -> Snap {
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

/// Sends a PING for every member whose flag is not set yet, in chunks (so the
/// server's receive buffer is not overrun), until every flag is set or `limit`.
fn ping_all(
    socks: &[Arc<UdpSocket>],
    tokens: &[u64],
    flags: &[AtomicBool],
    limit: Duration,
) -> usize {
    let end = Instant::now() + limit;
    let mut wire = Vec::with_capacity(16);
    loop {
        let todo: Vec<usize> = (0..socks.len())
            .filter(|&i| !flags[i].load(Acquire))
            .collect();
        if todo.is_empty() || Instant::now() > end {
            return todo.len();
        }
        for (n, &i) in todo.iter().enumerate() {
            wire.clear();
            crate::protocol::ClientMsg::Ping { token: tokens[i] }.encode(&mut wire);
            let _ = socks[i].send(&wire);
            if n % 256 == 255 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        let wait_end = Instant::now() + Duration::from_millis(300);
        while Instant::now() < wait_end && todo.iter().any(|&i| !flags[i].load(Acquire)) {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Member sockets for `n` members, connected to `peer`.
fn sockets(n: usize, rcvbuf: usize, peer: SocketAddr) -> Result<Vec<Arc<UdpSocket>>, String> {
    (0..n)
        .map(|i| {
            net::member_socket(i, rcvbuf, peer)
                .map(Arc::new)
                .map_err(|e| {
                    format!(
                        "cannot open the socket of member {i} on {}: {}",
                        net::member_ip(i),
                        os_reason(&e)
                    )
                })
        })
        .collect()
}

/// Starts the receiver threads, members spread over them round-robin.
fn start_receivers(
    socks: &[Arc<UdpSocket>],
    senders: usize,
    shared: &Arc<Shared>,
    threads: usize,
    synced: bool,
) -> Vec<std::thread::JoinHandle<std::io::Result<RxOut>>> {
    let mut parts: Vec<Vec<RxMember>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, s) in socks.iter().enumerate() {
        parts[i % threads].push(RxMember {
            index: i,
            sock: s.clone(),
            sender: (i < senders).then_some(i),
            st: rx::MemberStats {
                synced,
                next_seq: 1,
                ..Default::default()
            },
        });
    }
    parts
        .into_iter()
        .enumerate()
        .map(|(t, p)| rx::spawn(t, p, shared.clone(), senders.max(1)))
        .collect()
}

/// Waits for the deliveries to settle: all `expected` accounted for, or no
/// change for 500 ms (bounded). Returns the last snapshot that saw progress.
fn settle(
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

/// Joins the threads and adds up what they received into `r`.
fn merge(
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
    let mut hist = report::Hist::new();
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
        }
    }
    r.latency = Latency::of(&hist);
    let mut last_hist = report::Hist::new();
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

/// Runs `run` once the machine is idle (waiting up to `idle_wait`); the
/// report says whether it was still busy at the start.
fn when_idle(
    opts: &Options,
    run: fn(&Options) -> Result<Report, String>,
) -> Result<Report, String> {
    let idle = opts.idle_wait.is_zero() || wait_idle(opts.idle_wait);
    let mut r = run(opts)?;
    r.started_busy = !idle;
    Ok(r)
}

/// Members joined to the server: their sockets and tokens, and how long the
/// joins took.
struct Joined {
    socks: Vec<Arc<UdpSocket>>,
    tokens: Vec<u64>,
    join_secs: f64,
}

/// Opens the sockets of `n` members of the server at `addr` and joins them.
fn join_members(n: usize, rcvbuf: usize, addr: SocketAddr) -> Result<Joined, String> {
    let socks = sockets(n, rcvbuf, addr)?;
    let t = Instant::now();
    let tokens = net::join_all(&socks, addr, 4, Duration::from_secs(60))?;
    Ok(Joined {
        socks,
        tokens,
        join_secs: t.elapsed().as_secs_f64(),
    })
}

/// Runs `send` on a thread of its own (the receivers wake it through
/// `shared.sender`), waits for the deliveries of what it sent to settle
/// (`settle`, from `before`, bounded by `limit`), and returns what it did
/// with the snapshot after.
fn send_and_settle(
    shared: &Arc<Shared>,
    plan: &Plan,
    server_pid: Option<u32>,
    before: Snap,
    limit: Duration,
    send: impl FnOnce(&Shared, &Plan) -> TxOut + Send + 'static,
) -> Result<(TxOut, Snap), String> {
    let done = Arc::new(std::sync::Mutex::new(None::<u64>));
    let sender = {
        let (shared, done) = (shared.clone(), done.clone());
        let plan = plan.clone();
        std::thread::spawn(move || {
            let _ = shared.sender.set(std::thread::current());
            let out = send(&shared, &plan);
            let total: usize = out.sent.iter().sum();
            *done.lock().unwrap() = Some(total as u64 * plan.fanout);
            out
        })
    };
    let after = settle(shared, || *done.lock().unwrap(), server_pid, before, limit);
    let txo = sender
        .join()
        .map_err(|_| "the sender panicked".to_string())?;
    Ok((txo, after))
}

/// Fills in the run's span (first send to last receipt) and its CPU figures.
fn timing(r: &mut Report, shared: &Shared, txo: &TxOut, before: &Snap, after: &Snap) {
    let last_rx = shared.last_rx_ns.load(Acquire);
    r.seconds = last_rx.saturating_sub(txo.first_ns) as f64 / 1e9;
    cpu_figures(r, before, after);
    r.tx_cpu_ns = txo.cpu_ns;
    others(r, before, after);
}

/// The chat server relaying SAYs to N members.
fn relay_run(opts: &Options) -> Result<Report, String> {
    when_idle(opts, relay_run_now)
}

fn relay_run_now(opts: &Options) -> Result<Report, String> {
    let (mut server, addr) = server_for(opts, &["--member-timeout", "120"])?;
    let server_pid = server.as_ref().map(ServerProc::pid).or(opts.server_pid);
    let n = opts.members;
    let Joined {
        socks,
        tokens,
        join_secs,
    } = join_members(n, opts.rcvbuf, addr)?;
    let s = opts.senders;
    let per = (opts.messages as usize).div_ceil(s).max(1);
    let shared = Arc::new(Shared::new(n, s, per, opts.threads.max(1)));
    let handles = start_receivers(&socks, s, &shared, opts.threads.max(1), false);
    shared.phase.store(phase::SYNC, Release);
    let unsynced = ping_all(&socks, &tokens, &shared.synced, Duration::from_secs(10));
    if unsynced > 0 {
        shared.phase.store(phase::STOP, Release);
        return Err(format!(
            "{} got no answer to PING",
            net::count(unsynced, "member", "members")
        ));
    }
    let plan = opts.plan();
    let before = snap(&shared, server_pid);
    shared.phase.store(phase::RUN, Release);
    let senders: Vec<_> = (0..s).map(|i| (socks[i].clone(), tokens[i])).collect();
    let (txo, after) = send_and_settle(
        &shared,
        &plan,
        server_pid,
        before,
        opts.duration + Duration::from_secs(20),
        move |shared, plan| tx::server_senders(senders, shared, plan),
    )?;
    shared.phase.store(phase::FINAL, Release);
    ping_all(&socks, &tokens, &shared.finals, Duration::from_secs(10));
    let dropped = server.as_mut().and_then(|s| s.dropped_sends());
    shared.phase.store(phase::STOP, Release);

    let mut r = Report {
        kind: Some(Kind::Server),
        members: n,
        senders: s,
        mode: opts.mode(),
        packing: Some(opts.packing),
        messages: txo.sent.iter().sum::<usize>() as u64,
        retransmits: txo.retransmits,
        stalls: txo.stalls,
        server_dropped_sends: dropped,
        join_seconds: Some(join_secs),
        ..Default::default()
    };
    let total = r.messages;
    let sent = txo.sent.clone();
    merge(
        &mut r,
        handles,
        &txo,
        per,
        plan.fanout,
        |i| total - sent.get(i).copied().unwrap_or(0) as u64,
        None,
    )?;
    timing(&mut r, &shared, &txo, &before, &after);
    leave_all(&socks, &tokens, server.is_none());
    drop(server);
    Ok(r)
}

/// Says goodbye for every member when the server is not ours (ours is stopped).
fn leave_all(socks: &[Arc<UdpSocket>], tokens: &[u64], external: bool) {
    if !external {
        return;
    }
    let mut wire = Vec::with_capacity(16);
    for (n, (s, &t)) in socks.iter().zip(tokens).enumerate() {
        wire.clear();
        crate::protocol::ClientMsg::Leave { token: t }.encode(&mut wire);
        let _ = s.send(&wire);
        if n % 256 == 255 {
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

/// The kernel ceiling: the same N sockets fed by a bare `sendmmsg` loop.
fn baseline_run(opts: &Options) -> Result<Report, String> {
    when_idle(opts, baseline_run_now)
}

fn baseline_run_now(opts: &Options) -> Result<Report, String> {
    // Configured exactly as the server's socket (buffers, don't-fragment), so
    // the ceiling and the server take the same path through the kernel.
    let src = crate::server::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| e.to_string())?;
    let src_addr = src.local_addr().map_err(|e| e.to_string())?;
    let n = opts.members;
    let socks = sockets(n, opts.rcvbuf, src_addr)?;
    let dests: Vec<SocketAddrV4> = socks[1..]
        .iter()
        .filter_map(|s| match s.local_addr() {
            Ok(SocketAddr::V4(a)) => Some(a),
            _ => None,
        })
        .collect();
    let per = opts.messages as usize;
    let shared = Arc::new(Shared::new(n, 1, per, opts.threads.max(1)));
    let handles = start_receivers(&socks, 0, &shared, opts.threads.max(1), true);
    let plan = opts.plan();
    shared.phase.store(phase::RUN, Release);
    std::thread::sleep(Duration::from_millis(20)); // the receivers are polling
    let before = snap(&shared, None);
    let (txo, after) = send_and_settle(
        &shared,
        &plan,
        None,
        before,
        opts.duration + Duration::from_secs(20),
        move |shared, plan| tx::baseline_sender(&src, &dests, shared, plan),
    )?;
    shared.phase.store(phase::STOP, Release);
    let sent = txo.sent[0] as u64;
    let mut r = Report {
        kind: Some(Kind::Baseline),
        members: n,
        senders: 1,
        mode: opts.mode(),
        packing: None,
        messages: sent,
        stalls: txo.stalls,
        ..Default::default()
    };
    merge(
        &mut r,
        handles,
        &txo,
        per,
        plan.fanout,
        |i| if i == 0 { 0 } else { sent },
        Some(sent as u32),
    )?;
    timing(&mut r, &shared, &txo, &before, &after);
    Ok(r)
}

/// N members joined and idle: how long the joins take, the server's memory,
/// and its CPU while every member sends a keepalive every third of the member
/// timeout (the protocol's cadence), spread evenly.
fn idle_run(opts: &Options, idle: Duration) -> Result<Report, String> {
    const TIMEOUT_SECS: u64 = 30;
    let timeout = TIMEOUT_SECS.to_string();
    let (server, addr) = server_for(opts, &["--member-timeout", &timeout])?;
    let server_pid = server.as_ref().map(ServerProc::pid).or(opts.server_pid);
    let n = opts.members;
    let Joined {
        socks,
        tokens,
        join_secs,
    } = join_members(n, opts.rcvbuf, addr)?;
    let shared = Arc::new(Shared::new(n, 1, 1, opts.threads.max(1)));
    let handles = start_receivers(&socks, 0, &shared, opts.threads.max(1), false);
    std::thread::sleep(Duration::from_millis(200)); // the join traffic settles
    let rss_joined = server_pid.and_then(net::rss_kib);
    let cpu_before = server_pid.and_then(|p| Cpu::read(&p.to_string()));
    let start = Instant::now();
    let pongs_before = shared.pongs.load(Acquire);
    // Every member once per TIMEOUT/3, in 10 ms ticks.
    let per_sec = n as f64 / (TIMEOUT_SECS as f64 / 3.0);
    let mut sent = 0u64;
    let mut wire = Vec::with_capacity(16);
    while start.elapsed() < idle {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        while sent < due {
            let i = (sent % n as u64) as usize;
            wire.clear();
            crate::protocol::ClientMsg::Ping { token: tokens[i] }.encode(&mut wire);
            let _ = socks[i].send(&wire);
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = start.elapsed();
    let cpu_after = server_pid.and_then(|p| Cpu::read(&p.to_string()));
    std::thread::sleep(Duration::from_millis(100));
    let pongs = shared.pongs.load(Acquire) - pongs_before;
    let rss_end = server_pid.and_then(net::rss_kib);
    shared.phase.store(phase::STOP, Release);
    for h in handles {
        let _ = h.join();
    }
    let mut r = Report {
        kind: Some(Kind::Idle),
        members: n,
        mode: "idle".into(),
        packing: Some(opts.packing),
        seconds: wall.as_secs_f64(),
        join_seconds: Some(join_secs),
        server_rss_kib: rss_joined.max(rss_end),
        keepalives: sent,
        delivered: pongs,
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let d = b.since(&a);
        r.server_cpu_ns = Some(d.total_ns());
        r.server_user_ns = Some(d.user_ns);
        r.idle_cpu_percent = Some(100.0 * d.total_ns() as f64 / wall.as_nanos() as f64);
    }
    leave_all(&socks, &tokens, server.is_none());
    drop(server);
    Ok(r)
}

/// Runs `f` again (twice at most) while its run was disturbed: other
/// processes used more than 0.15 cores, or the machine was busy at the start.
/// Keeps the least disturbed run.
fn steady(f: impl Fn() -> Result<Report, String>) -> Result<Report, String> {
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

/// The README's table: for N = 10, 100, 500 the ceiling, then the server
/// with packing off and on, closed loop (S = 1) and flood (S = 4); the
/// latency at half the N = 100 closed-loop rate; and 10,000 idle members.
/// A run disturbed by other processes is repeated (see `steady`).
/// `progress` is told each report as it comes.
pub fn suite(base: &Options, mut progress: impl FnMut(&Report)) -> Result<Vec<Report>, String> {
    net::raise_fd_limit();
    let mut out = Vec::new();
    let mut push = |r: Report, out: &mut Vec<Report>| {
        progress(&r);
        out.push(r);
    };
    // Half the closed-loop message rate at N = 100, for packing off and on.
    let mut half_rate = [None, None];
    for n in [10usize, 100, 500] {
        let o = Options {
            members: n,
            ..base.clone()
        };
        let b = steady(|| {
            baseline_run(&Options {
                senders: 1,
                flood: false,
                ..o.clone()
            })
        })?;
        let ceiling = b.dgrams_per_s();
        push(b, &mut out);
        for (flood, senders) in [(false, 1), (true, 4)] {
            for packing in [false, true] {
                let mut r = steady(|| {
                    relay_run(&Options {
                        flood,
                        senders,
                        packing,
                        ..o.clone()
                    })
                })?;
                r.ceiling_dgrams_per_s = Some(ceiling);
                if n == 100 && !flood {
                    half_rate[packing as usize] = Some(r.msgs_per_s() / (n - 1) as f64 / 2.0);
                }
                push(r, &mut out);
            }
        }
    }
    for packing in [false, true] {
        if let Some(rate) = half_rate[packing as usize] {
            // One receiver thread: at half the rate it keeps up, and the
            // second core stays free for the server (with two, the tool's own
            // threads queue behind each other and add milliseconds).
            let r = steady(|| {
                relay_run(&Options {
                    members: 100,
                    senders: 1,
                    flood: false,
                    packing,
                    rate: Some(rate),
                    threads: 1,
                    ..base.clone()
                })
            })?;
            push(r, &mut out);
        }
    }
    let idle = idle_run(
        &Options {
            members: 10_000,
            ..base.clone()
        },
        base.idle.unwrap_or(Duration::from_secs(10)),
    )?;
    push(idle, &mut out);
    Ok(out)
}

/// The reports as markdown: the relay table, then the idle table.
pub fn markdown(reports: &[Report]) -> String {
    let mut s = String::new();
    let relay: Vec<&Report> = reports
        .iter()
        .filter(|r| r.kind != Some(Kind::Idle))
        .collect();
    if !relay.is_empty() {
        s.push_str(&Report::table_header());
        s.push('\n');
        for r in relay {
            s.push_str(&r.table_row());
            s.push('\n');
        }
    }
    let idle: Vec<&Report> = reports
        .iter()
        .filter(|r| r.kind == Some(Kind::Idle))
        .collect();
    if !idle.is_empty() {
        if !s.is_empty() {
            s.push('\n');
        }
        s.push_str(&Report::idle_header());
        s.push('\n');
        for r in idle {
            s.push_str(&r.idle_row());
            s.push('\n');
        }
    }
    s
}

/// The reports as a JSON array, one object per line.
pub fn json(reports: &[Report]) -> String {
    let rows: Vec<String> = reports.iter().map(Report::json).collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
}

/// Is this an address a member socket can reach (IPv4 loopback)?
pub fn reachable(addr: &SocketAddr) -> bool {
    matches!(addr.ip(), IpAddr::V4(ip) if ip.is_loopback())
}
