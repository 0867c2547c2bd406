//! The ngircd baseline: the same load over plain-text TCP IRC. N members
//! connect to an ngircd started here ([`super::ngircd_proc`]) and join one
//! channel; S of them, IRC operators with user mode +F (no flood
//! protection), send PRIVMSGs to the channel carrying the same texts as the
//! SAYs of a chat-server run; the receiver threads count them with the same
//! code ([`super::rx`]), and the report is merged and timed as the server
//! run's is ([`super::measure`]).
//!
//! TCP loses nothing, but ngircd closes a member whose unsent data passes
//! 32 KiB, so the senders never run ahead of the deliveries by more than
//! the window: message g goes once the deliveries reach (g − A)·(N − 1),
//! where A is the flood's acknowledgement window (`--ack-window`), or W in
//! the closed loop.

use super::measure::{all_but_own, merge, snap, timing, when_idle};
use super::net;
use super::ngircd_proc::{Ngircd, CHANNEL, OPER};
use super::options::Options;
use super::report::{Kind, Report};
use super::runs::send_and_settle;
use super::rx::{self, phase, Inbox, MemberStats, RxOut, Shared};
use super::text;
use super::tx::{Pacer, Plan, TxOut};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::sync::Arc;
use std::time::{Duration, Instant};
use udpchat::error::os_reason;
use udpchat::stdio;

/// How long one member's registration and join may take.
const JOIN_WAIT: Duration = Duration::from_secs(10);
/// PRIVMSGs per write of one sender.
const BATCH: usize = 32;
/// Bytes each receiver thread reads at once.
const READ_LEN: usize = 1 << 16;

/// The same load against ngircd.
pub fn ngircd_run(opts: &Options) -> Result<Report, String> {
    when_idle(opts, ngircd_run_now)
}

fn ngircd_run_now(opts: &Options) -> Result<Report, String> {
    let server = Ngircd::start(&opts.ngircd_bin)?;
    let pid = Some(server.pid());
    let n = opts.members;
    let s = opts.senders;
    let join_start = Instant::now();
    let streams = (0..n)
        .map(|i| join(i, i < s, server.addr()))
        .collect::<Result<Vec<_>, _>>()?;
    let join_secs = join_start.elapsed().as_secs_f64();
    let writers = streams
        .iter()
        .map(|t| {
            t.try_clone()
                .map_err(|e| format!("cannot clone a member socket: {}", os_reason(&e)))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let writers = Arc::new(writers);
    let per = (opts.messages as usize).div_ceil(s).max(1);
    let threads = opts.threads.max(1);
    let shared = Arc::new(Shared::new(n, s, per, threads));
    let mut parts: Vec<Vec<IrcMember>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, stream) in streams.into_iter().enumerate() {
        parts[i % threads].push(IrcMember {
            index: i,
            stream,
            line: Vec::new(),
            closed: false,
            st: MemberStats::default(),
        });
    }
    let handles: Vec<_> = parts
        .into_iter()
        .enumerate()
        .map(|(t, p)| rx::spawn(t, p, shared.clone(), s))
        .collect();
    shared.phase.store(phase::SYNC, Release);
    let unsynced = ping_all(&writers, "sync", &shared.synced);
    if unsynced > 0 {
        shared.phase.store(phase::STOP, Release);
        for h in handles {
            let _ = h.join(); // a member ngircd closed is reported first
        }
        return Err(format!(
            "{} got no answer to PING from ngircd (its log ends: {})",
            net::count(unsynced, "member", "members"),
            server.log_tail()
        ));
    }
    let mut plan = opts.plan();
    plan.window = Some(plan.window.unwrap_or(plan.ack_window as u64));
    let before = snap(&shared, pid);
    shared.phase.store(phase::RUN, Release);
    let senders = writers.clone();
    let (txo, after) = send_and_settle(
        &shared,
        &plan,
        pid,
        before,
        opts.duration + Duration::from_secs(20),
        move |shared, plan| senders_run(&senders[..s], shared, plan),
    )?;
    shared.phase.store(phase::FINAL, Release);
    ping_all(&writers, "final", &shared.finals);
    shared.phase.store(phase::STOP, Release);
    let mut r = Report {
        kind: Some(Kind::Ngircd),
        members: n,
        senders: s,
        mode: opts.mode(),
        messages: txo.sent.iter().sum::<usize>() as u64,
        stalls: txo.stalls,
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
    drop(server);
    Ok(r)
}

/// Connects member `i`, registers it as `m<i>` (an operator with +F when it
/// sends) and joins the channel; returns its socket, non-blocking, once
/// ngircd has listed the channel's names.
fn join(i: usize, sender: bool, addr: SocketAddr) -> Result<TcpStream, String> {
    let nick = net::member_name(i);
    let fail = |what: &str, e: io::Error| {
        format!(
            "cannot {what} ngircd at {addr} as {nick}: {}",
            os_reason(&e)
        )
    };
    let mut t = TcpStream::connect_timeout(&addr, JOIN_WAIT).map_err(|e| fail("connect to", e))?;
    t.set_nodelay(true)
        .map_err(|e| fail("configure a socket to", e))?;
    t.set_read_timeout(Some(JOIN_WAIT))
        .map_err(|e| fail("configure a socket to", e))?;
    let mut hello = format!("NICK {nick}\r\nUSER {nick} 0 * :chat-load\r\n");
    if sender {
        hello.push_str(&format!("OPER {OPER}\r\nMODE {nick} +F\r\n"));
    }
    hello.push_str(&format!("JOIN {CHANNEL}\r\n"));
    t.write_all(hello.as_bytes())
        .map_err(|e| fail("register with", e))?;
    let done = format!(" 366 {nick} {CHANNEL} ");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = Instant::now() + JOIN_WAIT;
    while !contains(&got, done.as_bytes()) {
        let k = match t.read(&mut buf) {
            Ok(0) => {
                return Err(format!(
                    "ngircd at {addr} closed {nick}'s connection: {}",
                    last_line(&got)
                ))
            }
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(fail("join", e)),
        };
        got.extend_from_slice(&buf[..k]);
        if Instant::now() > end {
            return Err(format!(
                "ngircd at {addr} did not let {nick} join {CHANNEL}: {}",
                last_line(&got)
            ));
        }
    }
    if sender && !contains(&got, format!("MODE {nick} :+F").as_bytes()) {
        return Err(format!(
            "ngircd at {addr} did not give {nick} user mode +F (its OPER block?): {}",
            last_line(&got)
        ));
    }
    t.set_nonblocking(true)
        .map_err(|e| fail("configure a socket to", e))?;
    Ok(t)
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn last_line(got: &[u8]) -> String {
    let text = String::from_utf8_lossy(got);
    text.lines().last().unwrap_or("nothing").trim().to_string()
}

/// Sends `PING :<word>` from every member whose flag is not set (again
/// each second), until every flag is set (the receivers set it on the PONG)
/// or 10 s; returns how many are still unset. TCP keeps order, so a member's
/// PONG comes after every line ngircd queued for it before.
fn ping_all(writers: &[TcpStream], word: &str, flags: &[AtomicBool]) -> usize {
    let line = format!("PING :{word}\r\n");
    let end = Instant::now() + Duration::from_secs(10);
    let mut next = Instant::now();
    loop {
        let unset = flags.iter().filter(|f| !f.load(Acquire)).count();
        if unset == 0 || Instant::now() > end {
            return unset;
        }
        if Instant::now() >= next {
            next += Duration::from_secs(1);
            for (mut w, f) in writers.iter().zip(flags) {
                if !f.load(Acquire) {
                    write_all_nonblocking(&mut w, line.as_bytes());
                }
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes all of `data` to a non-blocking socket, waiting while it is full
/// (at most 10 s); false if it could not.
fn write_all_nonblocking(w: &mut impl Write, mut data: &[u8]) -> bool {
    let end = Instant::now() + Duration::from_secs(10);
    while !data.is_empty() {
        match w.write(data) {
            Ok(0) => return false,
            Ok(k) => data = &data[k..],
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => {
                std::thread::sleep(Duration::from_micros(50));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
    true
}

/// One member as its receiver thread sees it.
struct IrcMember {
    index: usize,
    stream: TcpStream,
    /// The start of a line not complete yet.
    line: Vec<u8>,
    closed: bool,
    st: MemberStats,
}

impl Inbox for IrcMember {
    type Scratch = Vec<u8>;
    fn scratch() -> Vec<u8> {
        vec![0; READ_LEN]
    }
    fn fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
    fn drain(
        &mut self,
        buf: &mut Vec<u8>,
        shared: &Shared,
        ph: u8,
        out: &mut RxOut,
    ) -> io::Result<u64> {
        let mut accounted = 0;
        while !self.closed {
            let k = match self.stream.read(buf) {
                Ok(0) => {
                    self.closed = true;
                    stdio::err_line(&format!(
                        "chat-load: ngircd closed {}'s connection",
                        net::member_name(self.index)
                    ));
                    break;
                }
                Ok(k) => k,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let now = shared.now_ns();
            let mut data = &buf[..k];
            while let Some(nl) = data.iter().position(|&c| c == b'\n') {
                let (head, rest) = data.split_at(nl);
                data = &rest[1..];
                if self.line.is_empty() {
                    accounted += self.line_in(head, shared, ph, out, now);
                } else {
                    let mut whole = std::mem::take(&mut self.line);
                    whole.extend_from_slice(head);
                    accounted += self.line_in(&whole, shared, ph, out, now);
                }
            }
            self.line.extend_from_slice(data);
            // A short read emptied the socket: new data raises a new edge.
            if k < buf.len() {
                break;
            }
        }
        Ok(accounted)
    }
    fn into_stats(self) -> (usize, MemberStats) {
        (self.index, self.st)
    }
}

impl IrcMember {
    /// One line from ngircd (without its LF); returns the deliveries it
    /// accounts for.
    fn line_in(&mut self, line: &[u8], shared: &Shared, ph: u8, out: &mut RxOut, now: u64) -> u64 {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // ":prefix COMMAND params"
        let rest = match line.strip_prefix(b":") {
            Some(l) => l.splitn(2, |&c| c == b' ').nth(1).unwrap_or(b""),
            None => line,
        };
        if let Some(params) = rest.strip_prefix(b"PRIVMSG ") {
            if !self.st.synced {
                return 0;
            }
            let text = match params.iter().position(|&c| c == b':') {
                Some(p) => &params[p + 1..],
                None => b"",
            };
            return u64::from(out.count_text(&mut self.st, shared.per_sender, text, now));
        }
        if rest.starts_with(b"PONG ") {
            if ph == phase::SYNC && rest.ends_with(b":sync") && !self.st.synced {
                self.st.synced = true;
                shared.synced[self.index].store(true, Release);
            } else if ph == phase::FINAL && rest.ends_with(b":final") {
                shared.finals[self.index].store(true, Release);
            }
        }
        0
    }
}

/// Sends PRIVMSGs to the channel from the sender members, paced by the
/// deliveries (see the module's documentation).
fn senders_run(socks: &[TcpStream], shared: &Shared, plan: &Plan) -> TxOut {
    net::tight_timer_slack();
    let cpu0 = net::thread_cpu_ns();
    let ns = socks.len();
    let per = shared.per_sender;
    let mut out = TxOut {
        sent: vec![0; ns],
        sent_at: vec![0; ns * per],
        ..Default::default()
    };
    // What each sender still has to write (the socket was full).
    let mut pending: Vec<(Vec<u8>, usize)> = (0..ns).map(|_| (Vec::new(), 0)).collect();
    let mut textbuf = vec![0u8; plan.text_len.max(text::MIN_LEN)];
    let start = shared.now_ns();
    out.first_ns = start;
    let deadline = start + plan.duration.as_nanos() as u64;
    let mut pacer = Pacer::new(plan, start);
    let mut g: u64 = 0;
    let mut broken = vec![false; ns];
    loop {
        let now = shared.now_ns();
        let mut busy = false;
        for (s, (buf, off)) in pending.iter_mut().enumerate() {
            if *off < buf.len() && !broken[s] {
                match (&socks[s]).write(&buf[*off..]) {
                    Ok(k) => *off += k,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => broken[s] = true,
                }
                busy |= *off < buf.len();
            }
        }
        let all_done = (0..ns).all(|s| out.sent[s] >= per || broken[s]);
        if g >= plan.total || now >= deadline || all_done {
            if !busy {
                break;
            }
            std::thread::sleep(Duration::from_micros(50));
            continue;
        }
        let mut allowed = pacer.allowed(shared, g, now).min(plan.total - g);
        let mut sent_now = 0;
        for s in 0..ns {
            let (buf, off) = &mut pending[s];
            if allowed == 0 || broken[s] || *off < buf.len() || out.sent[s] >= per {
                continue;
            }
            buf.clear();
            *off = 0;
            let room = (per - out.sent[s]).min(allowed.min(BATCH as u64) as usize);
            let stamp = shared.now_ns();
            for k in out.sent[s]..out.sent[s] + room {
                text::write(&mut textbuf, s, k, stamp);
                buf.extend_from_slice(b"PRIVMSG ");
                buf.extend_from_slice(CHANNEL.as_bytes());
                buf.extend_from_slice(b" :");
                buf.extend_from_slice(&textbuf);
                buf.extend_from_slice(b"\r\n");
                out.sent_at[s * per + k] = stamp;
            }
            out.sent[s] += room;
            g += room as u64;
            allowed -= room as u64;
            sent_now += room;
        }
        if sent_now == 0 && !busy {
            pacer.wait(shared, now, 2_000_000);
        } else if sent_now == 0 {
            std::thread::sleep(Duration::from_micros(50));
        }
    }
    out.last_ns = shared.now_ns();
    out.stalls = pacer.stalls;
    out.cpu_ns = net::thread_cpu_ns() - cpu0;
    out
}
