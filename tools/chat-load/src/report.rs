//! What a load run measured: the report of one run, and its renderings
//! (markdown tables, and JSON through serde).

use super::latency::Latency;
use serde::Serialize;

/// Which kind of run a report describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The chat server relaying SAYs.
    Server,
    /// The same with `--db none --no-repair`.
    BareServer,
    /// The kernel ceiling: a bare `sendmmsg` loop feeding the same sockets,
    /// each datagram sealed for its member as the server seals it.
    Baseline,
    /// The same loop with the bodies in the clear (no sealing, no opening).
    PlainBaseline,
    /// Members joined and idle, sending keepalives only.
    Idle,
    /// ngircd relaying PRIVMSGs over TCP (the IRC baseline).
    Ngircd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Server => "server",
            Kind::BareServer => "server --db none --no-repair",
            Kind::Baseline => "kernel ceiling, sealed",
            Kind::PlainBaseline => "kernel ceiling, unsealed",
            Kind::Idle => "idle",
            Kind::Ngircd => "ngircd",
        }
    }
}

/// Everything one run measured. Rates are per second of the measured span
/// (first send to last receipt).
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub kind: Option<Kind>,
    pub members: usize,
    pub senders: usize,
    /// "W=32", "flood" (within the ACK window), "idle"; a paced run adds its rate.
    /// Receiver threads are added when not the default 2.
    pub mode: String,
    /// Packing on or off (None for the kernel ceiling).
    pub packing: Option<bool>,
    /// Distinct messages sent, and retransmissions of unacknowledged ones.
    pub messages: u64,
    pub retransmits: u64,
    /// Deliveries expected (each message to every member but its sender) and received.
    pub expected: u64,
    pub delivered: u64,
    /// Datagrams that carried the deliveries.
    pub datagrams: u64,
    pub seconds: f64,
    /// Deliveries missing, and how many of them the members saw as gaps in
    /// their event numbers (or at the end, from PONG's last number).
    pub lost: u64,
    pub lost_seen: u64,
    pub members_with_loss: usize,
    /// Members whose gaps do not add up to what they lost.
    pub members_miscounted: usize,
    /// Events out of order or repeated, and events that were not this run's.
    pub out_of_order: u64,
    pub foreign: u64,
    /// Datagrams the members could not open (forged, replayed, malformed,
    /// unexpected), and sessions they lost: both errors in a clean run.
    pub failed_opens: u64,
    pub sessions_lost: u64,
    /// Datagrams the members discarded on purpose (`--discard`), NACKs they
    /// sent, and events that arrived into a gap (resent, or late).
    pub discarded: u64,
    pub nacks: u64,
    pub repaired: u64,
    /// Events the server answered LOST for (no longer kept for repair).
    pub not_kept: u64,
    /// Send to each receipt, and send to the last member's receipt of each message.
    pub latency: Option<Latency>,
    pub latency_last: Option<Latency>,
    /// Messages that did not reach every member (excluded from `latency_last`).
    pub incomplete_messages: u64,
    /// Times a closed-loop sender went ahead after waiting 50 ms (deliveries lost at the end of a burst).
    pub stalls: u64,
    /// Server CPU (user + system) over the measured span, ns, and its user part.
    pub server_cpu_ns: Option<u64>,
    pub server_user_ns: Option<u64>,
    /// The server's own count of datagrams it could not send (from its /stats).
    pub server_dropped_sends: Option<u64>,
    /// The server's count of segmented sends (several datagrams to one
    /// member in one send, UDP GSO; from its /stats).
    pub server_segmented_sends: Option<u64>,
    /// CPU of this tool's receiver threads and of its sender, ns.
    pub rx_cpu_ns: u64,
    pub tx_cpu_ns: u64,
    /// The whole machine's busy time over the span, in cores (0..=cores).
    pub machine_busy_cores: Option<f64>,
    /// CPU used by the rest of the machine (other processes) over the span, in
    /// cores: machine busy minus the server and this tool. A run with much
    /// of it was disturbed.
    pub others_cores: Option<f64>,
    /// The machine was still busy when the run started (waited in vain for it to be idle).
    pub started_busy: bool,
    /// The kernel ceiling measured in the same invocation (datagrams delivered/s).
    pub ceiling_dgrams_per_s: Option<f64>,
    /// Idle runs: time to join every member, the server's resident memory, and
    /// its CPU share while the members only send keepalives.
    pub join_seconds: Option<f64>,
    pub server_rss_kib: Option<u64>,
    pub idle_cpu_percent: Option<f64>,
    pub keepalives: u64,
}

impl Report {
    pub fn msgs_per_s(&self) -> f64 {
        per_s(self.delivered, self.seconds)
    }
    pub fn dgrams_per_s(&self) -> f64 {
        per_s(self.datagrams, self.seconds)
    }
    pub fn events_per_dgram(&self) -> f64 {
        if self.datagrams == 0 {
            0.0
        } else {
            self.delivered as f64 / self.datagrams as f64
        }
    }
    /// Is every lost delivery visible to its member as a gap?
    pub fn losses_visible(&self) -> bool {
        self.lost == self.lost_seen && self.members_miscounted == 0
    }
    /// Server CPU per delivered message, ns.
    pub fn server_ns_per_msg(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.delivered > 0).then(|| cpu / self.delivered as f64)
    }
    /// CPU of what sent the deliveries (the server, or the ceiling's bare
    /// loop) per delivered message, ns.
    pub fn sending_ns_per_msg(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::Baseline | Kind::PlainBaseline) => {
                (self.delivered > 0).then(|| self.tx_cpu_ns as f64 / self.delivered as f64)
            }
            _ => self.server_ns_per_msg(),
        }
    }
    /// CPU of what sent the deliveries, in cores.
    pub fn sending_cores(&self) -> Option<f64> {
        match self.kind {
            Some(Kind::Baseline | Kind::PlainBaseline) => Some(self.tx_cores()),
            _ => self.server_cores(),
        }
    }
    pub fn server_ns_per_dgram(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.datagrams > 0).then(|| cpu / self.datagrams as f64)
    }
    /// Server CPU over the span, in cores.
    pub fn server_cores(&self) -> Option<f64> {
        let cpu = self.server_cpu_ns? as f64;
        (self.seconds > 0.0).then(|| cpu / 1e9 / self.seconds)
    }
    pub fn rx_cores(&self) -> f64 {
        if self.seconds > 0.0 {
            self.rx_cpu_ns as f64 / 1e9 / self.seconds
        } else {
            0.0
        }
    }
    pub fn tx_cores(&self) -> f64 {
        if self.seconds > 0.0 {
            self.tx_cpu_ns as f64 / 1e9 / self.seconds
        } else {
            0.0
        }
    }
    /// Datagrams delivered/s as a share of the ceiling measured in the same invocation.
    pub fn ceiling_share(&self) -> Option<f64> {
        let c = self.ceiling_dgrams_per_s?;
        (c > 0.0).then(|| self.dgrams_per_s() / c)
    }

    /// The label of the run in a table: what ran, its mode and packing.
    pub fn label(&self) -> String {
        let kind = self.kind.unwrap_or(Kind::Server);
        match (kind, self.packing) {
            (Kind::Server | Kind::BareServer, Some(p)) => {
                format!("{}, packing {}", kind.name(), if p { "on" } else { "off" })
            }
            _ => kind.name().to_string(),
        }
    }

    /// The header of the markdown table of relay runs.
    pub fn table_header() -> String {
        "| run | N | S | mode | msgs delivered/s | datagrams/s | events/datagram | of ceiling | loss (all seen as gaps?) | latency p50 / p99 / max µs | to last member p99 µs | sending µs/msg | sending cores | receivers cores | machine busy cores (others) |\n\
         |---|---:|---:|---|---:|---:|---:|---:|---|---|---:|---:|---:|---:|---:|"
            .to_string()
    }

    /// This run as a row of [`Report::table_header`].
    pub fn table_row(&self) -> String {
        let lat = |l: &Option<Latency>| match l {
            Some(l) => format!("{:.0} / {:.0} / {:.0}", l.p50_us, l.p99_us, l.max_us),
            None => "-".into(),
        };
        let mut errors = match (self.failed_opens, self.sessions_lost) {
            (0, 0) => String::new(),
            (f, l) => format!("; {f} not opened, {l} sessions lost"),
        };
        if self.discarded + self.nacks + self.repaired > 0 {
            errors += &format!(
                "; {} discarded, {} NACKs, {} repaired, {} no longer kept",
                self.discarded, self.nacks, self.repaired, self.not_kept
            );
        }
        let loss = if self.lost == 0 && self.out_of_order == 0 && self.losses_visible() {
            format!("0{errors}")
        } else {
            format!(
                "{} of {} ({:.2}%; {}){}",
                self.lost,
                self.expected,
                100.0 * self.lost as f64 / self.expected.max(1) as f64,
                if self.losses_visible() {
                    "all seen"
                } else {
                    "NOT all seen"
                },
                if self.out_of_order > 0 {
                    format!(", {} out of order", self.out_of_order)
                } else {
                    String::new()
                }
            ) + &errors
        };
        // Over TCP there are no datagrams to count.
        let tcp = self.kind == Some(Kind::Ngircd);
        format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {} |",
            self.label(),
            self.members,
            self.senders,
            self.mode,
            si(self.msgs_per_s()),
            if tcp {
                "-".into()
            } else {
                si(self.dgrams_per_s())
            },
            if tcp {
                "-".into()
            } else {
                format!("{:.1}", self.events_per_dgram())
            },
            self.ceiling_share()
                .map_or("-".into(), |s| format!("{:.0}%", 100.0 * s)),
            loss,
            lat(&self.latency),
            self.latency_last
                .map_or("-".into(), |l| format!("{:.0}", l.p99_us)),
            self.sending_ns_per_msg()
                .map_or("-".into(), |ns| format!("{:.2}", ns / 1000.0)),
            self.sending_cores()
                .map_or("-".into(), |c| format!("{c:.2}")),
            self.rx_cores(),
            match (self.machine_busy_cores, self.others_cores) {
                (Some(m), Some(o)) => format!(
                    "{m:.2} ({o:.2}){}",
                    if self.started_busy { " busy" } else { "" }
                ),
                (Some(m), None) => format!("{m:.2}"),
                _ => "-".into(),
            },
        )
    }

    /// The header of the markdown table of idle runs.
    pub fn idle_header() -> String {
        "| run | N | all joined in | server RSS | keepalives/s | server CPU while idle |\n|---|---:|---:|---:|---:|---:|"
            .to_string()
    }

    pub fn idle_row(&self) -> String {
        format!(
            "| {} | {} | {} | {} | {:.0} | {} |",
            self.mode,
            self.members,
            self.join_seconds
                .map_or("-".into(), |s| format!("{s:.2} s")),
            self.server_rss_kib
                .map_or("-".into(), |k| format!("{:.1} MiB", k as f64 / 1024.0)),
            per_s(self.keepalives, self.seconds),
            self.idle_cpu_percent
                .map_or("-".into(), |p| format!("{p:.2}% of a core")),
        )
    }

    /// This run as the flat record of the JSON output.
    pub fn json_record(&self) -> JsonReport<'_> {
        let lat = |l: &Option<Latency>| {
            (
                l.map(|l| l.p50_us),
                l.map(|l| l.p99_us),
                l.map(|l| l.max_us),
            )
        };
        let (latency_p50_us, latency_p99_us, latency_max_us) = lat(&self.latency);
        let (latency_last_p50_us, latency_last_p99_us, latency_last_max_us) =
            lat(&self.latency_last);
        JsonReport {
            kind: self.kind.unwrap_or(Kind::Server).name(),
            members: self.members,
            senders: self.senders,
            mode: &self.mode,
            packing: self.packing,
            messages: self.messages,
            retransmits: self.retransmits,
            expected: self.expected,
            delivered: self.delivered,
            datagrams: self.datagrams,
            seconds: self.seconds,
            msgs_per_s: self.msgs_per_s(),
            datagrams_per_s: self.dgrams_per_s(),
            events_per_datagram: self.events_per_dgram(),
            lost: self.lost,
            lost_seen_as_gaps: self.lost_seen,
            all_losses_seen: self.losses_visible(),
            members_with_loss: self.members_with_loss,
            members_miscounted: self.members_miscounted,
            out_of_order: self.out_of_order,
            foreign_events: self.foreign,
            failed_opens: self.failed_opens,
            sessions_lost: self.sessions_lost,
            discarded: self.discarded,
            nacks: self.nacks,
            repaired: self.repaired,
            not_kept: self.not_kept,
            incomplete_messages: self.incomplete_messages,
            stalls: self.stalls,
            latency_p50_us,
            latency_p99_us,
            latency_max_us,
            latency_last_p50_us,
            latency_last_p99_us,
            latency_last_max_us,
            server_cpu_ns: self.server_cpu_ns,
            server_user_ns: self.server_user_ns,
            server_ns_per_msg: self.server_ns_per_msg(),
            server_ns_per_datagram: self.server_ns_per_dgram(),
            server_cores: self.server_cores(),
            server_dropped_sends: self.server_dropped_sends,
            server_segmented_sends: self.server_segmented_sends,
            receivers_cores: self.rx_cores(),
            sender_cores: self.tx_cores(),
            machine_busy_cores: self.machine_busy_cores,
            others_cores: self.others_cores,
            started_busy: self.started_busy,
            ceiling_datagrams_per_s: self.ceiling_dgrams_per_s,
            of_ceiling: self.ceiling_share(),
            join_seconds: self.join_seconds,
            server_rss_kib: self.server_rss_kib,
            idle_cpu_percent: self.idle_cpu_percent,
            keepalives: self.keepalives,
        }
    }
}

/// One report as JSON: every figure of [`Report`], the derived rates, and
/// the latencies flattened (null where there is none).
#[derive(Debug, Serialize)]
pub struct JsonReport<'a> {
    kind: &'static str,
    members: usize,
    senders: usize,
    mode: &'a str,
    packing: Option<bool>,
    messages: u64,
    retransmits: u64,
    expected: u64,
    delivered: u64,
    datagrams: u64,
    seconds: f64,
    msgs_per_s: f64,
    datagrams_per_s: f64,
    events_per_datagram: f64,
    lost: u64,
    lost_seen_as_gaps: u64,
    all_losses_seen: bool,
    members_with_loss: usize,
    members_miscounted: usize,
    out_of_order: u64,
    foreign_events: u64,
    failed_opens: u64,
    sessions_lost: u64,
    discarded: u64,
    nacks: u64,
    repaired: u64,
    not_kept: u64,
    incomplete_messages: u64,
    stalls: u64,
    latency_p50_us: Option<f64>,
    latency_p99_us: Option<f64>,
    latency_max_us: Option<f64>,
    latency_last_p50_us: Option<f64>,
    latency_last_p99_us: Option<f64>,
    latency_last_max_us: Option<f64>,
    server_cpu_ns: Option<u64>,
    server_user_ns: Option<u64>,
    server_ns_per_msg: Option<f64>,
    server_ns_per_datagram: Option<f64>,
    server_cores: Option<f64>,
    server_dropped_sends: Option<u64>,
    server_segmented_sends: Option<u64>,
    receivers_cores: f64,
    sender_cores: f64,
    machine_busy_cores: Option<f64>,
    others_cores: Option<f64>,
    started_busy: bool,
    ceiling_datagrams_per_s: Option<f64>,
    of_ceiling: Option<f64>,
    join_seconds: Option<f64>,
    server_rss_kib: Option<u64>,
    idle_cpu_percent: Option<f64>,
    keepalives: u64,
}

/// One report as a one-line JSON object.
pub fn json_line(r: &Report) -> String {
    serde_json::to_string(&r.json_record()).expect("a flat record of numbers and strings")
}

/// The reports as a JSON array, one object per line.
pub fn json(reports: &[Report]) -> String {
    let rows: Vec<String> = reports.iter().map(json_line).collect();
    format!("[\n{}\n]\n", rows.join(",\n"))
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

fn per_s(n: u64, secs: f64) -> f64 {
    if secs > 0.0 {
        n as f64 / secs
    } else {
        0.0
    }
}

/// `1234567.0` as `1.23M`, `45600.0` as `45.6k`.
pub fn si(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn json_is_one_flat_object() {
        let r = Report {
            kind: Some(Kind::Server),
            members: 3,
            mode: "W=\"32\"".into(),
            packing: Some(true),
            delivered: 10,
            datagrams: 5,
            seconds: 2.0,
            ..Default::default()
        };
        let j = json_line(&r);
        assert!(!j.contains('\n'));
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["kind"], "server");
        assert_eq!(v["members"], 3);
        assert_eq!(v["mode"], "W=\"32\"");
        assert_eq!(v["msgs_per_s"], 5.0);
        assert_eq!(v["events_per_datagram"], 2.0);
        assert!(v["latency_p50_us"].is_null());
        let all: serde_json::Value = serde_json::from_str(&json(&[r.clone(), r])).unwrap();
        assert_eq!(all.as_array().map(Vec::len), Some(2));
    }
}
