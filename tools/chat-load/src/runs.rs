//! `chat-load`: a load generator for the chat server, and the kernel ceiling
//! it is measured against.
//!
//! A run joins N members over protocol version 2 (each its own UDP socket on
//! its own loopback address, five to an address, each with its own sealed
//! session), learns each member's event number with a KEEPALIVE, lets S of
//! them send SAYs — closed loop on deliveries ("W=32") or flooding within the
//! acknowledgement window — for a bounded count and time, then sends every
//! member's KEEPALIVE again so that events lost at the end show up too.
//! Receiver threads (each with its own share of the sockets and one mio poll)
//! open every datagram, count events, datagrams and gaps, and the latency
//! from the send time written in each text. The server's CPU time comes from
//! /proc before and after. The ceiling runs feed the same N sockets from a
//! bare `sendmmsg` loop with no server: sealed for each member as the server
//! seals (the ceiling the server is compared with), and in the clear.
//!
//! Threads are fine here: this tool never forks.

use super::chat_inbox::{Link, RxMember};
use super::irc::ngircd_run;
use super::join::{join_members, sockets, JoinedMembers};
use super::measure::{all_but_own, merge, settle, snap, steady, timing, when_idle, Snap};
use super::member::{self, Member};
use super::net::{self, Cpu};
use super::options::{Ceiling, Options};
use super::repair::Discard;
use super::report::{Kind, Report};
use super::rx::{self, phase, RxOut, Shared};
use super::server_proc::{server_for, ServerProc};
use super::tx::{self, Dest, Plan, TxOut};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpchat::session::ServerKey;

/// How long the end of a run with repair waits for the tail's repairs (the
/// reorder buffer gives a gap up after 1 s).
const REPAIR_TAIL: Duration = Duration::from_millis(1200);

/// Runs what the options say; returns the reports (the ceiling first).
pub fn run(opts: &Options) -> Result<Vec<Report>, String> {
    net::raise_fd_limit();
    if let Some(d) = opts.idle {
        // The server as shipped, or (when only it is asked for) the bare one.
        let o = Options {
            bare: !opts.chat_server,
            ..opts.clone()
        };
        return Ok(vec![idle_run(&o, d)?]);
    }
    let mut out = Vec::new();
    let mut ceiling = None;
    if opts.ceiling != Ceiling::Skip && opts.chat_server {
        let b = baseline_run(opts, true)?;
        ceiling = Some(b.dgrams_per_s());
        out.push(b);
        out.push(baseline_run(opts, false)?);
    }
    if opts.ceiling != Ceiling::Only && opts.chat_server {
        let mut r = relay_run(opts)?;
        r.ceiling_dgrams_per_s = ceiling;
        out.push(r);
    }
    if opts.ceiling != Ceiling::Only && opts.bare_server {
        let mut r = relay_run(&Options {
            bare: true,
            ..opts.clone()
        })?;
        r.ceiling_dgrams_per_s = ceiling;
        out.push(r);
    }
    if opts.ceiling != Ceiling::Only && opts.ngircd {
        out.push(ngircd_run(opts)?);
    }
    Ok(out)
}

/// Sends a KEEPALIVE for every member whose flag is not set yet, in chunks
/// (so the server's receive buffer is not overrun), until every flag is set
/// or `limit`.
fn keepalive_all(members: &[Arc<Member>], flags: &[AtomicBool], limit: Duration) -> usize {
    let end = Instant::now() + limit;
    loop {
        let todo: Vec<usize> = (0..members.len())
            .filter(|&i| !flags[i].load(Acquire))
            .collect();
        if todo.is_empty() || Instant::now() > end {
            return todo.len();
        }
        for (n, &i) in todo.iter().enumerate() {
            members[i].keepalive(Instant::now());
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

/// Starts the receiver threads, members spread over them round-robin.
fn start_receivers(
    links: Vec<Link>,
    senders: usize,
    shared: &Arc<Shared>,
    opts: &Options,
    synced: bool,
) -> Vec<std::thread::JoinHandle<std::io::Result<RxOut>>> {
    let threads = opts.threads.max(1);
    let discard = &opts.discard;
    let mut parts: Vec<Vec<RxMember>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, link) in links.into_iter().enumerate() {
        parts[i % threads].push(RxMember {
            index: i,
            link,
            repair: None,
            discard: Discard::new(discard.seed, i, discard.percent),
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

/// Runs `send` on a thread of its own (the receivers wake it through
/// `shared.sender`), waits for the deliveries of what it sent to settle
/// (`settle`, from `before`, bounded by `limit`), and returns what it did
/// with the snapshot after.
pub fn send_and_settle(
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

/// The chat server relaying SAYs to N members.
fn relay_run(opts: &Options) -> Result<Report, String> {
    when_idle(opts, relay_run_now)
}

fn relay_run_now(opts: &Options) -> Result<Report, String> {
    let (mut server, addr, pin) = server_for(opts, &["--member-timeout", "120"])?;
    let server_pid = server.as_ref().map(ServerProc::pid).or(opts.server_pid);
    let n = opts.members;
    let JoinedMembers {
        members,
        join_secs,
        repair,
    } = join_members(n, opts.rcvbuf, addr, &pin)?;
    let s = opts.senders;
    let per = (opts.messages as usize).div_ceil(s).max(1);
    let shared = Arc::new(Shared::new(n, s, per, opts.threads.max(1)));
    let links = members.iter().map(|m| Link::Sealed(m.clone())).collect();
    let handles = start_receivers(links, s, &shared, opts, false);
    shared.repair.store(repair, Release);
    shared.phase.store(phase::SYNC, Release);
    let unsynced = keepalive_all(&members, &shared.synced, Duration::from_secs(10));
    if unsynced > 0 {
        shared.phase.store(phase::STOP, Release);
        return Err(format!(
            "{} got no answer to KEEPALIVE",
            net::count(unsynced, "member", "members")
        ));
    }
    let plan = opts.plan();
    let before = snap(&shared, server_pid);
    shared.phase.store(phase::RUN, Release);
    let senders: Vec<_> = members[..s].to_vec();
    let (txo, after) = send_and_settle(
        &shared,
        &plan,
        server_pid,
        before,
        opts.duration + Duration::from_secs(20),
        move |shared, plan| tx::server_senders(senders, shared, plan),
    )?;
    shared.phase.store(phase::FINAL, Release);
    keepalive_all(&members, &shared.finals, Duration::from_secs(10));
    if repair {
        // A lost tail is now a gap: time for its NACKs and resends.
        std::thread::sleep(REPAIR_TAIL);
    }
    let counters = server
        .as_mut()
        .and_then(|s| s.counters(["dropped sends", "segmented sends"]));
    shared.phase.store(phase::STOP, Release);

    let mut r = Report {
        kind: Some(if opts.bare {
            Kind::BareServer
        } else {
            Kind::Server
        }),
        members: n,
        senders: s,
        mode: opts.mode(),
        packing: Some(opts.packing),
        messages: txo.sent.iter().sum::<usize>() as u64,
        retransmits: txo.retransmits,
        stalls: txo.stalls,
        server_dropped_sends: counters.map(|c| c[0]),
        server_segmented_sends: counters.map(|c| c[1]),
        join_seconds: Some(join_secs),
        ..Default::default()
    };
    merge(
        &mut r,
        handles,
        &txo,
        per,
        plan.fanout,
        all_but_own(&txo),
        None,
    )?;
    timing(&mut r, &shared, &txo, &before, &after);
    leave_all(&members, server.is_none());
    drop(server);
    Ok(r)
}

/// Says goodbye for every member when the server is not ours (ours is
/// stopped): LEAVE, and LEAVE again after the client's resend time (the
/// BYEs are not waited for: the receivers have stopped).
fn leave_all(members: &[Arc<Member>], external: bool) {
    if !external {
        return;
    }
    for m in members {
        let mut conn = m.conn();
        conn.leave(Instant::now());
        m.flush(&mut conn);
    }
    std::thread::sleep(Duration::from_millis(250));
    for m in members {
        let mut conn = m.conn();
        conn.on_timeout(Instant::now());
        m.flush(&mut conn);
    }
}

/// The kernel ceiling: the same N sockets fed by a bare `sendmmsg` loop,
/// each datagram sealed for its member (`sealed`) or in the clear.
fn baseline_run(opts: &Options, sealed: bool) -> Result<Report, String> {
    if sealed {
        when_idle(opts, |o| baseline_run_now(o, true))
    } else {
        when_idle(opts, |o| baseline_run_now(o, false))
    }
}

fn baseline_run_now(opts: &Options, sealed: bool) -> Result<Report, String> {
    // Configured exactly as the server's socket (buffers, don't-fragment), so
    // the ceiling and the server take the same path through the kernel.
    let src = udpchat::net::bind_server_socket(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
        .map_err(|e| e.to_string())?;
    let src_addr = src.local_addr().map_err(|e| e.to_string())?;
    let n = opts.members;
    let socks = sockets(n, opts.rcvbuf, src_addr)?;
    let mut links = Vec::with_capacity(n);
    let mut dests = Vec::with_capacity(n);
    let key = ServerKey::new(fresh_secret());
    let now = Instant::now();
    for (i, sock) in socks.into_iter().enumerate() {
        let to = sock.local_addr().map_err(|e| e.to_string())?;
        if sealed {
            let (conn, session) = member::in_memory(&key, &net::member_name(i), i as u64, now)?;
            links.push(Link::Sealed(Arc::new(Member::new(sock, conn))));
            if i > 0 {
                dests.push(Dest {
                    to,
                    session: Some(session),
                });
            }
        } else {
            links.push(Link::Plain(sock));
            if i > 0 {
                dests.push(Dest { to, session: None });
            }
        }
    }
    let per = opts.messages as usize;
    let shared = Arc::new(Shared::new(n, 1, per, opts.threads.max(1)));
    let handles = start_receivers(links, 0, &shared, opts, true);
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
        move |shared, plan| tx::baseline_sender(&src, dests, shared, plan),
    )?;
    shared.phase.store(phase::STOP, Release);
    let sent = txo.sent[0] as u64;
    let mut r = Report {
        kind: Some(if sealed {
            Kind::Baseline
        } else {
            Kind::PlainBaseline
        }),
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
    let (server, addr, pin) = server_for(opts, &["--member-timeout", &timeout])?;
    let server_pid = server.as_ref().map(ServerProc::pid).or(opts.server_pid);
    let n = opts.members;
    let JoinedMembers {
        members, join_secs, ..
    } = join_members(n, opts.rcvbuf, addr, &pin)?;
    let shared = Arc::new(Shared::new(n, 1, 1, opts.threads.max(1)));
    // The keepalives below are the only ones: spread evenly.
    shared.timers.store(false, Relaxed);
    let links = members.iter().map(|m| Link::Sealed(m.clone())).collect();
    let handles = start_receivers(links, 0, &shared, opts, false);
    std::thread::sleep(Duration::from_millis(200)); // the join traffic settles
    let rss_joined = server_pid.and_then(net::rss_kib);
    let cpu_before = server_pid.and_then(|p| Cpu::read(&p.to_string()));
    let start = Instant::now();
    let answers_before = shared.keepalive_answers.load(Acquire);
    // Every member once per TIMEOUT/3, in 10 ms ticks.
    let per_sec = n as f64 / (TIMEOUT_SECS as f64 / 3.0);
    let mut sent = 0u64;
    while start.elapsed() < idle {
        let due = (start.elapsed().as_secs_f64() * per_sec) as u64;
        while sent < due {
            let i = (sent % n as u64) as usize;
            members[i].keepalive(Instant::now());
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let wall = start.elapsed();
    let cpu_after = server_pid.and_then(|p| Cpu::read(&p.to_string()));
    std::thread::sleep(Duration::from_millis(100));
    let answers = shared.keepalive_answers.load(Acquire) - answers_before;
    let rss_end = server_pid.and_then(net::rss_kib);
    shared.phase.store(phase::STOP, Release);
    for h in handles {
        let _ = h.join();
    }
    let mut r = Report {
        kind: Some(Kind::Idle),
        members: n,
        mode: if opts.bare {
            "idle, --db none --no-repair".into()
        } else {
            "idle".into()
        },
        packing: Some(opts.packing),
        seconds: wall.as_secs_f64(),
        join_seconds: Some(join_secs),
        server_rss_kib: rss_joined.max(rss_end),
        keepalives: sent,
        delivered: answers,
        ..Default::default()
    };
    if let (Some(a), Some(b)) = (cpu_before, cpu_after) {
        let d = b.since(&a);
        r.server_cpu_ns = Some(d.total_ns());
        r.server_user_ns = Some(d.user_ns);
        r.idle_cpu_percent = Some(100.0 * d.total_ns() as f64 / wall.as_nanos() as f64);
    }
    leave_all(&members, server.is_none());
    drop(server);
    Ok(r)
}

/// A new random X25519 secret for the ceiling's in-memory server.
fn fresh_secret() -> [u8; 32] {
    let mut s = [0u8; 32];
    for chunk in s.chunks_mut(8) {
        chunk.copy_from_slice(&member::random()().to_le_bytes());
    }
    s
}

/// The table of docs/performance.md: for N = 10, 100, 500 the ceilings (sealed, unsealed), then the server
/// with packing off and on, closed loop (S = 1) and flood (S = 4); the
/// latency at half the N = 100 closed-loop rate; and 10,000 idle members.
/// With `ngircd` set, ngircd's flood (S = 4) follows each N's server runs.
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
        let ceiling_opts = Options {
            senders: 1,
            flood: false,
            ..o.clone()
        };
        let b = steady(|| baseline_run(&ceiling_opts, true))?;
        let ceiling = b.dgrams_per_s();
        push(b, &mut out);
        push(steady(|| baseline_run(&ceiling_opts, false))?, &mut out);
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
        if base.ngircd {
            let r = steady(|| {
                ngircd_run(&Options {
                    flood: true,
                    senders: 4,
                    ..o.clone()
                })
            })?;
            push(r, &mut out);
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
